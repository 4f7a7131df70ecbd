"""The HTTP face of the gateway: the core system's API, the link inbound, health.

Every error answer has the shape of CONTRACT.md §6. The core system's endpoints need a
client's credentials when `api_keys` is configured: headers `X-Client-Id`,
`X-Timestamp` (Unix seconds, within 300 s of now) and `X-Signature: sha256=<hex>`, the
HMAC-SHA256 under the client's secret of
"<timestamp>\\n<method>\\n<path>\\n<Idempotency-Key>\\n<body>" (`sign_request`). A
signature is taken once: the same one again within the window is refused
(`request_replayed`), remembered in Redis so that every gateway process sharing it knows.
The link inbound is authenticated by the messages' own signatures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
from importlib import resources
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from gateway import critical, intake, jsontext, keys, ready, ready_rules, scope, status_hold
from gateway.store import lost_race
from gateway.errors import (
    HEADER_VALUE_SHOWN_MAX, Forbidden, NotFound, PaygateError, Problem, Unauthorized,
    ValidationFailed, header_repeated,
)
from gateway.messages import codec, framing, hvps111
from gateway.money import format_yuan
from ledger.numbers import validate_customer_account
from ledger.types import CustomerBalance
from gateway.redisstate import REDIS_DOWN_ERRORS, RETRY_AFTER_S, unavailable
from routing.router import INSTITUTION_TYPES

log = logging.getLogger("paygate.api")

GATEWAY_KEY: web.AppKey = web.AppKey("gateway", object)
BODY_LEN_MAX = 8 * 1024 * 1024
TRANSFER_BODY_LEN_MAX = 64 * 1024  # one transfer is under 3 KB; more is not a transfer
TIMESTAMP_SKEW_S = 300
STAMP_DECIMALS_MAX = 6  # X-Timestamp may carry microseconds, so that requests differ
SEEN_MARGIN_S = 5  # a signature is remembered this much past its window
OPEN_PATHS = ("/health", "/link/inbound", "/openapi.yaml")
ACCOUNT_NO_LEN_MAX = 34  # the ledger's bound on a customer account number of another shape


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsontext.dumps_bytes(data, default=repr), status=status,
                        content_type="application/json", charset="utf-8")


_json = json_response


# (client, Idempotency-Key, parsed body) -> the answer stored for that same request under
# the key, as (status, view), or None: an endpoint's own reading of its stored answers.
StoredLookup = Callable[[str, str, Any], Awaitable["tuple[int, Any] | None"]]


class StoredAnswer(Exception):
    """A retry answered from what was stored under its Idempotency-Key (`read_json`):
    `errors_middleware` answers it as it was stored."""

    def __init__(self, status: int, view: Any) -> None:
        super().__init__(status)
        self.status, self.view = status, view


async def read_json(request: web.Request, body_len_max: int = 0,
                    empty_ok: bool = False, stored: StoredLookup | None = None,
                    keyless: bool = False) -> tuple[str, Any]:
    """(client, parsed JSON body) of an authenticated request; every endpoint that takes
    JSON reads it here, so size bounds, media type, credentials and parse errors answer
    alike. An endpoint that stores its answers under an Idempotency-Key gives `stored`:
    a body refused for its declared type that retries a request answered before gets
    that answer (raised as StoredAnswer), whatever its type; only a new request is
    refused for it (`answer_of_retry`; `keyless`: `stored` is asked with no
    Idempotency-Key header too, its key then "", for a body whose parts carry their own
    keys, as a batch's items may)."""
    client, raw, refusal = await read_body(request, body_len_max)
    if refusal is not None:
        if stored is None:
            raise refusal
        raise StoredAnswer(*await answer_of_retry(request, client, raw, refusal, stored,
                                                  keyless))
    if empty_ok and not raw.strip():
        return client, None
    return client, parse_json(raw)


async def answer_of_retry(request: web.Request, client: str, raw: bytes,
                          refusal: PaygateError, stored: StoredLookup,
                          keyless: bool = False) -> tuple[int, Any]:
    """The answer stored for a request refused for its Content-Type (`refusal`) when it
    is a retry (the same key and what it asks for), else the refusal raised. A core
    system that sent no type, or another, before the type was checked retries after a
    timeout: refused, it could ask again under a new key and pay twice."""
    key = request.headers.get("Idempotency-Key") or ""
    if not key and not keyless:
        raise refusal
    try:
        data = parse_json(raw)
    except PaygateError:
        raise refusal from None  # not JSON: no request to compare, the type is the fault
    found = await stored(client, key, data)
    if found is None:
        raise refusal
    log.info("event=stored_answer_despite_media_type client=%s path=%s key=%s "
             "content_type=%s", client, request.path, key,
             request.headers.get("Content-Type"))
    return found


async def read_body(request: web.Request, body_len_max: int = 0
                    ) -> tuple[str, bytes, PaygateError | None]:
    """(client, raw body, the 415 its Content-Type earns or None) of an authenticated
    request to a JSON endpoint of the core system, its size bounded. The refusal is
    given, not raised: an endpoint storing its answers answers a retry from them whatever
    its type (`read_json`'s `stored`), and only a new request is refused for it.

    A body sent with no Content-Type at all is taken as JSON when the request is signed
    (`api_keys` set): the 415 keeps a browser's post from another site's page from
    acting, and a browser cannot sign. With the API open (development), nothing tells a
    page's post from a core system's, so it is refused as a declared other type is."""
    bound = body_len_max or BODY_LEN_MAX
    if request.content_length is not None and request.content_length > bound:
        raise PaygateError(Problem("body_too_large", "/", request.content_length,
                                   f"at most {bound} bytes"), 413)
    raw = await read_raw(request)
    client = await authenticate(request, raw)
    return client, raw, media_type_refusal(request, not raw.strip())


def media_type_refusal(request: web.Request, empty: bool = False) -> PaygateError | None:
    """The 415 a core-system request to a JSON endpoint earns for its Content-Type
    (`refuse_other_media_type`, a signed request's missing type taken), or None."""
    try:
        refuse_other_media_type(request, empty,
                                untyped_ok=bool(request.app[GATEWAY_KEY].settings.api_keys))
    except PaygateError as refusal:
        return refusal
    return None


JSON_MEDIA_TYPE = "application/json"
# Content-Type values taken without parsing them (what the parse would take too).
_JSON_DECLARED = frozenset((JSON_MEDIA_TYPE, f"{JSON_MEDIA_TYPE}; charset=utf-8",
                            f"{JSON_MEDIA_TYPE}; charset=UTF-8"))


def refuse_other_media_type(request: web.Request, empty: bool = False,
                            untyped_ok: bool = False) -> None:
    """Refuse (415 `unsupported_media_type`) a JSON endpoint's body not declared as JSON:
    a Content-Type other than application/json, or a charset other than UTF-8. Text sent
    as text/plain or a form is not taken for JSON it was not declared to be (a browser
    sends those from any site's page without asking). A body left empty, where the
    endpoint takes none, needs no type; `untyped_ok`: neither does any body (the core
    system's signed requests, `read_body`)."""
    declared = request.headers.get("Content-Type")
    if declared in _JSON_DECLARED:
        return  # as nearly every request declares it: nothing to parse
    if declared is None and (empty or untyped_ok):
        return
    charset = (request.charset or "utf-8").lower().replace("_", "-")
    if request.content_type == JSON_MEDIA_TYPE and charset in ("utf-8", "utf8") \
            and declared is not None:
        return
    raise PaygateError(Problem(
        "unsupported_media_type", "Content-Type",
        None if declared is None else declared[:HEADER_VALUE_SHOWN_MAX],
        f"{JSON_MEDIA_TYPE} (charset, if given, utf-8)",
        f"this endpoint takes a JSON body declared as {JSON_MEDIA_TYPE}; the request's "
        + ("has no Content-Type" if declared is None else f"is declared as {declared!r}")),
        415)


class JsonNumber:
    """A JSON number kept as its text: amounts must come as strings, and a number such as
    1e400 must not turn into an infinity that no JSON answer can carry."""

    json_type = "number"  # its name in a refusal (jsontext.type_name)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _json_int(text: str) -> int | JsonNumber:
    """A JSON whole number as an int, or kept as its text (JsonNumber) past the digits
    Python reads as an int (4,300): valid JSON, refused by the rule of the field it was
    given for (a text field's field_must_be_text), never as a body that is not JSON."""
    try:
        return int(text)
    except ValueError:
        return JsonNumber(text)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _RepeatedKeys(dict):
    """An object of a body in which member names came more than once (`repeated`, in
    their order): the parse goes on to the end, and `strict_json` then refuses each at
    its JSON pointer from the body's root (item 3 of a batch: `/3/amount`)."""

    repeated: list[str]


def _unique_keys_hook(found: list[_RepeatedKeys]) -> Callable[[list[tuple[str, Any]]], Any]:
    """An object_pairs_hook that keeps every object with a repeated name in `found`."""
    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) == len(pairs):  # nearly always: no key twice, the dict made in one call
            return out
        marked = _RepeatedKeys()
        marked.repeated = []
        for key, value in pairs:
            if key not in marked:
                marked[key] = value
            elif key not in marked.repeated:
                marked.repeated.append(key)
        found.append(marked)
        return marked
    return unique_keys


