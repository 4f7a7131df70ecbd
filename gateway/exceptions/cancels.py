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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway import payments
from gateway.errors import Conflict, Problem, ValidationFailed
from gateway.exceptions import outcomes, schema, status, wire
from gateway.exceptions.wire import Entry
from gateway.inbound import Processed
from gateway.messages import ccms307, codec
from gateway.messages.ccms900 import CANCELLED

REASON_LEN_MAX = 256  # Cntt is Max256Text
UNSENT_STATES = ("accepted", "held")
UNSENT_OUTBOX = ("waiting", "pending", "held", "review")


def check_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str) or not 0 < len(reason.strip()) <= REASON_LEN_MAX:
        raise ValidationFailed(Problem("cancel_reason_malformed", "/reason", reason,
                                       f"text of 1 to {REASON_LEN_MAX} characters"))
    return reason.strip()


def request_tx(gw: Any, tx: Any, payment_id: str, reason: str | None, by: str,
               now: datetime) -> tuple[dict[str, Any], list[Entry]]:
    """Cancel now, or ask the NPC to; (what happened, stream entries)."""
    payment = payments.get(tx, payment_id)
    if payment["direction"] == "out" and payment["channel"] == "beps":
        return _cancel_beps(gw, tx, payment, reason, by, now), []
    if payment["direction"] != "out" or payment["channel"] != "hvps":
        raise Conflict(Problem("cancel_only_for_outgoing_hvps_payments", "/id", payment_id,
                               "an outgoing HVPS payment"))
    if payment["state"] in UNSENT_STATES:
        return _cancel_unsent(gw, tx, payment, reason, by, now), []
    if payment["state"] != "queued":
        raise Conflict(Problem("payment_not_cancellable", "/state", payment["state"],
                               "a payment not yet sent, or queued at the NPC"))
    pending = schema.open_request(tx, "cancel", payment_id)
    if pending is not None:
        raise Conflict(Problem("cancel_already_requested", "/id", payment_id,
                               "no cancellation request waiting for its answer",
                               f"request {pending['id']} waits for the NPC's ccms.308"))
    return _ask_npc(gw, tx, payment, reason, by, now)


def _cancel_beps(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
                 now: datetime) -> dict[str, Any]:
    """A BEPS item can be cancelled while it waits to be packed; once in a package it is
    on its way to netting, and once netted it is final (已轧差即具有支付最终性)."""
    item = tx.query_one("SELECT package_id, netting_round FROM beps_items "
                        "WHERE payment_id = ?", (payment["id"],))
    if payment["state"] in ("netted", "settled") or (item and item[1]):
        raise Conflict(Problem("beps_item_final_after_netting", "/id", payment["id"],
                               "a BEPS item not yet netted"))
    if payment["state"] != "accepted" or item is None or item[0] is not None:
        raise Conflict(Problem("beps_item_already_packed", "/id", payment["id"],
                               "a BEPS item still waiting to be packed",
                               "the package is on its way to netting at the NPC"))
    released = gw.ledger.release(tx, f"{payment['id']}:cancel:release",
                                 int(payment["hold_id"]), gw.work_date)
    payments.transition(tx, payment, "cancelled", "cancelled_before_packing", now,
                        gw.notifier, reason=reason or "cancelled_at_request", by=by,
                        released_entry=released)
    return {"payment": payment["id"], "state": "cancelled", "cancelled": "before_packing",
            "released_entry": released}


def _cancel_unsent(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
                   now: datetime) -> dict[str, Any]:
    outbox = tx.query_one("SELECT id, state FROM outbox WHERE payment_id = ? "
                          "AND kind = 'hvps_credit' ORDER BY id DESC", (payment["id"],))
    if outbox is None or outbox[1] not in UNSENT_OUTBOX:
        raise Conflict(Problem("payment_in_flight", "/id", payment["id"],
                               "a payment not yet handed to the sender",
                               "try again once the NPC has answered (queued payments can "
                               "be cancelled)"))
    released = None
    if payment["hold_id"]:
        released = gw.ledger.release(tx, f"{payment['id']}:cancel:release",
                                     int(payment["hold_id"]), gw.work_date)
    tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE id = ?",
               (now.isoformat(), outbox[0]))
    payments.transition(tx, payment, "cancelled", "cancelled_before_sending", now,
                        gw.notifier, reason=reason or "cancelled_at_request", by=by,
                        released_entry=released)
    outcomes.return_ended(gw, tx, payment, "cancelled_before_sending", reason, now)
    return {"payment": payment["id"], "state": "cancelled", "cancelled": "before_sending",
            "released_entry": released}


def _ask_npc(gw: Any, tx: Any, payment: dict[str, Any], reason: str | None, by: str,
             now: datetime) -> tuple[dict[str, Any], list[Entry]]:
    def build(group: Any) -> bytes:
        return ccms307.build(ccms307.CancelRequest(group, wire.original_of(payment),
                                                   wire.original_tx_of(payment), reason))
    msg_id, mesg_id, entry = wire.queue_request(gw, tx, now, ccms307.MESSAGE_TYPE, payment,
                                                build)
    request_id = schema.add_request(tx, "cancel", payment["id"], msg_id, mesg_id, by, reason,
                                    now)
    payments.transition(tx, payment, payment["state"], "cancel_requested", now, gw.notifier,
                        request=request_id, msg_id=msg_id, by=by)
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
