"""The BEPS endpoints of the core system's API (docs/beps.md has the details).

    POST /v1/transfers/batch     many transfers in one request, each routed on its own
    GET  /v1/packages/{id}       a package we sent or received, with its transactions
    POST /v1/debits              collect from a payer at another bank (beps.127)
    /v1/debit-mandates, /v1/debit-stops   our customers' mandates and stops (mandates.py)
    POST /v1/periodic-credits    a periodic credit under an agreement (beps.125)

Errors have the CONTRACT.md §6 shape (the gateway's middleware answers them).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from gateway.api import (GATEWAY_KEY, StoredLookup, authenticate, json_response,
                         media_type_refusal, read_json)
from gateway import bulk, intake, jsontext, scope
from gateway.beps import debits_out, mandates, periodic
from gateway.errors import (Conflict, NotFound, PaygateError, Problem, ValidationFailed,
                            not_text)
from gateway.messages import beps128
from gateway.money import format_yuan

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_LEN_MAX = 64
PACKAGE_ITEMS_SHOWN_MAX = 1000  # a package holds at most this many (package_size_max)


_json = json_response


async def _body(request: web.Request, stored: StoredLookup | None = None,
                keyless: bool = False) -> tuple[str, Any]:
    return await read_json(request, stored=stored, keyless=keyless)


def _ext(request: web.Request) -> Any:
    from gateway.beps import extension_of
    return extension_of(request.app[GATEWAY_KEY])


async def post_batch(request: web.Request) -> web.Response:
    ext = _ext(request)

    async def stored(client: str, batch_key: str, body: Any) -> tuple[int, Any] | None:
        refusal = media_type_refusal(request)
        assert refusal is not None, "looked up only for a request refused for its type"
        answer = await stored_batch(ext.gw, client, batch_key or None, body, refusal)
        return None if answer is None else (200, answer)

    # Asked without a batch key too: items carrying their own keys are retried so.
    client, body = await _body(request, stored, keyless=True)
    return _json(await submit_batch(ext.gw, ext.settings.batch_items_max, client,
                                    request.headers.get("Idempotency-Key"), body))


async def submit_batch(gw: Any, items_max: int, client: str, batch_key: str | None,
                       body: Any) -> dict[str, Any]:
    """Submit every transfer of a batch; one result per item, in the batch's order.

    Item i's idempotency key is its own `idempotency_key` field, else the batch's key
    followed by ":i". Items are independent: one refusal leaves the others accepted.
    The accepted ones commit together (Gateway.submit_transfers).
    """
    if not isinstance(body, list) or not 1 <= len(body) <= items_max:
        raise ValidationFailed(Problem("batch_must_be_a_list_of_transfers", "/",
                                       jsontext.type_name(body) if not isinstance(body, list)
                                       else len(body), f"a JSON list of 1 to {items_max} "
                                       "transfer objects"))
    if batch_key is not None and len(batch_key) > IDEMPOTENCY_KEY_LEN_MAX - 6:
        raise ValidationFailed(Problem("idempotency_key_too_long", "Idempotency-Key",
                                       batch_key, f"at most {IDEMPOTENCY_KEY_LEN_MAX - 6} "
                                       "characters for a batch"))

    requests, refused = _item_requests(gw, client, body, batch_key)
    hashes: list[str] | None = None
    if batch_key and any(key == f"{batch_key}:{i}" for i, (key, _) in enumerate(requests)):
        # The list is compared by what its items ask for (intake.transfer_meaning): the
        # same transfers written another way are the same batch. Each item's meaning is
        # made once, for the list's hash and its own (an item naming its own key asks
        # for the transfer without it, whose hash the gateway makes).
        hashes, digest = intake.transfer_hashes(body)
        when = gw.clock.now()
        await gw.store.run(lambda tx: _hold_batch_key(tx, client, batch_key, body,
                                                      BATCH_HASH_MARK + digest, when))
        hashes = [h if requests[i][1] is body[i] else "" for i, h in enumerate(hashes)]
    asked = [i for i in range(len(body)) if i not in refused]
    outcomes = await gw.submit_transfers(client, [requests[i] for i in asked],
                                         None if hashes is None else [hashes[i] for i in asked])
    return _batch_answer(body, {**dict(zip(asked, outcomes)), **refused})


def _item_requests(gw: Any, client: str, body: list[Any], batch_key: str | None
                   ) -> tuple[list[tuple[str | None, Any]], dict[int, PaygateError]]:
    """Each item's (key, transfer), and the refusals of those refused on their own: a
    key missing or malformed, or a payer account outside the client's scope."""
    requests: list[tuple[str | None, Any]] = []
    refused: dict[int, PaygateError] = {}
    scopes = gw.settings.api_balance_accounts
    for index, item in enumerate(body):
        try:
            request = _item_key(index, item, batch_key)
            # An item paying from an account outside the client's scope is refused
            # before any lookup (gateway.scope), as a single transfer would be.
            scope.refuse_payment(scopes, client, request[1])
        except PaygateError as exc:
            refused[index] = exc
            request = (None, None)
        requests.append(request)
    return requests, refused


