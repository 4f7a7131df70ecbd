"""Cancelling one of our BEPS items before it is netted (ccms.307 → ccms.308).

Netting is final (已轧差即具有支付最终性): a netted item is never cancelled. Before that
an outgoing item can be withdrawn wherever it is:

- waiting to be packed: cancelled at once, its hold released; the packer never takes it.
- in a package sealed but not yet claimed by the sender, or one the NPC refused (its
  letter dead, its items held until an operator retries it): taken out of the package
  here.
  The package is rebuilt from its stored bytes less that transaction, under the same
  MsgId and header MesgID, with the NbOfTxs and CtrlSum of what is left, and signed
  again; nothing of it was on the wire yet, so nobody sees two versions. A package left
  empty is `cancelled`: its outbox row is closed and its archive row dropped, since it
  will never be on the wire.
- in a credit package the NPC took (sent, or waiting for netting after PR11): only the
  NPC can take it out. `request` then says what the ccms.307 names: the package (MsgId,
  our bank, its type) and the transaction (TxId). Until the ccms.308 comes a netting
  notice for the package leaves the item alone (`waiting_for_answer`), since only that
  answer says whether the NPC netted it.

The NPC's answer is acted on as stated (`answered`). PR08: the NPC took the item out of
the package's totals before netting, so the item is cancelled and its hold released. A
refusal: the item stayed in its package, so it is netted with the package when the
package was netted meanwhile, and otherwise stays as it is, with the refusal in its
history. A package every item of which was cancelled is `cancelled`: it nets nothing.

A debit of ours (beps.127) can be taken out of a sealed package too, but once sent it
is with the payer bank, which answers it in its receipt: it cannot be withdrawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import payments
from gateway.beps import items, packer
from gateway.errors import Conflict, Problem
from gateway.messages import codec, package as package_mod
from gateway.messages.common import OriginalRef, OriginalTx
from gateway.states import FINAL
from gateway.store import Contended

log = logging.getLogger("paygate.beps.cancels")

# The outbox states of a package the NPC has taken (posted with a 2xx, or acknowledged).
TAKEN_BY_NPC = ("sent", "acked")
# Those of a sealed package nothing of which reached the NPC: waiting for its sender, or
# dead-lettered (the NPC refused it, gateway.beps.packer.dead) until an operator retries.
UNSENT_OUTBOX = ("pending", "dead")
ASKABLE_PACKAGE_STATES = ("sent", "waiting")
SYSTEM = "BEPS"  # the header system of our ccms.307 about a BEPS package
NETTED_PACKAGE_STATES = ("netted", "settled")


@dataclass(frozen=True)
class NpcRequest:
    """What our ccms.307 names: the package the NPC holds and the transaction in it."""

    package_id: str
    package: OriginalRef
    transaction: OriginalTx


@dataclass(frozen=True)
class _Package:
    id: str
    msg_type: str
    msg_id: str
    mesg_id: str
    sender: str
    state: str
    outbox_id: int | None
    netting_date: str | None
    netting_round: str | None


def _package(tx: Any, package_id: str, lock: bool = False) -> _Package:
    """The package; with `lock` (PostgreSQL) its row is held until the transaction ends,
    so that a netting notice for it processed by another gateway process meanwhile is
    either seen here or waits and then sees what this transaction did."""
    row = tx.query_one("SELECT id, msg_type, msg_id, mesg_id, sender, state, outbox_id, "
                       "netting_date, netting_round FROM beps_packages WHERE id = ?"
                       + (" FOR UPDATE" if lock and tx.dialect == "postgresql" else ""),
                       (package_id,))
    assert row is not None, f"package {package_id} of a packed item exists"
    return _Package(*row)


def request(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
            now: datetime) -> dict[str, Any] | NpcRequest:
    """Cancel an outgoing BEPS item now (what was done), or say what to ask the NPC."""
    if payment["state"] in ("netted", "settled"):
        raise Conflict(Problem("beps_item_final_after_netting", "/id", payment["id"],
                               "a BEPS item not yet netted"))
    if payment["state"] not in FINAL and _void_if_unpacked(tx, payment["id"]):
        result = _cancel(gw, tx, payment, "cancelled_before_packing", reason, by, now)
        return dict(result, cancelled="before_packing")
    item = tx.query_one("SELECT kind, package_id, netting_round FROM beps_items "
                        "WHERE payment_id = ?", (payment["id"],))
    assert item is not None, f"outgoing BEPS payment {payment['id']} has an item"
    kind, package_id, netting_round = item
    if netting_round:
        raise Conflict(Problem("beps_item_final_after_netting", "/id", payment["id"],
                               "a BEPS item not yet netted"))
    if payment["state"] in FINAL or package_id == packer.VOID:
        raise Conflict(Problem("payment_not_cancellable", "/state", payment["state"],
                               "a BEPS item not yet netted, rejected or cancelled"))
    pkg = _package(tx, package_id)
    if pkg.state in NETTED_PACKAGE_STATES:
        raise Conflict(Problem("beps_item_final_after_netting", "/id", payment["id"],
                               "a BEPS item not yet netted",
                               f"its package {package_id} is netted"))
    outbox_state = tx.query_one("SELECT state FROM outbox WHERE id = ?", (pkg.outbox_id,))[0]
    if pkg.state == "sealed" and outbox_state in UNSENT_OUTBOX:
        return _take_out_of_sealed(gw, tx, payment, pkg, reason, by, now)
    if kind != items.CREDIT_OUT:
        raise Conflict(Problem("beps_item_already_packed", "/id", payment["id"],
                               "a debit not yet sent in its package",
                               "a sent beps.127 is answered by the payer bank's receipt"))
    if pkg.state not in ASKABLE_PACKAGE_STATES or outbox_state not in TAKEN_BY_NPC:
        raise Conflict(Problem("payment_in_flight", "/id", payment["id"],
                               "a package the NPC has taken",
                               f"package {package_id} is on its way; try again once the "
                               "NPC has it"))
    return NpcRequest(package_id, OriginalRef(pkg.msg_id, pkg.sender, pkg.msg_type),
                      OriginalTx(payment["payer_bank"], payment["payee_bank"],
                                 payment["tx_id"], payment["business_type"]))


def _void_if_unpacked(tx: Any, payment_id: str) -> bool:
    """Mark the item as never to be packed, if it still has no package; whether it had
    none.

    One conditional UPDATE, never a read and then a write: a sealer in another gateway
    process may assign the item to a package between the two. On PostgreSQL this UPDATE
    waits for a sealer's uncommitted assignment and then sees it (no row changed: the
    item is answered for as packed); a sealer that comes second finds the item marked
    and leaves it out. Either way the item is in a package or cancelled, never both.
    """
    return tx.execute("UPDATE beps_items SET package_id = ? WHERE payment_id = ? AND "
                      "package_id IS NULL", (packer.VOID, payment_id)) == 1


def asked(tx: Any, payment_id: str, package_id: str, request_msg_id: str,
          now: datetime) -> None:
    """Our ccms.307 about the item is on its way: netting notices wait for the answer."""
    tx.execute("INSERT INTO beps_cancel_waits (payment_id, package_id, request_msg_id, "
               "asked_at) VALUES (?, ?, ?, ?)",
               (payment_id, package_id, request_msg_id, now.isoformat()))


def waiting_for_answer(tx: Any, package_id: str) -> set[str]:
    """The items of the package whose ccms.307 the NPC has not answered yet."""
    return {row[0] for row in tx.query(
        "SELECT w.payment_id FROM beps_cancel_waits w JOIN beps_items i ON i.payment_id = "
        "w.payment_id WHERE i.package_id = ?", (package_id,))}


def answered(gw: Any, tx: Any, payment: dict[str, Any], granted: bool, reason: str | None,
             by: str, now: datetime) -> str:
    """The NPC's word on our ccms.307 (a ccms.308, or a ccms.900 refusing the request);
    what was done: cancelled, netted, unchanged or already_final."""
    tx.execute("DELETE FROM beps_cancel_waits WHERE payment_id = ?", (payment["id"],))
    if payment["state"] in FINAL or payment["state"] == "netted":
        log.info("event=beps_cancel_answer_for_final_item payment=%s state=%s granted=%s",
                 payment["id"], payment["state"], granted)
        return "already_final"
    package_id = tx.query_one("SELECT package_id FROM beps_items WHERE payment_id = ?",
                              (payment["id"],))[0]
    # A netting notice reads whether the item waits for this answer only after it has
    # marked the package netted: with the package locked here, a refusal either finds
    # the package netted (and nets the item) or the notice finds no wait (and nets it).
    pkg = _package(tx, package_id, lock=True)
    if granted:
        _cancel(gw, tx, payment, "npc_cancel_cancelled", reason, by, now, package=pkg.id)
        # The NPC took it out of the package's NbOfTxs and CtrlSum: so do we.
        tx.execute("UPDATE beps_packages SET count = count - 1, total_fen = total_fen - ?, "
                   "updated_at = ? WHERE id = ?", (payment["amount_fen"], now.isoformat(),
                                                   pkg.id))
        _close_if_empty(tx, pkg.id, now)
        return "cancelled"
    if pkg.state in NETTED_PACKAGE_STATES:
        assert pkg.netting_date and pkg.netting_round is not None, \
            f"netted package {pkg.id} has its netting date and round"
        items.net(tx, gw, [payment], pkg.id, pkg.netting_date, pkg.netting_round, now)
        items.settle_if_round_settled(tx, gw, pkg.netting_date, pkg.netting_round, now)
        return "netted"
    return "unchanged"


def _cancel(gw: Any, tx: Any, payment: dict[str, Any], event: str, reason: str | None,
            by: str, now: datetime, **detail: Any) -> dict[str, Any]:
    """The item is out of every package: its hold back to the payer, its state final."""
    released = None
    if payment["hold_id"]:
        released = gw.ledger.release(tx, f"{payment['id']}:cancel:release",
                                     int(payment["hold_id"]), gw.work_date)
    payments.transition(tx, payment, "cancelled", event, now, gw.notifier,
                        reason=reason or "cancelled_at_request", by=by,
                        released_entry=released, **detail)
    return {"payment": payment["id"], "state": "cancelled", "released_entry": released}


def _take_out_of_sealed(gw: Any, tx: Any, payment: dict[str, Any], pkg: _Package,
                        reason: str | None, by: str, now: datetime) -> dict[str, Any]:
    payments.leave_group(tx, payment["id"], items.package_subject(pkg.id))
    tx.execute("UPDATE beps_items SET package_id = ? WHERE payment_id = ?",
               (packer.VOID, payment["id"]))
    rest = items.package_payments(tx, pkg.id)
    if rest:
        _rebuild(gw, tx, pkg, payment["tx_id"], rest, now)
    else:
        _change_unsent(tx, pkg, "UPDATE outbox SET state = 'done', updated_at = ? "
                       "WHERE id = ? AND state IN ('pending', 'dead')",
                       (now.isoformat(), pkg.outbox_id))
        tx.execute("DELETE FROM archive WHERE direction = 'out' AND mesg_type = ? AND "
                   "mesg_id = ?", (pkg.msg_type, pkg.mesg_id))
        _set_totals(tx, pkg.id, "cancelled", 0, 0, now)
    result = _cancel(gw, tx, payment, "cancelled_from_package", reason, by, now,
                     package=pkg.id, left_in_package=len(rest))
    log.info("event=beps_item_taken_out_of_package payment=%s package=%s left=%s",
             payment["id"], pkg.id, len(rest))
    return dict(result, cancelled="from_package", package=pkg.id)


def _rebuild(gw: Any, tx: Any, pkg: _Package, tx_id: str, rest: list[dict[str, Any]],
             now: datetime) -> None:
    """The sealed package's stored bytes less one transaction, signed again."""
    stored = packer.stored_envelope(tx, pkg.outbox_id)
    decoded = codec.decode(stored)
    assert decoded.header.mesg_id == pkg.mesg_id, f"outbox row of package {pkg.id}"
    smaller = package_mod.without(decoded.obj, frozenset({tx_id}))
    # The package must carry exactly the items still assigned to it, nothing more.
    assert sorted(t.tx_id for t in smaller.transfers) == sorted(p["tx_id"] for p in rest), \
        f"package {pkg.id} carries the items assigned to it"
    body = codec.build_body(decoded.mtype.code, smaller)
    envelope = codec.encode(decoded.header, body, gw.keyring)
    # An outbox row that carries the bytes itself (sealed before they were kept only in
    # the archive) gets the new ones too.
    _change_unsent(tx, pkg, "UPDATE outbox SET envelope = CASE WHEN envelope IS NULL THEN "
                   "NULL ELSE ? END, updated_at = ? WHERE id = ? AND state IN ('pending', "
                   "'dead')", (envelope, now.isoformat(), pkg.outbox_id))
    tx.execute("UPDATE archive SET envelope = ? WHERE direction = 'out' AND mesg_type = ? "
               "AND mesg_id = ?", (envelope, pkg.msg_type, pkg.mesg_id))
    _set_totals(tx, pkg.id, "sealed", smaller.header.count, smaller.header.total_fen, now)


