"""HTTP routes of the query desk, for the core system and operators.

    POST /v1/queries                 open a query (Idempotency-Key required)
    GET  /v1/queries                 ?state=open|answered|refused &direction=in|out
                                     &payment_id= &limit=  (soonest due first)
    GET  /v1/queries/{id}            one query with its replies
    POST /v1/queries/{id}/reply      an operator's answer to a query a bank sent us
                                     (Idempotency-Key required)
    POST /v1/queries/{id}/chase      a follow-up query (催查) about the same payment
                                     (Idempotency-Key required)
    GET  /v1/query-replies           ?after=<seq> &limit=  replies received and the
                                     NPC's refusals of our queries, in order
    POST /v1/free-format             send free text (ccms.303; Idempotency-Key required)
    GET  /v1/free-format             ?direction=in|out &after=<seq> &limit=

Credentials are checked as for every core-system endpoint (gateway.api.authenticate);
errors have the one shape of CONTRACT.md §6. A client reads, answers and chases only the
queries about payments it sees (another client's, or one outside its entry in
api_balance_accounts, is answered as a query id never given, and left out of the list,
as the replies to it are from the reply feed; gateway.scope). Of what names no payment
of ours (a query about a payment we do not have, free text, a reply to no query of
ours) a client sees what it made, and what no client made (a bank's, the gateway's
own) only when api_balance_accounts limits it to no accounts in particular (no entry,
or `*`); the rest is answered and left out alike (gateway.scope.sees_unattached).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.api import GATEWAY_KEY, authenticate, json_response, query_params, read_json
from gateway.digits import whole_number
from gateway.errors import ProblemList, ValidationFailed
from gateway.queries import records, requests

QUERIES_KEY: web.AppKey = web.AppKey("queries", object)
BODY_LEN_MAX = 64 * 1024  # a query is a few hundred bytes; this bounds a bad client


_json = json_response


async def _body(request: web.Request, kind: str | None = None,
                as_kept: Callable[[Any], Any] = lambda body: body) -> tuple[str, Any]:
    """(client, body) of a POST; for a `kind` of request kept by its Idempotency-Key (its
    name; `as_kept` makes the request it keeps of a body), a retry gets its stored
    answer whatever its Content-Type (gateway.api.read_json)."""
    desk = _desk(request)
    stored = None if kind is None else (
        lambda client, key, body: desk.answered_before(kind, client, key, as_kept(body)))
    return await read_json(request, BODY_LEN_MAX, empty_ok=True, stored=stored)


def _params(request: web.Request, choices: dict[str, tuple[str, ...]],
            numbers: dict[str, tuple[int, int, int]],
            texts: tuple[str, ...] = ()) -> dict[str, Any]:
    """Query-string parameters: names with allowed values, bounded whole numbers
    (default, low, high) and free texts."""
    p = ProblemList()
    query, p.items = query_params(request, (*choices, *numbers, *texts))
    out: dict[str, Any] = {name: query.get(name) for name in texts}
    for name, allowed in choices.items():
        value = query.get(name)
        if value is not None and value not in allowed:
            p.add("query_parameter_malformed", f"?{name}", value, " or ".join(allowed))
        out[name] = value
    for name, (default, low, high) in numbers.items():
        value = query.get(name, str(default))
        number = whole_number(value, high, low)
        if number is None:
            p.add("query_parameter_malformed", f"?{name}", value,
                  f"a whole number {low}..{high}")
            continue
        out[name] = number
    p.raise_if_any(ValidationFailed)
    return out


def _desk(request: web.Request) -> Any:
    return request.app[QUERIES_KEY]


async def post_query(request: web.Request) -> web.Response:
    client, body = await _body(request, "queries")
    status, view = await _desk(request).open_query(
        client, request.headers.get("Idempotency-Key"), body)
    return _json(view, status)


async def list_queries(request: web.Request) -> web.Response:
    client = await authenticate(request, b"")
    params = _params(request, {"state": records.STATES, "direction": ("in", "out")},
                     {"limit": (100, 1, 500)}, ("payment_id",))
    found = await _desk(request).search(params["state"], params["direction"],
                                        params["payment_id"], params["limit"], client)
    return _json({"queries": found})


async def get_query(request: web.Request) -> web.Response:
    client = await authenticate(request, b"")
    return _json(await _desk(request).get(request.match_info["id"], client))


async def post_reply(request: web.Request) -> web.Response:
    return await _on_query(request, "reply", requests.reply_request,
                           _desk(request).reply_under_key)


async def post_chase(request: web.Request) -> web.Response:
    return await _on_query(request, "chase", requests.chase_request, _desk(request).chase)


async def _on_query(request: web.Request, kind: str, as_kept: Callable[[str, Any], Any],
                    act: Callable[..., Awaitable[tuple[int, dict[str, Any]]]]
                    ) -> web.Response:
    """A request about the query the path names, kept by its Idempotency-Key (a reply, a
    chase: `kind`), kept as `as_kept` makes it of the query's id and the body, and done
    by `act(client, key, query_id, body)`, answered with the status it gives."""
    query_id = request.match_info["id"]
    client, body = await _body(request, kind, lambda body: as_kept(query_id, body))
    status, view = await act(client, request.headers.get("Idempotency-Key"), query_id, body)
    return _json(view, status)


async def reply_feed(request: web.Request) -> web.Response:
    client = await authenticate(request, b"")
    params = _params(request, {}, {"after": (0, 0, 10**15), "limit": (100, 1, 500)})
    replies = await _desk(request).reply_feed(params["after"], params["limit"], client)
    return _json({"replies": replies,
                  "next_after": replies[-1]["seq"] if replies else params["after"]})


async def post_free_format(request: web.Request) -> web.Response:
    client, body = await _body(request, "free_format")
    status, item = await _desk(request).send_free_format(
        client, request.headers.get("Idempotency-Key"), body)
    return _json(item, status)


async def list_free_format(request: web.Request) -> web.Response:
    client = await authenticate(request, b"")
    params = _params(request, {"direction": ("in", "out")},
                     {"after": (0, 0, 10**15), "limit": (100, 1, 500)})
    items = await _desk(request).free_format_feed(params["direction"], params["after"],
                                                  params["limit"], client)
    return _json({"messages": items,
                  "next_after": items[-1]["seq"] if items else params["after"]})


def add_routes(app: web.Application, desk: Any) -> None:
    assert app[GATEWAY_KEY] is desk.gw, "the desk serves the gateway it was installed in"
    app[QUERIES_KEY] = desk
    app.router.add_post("/v1/queries", post_query)
    app.router.add_get("/v1/queries", list_queries)
    app.router.add_get("/v1/queries/{id}", get_query)
    app.router.add_post("/v1/queries/{id}/reply", post_reply)
    app.router.add_post("/v1/queries/{id}/chase", post_chase)
    app.router.add_get("/v1/query-replies", reply_feed)
    app.router.add_post("/v1/free-format", post_free_format)
    app.router.add_get("/v1/free-format", list_free_format)
