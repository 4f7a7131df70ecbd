"""Unknown outcomes: a payment with no result in time is asked about, never resent.

A payment the NPC took (its outbox row `sent` or `acked`: the link answered 2xx) that
has no ccms.900 within `settings.result_timeout_s` moves to `unknown`, and a ccms.316
asks the NPC what became of it. The ccms.317 is acted on as outcomes.py describes; the
payment is never sent again under a new message id and nothing is reversed on a guess.
A query without an answer within the same timeout is asked again, at most
`QUERIES_MAX` times in all; then the operators are alerted and the payment stays
`unknown` until someone (or a late result) settles the question.

A payment whose message the NPC has not taken (its outbox row waiting, pending or
`sending`: no 2xx and no ccms.990 for it yet) is never asked about, by the sweep or on
request: the sender's retries (or an operator's, from the dead letters) will deliver it,
and asked meanwhile the NPC could only answer that it has no such message (PR24), which
would end as a rejection a payment the NPC settles once the message arrives. A request
is refused (`payment_not_yet_taken_by_npc`) rather than kept until the message is
taken: operators see at once where the payment stands, and the result that follows the
delivery answers the question anyway. Should a PR24 still come for a payment whose
message is not taken (a question asked before that rule, or by another road), it is not
believed: the payment goes back to `sent`, where the sweep asks again once the message
has been taken and its result is overdue (alert `status_answer_not_believed`).

A payment `queued` at the NPC (PR12) waits for a later ccms.900 (PR04 once the clearing
account is funded, PR08 at the NPC's day end); should that be lost, the payment would
stay queued for ever while the NPC's books moved. So a queued payment without news for
`settings.queued_query_after_s` (since it was queued or last asked about) is asked
about too, and again after each further interval; so is every queued payment once the
NPC's day has ended (HVPS status 40) or our work date has moved past the day it was
queued on, when no queue can still hold it (a payment taken the day before and queued at
this day's opening is in today's queue: its own work date does not make it carried). It
stays `queued` while asked (the NPC did tell us it was queued). At most
`settings.queued_queries_per_sweep_max` such questions go per pass, oldest news first,
so that a long queue is asked about over several passes rather than all at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gateway import outbound, payments
from gateway.errors import Conflict, Problem
from gateway.exceptions import outcomes, schema, wire
from gateway.exceptions.wire import Entry
from gateway.inbound import Processed
from gateway.messages import ccms316, codec

QUERIES_MAX = 5        # per payment; five unanswered queries mean the link itself is sick
SWEEP_BATCH_MAX = 100  # payments moved to unknown (and queries repeated) per sweep
QUERYABLE_STATES = ("sent", "queued", "unknown")

_OVERDUE = (
    "SELECT p.id FROM payments p JOIN outbox o ON o.payment_id = p.id "
    "AND o.kind = 'hvps_credit' WHERE p.direction = 'out' AND p.state = 'sent' "
    "AND o.state IN ('sent', 'acked') AND o.updated_at <= ? ORDER BY o.updated_at LIMIT ?")
# Queued payments due a question: no news (state change or question) since `cutoff`, or
# any age once the NPC's day ended or our work date moved past the day the NPC queued
# them (`carried`: queued on an earlier day than our work date, by the first row of
# their present stay in `queued`; one taken the day before, held for the window and
# queued at the opening is not); none while a question about them is open or was asked
# or answered since `cutoff`. A payment taken on our work date cannot be carried: the
# test on its work date spares the others the look at their history.
_QUEUED_DUE = (
    "SELECT id, carried FROM (SELECT p.id, p.updated_at, (p.work_date < ? AND EXISTS ("
    "SELECT 1 FROM payment_events e WHERE e.payment_id = p.id AND e.state = 'queued' "
    "AND e.at < ? AND e.id > COALESCE((SELECT MAX(f.id) FROM payment_events f "
    "WHERE f.payment_id = p.id AND f.state != 'queued'), 0))) AS carried "
    "FROM payments p WHERE p.direction = 'out' AND p.channel = 'hvps' "
    "AND p.state = 'queued' AND NOT EXISTS (SELECT 1 FROM exc_requests r "
    "WHERE r.kind = 'status' AND r.payment_id = p.id AND (r.state = 'sent' "
    "OR r.created_at > ? OR r.answered_at > ?))) due "
    "WHERE ? OR carried OR updated_at <= ? ORDER BY updated_at LIMIT ?")
NPC_DAY_ENDED = "40"  # ccms.801 end-of-day processing: the NPC's queue is emptied
_UNANSWERED = ("SELECT id, payment_id FROM exc_requests WHERE kind = 'status' "
               "AND state = 'sent' AND created_at <= ? ORDER BY id LIMIT ?")


def ask_tx(gw: Any, tx: Any, payment: dict[str, Any], why: str, now: datetime,
           enter_unknown: bool, by: str = "gateway") -> list[Entry]:
    """Queue a ccms.316 about `payment` (first moving it to `unknown` when asked to)."""
    if enter_unknown and payment["state"] != "unknown":
        payment = payments.transition(tx, payment, "unknown", "outcome_unknown", now,
                                      gw.notifier, why=why)

    def build(group: Any) -> bytes:
        return ccms316.build(ccms316.StatusQuery(group, wire.original_of(payment),
                                                 wire.original_tx_of(payment)))
    msg_id, mesg_id, entry = wire.queue_request(gw, tx, now, ccms316.MESSAGE_TYPE, payment,
                                                build)
    request_id = schema.add_request(tx, "status", payment["id"], msg_id, mesg_id, by, why,
                                    now)
    payments.transition(tx, payment, payment["state"], "status_query_sent", now, gw.notifier,
                        request=request_id, msg_id=msg_id, why=why, by=by)
    return [entry]


def check_queryable(tx: Any, payment: dict[str, Any]) -> None:
    """Refuse a question about a payment that is not ours on its way, or whose message
    the NPC has not taken yet (see the module's description)."""
    if payment["direction"] != "out" or payment["state"] not in QUERYABLE_STATES:
        raise Conflict(Problem("payment_not_queryable", "/state", payment["state"],
                               "an outgoing payment sent, queued or unknown"))
    if payment["channel"] != "hvps":
        # A ccms.316 names one message; a BEPS item travels in a package, whose netting
        # notice tells what became of it. Asked about the item's own message id, the
        # NPC could only answer that it has no such message (PR24), which would end as a
        # rejection, its hold released, an item the NPC then nets with its package.
        raise Conflict(Problem("payment_not_queryable", "/channel", payment["channel"],
                               "an outgoing HVPS payment sent, queued or unknown",
                               f"payment {payment['id']} is a BEPS item: its package's "
                               "netting notice says what became of it (GET "
                               "/v1/packages/{id}); to withdraw it, cancel it"))
    sent = outbound.delivery(tx, payment["id"])
    if sent is not None and not sent.taken:
        raise Conflict(Problem(
            "payment_not_yet_taken_by_npc", "/state", payment["state"],
            "a payment whose message the NPC has taken (answered 2xx, or its ccms.990 "
            "came)",
            f"payment {payment['id']}: its message is not taken by the NPC yet "
            f"({sent.describe()}); asked now, the NPC could only answer that it has no "
            "such message. The gateway delivers it as soon as the link answers and its "
            "result follows; ask again once it has been delivered (an operator may hold "
            "it meanwhile while no attempt can have reached the NPC)"))


def request_tx(gw: Any, tx: Any, payment_id: str, by: str,
               now: datetime) -> tuple[dict[str, Any], list[Entry]]:
    """Ask about a payment on request (core system, operator); it need not be overdue."""
    payment = payments.get(tx, payment_id)
    check_queryable(tx, payment)
    entries = ask_tx(gw, tx, payment, "requested", now,
                     enter_unknown=payment["state"] == "sent", by=by)
    return {"payment": payment_id, "state": payments.get(tx, payment_id)["state"],
            "status_query": "sent"}, entries


def sweep_tx(gw: Any, tx: Any, now: datetime, timeout_s: float) -> list[Entry]:
    """Move overdue payments to `unknown` and ask; ask again where no answer came."""
    cutoff = (now - timedelta(seconds=timeout_s)).isoformat()
    entries: list[Entry] = []
    for (payment_id,) in tx.query(_OVERDUE, (cutoff, SWEEP_BATCH_MAX)):
        payment = payments.get(tx, payment_id)
        entries += ask_tx(gw, tx, payment, "result_overdue", now, enter_unknown=True)
    for request_id, payment_id in tx.query(_UNANSWERED, (cutoff, SWEEP_BATCH_MAX)):
        # Conditional: the answer may be handled by another process while this sweep
        # runs, and must not be overwritten by "unanswered".
        if not schema.give_up_request(tx, request_id, now):
            continue
        payment = payments.get(tx, payment_id)
        if payment["state"] != "unknown":
            continue
        asked = tx.query_one("SELECT COUNT(*) FROM exc_requests WHERE kind = 'status' "
                             "AND payment_id = ?", (payment_id,))[0]
        if asked >= QUERIES_MAX:
            gw.alert(tx, "status_queries_unanswered", payment=payment_id, asked=asked)
            continue
        entries += ask_tx(gw, tx, payment, "query_unanswered", now, enter_unknown=False)
    return entries + queued_tx(gw, tx, now)


def queued_tx(gw: Any, tx: Any, now: datetime) -> list[Entry]:
    """Ask about the queued payments that are due (see the module's description)."""
    settings = gw.settings
    cutoff = (now - timedelta(seconds=settings.queued_query_after_s)).isoformat()
    day_ended = getattr(gw, "hvps_status", None) == NPC_DAY_ENDED
    work_date = gw.work_date.isoformat()
    due = tx.query(_QUEUED_DUE, (work_date, work_date, cutoff, cutoff, day_ended, cutoff,
                                 settings.queued_queries_per_sweep_max))
    entries: list[Entry] = []
    for payment_id, carried in due:
        payment = payments.get(tx, payment_id)
        why = ("npc_day_ended" if day_ended else "work_date_moved" if carried
               else "queued_too_long")
        entries += ask_tx(gw, tx, payment, why, now, enter_unknown=False)
    return entries


def on_response(gw: Any, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
    """A ccms.317: act on the NPC's status of the payment asked about."""
    resp: ccms316.StatusResponse = d.obj
    req = schema.request_by_msg_id(tx, resp.query.msg_id)
    if req is None or req["kind"] != "status":
        gw.alert(tx, "status_answer_for_unknown_query", msg_id=resp.query.msg_id,
                 status=resp.npc.status)
        return Processed({"unknown_query": resp.query.msg_id})
    npc = resp.npc
    answer = {"status": npc.status, "code": npc.code, "info": npc.reject_info,
              "settlement_date": npc.settlement_date}
    payment = payments.get(tx, req["payment_id"])
    sent = outbound.delivery(tx, payment["id"])
    if npc.status == outcomes.NOT_ACCEPTED and sent is not None and not sent.taken:
        return _not_believed(gw, tx, req, payment, sent, answer, now)
    schema.answer_request(tx, req["id"], "answered", answer, now)
    done = outcomes.apply(gw, tx, payment, npc.status, npc.settlement_date, now, "npc_status",
                          npc.reject_info or npc.code)
    if done == "not_understood":
        gw.alert(tx, "status_answer_not_understood", payment=payment["id"],
                 status=npc.status, npc_code=npc.code)
    return Processed({"payment": payment["id"], "npc_status": npc.status, "done": done})


def _not_believed(gw: Any, tx: Any, req: dict[str, Any], payment: dict[str, Any],
                  sent: outbound.Delivery, answer: dict[str, Any], now: datetime) -> Processed:
    """A "no such message" (PR24) about a payment whose message the NPC has not taken
    yet: true when asked, and no word on what becomes of the message once delivered. The
    payment goes back to `sent` (from `unknown`), where the sweep looks after it again
    once the message is taken."""
    schema.answer_request(tx, req["id"], "answered", dict(answer, believed=False), now)
    back = "sent" if payment["state"] == "unknown" else payment["state"]
    payments.transition(tx, payment, back, "npc_status_not_believed", now, gw.notifier,
                        request=req["id"], npc_code=answer["code"], outbox=sent.outbox_id,
                        outbox_state=sent.state, why="message_not_yet_taken")
    gw.alert(tx, "status_answer_not_believed", payment=payment["id"], request=req["id"],
             npc_status=answer["status"], npc_code=answer["code"],
             message=f"the NPC has no such message while ours is still on its way "
                     f"({sent.describe()}); the payment stays {back} until its result")
    return Processed({"payment": payment["id"], "npc_status": answer["status"],
                      "done": "not_believed"})


def unknown_since(tx: Any, payment_id: str) -> str | None:
    """When the payment last entered `unknown` (its history's first unknown entry after
    its last entry in another state)."""
    return payments.reached_at(tx, payment_id, "unknown")


def queries_asked(tx: Any, payment_id: str) -> int:
    return tx.query_one("SELECT COUNT(*) FROM exc_requests WHERE kind = 'status' "
                        "AND payment_id = ?", (payment_id,))[0]
