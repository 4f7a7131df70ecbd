"""The simulator's HTTP surface: the link's inbound URL and the control API.

    POST /link/inbound      an envelope from a bank; 200 means taken (CONTRACT.md §4),
                            400 dropped (its header names no participant: nobody to tell);
                            several framed by one Envelope-Lengths header (given twice:
                            400 header_repeated, nothing taken)
    GET  /sim/stats         balances, counters, phase, outbox states, faults
    GET  /sim/queue         the central queue in release order
    POST /sim/fund          {"participant", "amount_fen"}: fund (or drain) an account
    POST /sim/phase         {"status", "date"?, "force"?}: change and announce the HVPS status
    POST /sim/clock         {"at"}: move a virtual clock (--clock) forward to `at`
    POST /sim/peer/send     make a simulated peer send hvps.111 credits
    POST /sim/peer/return   {"sender", "msg_id", "reason"?}: a peer returns a payment
    GET|POST /sim/faults    read or change the link faults
    POST /sim/redeliver     {"include_faulted"?}: retry undelivered messages
    POST /sim/recon-skew    {"participant", "count", "amount_fen"}: skew the next 711s
    POST /sim/peer/query, POST /sim/peer/free-format, GET|POST /sim/queries
                            peers' queries, free text and answers (simulators/queries.py)

Errors use the product's one shape, {"errors": [...]} (CONTRACT.md §6).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.clock import ScaledClock, parse_business_datetime
from gateway.errors import (
    PaygateError, Problem, ProblemList, ValidationFailed, header_repeated,
)
from gateway.messages import framing
from gateway.messages.envelope import ENVELOPE_LEN_MAX
from simulators import session
from simulators import exceptions
from simulators import beps_control
from simulators import faults as faults_mod
from simulators.logfmt import event
from simulators.node import DROPPED, dropped_problem

if TYPE_CHECKING:
    from simulators.app import Simulator

log = logging.getLogger("npc.control")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# An envelope the NPC drops (its header unreadable, or naming no participant) is not
# taken: refused as unreadable, alone or within a framed POST.
DROPPED_STATUS = 400
SIM_KEY = web.AppKey("simulator", object)


def _sim(request: web.Request) -> Simulator:
    return request.app[SIM_KEY]  # type: ignore[return-value]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PaygateError as exc:
        event(log, "control_refused", logging.WARNING, path=request.path, code=exc.code)
        return web.json_response(exc.to_dict(), status=exc.status)


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise PaygateError(Problem("body_must_be_json", "/", str(exc)[:100],
                                   "a JSON document"), status=400) from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed(Problem("body_must_be_a_json_object", "/",
                                       type(body).__name__, "an object"))
    return body


def _whole(body: dict[str, Any], key: str, problems: ProblemList, low: int | None = None,
           high: int | None = None) -> None:
    value = body.get(key)
    bad = isinstance(value, bool) or not isinstance(value, int)
    if not bad and ((low is not None and value < low) or (high is not None and value > high)):
        bad = True
    if bad:
        problems.add("field_must_be_a_whole_number", f"/{key}", value,
                     f"a whole number{'' if low is None else f' from {low}'}")


async def inbound(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    faults = sim.faults.faults
    if faults.offline or faults.error_status is not None:
        status = 503 if faults.offline else faults.error_status
        event(log, "fault_inbound_refused", logging.WARNING, status=status)
        return web.Response(status=status, text="not taken")
    # The framing header given twice is refused before the body is read, as the gateway
    # refuses it: splitting the body by either line would be a guess.
    given = request.headers.getall(framing.LENGTHS_HEADER, ())
    if len(given) > 1:
        raise PaygateError(header_repeated(framing.LENGTHS_HEADER, list(given)), 400)
    raw = await request.read()
    lengths = given[0] if given else None
    if lengths is None:
        outcome = await sim.intake.submit(raw)
        if outcome == DROPPED:
            return web.json_response({"errors": [dropped_problem(raw).to_dict()]},
                                     status=DROPPED_STATUS)
        return web.Response(text=outcome)
    envelopes = framing.split(raw, lengths)
    outcomes = await sim.intake.submit_many(envelopes)
    status, body = framing.answer([_answer(e, o) for e, o in zip(envelopes, outcomes)])
    return web.json_response(body, status=status)


def _answer(raw: bytes, outcome: str | BaseException) -> tuple[int, dict[str, Any]]:
    """One envelope of a framed POST, taken in the intake's batch with the others: one
    the NPC dropped (nobody to tell) or whose processing failed gets the 400 or 500 a
    POST of it alone would have got, and the others stand: the answer's `taken` counts
    only those taken."""
    if isinstance(outcome, BaseException):
        event(log, "take_failed", logging.ERROR, error=type(outcome).__name__,
              detail=str(outcome)[:200])
        return 500, {"errors": [Problem("internal_error", "/link/inbound", None,
                                        "an envelope the NPC can process",
                                        "the NPC failed on it; the error is logged"
                                        ).to_dict()]}
    if outcome == DROPPED:
        return DROPPED_STATUS, {"errors": [dropped_problem(raw).to_dict()]}
    return 200, {"outcome": outcome}


async def stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(_sim(request).stats())


async def queue(request: web.Request) -> web.StreamResponse:
    rows = _sim(request).store.queued()
    return web.json_response({"queued": [
        {"sender": r.sender, "receiver": r.receiver, "tx_id": r.tx_id,
         "end_to_end_id": r.end_to_end_id, "amount_fen": r.amount_fen,
         "priority_rank": r.priority_rank} for r in rows]})


async def fund(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    body = _object(await _json(request))
    problems = ProblemList()
    _whole(body, "amount_fen", problems)
    if body.get("amount_fen") == 0:
        problems.add("amount_must_not_be_zero", "/amount_fen", 0, "a non-zero whole number")
    problems.raise_if_any(ValidationFailed)
    with sim.store.transaction():
        balance_fen = sim.rtgs.fund(body.get("participant"), body["amount_fen"])
    return web.json_response({"participant": body["participant"], "balance_fen": balance_fen})


async def phase(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    body = _object(await _json(request))
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ValidationFailed(Problem("field_must_be_true_or_false", "/force", force,
                                       "true or false"))
    with sim.store.transaction():
        result = sim.phases.change(body.get("status"), body.get("date"), force=force)
    return web.json_response(result)


async def clock(request: web.Request) -> web.StreamResponse:
    """Move the simulator's virtual clock forward to `at` (ISO 8601; naive is Beijing
    time), as a demo's day passes from one phase to the next: 422 `clock_not_virtual`
    on real time, `clock_never_goes_back` for an instant before the clock's now."""
    sim = _sim(request)
    body = _object(await _json(request))
    at = body.get("at")
    try:
        target = parse_business_datetime(at) if isinstance(at, str) else None
    except ValueError:
        target = None
    if target is None:
        raise ValidationFailed(Problem("clock_at_malformed", "/at", at,
                                       "an ISO 8601 date and time, e.g. 2026-12-07T17:00:00"))
    if not isinstance(sim.clock, ScaledClock):
        raise ValidationFailed(Problem("clock_not_virtual", "/at", at,
                                       "a simulator started with --clock",
                                       "the simulator runs on real time, which nothing moves"))
    try:
        sim.clock.jump_to(target)
    except ValueError as exc:
        raise ValidationFailed(Problem("clock_never_goes_back", "/at", at,
                                       f"an instant from {sim.clock.now().isoformat()} on",
                                       str(exc))) from None
    event(log, "clock_moved", now=sim.clock.now().isoformat())
    return web.json_response({"now": sim.clock.now().isoformat()})