async def stored_batch(gw: Any, client: str, batch_key: str | None, body: Any,
                       refusal: PaygateError) -> dict[str, Any] | None:
    """The answer to a batch sent again in a body refused for its type (`refusal`, the
    415), from what is stored: None unless it is a retry, that is, when an item is keyed
    by its position under the batch's key, its list is the one recorded under the key
    (as `submit_batch` records it), and else (each item with its own key, with or without
    a batch key) an item was taken before under its key; then each item taken before
    gets its stored answer and every other the refusal, as a new request of that type
    would (none is taken now)."""
    if not isinstance(body, list) or not body:
        return None
    requests, outcomes = _item_requests(gw, client, body, batch_key)
    keyed = [(i, SimpleNamespace(client=client, idem_key=key))
             for i, (key, _) in enumerate(requests) if i not in outcomes]
    by_position = batch_key is not None and any(
        p.idem_key == f"{batch_key}:{i}" for i, p in keyed)

    def work(tx: Any) -> dict[str, tuple[str, Any]] | None:
        if by_position and not _batch_recorded(tx, client, batch_key, body):
            return None
        return bulk.stored_answers(tx, keyed)
    stored = await gw.store.run(work)
    if stored is None or not by_position and not stored:
        return None
    for i, p in keyed:
        transfer = requests[i][1]
        found = stored.get(p.idem_key)
        outcomes[i] = found[1] if found is not None and intake.same_transfer(
            found[0], intake.transfer_sha256(transfer), transfer) else refusal
    return _batch_answer(body, outcomes)


def _batch_answer(body: list[Any], outcomes: dict[int, Any]) -> dict[str, Any]:
    """A batch's answer: for each item, in order, its outcome (its (status, view) or the
    error refusing it); the accepted and refused counted."""
    results: list[dict[str, Any]] = []
    routes: dict[int, tuple[Any, dict[str, Any]]] = {}  # summed-up routes, by route
    for index in range(len(body)):
        outcome = outcomes[index]
        if isinstance(outcome, PaygateError):
            own_key = isinstance(body[index], dict) and "idempotency_key" in body[index]
            results.append({"index": index, "status": outcome.status,
                            **_within_item(index, outcome, own_key)})
        else:
            status, view = outcome
            results.append({"index": index, "status": status,
                            "transfer": _summary(view, routes)})
    accepted = sum(1 for r in results if r["status"] in (200, 201))
    return {"accepted": accepted, "refused": len(results) - accepted, "results": results}


# The record of a batch's list under its key: its hash is marked so that it never equals
# a request body's, and a single transfer sent under the same text is a 409, not a replay.
BATCH_RECORD_SUFFIX = ":batch"
BATCH_HASH_MARK = "batch:"


def _hold_batch_key(tx: Any, client: str, batch_key: str, body: list[Any], digest: str,
                    now: Any) -> None:
    """A batch key keys its items by position (`key:i`); the same key sent again with
    another list (refused items taken out, say) would move items onto the keys of others
    and pay them twice. The first list sent under the key is recorded (`digest`, the hash
    of what its items ask for), before any item is taken, and another list under it is
    refused whole."""
    key = batch_key + BATCH_RECORD_SUFFIX
    tx.execute("INSERT INTO idempotency (client, key, body_sha256, status, response, "
               "created_at) VALUES (?, ?, ?, 200, ?, ?) ON CONFLICT (client, key) DO NOTHING",
               (client, key, digest, f'{{"batch_items": {len(body)}}}', now.isoformat()))
    if _recorded_list(tx, client, batch_key, body, digest) is False:
        raise Conflict(Problem(
            "batch_key_reused_with_other_items", "Idempotency-Key", batch_key,
            "the same list of transfers as the first batch sent with this key",
            "items without their own idempotency_key are keyed by their position in the "
            "list, so another list under this key would move items onto other items' keys "
            "and pay them twice; send corrected or new transfers under a new key, or give "
            "each item its own idempotency_key"))


def _recorded_list(tx: Any, client: str, batch_key: str, body: list[Any],
                   digest: str) -> bool | None:
    """Whether the list recorded under `batch_key` asks for what `body` (whose hash is
    `digest`) does; None when no list is recorded under it."""
    stored = tx.query_one("SELECT body_sha256 FROM idempotency WHERE client = ? AND key = ?",
                          (client, batch_key + BATCH_RECORD_SUFFIX))
    if stored is None:
        return None
    return intake.same_transfer(stored[0].removeprefix(BATCH_HASH_MARK),
                                digest.removeprefix(BATCH_HASH_MARK), body)


