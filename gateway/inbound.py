"""Messages that arrive on the link: receiving, deduplicating, and processing.

Receiving (on the HTTP request): the envelope is decoded and its signature checked; a
message that fails is refused, logged and raised to operators, never processed. A good
one is stored in the inbox, with a ccms.990 acknowledgement put in the outbox in the
same transaction; a message seen before (same sender, type and header message id) is
acknowledged again and processed never.

Processing: the message is decoded against its schema and rules and handed to the
handler of its type. The inbox row marked processed commits in the same transaction as
what the handler did (a credit, a settlement), so a crash can neither lose the work nor
do it twice. A new message is processed in the very work that receives it (one
transaction for receipt, acknowledgement and processing); only when that processing
fails is it undone (with its receipt, which is then taken again alone) and left to the
inbound stream, whose worker retries it and in the end dead-letters it. The receipt and
its acknowledgement commit either way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from gateway import jsontext, payments, store
from gateway.errors import PaygateError
from gateway.messages import ccms990, codec
from gateway.messages.envelope import Envelope
from gateway.outbound import NPC, archive_later, new_header, put_later

log = logging.getLogger("paygate.inbound")


@dataclass
class Received:
    inbox_id: int | None
    ack_outbox_id: int | None
    duplicate: bool = False
    ack_envelope: bytes | None = None   # when the ack was claimed: the bytes to send
    processed: Processed | None = None  # when processed in the same work


_RECEIVE = {state: "INSERT INTO inbox (sender, mesg_type, mesg_id, state, envelope, "
            f"received_at) VALUES (?, ?, ?, '{state}', ?, ?) ON CONFLICT "
            "(sender, mesg_type, mesg_id) DO NOTHING RETURNING id"
            for state in ("received", "processed")}


def receive_tx(tx: Any, env: Envelope, raw: bytes, now: datetime, bank_code: str,
               ack_claimed: bool = False, state: str = "received",
               process: Callable[[int], Processed | None] | None = None,
               copy: bool = True) -> Received:
    """Store a new message in the inbox (a repeated one only logged) and put its ccms.990
    in the outbox: pending for the link sender, or claimed when `ack_claimed` (the
    caller sends it after commit). `state` "processed": the caller processes it in the
    same work (`process`, given the inbox id, before the message is archived with the
    payment it made or concerns), and marks it otherwise if that fails. `copy` False:
    a message left to process later keeps no copy of its own either (it is read back
    from the archive, as after a processing on receipt that failed).

    The message and its 990 are archived with the rest of the transaction's messages
    received so (outbound.archive_later): one multi-row INSERT for all of them once its
    pieces of work have run, instead of two statements a result."""
    h = env.header
    # One statement stores a new message and recognises a repeated one (the inbox's
    # unique key: sender, type, message id), which it leaves as it was.
    # The archive keeps the bytes (written in this transaction). The inbox keeps its own
    # copy only for a message left to process later; one processed here has none.
    row = tx.query_one(_RECEIVE[state], (h.orig_sender, h.mesg_type, h.mesg_id,
                                         raw if copy and state != "processed" else b"",
                                         now.isoformat()))
    inbox_id = None if row is None else row[0]
    processed = None
    if inbox_id is not None:
        processed = process(inbox_id) if process is not None else None
        archive_later(tx, "in", h, raw, now, concerned(processed))
    else:
        store.log_after_commit(log, logging.INFO, [(
            f"event=duplicate_message sender={h.orig_sender} type={h.mesg_type} "
            f"mesg_id={h.mesg_id}")])
    received = Received(inbox_id, None, duplicate=inbox_id is None, processed=processed)
    if h.mesg_type != ccms990.MESSAGE_TYPE:
        envelope = _queue_ack(tx, env, now, bank_code, ack_claimed, received)
        received.ack_envelope = envelope if ack_claimed else None
    return received


def _queue_ack(tx: Any, env: Envelope, now: datetime, bank_code: str,
               claimed: bool, received: Received) -> bytes:
    """The ccms.990 answering `env`, in the outbox; its bytes. Its outbox row is written
    with the transaction's other 990s (outbound.put_later): its id is in
    `received.ack_outbox_id` once the transaction's works have run. A 990 is sent
    unsigned (signing.UNSIGNED_ALLOWED)."""
    h = env.header
    header = new_header(tx, now, bank_code, NPC, ccms990.MESSAGE_TYPE, h.orig_sender_sid)
    body = ccms990.build(ccms990.CommConf(orig_sender=h.orig_sender, orig_send_date=h.send_date,
                                          mt=h.mesg_type, msg_id=h.mesg_id,
                                          msg_ref_id=h.mesg_ref_id))
    envelope = codec.encode(header, body, None, sign=False)

    def numbered(outbox_id: int) -> None:
        received.ack_outbox_id = outbox_id
    put_later(tx, header, envelope, now, claimed, numbered)
    return envelope


@dataclass
class Processed:
    outcome: dict[str, Any] = field(default_factory=dict)
    after_commit: list[Callable[[], Any]] = field(default_factory=list)


Handler = Callable[[Any, codec.Decoded, datetime], Processed]


class ProcessingFailed(Exception):
    """Processing a message on receipt failed (`cause`): raised through the savepoint
    that holds the message's receipt, undoing both, for the taker to receive the message
    again unprocessed (`receive_unprocessed_tx`)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(repr(cause))
        self.cause = cause


