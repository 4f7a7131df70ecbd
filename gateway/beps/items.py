"""BEPS transactions in the gateway's books: recording them, finding a package's
payments, and settling a netting round.

Every item has a side in netting: D when we pay (our credits out, the inbound debits we
pay), C when we receive (credits in, our debits the payer bank paid). Settling a round
moves the sum of its D items from netted obligations (4002) to the clearing account and
the sum of its C items from the clearing account to netted receivables (4003), in one
ledger entry per round (ledger.settle_net); items that the NPC netted into a round we
had already settled (their message arrived after the booking notice) settle on arrival.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from gateway import critical, late_entries, payments
from gateway.store import NOT_READ, Contended, answered, reading_once, rows_by_id

log = logging.getLogger("paygate.beps")

CREDIT_OUT, CREDIT_IN, DEBIT_OUT, DEBIT_IN = "credit_out", "credit_in", "debit_out", "debit_in"
SIDE = {CREDIT_OUT: "D", DEBIT_IN: "D", CREDIT_IN: "C", DEBIT_OUT: "C"}

# What happens to every transaction of one of our packages at once (packed, sent) is
# recorded once for the package, under this subject, in the payments' history table
# (gateway.payments, GROUP_SUBJECT_SQL); an item taken out of its package before it was
# sent is given those rows as its own (cancels.py).
PACKAGE_SUBJECT_PREFIX = "package:"
# The package ids of an item that name no package: one that will never be packed (its
# payment cancelled or refused before packing), and one an operator set aside
# (gateway.beps.stops), packed only once released (it then waits with no package again)
# or never, if cancelled.
VOID, HELD_OUT = "-", "held"
payments.GROUP_SUBJECT_SQL["beps"] = (
    f"(SELECT '{PACKAGE_SUBJECT_PREFIX}' || i.package_id FROM beps_items i "
    f"WHERE i.payment_id = p.id AND i.package_id NOT IN ('{VOID}', '{HELD_OUT}'))")


# Our outgoing credits that hold nothing of a payer's (a return of money waiting in
# suspense: gateway.exceptions.debit_suspense) are told here when the NPC nets them or
# they end unpaid, whichever way (the NPC's rejection, refused before packing,
# cancelled), since no hold moves their money: each hook gets (transaction, gateway, the
# payment ids, "netted", "rejected" or "cancelled", the detail, time).
UNHELD_HOOKS: list[Callable[[Any, Any, list[str], str, dict[str, Any], datetime], None]] = []


def unheld_ended(tx: Any, gw: Any, rows: list[dict[str, Any]], outcome: str,
                 detail: dict[str, Any], now: datetime) -> None:
    """Tell UNHELD_HOOKS of the outgoing credits among `rows` that hold nothing."""
    ids = [p["id"] for p in rows if not p["hold_id"] and p.get("kind", CREDIT_OUT) == CREDIT_OUT]
    if ids:
        for hook in UNHELD_HOOKS:
            hook(tx, gw, ids, outcome, detail, now)


def package_subject(package_id: str) -> str:
    """The subject under which a package's shared history rows are filed."""
    return PACKAGE_SUBJECT_PREFIX + package_id


def package_group(package_id: str, count: int) -> payments.Group:
    """The `count` payments a package carries, as a group that moves together."""
    return payments.Group(package_subject(package_id), count,
                          "SELECT payment_id FROM beps_items WHERE package_id = ?",
                          (package_id,))


# A package's payments are read for building, sending and booking it, never shown: the
# route each was given (a JSON record) is left out.
_PACKED = payments.ROUTELESS
_COLUMNS = ", ".join(f"p.{c}" for c in _PACKED)


