"""BEPS credits from other banks, and the settlement of netting rounds.

A credit package arrives from the NPC once netted (NPCPrcInf PR03 with the netting date
and round): netting is final for BEPS (DOMAIN.md §1), so each payee is credited then
(ledger.credit_incoming_netted), or the money goes to suspense under a pending
write-off number when the account cannot take it. A package of a thousand credits is
processed in a few statements, not a few per credit: the payments already recorded
are read at once, the new ones written with one statement per table, and the ledger
posts each credit's own entry in bulk (ledger.credit_incoming_netted_many). A package
that is not netted is refused and raised to operators: money that is not final is never
credited.

The saps.606 booking notice says the NPC settled a round on our clearing account; the
round's items settle in the ledger (items.settle).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway import intake, payments, screening
from gateway.beps import items
from gateway.exceptions import returns
from gateway.inbound import Processed
from gateway.messages import codec, saps606
from gateway.messages.package import Package, ReturnInfo, Transfer
from ledger.postings import IDS_PER_QUERY

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.incoming")

NETTED = "PR03"


def on_credit_package(tx: Any, gw: "Gateway", d: codec.Decoded, now: datetime) -> Processed:
    pkg: Package = d.obj
    h = pkg.header
    package_id = f"{h.instg_direct}{h.msg_id}"
    npc = pkg.npc
    if npc is None or npc.status != NETTED or not npc.netting_date or not npc.netting_round:
        gw.alert(tx, "beps_package_not_netted", package=package_id,
                 status=npc.status if npc else None)
        return Processed({"refused": True, "package": package_id})
    if tx.query_one("SELECT 1 FROM beps_packages WHERE id = ?", (package_id,)):
        gw.alert(tx, "duplicate_incoming_package", package=package_id)
        return Processed({"duplicate_of": package_id})
    netting = (npc.netting_date, npc.netting_round)
    tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, receiver, "
               "count, total_fen, state, mesg_id, netting_date, netting_round, created_at, "
               "updated_at) VALUES (?, 'in', ?, ?, ?, ?, ?, ?, 'netted', ?, ?, ?, ?, ?)",
               (package_id, d.mtype.code, h.msg_id, h.instg_direct, h.instd_direct, h.count,
                h.total_fen, d.header.mesg_id, *netting, now.isoformat(), now.isoformat()))
    outcomes = {"credited": 0, "suspense": 0, "duplicate": 0}
    fresh = []
    for t in new_transfers(tx, gw, d.mtype.code, h.instg_direct, pkg.transfers):
        if t is None:
            outcomes["duplicate"] += 1
        else:
            fresh.append(t)
    for kind in _credit(tx, gw, d.mtype.code, h.instg_direct, package_id, netting, fresh,
                        now):
        outcomes[kind] += 1
    returned = _link_returns(tx, gw, h.instg_direct, fresh, now)
    if returned:
        outcomes["returns"] = returned
    items.settle_if_round_settled(tx, gw, *netting, now)
    log.info("event=beps_package_received package=%s netting_date=%s netting_round=%s %s",
             package_id, *netting, " ".join(f"{k}={v}" for k, v in outcomes.items()))
    return Processed({"package": package_id, **outcomes})


def _link_returns(tx: Any, gw: "Gateway", sender: str, transfers: list[Transfer],
                  now: datetime) -> int:
    """The package's returns (A105 with RtrInf) of payments of ours, each credited
    already like any credit: the payment it names moves to `returned`, or operators are
    told why none matched (gateway.exceptions.returns); how many were returns."""
    count = 0
    for t in transfers:
        info = t.extra
        if t.business_type != returns.RETURN_TYPE or not isinstance(info, ReturnInfo):
            continue
        count += 1
        named = returns.Named(info.original.instg_party, info.original.mt,
                              info.original.msg_id, info.original_tx.tx_id)
        original, unmatched = returns.original_of(tx, named, t.amount_fen, t.debtor_account)
        returns.link(gw, tx, f"I{sender}{t.tx_id}", named, original, unmatched, info.reason,
                     sender, now)
    return count


def new_transfers(tx: Any, gw: "Gateway", msg_type: str, sender: str,
                  transfers: tuple[Transfer, ...]) -> list[Transfer | None]:
    """The package's transactions, None in place of each one recorded before (in an
    earlier package, or earlier in this one), which is raised to operators. The payments
    already recorded are read a few hundred a query, whatever the package's size."""
    recorded: set[str] = set()
    tx_ids = list(dict.fromkeys(t.tx_id for t in transfers))
    for start in range(0, len(tx_ids), IDS_PER_QUERY):
        chunk = tx_ids[start:start + IDS_PER_QUERY]
        recorded.update(row[0] for row in tx.query(
            "SELECT msg_id FROM payments WHERE direction = 'in' AND sender_direct = ? AND "
            f"msg_type = ? AND msg_id IN ({', '.join('?' * len(chunk))})",
            (sender, msg_type, *chunk)))
    out: list[Transfer | None] = []
    for t in transfers:
        if t.tx_id in recorded:
            gw.alert(tx, "duplicate_incoming_payment", sender=sender, tx_id=t.tx_id)
            out.append(None)
        else:
            recorded.add(t.tx_id)
            out.append(t)
    return out


