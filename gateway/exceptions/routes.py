"""The core system's API for the exception flows.

    POST /v1/transfers/{id}/return      {"reason"}: return an incoming payment (A105)
    POST /v1/transfers/{id}/cancel      {"reason"?}: cancel an outgoing payment
    POST /v1/transfers/{id}/status-query  ask the NPC what became of a payment
    GET  /v1/transfers?state=S&limit=N&after=ID
                                        payments, newest first, optionally in one state;
                                        `unknown` ones say since when and how many
                                        queries were asked; `next_after` pages on
    GET  /v1/transfers/{id}/exceptions  the payment's returns, cancellations and queries

Authentication is the core API's (gateway.api.authenticate); errors have the product's
one shape. A return or a request to the NPC answers 202: it is recorded and on its
way, and its outcome shows in the payment's state and history.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import jsontext, payments, scope
from gateway.api import GATEWAY_KEY, authenticate, query_params, read_json
from gateway.digits import whole_number
from gateway.errors import Problem, ValidationFailed
from gateway.exceptions import schema, status
from gateway.states import IN_STATES, OUT_STATES

if TYPE_CHECKING:
    from gateway.exceptions.extension import Exceptions

LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
# A listing cursor is a payment id: letters and digits, P and 16 digits for ours, I or D,
# the sending bank and its message or transaction id (at most 33) for incoming ones.
CURSOR_LEN_MAX = 64
_PAYMENT_ID = re.compile(f"[A-Za-z0-9]{{1,{CURSOR_LEN_MAX}}}")
EXT_KEY: web.AppKey = web.AppKey("exceptions", object)


def _json(data: Any, status_code: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status_code,
                        content_type="application/json")


async def _body(request: web.Request) -> tuple[str, dict[str, Any]]:
    """(client, JSON object) of an authenticated POST, read as every JSON endpoint reads
    its body (gateway.api.read_json); an empty body is {}."""
    client, data = await read_json(request, empty_ok=True)
    if data is None:
        return client, {}
    if not isinstance(data, dict):
        raise ValidationFailed(Problem("body_must_be_a_json_object", "/",
                                       jsontext.type_name(data), "a JSON object"))
    return client, data


def _ext(request: web.Request) -> Exceptions:
    return request.app[EXT_KEY]  # type: ignore[return-value]


async def _payment_of(request: web.Request, client: str, acting: bool = True,
                      from_payer: bool = False) -> str:
    """The payment id of the path, once the client may see it (404 otherwise): one
    outside the client's scope (`api_balance_accounts`, gateway.scope) is refused as an
    id never given is, so that a return, a cancel or a query tells nothing of it. When
    `acting` (a return, a cancel, a status query), the payment must be the client's own
    or an incoming one (`scope.refuse_unowned`): a book transfer it sees as a credit to
    its account is its submitter's to act on. `from_payer` (a cancel, which gives the
    payer's money back to it): bounded by the payer's account as paying from it is
    (`scope.refuse_payer_outside`)."""
    payment_id = request.match_info["id"]
    gw = request.app[GATEWAY_KEY]

    def work(tx: Any) -> None:
        payment = payments.get(tx, payment_id)
        if not scope.shown(gw.settings, client, payment, gw.own_banks):
            raise payments.not_found(payment_id)
        scope.refuse_unseen(tx, gw.settings.api_balance_accounts, client, payment,
                            gw.own_banks, request.path)
        if acting:
            scope.refuse_unowned(gw.settings, client, payment, gw.own_banks, request.path)
        if from_payer:
            scope.refuse_payer_outside(gw.settings.api_balance_accounts, client, payment,
                                       gw.own_banks)
    await gw.store.run(work)
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
    payment_id = await _payment_of(request, client, from_payer=True)
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
    """One page of payments, newest first. `after` is the id of the last payment of the
    previous page (the answer's `next_after`); `next_after` is null on the last page."""
    client = await authenticate(request, b"")
    state, limit, after = _list_params(request)
    gw = request.app[GATEWAY_KEY]
    now = gw.clock.now()
    # Only the payments the client sees (by who made them and by its scope), filtered
    # where they are read, so that a page is full and `next_after` pages on among them
    # (gateway.scope).
    seen = scope.listing_condition(gw.settings, client, gw.own_banks)
    rows, more = await gw.store.run(lambda tx: listing(tx, state, limit, now, None, after,
                                                       seen))
    return _json({"transfers": rows, "count": len(rows),
                  "next_after": rows[-1]["id"] if more else None})


def _list_params(request: web.Request) -> tuple[str | None, int, str | None]:
    query, problems = query_params(request, ("state", "limit", "after"))
    state = query.get("state")
    if state is not None and state not in set(OUT_STATES) | set(IN_STATES):
        problems.append(Problem("state_unknown", "?state", state,
                                "one of " + ", ".join(sorted(set(OUT_STATES) | set(IN_STATES)))))
    text = query.get("limit", str(LIST_LIMIT_DEFAULT))
    limit = whole_number(text, LIST_LIMIT_MAX, low=1)
    if limit is None:
        problems.append(Problem("limit_out_of_range", "?limit", text,
                                f"a whole number from 1 to {LIST_LIMIT_MAX}"))
    after = query.get("after")
    if after is not None and not _PAYMENT_ID.fullmatch(after):
        problems.append(Problem("cursor_malformed", "?after", after[:80],
                                "the id of a payment, as `next_after` gave it (1 to "
                                f"{CURSOR_LEN_MAX} ASCII letters and digits)"))
    if problems:
        raise ValidationFailed(problems)
    return state, limit, after


def listing(tx: Any, state: str | None, limit: int, now: datetime, client: str | None,
            after: str | None = None, seen: tuple[str, list[Any]] | None = None
            ) -> tuple[list[dict[str, Any]], bool]:
    """Public views of at most `limit` payments, newest first, after the payment `after`
    (of `client`, or incoming, when `client` is given; those `seen`, an SQL condition,
    when given), and whether more follow; an unknown one also says for how long it has
    been."""
    older_than = _cursor_key(tx, after, client, seen) if after is not None else None
    found = payments.search(tx, state, limit + 1, older_than, client, seen)
    out = []
    for payment in found[:limit]:
        view = payments.public_view(payment)
        if payment["state"] == "unknown":
            since = status.unknown_since(tx, payment["id"])
            view["unknown_since"] = since
            view["unknown_for_s"] = (round((now - datetime.fromisoformat(since))
                                           .total_seconds(), 3) if since else None)
            view["status_queries"] = status.queries_asked(tx, payment["id"])
        out.append(view)
    return out, len(found) > limit


def _cursor_key(tx: Any, after: str, client: str | None,
                seen: tuple[str, list[Any]] | None = None) -> tuple[str, str]:
    """(created_at, id) of the payment a page starts after: one this client may see."""
    condition, params = seen or ("1 = 1", [])
    row = tx.query_one(f"SELECT created_at, id, client FROM payments WHERE id = ? AND "
                       f"{condition}", (after, *params))
    if row is None or (client is not None and row[2] not in (None, client)):
        raise ValidationFailed(Problem("cursor_unknown", "?after", after,
                                       "the id of a payment this client may see, as "
                                       "`next_after` gave it"))
    return row[0], row[1]


async def get_exceptions(request: web.Request) -> web.Response:
    client = await authenticate(request, b"")
    payment_id = await _payment_of(request, client, acting=False)
    gw = request.app[GATEWAY_KEY]

    def work(tx: Any) -> dict[str, Any]:
        payment = payments.get(tx, payment_id)
        return {"payment": payment_id, "state": payment["state"],
                "returns": schema.returns_of(tx, payment_id),
                "requests": schema.requests_of(tx, payment_id),
                "kept_from_automatic_return": schema.kept(tx, payment_id),
                "applied_from_suspense": schema.applied(tx, payment_id)}
    return _json(await gw.store.run(work))


def add_routes(app: web.Application, ext: Exceptions) -> None:
    app[EXT_KEY] = ext
    app.router.add_post("/v1/transfers/{id}/return", post_return)
    app.router.add_post("/v1/transfers/{id}/cancel", post_cancel)
    app.router.add_post("/v1/transfers/{id}/status-query", post_status_query)
    app.router.add_get("/v1/transfers", list_transfers)
    app.router.add_get("/v1/transfers/{id}/exceptions", get_exceptions)
