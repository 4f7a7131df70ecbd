"""What each operator action does to a payment or a dead letter, once it may be done.

Every executor runs inside one store transaction and returns what it did plus the
Redis work to do after the commit (the database is the truth, Redis the conveyor: a
crash between the two leaves an outbox row `pending`, which start-up puts back on its
stream). An executor re-checks its preconditions when it runs, because a payment may
have been sent between the request and its approval; a refusal raises a
`PaygateError` whose codes become the request's outcome.

"Not yet sent" means: an HVPS payment is `accepted` or `held` and its outbox row is
`waiting` (for the HVPS window), `pending` (on its lane), `held` (by an operator) or
`review` (for review or screening). Once the sender has claimed the row (`sending`),
the payment is on the wire and only a cancellation request to the NPC (ccms.307) could
stop it. BEPS items travel in packages, not one outbox row each: their hold, release
and cancel are the BEPS extension's (gateway.beps.stops, added to CHANNEL_ACTIONS); a
book transfer's are gateway.internal_hold's (its hold refused: it settles at intake or
waits for the review); a new priority is for HVPS payments only.

One `sent` payment may still be held: one whose message the NPC provably never took
(gateway.outbound.Delivery: its row pending again, and every delivery attempt ended
without a connection, held while the link was down, or answered 503 or a 4xx). During
an NPC outage that is every waiting payment; holding one takes its row out of sending
(`held`), and a cancel (a second person approving) then releases its hold, as for any
payment not yet sent. A payment with an attempt that may have reached the NPC (a
timeout, a connection lost mid-request) is refused, with the reason: the NPC may have
it, and only its result, a status query or a ccms.307 can stop it. So is a cancel of a
payment held or dead-lettered after such an attempt (a retry of its dead letter sends
the same message again, which the NPC takes as a repeat).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Awaitable, Callable

from gateway import critical, keys, outbound, payments
from gateway.dayend import check_late, check_reconcilable
from gateway.errors import Conflict, NotFound, PaygateError, Problem
from gateway.ops import attention, receivables
from gateway.ops.review import OUTBOX_HELD, OUTBOX_REVIEW, is_review_hold
from gateway.screening import is_parked
from gateway.states import HELD_DEAD_LETTERED, HELD_REFUSED_AT_LINK, incoming_not_cancellable
from gateway.store import Contended

log = logging.getLogger("paygate.ops")

UNSENT_STATES = ("accepted", "held")
UNSENT_OUTBOX = ("waiting", "pending", OUTBOX_HELD, OUTBOX_REVIEW)
# An outbox row whose message the NPC refused (4xx) or that was dead-lettered: nothing
# reached the NPC; it waits for an operator's retry of its dead letter or a cancel.
OUTBOX_DEAD = "dead"
HELD_OUTBOX = (OUTBOX_HELD, OUTBOX_REVIEW)
URGENCY_BY_PRIORITY = {1: "extra_urgent", 2: "urgent", 3: "normal"}
# Undelivered entries looked through when a payment leaves a lane; a lane deeper than
# this has a bigger problem than one payment's priority, and the stale entry is harmless
# anyway (the sender claims by outbox row, so the first entry read wins).
LANE_SCAN_MAX = 10_000
LANE_SCAN_PAGE = 500

AfterCommit = Callable[[], Awaitable[Any]]

# Hold, release, cancel and the review's pass and fail of a payment of another channel
# than HVPS, added by that channel's extension (gateway.beps, whose items travel in
# packages): its precondition and
# its executor by (channel, action), each taking what the HVPS ones take (a precondition
# (tx, target, params), an executor (context, tx, target, params)).
CHANNEL_ACTIONS: dict[tuple[str, str], tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _of_channel(tx: Any, target: str, action: str) -> tuple[Callable[..., Any],
                                                           Callable[..., Any]] | None:
    """The action of the payment's channel, when it has its own. A hold or release of a
    payment held because its message died on the way is refused for every channel."""
    payment = payments.get(tx, target)
    found = CHANNEL_ACTIONS.get((payment["channel"], action))
    if found is not None and action != "cancel":
        refuse_if_dead_lettered(payment, action)
    return found


@dataclass
class Outcome:
    detail: dict[str, Any]
    after: list[AfterCommit] = field(default_factory=list)


@dataclass
class Context:
    gw: Any
    now: datetime
    request_id: int
    actor: str  # who carries the request out: its approver under dual control
    requested_by: str  # who asked for it (the actor, for an action needing no approval)

    def who(self) -> dict[str, Any]:
        """Who asked (`by`) and, when a second person approved the request, who approved
        it (`approved_by`): what the history event of an executed request records. Never
        the approver alone as `by`, as if they had asked for it themselves."""
        if self.requested_by == self.actor:
            return {"by": self.actor}
        return {"by": self.requested_by, "approved_by": self.actor}


def _unsent(tx: Any, payment_id: str, action: str,
            outbox_states: tuple[str, ...] = UNSENT_OUTBOX
            ) -> tuple[dict[str, Any], tuple[int, str, str]]:
    payment = payments.get(tx, payment_id)
    if OUTBOX_DEAD not in outbox_states:
        refuse_if_dead_lettered(payment, action)
    if payment["channel"] != "hvps":
        raise Conflict(Problem("payment_channel_not_supported", "/target", payment["channel"],
                               "an HVPS payment (BEPS items travel in packages, book "
                               "transfers settle in our own ledger)"))
    if payment["direction"] != "out" or payment["state"] not in UNSENT_STATES:
        said = f"payment {payment_id} is {payment['state']}"
        if payment["direction"] == "out" and payment["state"] == "sent" and action != "hold":
            said += (": hold it first (taken back while the NPC provably never had its "
                     f"message), then {action} it; once the NPC has it, only the NPC can stop "
                     "it (npc-cancel when it is queued there, status-query)")
        raise Conflict(Problem("payment_not_unsent", "/target", payment["state"],
                               "an outgoing payment in state accepted or held", said))
    row = outbound.credit_outbox(tx, payment_id)
    outbox = None if row is None else (row[0], row[1], row[2])
    if outbox is None or outbox[1] not in outbox_states:
        raise Conflict(Problem("payment_already_on_the_wire", "/target",
                               outbox[1] if outbox else None,
                               "an outbox row waiting, pending, held or in review",
                               f"payment {payment_id} has been handed to the sender"))
    return payment, outbox


# What each action refused on a payment whose message died expects of its payment: the
# refusal's `expected`, the precondition of the action asked for.
DEAD_LETTERED_EXPECTED = {
    "hold": "a payment whose message waits to be sent (accepted, or sent without the NPC "
            "having taken it), not one held after its message died",
    "release": "a payment held by an operator or waiting for the HVPS window",
    "priority": "a payment not yet sent whose message waits to be sent, not one held after "
                "its message died",
    "review_approve": "a payment held by the amount review or the screening",
    "review_reject": "a payment held by the amount review or the screening",
}


def refuse_if_dead_lettered(payment: dict[str, Any], action: str) -> None:
    """A payment held because its message died on the way to the NPC (the NPC refused
    it, or it failed every delivery) is neither on the wire nor waiting to be sent: only
    a retry of its dead letter sends it, and a cancel releases its hold. Any other action
    on it is refused saying so, `expected` naming what the action asked for takes."""
    reason = payment["reason"] or ""
    if payment["state"] != "held" or not reason.startswith(
            (HELD_REFUSED_AT_LINK, HELD_DEAD_LETTERED)):
        return
    pid = payment["id"]
    refused = reason.startswith(HELD_REFUSED_AT_LINK)
    what = (f"the NPC refused the message of payment {pid} ({reason}): nothing of it "
            "reached the NPC" if refused else
            f"the message of payment {pid} failed every delivery to the NPC ({reason})")
    raise Conflict(Problem(
        "payment_message_dead_lettered", "/target", reason,
        DEAD_LETTERED_EXPECTED.get(action, DEAD_LETTERED_EXPECTED["release"]),
        f"{what}, and no sender will send it; retry its dead letter once the cause is "
        f"fixed (`paygate ops dead`, then `paygate ops request retry LETTER`), or cancel "
        f"it (`paygate ops request cancel {pid}`), which releases its hold"
        + ("" if refused else " unless a delivery attempt may have reached the NPC")))


def held_for_review(payment: dict[str, Any]) -> bool:
    """Whether the amount review or the screening holds the payment: `held` with a
    review's reason, or `received`, a debit another bank sent us that the screening
    holds (its payment stays received until our receipt answers it:
    gateway.beps.debit_review)."""
    return payment["state"] in ("held", "received") and is_review_hold(payment["reason"])


def refuse_if_held_for_review(payment: dict[str, Any]) -> None:
    """A payment the amount review or the screening holds leaves only by the review's
    pass (review_approve, by a supervisor or director as its level asks) or its fail
    (review_reject), or by a cancel: an operator's release would send a sanctions hit on
    without anyone deciding it, so it is refused on every channel, saying what passes it."""
    if not held_for_review(payment):
        return
    reason, pid = payment["reason"], payment["id"]
    raise Conflict(Problem(
        "payment_held_for_review", "/target", reason, "review_approve or review_reject",
        f"payment {pid} is held for review ({reason}): a release is for payments an "
        f"operator held; pass it (`paygate ops request review-approve {pid}`) or fail it "
        f"(`paygate ops request review-reject {pid}`) in the review"))


def _set_outbox(tx: Any, outbox_id: int, state: str, now: datetime) -> None:
    tx.execute("UPDATE outbox SET state = ?, updated_at = ? WHERE id = ?",
               (state, now.isoformat(), outbox_id))


def _xadd(gw: Any, stream: str, outbox_id: int) -> AfterCommit:
    return lambda: gw.redis.xadd(stream, {"outbox": str(outbox_id)})


def _holdable(tx: Any, target: str, params: dict[str, Any]) -> Any:
    other = _of_channel(tx, target, "hold")
    if other is not None:
        return other[0](tx, target, params)
    payment = payments.get(tx, target)
    if (payment["state"], payment["direction"], payment["channel"]) == ("sent", "out", "hvps"):
        return payment, _never_taken(tx, payment)
    payment, outbox = _unsent(tx, target, "hold")
    if outbox[1] in HELD_OUTBOX:
        raise Conflict(Problem("payment_already_held", "/target", payment["reason"],
                               "a payment not held by an operator or for review"))
    # An accepted payment may carry earlier delivery attempts (its dead letter retried
    # after a timeout): the NPC may have its message, so a hold could not stop the money
    # and, the cancel being refused for the same reason, could only end in a release.
    outbound.refuse_if_maybe_taken(tx, target, "/target")
    return payment, outbox


def _never_taken(tx: Any, payment: dict[str, Any]) -> tuple[int, str, str]:
    """The outbox row of a `sent` payment whose message the NPC provably never took (see
    the module's description); refused, with what to do instead, otherwise."""
    pid = payment["id"]
    sent = outbound.delivery(tx, pid)
    if sent is None or sent.taken:
        raise Conflict(Problem(
            "payment_not_unsent", "/target", payment["state"],
            "an outgoing payment in state accepted or held, or sent without the NPC "
            "having taken its message",
            f"payment {pid} is sent and the NPC has taken its message "
            f"({sent.describe() if sent else 'no outbox row'}): only the NPC can stop it "
            "now; ask for an NPC cancellation (npc-cancel) once it is queued there, or its "
            "status (status-query)"))
    if sent.state == "sending":
        raise Conflict(Problem(
            "payment_delivery_under_way", "/target", sent.state,
            "no delivery attempt on its way to the NPC",
            f"payment {pid}: a delivery attempt is on its way to the NPC now "
            f"({sent.describe()}); ask again once it has ended (the link's timeout bounds "
            "it): if the NPC refused it or could not be reached, it can be held then"))
    outbound.refuse_if_maybe_taken(tx, pid, "/target")
    row = tx.query_one("SELECT id, state, stream FROM outbox WHERE id = ?", (sent.outbox_id,))
    return row[0], row[1], row[2]


def hold(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    other = _of_channel(tx, target, "hold")
    if other is not None:
        return other[1](c, tx, target, params)
    payment, (outbox_id, outbox_state, _) = _holdable(tx, target, params)
    # Held only while the row is as it was read and every attempt provably untaken: a
    # sender (of another gateway process, or of this one between the read and now) that
    # claimed the row meanwhile has the message on its way to the NPC.
    if not tx.execute("UPDATE outbox SET state = ?, updated_at = ? WHERE id = ? AND "
                      "state = ? AND attempts = untaken",
                      (OUTBOX_HELD, c.now.isoformat(), outbox_id, outbox_state)):
        # Refused as the row now stands (on its way, sent, or tried by an attempt that
        # may have reached the NPC); a row moved to another state that may still be held
        # (put back on its lane, say) runs the work again.
        _holdable(tx, target, params)
        raise Contended(f"outbox row {outbox_id} of payment {target} changed meanwhile")
    detail: dict[str, Any] = {}
    if payment["state"] == "sent":
        sent = outbound.delivery(tx, target)
        detail = {"taken_back_from_sending": True,
                  "delivery_attempts": sent.attempts if sent else None}
    payments.transition(tx, payment, "held", "ops_held", c.now, c.gw.notifier,
                        reason="held_by_operator", request=c.request_id, **c.who(),
                        **detail)
    return Outcome({"payment": target, "state": "held", "was": payment["state"], **detail})


def _releasable(tx: Any, target: str, params: dict[str, Any], hvps_open: bool = False
                ) -> Any:
    refuse_if_held_for_review(payments.get(tx, target))
    other = _of_channel(tx, target, "release")
    if other is not None:
        return other[0](tx, target, params)
    payment, outbox = _unsent(tx, target, "release")
    if outbox[1] == "waiting":
        # Waiting for the HVPS window: the gateway sends it at the opening by itself; an
        # operator may send it while HVPS is open (a payment the opening left behind).
        if not hvps_open:
            raise Conflict(Problem("hvps_closed", "/target", payment["reason"],
                                   "HVPS open (status 10): a payment waiting for the "
                                   "window is sent at the opening"))
        return payment, outbox
    if outbox[1] != OUTBOX_HELD:
        raise Conflict(Problem("payment_not_held", "/target", payment["reason"],
                               "a payment held by an operator or waiting for the HVPS "
                               "window"))
    return payment, outbox


def release(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    refuse_if_held_for_review(payments.get(tx, target))
    other = _of_channel(tx, target, "release")
    if other is not None:
        return other[1](c, tx, target, params)
    payment, outbox = _releasable(tx, target, params, c.gw.hvps_open)
    return _release(c, tx, payment, outbox, "ops_released")


def _release(c: Context, tx: Any, payment: dict[str, Any], outbox: tuple[int, str, str],
             event: str) -> Outcome:
    """Back on its lane when HVPS is open, else waiting for the window like at intake."""
    outbox_id, was, stream = outbox
    if c.gw.hvps_open:
        # A row waiting for the window may have been sent on by the opening meanwhile.
        if not tx.execute("UPDATE outbox SET state = 'pending', updated_at = ? WHERE id = ? "
                          "AND state = ?", (c.now.isoformat(), outbox_id, was)):
            raise Conflict(Problem("payment_already_on_the_wire", "/target", was,
                                   "an outbox row waiting, held or in review",
                                   f"payment {payment['id']} was sent on meanwhile"))
        payments.transition(tx, payment, "accepted", event, c.now, c.gw.notifier,
                            request=c.request_id, **c.who())
        tx.execute("UPDATE payments SET reason = NULL WHERE id = ?", (payment["id"],))
        return Outcome({"payment": payment["id"], "state": "accepted", "lane": stream},
                       [_xadd(c.gw, stream, outbox_id)])
    payments.transition(tx, payment, "held", event, c.now, c.gw.notifier,
                        reason="waiting_for_hvps_window", request=c.request_id, **c.who())
    _set_outbox(tx, outbox_id, "waiting", c.now)
    return Outcome({"payment": payment["id"], "state": "held",
                    "reason": "waiting_for_hvps_window"})


def _cancellable(tx: Any, target: str, params: dict[str, Any]) -> Any:
    other = _of_channel(tx, target, "cancel")
    if other is not None:
        return other[0](tx, target, params)
    # A payment held because the NPC refused its message may be cancelled too: nothing
    # of it reached the NPC. Not one with a delivery attempt that may have reached it.
    payment, outbox = _unsent(tx, target, "cancel", (*UNSENT_OUTBOX, OUTBOX_DEAD))
    outbound.refuse_if_maybe_taken(tx, payment["id"], "/target")
    return payment, outbox


def cancel(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    other = _of_channel(tx, target, "cancel")
    if other is not None:
        return other[1](c, tx, target, params)
    payment, outbox = _cancellable(tx, target, params)
    return _cancel(c, tx, payment, outbox, "ops_cancelled", "cancelled_by_operator")


def _cancel(c: Context, tx: Any, payment: dict[str, Any], outbox: tuple[int, str, str],
            event: str, reason: str) -> Outcome:
    released = None
    if payment["hold_id"]:
        released = c.gw.ledger.release(tx, f"{payment['id']}:{event}",
                                       int(payment["hold_id"]), c.gw.work_date)
    payment = payments.transition(tx, payment, "cancelled", event, c.now, c.gw.notifier,
                                  reason=reason, request=c.request_id, **c.who())
    _set_outbox(tx, outbox[0], "done", c.now)
    c.gw.ended_unsettled(tx, payment, event, reason, c.now)
    return Outcome({"payment": payment["id"], "state": "cancelled", "reason": reason,
                    "ledger_entry": released})


def _reprioritisable(tx: Any, target: str, params: dict[str, Any]
                     ) -> tuple[dict[str, Any], tuple[int, str, str]]:
    payment, outbox = _priority_changeable(tx, target)
    new = int(params["priority"])
    if payment["priority"] == new:
        raise Conflict(Problem("priority_unchanged", "/params/priority", new,
                               "a priority other than the payment's own"))
    return payment, outbox


def _priority_changeable(tx: Any, target: str
                         ) -> tuple[dict[str, Any], tuple[int, str, str]]:
    """A payment not yet sent whose message, if built already (a payment taken back from
    sending, or whose dead letter was retried), the NPC provably never had: the message
    is built again with the new priority. One a delivery attempt may have given to the
    NPC is refused: the NPC would settle the message as built, whatever the payment
    said afterwards."""
    payment, outbox = _unsent(tx, target, "priority")
    sent = outbound.delivery(tx, target)
    if sent is None or sent.attempts == sent.untaken:
        return payment, outbox
    urgency = payment["urgency"]
    raise Conflict(Problem(
        "payment_maybe_taken_by_npc", "/target", sent.attempts - sent.untaken,
        "every delivery attempt of the payment's message ended without the NPC taking it "
        "(no connection, link held while down, 503, a 4xx refusal)",
        f"payment {target}: {sent.describe()}; an attempt ended without proof that the NPC "
        f"did not take the message, so the NPC may have it as built ({urgency}, priority "
        f"{payment['priority']}) and would settle it so: its priority cannot change now. "
        "Release it (it is sent again as built, and the NPC takes it as a repeat), or ask "
        "for an NPC cancellation (npc-cancel) once it is queued there"))


def priority(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    new = int(params["priority"])
    payment, (outbox_id, outbox_state, old_lane) = _reprioritisable(tx, target, params)
    new_lane = keys.lane_for_priority(new)
    tx.execute("UPDATE payments SET priority = ?, urgency = ? WHERE id = ?",
               (new, URGENCY_BY_PRIORITY[new], target))
    # Conditional: a sender that claimed the row since it was read (another gateway
    # process) makes the work run again, and the check then refuses.
    if not tx.execute("UPDATE outbox SET stream = ?, updated_at = ? WHERE id = ? AND state = ?",
                      (new_lane, c.now.isoformat(), outbox_id, outbox_state)):
        raise Contended(f"outbox row {outbox_id} was claimed for sending meanwhile")
    # A message built already carries the old priority (SttlmPrty and the header's): it is
    # built again, or the old bytes would be what the NPC settles.
    rebuilt = outbound.rebuild_credit(
        tx, {**payment, "priority": new, "urgency": URGENCY_BY_PRIORITY[new]},
        c.gw.keyring, c.now)
    payments.transition(tx, payment, payment["state"], "ops_priority_changed", c.now,
                        c.gw.notifier, request=c.request_id, **c.who(),
                        priority_from=payment["priority"], priority_to=new,
                        message_rebuilt=rebuilt)
    after: list[AfterCommit] = []
    if outbox_state == "pending":
        after = [lambda: drop_from_lane(c.gw.redis, old_lane, outbox_id),
                 _xadd(c.gw, new_lane, outbox_id)]
    return Outcome({"payment": target, "priority_from": payment["priority"],
                    "priority_to": new, "lane": new_lane, "message_rebuilt": rebuilt}, after)


async def drop_from_lane(r: Any, stream: str, outbox_id: int) -> int:
    """Delete the not yet delivered entries of one outbox row from a lane."""
    groups = await r.xinfo_groups(stream)
    start = next((g["last-delivered-id"] for g in groups if g["name"] == keys.GROUP), "0-0")
    dropped, seen = 0, 0
    while seen < LANE_SCAN_MAX:
        entries = await r.xrange(stream, min=f"({start}", count=LANE_SCAN_PAGE)
        if not entries:
            break
        seen += len(entries)
        stale = [eid for eid, f in entries if f.get("outbox") == str(outbox_id)]
        if stale:
            dropped += await r.xdel(stream, *stale)
        start = entries[-1][0]
    return dropped


def review_approve(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    other = _of_channel(tx, target, "review_approve")
    if other is not None:
        return other[1](c, tx, target, params)
    payment, outbox = _review_hold(tx, target, params)
    return _release(c, tx, payment, outbox, "review_approved")


def review_reject(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    other = _of_channel(tx, target, "review_reject")
    if other is not None:
        return other[1](c, tx, target, params)
    payment, outbox = _review_hold(tx, target, params)
    return _cancel(c, tx, payment, outbox, "review_rejected", "review_rejected")


def _review_hold(tx: Any, target: str, params: dict[str, Any]) -> Any:
    """The payment and outbox row of an HVPS payment the review holds (another
    channel's review actions check their own: a BEPS credit set aside)."""
    other = _of_channel(tx, target, "review_approve")
    if other is not None:
        return other[0](tx, target, params)
    payment, outbox = _unsent(tx, target, "review_approve")
    if outbox[1] not in HELD_OUTBOX or not is_review_hold(payment["reason"]):
        raise Conflict(Problem("payment_not_held_for_review", "/target", payment["reason"],
                               "a payment held by the amount review or the screening"))
    return payment, outbox


def retry(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """Put a dead letter's fields back on its stream (read from Redis before the call).
    A dead outbox row is pending again, and its payment, held since its message died,
    accepted again: the sender sends the stored bytes and the payment goes on as usual."""
    stream, fields = params["stream"], params["fields"]
    if stream == keys.INBOUND and str(fields.get("inbox", "")).isdigit():
        # A message dead-lettered was marked failed so that nothing retried it by itself;
        # the operator's retry makes it a message to process again.
        tx.execute("UPDATE inbox SET state = 'received' WHERE id = ? AND state = 'failed'",
                   (int(fields["inbox"]),))
    payment_id = _revive(c, tx, fields)

    async def put_back() -> None:
        await c.gw.redis.xadd(stream, fields)
        await c.gw.redis.xdel(keys.DEAD, target)
        log.info("event=dead_letter_retried letter=%s stream=%s outbox=%s payment=%s",
                 target, stream, fields.get("outbox"), payment_id)
    return Outcome({"dead_letter": target, "stream": stream, "fields": fields,
                    "payment": payment_id}, [put_back])


def _revive(c: Context, tx: Any, fields: dict[str, Any]) -> str | None:
    """The dead outbox row of a letter pending again, its held payment accepted; the
    payment's id (None for a letter of other work)."""
    if "outbox" not in fields:
        return None
    row = tx.query_one("UPDATE outbox SET state = 'pending', updated_at = ? WHERE id = ? "
                       "AND state = ? RETURNING kind, payment_id",
                       (c.now.isoformat(), int(fields["outbox"]), OUTBOX_DEAD))
    if row is None:
        found = tx.query_one("SELECT payment_id FROM outbox WHERE id = ?",
                             (int(fields["outbox"]),))
        return found[0] if found else None
    kind, payment_id = row
    revive = c.gw.outbox_revive_hooks.get(kind)
    if revive is not None:  # a BEPS package: its items held since it died go on
        revive(tx, int(fields["outbox"]), c.now, request=c.request_id, **c.who())
    if kind == "hvps_credit" and payment_id is not None:
        payment = payments.get(tx, payment_id)
        if payment["state"] == "held":
            payments.transition(tx, payment, "accepted", "ops_retried", c.now,
                                c.gw.notifier, request=c.request_id, **c.who())
            tx.execute("UPDATE payments SET reason = NULL WHERE id = ?", (payment_id,))
    return payment_id


def _failed_webhook_rows(tx: Any, target: str, params: dict[str, Any]) -> list[int]:
    """The failed webhook rows a `webhook_resend` names: one row's id, or `failed` for
    every one (after the core system was down longer than the retries last)."""
    if target == WEBHOOK_ALL_FAILED:
        rows = tx.query("SELECT id FROM outbox WHERE kind = 'webhook' AND state = 'failed' "
                        "ORDER BY id", ())
        if not rows:
            raise Conflict(Problem("webhook_row_not_failed", "/target", target,
                                   "a failed webhook row (alert webhook_delivery_failed)",
                                   "no webhook row is failed now: nothing to send again"))
        return [int(r[0]) for r in rows]
    # The outbox holds every kind of message the gateway sends: a row of another kind (a
    # payment's hvps.111, a package) is no webhook row, whatever its state.
    row = tx.query_one("SELECT state FROM outbox WHERE id = ? AND kind = 'webhook'",
                       (int(target),))
    if row is None:
        raise NotFound(Problem("webhook_row_not_found", "/target", target,
                               "the id of a webhook row (alert webhook_delivery_failed), or "
                               "`failed` for every failed one",
                               f"no webhook row has id {target}"))
    if row[0] != "failed":
        raise Conflict(Problem("webhook_row_not_failed", "/target", row[0],
                               "a failed webhook row (alert webhook_delivery_failed)",
                               f"webhook row {target} is {row[0]} (delivered, or waiting "
                               "for its next attempt): nothing to send again"))
    return [int(target)]


WEBHOOK_ALL_FAILED = "failed"


def webhook_resend(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """Failed webhook rows pushed again from their first attempt, their events as they
    are (the core system may see a change twice, as after any retry)."""
    ids = _failed_webhook_rows(tx, target, params)
    tx.executemany("UPDATE outbox SET state = 'pending', attempts = 0, updated_at = ? "
                   "WHERE id = ? AND state = 'failed'", [(c.now.isoformat(), i) for i in ids])

    async def push() -> None:
        for outbox_id in ids:
            await c.gw.redis.xadd(keys.WEBHOOK, {"outbox": str(outbox_id)})
    return Outcome({"webhook_rows": ids}, [push])


# What a dead letter holds besides the entry's own fields (`payment`, `package`, `query` or
# `free_format` names the work).
DEAD_META = ("stream", "entry", "reason", "deliveries", "payment", "package", "query",
             "free_format")


async def read_dead_letter(r: Any, entry_id: str) -> dict[str, Any]:
    """The stream and original fields of one dead letter, for `retry`."""
    entries = await r.xrange(keys.DEAD, min=entry_id, max=entry_id)
    if not entries:
        raise NotFound(Problem("dead_letter_not_found", "/target", entry_id,
                               "the id of an entry in the dead-letter stream"))
    fields = entries[0][1]
    stream = fields.get("stream", "")
    if stream not in keys.ALL_STREAMS:
        raise Conflict(Problem("dead_letter_stream_unknown", "/target", stream,
                               "one of the gateway's work streams"))
    original = {k: v for k, v in fields.items() if k not in DEAD_META}
    return {"stream": stream, "fields": original, "reason": fields.get("reason", "")}


def alert_acknowledge(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """A supervisor closes a critical alert (gateway.critical): /health no longer says
    `attention` for it. The request's note says what was done about it."""
    row = tx.query_one("SELECT note FROM ops_requests WHERE id = ?", (c.request_id,))
    return Outcome(critical.acknowledge(tx, target, c.actor, row[0] if row else "", c.now))


def alert_close(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """An operator closes an ordinary alert once it has been looked at (ops.attention):
    it moves to the history. The request's note says what was done about it."""
    row = tx.query_one("SELECT note FROM ops_requests WHERE id = ?", (c.request_id,))
    return Outcome(attention.close(tx, target, c.actor, row[0] if row else "", c.now))


def day_end(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """A missed day end, run late: the ledger day closed now; once committed, its reports
    written and the date reconciled."""
    day = date.fromisoformat(target)
    detail = c.gw.day_end.close_late(
        tx, day, f" (request {c.request_id}, approved by {c.actor})")

    async def reconcile() -> None:
        await c.gw.day_end.write_reports(day)
        c.gw.day_end.reconcile_later(day)
    return Outcome(detail, [reconcile])


def hvps_reconcile(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """Ask the NPC again for a closed date's HVPS totals (hvps.710): the date is owed its
    reconciliation again in this transaction; once committed, it is asked for."""
    day = date.fromisoformat(target)
    detail = c.gw.day_end.ask_again(tx, day)

    async def reconcile() -> None:
        c.gw.day_end.reconcile_later(day)
    return Outcome(detail, [reconcile])


# The precondition of each payment action, as its executor checks it.
PRECONDITIONS: dict[str, Callable[[Any, str, dict[str, Any]], Any]] = {
    "hold": _holdable, "release": _releasable, "cancel": _cancellable,
    "priority": _reprioritisable, "review_approve": _review_hold,
    "review_reject": _review_hold, "webhook_resend": _failed_webhook_rows,
    "alert_acknowledge": lambda tx, target, params: critical.check_acknowledgeable(tx, target),
    "alert_close": lambda tx, target, params: attention.check_closable(tx, target),
    "hvps_reconcile": lambda tx, target, params: check_reconcilable(tx, target),
}


def check_target(gw: Any, tx: Any, action: str, target: str, params: dict[str, Any]) -> None:
    """Refuse at once, with the error its execution would give, a request that could not
    run now (a cancel of a payment already cancelled or sent): not a pending request that
    fails only once a supervisor approves it. It is checked again when it runs, since
    the payment may move between the request and the approval."""
    refuse_other_direction(tx, action, target)
    _check_precondition(gw, tx, action, target, params)
    _assert_may_apply(tx, action, target)


def refuse_other_direction(tx: Any, action: str, target: str) -> None:
    """Refuse, before any check of its channel or state, an action of outgoing payments
    (a hold, release, cancel or new priority: ROW_SCOPES) on an incoming one, whatever
    its state: such a payment was never ours to send, and an incoming one is returned
    to its sender instead (`return`). A cancel keeps the code the core system's API
    gives for it; a release of a debit the review holds says what passes it."""
    scope = ROW_SCOPES.get(action)
    if scope is None or action in REVIEW_ACTIONS:
        return
    payment = payments.get(tx, target)
    if payment["direction"] in {direction for direction, _ in scope}:
        return
    if action == "release":
        refuse_if_held_for_review(payment)
    if action == "cancel":
        raise incoming_not_cancellable("/target", payment)
    raise Conflict(Problem(
        "payment_direction_not_supported", "/target", payment["direction"],
        "an outgoing payment", f"payment {target} is an incoming one ({payment['state']}): "
        f"{action} is for outgoing payments only; an incoming one is returned instead"))


def _check_precondition(gw: Any, tx: Any, action: str, target: str,
                        params: dict[str, Any]) -> None:
    if action == "day_end":
        check_late(tx, date.fromisoformat(target), gw.work_date, gw.calendar)
    elif action in receivables.ACTIONS:
        receivables.check(gw, tx, action, target)
    elif action == "release":
        _releasable(tx, target, params, gw.hvps_open)
    elif action in GATEWAY_PRECONDITIONS:
        GATEWAY_PRECONDITIONS[action](gw, tx, target, params)
    elif action in PRECONDITIONS:
        PRECONDITIONS[action](tx, target, params)


# Preconditions that read the gateway's own parts (its ledger's accounts, its work date),
# given the gateway first; added by the parts of the gateway whose actions need them.
GATEWAY_PRECONDITIONS: dict[str, Callable[[Any, Any, str, dict[str, Any]], Any]] = {}


def offerable(gw: Any, tx: Any, action: str, target: str) -> bool:
    """Whether a request of `action` on the payment `target` would be taken now (for
    `priority`: a move to some other lane). Reads only."""
    try:
        if action == "priority":
            refuse_other_direction(tx, action, target)
            _priority_changeable(tx, target)
            _assert_may_apply(tx, action, target)
        else:
            check_target(gw, tx, action, target, {})
    except PaygateError:
        return False
    return True


# Which payments a request of each action a row of the console's lists offers
# (control.ROW_ACTIONS) can be taken for at all, by what the payment's row alone says:
# its (direction, channel), and for the review's pass and fail a payment the review
# holds (a reason of gateway.ops.review.REASON_PREFIXES), for a release one it does not
# hold (its first check, `refuse_if_held_for_review`). Each precondition refuses every
# other payment (an HVPS action takes only outgoing HVPS payments, a BEPS item's hold
# and cancel only outgoing items, a book transfer's hold and release none), so the
# console's rows answer no for them without running it (`may_apply`). A precondition
# that passes for a payment outside its action's scope trips the assertion in
# `check_target`, so a precondition widened without its scope fails the first request
# or detail view that meets it, never quietly hides a row's button.
ROW_SCOPES: dict[str, frozenset[tuple[str, str]]] = {
    "hold": frozenset({("out", "hvps"), ("out", "beps")}),
    "release": frozenset({("out", "hvps"), ("out", "beps")}),
    "cancel": frozenset({("out", "hvps"), ("out", "beps"), ("out", "internal")}),
    "priority": frozenset({("out", "hvps")}),
    "review_approve": frozenset({("out", "hvps"), ("out", "beps"), ("out", "internal"),
                                 ("in", "beps")}),
    "review_reject": frozenset({("out", "hvps"), ("out", "beps"), ("out", "internal"),
                                ("in", "beps")}),
}
REVIEW_ACTIONS = ("review_approve", "review_reject")
# Actions a row offers only for a credit the screening parked in suspense
# (gateway.screening.parked), whose review they decide there: applied to its payee
# (`suspense_apply`) or returned (`return`), each under dual control; added by
# gateway.exceptions.ops. Any other payment is applied or returned from its detail view:
# their checks read its suspense item, its returns, its account's balance, which a list
# reads only for the few parked ones (control.ROW_READERS), never for every row.
PARKED_ROW_ACTIONS: list[str] = []


def may_apply(action: str, payment: dict[str, Any]) -> bool:
    """False when no request of `action` can be taken for this payment, whatever else is
    recorded about it (ROW_SCOPES); True when its precondition must tell. An action
    without a scope may apply to any payment."""
    scope = ROW_SCOPES.get(action)
    if scope is None:
        return True
    if (payment["direction"], payment["channel"]) not in scope:
        return False
    if action in REVIEW_ACTIONS:
        # A credit the screening parked in suspense is decided by applying or returning
        # it (PARKED_ROW_ACTIONS), not by the review's pass or fail.
        return is_review_hold(payment["reason"]) and not is_parked(payment)
    return action != "release" or not held_for_review(payment)


def may_offer_on_row(action: str, payment: dict[str, Any]) -> bool:
    """False when a row of the console's lists does not offer `action` for this payment
    whatever else is recorded about it: an action of PARKED_ROW_ACTIONS for any payment
    but a parked credit, any other as `may_apply` says. True when its precondition must
    tell."""
    if action in PARKED_ROW_ACTIONS:
        return is_parked(payment)
    return may_apply(action, payment)


def _assert_may_apply(tx: Any, action: str, target: str) -> None:
    """A precondition of a scoped action that passed did so for a payment in its scope."""
    if action in ROW_SCOPES:
        payment = payments.get(tx, target)
        assert may_apply(action, payment), (
            f"the precondition of {action} passed for payment {target} "
            f"({payment['direction']}, {payment['channel']}, {payment['state']}, "
            f"{payment['reason']}), which ROW_SCOPES rules out: widen its scope")


def receivable_collect(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """Debit the account a receivable names and close it (gateway.ops.receivables)."""
    return Outcome(receivables.collect(c.gw, tx, c.request_id, c.who(), target, c.now))


def receivable_reverse(c: Context, tx: Any, target: str, params: dict[str, Any]) -> Outcome:
    """Reverse what last changed a receivable (gateway.ops.receivables)."""
    return Outcome(receivables.reverse(c.gw, tx, c.request_id, c.who(), target, c.now))


EXECUTORS: dict[str, Callable[[Context, Any, str, dict[str, Any]], Outcome]] = {
    "retry": retry, "hold": hold, "release": release, "cancel": cancel,
    "priority": priority, "review_approve": review_approve, "review_reject": review_reject,
    "day_end": day_end, "hvps_reconcile": hvps_reconcile, "webhook_resend": webhook_resend,
    "alert_acknowledge": alert_acknowledge, "alert_close": alert_close,
    receivables.COLLECT: receivable_collect, receivables.REVERSE: receivable_reverse,
}
