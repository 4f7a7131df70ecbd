"""The NPC refuses a query, a reply or free text of ours: a ccms.900 PR09 about our
ccms.314, ccms.315 or ccms.303 (the NPC would not forward it: the receiver is no
participant, say), or a ccms.911 discarding it (its signature or format failed). Either
way the message never reached the bank: no reply will come to a query, and a reply
did not answer.

- A query becomes `refused`, with the NPC's code and reason: no reply is due any more,
  so the deadline timer leaves it, it cannot be chased, and it is not counted overdue.
  Its payment's history gets `query_refused`; the core system learns of it as it learns
  of a reply: a `refusal` item in the reply feed and, with a webhook, a `query_refused`
  event. Operators get `query_refused_by_npc`.
- Our reply keeps its refusal beside it, and the query it answered is `open` again
  (from `answered`), the NPC's refusal shown on it and `handling`
  `reply_refused_by_npc`: the bank is owed an answer still, which an operator or the
  core system gives as the first one (POST /v1/queries/{id}/reply), by its due time as
  before. The payment asked about gets `query_reply_refused` in its history; the core
  system, with a webhook, a `query_reply_refused` event; operators
  `query_reply_refused_by_npc`. A refusal of a reply that no longer answers the query
  (one that came after the query was answered again) is kept on that reply only.
- A free-format message keeps its refusal beside it and comes again at the end of the
  free-format feed, refused; with a webhook, a `free_format_refused` event. Operators
  get `free_format_refused_by_npc`.

The NPC may also refuse one of them at the link, answering its POST with a 4xx
(`on_link_refused`): the message never got past the NPC either, and is refused the same
way, `refused_with` `link` and the code `HTTP<status>`, its dead letter left as history.
Only when every attempt to deliver it was provably untaken, though: after an attempt that
may have reached the NPC (a timeout), the NPC may have forwarded it, so it is kept as
sent, its dead letter outstanding for a retry of the same bytes (`kept_maybe_taken`).

A second notice about a message already refused changes nothing. The outbox row of the
refused message is done: sending the same bytes again would be refused again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import payments
from gateway.inbound import Processed
from gateway.messages import ccms303, ccms314, ccms900, ccms911, codec
from gateway.outbound import NPC, Delivery
from gateway.queries import notify, records, wire

log = logging.getLogger("paygate.queries")

ALERT_QUERY_REFUSED = "query_refused_by_npc"
ALERT_FREE_FORMAT_REFUSED = "free_format_refused_by_npc"
ALERT_REPLY_REFUSED = "query_reply_refused_by_npc"
ALERT_STATUS_NOT_HANDLED = "result_status_not_handled"
# Refused at the link after an earlier attempt that may have reached the NPC.
ALERT_MAYBE_TAKEN = "query_message_maybe_taken_by_npc"
OUR_TYPES = (ccms314.MESSAGE_TYPE, ccms314.RESPONSE_TYPE, ccms303.MESSAGE_TYPE)
# `refused_with` of a message the NPC refused at the link (a 4xx answer to its POST),
# where a notice's type stands otherwise.
LINK_REFUSAL = "link"


@dataclass(frozen=True)
class Refusal:
    """The NPC's notice: its type, header MesgID, the id of the notice as a feed item
    (the ccms.900's XML MsgId; a ccms.911 has only its header's), code and reject text."""

    message_type: str
    mesg_id: str
    msg_id: str
    code: str
    reason: str | None


def on_result(tx: Any, desk: Any, d: codec.Decoded,
              now: datetime) -> tuple[Processed, wire.Pushes] | None:
    """A ccms.900 about our ccms.314, ccms.315 or ccms.303; None when it names none of
    ours (the gateway's result handler then raises it as unknown)."""
    conf: ccms900.CommonConf = d.obj
    if conf.original.mt not in OUR_TYPES:
        return None
    if conf.original.mt == ccms314.MESSAGE_TYPE:
        target = records.find_ours(tx, conf.original.msg_id)
    elif conf.original.mt == ccms314.RESPONSE_TYPE:
        target = records.find_our_reply(tx, msg_id=conf.original.msg_id)
    else:
        target = records.find_free_format_ours(tx, msg_id=conf.original.msg_id)
    if target is None:
        return None
    if conf.status != ccms900.REJECTED:
        # The NPC forwards queries and free text; it has nothing else to say of them.
        desk.gw.alert(tx, ALERT_STATUS_NOT_HANDLED, message=target["id"],
                      mt=conf.original.mt, status=conf.status)
        return Processed({"message": target["id"], "ignored": conf.status}), []
    refusal = Refusal(ccms900.MESSAGE_TYPE, d.header.mesg_id, conf.header.msg_id,
                      conf.code or conf.status, conf.reject_info)
    return _refuse(tx, desk, conf.original.mt, target, refusal, now)


def on_discarded(tx: Any, desk: Any, d: codec.Decoded,
                 now: datetime) -> tuple[Processed, wire.Pushes] | None:
    """A ccms.911 naming our ccms.314, ccms.315 or ccms.303 by its header's MesgID; None
    when it names none of ours."""
    notice: ccms911.Discarded = d.obj
    target = _ours_sent_as(tx, notice.mt, notice.msg_id)
    if target is None:
        return None
    refusal = Refusal(ccms911.MESSAGE_TYPE, d.header.mesg_id, d.header.mesg_id,
                      notice.code, notice.reject_info)
    return _refuse(tx, desk, notice.mt, target, refusal, now)


def on_link_refused(tx: Any, desk: Any, mt: str, mesg_id: str, status: int,
                    now: datetime) -> tuple[Processed, wire.Pushes] | None:
    """The NPC answered the POST of our ccms.314, ccms.315 or ccms.303 (header MesgID
    `mesg_id`) with a 4xx `status`: it took nothing, so nothing was forwarded, and the
    same bytes would be refused again. Refused as if the NPC had refused it by a notice
    (`refused_with` LINK_REFUSAL, code `HTTP<status>`): a reply's query is open again, to
    be answered anew, instead of standing `answered` behind a dead letter. None when
    the message is none of ours."""
    target = _ours_sent_as(tx, mt, mesg_id)
    if target is None:
        return None
    refusal = Refusal(LINK_REFUSAL, mesg_id, mesg_id, f"HTTP{status}",
                      f"the NPC answered {status} to the message at the link")
    return _refuse(tx, desk, mt, target, refusal, now)


def kept_maybe_taken(tx: Any, desk: Any, mt: str, mesg_id: str, status: int,
                     sent: Delivery) -> dict[str, str]:
    """The NPC answered the POST of our ccms.314, ccms.315 or ccms.303 with a 4xx, but an
    earlier attempt (`sent`, its outbox row) ended without proof that the NPC did not
    take it (a timeout, a connection lost mid-request): the NPC may have it and have
    forwarded it, so it is not refused, and a reply's query is not opened for a second
    answer. Its dead letter stays outstanding for an operator's retry of the same bytes
    (which the NPC takes as a repeat); operators are told. The fields naming the message
    in the letter (none when it is none of ours)."""
    target = _ours_sent_as(tx, mt, mesg_id)
    if target is None:
        return {}
    named = ({"free_format": target["id"]} if mt == ccms303.MESSAGE_TYPE
             else {"query": target["query_id"] if mt == ccms314.RESPONSE_TYPE
                   else target["id"]})
    log.warning("event=query_message_maybe_taken mt=%s mesg_id=%s status=%s %s", mt,
                mesg_id, status, " ".join(f"{k}={v}" for k, v in named.items()))
    desk.gw.alert(tx, ALERT_MAYBE_TAKEN, mt=mt, mesg_id=mesg_id, status=status,
                  outbox=sent.outbox_id, attempts=sent.attempts,
                  maybe_taken=sent.attempts - sent.untaken, **named)
    return named


def _ours_sent_as(tx: Any, mt: str, mesg_id: str) -> dict[str, Any] | None:
    """Our query, reply or free text sent under the header MesgID `mesg_id`."""
    if mt == ccms314.MESSAGE_TYPE:
        return records.find_ours_sent_as(tx, mesg_id)
    if mt == ccms314.RESPONSE_TYPE:
        return records.find_our_reply(tx, mesg_id=mesg_id)
    if mt == ccms303.MESSAGE_TYPE:
        return records.find_free_format_ours(tx, mesg_id=mesg_id)
    return None


def _refuse(tx: Any, desk: Any, mt: str, target: dict[str, Any], refusal: Refusal,
            now: datetime) -> tuple[Processed, wire.Pushes]:
    tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE mesg_id = ? AND "
               "mesg_type = ? AND kind = 'message'", (now.isoformat(), target["mesg_id"], mt))
    if mt == ccms314.MESSAGE_TYPE:
        return _refuse_query(tx, desk, target, refusal, now)
    if mt == ccms314.RESPONSE_TYPE:
        return _refuse_reply(tx, desk, target, refusal, now)
    return _refuse_free_format(tx, desk, target, refusal, now)


