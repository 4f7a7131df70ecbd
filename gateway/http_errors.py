"""The answers aiohttp gives itself, before any handler or middleware runs: a request it
cannot parse (a malformed request line, a bad or oversized header, a bad chunk, a
Content-Length that is not a number) is answered in the API's one error shape
(CONTRACT.md §6), with a code naming what was wrong, and logged as one structured line
instead of aiohttp's plain text and traceback. A refusal shows and logs the kind of
fault (the code, and aiohttp's own words for it), never the request line (its query may
carry a token) nor any header's value (an Authorization's credential): of a header line
only the header's name, of a chunked body the text that stood for a chunk's size.

aiohttp has no public hook for these (its request handler's `handle_error` builds them,
and `web.Server` makes the handler): `GatewayRunner` makes its server's handlers of
`JsonErrorsHandler`, whose `handle_error` answers so. The class of each handler is
changed as it is made, and only when aiohttp made it of the class this was written for
(AIOHTTP_TESTED); else the handler keeps aiohttp's own answers and a warning says so.

`GatewayRunner(app, around=middleware)` also runs that one middleware of the app (the
API's error answers, `gateway.api.errors_middleware`) from the server, around the whole
application, instead of through aiohttp's middleware chain: an application with any
middleware makes each request pass a chain of two more coroutines (the middleware and
aiohttp's own, which sets the request's current application), looked up in a cache
each time; that is about 3.5 µs of every request's CPU, the core system's transfers
and the link's POSTs included. Around the application, the middleware sees every
request the chain showed it, the router's refusals (404, 405) included, and answers
them alike. Only on the aiohttp versions this was written for; on another, the
middleware stays in the application's chain.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

import aiohttp
from aiohttp import http_exceptions as hx
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway import jsontext
from gateway.errors import PaygateError, Problem

log = logging.getLogger("paygate.api")

# The aiohttp versions whose request handler this replaces `handle_error` of.
AIOHTTP_TESTED = ((3, 9), (3, 14))
HEAD_LINE_MAX = 8190  # aiohttp's bound on the request line and on each header line
QUOTED = re.compile(r"b'((?:[^'\\]|\\.)*)'")  # the bytes aiohttp quotes in its message
# Every quote of its message, as aiohttp writes one: b'...', bytearray(b'...'), or a
# str's '...' or "..." (Python's parser quotes a request line as a str); an apostrophe
# inside a word (can't) starts none.
QUOTED_WHOLE = re.compile(r"""(?:bytearray\()?(?:b|(?<![A-Za-z]))"""
                          r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\)?""")
# llhttp's messages name the fault, then quote the bytes it stopped at on lines of
# their own; a status-line fault comes as "Bad status line:" with llhttp's own above it.
STATUS_LINE_HEAD = "Bad status line:\n"
# What aiohttp's words for a fault may hold once the quotes are out: anything else (a
# path, which InvalidURLError's message is, whole) is never shown or logged.
FAULT_WORDS = re.compile(r"[A-Za-z][A-Za-z0-9 ,;/`'()-]*")
# A header's name Python's parser quotes in its words ("Missing 'Host' header"): kept.
HEADER_NAME_QUOTED = re.compile(r"'([A-Za-z0-9-]+)'(?= header)")
HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header's name (RFC 9110 token)
# Where a refusal is about a header line: its value is never shown or logged (it may be
# a credential, as Authorization's is), only the header's name and the fault.
HEADER_PATHS = ("headers", "Content-Length", "Transfer-Encoding")
# The codes whose `value` is what aiohttp quoted (a chunk's size); every other code's is
# a header's name or null: what aiohttp quotes of a request line or a header line may
# hold a token or a credential.
QUOTE_SHOWN = ("chunked_encoding_malformed",)

# (the parse error's class, or words of its message; code; where; what was expected),
# the first that fits.
_KINDS: tuple[tuple[Any, str, str, str], ...] = (
    (hx.BadStatusLine, "request_line_malformed", "request line",
     "METHOD /path HTTP/1.1: a method of letters, a path, the HTTP version"),
    (hx.InvalidURLError, "request_target_malformed", "request line",
     "a path (and query) as RFC 9112 writes a request target"),
    (hx.LineTooLong, "line_too_long", "headers",
     f"the request line and each header line at most {HEAD_LINE_MAX} bytes"),
    ("too many headers", "headers_too_many", "headers",
     "the few headers the API reads (a hundred at most)"),
    (hx.TransferEncodingError, "chunked_encoding_malformed", "/",
     "a body in chunks as RFC 9112 §7.1 frames them (hex sizes, CRLF after each)"),
    ("transfer-encoding", "transfer_encoding_malformed", "Transfer-Encoding",
     "no Transfer-Encoding, or chunked alone, and never with Content-Length"),
    ("chunk", "chunked_encoding_malformed", "/",
     "a body in chunks as RFC 9112 §7.1 frames them (hex sizes, CRLF after each)"),
    (hx.ContentLengthError, "content_length_malformed", "Content-Length",
     "a Content-Length of decimal digits, as long as the body sent"),
    ("content-length", "content_length_malformed", "Content-Length",
     "a Content-Length of decimal digits, as long as the body sent"),
    (hx.InvalidHeader, "header_malformed", "headers",
     "header lines of a token name, a colon and visible characters"),
    ("header", "header_malformed", "headers",
     "header lines of a token name, a colon and visible characters"),
)


