"""The core system's API for the exception flows.

    POST /v1/transfers/{id}/return      {"reason"}: return an incoming payment (A105)
    POST /v1/transfers/{id}/cancel      {"reason"?}: cancel an outgoing payment
    POST /v1/transfers/{id}/status-query  ask the NPC what became of a payment
    GET  /v1/transfers?state=S&limit=N  payments by state, newest first; `unknown` ones
                                        say since when and how many queries were asked
    GET  /v1/transfers/{id}/exceptions  the payment's returns, cancellations and queries

Authentication is the core API's (gateway.api.authenticate); errors have the product's
one shape. A return or a request to the NPC answers 202: it is recorded and on its
way, and its outcome shows in the payment's state and history.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from gateway import payments
from gateway.api import BODY_LEN_MAX, GATEWAY_KEY, authenticate
from gateway.errors import NotFound, PaygateError, Problem, ValidationFailed
from gateway.exceptions import schema, status
from gateway.states import IN_STATES, OUT_STATES

if TYPE_CHECKING:
    from gateway.exceptions.extension import Exceptions

LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
EXT_KEY: web.AppKey = web.AppKey("exceptions", object)


def _json(data: Any, status_code: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status_code,
                        content_type="application/json")


async def _body(request: web.Request) -> tuple[str, dict[str, Any]]:
    """(client, JSON object) of an authenticated POST; an empty body is {}."""
    if request.content_length is not None and request.content_length > BODY_LEN_MAX:
        raise PaygateError(Problem("body_too_large", "/", request.content_length,
                                   f"at most {BODY_LEN_MAX} bytes"), 413)
    raw = await request.read()
    client = authenticate(request, raw)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise PaygateError(Problem("body_must_be_json", "/", raw[:80].decode("latin-1"),
                                   "a JSON object"), 400) from None
    if not isinstance(data, dict):
        raise ValidationFailed(Problem("body_must_be_a_json_object", "/",
                                       type(data).__name__, "a JSON object"))
    return client, data


def _ext(request: web.Request) -> Exceptions:
    return request.app[EXT_KEY]  # type: ignore[return-value]


def visible(gw: Any, payment: dict[str, Any], client: str) -> bool:
    """With client credentials configured, a payment one client submitted is not shown
    to another, as for GET /v1/transfers/{id}; incoming payments belong to no client."""
    return not gw.settings.api_keys or payment.get("client") in (None, client)


async def _payment_of(request: web.Request, client: str) -> str:
    """The payment id of the path, once the client may see it (404 otherwise)."""
    payment_id = request.match_info["id"]
    gw = request.app[GATEWAY_KEY]
    payment = await gw.store.run(lambda tx: payments.get(tx, payment_id))
    if not visible(gw, payment, client):
        raise NotFound(Problem("payment_not_found", "/id", payment_id,
                               "an existing payment of this client"))
    return payment_id


async def post_return(request: web.Request) -> web.Response:
    client, body = await _body(request)
    _only(body, ("reason",))
    payment_id = await _payment_of(request, client)
    result = await _ext(request).request_return(payment_id, body.get("reason"),
                                                f"core:{client}", client)
    return _json(result, 202)


async def post_cancel(request: web.Request) -> web.Response:
    client, body = await _body(request)
    _only(body, ("reason",))
    payment_id = await _payment_of(request, client)
    result = await _ext(request).request_cancel(payment_id, body.get("reason"),
                                                f"core:{client}")
    # Cancelled here and now (never sent, never packed, or taken out of an unsent
    # package): 200; a request on its way to the NPC: 202.
    return _json(result, 200 if result["state"] == "cancelled" else 202)


async def post_status_query(request: web.Request) -> web.Response:
    client, body = await _body(request)
    _only(body, ())
    payment_id = await _payment_of(request, client)
    result = await _ext(request).request_status(payment_id, f"core:{client}")
    return _json(result, 202)


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationFailed([Problem("field_unknown", f"/{name}", body[name],
                                        "only: " + (", ".join(allowed) or "no fields"))
                                for name in unknown])


async def list_transfers(request: web.Request) -> web.Response:
    client = authenticate(request, b"")
    state, limit = _list_params(request)
    gw = request.app[GATEWAY_KEY]
    now = gw.clock.now()
    rows = await gw.store.run(lambda tx: listing(tx, state, limit, now,
                                                 lambda p: visible(gw, p, client)))
    return _json({"transfers": rows, "count": len(rows)})


def _list_params(request: web.Request) -> tuple[str | None, int]:
    state = request.query.get("state") or None
    problems = []
    if state is not None and state not in set(OUT_STATES) | set(IN_STATES):
        problems.append(Problem("state_unknown", "?state", state,
                                "one of " + ", ".join(sorted(set(OUT_STATES) | set(IN_STATES)))))
    text = request.query.get("limit", str(LIST_LIMIT_DEFAULT))
    limit = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= limit <= LIST_LIMIT_MAX:
        problems.append(Problem("limit_out_of_range", "?limit", text,
                                f"a whole number from 1 to {LIST_LIMIT_MAX}"))
    if problems:
        raise ValidationFailed(problems)
    return state, limit


def listing(tx: Any, state: str | None, limit: int, now: datetime,
            shown: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Public views of the payments `shown` lets through, newest first (at most `limit`
    read); an unknown one also says for how long it has been."""
    out = []
    for payment in payments.search(tx, state, limit):
        if not shown(payment):
            continue
        view = payments.public_view(payment)
        if payment["state"] == "unknown":
            since = status.unknown_since(tx, payment["id"])
            view["unknown_since"] = since
            view["unknown_for_s"] = (round((now - datetime.fromisoformat(since))
                                           .total_seconds(), 3) if since else None)
            view["status_queries"] = status.queries_asked(tx, payment["id"])
        out.append(view)
    return out


async def get_exceptions(request: web.Request) -> web.Response:
    client = authenticate(request, b"")
    payment_id = await _payment_of(request, client)
    gw = request.app[GATEWAY_KEY]

    def work(tx: Any) -> dict[str, Any]:
        payment = payments.get(tx, payment_id)
        return {"payment": payment_id, "state": payment["state"],
                "returns": schema.returns_of(tx, payment_id),
                "requests": schema.requests_of(tx, payment_id),
                "kept_from_automatic_return": schema.kept(tx, payment_id)}
    return _json(await gw.store.run(work))


def add_routes(app: web.Application, ext: Exceptions) -> None:
    app[EXT_KEY] = ext
    app.router.add_post("/v1/transfers/{id}/return", post_return)
    app.router.add_post("/v1/transfers/{id}/cancel", post_cancel)
    app.router.add_post("/v1/transfers/{id}/status-query", post_status_query)
    app.router.add_get("/v1/transfers", list_transfers)
    app.router.add_get("/v1/transfers/{id}/exceptions", get_exceptions)