def _batch_recorded(tx: Any, client: str, batch_key: str, body: list[Any]) -> bool:
    """Whether `body` is the list recorded under `batch_key` by a batch taken before."""
    return bool(_recorded_list(tx, client, batch_key, body, intake.transfer_hashes(body)[1]))


def _within_item(index: int, error: PaygateError, own_key: bool = False) -> dict[str, Any]:
    """An item's refusal with its JSON pointers into the batch: a field of item 3 is
    `/3/amount`, the item itself `/3`, and its key `/3/idempotency_key` when the item
    names its own. Paths that are not pointers into the body (the batch's Idempotency-Key
    header, of which an item without its own key takes `KEY:index`) stay as they are."""
    problems = [p.at(f"/{index}{'' if p.path == '/' else p.path}")
                if p.path.startswith("/")
                else p.at(f"/{index}/idempotency_key")
                if own_key and p.path == "Idempotency-Key" else p for p in error.problems]
    return PaygateError(problems, error.status).to_dict()


ROUTE_SUMMARY = ("rule", "channel", "action", "message_type")


def _summary(view: dict[str, Any], routes: dict[int, tuple[Any, dict[str, Any]]]
             ) -> dict[str, Any]:
    """A transfer's view in a batch answer: whole, except that its route is summed up
    (rule, channel, action, message type); GET /v1/transfers/{id} gives the whole
    explanation. Answering a thousand items with theirs would triple the answer.
    Transfers routed alike share one route record: `routes` keeps its summary (with the
    record, so that the id stays its own while the batch is answered)."""
    route = view.get("route")
    if not isinstance(route, dict):
        return view
    known = routes.get(id(route))
    if known is None:
        known = routes[id(route)] = (route, {key: route.get(key) for key in ROUTE_SUMMARY})
    return dict(view, route=known[1])


def _item_key(index: int, item: Any, batch_key: str | None) -> tuple[str | None, Any]:
    if not isinstance(item, dict):
        raise ValidationFailed(Problem("body_must_be_a_json_object", "/",
                                       jsontext.type_name(item), "a transfer object"))
    # The item itself is the transfer unless it names its own key (then a copy without it).
    transfer = item
    key = None
    if "idempotency_key" in item:
        transfer = dict(item)
        key = transfer.pop("idempotency_key")
    if key is None and batch_key:
        key = f"{batch_key}:{index}"
    if key is None or isinstance(key, str) and not key.strip():
        # As a missing or blank Idempotency-Key header is refused, at the item's own key:
        # without a key an item could be paid twice by a batch sent again.
        raise PaygateError(Problem(
            "idempotency_key_required", "/idempotency_key", key,
            f"an idempotency_key of 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII "
            "characters, not only spaces, or a batch Idempotency-Key header, which keys "
            f"an item without its own as KEY:{index}"), 400)
    expected = f"1 to {IDEMPOTENCY_KEY_LEN_MAX} characters"
    wrong_type = not_text("/idempotency_key", key, expected)
    if wrong_type is not None:
        raise ValidationFailed(wrong_type)
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_LEN_MAX:
        raise ValidationFailed(Problem("idempotency_key_malformed",
                                       "/idempotency_key", key, expected))
    return key, transfer


async def get_package(request: web.Request) -> web.Response:
    client = await authenticate(request, b"")
    ext = _ext(request)
    package_id = request.match_info["id"]
    seen = scope.seen_ids(ext.gw.settings, client, ext.gw.own_banks)
    view = await ext.gw.store.run(lambda tx: package_view(tx, package_id, seen))
    return _json(view)


_PACKAGE_COLUMNS = ("id", "direction", "msg_type", "msg_id", "sender", "receiver", "count",
                    "total_fen", "state", "mesg_id", "netting_date", "netting_round",
                    "reason", "deadline_at", "answers", "created_at", "updated_at")