def _refuse_query(tx: Any, desk: Any, query: dict[str, Any], refusal: Refusal,
                  now: datetime) -> tuple[Processed, wire.Pushes]:
    if query["state"] != "open":
        # Refused already (the same notice again), or answered: a reply came, so the
        # bank had the query whatever this notice says. Nothing changes either way.
        log.info("event=query_refusal_ignored query=%s state=%s npc_code=%s",
                 query["id"], query["state"], refusal.code)
        return Processed({"query": query["id"], "ignored": query["state"]}), []
    refused = records.refuse(tx, query, now, refusal.message_type, refusal.code,
                             refusal.reason)
    item = records.add_reply(tx, {
        "id": f"R{query['id']}", "feed_seq": payments.next_seq(tx, "query_feed"),
        "query_id": query["id"], "direction": "in", "sender": NPC,
        "msg_id": refusal.msg_id, "mesg_id": refusal.mesg_id,
        "answered_msg_id": query["msg_id"], "content": refusal.reason or refusal.code,
        "replied_by": "npc", "at": now.isoformat(), "late": 0, "kind": "refusal",
        "code": refusal.code})
    if query["payment_id"]:
        payment = payments.get(tx, query["payment_id"])
        payments.transition(tx, payment, payment["state"], "query_refused", now, None,
                            query=query["id"], npc_code=refusal.code,
                            npc_reason=refusal.reason)
    desk.gw.alert(tx, ALERT_QUERY_REFUSED, query=query["id"], payment=query["payment_id"],
                  counterparty=query["counterparty"], refused_with=refusal.message_type,
                  npc_code=refusal.code, reason=refusal.reason or "")
    hook = notify.queue_webhook(tx, desk.gw, "query_refused", now, query["payment_id"],
                                query=records.view(refused, now),
                                refusal=records.reply_view(item))
    return Processed({"query": query["id"], "refused": refusal.code}), [hook] if hook else []