def add(tx: Any, payment_id: str, kind: str, counterparty: str, msg_type: str,
        amount_fen: int, now: datetime, *, agreement: str | None = None,
        package_id: str | None = None, netting: tuple[str, str] | None = None,
        addresses: tuple[str | None, str | None] = (None, None)) -> None:
    """One item. `addresses`: the payer's and payee's address lines its transaction
    carries (a ready hvps.111's PstlAdr/AdrLine), each None when not given."""
    date_, round_ = netting or (None, None)
    tx.execute("INSERT INTO beps_items (payment_id, kind, side, counterparty, msg_type, "
               "amount_fen, agreement, package_id, netting_date, netting_round, created_at, "
               "debtor_address, creditor_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (payment_id, kind, SIDE[kind], counterparty, msg_type, amount_fen, agreement,
                package_id, date_, round_, now.isoformat(), *addresses))


def add_many(tx: Any, rows: list[tuple[str, str, str, str, int, str]]) -> None:
    """Items waiting to be packed: (payment id, kind, counterparty, package type, amount
    in fen, created at) each."""
    tx.insert_rows("INSERT INTO beps_items (payment_id, kind, side, counterparty, msg_type, "
                   "amount_fen, created_at) VALUES",
                   [(pid, kind, SIDE[kind], counterparty, msg_type, amount_fen, created_at)
                    for pid, kind, counterparty, msg_type, amount_fen, created_at in rows])


def add_package(tx: Any, rows: list[tuple[str, str, str, str, int]], now: datetime, *,
                package_id: str, netting: tuple[str, str] | None = None) -> None:
    """`add` for the items of one package, (payment id, kind, counterparty, message
    type, amount in fen) each, in one statement."""
    date_, round_ = netting or (None, None)
    at = now.isoformat()
    tx.executemany("INSERT INTO beps_items (payment_id, kind, side, counterparty, msg_type, "
                   "amount_fen, agreement, package_id, netting_date, netting_round, "
                   "created_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                   [(pid, kind, SIDE[kind], counterparty, msg_type, amount_fen, package_id,
                     date_, round_, at)
                    for pid, kind, counterparty, msg_type, amount_fen in rows])


def _row(values: tuple) -> dict[str, Any]:
    row = dict(zip(_PACKED, values))
    row["remittance"] = json.loads(row["remittance"])
    row["kind"], row["agreement"] = values[len(_PACKED):]
    return row


def package_payments(tx: Any, package_id: str) -> list[dict[str, Any]]:
    """The payments a package carries, in packing order, with the item's kind."""
    rows = tx.query(f"SELECT {_COLUMNS}, i.kind, i.agreement FROM beps_items i "
                    "JOIN payments p ON p.id = i.payment_id WHERE i.package_id = ? "
                    "ORDER BY i.created_at, i.payment_id", (package_id,))
    return [_row(r) for r in rows]


def package_states(tx: Any, package_id: str) -> list[dict[str, Any]]:
    """The payments a package carries as a notice about the package needs them: id,
    state, hold and the item's kind each, in packing order (a whole row costs several
    times as much to read, its remittance parsed)."""
    rows = tx.query("SELECT p.id, p.state, p.hold_id, i.kind FROM beps_items i "
                    "JOIN payments p ON p.id = i.payment_id WHERE i.package_id = ? "
                    "ORDER BY i.created_at, i.payment_id", (package_id,))
    return [{"id": pid, "state": state, "hold_id": hold_id, "kind": kind}
            for pid, state, hold_id, kind in rows]


def set_round(tx: Any, payment_ids: list[str], netting_date: str, netting_round: str) -> None:
    tx.executemany("UPDATE beps_items SET netting_date = ?, netting_round = ? "
                   "WHERE payment_id = ?",
                   [(netting_date, netting_round, pid) for pid in payment_ids])


