"""BEPS reconciliation with the NPC (beps.720 / beps.721), over the link.

We ask for the NPC's totals of a netting date (720 ChckDt; which dates, and when:
netting_dates.py) and compare its rows (721 ChckPmtInf: per netting date, round and
message type, what we sent and received, by count and signed sum) with our own records
of the netted items of that date:

- sent: our credits (in the package type that carried them) and the inbound debits our
  beps.128 receipts paid (as beps.128);
- received: credits other banks sent us, and our debits the payer banks paid (as the
  beps.128 receipt that brought the payment).

Every difference is listed; reconciled means there is none. For each differing credit
total the gateway then asks for the packages behind it (beps.722) and lists, from the
NPC's beps.723, each package only one side has.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from gateway import outbound, payments
from gateway import recon as day_recon
from gateway.beps import items
from gateway.messages import beps128, beps720, beps722
from gateway.messages.common import GroupHeader, iso_datetime

_FIELDS = ("sent_count", "sent_fen", "received_count", "received_fen")
# (item kind) -> (counted as sent?, message type it is counted under, or None: its own)
_COUNTED = {items.CREDIT_OUT: (True, None), items.DEBIT_IN: (True, beps128.MESSAGE_TYPE),
            items.CREDIT_IN: (False, None), items.DEBIT_OUT: (False, beps128.MESSAGE_TYPE)}


def request(tx: Any, gw: Any, check_date: str, now: datetime) -> int:
    """Queue a beps.720 for `check_date`; the outbox id."""
    bank = gw.settings.bank_code
    header = outbound.new_header(tx, now, bank, outbound.NPC, beps720.MESSAGE_TYPE, "BEPS")
    day = now.strftime("%Y%m%d")
    msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
    body = beps720.build(beps720.TotalCheckRequest(GroupHeader(
        msg_id, iso_datetime(now), bank, bank, outbound.NPC, outbound.NPC, "BEPS"), check_date))
    day_recon.asked(tx, "BEPS", check_date, now)
    return outbound.queue_message(tx, header, body, gw.keyring, now)


def our_totals(tx: Any, check_date: str) -> dict[tuple[str, str, str], list[int]]:
    """(netting date, round, message type) -> sent count, sent fen, received count and fen."""
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    rows = tx.query("SELECT netting_round, kind, msg_type, COUNT(*), SUM(amount_fen) FROM "
                    "beps_items WHERE netting_date = ? AND netting_round IS NOT NULL "
                    "GROUP BY netting_round, kind, msg_type", (check_date,))
    for netting_round, kind, msg_type, count, total in rows:
        sent, counted_as = _COUNTED[kind]
        row = totals[(check_date, netting_round, counted_as or msg_type)]
        offset = 0 if sent else 2
        row[offset] += count
        row[offset + 1] += total
    return totals


def compare(tx: Any, result: beps720.TotalCheck, now: datetime) -> dict[str, Any]:
    ours = our_totals(tx, result.check_date)
    theirs: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in result.payments:
        row = theirs[(r.netting_date, r.netting_round, r.mt)]
        for i, value in enumerate((r.sent_count, r.sent_fen, r.received_count,
                                   r.received_fen)):
            row[i] += value
    differences = []
    for key in sorted(set(ours) | set(theirs)):
        for i, label in enumerate(_FIELDS):
            if ours[key][i] != theirs[key][i]:
                differences.append({"netting_date": key[0], "netting_round": key[1],
                                    "mt": key[2], "field": label, "ours": ours[key][i],
                                    "npc": theirs[key][i]})
    row = tx.query_one("INSERT INTO recon (work_date, system, at, reconciled, differences) "
                       "VALUES (?, 'BEPS', ?, ?, ?) RETURNING id",
                       (result.check_date, now.isoformat(), int(not differences),
                        json.dumps(differences)))
    day_recon.answered(tx, "BEPS", result.check_date, now)
    return {"work_date": result.check_date, "system": "BEPS",
            "reconciled": not differences, "differences": differences,
            "rows": {"/".join(k): ours[k] for k in sorted(ours)}, "recon_id": row[0]}


def detail_rows(outcome: dict[str, Any]) -> list[beps722.PaymentRow]:
    """What to ask beps.722 for: each (netting date, round, credit type, side) whose
    totals differ. Receipts (beps.128) are left to their own totals."""
    wanted = set()
    for d in outcome["differences"]:
        if d["mt"] == beps128.MESSAGE_TYPE:
            continue
        side = "SR00" if d["field"].startswith("sent") else "SR01"
        wanted.add((side, d["netting_date"], d["netting_round"], d["mt"]))
    return [beps722.PaymentRow(side, day, rnd, mt, "PR03")
            for side, day, rnd, mt in sorted(wanted)]


def request_details(tx: Any, gw: Any, check_date: str, rows: list[beps722.PaymentRow],
                    now: datetime) -> int:
    """Queue a beps.722 for the differing rows; the outbox id."""
    bank = gw.settings.bank_code
    header = outbound.new_header(tx, now, bank, outbound.NPC, beps722.MESSAGE_TYPE, "BEPS")
    day = now.strftime("%Y%m%d")
    msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
    body = beps722.build(beps722.DetailCheckRequest(GroupHeader(
        msg_id, iso_datetime(now), bank, bank, outbound.NPC, outbound.NPC, "BEPS"),
        check_date, tuple(rows), ()))
    return outbound.queue_message(tx, header, body, gw.keyring, now)


def compare_details(tx: Any, response: beps722.DetailCheckResponse,
                    now: datetime) -> dict[str, Any]:
    """Package by package: those behind a differing total that only one side has."""
    differences = []
    for details in response.payments or ():
        row = details.row
        direction = "out" if row.side == "SR00" else "in"
        ours = {m for (m,) in tx.query(
            "SELECT DISTINCT p.msg_id FROM beps_items i JOIN beps_packages p ON p.id = "
            "i.package_id WHERE p.direction = ? AND i.netting_date = ? AND i.netting_round "
            "= ? AND p.msg_type = ?", (direction, row.netting_date, row.netting_round,
                                        row.mt))}
        theirs = {pkg.original.msg_id: pkg for pkg in details.packages}
        for msg_id in sorted(set(theirs) - ours):
            pkg = theirs[msg_id]
            differences.append({"side": row.side, "netting_round": row.netting_round,
                                "mt": row.mt, "package_msg_id": msg_id,
                                "sender": pkg.original.instg_party, "count": pkg.count,
                                "total_fen": pkg.total_fen, "only_at": "npc"})
        for msg_id in sorted(ours - set(theirs)):
            differences.append({"side": row.side, "netting_round": row.netting_round,
                                "mt": row.mt, "package_msg_id": msg_id,
                                "only_at": "gateway"})
    outcome = {"work_date": response.check_date, "system": "BEPS-detail",
               "reconciled": not differences, "differences": differences}
    tx.execute("INSERT INTO recon (work_date, system, at, reconciled, differences) "
               "VALUES (?, 'BEPS-detail', ?, ?, ?)",
               (response.check_date, now.isoformat(), int(not differences),
                json.dumps(differences, ensure_ascii=False)))
    return outcome