def receive_and_process_tx(tx: Any, env: Envelope, raw: bytes,
                           decoded: codec.Decoded | PaygateError, now: datetime,
                           bank_code: str, handlers: dict[str, Handler],
                           alert: Callable[..., None], ack_claimed: bool,
                           in_savepoint: bool = False) -> Received:
    """`receive_tx`, then, for a new message, `decoded` (the body read before the work,
    or the error that reading raised) processed in the same work. A processing that
    fails is undone with the receipt and the receipt taken again alone, the inbox row
    left received (no bytes of its own), for the inbound stream (`Received.processed`
    is None then), and logged.

    The receipt and the processing share one savepoint: `in_savepoint`, the caller's,
    which a failed processing leaves by raising ProcessingFailed (the caller then calls
    `receive_unprocessed_tx`); else one of its own here. (Each had a savepoint of its
    own, the processing's inside the receipt's: two statements more a message.)

    The row is written processed at once (one statement, and no entry in the index of
    rows to process): a message processed here keeps no outcome in its row (the
    processing's own rows and log lines tell it); a refused one is marked refused with
    its errors."""
    h = env.header
    if h.mesg_type == ccms990.MESSAGE_TYPE:
        # An acknowledgement's processing is one conditional UPDATE (and an alert when
        # it refuses): it cannot partly fail, so it needs no savepoint of its own.
        # Should it fail, the receipt fails with it and the NPC delivers the 990 again.
        return receive_tx(tx, env, raw, now, bank_code, ack_claimed, state="processed",
                          process=lambda inbox_id: _process(
                              tx, inbox_id, now, decoded, handlers, alert, h.orig_sender,
                              h.mesg_type, h.mesg_id, marked=True))

    def process(inbox_id: int) -> Processed:
        try:
            return _process(tx, inbox_id, now, decoded, handlers, alert, h.orig_sender,
                            h.mesg_type, h.mesg_id, marked=True)
        except Exception as exc:
            raise ProcessingFailed(exc) from exc
    if in_savepoint:
        return receive_tx(tx, env, raw, now, bank_code, ack_claimed, state="processed",
                          process=process)
    try:
        with store.scope(tx):
            return receive_tx(tx, env, raw, now, bank_code, ack_claimed,
                              state="processed", process=process)
    except ProcessingFailed as failed:
        return receive_unprocessed_tx(tx, env, raw, now, bank_code, ack_claimed, failed)


def receive_unprocessed_tx(tx: Any, env: Envelope, raw: bytes, now: datetime,
                           bank_code: str, ack_claimed: bool,
                           failed: ProcessingFailed) -> Received:
    """The receipt of a message whose processing on receipt failed (and was undone with
    its first receipt): stored received, for the inbound stream to process, with no
    copy of its bytes in the inbox (the archive's are read then)."""
    received = receive_tx(tx, env, raw, now, bank_code, ack_claimed, copy=False)
    h = env.header
    store.log_after_commit(log, logging.WARNING, [(
        f"event=inbound_processing_deferred inbox={received.inbox_id} type={h.mesg_type} "
        f"mesg_id={h.mesg_id} error={failed.cause!r}")])
    return received


