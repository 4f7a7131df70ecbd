"""The simulated NPC's inbound path: check, acknowledge, then process.

Every envelope taken from a bank (or a simulated peer) goes through these steps as one
atomic unit (its own transaction, or its savepoint in a group commit, intake.py):

1. The header must decode and name a known participant as sender; otherwise the message
   is logged and dropped, since there is nobody to tell.
2. Signature, XML and schema are checked with the shared codec; a failure is answered
   with a ccms.911 discard notice and nothing else happens.
3. A message already seen (same sender, type and header MesgID) is acknowledged again
   with ccms.990 and never processed again.
4. Otherwise it is acknowledged with ccms.990 PM1I0000 and processed: credits are
   settled or queued (rtgs.py), hvps.710 is answered with hvps.711 (recon.py), queries,
   replies and free text are forwarded to their receiver.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.clock import Clock
from gateway.errors import PaygateError, Problem
from gateway.messages import ccms911, ccms990, codec, hvps710, hvps712
from gateway.messages import envelope as envelope_mod
from gateway.messages.common import OriginalRef
from gateway.messages.envelope import Header
from simulators import codes, exceptions, recon
from simulators import beps_details, session
from simulators.keys import Keys
from simulators.logfmt import event
from simulators.notices import Notices
from simulators.phases import current_phase
from simulators.rtgs import Payment, Rtgs
from simulators.beps import TYPES as BEPS_TYPES
from simulators.settings import NPC_CODE
from simulators.store import REJECTED, Store

log = logging.getLogger("npc.node")

# Problems that mean the message is malformed rather than a refused business request.
FORMAT_PROBLEMS = frozenset({"schema_violation", "header_type_disagrees_with_body"})
PAYMENT_TYPES = frozenset({"hvps.111.001.01", "hvps.112.001.01"})
FORWARDED_TYPES = frozenset({"ccms.303.001.02", "ccms.314.001.01", "ccms.315.001.01"})
# Acknowledgements and discard notices are never acknowledged themselves.
UNACKNOWLEDGED_TYPES = frozenset({ccms990.MESSAGE_TYPE, ccms911.MESSAGE_TYPE})
# Taken, logged at DEBUG only: a credit's own line says what became of it (settled,
# queued, rejected or refused, with its MesgID), and an acknowledgement is kept in the
# duplicate set, when it came, and counted; nothing else happens with it. Two to three
# lines fewer per HVPS payment at INFO.
_TAKEN_QUIETLY = PAYMENT_TYPES | {ccms990.MESSAGE_TYPE}
# Types the NPC takes without reading their domain object: an acknowledgement is counted
# and its header's MesgID remembered, nothing of its body used. Its XML and schema are
# checked as any message's (a malformed one is discarded with a ccms.911); the mapping,
# which finds nothing to refuse in a ccms.990 the schema passed, is not made. Two
# acknowledgements reach the NPC per HVPS payment (the bank's and the payee's).
_READ_UNMAPPED = frozenset({ccms990.MESSAGE_TYPE})
_PAYMENT_ATTRS = ("msg_id", "end_to_end_id", "tx_id", "business_type", "priority",
                  "amount_fen", "instg_direct", "instd_direct")
# Where OrigSender stands in the header: after "{H:" and the 2-character version.
_SENDER_AT, _SENDER_LEN = 3 + 2, 14
assert envelope_mod.HEADER_FIELDS[:2] == (("version", 2), ("orig_sender", _SENDER_LEN))


def _header_of(raw: bytes) -> Header | None:
    """The header of an envelope, even when the rest of it is broken."""
    head = raw.removeprefix(b"\xef\xbb\xbf")[:envelope_mod.HEADER_LEN]
    try:
        return envelope_mod.decode_header(head)
    except PaygateError as exc:
        event(log, "header_undecodable", logging.WARNING, code=exc.code, length=len(raw))
        return None


def _sender_field(raw: bytes) -> str:
    """The header's OrigSender as it stands, before the header is decoded: what the
    sender check needs, so that a well-formed message's header is decoded only once, by
    the codec."""
    head = raw.removeprefix(b"\xef\xbb\xbf")
    return head[_SENDER_AT:_SENDER_AT + _SENDER_LEN].decode("latin-1").rstrip(" ")


# What `Node.take` says of an envelope it could not take from anybody: its header is
# unreadable or names no participant. The POST is refused for it (400), and a framed
# POST counts it apart from those taken (control.inbound).
DROPPED = "dropped"


def dropped_problem(raw: bytes) -> Problem:
    """Why an envelope was dropped, for the answer to the POST that carried it."""
    return Problem("participant_unknown", "{H:/orig_sender", _sender_field(raw)[:40],
                   "an envelope whose header names a participant of the NPC as its sender",
                   "the NPC dropped this envelope: its header is unreadable or names no "
                   "participant, so nobody is told of it (no ccms.990, no ccms.911)")


# How many of a duplicate message's transaction ids its log line names.
TX_IDS_NAMED = 10


def carried_tx_ids(root: Any) -> dict[str, str]:
    """The log fields naming the transactions a message carries (its TxId elements):
    `tx_ids` (the first TX_IDS_NAMED, then `+N` for the rest) and `tx_count`; none for
    a message that carries no transaction."""
    found = [e.text or "" for e in root.iter("{*}TxId")] if root is not None else []
    if not found:
        return {}
    shown = ",".join(found[:TX_IDS_NAMED])
    left = len(found) - TX_IDS_NAMED
    return {"tx_ids": f"{shown},+{left}" if left > 0 else shown,
            "tx_count": str(len(found))}


def _xml_msg_id(decoded: codec.Decoded) -> str:
    found = decoded.root.find("./*/{*}GrpHdr/{*}MsgId")
    return (found.text or "").strip() if found is not None else decoded.header.mesg_id


def payment_of(decoded: codec.Decoded) -> Payment | None:
    """The credit a decoded hvps.111/112 carries; None when the object lacks a field."""
    obj: Any = decoded.obj
    if obj is None or not all(hasattr(obj, name) for name in _PAYMENT_ATTRS):
        return None
    header = decoded.header
    return Payment(sender=header.orig_sender, payer_bank=obj.instg_direct,
                   receiver=obj.instd_direct, mesg_type=header.mesg_type,
                   mesg_id=header.mesg_id, msg_id=obj.msg_id, end_to_end_id=obj.end_to_end_id,
                   tx_id=obj.tx_id, business_type=obj.business_type, priority=obj.priority,
                   amount_fen=obj.amount_fen)


class Node:
    beps: Any = None  # the BEPS side (simulators.beps.Beps), set by the app
    faults: Any = None  # the `discard` faults (simulators.faults.FaultState), set by the app

    def __init__(self, store: Store, keys: Keys, notices: Notices, rtgs: Rtgs, clock: Clock,
                 participants: frozenset[str]) -> None:
        self.store = store
        self.keys = keys
        self.notices = notices
        self.rtgs = rtgs
        self.clock = clock
        self.participants = participants

    def take(self, raw: bytes) -> str:
        """Process one inbound envelope; returns what became of it (for logs and tests)."""
        with self.store.transaction():
            self.store.add("messages_in")
            return self._take(raw)

    def _take(self, raw: bytes) -> str:
        if _sender_field(raw) not in self.participants:
            return self._drop(_header_of(raw), raw)
        try:
            decoded = self.keys.decode(raw, unmapped=_READ_UNMAPPED)
        except PaygateError as exc:
            header = _header_of(raw)
            if header is None:
                return self._drop(header, raw)
            return self._discard(header, exc.problems)
        header = decoded.header
        malformed = [p for p in decoded.problems if p.code in FORMAT_PROBLEMS]
        if malformed:
            return self._discard(header, malformed)
        forced = self._discard_fault(header)
        if forced is not None:
            return self._discard(header, [forced])
        first_time = self.store.remember(header.orig_sender, header.mesg_type,
                                         header.mesg_id, self.clock.now().isoformat())
        if header.mesg_type not in UNACKNOWLEDGED_TYPES:
            self.notices.ack(header)
        if not first_time:
            self.store.add("duplicates")
            event(log, "duplicate_acknowledged", sender=header.orig_sender,
                  mesg_type=header.mesg_type, mesg_id=header.mesg_id,
                  **carried_tx_ids(decoded.root))
            return "duplicate"
        event(log, "taken",
              logging.DEBUG if header.mesg_type in _TAKEN_QUIETLY else logging.INFO,
              sender=header.orig_sender, mesg_type=header.mesg_type,
              mesg_id=header.mesg_id, signature=decoded.signature)
        return self._dispatch(decoded, raw)

    def _discard_fault(self, header: Header) -> Problem | None:
        """The `discard` faults, on a message that passed the checks: acknowledgements and
        discard notices, which the NPC never answers, are left alone."""
        if self.faults is None or header.mesg_type in UNACKNOWLEDGED_TYPES:
            return None
        return self.faults.discard_of(header.orig_sender)

    def _drop(self, header: Header | None, raw: bytes) -> str:
        """A message whose header is broken or names no participant: nobody to tell, so
        it is not taken (the POST that brought it is answered with `dropped_problem`)."""
        self.store.add("discarded")
        event(log, "dropped_sender_unknown", logging.WARNING,
              sender=header.orig_sender if header else None, length=len(raw))
        return DROPPED

    def _discard(self, header: Header, problems: list[Problem]) -> str:
        first = problems[0]
        reason = (codes.DISCARD_SIGNATURE if first.code.startswith("signature_")
                  else codes.DISCARD_FORMAT)
        self.store.add("discarded")
        self.notices.discard(header, reason, first.code)
        event(log, "discarded", logging.WARNING, sender=header.orig_sender,
              mesg_type=header.mesg_type, mesg_id=header.mesg_id, code=first.code,
              problems=len(problems))
        return "discarded"

    def _dispatch(self, decoded: codec.Decoded, raw: bytes) -> str:
        mesg_type = decoded.header.mesg_type
        if mesg_type in PAYMENT_TYPES:
            return self._payment(decoded, raw)
        if mesg_type == hvps710.MESSAGE_TYPE:
            recon.answer(self.store, self.notices, decoded.header, decoded.obj)
            return "answered"
        if mesg_type == hvps712.MESSAGE_TYPE:
            recon.answer_details(self.store, self.notices, decoded.header, decoded.obj)
            return "answered"
        if mesg_type == ccms990.MESSAGE_TYPE:
            self.store.add("acks_in")
            return "acknowledgement"
        if mesg_type in FORWARDED_TYPES:
            return self._forward(decoded, raw)
        if mesg_type in BEPS_TYPES:
            return self.beps.take(decoded, raw)
        if mesg_type in beps_details.REQUEST_TYPES:
            return beps_details.answer(self, decoded)
        if mesg_type in exceptions.REQUEST_TYPES:
            return exceptions.answer(self, decoded)
        if mesg_type in session.REQUEST_TYPES:
            return session.answer(self, decoded)
        return self._refuse(decoded, codes.TYPE_NOT_SUPPORTED, mesg_type)

    def _payment(self, decoded: codec.Decoded, raw: bytes) -> str:
        payment = payment_of(decoded)
        if payment is None:
            return self._refuse(decoded, codes.TYPE_NOT_SUPPORTED, decoded.header.mesg_type)
        if decoded.problems:
            detail = ",".join(sorted({p.code for p in decoded.problems}))
            return self.rtgs.reject(payment, raw, codes.RULE_BROKEN, detail)
        return self.rtgs.submit(payment, raw)

    def _forward(self, decoded: codec.Decoded, raw: bytes) -> str:
        receiver = decoded.header.orig_receiver
        if receiver == NPC_CODE or receiver not in self.participants:
            return self._refuse(decoded, codes.RECEIVER_UNKNOWN, receiver)
        self.notices.forward(receiver, raw)
        return "forwarded"

    def _refuse(self, decoded: codec.Decoded, reason: codes.Reason, detail: str) -> str:
        """ccms.900 PR09 for a request the NPC will not process."""
        header = decoded.header
        original = OriginalRef(msg_id=_xml_msg_id(decoded), instg_party=header.orig_sender,
                               mt=header.mesg_type)
        _, work_date = current_phase(self.store)
        self.store.add("rejected")
        self.notices.result(header.orig_sender, original, REJECTED, reason, work_date, detail,
                            system=header.orig_sender_sid)
        event(log, "refused", sender=header.orig_sender, mesg_type=header.mesg_type,
              mesg_id=header.mesg_id, reason=reason.code, detail=detail)
        return "refused"
