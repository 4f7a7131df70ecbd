"""Cancelling one of our BEPS items before it is netted (ccms.307 → ccms.308).

Netting is final (已轧差即具有支付最终性): a netted item is never cancelled. Before that
an outgoing item can be withdrawn wherever it is:

- waiting to be packed: cancelled at once, its hold released; the packer never takes it.
- set aside by an operator (gateway.beps.stops, out of every package): cancelled at once.
- in a package the NPC provably never had (gateway.beps.unsent: sealed and not yet
  claimed by the sender, refused at the link, held by an operator, or every delivery
  attempt of it failed without reaching the NPC, as during an NPC outage): taken out of
  the package here.
  The package is rebuilt from its stored bytes less that transaction, under the same
  MsgId and header MesgID, with the NbOfTxs and CtrlSum of what is left, and signed
  again; nothing of it reached the NPC, so nobody sees two versions. A package left
  empty is `cancelled`: its outbox row is closed and its archive row dropped, since it
  will never be on the wire.
- in a package being sent now, or one a delivery attempt may have given the NPC (a
  timeout): refused, since the NPC may net it as sent (`payment_in_flight`,
  `payment_maybe_taken_by_npc`).
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
from gateway.beps import items, packer, unsent
from gateway.errors import Conflict, Problem
from gateway.messages import codec, package as package_mod
from gateway.messages.common import OriginalRef, OriginalTx
from gateway.states import FINAL

log = logging.getLogger("paygate.beps.cancels")

# The outbox states of a package the NPC has taken (posted with a 2xx, or acknowledged).
TAKEN_BY_NPC = ("sent", "acked")
ASKABLE_PACKAGE_STATES = ("sent", "waiting")
SYSTEM = "BEPS"  # the header system of our ccms.307 about a BEPS package
NETTED_PACKAGE_STATES = ("netted", "settled")
# A cancellation's refusals when the package cannot be changed here and the NPC cannot be
# asked either (gateway.beps.unsent.refusal).
CANCEL_CODES = {"final": "payment_not_cancellable", "sending": "payment_in_flight",
                "maybe": "payment_maybe_taken_by_npc", "taken": "payment_in_flight"}


@dataclass(frozen=True)
class NpcRequest:
    """What our ccms.307 names: the package the NPC holds and the transaction in it."""

    package_id: str
    package: OriginalRef
    transaction: OriginalTx


def _final(payment_id: str, detail: str = "") -> Conflict:
    return Conflict(Problem("beps_item_final_after_netting", "/id", payment_id,
                            "a BEPS item not yet netted", detail))


def request(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
            now: datetime, approved_by: str | None = None) -> dict[str, Any] | NpcRequest:
    """Cancel an outgoing BEPS item now (what was done), or say what to ask the NPC.
    `approved_by`: the second person of an operators' cancel, beside `by` who asked."""
    approved = payments.approval(approved_by)
    if payment["state"] in NETTED_PACKAGE_STATES:
        raise _final(payment["id"])
    if payment["state"] not in FINAL and _void_if_unpacked(tx, payment["id"]):
        result = _cancel(gw, tx, payment, "cancelled_before_packing", reason, by, now,
                         **approved)
        return dict(result, cancelled="before_packing")
    pkg = locate(tx, payment)
    assert pkg is not None, f"payment {payment['id']}'s item was voided or is packed"
    if pkg.changeable:
        left = take_out(gw, tx, payment, pkg, packer.VOID, now)
        result = _cancel(gw, tx, payment, "cancelled_from_package", reason, by, now,
                         package=pkg.id, left_in_package=left, **approved)
        return dict(result, cancelled="from_package", package=pkg.id)
    return NpcRequest(pkg.id, OriginalRef(pkg.msg_id, pkg.sender, pkg.msg_type),
                      OriginalTx(payment["payer_bank"], payment["payee_bank"],
                                 payment["tx_id"], payment["business_type"]))


def check(tx: Any, payment: dict[str, Any]) -> unsent.Package | None:
    """Refuse, with the error `request` would give, a cancellation that could not run
    now; reads only (an operator's npc-cancel is checked so when it is asked for, not
    only once a second person approves it). Where `request` would find the item."""
    if payment["state"] in NETTED_PACKAGE_STATES:
        raise _final(payment["id"])
    return locate(tx, payment)