def _pointer_step(name: Any) -> str:
    """One step of a JSON pointer (RFC 6901: `~` and `/` escaped)."""
    return "/" + str(name).replace("~", "~0").replace("/", "~1")


def _repeated_key_problems(body: Any, found: list[_RepeatedKeys]) -> list[Problem]:
    """Each name repeated in an object of `body`, at its pointer from the root, in the
    body's order."""
    marked = {id(obj) for obj in found}
    problems = []
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, node = pending.pop()
        if id(node) in marked:
            problems.extend(Problem("json_key_duplicate", path + _pointer_step(key), key,
                                    "each member name once in an object")
                            for key in node.repeated)
        children = node.items() if isinstance(node, dict) else \
            enumerate(node) if isinstance(node, list) else ()
        pending.extend(reversed([(path + _pointer_step(name), child)
                                 for name, child in children
                                 if isinstance(child, (dict, list))]))
    return problems


def query_params(request: web.Request, allowed: tuple[str, ...]
                 ) -> tuple[dict[str, str], list[Problem]]:
    """The query string as one value per name, and its problems: a name not in `allowed`
    (`query_parameter_unknown`), and one given more than once (`query_parameter_repeated`,
    every value listed), known or not, are refused by the caller with its other
    problems, never ignored or taken first."""
    problems, out = [], {}
    for name in dict.fromkeys(request.query):
        values = request.query.getall(name)
        if name not in allowed:
            problems.append(Problem("query_parameter_unknown", f"?{name}", values[0][:80],
                                    "only: " + (", ".join(allowed) or "no parameters")))
        if len(values) > 1:
            problems.append(Problem("query_parameter_repeated", f"?{name}",
                                    [v[:80] for v in values], "one value"))
        elif name in allowed:
            out[name] = values[0]
    return out, problems