def package_view(tx: Any, package_id: str, seen: tuple[str, list[Any]] | None = None
                 ) -> dict[str, Any]:
    """A package as it stands: its count, sum and transactions are what it holds now;
    those the NPC took out of it at our request (ccms.307 granted) are under
    `withdrawn`, with their count and sum, so that the two together are the package as
    it was sent. `seen`: the payments a client sees (gateway.scope.seen_ids), when it
    does not see all: only those of its transactions (and receipt lines) are shown, the
    count and sum are theirs (the package's own would tell of the others' amounts), and
    a package with none of them is answered as an id never given."""
    row = tx.query_one(f"SELECT {', '.join(_PACKAGE_COLUMNS)} FROM beps_packages "
                       "WHERE id = ?", (package_id,))
    if row is None:
        raise _package_not_found(package_id)
    only, only_params = (f" AND i.payment_id IN {seen[0]}", seen[1]) if seen else ("", [])
    view = dict(zip(_PACKAGE_COLUMNS, row))
    view["message_type"] = view.pop("msg_type")
    view["header_mesg_id"] = view.pop("mesg_id")
    if seen is not None:
        view["count"], view["total_fen"] = tx.query_one(
            "SELECT COUNT(*), COALESCE(SUM(p.amount_fen), 0) FROM beps_items i JOIN "
            "payments p ON p.id = i.payment_id WHERE i.package_id = ? AND p.state <> "
            f"'cancelled'{only}", (package_id, *only_params))
    view["amount"] = format_yuan(view["total_fen"])
    held, withdrawn = [], []
    for pid, state, amount_fen in tx.query(
            "SELECT p.id, p.state, p.amount_fen FROM beps_items i JOIN payments p "
            f"ON p.id = i.payment_id WHERE i.package_id = ?{only} ORDER BY i.created_at, "
            "p.id LIMIT ?", (package_id, *only_params, PACKAGE_ITEMS_SHOWN_MAX)):
        item = {"id": pid, "state": state, "amount_fen": amount_fen}
        # Only the NPC's grant leaves a cancelled item in its package: one taken out
        # before sending is in none (the package was rebuilt without it).
        (withdrawn if state == "cancelled" else held).append(item)
    withdrawn_fen = sum(item["amount_fen"] for item in withdrawn)
    view["transactions"] = held
    view["withdrawn"] = {"count": len(withdrawn), "total_fen": withdrawn_fen,
                         "amount": format_yuan(withdrawn_fen), "transactions": withdrawn}
    if view["direction"] == "in" and view["message_type"] == beps128.MESSAGE_TYPE:
        # A payer bank's receipt for our debits carries none of them (they stay in the
        # beps.127 they went in): its lines say what it answered, refusals included.
        view["lines"] = debits_out.receipt_lines(tx, package_id, PACKAGE_ITEMS_SHOWN_MAX,
                                                 seen)
    if seen is not None and not (held or withdrawn or view.get("lines")):
        log.warning("event=package_outside_client_scope package=%s", package_id)
        raise _package_not_found(package_id)
    return view


def _package_not_found(package_id: str) -> NotFound:
    return NotFound(Problem("package_not_found", "/id", package_id, "an existing package"))


def _scoped_lookup(request: web.Request, kind: Any, path: str) -> StoredLookup:
    """The stored answer of a retry of `kind` (`read_json`); none is looked up for a
    request naming an account outside the client's scope (gateway.scope): the 415
    stands."""
    ext = _ext(request)
    scopes = ext.gw.settings.api_balance_accounts

    async def stored(client: str, key: str, body: Any) -> tuple[int, Any] | None:
        if scope.names_outside(scopes, client, body, path):
            return None
        return await ext.answered_before(kind, client, key, body)
    return stored


async def post_debit(request: web.Request) -> web.Response:
    client, body = await _body(request, _scoped_lookup(request, debits_out.KIND,
                                                       "/creditor_account"))
    # The account a debit collects into is ours: outside the client's scope, refused
    # before anything is looked up (gateway.scope).
    scope.refuse_payment(request.app[GATEWAY_KEY].settings.api_balance_accounts, client,
                         body, "/creditor_account", "collect into")
    status, view = await _ext(request).submit_debit(
        client, request.headers.get("Idempotency-Key"), body)
    return _json(view, status)


async def post_periodic(request: web.Request) -> web.Response:
    client, body = await _body(request, _scoped_lookup(request, periodic.KIND,
                                                       "/payer_account"))
    scope.refuse_payment(request.app[GATEWAY_KEY].settings.api_balance_accounts, client,
                         body)
    status, view = await _ext(request).submit_periodic(
        client, request.headers.get("Idempotency-Key"), body)
    return _json(view, status)


async def batch_not_posted(request: web.Request) -> web.Response:
    """GET (and HEAD) of /v1/transfers/batch: refused as any other method is, 405. Left
    without a route of its own, it would be read as GET /v1/transfers/{id} of a payment
    named "batch"."""
    raise web.HTTPMethodNotAllowed(request.method, ["POST"])


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/transfers/batch", post_batch)
    app.router.add_get("/v1/transfers/batch", batch_not_posted)
    app.router.add_get("/v1/packages/{id}", get_package)
    app.router.add_post("/v1/debits", post_debit)
    mandates.add_routes(app)
    app.router.add_post("/v1/periodic-credits", post_periodic)