def locate(tx: Any, payment: dict[str, Any]) -> unsent.Package | None:
    """Where a cancellation of the item finds it: None while it waits to be packed or is
    set aside by an operator (cancelled at once); its package when the package can be
    changed here (the item taken out of it) or the NPC holds it (asked to take it out).
    Refused with the rule otherwise: netted, final, a debit the payer bank has, a package
    on its way or one the NPC may have (gateway.beps.unsent)."""
    item = items.place(tx, payment["id"])
    assert item is not None, f"outgoing BEPS payment {payment['id']} has an item"
    kind, package_id, netting_round = item
    if netting_round:
        raise _final(payment["id"])
    if payment["state"] in FINAL or package_id == packer.VOID:
        raise Conflict(Problem("payment_not_cancellable", "/state", payment["state"],
                               "a BEPS item not yet netted, rejected or cancelled"))
    if package_id in (None, packer.HELD_OUT):
        return None
    pkg = unsent.read(tx, package_id)
    assert pkg is not None, f"package {package_id} of a packed item exists"
    if pkg.state in NETTED_PACKAGE_STATES:
        raise _final(payment["id"], f"its package {package_id} is netted")
    if pkg.changeable:
        return pkg
    if kind != items.CREDIT_OUT:
        raise Conflict(Problem("beps_item_already_packed", "/id", payment["id"],
                               "a debit not yet sent in its package",
                               "a sent beps.127 is answered by the payer bank's receipt"))
    if pkg.state in ASKABLE_PACKAGE_STATES and pkg.delivery is not None \
            and pkg.delivery.state in TAKEN_BY_NPC:
        return pkg
    raise unsent.refusal(pkg, "/id", payment["id"], CANCEL_CODES)


def _void_if_unpacked(tx: Any, payment_id: str) -> bool:
    """Mark the item as never to be packed, if it still has no package (waiting, or set
    aside by an operator); whether it had none.

    One conditional UPDATE, never a read and then a write: a sealer in another gateway
    process may assign the item to a package between the two. On PostgreSQL this UPDATE
    waits for a sealer's uncommitted assignment and then sees it (no row changed: the
    item is answered for as packed); a sealer that comes second finds the item marked
    and leaves it out. Either way the item is in a package or cancelled, never both.
    """
    return tx.execute("UPDATE beps_items SET package_id = ? WHERE payment_id = ? AND "
                      "(package_id IS NULL OR package_id = ?)",
                      (packer.VOID, payment_id, packer.HELD_OUT)) == 1


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
    pkg = unsent.read(tx, package_id, lock=True)
    assert pkg is not None, f"package {package_id} of a packed item exists"
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
    reason = reason or "cancelled_at_request"
    payments.transition(tx, payment, "cancelled", event, now, gw.notifier, reason=reason,
                        by=by, released_entry=released, **detail)
    items.unheld_ended(tx, gw, [payment], "cancelled", {"reason": reason, **detail}, now)
    return {"payment": payment["id"], "state": "cancelled", "released_entry": released}


def take_out(gw: Any, tx: Any, payment: dict[str, Any], pkg: unsent.Package, to: str | None,
             now: datetime) -> int:
    """Take the item out of a package nothing of which reached the NPC (`pkg.changeable`)
    and give it the package id `to` (VOID: never packed; HELD_OUT: set aside by an
    operator; None: waiting to be packed again). The package is rebuilt without it, or
    cancelled when it was the last; how many items the package keeps."""
    assert pkg.changeable, f"package {pkg.id} may be with the NPC"
    payments.leave_group(tx, [payment["id"]], items.package_subject(pkg.id))
    tx.execute("UPDATE beps_items SET package_id = ?, taken_out_of = ? WHERE payment_id = ?",
               (to, pkg.id, payment["id"]))
    rest = items.package_payments(tx, pkg.id)
    if rest:
        _rebuild(gw, tx, pkg, payment["tx_id"], rest, now)
    else:
        close_unsent(tx, pkg, now)
    log.info("event=beps_item_taken_out_of_package payment=%s package=%s left=%s to=%s",
             payment["id"], pkg.id, len(rest), to)
    return len(rest)


def close_unsent(tx: Any, pkg: unsent.Package, now: datetime) -> None:
    """A package nothing of which reached the NPC, left with no item to send: cancelled,
    its outbox row closed and its bytes dropped from the archive, since it will never be
    on the wire."""
    unsent.change_unsent(tx, pkg, "UPDATE outbox SET state = 'done', updated_at = ?",
                         (now.isoformat(),))
    tx.execute("DELETE FROM archive WHERE direction = 'out' AND mesg_type = ? AND "
               "mesg_id = ?", (pkg.msg_type, pkg.mesg_id))
    _set_totals(tx, pkg.id, "cancelled", 0, 0, now)
    log.info("event=beps_package_cancelled package=%s", pkg.id)


def _rebuild(gw: Any, tx: Any, pkg: unsent.Package, tx_id: str, rest: list[dict[str, Any]],
             now: datetime) -> None:
    """The package's stored bytes less one transaction, signed again; its state kept."""
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
    unsent.change_unsent(tx, pkg, "UPDATE outbox SET envelope = CASE WHEN envelope IS NULL "
                         "THEN NULL ELSE ? END, updated_at = ?", (envelope, now.isoformat()))
    tx.execute("UPDATE archive SET envelope = ? WHERE direction = 'out' AND mesg_type = ? "
               "AND mesg_id = ?", (envelope, pkg.msg_type, pkg.mesg_id))
    _set_totals(tx, pkg.id, pkg.state, smaller.header.count, smaller.header.total_fen, now)


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
