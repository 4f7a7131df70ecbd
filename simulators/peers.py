"""Peer banks simulated inside the process (CONTRACT.md §1: 888200000015 and others).

A peer speaks exactly as an external bank does: it builds hvps.111 credits with the
shared family module, signs them with its own key and hands the envelopes to the NPC's
inbound path; it checks what the NPC delivers to it with the shared codec and answers
every message (but acknowledgements and discard notices) with a ccms.990, unsigned as
every bank's (simulators.notices).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock
from gateway.errors import PaygateError, ProblemList, ValidationFailed
from gateway.messages import beps121, beps122, beps125, ccms911, ccms990, codec, hvps111
from gateway.messages.common import iso_datetime
from gateway.messages.envelope import Header
from simulators import templates
from simulators.ids import Ids, send_date_time
from simulators.keys import Keys
from simulators.logfmt import event
from simulators.settings import NPC_CODE, PeerSpec

log = logging.getLogger("npc.peers")

_UNANSWERED = frozenset({ccms990.MESSAGE_TYPE, ccms911.MESSAGE_TYPE})
# Packages a peer takes without reading their domain object: a credit package delivered
# to it is counted and acknowledged, none of its transactions looked at (a peer answers
# only a debit package, beps.127, with a receipt built from its transactions). Its XML,
# type and schema are checked as any message's; the mapping of a thousand transactions,
# and the rules the NPC already applied to them before netting, are not made again.
_READ_UNMAPPED = frozenset({beps121.MESSAGE_TYPE, beps122.MESSAGE_TYPE, beps125.MESSAGE_TYPE})
_HEADER_PRIORITY = {"URGT": "1", "HIGH": "2", "NORM": "3"}
_BANK_CODE = re.compile(r"[0-9]{12}")
# One request builds at most this many credits; a larger burst is several requests.
TRANSFERS_PER_REQUEST_MAX = 10_000


@dataclass(frozen=True)
class TransferRequest:
    sender: str
    receiver: str
    payee_account: str
    payee_name: str
    amount_fen: int
    count: int = 1
    business_type: str = "A100"
    business_kind: str = "02102"
    priority: str = "NORM"
    payee_bank: str | None = None
    payer_name: str = "示例付款单位"
    payer_account: str = "62000000000000000001"
    remittance: tuple[str, ...] = ("/H01/模拟汇款",)


def _text(body: dict[str, Any], key: str, problems: ProblemList, required: bool = True,
          pattern: str | None = None) -> None:
    value = body.get(key)
    if value is None and not required:
        return
    expected = f"a string{' matching ' + pattern if pattern else ''}"
    if value is None:
        problems.required(f"/{key}", value, key in body, expected)
    elif not isinstance(value, str) or not value or (pattern and not re.fullmatch(pattern,
                                                                                   value)):
        problems.add("field_malformed", f"/{key}", value, expected)


def _whole(body: dict[str, Any], key: str, low: int, high: int, problems: ProblemList) -> None:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add("field_must_be_a_whole_number", f"/{key}", value,
                     f"a whole number from {low} to {high}")


def parse_request(body: Any, peers: frozenset[str],
                  participants: frozenset[str]) -> TransferRequest:
    """A /sim/peer/send body, with every problem reported at once."""
    problems = ProblemList()
    if not isinstance(body, dict):
        problems.add("body_must_be_a_json_object", "/", type(body).__name__, "an object")
        problems.raise_if_any(ValidationFailed)
    body = {"count": 1, **body}
    known = set(TransferRequest.__dataclass_fields__)
    for key in sorted(set(body) - known):
        problems.add("field_unknown", f"/{key}", key, ", ".join(sorted(known)))
    if body.get("sender") not in peers:
        problems.add("sender_must_be_a_simulated_peer", "/sender", body.get("sender"),
                     "one of " + ", ".join(sorted(peers)))
    if body.get("receiver") not in participants or body.get("receiver") == body.get("sender"):
        problems.add("receiver_must_be_another_participant", "/receiver",
                     body.get("receiver"), "a participant other than the sender")
    for key in ("payee_account", "payee_name"):
        _text(body, key, problems)
    _text(body, "business_type", problems, False, r"[A-Z][0-9]{3}")
    _text(body, "business_kind", problems, False, r"[0-9]{5}")
    _text(body, "priority", problems, False, "URGT|HIGH|NORM")
    _text(body, "payee_bank", problems, False, _BANK_CODE.pattern)
    _text(body, "payer_name", problems, False)
    _text(body, "payer_account", problems, False)
    _whole(body, "amount_fen", 1, 10**17, problems)
    _whole(body, "count", 1, TRANSFERS_PER_REQUEST_MAX, problems)
    remittance = body.get("remittance")
    if remittance is not None and not (isinstance(remittance, list) and all(
            isinstance(line, str) and line for line in remittance)):
        problems.add("field_malformed", "/remittance", remittance, "a list of strings")
    problems.raise_if_any(ValidationFailed)
    if remittance is not None:
        body["remittance"] = tuple(remittance)
    return TransferRequest(**body)


class PeerBank:
    def __init__(self, spec: PeerSpec, keys: Keys, ids: Ids, clock: Clock,
                 branches: dict[str, str]) -> None:
        self.spec = spec
        self.keys = keys
        self.ids = ids
        self.clock = clock
        self.branches = branches  # clearing bank -> a branch to name as payee's bank
        self.received: Counter[str] = Counter()

    @property
    def code(self) -> str:
        return self.spec.code

    def header(self, receiver: str, mesg_type: str, priority: str = "3",
               system: str = "HVPS") -> Header:
        """The header of a message this bank sends, with its next MesgID."""
        now = self.clock.now()
        send_date, send_time = send_date_time(now)
        mesg_id = self.ids.bank_mesg_id(self.code, now)
        return Header(orig_sender=self.code, orig_sender_sid=system, orig_receiver=receiver,
                      orig_receiver_sid=system, send_date=send_date, send_time=send_time,
                      mesg_type=mesg_type, mesg_id=mesg_id, mesg_ref_id=mesg_id,
                      priority=priority, direction="U")

    def credit_transfer(self, req: TransferRequest) -> tuple[bytes, dict[str, str]]:
        """One signed hvps.111 envelope and the ids it carries."""
        header = self.header(req.receiver, hvps111.MESSAGE_TYPE,
                              _HEADER_PRIORITY[req.priority])
        msg_id = self.ids.xml_msg_id(self.code)
        payee_bank = req.payee_bank or self.branches.get(req.receiver, req.receiver)
        ct = hvps111.CreditTransfer(
            msg_id=msg_id, created_at=iso_datetime(self.clock.now()),
            end_to_end_id=f"{self.spec.branch}{header.mesg_id}", tx_id=msg_id,
            business_type=req.business_type, business_kind=req.business_kind,
            amount_fen=req.amount_fen, priority=req.priority, instg_direct=self.code,
            instg_branch=self.spec.branch, instd_direct=req.receiver, instd_branch=payee_bank,
            debtor_name=req.payer_name, debtor_account=req.payer_account,
            debtor_agent=self.spec.branch, creditor_agent=payee_bank,
            creditor_name=req.payee_name, creditor_account=req.payee_account,
            debtor_agent_name=self.spec.name, remittance=req.remittance)
        raw = codec.encode(header, hvps111.build(ct), self.keys.ring)
        ids = {"mesg_id": header.mesg_id, "msg_id": msg_id, "tx_id": msg_id,
               "end_to_end_id": ct.end_to_end_id}
        return raw, ids

    def receive(self, raw: bytes) -> codec.Decoded | None:
        """Check a message the NPC delivered, once for every part of the peer that
        answers it; None (logged) when it cannot be read."""
        try:
            decoded = self.keys.decode(raw, frozenset({self.code}), unmapped=_READ_UNMAPPED)
        except PaygateError as exc:
            event(log, "peer_refused_message", logging.WARNING, peer=self.code,
                  code=exc.code)
            return None
        header = decoded.header
        self.received[header.mesg_type] += 1
        event(log, "peer_received", peer=self.code, mesg_type=header.mesg_type,
              mesg_id=header.mesg_id, sender=header.orig_sender, problems=len(decoded.problems))
        return decoded

    def acknowledge(self, decoded: codec.Decoded) -> list[bytes]:
        """The ccms.990 for a received message (acknowledgements and discard notices
        get none)."""
        if decoded.header.mesg_type in _UNANSWERED:
            return []
        return [self._ack(decoded.header)]

    def _ack(self, original: Header) -> bytes:
        body = templates.ack_body(ccms990.CommConf(
            orig_sender=original.orig_sender, orig_send_date=original.send_date,
            mt=original.mesg_type, msg_id=original.mesg_id, msg_ref_id=original.mesg_ref_id))
        header = self.header(NPC_CODE, ccms990.MESSAGE_TYPE,
                              system=original.orig_receiver_sid)
        return templates.unsigned_envelope(header, body)