# The request headers the gateway acts on: the core system's credentials and key, the
# link's framing, the console's credentials and the origin it checks. Given twice, which
# one counts would be a guess (aiohttp's `get` takes the first; a proxy may keep the
# last), so a request repeating one is refused whole, every repeated name told.
# Content-Type and Content-Length given twice are refused by aiohttp's parser itself.
SINGLE_HEADERS = ("Idempotency-Key", "X-Client-Id", "X-Timestamp", "X-Signature",
                  framing.LENGTHS_HEADER, "Authorization", "Origin")


def repeated_headers(request: web.Request,
                     names: tuple[str, ...] = SINGLE_HEADERS) -> list[Problem]:
    """`header_repeated` for each of `names` the request carries more than once (names
    compare without case), with every value it was given; [] when none repeats."""
    problems = []
    key = request.headers.get("Idempotency-Key")
    if key is not None and "," in key:
        # A proxy in front may join two header lines into one, with a comma: taken as one
        # key, that would be neither of the two the client sent.
        problems.append(Problem(
            "idempotency_key_malformed", "Idempotency-Key", key[:HEADER_VALUE_SHOWN_MAX],
            "one key of 1 to 64 printable ASCII characters, without a comma",
            "two Idempotency-Key header lines joined into one (as a proxy joins repeated "
            "headers) read as a comma list; the gateway takes no key with a comma"))
    for name in names:
        values = request.headers.getall(name, ())
        if len(values) > 1:
            problems.append(header_repeated(name, list(values)))
    return problems


def refuse_repeated_headers(request: web.Request) -> None:
    """Refuse (400) a request repeating a header the gateway acts on, before its
    credentials are checked or its body read (`errors_middleware`)."""
    problems = repeated_headers(request)
    if problems:
        log.warning("event=request_header_repeated method=%s path=%s headers=%s",
                    request.method, request.path, ",".join(p.path for p in problems))
        raise PaygateError(problems, 400)