def _change_unsent(tx: Any, pkg: _Package, sql: str, params: tuple) -> None:
    """Change the package's outbox row only while no sender has claimed it: a sender in
    another gateway process may have taken the bytes read above, and the package must
    leave as they are (Contended: the cancel runs again and finds the package sent)."""
    if tx.execute(sql, params) != 1:
        raise Contended(f"package {pkg.id} was claimed for sending meanwhile")


def _set_totals(tx: Any, package_id: str, state: str, count: int, total_fen: int,
                now: datetime) -> None:
    tx.execute("UPDATE beps_packages SET state = ?, count = ?, total_fen = ?, updated_at = ? "
               "WHERE id = ?", (state, count, total_fen, now.isoformat(), package_id))


def _close_if_empty(tx: Any, package_id: str, now: datetime) -> None:
    """A sent package whose every item the NPC cancelled is netted never: `cancelled`."""
    live = tx.query_one("SELECT COUNT(*) FROM beps_items i JOIN payments p ON p.id = "
                        "i.payment_id WHERE i.package_id = ? AND p.state <> 'cancelled'",
                        (package_id,))[0]
    if live == 0:
        tx.execute("UPDATE beps_packages SET state = 'cancelled', updated_at = ? WHERE id = ?",
                   (now.isoformat(), package_id))
        log.info("event=beps_package_cancelled package=%s", package_id)
