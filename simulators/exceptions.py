"""The simulated NPC's answers to cancellation requests and status queries, and returns
(退汇) made by the simulated peer banks.

- ccms.307 → ccms.308: a payment still in the central queue (PR12) is cancelled (PR08)
  and the payer's queue is looked at again, since the cancelled item may have blocked
  smaller ones behind it; a settled, rejected, cancelled or unknown payment is refused
  (PR09) with the reason. Only the payment's own sender may cancel it. A 307 naming a
  BEPS package withdraws one of its transactions while the package waits for netting
  (beps_cancel.py).
- ccms.316 → ccms.317: the NPC reports from its records what became of a message (PR04
  settled with the settlement date, PR12 queued, PR08 cancelled, PR09 rejected), or
  PR24 when it has no such message from that sender.
- `POST /sim/peer/return`: a peer sends back a payment it received and the NPC settled,
  as an hvps.111 of business type A105 naming the original by its message type (/F40/),
  message id (/E50/) and instructing participant (/A70/), with the reason (/H20/). A
  return of a return is refused, and so is a second return of the same payment.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gateway.errors import Conflict, NotFound, Problem, ProblemList, ValidationFailed
from gateway.messages import ccms307, ccms316, codec, hvps111
from gateway.messages.common import GroupHeader, NpcProcessing, OriginalRef
from simulators import beps_cancel, codes
from simulators.logfmt import event
from simulators.peers import TransferRequest
from simulators.store import CANCELLED, QUEUED, REJECTED, SETTLED

if TYPE_CHECKING:
    from simulators.app import Simulator
    from simulators.node import Node

log = logging.getLogger("npc.exceptions")

REQUEST_TYPES = frozenset({ccms307.MESSAGE_TYPE, ccms316.MESSAGE_TYPE})
NOT_ACCEPTED = ccms316.NOT_ACCEPTED
RETURN_TYPE, RETURN_KIND = "A105", "02108"
REASON_LEN_MAX = 100  # "/H20/" and the reason stay within a Max140Text Ustrd line

CANCELLED_AT_REQUEST = codes.Reason("HV0C0002", "cancelled at the sender's request")
CANCEL_SETTLED = codes.Reason("HV0E0011", "cannot cancel: the payment has settled")
CANCEL_NOT_QUEUED = codes.Reason("HV0E0012", "cannot cancel: the payment is not queued")
NOT_FOUND = codes.Reason("HV0E0013", "no such message from this sender")
CANCEL_RULE_BROKEN = codes.Reason("HV0E0014", "cancel request refused")
# What the status query reports for each status the NPC keeps.
STATUS_REASONS = {
    SETTLED: codes.SETTLED, QUEUED: codes.QUEUED,
    CANCELLED: codes.Reason("HV0C0000", "cancelled"),
    REJECTED: codes.Reason("HV0E0000", "rejected"),
}
# The statuses the NPC can be in, best first: a message id sent twice by mistake is
# reported by what became of its most advanced copy.
_STATUS_ORDER = "CASE status WHEN 'PR04' THEN 0 WHEN 'PR12' THEN 1 WHEN 'PR08' THEN 2 ELSE 3 END"


def answer(node: Node, decoded: codec.Decoded) -> str:
    """Answer a ccms.307 or ccms.316; returns what became of it (for logs and tests)."""
    if decoded.header.mesg_type == ccms307.MESSAGE_TYPE:
        return _cancel(node, decoded)
    return _status(node, decoded)


def _find(node: Node, sender: str, original: OriginalRef) -> tuple | None:
    """(id, status, settled_on) of the sender's payment named by `original`."""
    if original.instg_party != sender:
        return None
    return node.store.conn.execute(
        f"SELECT id, status, settled_on FROM payments WHERE sender = ? AND msg_id = ? "
        f"AND mesg_type = ? ORDER BY {_STATUS_ORDER}, id DESC LIMIT 1",
        (sender, original.msg_id, original.mt)).fetchone()


def _cancel(node: Node, decoded: codec.Decoded) -> str:
    req: ccms307.CancelRequest = decoded.obj
    sender = decoded.header.orig_sender
    if decoded.problems:
        status, reason = ccms307.REFUSED, CANCEL_RULE_BROKEN
        detail = ",".join(sorted({p.code for p in decoded.problems}))
    elif req.payment.mt in ccms307.PACKAGE_TYPES:
        status, reason, detail = beps_cancel.cancel(node.store.conn, sender, req.payment,
                                                    req.payment_tx,
                                                    node.clock.now().isoformat())
    else:
        status, reason, detail = _cancel_hvps(node, sender, req)
    request = OriginalRef(req.header.msg_id, sender, ccms307.MESSAGE_TYPE)

    def build(g: GroupHeader) -> bytes:
        return ccms307.build_response(ccms307.CancelResponse(
            g, request, req.payment, status, reason.code, codes.reject_text(reason, detail)))
    node.notices.originate(sender, ccms307.RESPONSE_TYPE, decoded.header.orig_sender_sid,
                           build)
    event(log, "cancel_answered", sender=sender, msg_id=req.payment.msg_id, status=status,
          reason=reason.code)
    return status