async def force_logout(request: web.Request) -> web.StreamResponse:
    """Take a participant off line: ccms.807 with the remark given."""
    sim = _sim(request)
    body = _object(await _json(request))
    with sim.store.transaction():
        mesg_id = session.force_logout(sim.node, body.get("participant", ""),
                                       body.get("remark", "forced logout by the operator"))
    return web.json_response({"mesg_id": mesg_id})


async def peer_send(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    created = sim.send_from_peer(await _json(request))
    return web.json_response({"created": created})


async def peer_return(request: web.Request) -> web.StreamResponse:
    created = exceptions.peer_return(_sim(request), await _json(request))
    return web.json_response({"created": created})


async def get_faults(request: web.Request) -> web.StreamResponse:
    return web.json_response(_sim(request).faults.faults.to_dict())


async def set_faults(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    sim.faults.faults = faults_mod.updated(sim.faults.faults, await _json(request))
    event(log, "faults_changed", logging.WARNING, **sim.faults.faults.to_dict())
    sim.link.wake_all()
    return web.json_response(sim.faults.faults.to_dict())


async def redeliver(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    body = _object(await _json(request))
    include = body.get("include_faulted", False)
    if not isinstance(include, bool):
        raise ValidationFailed(Problem("field_must_be_true_or_false", "/include_faulted",
                                       include, "true or false"))
    dests = sim.link.redeliver(include)
    event(log, "redelivery_requested", destinations=",".join(dests), include_faulted=include)
    return web.json_response({"destinations": dests})


async def recon_skew(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    body = _object(await _json(request))
    problems = ProblemList()
    if body.get("participant") not in sim.settings.participants:
        problems.add("participant_unknown", "/participant", body.get("participant"),
                     "a configured participant")
    _whole(body, "count", problems, 0, 10**6)
    _whole(body, "amount_fen", problems, 0)
    problems.raise_if_any(ValidationFailed)
    with sim.store.transaction():
        sim.store.set_skew(body["participant"], body["count"], body["amount_fen"])
    event(log, "recon_skew_set", participant=body["participant"], count=body["count"],
          amount_fen=body["amount_fen"])
    return web.json_response({k: body[k] for k in ("participant", "count", "amount_fen")})


def make_app(sim: Simulator) -> web.Application:
    # An envelope may be as large as the envelope module allows, plus some slack.
    app = web.Application(middlewares=[_errors], client_max_size=ENVELOPE_LEN_MAX + 4096)
    app[SIM_KEY] = sim
    app.router.add_post("/link/inbound", inbound)
    app.router.add_get("/sim/stats", stats)
    app.router.add_get("/sim/queue", queue)
    app.router.add_post("/sim/fund", fund)
    app.router.add_post("/sim/phase", phase)
    app.router.add_post("/sim/clock", clock)
    app.router.add_post("/sim/peer/send", peer_send)
    app.router.add_post("/sim/peer/return", peer_return)
    app.router.add_get("/sim/faults", get_faults)
    app.router.add_post("/sim/faults", set_faults)
    app.router.add_post("/sim/redeliver", redeliver)
    app.router.add_post("/sim/recon-skew", recon_skew)
    beps_control.add_routes(app)
    sim.queries.add_routes(app)
    app.router.add_post("/sim/force-logout", force_logout)
    return app
