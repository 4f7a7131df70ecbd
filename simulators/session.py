"""Link sessions at the simulated NPC: login and logout (ccms.805 → ccms.806), probes
(ccms.991 → ccms.992) and forced logout (ccms.807, on an operator's call).

The NPC remembers who is logged in (kept in the store's metadata, so a restart of the
simulator keeps it) and answers each request at once. It does not refuse business from a
participant that has not logged in: the simulator's own tests talk to it without a
session; `stats()["sessions"]` shows who is in.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.messages import ccms805, ccms991, codec
from simulators.logfmt import event
from simulators.phases import current_phase

log = logging.getLogger("npc.session")

REQUEST_TYPES = frozenset({ccms805.MESSAGE_TYPE, ccms991.MESSAGE_TYPE})
ACCEPTED = "PR07"


def _key(code: str) -> str:
    return f"session:{code}"


def answer(node: Any, decoded: codec.Decoded) -> str:
    header = decoded.header
    if header.mesg_type == ccms991.MESSAGE_TYPE:
        return _probe(node, decoded)
    request: ccms805.LoginRequest = decoded.obj
    status, work_date = current_phase(node.store)
    logged_in = request.operation == ccms805.LOGIN
    node.store.set_meta(_key(header.orig_sender), "in" if logged_in else "out")
    node.notices.originate(
        header.orig_sender, ccms805.RESPONSE_TYPE, "CCMS",
        lambda g: ccms805.build_response(ccms805.LoginResponse(
            header=g, request_msg_id=request.header.msg_id, operation=request.operation,
            system_date=work_date, system_status=status, status=ACCEPTED)))
    event(log, "logged_in" if logged_in else "logged_out", participant=header.orig_sender)
    return "answered"


def _probe(node: Any, decoded: codec.Decoded) -> str:
    probe: ccms991.Probe = decoded.obj
    response = ccms991.ProbeResponse(
        prober_node=probe.sender_node, prober_server=probe.sender_server,
        prober_line_manager=probe.sender_line_manager, route=probe.sender_route,
        probed_at=probe.sent_at, responder_node="0000", responder_server="npc",
        responder_line_manager="npc", loads=(ccms991.LineLoad("link", "0"),))
    node.notices.originate(decoded.header.orig_sender, ccms991.RESPONSE_TYPE, "CCMS",
                           lambda g: ccms991.build_response(response))
    return "answered"


def force_logout(node: Any, participant: str, remark: str) -> str:
    node.store.set_meta(_key(participant), "out")
    mesg_id = node.notices.originate(
        participant, ccms805.LOGOUT_TYPE, "CCMS",
        lambda g: ccms805.build_logout(ccms805.ForcedLogout(
            header=g.__class__(**{**g.__dict__, "remark": remark}))))
    event(log, "forced_logout", logging.WARNING, participant=participant, remark=remark)
    return mesg_id


def sessions(node: Any, participants: frozenset[str]) -> dict[str, str]:
    return {code: node.store.meta(_key(code)) or "out" for code in sorted(participants)}