def _cancel_hvps(node: Node, sender: str,
                 req: ccms307.CancelRequest) -> tuple[str, codes.Reason, str]:
    """Cancel a payment in the central queue; (PrcSts, reason, detail)."""
    found = _find(node, sender, req.payment)
    if found is None:
        return ccms307.REFUSED, NOT_FOUND, req.payment.msg_id
    if found[1] == QUEUED:
        node.store.set_status(found[0], CANCELLED)
        node.rtgs.release_payer(sender)
        return ccms307.CANCELLED, CANCELLED_AT_REQUEST, ""
    return (ccms307.REFUSED, CANCEL_SETTLED if found[1] == SETTLED else CANCEL_NOT_QUEUED,
            found[1])


def _status(node: Node, decoded: codec.Decoded) -> str:
    query: ccms316.StatusQuery = decoded.obj
    sender = decoded.header.orig_sender
    found = _find(node, sender, query.subject)
    if found is None:
        npc = NpcProcessing(NOT_ACCEPTED, NOT_FOUND.code, NOT_FOUND.text)
    else:
        reason = STATUS_REASONS.get(found[1], NOT_FOUND)
        npc = NpcProcessing(found[1], reason.code,
                            None if found[1] == SETTLED else reason.text,
                            settlement_date=found[2] if found[1] == SETTLED else None)
    request = OriginalRef(query.header.msg_id, sender, ccms316.MESSAGE_TYPE)

    def build(g: GroupHeader) -> bytes:
        return ccms316.build_response(ccms316.StatusResponse(g, request, query.subject, npc))
    node.notices.originate(sender, ccms316.RESPONSE_TYPE, decoded.header.orig_sender_sid,
                           build)
    event(log, "status_answered", sender=sender, msg_id=query.subject.msg_id,
          status=npc.status)
    return npc.status


def parse_return(body: Any, peers: frozenset[str]) -> tuple[str, str, str]:
    """(peer, original message id, reason) of a /sim/peer/return body."""
    problems = ProblemList()
    if not isinstance(body, dict):
        problems.add("body_must_be_a_json_object", "/", type(body).__name__, "an object")
        problems.raise_if_any(ValidationFailed)
    for key in sorted(set(body) - {"sender", "msg_id", "reason"}):
        problems.add("field_unknown", f"/{key}", key, "sender, msg_id, reason")
    if body.get("sender") not in peers:
        problems.add("sender_must_be_a_simulated_peer", "/sender", body.get("sender"),
                     "one of " + ", ".join(sorted(peers)))
    msg_id, reason = body.get("msg_id"), body.get("reason", "退汇")
    if not problems.not_text("/msg_id", msg_id, "the XML MsgId of the payment") \
            and not (msg_id or "").strip():
        problems.required("/msg_id", msg_id, "msg_id" in body, "the XML MsgId of the payment")
    if not isinstance(reason, str) or not 0 < len(reason) <= REASON_LEN_MAX:
        problems.add("return_reason_malformed", "/reason", reason,
                     f"text of 1 to {REASON_LEN_MAX} characters")
    problems.raise_if_any(ValidationFailed)
    return body["sender"], msg_id, reason


def peer_return(sim: Simulator, body: Any) -> dict[str, str]:
    """Have a peer return a payment it received; the ids of the return and its outcome."""
    peer_code, msg_id, reason = parse_return(body, frozenset(sim.peers))
    with sim.store.transaction():
        original = _received(sim, peer_code, msg_id)
        peer = sim.peers[peer_code]
        raw, ids = peer.credit_transfer(TransferRequest(
            sender=peer_code, receiver=original.instg_direct,
            payee_account=original.debtor_account, payee_name=original.debtor_name,
            amount_fen=original.amount_fen, business_type=RETURN_TYPE,
            business_kind=RETURN_KIND, payee_bank=original.debtor_agent,
            payer_name=original.creditor_name, payer_account=original.creditor_account,
            remittance=(f"/F40/{hvps111.MESSAGE_TYPE}", f"/E50/{original.msg_id}",
                        f"/A70/{original.instg_direct}", f"/H20/{reason}")))
        ids["outcome"] = sim.node.take(raw)
        if ids["outcome"] in (SETTLED, QUEUED):
            sim.store.set_meta(_returned_key(peer_code, original), ids["msg_id"])
    event(log, "peer_returned", peer=peer_code, original=msg_id, outcome=ids["outcome"])
    return ids


def _returned_key(peer: str, original: hvps111.CreditTransfer) -> str:
    return f"returned:{peer}:{original.instg_direct}:{original.msg_id}"


def _received(sim: Simulator, peer: str, msg_id: str) -> hvps111.CreditTransfer:
    """The settled hvps.111 with this MsgId the peer received, if it may be returned."""
    row = sim.store.conn.execute(
        "SELECT raw FROM payments WHERE receiver = ? AND msg_id = ? AND mesg_type = ? "
        "AND status = ? ORDER BY id DESC LIMIT 1",
        (peer, msg_id, hvps111.MESSAGE_TYPE, SETTLED)).fetchone()
    if row is None:
        raise NotFound(Problem("settled_payment_to_peer_not_found", "/msg_id", msg_id,
                               "the MsgId of an hvps.111 the peer received, settled"))
    original: hvps111.CreditTransfer = codec.decode(bytes(row[0])).obj
    if original.business_type == RETURN_TYPE:
        raise ValidationFailed(Problem("return_of_a_return_not_allowed", "/msg_id", msg_id,
                                       "a payment that is not itself a return (A105)"))
    done = sim.store.meta(_returned_key(peer, original))
    if done is not None:
        raise Conflict(Problem("payment_already_returned", "/msg_id", msg_id,
                               "a payment not yet returned", f"returned by {done}"))
    return original
