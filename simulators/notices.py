"""Every message the simulated NPC originates or forwards, built with the shared codec,
signed as "0000" when a receiver requires it, and put in the outbox in the caller's
transaction.

Header conventions of NPC traffic (SPEC.md a.1): OrigSender "0000", the system of the
business concerned as both SIDs, MesgID "HVPD"/"BEPA" and 16 digits repeated as
MesgRefID, priority 3, direction "D". Forwarded bank messages keep their sender, body and
signature; only the direction turns to "D", which the signature does not cover.

The NPC signs only what a receiver requires signed (signing.unsigned_allowed): a
ccms.990 goes unsigned, as the captured ones and the gateway's own do (taken without a
signature from anyone), and so do the NPC's own notices and reports that the captured
ones show travelling unsigned (signing.UNSIGNED_FROM_NPC: ccms.900, 801, 911, hvps.711,
saps.606, ...). A signature there would prove nothing a receiver asks for and cost a
signature here and a check there: for a ccms.900, one of each per HVPS payment. What the
NPC builds of a bank's message (a netted package it forwards with its block added) is
signed, as its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from gateway.clock import Clock
from gateway.messages import ccms801, ccms900, ccms911, ccms990, codec, hvps710, signing
from gateway.messages import envelope as envelope_mod
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.messages.envelope import Header
from gateway.messages.signing import KeyRing
from simulators import codes, templates
from simulators.ids import Ids, iso_time, send_date_time
from simulators.logfmt import event
from simulators.settings import NPC_CODE
from simulators.store import Store

log = logging.getLogger("npc.notices")

# The captured ccms.801 is addressed to everyone: twelve zeros as the instructed party.
BROADCAST = "000000000000"

# Messages to a bank that must reach it in the order they were made (a chain,
# simulators.link: a later one waits while an earlier one waits for its next try); any
# other message may overtake one waiting. The system status notices: each names the
# status before it (OrgnlSysSts), so the bank would read one that overtook another as
# a gap followed by a notice from the past. And the results about one message: queued
# (PR11, PR12), then netted, settled or cancelled; the later word arriving first would
# be contradicted by the earlier one.
STATUS_CHAIN = "ccms.801"
# Where a header's direction stands: after "{H:" and the fields before it.
_DIRECTION_AT = 3 + sum(width for _, width in envelope_mod.HEADER_FIELDS[
    :[name for name, _ in envelope_mod.HEADER_FIELDS].index("direction")])
_BOM = b"\xef\xbb\xbf"


def turned_down(raw: bytes) -> tuple[Header, bytes]:
    """A bank's envelope (taken, so well formed) as the NPC forwards it, and its header:
    the header's direction written "D" in place, the one character the signature does
    not cover; byte for byte what decoding the envelope and encoding it again with that
    direction gives (a leading byte-order mark dropped), without either."""
    raw = raw.removeprefix(_BOM)
    header = envelope_mod.decode_header(raw[:envelope_mod.HEADER_LEN])
    return header, _direction_down(raw)


def _direction_down(raw: bytes) -> bytes:
    """`raw` (without a byte-order mark) with its header's direction written "D"."""
    return b"".join((raw[:_DIRECTION_AT], b"D", raw[_DIRECTION_AT + 1:]))


def result_chain(original: OriginalRef) -> str:
    """The chain of the results about one message (its sender, type and MsgId)."""
    return f"result:{original.instg_party}:{original.mt}:{original.msg_id}"