def net(tx: Any, gw: Any, rows: list[dict[str, Any]], package_id: str, netting_date: str,
        netting_round: str, now: datetime, package_size: int | None = None,
        together: bool = False) -> None:
    """Items of a package the NPC netted: final, each hold a netted obligation.

    A few statements for all of them, whatever their number: with `together` (a netting
    notice) their holds are netted with one ledger entry for the package
    (ledger.net_together), otherwise each hold with an entry of its own, written in bulk
    (ledger.net_many). Given `package_size`, the count of the package's items, and
    these are all of them in one state, they change with one statement and one history
    row under the package tells each of them, as packing and sending do; otherwise each
    gets a row of its own (an item cancelled or waiting for the answer to our ccms.307
    is not netted with the others).
    """
    if not rows:
        return
    detail = {"package": package_id, "netting_date": netting_date,
              "netting_round": netting_round}
    states = {p["state"] for p in rows}
    if len(rows) == package_size and len(states) == 1:
        moved = payments.transition_group(tx, package_group(package_id, package_size),
                                          states.pop(), "netted", "beps_netted", now,
                                          gw.notifier, known=[p["id"] for p in rows],
                                          **detail)
        if len(moved) != len(rows):  # one changed since it was read: read again
            raise Contended(f"{len(rows) - len(moved)} of the payments of package "
                            f"{package_id} changed before netting")
        tx.execute("UPDATE beps_items SET netting_date = ?, netting_round = ? "
                   "WHERE package_id = ?", (netting_date, netting_round, package_id))
    else:
        payments.transition_many(tx, rows, "netted", "beps_netted", now, gw.notifier,
                                 **detail)
        set_round(tx, [p["id"] for p in rows], netting_date, netting_round)
    held = [p for p in rows if p["hold_id"]]
    if held and together:
        # One entry for the package's holds (ledger.net_together); items netted later
        # on their own (an answer to our ccms.307) get an entry each, below.
        event = f"{package_id}:net" if len(rows) == package_size else \
            f"{package_id}:net:{rows[0]['id']}"
        gw.ledger.net_together(tx, event, [int(p["hold_id"]) for p in held],
                               gw.work_date.isoformat(), package_id)
    elif held:
        gw.ledger.net_many(tx, [(f"{p['id']}:net", int(p["hold_id"])) for p in held],
                           gw.work_date.isoformat())
    if len(held) != len(rows):
        unheld_ended(tx, gw, rows, "netted", detail, now)


# The key in a transaction's `cache` of the items `places_read_once` read.
_PLACES_READ_ONCE = "beps.items.places"
_PLACE = "kind, package_id, netting_round"


def place(tx: Any, payment_id: str) -> tuple[str, str | None, str | None] | None:
    """Where a BEPS payment's item is: its kind, its package id (None while it waits to
    be packed, or VOID, HELD_OUT) and its netting round; None for a payment without an
    item. Inside `places_read_once`, answered from that read."""
    read = answered(tx, _PLACES_READ_ONCE, payment_id)
    if read is not NOT_READ:
        return read
    return tx.query_one(f"SELECT {_PLACE} FROM beps_items WHERE payment_id = ?",
                        (payment_id,))


def places_read_once(tx: Any, payment_ids: Iterable[str]
                     ) -> AbstractContextManager[dict[Any, Any]]:
    """`place` of each of these payments read in one statement (a few for a long list),
    and within the block answered from that read (store.reading_once): for checks that
    only read (the console's row actions). Gives the places read, by payment id."""
    return reading_once(tx, _PLACES_READ_ONCE, rows_by_id(
        tx, payment_ids, f"SELECT payment_id, {_PLACE} FROM beps_items "
        "WHERE payment_id IN ({ids})"))


def view_of(tx: Any, payment_id: str) -> dict[str, Any] | None:
    """What GET /v1/transfers/{id} shows of a BEPS transaction under "beps": with
    `taken_out_of` the package it was last taken out of before that package was sent
    (cancelled from it, or set aside by an operator), whose history it keeps."""
    row = tx.query_one("SELECT kind, msg_type, package_id, netting_date, netting_round, "
                       "settled_on, taken_out_of FROM beps_items WHERE payment_id = ?",
                       (payment_id,))
    if row is None:
        return None
    kind, msg_type, package_id, netting_date, netting_round, settled_on, taken_out_of = row
    return {"kind": kind, "package_type": msg_type,
            "package": package_id if package_id not in (None, VOID, HELD_OUT) else None,
            "taken_out_of": taken_out_of,
            "netting_date": netting_date, "netting_round": netting_round,
            "settled_on": settled_on}


