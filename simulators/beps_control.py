"""The simulator's BEPS control API (beside control.py's):

    GET  /sim/beps/stats        packages by status, rounds, outstanding net positions
    POST /sim/beps/net          run a netting round now (then settle if HVPS settles)
    POST /sim/beps/cap          {"participant", "cap_fen"} or {"participant", "add_fen"}:
                                set or raise a net debit cap (more collateral)
    POST /sim/beps/peer/send    a peer sends us a beps.121 package (see beps_peer.py)
    POST /sim/beps/peer/debit   a peer sends a beps.127 debit package

Errors have the product's one shape (CONTRACT.md §6).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.errors import PaygateError, Problem, ProblemList, ValidationFailed
from simulators import control

if TYPE_CHECKING:
    from simulators.app import Simulator


def _sim(request: web.Request) -> "Simulator":
    return request.app[control.SIM_KEY]  # type: ignore[return-value]


async def _object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (an empty body is an empty object)."""
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise PaygateError(Problem("body_must_be_json", "/", str(exc)[:100],
                                   "a JSON document"), status=400) from None
    if not isinstance(body, dict):
        raise ValidationFailed(Problem("body_must_be_a_json_object", "/",
                                       type(body).__name__, "an object"))
    return body


async def stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(_sim(request).beps.stats())


async def net(request: web.Request) -> web.StreamResponse:
    result = _sim(request).beps.net_now()
    return web.json_response({"netting_date": result.netting_date,
                              "netting_round": result.netting_round,
                              "netted_packages": len(result.netted),
                              "waiting_packages": result.still_waiting})


async def cap(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    body = await _object(request)
    problems = ProblemList()
    if body.get("participant") not in sim.settings.participants:
        problems.add("participant_unknown", "/participant", body.get("participant"),
                     "a configured participant")
    given = [k for k in ("cap_fen", "add_fen") if k in body]
    if len(given) != 1 or not _whole(body[given[0]]):
        problems.add("cap_fen_or_add_fen_required", "/", sorted(body),
                     "exactly one of cap_fen (0 or more) and add_fen, whole fen")
    problems.raise_if_any(ValidationFailed)
    new_cap = sim.beps.set_cap(body["participant"], body.get("cap_fen"), body.get("add_fen"))
    return web.json_response({"participant": body["participant"], "cap_fen": new_cap})


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def peer_send(request: web.Request) -> web.StreamResponse:
    return await _peer(request, debit=False)


async def peer_debit(request: web.Request) -> web.StreamResponse:
    return await _peer(request, debit=True)


async def _peer(request: web.Request, debit: bool) -> web.StreamResponse:
    sim = _sim(request)
    body = await _object(request)
    peer = sim.peers.get(body.get("sender"))
    if peer is None:
        raise ValidationFailed(Problem("sender_must_be_a_simulated_peer", "/sender",
                                       body.get("sender"), ", ".join(sorted(sim.peers))))
    return web.json_response(sim.beps.peer_package(peer, body, debit, sim.node.take))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/sim/beps/stats", stats)
    app.router.add_post("/sim/beps/net", net)
    app.router.add_post("/sim/beps/cap", cap)
    app.router.add_post("/sim/beps/peer/send", peer_send)
    app.router.add_post("/sim/beps/peer/debit", peer_debit)