class Notices:
    def __init__(self, store: Store, ids: Ids, clock: Clock, keyring: KeyRing,
                 wake: Callable[[str], None]) -> None:
        self.store = store
        self.ids = ids
        self.clock = clock
        self.keyring = keyring
        self.wake = wake

    def _header(self, dest: str, mesg_type: str, system: str,
                now: datetime | None = None) -> Header:
        """The NPC's header of a message made at `now` (read from the clock if not given):
        its date, time and MesgID from that one reading."""
        now = now or self.clock.now()
        send_date, send_time = send_date_time(now)
        mesg_id = self.ids.npc_mesg_id(system, now)
        return Header(orig_sender=NPC_CODE, orig_sender_sid=system, orig_receiver=dest,
                      orig_receiver_sid=system, send_date=send_date, send_time=send_time,
                      mesg_type=mesg_type, mesg_id=mesg_id, mesg_ref_id=mesg_id, priority="3",
                      direction="D")

    def _group_header(self, dest: str, system: str, remark: str | None = None) -> GroupHeader:
        now = self.clock.now()
        return GroupHeader(msg_id=self.ids.xml_msg_id(now=now), created_at=iso_time(now),
                           instg_direct=NPC_CODE, instg_party=NPC_CODE, instd_direct=dest,
                           instd_party=dest, system=system, remark=remark)

    def _put(self, dest: str, mesg_type: str, mesg_id: str, raw: bytes,
             chain: str | None = None, now: datetime | None = None) -> str:
        """Put a message in the outbox, made at `now` (the clock read for its header)
        or, when none is given, now."""
        made = (now or self.clock.now()).isoformat()
        self.store.enqueue(dest, mesg_type, mesg_id, raw, made, chain)
        self.store.add("messages_out")
        self.wake(dest)
        # DEBUG: the outbox row records it, and the line of its delivery (or of the
        # peer that received it) follows; three lines fewer per HVPS payment at INFO.
        event(log, "queued_for_delivery", logging.DEBUG, dest=dest, mesg_type=mesg_type,
              mesg_id=mesg_id)
        return mesg_id

    def _send(self, dest: str, mesg_type: str, system: str, body: bytes,
              chain: str | None = None) -> str:
        now = self.clock.now()
        header = self._header(dest, mesg_type, system, now)
        if signing.unsigned_allowed(header):
            raw = templates.unsigned_envelope(header, body)
        else:
            raw = codec.encode(header, body, self.keyring)
        return self._put(dest, mesg_type, header.mesg_id, raw, chain, now)

    def ack(self, original: Header, code: str = ccms990.ACCEPTED) -> str:
        """ccms.990 to the sender of `original`, echoing its header ids (unsigned)."""
        body = templates.ack_body(ccms990.CommConf(
            orig_sender=original.orig_sender, orig_send_date=original.send_date,
            mt=original.mesg_type, msg_id=original.mesg_id, msg_ref_id=original.mesg_ref_id,
            code=code))
        return self._send(original.orig_sender, ccms990.MESSAGE_TYPE,
                          original.orig_sender_sid, body)

    def result(self, dest: str, original: OriginalRef, status: str, reason: codes.Reason,
               processed_on: str, detail: str = "", system: str = "HVPS") -> str:
        """ccms.900 with the business outcome of a request."""
        reject = None if reason == codes.SETTLED else codes.reject_text(reason, detail)
        body = templates.result_body(ccms900.CommonConf(
            header=self._group_header(dest, system), original=original, status=status,
            code=reason.code, reject_info=reject, processed_on=processed_on))
        return self._send(dest, ccms900.MESSAGE_TYPE, system, body,
                          chain=result_chain(original))

    def originate(self, dest: str, mesg_type: str, system: str,
                  build: Callable[[GroupHeader], bytes]) -> str:
        """A message whose body another module builds, given the NPC's group header."""
        return self._send(dest, mesg_type, system, build(self._group_header(dest, system)))

    def forward(self, dest: str, raw: bytes, ids: tuple[str, str] | None = None) -> str:
        """The sender's own envelope, body and signature unchanged, direction "D".
        `ids`, the header's MesgType and MesgID when the caller has them from the header
        it took (a credit's row), spare reading the header again for its outbox row."""
        if ids is None:
            header, down = turned_down(raw)
            return self._put(dest, header.mesg_type, header.mesg_id, down)
        return self._put(dest, ids[0], ids[1], _direction_down(raw.removeprefix(_BOM)))

    def discard(self, original: Header, reason: codes.Reason, detail: str) -> str:
        """ccms.911: the message was thrown away unprocessed."""
        body = ccms911.build(ccms911.Discarded.of(original, reason.code,
                                                  codes.reject_text(reason, detail)))
        return self._send(original.orig_sender, ccms911.MESSAGE_TYPE,
                          original.orig_sender_sid, body)

    def system_status(self, dest: str, orig: tuple[str, str], cur: tuple[str, str],
                      next_date: str | None, remark: str) -> str:
        """ccms.801: (date, status) before and after a phase change."""
        body = ccms801.build(ccms801.SystemStatus(
            header=self._group_header(BROADCAST, "HVPS", remark), orig_date=orig[0],
            orig_status=orig[1], cur_date=cur[0], cur_status=cur[1], next_date=next_date))
        return self._send(dest, ccms801.MESSAGE_TYPE, "HVPS", body, chain=STATUS_CHAIN)

    def summary(self, dest: str, original: OriginalRef, check_date: str,
                payments: tuple[hvps710.PaymentTotals, ...],
                messages: tuple[hvps710.MessageTotals, ...]) -> str:
        """hvps.711: the NPC's totals of a checking date for one participant."""
        body = hvps710.build_summary(hvps710.ReconSummary(
            header=self._group_header(dest, "HVPS"), original=original,
            check_date=check_date, payments=payments, messages=messages))
        return self._send(dest, hvps710.RESPONSE_TYPE, "HVPS", body)