def round_settled_on(tx: Any, netting_date: str, netting_round: str) -> str | None:
    row = tx.query_one("SELECT settled_on FROM beps_rounds WHERE netting_date = ? AND "
                       "netting_round = ?", (netting_date, netting_round))
    return row[0] if row else None


_UNSETTLED = "netting_date = ? AND netting_round = ? AND settled_on IS NULL"
ROUND_LOCK = 0x7063  # advisory lock class of a netting round (PostgreSQL)


def lock_round(tx: Any, netting_date: str, netting_round: str) -> None:
    """Settle a round, or look whether it has settled, one gateway process at a time.

    A round's booking notice (saps.606) and the result that nets a late package into the
    same round may be processed by two processes at once; each reads which items of the
    round are unsettled. Under this lock (PostgreSQL, until the transaction ends) the
    second one waits and then sees what the first committed, so every item settles once
    and the round's posting is never made twice. SQLite writes one transaction at a time.
    """
    if tx.dialect == "postgresql":
        tx.query_one(f"SELECT pg_advisory_xact_lock({ROUND_LOCK}, hashtext(?))",
                     (f"{netting_date}/{netting_round}",))


def settle(tx: Any, gw: Any, netting_date: str, netting_round: str, settled_on: str,
           now: datetime) -> tuple[int, int]:
    """Settle every netted, unsettled item of a round; (debit fen, credit fen) posted."""
    key = (netting_date, netting_round)
    lock_round(tx, netting_date, netting_round)
    # The items with their payment's state, read before they are marked: the netted
    # ones become settled (a credit from another bank is credited already). Each side's
    # sum is added up from the same rows (one read of the round's items, not two).
    unsettled = tx.query("SELECT i.payment_id, p.state, i.package_id, i.side, i.amount_fen "
                         "FROM beps_items i JOIN payments p ON p.id = i.payment_id WHERE "
                         "i.netting_date = ? AND i.netting_round = ? AND i.settled_on IS NULL "
                         "ORDER BY i.payment_id", key)
    if not unsettled:
        return 0, 0
    ids = [row[0] for row in unsettled]
    netted = [(pid, package_id) for pid, state, package_id, _, _ in unsettled
              if state == "netted"]
    sums = {"D": 0, "C": 0}
    for _, _, _, side, amount_fen in unsettled:
        sums[side] += int(amount_fen)
    debit_fen, credit_fen = sums["D"], sums["C"]
    # One entry per round; items settling late get an entry named after the first of them.
    event = f"beps:settle:{netting_date}:{netting_round}"
    if tx.query_one("SELECT 1 FROM beps_items WHERE netting_date = ? AND netting_round = ? "
                    "AND settled_on IS NOT NULL", key):
        event += f":late:{ids[0]}"
    entry_id = gw.ledger.settle_net(tx, event, f"{netting_date}/{netting_round}", debit_fen,
                                    credit_fen, gw.work_date.isoformat())
    # Settled by the NPC on a date whose ledger day closed before it came (an outage over
    # the cut-over): booked today, kept and alerted as such.
    late_entries.booked_after_close(tx, gw, settled_on, entry_id,
                                    f"BEPS round {netting_date}/{netting_round}", debit_fen,
                                    credit_fen, now)
    tx.execute(f"UPDATE beps_items SET settled_on = ? WHERE {_UNSETTLED}", (settled_on, *key))
    _settled(tx, gw, netted, now, settled_on=settled_on, netting_date=netting_date,
             netting_round=netting_round)
    log.info("event=beps_round_settled netting_date=%s netting_round=%s items=%s "
             "debit_fen=%s credit_fen=%s", netting_date, netting_round, len(ids), debit_fen,
             credit_fen)
    return debit_fen, credit_fen