def nested_too_deep() -> PaygateError:
    """Valid JSON nested deeper than the parser follows (about a thousand levels): said
    as such, not as a body that is not JSON. No request of the API nests beyond three."""
    return PaygateError(Problem("body_nested_too_deep", "/", None,
                                "JSON arrays and objects nested a few levels deep"), 400)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity, no repeated keys, numbers kept as text."""
    value = _plain_json(raw)
    return value if value is not _NOT_PLAIN else strict_json(raw)


def strict_json(raw: bytes) -> Any:
    """`parse_json` by the standard library's reading alone (what `_plain_json` must
    agree with)."""
    repeated: list[_RepeatedKeys] = []
    try:
        body = json.loads(raw, parse_constant=_no_constants, parse_float=JsonNumber,
                          parse_int=_json_int, object_pairs_hook=_unique_keys_hook(repeated))
    except RecursionError:
        raise nested_too_deep() from None
    except (ValueError, UnicodeDecodeError):
        raise PaygateError(Problem("body_must_be_json", "/",
                                   raw[:80].decode("utf-8", "replace"),
                                   "a JSON document in UTF-8 (no NaN or Infinity)"),
                           400) from None
    if repeated:
        raise PaygateError(_repeated_key_problems(body, repeated), 400)
    return body


_NOT_PLAIN = object()
# What orjson reads a JSON text into besides dicts, lists and floats.
_LEAF_TYPES = frozenset((str, int, bool, type(None)))


def _plain_json(raw: bytes) -> Any:
    """What `parse_json` gives for `raw`, read by orjson, when that is sure to be the
    same; _NOT_PLAIN otherwise, for the strict reading to read and name what is wrong.

    The standard library's reading calls back into Python for every object (to refuse a
    repeated key) and every number with a fraction (kept as text): for a batch of five
    hundred transfers, about seven times orjson's time. orjson refuses what that reading
    refuses (NaN and Infinity, text that is not UTF-8, a lone surrogate, nesting past its
    depth: all left to it) but keeps the last of a repeated key and makes a float of a
    fraction. So its value stands only with no float in it and with every member of the
    text found in it: each member has one colon outside strings, and with no colon
    written as an escape, the colons of the text are those of the members and of the
    strings read; a member lost to a repeated key leaves one more in the text."""
    if type(raw) is not bytes or b"\\u003a" in raw or b"\\u003A" in raw:
        return _NOT_PLAIN
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_PLAIN
    if _has_float(value):
        return _NOT_PLAIN
    try:
        # orjson writes a member's colon once and a string's colons as they are.
        colons = orjson.dumps(value).count(b":")
    except TypeError:  # nesting deeper than orjson writes (JSONEncodeError is a TypeError)
        return _NOT_PLAIN
    return value if colons == raw.count(b":") else _NOT_PLAIN


def _has_float(value: Any) -> bool:
    """Whether orjson's reading `value` holds a float anywhere. A container's members
    are looked at by their set of types: one of strings, numbers, booleans and nulls
    alone (a transfer, each item of a batch) ends there; only dicts and lists in it are
    looked into."""
    pending = [value]
    while pending:
        node = pending.pop()
        kind = type(node)
        if kind is dict:
            members: Any = node.values()
        elif kind is list:
            members = node
        else:
            if kind is float:
                return True
            continue
        kinds = set(map(type, members))
        if kinds <= _LEAF_TYPES:
            continue
        if float in kinds:
            return True
        pending += [member for member in members if type(member) in (dict, list)]
    return False


@web.middleware
async def errors_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """Every request's refusals and failures answered in the error shape. The gateway's
    server runs it around the whole application, not in aiohttp's middleware chain
    (`http_errors.GatewayRunner`'s `around`): `handler` is then the application's own
    handling, the router's 404 and 405 included."""
    try:
        # Checked here rather than in a middleware of its own: every payment's request
        # passes each middleware's coroutine.
        refuse_repeated_headers(request)
        return await handler(request)
    except StoredAnswer as stored:
        return _json(stored.view, stored.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Unknown paths, wrong methods, oversized bodies: the same error shape as the rest.
        code = {404: "path_unknown", 405: "method_not_allowed",
                413: "body_too_large"}.get(exc.status, "request_refused")
        return _json({"errors": [Problem(code, request.path, request.method,
                                         "a path and method in /openapi.yaml",
                                         exc.reason or "").to_dict()]}, exc.status)
    except Exception as exc:
        return _refusal(refusal_of(request.path, exc))


def refusal_of(path: str, exc: Exception) -> PaygateError:
    """What a request (or one envelope of a link POST) that failed with `exc` is
    answered: the refusal itself, Redis away (503), a lost race (503), else a bug (500,
    logged with its traceback)."""
    if isinstance(exc, PaygateError):
        return exc
    if isinstance(exc, REDIS_DOWN_ERRORS):
        # Whatever the endpoint, Redis away is a pause to wait out, not a bug (503).
        log.warning("event=request_needs_redis path=%s error=%r", path, exc)
        return unavailable(exc)
    if lost_race(exc):
        # Other processes held the rows this request needed through every rerun
        # (gateway.store): its work was rolled back, and the same request later
        # (the same Idempotency-Key) is safe.
        log.warning("event=request_contended path=%s error=%r", path, exc)
        return PaygateError(Problem(
            "database_contended", "/", None, "try again in a moment (same request)",
            "other gateway processes held the rows this request needed; nothing was "
            "done for it"), 503)
    log.error("event=request_failed path=%s error=%r", path, exc, exc_info=exc)
    return PaygateError(Problem("internal_error", path, None,
                                "a request the gateway can process",
                                "the gateway failed; the error is logged"), 500)


def _refusal(exc: PaygateError) -> web.Response:
    response = _json(exc.to_dict(), exc.status)
    if exc.status == 429:
        response.headers["Retry-After"] = "1"
    elif exc.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def authenticate(request: web.Request, body: bytes) -> str:
    """The client a request comes from, its credentials checked (`api_keys`), or
    "default" when the API is open. A signature that verifies is remembered until its
    timestamp leaves the window, in Redis (SET NX with that expiry): every gateway
    process sharing the Redis refuses it again, and what is kept is bounded by the
    requests of one window. Redis away answers 503 (gateway.redisstate): a replay could
    not be told from a first use."""
    gw = request.app[GATEWAY_KEY]
    secrets = gw.settings.api_keys
    if not secrets:
        return "default"
    client = request.headers.get("X-Client-Id", "")
    secret = secrets.get(client)
    if secret is None:
        raise Unauthorized(Problem("client_unknown", "X-Client-Id", client or None,
                                   "a configured client id"))
    stamp = request.headers.get("X-Timestamp", "")
    stamp_s = _timestamp_s(stamp)
    now_s = time.time()
    if stamp_s is None or abs(now_s - stamp_s) > TIMESTAMP_SKEW_S:
        raise Unauthorized(Problem(
            "request_timestamp_invalid", "X-Timestamp", stamp or None,
            f"Unix seconds within {TIMESTAMP_SKEW_S} s of now, digits with at most "
            f"{STAMP_DECIMALS_MAX} decimals (1765069200 or 1765069200.125)"))
    idem_key = request.headers.get("Idempotency-Key")
    expected = sign_request(secret, stamp, request.method, request.path_qs, body, idem_key)
    given = request.headers.get("X-Signature", "")
    if not hmac.compare_digest(expected, given):
        raise Unauthorized(Problem(
            "request_signature_invalid", "X-Signature", None,
            "sha256=<HMAC-SHA256 of timestamp, method, path with query, Idempotency-Key "
            "and body, as README's Client credentials writes it>"))
    # The window this signature is taken in ends TIMESTAMP_SKEW_S after its timestamp;
    # kept a little longer, for the clocks of other gateway processes.
    ttl_s = math.ceil(stamp_s + TIMESTAMP_SKEW_S - now_s) + SEEN_MARGIN_S
    first = await gw.redis.set(seen_key(client, expected), b"1", nx=True, ex=max(ttl_s, 1))
    if not first:
        log.warning("event=request_replayed client=%s method=%s path=%s stamp=%s",
                    client, request.method, request.path, stamp)
        raise Unauthorized(Problem(
            "request_replayed", "X-Signature", None,
            "a signature not used before: each request signed anew, with its own "
            "X-Timestamp (a retry too)",
            f"this signature was already used within the {TIMESTAMP_SKEW_S} s window; a "
            "request is taken once under one signature"))
    return client


def _timestamp_s(stamp: str) -> float | None:
    """X-Timestamp as seconds: ASCII digits, optionally a point and 1 to
    STAMP_DECIMALS_MAX digits; None otherwise."""
    whole, point, fraction = stamp.partition(".")
    if not (whole.isascii() and whole.isdigit()) or len(whole) > 12:
        return None
    if point and not (fraction.isascii() and fraction.isdigit()
                      and len(fraction) <= STAMP_DECIMALS_MAX):
        return None
    return float(stamp)


def seen_key(client: str, signature: str) -> str:
    """The Redis key remembering a signature taken (its first 128 bits are enough)."""
    return f"{keys.API_SIGNATURE_PREFIX}{client}:{signature.removeprefix('sha256=')[:32]}"


def signed_text(stamp: str, method: str, path: str, body: bytes,
                idempotency_key: str | None) -> bytes:
    """What X-Signature signs: the timestamp, the method, the path with its query and
    the Idempotency-Key header (empty when the request has none), each followed by a
    line feed, then the body's bytes as sent. Header bytes that are not UTF-8 (aiohttp
    reads them as lone surrogates) are signed as they came."""
    head = f"{stamp}\n{method}\n{path}\n{idempotency_key or ''}\n"
    return head.encode("utf-8", "surrogateescape") + body


def sign_request(secret: str, stamp: str, method: str, path: str, body: bytes,
                 idempotency_key: str | None) -> str:
    """`X-Signature` for a request: sha256=<hex HMAC-SHA256 under the client's secret>."""
    message = signed_text(stamp, method, path, body, idempotency_key)
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


async def _read(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > BODY_LEN_MAX:
        raise PaygateError(Problem("body_too_large", "/", request.content_length,
                                   f"at most {BODY_LEN_MAX} bytes"), 413)
    return await read_raw(request)


async def read_raw(request: web.Request) -> bytes:
    """The request's body; one that ends before its framing says (the connection closed
    mid-body, a chunk aiohttp could not read once the headers were taken) is refused
    400 `body_unreadable`, logged as such rather than taken for Redis away (both raise
    ConnectionError)."""
    try:
        return await request.read()
    except (ConnectionError, web.RequestPayloadError) as exc:
        log.warning("event=request_body_unreadable method=%s path=%s error=%r",
                    request.method, request.path, exc)
        raise PaygateError(Problem(
            "body_unreadable", "/", None,
            "a body as long as its Content-Length, or its chunks, announce",
            f"the body could not be read to its end: {exc}"), 400) from None


# How long /health waits for the database to count the open critical alerts: a liveness
# answer must come even while the database thread is held up.
HEALTH_DB_WAIT_S = 2.0


async def health(request: web.Request) -> web.Response:
    """Liveness (always 200 while the process serves), the HVPS window and the link:
    `ok` is false while deliveries to the NPC fail (payments are still taken; they wait
    in the outbox until the link answers), while the NPC refuses or discards them (link
    `degraded`: each refused message is held for an operator, each discarded payment
    rejected, gateway.link) and while Redis does not answer (new payments are refused
    with 503 redis_unavailable meanwhile, gateway.redisstate). `attention` is true while
    a critical alert is open (gateway.critical) or their count could not be read, and
    while HVPS sending is held because the gateway and the NPC disagree on HVPS's status
    (`hvps_sending`, gateway.status_hold; held even once its alert is acknowledged), and
    while a change of the screening file is refused (`screening` degraded and since
    when: gateway.ops.screening_watch; the last good list screens meanwhile): people must
    act, which `ok` does not say, since no restart cures it. /health asks no
    credentials, so it tells the state alone: the file, its problems and the list in
    force are for operators (the alert, `paygate ops status`)."""
    gw = request.app[GATEWAY_KEY]
    link = await gw.link_share.view()
    redis = await gw.redis_watch.view()
    try:
        critical_alerts: dict[str, Any] = await asyncio.wait_for(
            gw.store.run(critical.open_alerts), HEALTH_DB_WAIT_S)
    except Exception as exc:  # told in the answer and the log, not raised: liveness
        log.warning("event=health_critical_alerts_unread error=%r", exc)
        critical_alerts = {"error": f"open critical alerts not counted within "
                                    f"{HEALTH_DB_WAIT_S} s: {exc!r}"}
    held = gw.hvps_hold is not None
    watch = getattr(gw, "screening_watch", None)
    screening = None
    if watch is not None:
        screening = {k: v for k, v in watch.view().items() if k in ("state", "since")}
    return _json({"ok": link["state"] in ("up", "unknown") and redis["state"] == "up",
                  "attention": critical_alerts.get("open", 1) > 0 or held
                  or (screening or {}).get("state") == "degraded",
                  "bank": gw.settings.bank_code,
                  "hvps_status": gw.hvps_status, "work_date": gw.work_date.isoformat(),
                  "hvps_sending": status_hold.view(gw.hvps_hold),
                  "link": link, "redis": redis, "critical_alerts": critical_alerts,
                  **({"screening": screening} if screening is not None else {})})


async def post_transfer(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    scopes = gw.settings.api_balance_accounts

    async def stored(client: str, key: str, body: Any) -> tuple[int, Any] | None:
        if scope.names_outside(scopes, client, body):
            return None  # no lookup for an account outside the scope: the 415 stands
        return await gw.answered_before(client, key, body, None)

    client, body = await read_json(request, TRANSFER_BODY_LEN_MAX, stored=stored)
    scope.refuse_payment(scopes, client, body)
    status, response = await gw.submit_transfer(client, request.headers.get("Idempotency-Key"),
                                                body)
    return _json(response, status)


def refuse_json_message(body: bytes) -> None:
    """A JSON document sent as a ready message (a transfer posted to the wrong path, say)
    is refused as JSON: read as a message, its `{` would be taken for an envelope
    missing its `{H:` header, or its `[` for XML that does not parse."""
    stripped = body.lstrip(b"\xef\xbb\xbf \r\n\t")
    if stripped[:1] not in (b"{", b"[") or stripped.startswith(b"{H:"):
        return
    try:
        json.loads(stripped)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return  # not JSON either: judged as a message, which names its fault
    raise PaygateError(Problem(
        "message_body_is_json", "/", stripped[:40].decode("utf-8", "replace"),
        "a CNAPS2 message: an envelope starting with {H:, or a bare XML document",
        "the body is JSON; POST /v1/messages takes a ready hvps.111 (a JSON transfer goes "
        "to POST /v1/transfers)"), 400)


async def post_message(request: web.Request) -> web.Response:
    """A ready CNAPS2 message from the core system (hvps.111, envelope or bare XML)."""
    body = await _read(request)
    client = await authenticate(request, body)
    gw = request.app[GATEWAY_KEY]
    refuse_json_message(body)
    decoded = codec.decode(body, bare_ok=True, every_schema_error=True)
    if decoded.mtype.code != hvps111.MESSAGE_TYPE:
        raise PaygateError(Problem("message_type_not_accepted_from_core", "/Document",
                                   decoded.mtype.code, "hvps.111.001.01"))
    if decoded.obj is None:  # not readable as an hvps.111: nothing more to check
        raise PaygateError(decoded.problems)
    problems: list[Problem] = []
    ct: hvps111.CreditTransfer = decoded.obj
    # Before anything is looked up about the payment (its stored answer, its payer's
    # account and funds): a client may not learn of an account outside its scope.
    forbidden = scope.payment_problem(gw.settings.api_balance_accounts, client,
                                      {"payer_account": ct.debtor_account})
    if forbidden is not None:
        raise Forbidden(ready.in_message_terms([forbidden]))
    if ct.instg_direct != gw.settings.bank_code:
        # The gateway sends as our direct participant: a message naming another one as
        # its instructing agent was not written for us. That is the refusal's first
        # problem, before what the message gets wrong besides (its instructing agent
        # the same bank as its instructed agent, a code of the wrong length, ...).
        problems.append(Problem(
            "instructing_agent_not_ours",
            "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/InstgAgt/FinInstnId/ClrSysMmbId/MmbId",
            ct.instg_direct, f"our direct participant, {gw.settings.bank_code}"))
    problems.extend(decoded.problems)
    problems.extend(ready_rules.carried_problems(ct, decoded.root))
    if ct.business_type in INSTITUTION_TYPES:
        # These travel as institution transfers (hvps.112, pacs.009): an hvps.111 naming
        # one is not a message the NPC takes, and the gateway does not send another
        # type than the one the core system wrote.
        problems.append(Problem(
            "business_type_not_allowed_for_message",
            "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/PmtTpInf/CtgyPurp/Prtry",
            ct.business_type, "a customer credit's business type in an hvps.111; "
            + ", ".join(INSTITUTION_TYPES) + " are institution transfers (hvps.112), "
            "which POST /v1/transfers takes"))
    urgency = {"URGT": "extra_urgent", "HIGH": "urgent"}.get(ct.priority, "normal")
    transfer = {
        "payer_account": ct.debtor_account, "payer_name": ct.debtor_name,
        "payer_bank": ct.debtor_agent, "payee_account": ct.creditor_account,
        "payee_name": ct.creditor_name, "payee_bank": ct.creditor_agent,
        "amount": f"{ct.amount_fen // 100}.{ct.amount_fen % 100:02d}",
        "currency": ct.currency, "business_type": ct.business_type,
        "business_kind": ct.business_kind, "urgency": urgency,
    }
    if ct.remittance:
        transfer["remittance_info"] = list(ct.remittance)
    rules = ready_rules.message_problems(
        gw, ct, decoded.envelope.header if decoded.envelope is not None else None)
    if rules and not problems:
        # Rules that depend on the time and the directory: the message taken before under
        # its MsgId, when they held, gets its first answer (or, another message under
        # that MsgId, 409 at each differing field), as any ready message sent again.
        body_hash = intake.transfer_sha256(transfer)
        stored = await gw.store.run(lambda tx: ready.stored_answer(tx, client, ct, body_hash,
                                                                   transfer))
        if stored is not None:
            return _json(stored[1], stored[0])
    problems.extend(rules)
    # A ready message is its own idempotency key: the same message (its sender, the
    # instructing direct participant, and MsgId) sent again returns the first answer,
    # whatever Idempotency-Key comes with it, and the same MsgId with any other content
    # is refused (gateway.ready). The core's end-to-end id travels on.
    if problems:
        # Refused already: every other problem of its payment is told with these (its
        # fields, route, account and funds), at the message's paths.
        # A field the message itself gets wrong is read into the transfer as nothing
        # (an amount of 0.00): the transfer adds no problem of its own at that field.
        refused_at = {p.path for p in problems}
        found = await gw.transfer_problems(transfer, as_written=True)
        raise PaygateError([*problems, *(p for p in ready.in_message_terms(found)
                                         if p.path not in refused_at)])
    try:
        status, response = await gw.submit_transfer(client, ready.key(ct), transfer,
                                                    end_to_end_id=ct.end_to_end_id,
                                                    message=ct)
    except PaygateError as exc:
        raise PaygateError(ready.in_message_terms(exc.problems), exc.status) from None
    return _json(response, status)


async def get_transfer(request: web.Request) -> web.Response:
    client = await authenticate(request, b"")
    gw = request.app[GATEWAY_KEY]
    return _json(await gw.get_transfer(request.match_info["id"], client))


async def get_account_balance(request: web.Request) -> web.Response:
    """GET /v1/accounts/{account_id}/balance: a customer account of ours as the gateway's
    ledger sees it now, read only: its ledger balance, the money held for payments under
    way and what is available, in fen and in yuan (ledger.types.CustomerBalance). With
    `api_balance_accounts` set, only of an account the client's entry covers: another is
    forbidden before the ledger is asked, so that whether we hold it is not told."""
    client = await authenticate(request, b"")
    gw = request.app[GATEWAY_KEY]
    account_no = request.match_info["account_id"]
    _, problems = query_params(request, ())
    malformed = _account_id_problem(account_no, gw.ledger.settings.strict_numbers)
    if malformed is not None:
        problems.insert(0, malformed)
    if problems:
        raise ValidationFailed(problems)
    forbidden = balance_read_problem(gw.settings.api_balance_accounts, client, account_no)
    if forbidden is not None:
        log.warning("event=balance_read_forbidden client=%s account=%s", client, account_no)
        raise Forbidden(forbidden)
    now, work_date = gw.clock.now(), gw.work_date
    try:
        found = await gw.store.run(
            lambda tx: gw.ledger.customer_balance(tx, account_no, work_date))
    except PaygateError as exc:
        if exc.code != "account_not_found":
            raise
        raise NotFound(Problem("account_not_found", "/account_id", account_no,
                               "a customer account of ours")) from None
    return _json(balance_view(found, now.isoformat(), work_date.isoformat()))


def balance_read_problem(scopes: dict[str, list[str]], client: str,
                         account_no: str) -> Problem | None:
    """Why `client` may not read `account_no`'s balance under `api_balance_accounts`
    (`scopes`, gateway.scope), or None when it may."""
    if scope.covers(scopes, client, account_no):
        return None
    return Problem("balance_read_forbidden", "/account_id", account_no,
                   "an account the client's entry in api_balance_accounts covers",
                   scope.why_not(scopes, client, account_no, "read the balance of"))


def _account_id_problem(account_no: str, strict: bool) -> Problem | None:
    """A customer account number the ledger could never hold, told as such rather than as
    an account it does not have: 23 ASCII digits with our check digits (docs/ledger.md),
    or, for a ledger that takes migrated numbers, 1 to 34 characters."""
    if strict and not validate_customer_account(account_no):
        expected = "23 ASCII digits with our Luhn check digits (a customer account of ours)"
    elif not strict and not 1 <= len(account_no) <= ACCOUNT_NO_LEN_MAX:
        expected = f"1 to {ACCOUNT_NO_LEN_MAX} characters (a customer account of ours)"
    else:
        return None
    return Problem("account_id_malformed", "/account_id", account_no[:80], expected)


def balance_view(found: CustomerBalance, at: str, work_date: str) -> dict[str, Any]:
    account = found.account
    amounts = {"ledger_balance": found.ledger_balance_fen, "held": found.held_fen,
               "available": found.available_fen}
    view: dict[str, Any] = {
        "account": account.account_no, "name": account.name, "currency": "CNY",
        "status": account.status, "frozen_until": account.frozen_until,
        "as_of": at, "work_date": work_date, "holds": found.holds}
    for name, fen in amounts.items():
        view[name] = format_yuan(fen)
        view[f"{name}_fen"] = fen
    return view


async def link_inbound(request: web.Request) -> web.Response:
    """One envelope, or several framed (gateway.messages.framing): taken together, and a
    bad one refused alone (Gateway.receive_link_many)."""
    raw = await _read(request)
    gw = request.app[GATEWAY_KEY]
    lengths = request.headers.get(framing.LENGTHS_HEADER)
    if lengths is None:
        return _json(await gw.receive_link(raw))
    results = []
    for outcome in await gw.receive_link_many(framing.split(raw, lengths)):
        if isinstance(outcome, Exception):
            refusal = refusal_of(request.path, outcome)
            results.append((refusal.status, refusal.to_dict()))
        else:
            results.append((200, outcome))
    status, body = framing.answer(results)
    return _json(body, status)


async def openapi(request: web.Request) -> web.Response:
    text = (resources.files("gateway") / "openapi.yaml").read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/yaml")


def make_app(gw: Any) -> web.Application:
    """The API's application. Its one middleware, `errors_middleware`, is taken out of
    aiohttp's chain and run around the application by `GatewayRunner(app,
    around=errors_middleware)`, as `Gateway.start` serves it; any other runner keeps it
    in the chain, with the same answers."""
    app = web.Application(middlewares=[errors_middleware],
                          client_max_size=BODY_LEN_MAX)
    app[GATEWAY_KEY] = gw
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.yaml", openapi)
    app.router.add_post("/v1/transfers", post_transfer)
    app.router.add_post("/v1/messages", post_message)
    app.router.add_get("/v1/transfers/{id}", get_transfer)
    app.router.add_get("/v1/accounts/{account_id}/balance", get_account_balance)
    app.router.add_post("/link/inbound", link_inbound)
    for ext in gw.extensions:
        if hasattr(ext, "add_routes"):
            ext.add_routes(app)
    return app
