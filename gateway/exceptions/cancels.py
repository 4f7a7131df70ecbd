"""Cancelling an outgoing payment (ccms.307 → ccms.308).

A payment not yet handed to the sender (accepted or held, its outbox row still waiting,
pending or held) is cancelled here and now: its hold is released and its outbox row
closed, so the sender will never put it on the wire. A payment queued at the NPC (PR12)
can only be withdrawn by the NPC: we send a ccms.307 and the payment stays `queued`
until the ccms.308 answers. PR08 cancels it and releases the hold; PR09 refuses, and
since a refusal means the payment is no longer simply queued (typically it settled
meanwhile and the result is late or lost), we ask the NPC for its status (ccms.316)
rather than guess. Anything else (sent and not yet answered, or final) cannot be
cancelled.

A BEPS item can be cancelled until it is netted (gateway.beps.cancels): at once while
it waits to be packed or sits in a package not yet sent, or by a ccms.307 naming its
package and transaction once the NPC has the package. The ccms.308 is acted on as
stated; a refusal leaves the item where it is (no status query: BEPS answers come with
the package's netting notice).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway import intake, internal_hold, outbound, payments
from gateway.beps import cancels as beps_cancels
from gateway.beps import items as beps_items
from gateway.errors import Conflict, Problem
from gateway.exceptions import outcomes, schema, status, wire
from gateway.exceptions.wire import Entry
from gateway.inbound import Processed
from gateway.messages import ccms307, codec
from gateway.messages.ccms900 import CANCELLED
from gateway.messages.common import OriginalRef, OriginalTx
from gateway.ops import control
from gateway.states import incoming_not_cancellable

REASON_LEN_MAX = 256  # Cntt is Max256Text
UNSENT_STATES = ("accepted", "held")
# "dead": the NPC refused the message (4xx) or it was dead-lettered, and the payment waits
# held (gateway.app.Gateway.outbox_dead); it is cancelled here only while no delivery attempt
# may have reached the NPC (gateway.outbound.refuse_if_maybe_taken).
UNSENT_OUTBOX = ("waiting", "pending", "held", "review", "dead")
# A BEPS item may be cancelled until its package is netted (docs/beps.md).
BEPS_CANCELLABLE_STATES = ("accepted", "held", "sent", "queued")


def check_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    return intake.reason_text(reason, "cancel_reason_malformed", REASON_LEN_MAX)


def request_tx(gw: Any, tx: Any, payment_id: str, reason: str | None, by: str,
               now: datetime, approved_by: str | None = None
               ) -> tuple[dict[str, Any], list[Entry]]:
    """Cancel now, or ask the NPC to; (what happened, stream entries). `by` is who asked;
    `approved_by` the second person who approved it under dual control (operators'),
    recorded beside `by` in the history."""
    # Locked before looking for a request waiting for its answer: asking keeps the
    # payment's state, so two requests at once (two gateway processes, the core system
    # and an operator) would otherwise both find none and both send a ccms.307.
    payment = payments.get(tx, payment_id, lock=True)
    if by.startswith(CORE_PREFIX):
        _refuse_others_return(tx, payment)
        control.refuse_core_overtaking(tx, payment_id, "cancel", now,
                                       _package_of(tx, payment))
    if payment["direction"] == "out" and payment["channel"] == "beps":
        _refuse_if_pending(tx, payment_id)
        return _cancel_beps(gw, tx, payment, reason, by, now, approved_by)
    if payment["direction"] == "out" and payment["channel"] == internal_hold.CHANNEL:
        done = internal_hold.cancel(gw, tx, payment, "cancelled_before_settling",
                                    reason or "cancelled_at_request",
                                    {"by": by, **payments.approval(approved_by)}, now, "/id")
        return dict(done, cancelled="before_settling"), []
    if payment["direction"] != "out" or payment["channel"] != "hvps":
        raise incoming_not_cancellable("/id", payment)
    if payment["state"] in UNSENT_STATES:
        return _cancel_unsent(gw, tx, payment, reason, by, now, approved_by), []
    if payment["state"] != "queued":
        raise _not_cancellable(tx, payment)
    _refuse_if_pending(tx, payment_id)
    return _ask_npc(gw, tx, payment, reason, by, now, wire.original_of(payment),
                    wire.original_tx_of(payment), approved_by=approved_by)


def _package_of(tx: Any, payment: dict[str, Any]) -> str | None:
    """The package carrying an outgoing BEPS item (None for any other payment, or an
    item not in a package): operators' requests on it decide the item's money too."""
    if payment["direction"] != "out" or payment["channel"] != "beps":
        return None
    place = beps_items.place(tx, payment["id"])
    return place[1] if place is not None else None


# Who asked, as the API names the core system's requests ("core:<client>").
CORE_PREFIX = "core:"


def _refuse_others_return(tx: Any, payment: dict[str, Any]) -> None:
    """A return the core system did not ask for (operators' under dual control, or the
    gateway's automatic return of suspense) is not the core system's to cancel: that
    would undo a decision two people made, a screened credit's return among them. 409
    `return_not_requested_by_core_system`; operators cancel it from the console."""
    row = schema.return_by_id(tx, payment["id"])
    if row is None or row["direction"] != "out" or row["requested_by"].startswith(CORE_PREFIX):
        return
    approved = f" and {row['approved_by']} approved" if row["approved_by"] else ""
    raise Conflict(Problem(
        "return_not_requested_by_core_system", "/id", payment["id"],
        "a payment the core system submitted, or a return it asked for",
        f"payment {payment['id']} returns {row['original_id']} as {row['requested_by']} "
        f"asked{approved}: only operators may cancel it (paygate ops request cancel, under "
        "dual control)"))


def check_cancellable(tx: Any, payment: dict[str, Any]) -> None:
    """Refuse, with the error `request_tx` would give, a cancellation that could not be
    asked for now; reads only (an operator's request is checked so before a second
    person approves it). A BEPS item is looked for where `request_tx` would find it: a
    package being sent, or one a delivery attempt may have given the NPC, is refused now
    (gateway.beps.cancels.locate), not once approved."""
    pid = payment["id"]
    if payment["direction"] == "out" and payment["channel"] == "beps":
        if payment["state"] not in BEPS_CANCELLABLE_STATES \
                and payment["state"] not in ("netted", "settled"):
            raise Conflict(Problem("payment_not_cancellable", "/state", payment["state"],
                                   "a BEPS item not yet netted, rejected or cancelled"))
        beps_cancels.check(tx, payment)
        _refuse_if_pending(tx, pid)
        return
    if payment["direction"] == "out" and payment["channel"] == internal_hold.CHANNEL:
        internal_hold.check_cancel(payment, "/id")
        return
    if payment["direction"] != "out" or payment["channel"] != "hvps":
        raise incoming_not_cancellable("/id", payment)
    if payment["state"] in UNSENT_STATES:
        _unsent_outbox(tx, payment)
        return
    if payment["state"] != "queued":
        raise _not_cancellable(tx, payment)
    _refuse_if_pending(tx, pid)


def _not_cancellable(tx: Any, payment: dict[str, Any]) -> Conflict:
    """The refusal of a cancellation of an HVPS payment neither unsent nor queued, with
    what may be done instead of a payment sent whose message the NPC has not taken."""
    advice = ""
    sent = outbound.delivery(tx, payment["id"]) if payment["state"] == "sent" else None
    if sent is not None and not sent.taken:
        advice = (f"payment {payment['id']} is sent but the NPC has not taken its message "
                  f"({sent.describe()}): the NPC has nothing to cancel. "
                  + ("An operator may hold it (ops request hold) and then cancel it, since "
                     "no attempt can have reached the NPC" if sent.provably_untaken else
                     "An attempt may have reached the NPC, so it is not taken back: wait "
                     "for its result, then ask its status or cancel it while queued"))
    return Conflict(Problem("payment_not_cancellable", "/state", payment["state"],
                            "a payment not yet sent, or queued at the NPC", advice))


def _refuse_if_pending(tx: Any, payment_id: str) -> None:
    pending = schema.open_request(tx, "cancel", payment_id)
    if pending is not None:
        raise Conflict(Problem("cancel_already_requested", "/id", payment_id,
                               "no cancellation request waiting for its answer",
                               f"request {pending['id']} waits for the NPC's ccms.308"))


def _cancel_beps(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
                 now: datetime, approved_by: str | None
                 ) -> tuple[dict[str, Any], list[Entry]]:
    """Done at once before the package is sent; asked of the NPC once it has it."""
    outcome = beps_cancels.request(gw, tx, payment, reason, by, now, approved_by)
    if not isinstance(outcome, beps_cancels.NpcRequest):
        return outcome, []
    result, entries = _ask_npc(gw, tx, payment, reason, by, now, outcome.package,
                               outcome.transaction, beps_cancels.SYSTEM, approved_by)
    beps_cancels.asked(tx, payment["id"], outcome.package_id, result["msg_id"], now)
    return dict(result, package=outcome.package_id), entries


def _cancel_unsent(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
                   now: datetime, approved_by: str | None) -> dict[str, Any]:
    outbox = _unsent_outbox(tx, payment)
    released = None
    if payment["hold_id"]:
        released = gw.ledger.release(tx, f"{payment['id']}:cancel:release",
                                     int(payment["hold_id"]), gw.work_date)
    tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE id = ?",
               (now.isoformat(), outbox[0]))
    payments.transition(tx, payment, "cancelled", "cancelled_before_sending", now,
                        gw.notifier, reason=reason or "cancelled_at_request", by=by,
                        **payments.approval(approved_by), released_entry=released)
    outcomes.return_ended(gw, tx, payment, "cancelled_before_sending", reason, now)
    return {"payment": payment["id"], "state": "cancelled", "cancelled": "before_sending",
            "released_entry": released}


def _unsent_outbox(tx: Any, payment: dict[str, Any]) -> tuple[int, str]:
    """The outbox row of a payment not yet handed to the sender (id, state)."""
    outbox = tx.query_one("SELECT id, state FROM outbox WHERE payment_id = ? "
                          "AND kind = 'hvps_credit' ORDER BY id DESC", (payment["id"],))
    if outbox is None or outbox[1] not in UNSENT_OUTBOX:
        raise Conflict(Problem("payment_in_flight", "/id", payment["id"],
                               "a payment not yet handed to the sender",
                               "try again once the NPC has answered (queued payments can "
                               "be cancelled)"))
    outbound.refuse_if_maybe_taken(tx, payment["id"], "/id")
    return outbox


def _ask_npc(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
             now: datetime, original: OriginalRef, original_tx: OriginalTx | None,
             system: str = wire.SYSTEM, approved_by: str | None = None
             ) -> tuple[dict[str, Any], list[Entry]]:
    def build(group: Any) -> bytes:
        return ccms307.build(ccms307.CancelRequest(group, original, original_tx, reason))
    msg_id, mesg_id, entry = wire.queue_request(gw, tx, now, ccms307.MESSAGE_TYPE, payment,
                                                build, system)
    request_id = schema.add_request(tx, "cancel", payment["id"], msg_id, mesg_id, by, reason,
                                    now)
    payments.transition(tx, payment, payment["state"], "cancel_requested", now, gw.notifier,
                        request=request_id, msg_id=msg_id, by=by,
                        **payments.approval(approved_by))
    return {"payment": payment["id"], "state": payment["state"], "cancelled": "requested",
            "request": request_id, "msg_id": msg_id}, [entry]


def on_response(gw: Any, tx: Any, d: codec.Decoded, now: datetime,
                push: Any) -> Processed:
    """A ccms.308: grant (PR08) or refusal (PR09) of our ccms.307."""
    resp: ccms307.CancelResponse = d.obj
    req = schema.request_by_msg_id(tx, resp.request.msg_id)
    if req is None or req["kind"] != "cancel":
        gw.alert(tx, "cancel_answer_for_unknown_request", msg_id=resp.request.msg_id,
                 status=resp.status)
        return Processed({"unknown_request": resp.request.msg_id})
    answer = {"status": resp.status, "code": resp.code, "info": resp.reject_info}
    payment = payments.get(tx, req["payment_id"])
    if payment["channel"] == "beps":
        return _beps_answer(gw, tx, req, resp, answer, payment, now)
    if resp.cancelled:
        schema.answer_request(tx, req["id"], "granted", answer, now)
        done = outcomes.apply(gw, tx, payment, CANCELLED, None, now, "npc_cancel",
                              req["reason"] or "cancelled_at_request")
        if done == "already_final" and payment["state"] != "cancelled":
            gw.alert(tx, "cancel_granted_for_final_payment", payment=payment["id"],
                     state=payment["state"])
        return Processed({"payment": payment["id"], "cancel": "granted", "done": done})
    schema.answer_request(tx, req["id"], "refused", answer, now)
    payments.transition(tx, payment, payment["state"], "cancel_refused", now, gw.notifier,
                        request=req["id"], code=resp.code, info=resp.reject_info)
    entries: list[Entry] = []
    if payment["state"] == "queued":
        entries = status.ask_tx(gw, tx, payment, "cancel_refused", now, enter_unknown=True)
    return Processed({"payment": payment["id"], "cancel": "refused", "code": resp.code},
                     [lambda: push(entries)] if entries else [])


def _beps_answer(gw: Any, tx: Any, req: dict[str, Any], resp: ccms307.CancelResponse,
                 answer: dict[str, Any], payment: dict[str, Any], now: datetime) -> Processed:
    """A ccms.308 about an item of one of our BEPS packages: PR08 took it out before
    netting; a refusal leaves it in its package, whatever became of that."""
    state = "granted" if resp.cancelled else "refused"
    schema.answer_request(tx, req["id"], state, answer, now)
    if not resp.cancelled:
        payment = payments.transition(tx, payment, payment["state"], "cancel_refused", now,
                                      gw.notifier, request=req["id"], code=resp.code,
                                      info=resp.reject_info)
    done = beps_cancels.answered(gw, tx, payment, resp.cancelled,
                                 req["reason"] or "cancelled_at_request", req["requested_by"],
                                 now)
    if resp.cancelled and done == "already_final" and payment["state"] != "cancelled":
        gw.alert(tx, "cancel_granted_for_final_payment", payment=payment["id"],
                 state=payment["state"])
    return Processed({"payment": payment["id"], "cancel": state, "code": resp.code,
                      "done": done})


def request_failed(gw: Any, tx: Any, req: dict[str, Any], now: datetime) -> None:
    """The NPC refused our ccms.307 itself (a ccms.900): for a BEPS item that is a
    refusal too, and its netting no longer waits for an answer."""
    payment = payments.get(tx, req["payment_id"])
    if req["kind"] == "cancel" and payment["channel"] == "beps":
        beps_cancels.answered(gw, tx, payment, False, None, req["requested_by"], now)