def _refuse_reply(tx: Any, desk: Any, reply: dict[str, Any], refusal: Refusal,
                  now: datetime) -> tuple[Processed, wire.Pushes]:
    refused = records.refuse_reply(tx, reply, now, refusal.message_type, refusal.code,
                                   refusal.reason)
    if refused is None:
        log.info("event=query_reply_refusal_ignored reply=%s npc_code=%s", reply["id"],
                 refusal.code)
        return Processed({"reply": reply["id"], "ignored": "refused"}), []
    query = records.get(tx, reply["query_id"])
    reopened = records.reopen(tx, query, reply, now, refusal.message_type, refusal.code,
                              refusal.reason)
    if reopened is None:
        # The query was answered again since (or is no longer answered by this reply):
        # the refusal stays with the reply it is about.
        log.info("event=query_reply_refusal_kept reply=%s query=%s state=%s", reply["id"],
                 query["id"], query["state"])
        return Processed({"reply": reply["id"], "refused": refusal.code,
                          "query": query["id"], "left": query["state"]}), []
    if query["payment_id"]:
        payment = payments.get(tx, query["payment_id"])
        payments.transition(tx, payment, payment["state"], "query_reply_refused", now, None,
                            query=query["id"], reply=reply["msg_id"], npc_code=refusal.code,
                            npc_reason=refusal.reason)
    desk.gw.alert(tx, ALERT_REPLY_REFUSED, query=query["id"], payment=query["payment_id"],
                  counterparty=query["counterparty"], reply=reply["msg_id"],
                  refused_with=refusal.message_type, npc_code=refusal.code,
                  reason=refusal.reason or "", due=query["reply_due_at"])
    hook = notify.queue_webhook(tx, desk.gw, "query_reply_refused", now, query["payment_id"],
                                query=records.view(reopened, now),
                                reply=records.reply_view(refused))
    return (Processed({"query": query["id"], "reopened": refusal.code}),
            [hook] if hook else [])


def _refuse_free_format(tx: Any, desk: Any, item: dict[str, Any], refusal: Refusal,
                        now: datetime) -> tuple[Processed, wire.Pushes]:
    refused = None if item["refused_at"] is not None else records.refuse_free_format(
        tx, item, now, refusal.message_type, refusal.code, refusal.reason,
        payments.next_seq(tx, "free_format_feed"))
    if refused is None:
        log.info("event=free_format_refusal_ignored id=%s npc_code=%s", item["id"],
                 refusal.code)
        return Processed({"free_format": item["id"], "ignored": "refused"}), []
    desk.gw.alert(tx, ALERT_FREE_FORMAT_REFUSED, free_format=item["id"],
                  receiver=item["receiver"], refused_with=refusal.message_type,
                  npc_code=refusal.code, reason=refusal.reason or "")
    hook = notify.queue_webhook(tx, desk.gw, "free_format_refused", now, None,
                                message=records.free_format_view(refused))
    return (Processed({"free_format": item["id"], "refused": refusal.code}),
            [hook] if hook else [])
