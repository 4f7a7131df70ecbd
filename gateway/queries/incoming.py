"""What other banks send us: their queries, their replies to ours, and free text.

Each handler runs inside the transaction that marks the inbox row processed, so a query
is recorded, answered and its reply put in the outbox together, or not at all. The same
query delivered twice under two header ids is recorded once (its sender and XML MsgId
identify it), and so is a reply.

A query is linked to our payment when we can find it, answered at once when the policy
and our records allow (answers.py), and otherwise raised to operators with its due time.
A reply is matched to our query by the MsgId it answers (OrgnlGrpHdr); it also closes the
chases of the same query, since they ask the same thing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from gateway import payments
from gateway.inbound import Processed
from gateway.messages import ccms303, ccms314, codec
from gateway.queries import answers, deadlines, notify, outgoing, records, wire

log = logging.getLogger("paygate.queries")

ALERT_NEEDS_OPERATOR = "query_needs_operator"
ALERT_REPLY_UNMATCHED = "query_reply_unmatched"


def on_query(tx: Any, desk: Any, d: codec.Decoded, now: datetime) -> tuple[Processed,
                                                                           wire.Pushes]:
    q: ccms314.Query = d.obj
    sender = d.header.orig_sender
    if records.find_by_message(tx, "in", sender, q.header.msg_id) is not None:
        log.info("event=duplicate_query sender=%s msg_id=%s", sender, q.header.msg_id)
        return Processed({"duplicate_query": q.header.msg_id}), []
    subject_tx = q.subject_tx
    subject = answers.Subject(q.subject.msg_id, q.subject.instg_party, q.subject.mt,
                              subject_tx.tx_id if subject_tx else None)
    payment = answers.find_payment(tx, subject)
    handling = answers.decide(desk.policy, q.query_type, q.content, q.amount_fen, payment)
    row = records.insert(tx, _query_row(desk, d, q, payment, handling, now))
    pushes: wire.Pushes = []
    if payment is not None:
        payments.transition(tx, payment, payment["state"], "query_received", now, None,
                            query=row["id"])
    if handling == answers.AUTO:
        row, pushes = outgoing.send_our_reply(tx, desk, row, answers.answer_text(tx, payment),
                                              answers.AUTO, now)
    else:
        desk.gw.alert(tx, ALERT_NEEDS_OPERATOR, query=row["id"], counterparty=sender,
                      payment=row["payment_id"], reason=handling, due=row["reply_due_at"])
    hook = notify.queue_webhook(tx, desk.gw, "query_received", now, row["payment_id"],
                                query=records.view(row, now))
    return Processed({"query": row["id"], "handling": handling}), pushes + (
        [hook] if hook else [])


def _query_row(desk: Any, d: codec.Decoded, q: ccms314.Query, payment: dict[str, Any] | None,
               handling: str, now: datetime) -> dict[str, Any]:
    tx_ref = q.subject_tx
    sender = d.header.orig_sender
    return {
        "id": f"QI{sender}{q.header.msg_id}", "direction": "in", "state": "open",
        "system": q.header.system, "counterparty": sender,
        "our_party": q.header.instd_party, "their_party": q.header.instg_party,
        "msg_id": q.header.msg_id, "mesg_id": d.header.mesg_id,
        "query_type": q.query_type, "content": q.content, "amount_fen": q.amount_fen,
        "currency": q.currency, "orig_msg_id": q.subject.msg_id,
        "orig_instg_party": q.subject.instg_party, "orig_mt": q.subject.mt,
        "orig_tx_id": tx_ref.tx_id if tx_ref else None,
        "orig_instg_indirect": tx_ref.instg_indirect if tx_ref else None,
        "orig_instd_indirect": tx_ref.instd_indirect if tx_ref else None,
        "orig_tx_type": tx_ref.business_type if tx_ref else None,
        "payment_id": payment["id"] if payment else None, "source": "counterparty",
        "requested_by": q.header.instg_party, "asked_at": now.isoformat(),
        "reply_due_at": deadlines.reply_due(desk.gw.calendar, now, desk.policy).isoformat(),
        "handling": handling, "created_at": now.isoformat(), "updated_at": now.isoformat(),
    }


def on_reply(tx: Any, desk: Any, d: codec.Decoded, now: datetime) -> tuple[Processed,
                                                                           wire.Pushes]:
    r: ccms314.Reply = d.obj
    sender = d.header.orig_sender
    reply_id = f"A{sender}{r.header.msg_id}"
    if records.reply_exists(tx, reply_id):
        log.info("event=duplicate_query_reply sender=%s msg_id=%s", sender, r.header.msg_id)
        return Processed({"duplicate_reply": r.header.msg_id}), []
    query = None
    if r.query.instg_party in desk.gw.own_banks | {desk.gw.settings.bank_code}:
        query = records.find_ours(tx, r.query.msg_id)
    if query is not None and query["counterparty"] != sender:
        query = None  # only the bank we asked may answer our query
    late = query is not None and records.is_late(query, now)
    reply = records.add_reply(tx, {
        "id": reply_id, "feed_seq": payments.next_seq(tx, "query_feed"),
        "query_id": query["id"] if query else None, "direction": "in", "sender": sender,
        "msg_id": r.header.msg_id, "mesg_id": d.header.mesg_id,
        "answered_msg_id": r.query.msg_id, "content": r.content,
        "replied_by": r.header.instg_party, "at": now.isoformat(), "late": int(late)})
    if query is None:
        desk.gw.alert(tx, ALERT_REPLY_UNMATCHED, sender=sender, msg_id=r.header.msg_id,
                      answers=r.query.msg_id)
    else:
        _close_family(tx, query, r, sender, now)
    hook = notify.queue_webhook(
        tx, desk.gw, "query_replied", now, query["payment_id"] if query else None,
        query=records.view(records.get(tx, query["id"]), now) if query else None,
        reply=records.reply_view(reply))
    return Processed({"reply": reply_id, "query": query["id"] if query else None,
                      "late": late}), [hook] if hook else []


def _close_family(tx: Any, query: dict[str, Any], r: ccms314.Reply, sender: str,
                  now: datetime) -> None:
    """Answer the query and every open query of its chase family (same matter)."""
    root = query["chase_of"] or query["id"]
    family = [query] + [q for q in records.chase_family(tx, root) if q["id"] != query["id"]]
    for member in family:
        if member["state"] != "open":
            log.info("event=query_reply_again query=%s sender=%s", member["id"], sender)
            continue
        records.answer(tx, member, now, r.header.msg_id, r.content, f"bank:{sender}")
    if query["payment_id"]:
        payment = payments.get(tx, query["payment_id"])
        payments.transition(tx, payment, payment["state"], "query_replied", now, None,
                            query=query["id"])


def on_free_format(tx: Any, desk: Any, d: codec.Decoded, now: datetime) -> tuple[Processed,
                                                                                 wire.Pushes]:
    m: ccms303.FreeFormat = d.obj
    sender = d.header.orig_sender
    item_id = f"FI{sender}{m.header.msg_id}"
    if records.free_format_exists(tx, item_id):
        return Processed({"duplicate_free_format": m.header.msg_id}), []
    item = records.add_free_format(tx, {
        "id": item_id, "feed_seq": payments.next_seq(tx, "free_format_feed"),
        "direction": "in", "sender": sender, "receiver": d.header.orig_receiver,
        "system": m.header.system, "msg_id": m.header.msg_id, "mesg_id": d.header.mesg_id,
        "content": m.content, "requested_by": m.header.instg_party, "at": now.isoformat()})
    hook = notify.queue_webhook(tx, desk.gw, "free_format_received", now, None,
                                message=records.free_format_view(item))
    return Processed({"free_format": item_id}), [hook] if hook else []
