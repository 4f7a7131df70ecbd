"""Messages that arrive on the link: receiving, deduplicating, and processing.

Receiving (on the HTTP request): the envelope is decoded and its signature checked; a
message that fails is refused, logged and raised to operators, never processed. A good
one is stored in the inbox, with a ccms.990 acknowledgement put in the outbox in the
same transaction; a message seen before (same sender, type and header message id) is
acknowledged again and processed never.

Processing (from the inbound stream): the message is decoded against its schema and
rules and handed to the handler of its type. Marking the inbox row processed commits in
the same transaction as what the handler did (a credit, a settlement), so a crash can
neither lose the work nor do it twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from gateway import payments
from gateway.errors import PaygateError
from gateway.messages import ccms990, codec
from gateway.messages.envelope import Envelope
from gateway.outbound import NPC, archive, new_header, queue_message

log = logging.getLogger("paygate.inbound")


@dataclass
class Received:
    inbox_id: int | None
    ack_outbox_id: int | None
    duplicate: bool = False


def receive_tx(tx: Any, env: Envelope, raw: bytes, now: datetime, bank_code: str,
               keyring: Any) -> Received:
    h = env.header
    existing = tx.query_one("SELECT id FROM inbox WHERE sender = ? AND mesg_type = ? "
                            "AND mesg_id = ?", (h.orig_sender, h.mesg_type, h.mesg_id))
    inbox_id = None
    if existing is None:
        row = tx.query_one("INSERT INTO inbox (sender, mesg_type, mesg_id, state, envelope, "
                           "received_at) VALUES (?, ?, ?, 'received', ?, ?) RETURNING id",
                           (h.orig_sender, h.mesg_type, h.mesg_id, raw, now.isoformat()))
        inbox_id = row[0]
        archive(tx, "in", h, raw, now)
    else:
        log.info("event=duplicate_message sender=%s type=%s mesg_id=%s", h.orig_sender,
                 h.mesg_type, h.mesg_id)
    ack_id = None
    if h.mesg_type != ccms990.MESSAGE_TYPE:
        ack_id = _queue_ack(tx, env, now, bank_code, keyring)
    return Received(inbox_id, ack_id, duplicate=existing is not None)


def _queue_ack(tx: Any, env: Envelope, now: datetime, bank_code: str, keyring: Any) -> int:
    h = env.header
    header = new_header(tx, now, bank_code, NPC, ccms990.MESSAGE_TYPE, h.orig_sender_sid)
    body = ccms990.build(ccms990.CommConf(orig_sender=h.orig_sender, orig_send_date=h.send_date,
                                          mt=h.mesg_type, msg_id=h.mesg_id,
                                          msg_ref_id=h.mesg_ref_id))
    return queue_message(tx, header, body, keyring, now, sign=False)


@dataclass
class Processed:
    outcome: dict[str, Any] = field(default_factory=dict)
    after_commit: list[Callable[[], Any]] = field(default_factory=list)


Handler = Callable[[Any, codec.Decoded, datetime], Processed]


def process_tx(tx: Any, inbox_id: int, now: datetime, handlers: dict[str, Handler],
               alert: Callable[..., None]) -> Processed:
    row = tx.query_one("SELECT state, envelope, sender, mesg_type, mesg_id FROM inbox "
                       "WHERE id = ?", (inbox_id,))
    if row is None or row[0] != "received":
        return Processed()
    state, raw, sender, mesg_type, mesg_id = row
    try:
        decoded = codec.decode(bytes(raw))
    except PaygateError as exc:
        return _refuse(tx, inbox_id, now, alert, sender, mesg_type, mesg_id, exc.to_dict())
    if decoded.problems:
        return _refuse(tx, inbox_id, now, alert, sender, mesg_type, mesg_id,
                       {"errors": [p.to_dict() for p in decoded.problems]})
    handler = handlers.get(decoded.mtype.code)
    if handler is None:
        return _refuse(tx, inbox_id, now, alert, sender, mesg_type, mesg_id,
                       {"errors": [{"code": "message_type_not_handled",
                                    "value": decoded.mtype.code}]})
    result = handler(tx, decoded, now)
    tx.execute("UPDATE inbox SET state = 'processed', outcome = ? WHERE id = ?",
               (json.dumps(result.outcome, ensure_ascii=False, default=str), inbox_id))
    return result


def _refuse(tx: Any, inbox_id: int, now: datetime, alert: Callable[..., None], sender: str,
            mesg_type: str, mesg_id: str, errors: dict[str, Any]) -> Processed:
    tx.execute("UPDATE inbox SET state = 'refused', outcome = ? WHERE id = ?",
               (json.dumps(errors, ensure_ascii=False, default=str), inbox_id))
    alert(tx, "inbound_message_refused", sender=sender, mesg_type=mesg_type, mesg_id=mesg_id,
          errors=errors["errors"][:5])
    log.warning("event=inbound_refused sender=%s type=%s mesg_id=%s errors=%s", sender,
                mesg_type, mesg_id, json.dumps(errors, ensure_ascii=False)[:500])
    return Processed({"refused": True})


def record_incoming(tx: Any, row: dict[str, Any]) -> dict[str, Any]:
    payments.insert(tx, row)
    return row