def concerned(processed: Processed | None) -> str | None:
    """The payment a processed message made or is about (a credit, a result, a return,
    the answer to a cancellation or a status query), as its handler's outcome names it;
    its archived message shows in the payment's view."""
    payment = None if processed is None else processed.outcome.get("payment")
    return payment if isinstance(payment, str) else None


# An inbox row to process, with its bytes: its own, or (for a message whose processing on
# receipt failed, which has none) the archive's.
_READ_RECEIVED = ("SELECT i.state, CASE WHEN length(i.envelope) > 0 THEN i.envelope ELSE "
                  "(SELECT a.envelope FROM archive a WHERE a.mesg_id = i.mesg_id AND "
                  "a.direction = 'in' AND a.mesg_type = i.mesg_type AND a.sender = i.sender "
                  "ORDER BY a.id LIMIT 1) END, i.sender, i.mesg_type, i.mesg_id FROM inbox i "
                  "WHERE i.id = ?")


def process_tx(tx: Any, inbox_id: int, now: datetime, handlers: dict[str, Handler],
               alert: Callable[..., None]) -> Processed:
    row = tx.query_one(_READ_RECEIVED, (inbox_id,))
    if row is None or row[0] != "received":
        return Processed()
    state, raw, sender, mesg_type, mesg_id = row
    try:
        decoded: codec.Decoded | PaygateError = codec.decode(bytes(raw))
    except PaygateError as exc:
        decoded = exc
    processed = _process(tx, inbox_id, now, decoded, handlers, alert, sender, mesg_type,
                         mesg_id)
    payment_id = concerned(processed)
    if payment_id is not None:  # archived when received, before this processing
        tx.execute("UPDATE archive SET payment_id = ? WHERE mesg_id = ? AND mesg_type = ? "
                   "AND sender = ? AND direction = 'in'", (payment_id, mesg_id, mesg_type,
                                                           sender))
    return processed


def _process(tx: Any, inbox_id: int, now: datetime, decoded: codec.Decoded | PaygateError,
             handlers: dict[str, Handler], alert: Callable[..., None], sender: str,
             mesg_type: str, mesg_id: str, marked: bool = False) -> Processed:
    """Refuse a message that failed its reading, or hand it to its type's handler; the
    inbox row marked with the outcome (`marked`: it was written processed, and is only
    changed when refused)."""
    if isinstance(decoded, PaygateError):
        return _refuse(tx, inbox_id, now, alert, sender, mesg_type, mesg_id,
                       decoded.to_dict())
    if decoded.problems:
        return _refuse(tx, inbox_id, now, alert, sender, mesg_type, mesg_id,
                       {"errors": [p.to_dict() for p in decoded.problems]})
    handler = handlers.get(decoded.mtype.code)
    if handler is None:
        return _refuse(tx, inbox_id, now, alert, sender, mesg_type, mesg_id,
                       {"errors": [{"code": "message_type_not_handled",
                                    "value": decoded.mtype.code}]})
    result = handler(tx, decoded, now)
    if not marked:
        tx.execute("UPDATE inbox SET state = 'processed', outcome = ? WHERE id = ?",
                   (jsontext.dumps(result.outcome), inbox_id))
    return result


def _refuse(tx: Any, inbox_id: int, now: datetime, alert: Callable[..., None], sender: str,
            mesg_type: str, mesg_id: str, errors: dict[str, Any]) -> Processed:
    tx.execute("UPDATE inbox SET state = 'refused', outcome = ? WHERE id = ?",
               (json.dumps(errors, ensure_ascii=False, default=str), inbox_id))
    alert(tx, "inbound_message_refused", sender=sender, mesg_type=mesg_type, mesg_id=mesg_id,
          errors=errors["errors"][:5])
    store.log_after_commit(log, logging.WARNING, [(
        f"event=inbound_refused sender={sender} type={mesg_type} mesg_id={mesg_id} "
        f"errors={json.dumps(errors, ensure_ascii=False)[:500]}")])
    return Processed({"refused": True})


def record_incoming(tx: Any, row: dict[str, Any]) -> dict[str, Any]:
    payments.insert(tx, row)
    return row
