"""Building ccms.314, ccms.315 and ccms.303 and putting them in the outbox.

Queries, replies and free text go bank to bank: the header names the counterparty's
direct participant as receiver (as the captured ccms.314 does) and the NPC forwards the
envelope unchanged. The system code of header and group header is the one of the
payment concerned (HVPS or BEPS). Every body is checked against our schema before it is
signed, so text a caller sent that the schema cannot carry is refused here and never
reaches the link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import keys, outbound, payments
from gateway.errors import PaygateError, Problem
from gateway.messages import ccms303, ccms314, codec, xml
from gateway.messages.common import GroupHeader, OriginalRef, OriginalTx, iso_datetime

# (stream, outbox id) pairs to put on Redis once the transaction has committed.
Pushes = list[tuple[str, int]]


@dataclass(frozen=True)
class Parties:
    """Who sends and who receives: each side's direct participant and named bank."""

    our_direct: str
    our_party: str
    their_direct: str
    their_party: str
    system: str


@dataclass(frozen=True)
class Sent:
    msg_id: str
    mesg_id: str
    outbox_id: int


def next_msg_id(tx: Any, now: datetime) -> str:
    """An XML MsgId: yyyyMMdd and the gateway's daily message sequence (8 digits)."""
    day = now.strftime("%Y%m%d")
    return f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"


def group_header(msg_id: str, now: datetime, p: Parties) -> GroupHeader:
    return GroupHeader(msg_id=msg_id, created_at=iso_datetime(now),
                       instg_direct=p.our_direct, instg_party=p.our_party,
                       instd_direct=p.their_direct, instd_party=p.their_party,
                       system=p.system)


def send_query(tx: Any, gw: Any, now: datetime, p: Parties, subject: OriginalRef,
               subject_tx: OriginalTx | None, amount_fen: int, content: str,
               query_type: str | None, payment_id: str | None) -> Sent:
    msg_id = next_msg_id(tx, now)
    body = ccms314.build(ccms314.Query(
        header=group_header(msg_id, now, p), subject=subject, amount_fen=amount_fen,
        content=content, subject_tx=subject_tx, query_type=query_type))
    return _queue(tx, gw, now, p, ccms314.MESSAGE_TYPE, body, msg_id, payment_id)


def send_reply(tx: Any, gw: Any, now: datetime, p: Parties, query: OriginalRef,
               subject: OriginalRef, subject_tx: OriginalTx | None, amount_fen: int,
               content: str, query_type: str | None, payment_id: str | None) -> Sent:
    msg_id = next_msg_id(tx, now)
    body = ccms314.build_reply(ccms314.Reply(
        header=group_header(msg_id, now, p), query=query, subject=subject,
        amount_fen=amount_fen, content=content, subject_tx=subject_tx,
        query_type=query_type))
    return _queue(tx, gw, now, p, ccms314.RESPONSE_TYPE, body, msg_id, payment_id)


def send_free_format(tx: Any, gw: Any, now: datetime, p: Parties, content: str) -> Sent:
    msg_id = next_msg_id(tx, now)
    body = ccms303.build(ccms303.FreeFormat(group_header(msg_id, now, p), content))
    return _queue(tx, gw, now, p, ccms303.MESSAGE_TYPE, body, msg_id, None)


def _queue(tx: Any, gw: Any, now: datetime, p: Parties, mesg_type: str, body: bytes,
           msg_id: str, payment_id: str | None) -> Sent:
    problems = codec.schema_problems(mesg_type, xml.parse(body))
    if problems:
        raise PaygateError([Problem("message_would_break_schema", pr.path, pr.value,
                                    pr.expected, pr.message) for pr in problems])
    header = outbound.new_header(tx, now, p.our_direct, p.their_direct, mesg_type, p.system)
    outbox_id = outbound.queue_message(tx, header, body, gw.keyring, now, payment_id)
    return Sent(msg_id, header.mesg_id, outbox_id)


def link_push(sent: Sent) -> tuple[str, int]:
    return (keys.OUT_LINK, sent.outbox_id)
