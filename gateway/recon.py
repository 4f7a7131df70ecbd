"""Reconciliation with the central bank's records (对账), over the link.

At day end the gateway asks the NPC for its totals (hvps.710) and compares the answer
(hvps.711) with its own records of the same date: outgoing payments the NPC settled
(PR04), and incoming payments it forwarded to us, per message type and business type,
by count and by sum. Every difference is listed; reconciled means there is none. For
each differing total the gateway then asks for the items (hvps.712) and lists, from the
NPC's answer (hvps.713), each payment that only one side has.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from gateway.messages.hvps710 import ReconSummary
from gateway.messages.hvps712 import DetailResponse, DetailSelector

SETTLED = "PR04"


def our_hvps_totals(tx: Any, check_date: str) -> dict[tuple[str, str], list[int]]:
    """(mt, business type) -> [sent count, sent fen, received count, received fen]."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    rows = tx.query("SELECT msg_type, business_type, COUNT(*), SUM(amount_fen) FROM payments "
                    "WHERE direction = 'out' AND channel = 'hvps' AND settled_on = ? "
                    "GROUP BY msg_type, business_type", (check_date,))
    for mt, kind, count, total in rows:
        totals[(mt, kind)][0:2] = [count, total]
    rows = tx.query("SELECT msg_type, business_type, COUNT(*), SUM(amount_fen) FROM payments "
                    "WHERE direction = 'in' AND channel = 'hvps' AND work_date = ? "
                    "GROUP BY msg_type, business_type", (check_date,))
    for mt, kind, count, total in rows:
        totals[(mt, kind)][2:4] = [count, total]
    return totals


def compare_hvps(tx: Any, summary: ReconSummary, now: datetime) -> dict[str, Any]:
    ours = our_hvps_totals(tx, summary.check_date)
    theirs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in summary.payments:
        if row.status == SETTLED:
            theirs[(row.mt, row.tx_type)] = [row.sent_count, row.sent_fen, row.received_count,
                                             row.received_fen]
    differences = []
    labels = ("sent_count", "sent_fen", "received_count", "received_fen")
    for key in sorted(set(ours) | set(theirs)):
        for i, label in enumerate(labels):
            if ours[key][i] != theirs[key][i]:
                differences.append({"mt": key[0], "business_type": key[1], "field": label,
                                    "ours": ours[key][i], "npc": theirs[key][i]})
    result = {"work_date": summary.check_date, "system": "HVPS",
              "reconciled": not differences, "differences": differences,
              "rows": {f"{k[0]}/{k[1]}": ours[k] for k in sorted(ours)}}
    tx.execute("INSERT INTO recon (work_date, system, at, reconciled, differences) "
               "VALUES (?, ?, ?, ?, ?)", (summary.check_date, "HVPS", now.isoformat(),
                                          int(not differences), json.dumps(differences)))
    return result


def detail_selectors(result: dict[str, Any]) -> list[DetailSelector]:
    """What to ask hvps.712 for: each (type, business type, side) whose totals differ."""
    wanted = set()
    for d in result["differences"]:
        side = "SR00" if d["field"].startswith("sent") else "SR01"
        wanted.add((d["mt"], d["business_type"], side))
    return [DetailSelector(mt, tx_type, side, SETTLED) for mt, tx_type, side in sorted(wanted)]


def compare_details(tx: Any, response: DetailResponse, now: datetime) -> dict[str, Any]:
    """Item by item: the payments behind a differing total that only one side has."""
    differences = []
    for row in response.rows:
        s = row.selector
        if s.side == "SR00":
            ours = {m for (m,) in tx.query(
                "SELECT msg_id FROM payments WHERE direction = 'out' AND channel = 'hvps' AND "
                "settled_on = ? AND msg_type = ? AND business_type = ?",
                (response.check_date, s.mt, s.tx_type))}
        else:
            ours = {m for (m,) in tx.query(
                "SELECT msg_id FROM payments WHERE direction = 'in' AND channel = 'hvps' AND "
                "work_date = ? AND msg_type = ? AND business_type = ?",
                (response.check_date, s.mt, s.tx_type))}
        theirs = {m.original.msg_id: m for m in row.messages}
        for msg_id in sorted(set(theirs) - ours):
            m = theirs[msg_id]
            differences.append({"side": s.side, "mt": s.mt, "msg_id": msg_id,
                                "sender": m.original.instg_party, "amount_fen": m.amount_fen,
                                "only_at": "npc"})
        for msg_id in sorted(ours - set(theirs)):
            differences.append({"side": s.side, "mt": s.mt, "msg_id": msg_id,
                                "only_at": "gateway"})
    result = {"work_date": response.check_date, "system": "HVPS-detail",
              "reconciled": not differences, "differences": differences}
    tx.execute("INSERT INTO recon (work_date, system, at, reconciled, differences) "
               "VALUES (?, ?, ?, ?, ?)", (response.check_date, "HVPS-detail",
                                          now.isoformat(), int(not differences),
                                          json.dumps(differences, ensure_ascii=False)))
    return result