def _settled(tx: Any, gw: Any, netted: list[tuple[str, str | None]], now: datetime,
             **detail: Any) -> None:
    """The netted items of a round, (payment id, package id) each, become settled. A
    package whose items all settle here changes with one statement and one history row
    under the package, as packing, sending and netting did; the others' items (one
    netted late, one of a package with an item cancelled) get a row each.

    A package's items are counted in beps_items, not by its count: an item the NPC
    withdrew at our request (ccms.307 granted) has left the count but stays in the
    package, and a row under the package would tell it too, cancelled, as settled."""
    by_package: dict[str | None, list[str]] = {}
    for pid, package_id in netted:
        by_package.setdefault(package_id, []).append(pid)
    whole = dict(tx.query(
        "SELECT package_id, COUNT(*) FROM beps_items WHERE package_id IN "
        f"({', '.join('?' * len(by_package))}) GROUP BY package_id",
        tuple(by_package))) if by_package else {}
    alone = []
    for package_id, pids in by_package.items():
        if package_id is None or whole.get(package_id) != len(pids):
            alone += [{"id": pid, "state": "netted"} for pid in pids]
            continue
        moved = payments.transition_group(tx, package_group(package_id, len(pids)), "netted",
                                          "settled", "beps_settled", now, gw.notifier,
                                          known=pids, package=package_id, **detail)
        if len(moved) != len(pids):  # one changed since it was read: read again
            raise Contended(f"{len(pids) - len(moved)} of the payments of package "
                            f"{package_id} changed before settling")
    payments.transition_many(tx, alone, "settled", "beps_settled", now, gw.notifier,
                             **detail)


def settle_if_round_settled(tx: Any, gw: Any, netting_date: str, netting_round: str,
                            now: datetime) -> None:
    """Items netted into a round whose settlement we already booked settle now; when
    they bring our net for the round to the NPC's, the alert that told the two apart is
    closed (close_net_differs_if_agreed)."""
    lock_round(tx, netting_date, netting_round)
    settled_on = round_settled_on(tx, netting_date, netting_round)
    if settled_on is not None and settle(tx, gw, netting_date, netting_round, settled_on,
                                         now) != (0, 0):
        close_net_differs_if_agreed(tx, netting_date, netting_round, now)


# Raised at a round's booking notice when our net for it is not the NPC's
# (gateway.beps.incoming.on_booking).
ALERT_NET_DIFFERS = "beps_round_net_differs"


def close_net_differs_if_agreed(tx: Any, netting_date: str, netting_round: str,
                                now: datetime) -> list[int]:
    """Close, as the gateway, the open ALERT_NET_DIFFERS alerts of a round once our net
    for it (every settled item of the round: what we receive less what we pay) is the
    net the NPC's booking notice named: items whose message came after the notice (a
    PR03 late, another bank's package forwarded after it) have settled, and the books
    agree with the NPC, so the alert was the order of arrival, not a gap. Left open
    while the nets still differ. Their ids."""
    row = tx.query_one("SELECT npc_net_fen FROM beps_rounds WHERE netting_date = ? AND "
                       "netting_round = ?", (netting_date, netting_round))
    if row is None:
        return []
    ours_fen = tx.query_one(
        "SELECT COALESCE(SUM(CASE side WHEN 'C' THEN amount_fen ELSE -amount_fen END), 0) "
        "FROM beps_items WHERE netting_date = ? AND netting_round = ? "
        "AND settled_on IS NOT NULL", (netting_date, netting_round))[0]
    if int(ours_fen) != int(row[0]):
        return []
    ids = [alert_id for alert_id, detail in critical.unclosed(tx, (ALERT_NET_DIFFERS,),
                                                              netting_date)
           if (detail.get("netting_date"), detail.get("netting_round")) == (
               netting_date, netting_round)]
    if ids:
        critical.close_by_gateway(
            tx, ids, f"items of round {netting_date}/{netting_round} that arrived after its "
            f"booking notice settled: our net is the NPC's ({int(row[0])} fen)", now)
        log.info("event=beps_round_net_agrees netting_date=%s netting_round=%s net_fen=%s "
                 "alerts_closed=%s", netting_date, netting_round, row[0], len(ids))
    return ids