def parse_refusal(exc: BaseException | None, status: int) -> PaygateError:
    """The refusal of a request aiohttp could not parse (`exc`, answered `status`)."""
    text = getattr(exc, "message", None) or str(exc or "")
    words = _unquoted(text).lower()  # never the request's own bytes
    for kind, code, path, expected in _KINDS:
        if isinstance(kind, str) and kind in words \
                or not isinstance(kind, str) and isinstance(exc, kind):
            break
    else:
        code, path, expected = ("request_malformed", "request",
                                "an HTTP/1.1 request as RFC 9112 writes one")
    quoted = QUOTED.search(text)
    if code == "line_too_long" and quoted is not None and quoted.group(1).startswith("/") \
            and text[:quoted.start()].endswith("bytearray("):
        path = "request line"  # the line quoted is a path: the request line's
    value = quoted.group(1) if quoted is not None and code in QUOTE_SHOWN else None
    if path in HEADER_PATHS:
        value = _header_name(exc, code, quoted.group(1) if quoted is not None else None)
    return PaygateError(Problem(code, path, value, expected, "the request could not be read "
                                "as HTTP: " + _fault(exc, text, code)), status)


def _fault(exc: BaseException | None, text: str, code: str) -> str:
    """aiohttp's words for what was wrong, without what it quotes of the request: llhttp's
    reason ("Invalid method encountered"), or the words of aiohttp's own message before
    its quote. The code's words instead when none are left, or when what is left is not
    words: InvalidURLError's message, but for llhttp's, is the request's target itself."""
    if text.startswith(STATUS_LINE_HEAD):
        text = text[len(STATUS_LINE_HEAD):].lstrip()
    head = text.split("\n", 1)[0]
    words = " ".join(_unquoted(head).split()).rstrip(" :.")
    if isinstance(exc, hx.InvalidURLError) and not text.startswith(head + "\n\n") \
            or not FAULT_WORDS.fullmatch(words):
        return code.replace("_", " ")
    return words


def _unquoted(text: str) -> str:
    """aiohttp's message without what it quotes of the request, a header's name aside."""
    return QUOTED_WHOLE.sub("", HEADER_NAME_QUOTED.sub(r"\1", text))


def _header_name(exc: BaseException | None, code: str, quoted: str | None) -> str | None:
    """The name of the header line aiohttp quoted (`quoted`, "Name: value"), never its
    value, which may be a credential: None when the quote has no name (a line without a
    colon, or the value alone, as aiohttp quotes a header line too long). InvalidHeader
    quotes a name, a whole line or a value alone (one holding a NUL), which may hold a
    colon of its own: only a quote that is a name alone is shown."""
    if quoted is None or code == "line_too_long":
        return None
    if isinstance(exc, hx.InvalidHeader):
        return quoted if HEADER_TOKEN.fullmatch(quoted) else None
    if ":" not in quoted:
        return None
    return quoted.split(":", 1)[0].strip()


class JsonErrorsHandler(RequestHandler):
    """aiohttp's request handler whose own answers have the API's error shape."""

    __slots__ = ()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # Some of an answer is sent already: none can follow (as aiohttp does).
            raise ConnectionError("an answer was being sent when the request failed")
        if status >= 500:
            log.error("event=request_failed path=%s remote=%s error=%r", request.path,
                      request.remote, exc, exc_info=exc)
            refusal = PaygateError(Problem("internal_error", request.path, None,
                                           "a request the gateway can process",
                                           "the gateway failed; the error is logged"), status)
        else:
            refusal = parse_refusal(exc, status)
            problem = refusal.problems[0]
            log.warning("event=request_unparsed code=%s status=%s remote=%s where=%s "
                        "value=%s error=%s", problem.code, status, request.remote,
                        jsontext.dumps(problem.path), jsontext.dumps(problem.value),
                        type(exc).__name__)
        response = web.Response(body=jsontext.dumps_bytes(refusal.to_dict()), status=status,
                                content_type="application/json", charset="utf-8")
        response.force_close()  # the connection's bytes no longer say where a request starts
        return response


def _tested(version: str = aiohttp.__version__) -> bool:
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    return AIOHTTP_TESTED[0] <= numbers <= AIOHTTP_TESTED[1]


class _JsonErrorsServer(web.Server):
    """aiohttp's server, its connections' handlers made JsonErrorsHandlers."""

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        if type(handler) is RequestHandler:
            handler.__class__ = JsonErrorsHandler
        return handler


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose server answers aiohttp's own refusals as the API does, and
    runs the application's middleware `around` (when given) around the application
    rather than through aiohttp's middleware chain."""

    def __init__(self, app: web.Application, *, around: Any = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._around = None
        if around is not None and around in app.middlewares and not app.frozen \
                and _tested():
            app.middlewares.remove(around)  # before the application is frozen at setup
            self._around = around

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if self._around is not None:
            # The server's handler is the application's own handling (router, handler):
            # the middleware is given it as the handler it wraps, as the chain would.
            server.request_handler = functools.partial(self._around,
                                                       handler=server.request_handler)
        if type(server) is not web.Server or not _tested():
            log.warning("event=http_errors_plain aiohttp=%s server=%s note=aiohttp's own "
                        "answers to unparsable requests stay plain text",
                        aiohttp.__version__, type(server).__name__)
            return server
        server.__class__ = _JsonErrorsServer
        return server