def _credit(tx: Any, gw: "Gateway", msg_type: str, sender: str, package_id: str,
            netting: tuple[str, str], transfers: list[Transfer], now: datetime) -> list[str]:
    """Record and credit the package's new transactions, each to its payee or to
    suspense, in a few statements whatever their number; where each went."""
    if not transfers:
        return []
    rows = [incoming_row(gw, f"I{sender}{t.tx_id}", msg_type, sender, t, now)
            for t in transfers]
    payments.insert_many(tx, rows)
    items.add_package(tx, [(row["id"], items.CREDIT_IN, sender, msg_type, row["amount_fen"])
                           for row in rows], now, package_id=package_id, netting=netting)
    work_date = gw.work_date.isoformat()
    # Each payee checked as an internal transfer's is (intake.payee_problems); what fails
    # goes to suspense, the money being final already. A party the screening matches
    # parks it there too, for operators to decide (the netting stands: the money is ours
    # to hold, not to credit).
    elsewhere = {f"{row['id']}:credit" for row, t in zip(rows, transfers)
                 if intake.kept_elsewhere(t.creditor_bank, gw.account_bank)}
    held_for = screening.parked(gw, rows)
    results = gw.ledger.credit_incoming_netted_many(tx, [
        (f"{row['id']}:credit", t.creditor_account, t.creditor_name, t.amount_fen,
         work_date, row["id"]) for row, t in zip(rows, transfers)], other_branch=elsewhere,
        parked={f"{pid}:credit": reason for pid, reason in held_for.items()})
    detail = {"package": package_id, "netting_date": netting[0], "netting_round": netting[1]}
    changed = payments.transition_each(tx, [
        (row, "credited", "beps_credited", {"account": result.account_no, **detail})
        if result.kind == "credited" else
        (row, "suspense", "beps_to_suspense",
         {"pending_no": result.pending_no, "reason": result.reason, **detail})
        for row, result in zip(rows, results)], now, gw.notifier)
    screening.tell_held(gw, tx, [row for row in changed if row["id"] in held_for],
                        package=package_id, netting_date=netting[0],
                        netting_round=netting[1])
    return [result.kind for result in results]


def incoming_row(gw: "Gateway", pid: str, msg_type: str, sender: str, t: Transfer,
                 now: datetime) -> dict[str, Any]:
    """The payment record of one transaction another bank sent us (credit or debit)."""
    return {
        "id": pid, "direction": "in", "channel": "beps", "state": "received",
        "msg_type": msg_type, "msg_id": t.tx_id, "tx_id": t.tx_id, "end_to_end_id": t.tx_id,
        "sender_direct": sender, "receiver_direct": gw.settings.bank_code,
        "amount_fen": t.amount_fen, "currency": t.currency,
        "payer_account": t.debtor_account, "payer_name": t.debtor_name,
        "payer_bank": t.debtor_bank, "payee_account": t.creditor_account,
        "payee_name": t.creditor_name, "payee_bank": t.creditor_bank,
        "business_type": t.business_type, "business_kind": t.business_kind,
        "urgency": "normal", "priority": 3, "remittance": [t.remark] if t.remark else [],
        "route": {}, "work_date": gw.work_date.isoformat(), "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }


def on_booking(tx: Any, gw: "Gateway", d: codec.Decoded, now: datetime) -> Processed:
    """saps.606: the NPC settled a netting round on our clearing account."""
    n: saps606.Booking = d.obj
    netting_date = n.npc.netting_date
    netting_round = n.netting_round or n.npc.netting_round
    if not netting_date or not netting_round:
        gw.alert(tx, "booking_notice_without_round", mesg_id=d.header.mesg_id)
        return Processed({"refused": True})
    items.lock_round(tx, netting_date, netting_round)
    if items.round_settled_on(tx, netting_date, netting_round) is not None:
        log.info("event=beps_booking_repeated netting_date=%s netting_round=%s",
                 netting_date, netting_round)
        return Processed({"repeat": f"{netting_date}/{netting_round}"})
    settled_on = n.npc.settlement_date or gw.work_date.isoformat()
    npc_net_fen = abs(n.amount_fen) * (1 if n.direction == "CRDT" else -1)
    tx.execute("INSERT INTO beps_rounds (netting_date, netting_round, settled_on, "
               "npc_net_fen, at) VALUES (?, ?, ?, ?, ?)",
               (netting_date, netting_round, settled_on, npc_net_fen, now.isoformat()))
    debit_fen, credit_fen = items.settle(tx, gw, netting_date, netting_round, settled_on,
                                         now)
    tx.execute("UPDATE beps_packages SET state = 'settled', updated_at = ? WHERE "
               "netting_date = ? AND netting_round = ? AND state = 'netted'",
               (now.isoformat(), netting_date, netting_round))
    ours_fen = credit_fen - debit_fen
    if ours_fen != npc_net_fen:
        # Our books hold another net for the round than the NPC settled: a result lost on
        # the way (PR03), or one still travelling (its items settle when it arrives).
        # Operators hear it now, once per round (a repeated notice returned above), not
        # at the netting date's reconciliation (beps.720/721) the next night. Closed by
        # the gateway if the late items bring our net to the NPC's
        # (items.close_net_differs_if_agreed).
        gw.alert(tx, items.ALERT_NET_DIFFERS, netting_date=netting_date,
                 netting_round=netting_round, ours_fen=ours_fen, npc_fen=npc_net_fen,
                 difference_fen=npc_net_fen - ours_fen, mesg_id=d.header.mesg_id)
    return Processed({"round": f"{netting_date}/{netting_round}", "debit_fen": debit_fen,
                      "credit_fen": credit_fen, "npc_net_fen": npc_net_fen})
