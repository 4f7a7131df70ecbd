"""Requests aiohttp cannot parse, sent as raw bytes to a gateway on 127.0.0.1: each is
answered 400 in the API's one error shape (CONTRACT.md §6) with a code naming what was
wrong, and logged as one structured line, never aiohttp's plain text or a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

import pytest
from aiohttp import http_exceptions as hx
from aiohttp import web

from gateway import http_errors
from tests.api_support import LiveGateway

HEAD = b"Host: 127.0.0.1\r\n"
TRANSFER_HEAD = (b"POST /v1/transfers HTTP/1.1\r\n" + HEAD
                 + b"Content-Type: application/json\r\nIdempotency-Key: raw-1\r\n")
# (name, bytes sent, the code answered, its path, the value it shows: never the request
# line, of a header line only its name)
MALFORMED = [
    ("garbage", b"GARBAGE\r\n\r\n", "request_line_malformed", "request line", None),
    ("method", b"G(T /health HTTP/1.1\r\n" + HEAD + b"\r\n", "request_line_malformed",
     "request line", None),
    ("header name", b"GET /health HTTP/1.1\r\n" + HEAD + b"Bad Header: y\r\n\r\n",
     "header_malformed", "headers", "Bad Header"),
    ("header line", b"GET /health HTTP/1.1\r\n" + HEAD + b"X-Big: " + b"a" * 9000
     + b"\r\n\r\n", "line_too_long", "headers", None),
    ("request line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HEAD + b"\r\n",
     "line_too_long", "request line", None),
    ("headers", b"GET /health HTTP/1.1\r\n" + HEAD
     + b"".join(b"X-N%d: 1\r\n" % i for i in range(200)) + b"\r\n", "headers_too_many",
     "headers", None),
    ("chunk", TRANSFER_HEAD + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
     "chunked_encoding_malformed", "/", "ZZ"),
    ("length and chunks", TRANSFER_HEAD + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "transfer_encoding_malformed",
     "Transfer-Encoding", "Transfer-Encoding"),
    ("length", TRANSFER_HEAD + b"Content-Length: abc\r\n\r\n{}", "content_length_malformed",
     "Content-Length", "Content-Length"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("parse-errors")).start()
    yield g
    g.stop()


def exchange(live: LiveGateway, raw: bytes, half_close: bool = False) -> bytes:
    """What the gateway answers `raw` with, read until it closes the connection."""
    host, port = live.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(raw)
        if half_close:
            time.sleep(0.2)
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def parsed(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize("name, raw, code, path, value", MALFORMED,
                         ids=[case[0] for case in MALFORMED])
def test_a_request_aiohttp_cannot_parse_is_answered_in_the_error_shape(
        live, caplog, name, raw, code, path, value) -> None:
    caplog.set_level(logging.DEBUG)
    status, headers, body = parsed(exchange(live, raw))
    [error] = body["errors"]

    assert status == 400
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert set(error) == {"code", "path", "value", "expected", "message"}
    assert (error["code"], error["path"], error["value"]) == (code, path, value)
    assert error["expected"] and error["message"]
    logged = [r for r in caplog.records if "event=request_unparsed" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
    assert f"code={code} " in logged[0].getMessage()
    assert not any(r.exc_info for r in caplog.records if r.name.startswith(("aiohttp",
                                                                           "paygate")))
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]


SECRET = b"b3AxOmh1bnRlcjItcGFzc3dvcmQ="  # base64 of a user and password
GET_HEAD = b"GET /health HTTP/1.1\r\n" + HEAD
# (name, bytes sent, the code answered, the value it shows): each line carries SECRET.
SECRET_LINES = [
    ("a control character", GET_HEAD + b"Authorization: Basic " + SECRET + b"\x01\r\n\r\n",
     "header_malformed", "Authorization"),
    ("a line too long", GET_HEAD + b"Authorization: Basic " + SECRET + b"s" * 9000
     + b"\r\n\r\n", "line_too_long", None),
    ("no colon", GET_HEAD + b"Basic " + SECRET + b"\r\n\r\n", "header_malformed", None),
    ("a space in the name", GET_HEAD + b"X Token: " + SECRET + b"\r\n\r\n",
     "header_malformed", "X Token"),
    ("a length", GET_HEAD + b"Content-Length: 1" + SECRET + b"\r\n\r\n",
     "content_length_malformed", "Content-Length"),
    ("a transfer encoding", GET_HEAD + b"Transfer-Encoding: " + SECRET + b"\r\n\r\n",
     "transfer_encoding_malformed", None),
]


@pytest.mark.parametrize("name, raw, code, value", SECRET_LINES,
                         ids=[case[0] for case in SECRET_LINES])
def test_a_malformed_header_line_shows_and_logs_its_name_never_its_value(
        live, caplog, name, raw, code, value) -> None:
    caplog.set_level(logging.DEBUG)
    answer = exchange(live, raw)
    status, _, body = parsed(answer)
    [error] = body["errors"]
    logged = "\n".join(r.getMessage() for r in caplog.records)

    assert (status, error["code"]) == (400, code)
    assert SECRET[:12] not in answer, answer
    assert SECRET[:12].decode() not in logged, logged
    assert error["value"] == value
    assert error["message"].startswith("the request could not be read as HTTP: ")


TOKEN = b"tok-7Hq2xVb9Lm"  # a credential a client put in its query string
# (name, bytes sent, the code answered, the fault its message names): each request line
# carries TOKEN in its query.
TOKEN_LINES = [
    ("a method", b"G(T /health?access_token=" + TOKEN + b" HTTP/1.1\r\n" + HEAD + b"\r\n",
     "request_line_malformed", "Invalid method encountered"),
    ("a version", b"GET /health?access_token=" + TOKEN + b" HTTP/9.9\r\n" + HEAD + b"\r\n",
     "request_line_malformed", "Invalid HTTP version"),
    ("a space in the path", b"GET /he alth?access_token=" + TOKEN + b" HTTP/1.1\r\n" + HEAD
     + b"\r\n", "request_line_malformed", "Expected HTTP/, RTSP/ or ICE/"),
    ("a control character", b"GET /health?access_token=" + TOKEN + b"\x01 HTTP/1.1\r\n"
     + HEAD + b"\r\n", "request_target_malformed", "Invalid char in url query"),
    ("an absolute target", b"GET http://[::1/?access_token=" + TOKEN + b" HTTP/1.1\r\n"
     + HEAD + b"\r\n", "request_target_malformed", "request target malformed"),
    ("a line too long", b"GET /health?access_token=" + TOKEN + b"a" * 9000 + b" HTTP/1.1\r\n"
     + HEAD + b"\r\n", "line_too_long", "Got more than 8190 bytes when reading"),
]


@pytest.mark.parametrize("name, raw, code, fault", TOKEN_LINES,
                         ids=[case[0] for case in TOKEN_LINES])
def test_a_malformed_request_line_is_named_never_shown_or_logged(
        live, caplog, name, raw, code, fault) -> None:
    """What was wrong with the request line is said (the code, aiohttp's words for the
    fault); the line itself, whose query may carry a token, is neither answered nor
    logged."""
    caplog.set_level(logging.DEBUG)
    answer = exchange(live, raw)
    status, _, body = parsed(answer)
    [error] = body["errors"]
    logged = "\n".join(r.getMessage() for r in caplog.records)

    assert (status, error["code"], error["path"]) == (400, code, "request line")
    assert error["value"] is None
    assert error["message"] == "the request could not be read as HTTP: " + fault
    assert TOKEN not in answer, answer
    assert TOKEN.decode() not in logged, logged
    assert "access_token" not in logged and b"access_token" not in answer


# aiohttp's Python parser (without its C extension) quotes what it refuses as text, or
# gives a target alone as its message; llhttp's words may hold an apostrophe of their
# own: (exception, code, value, fault).
PARSER_MESSAGES = [
    (hx.BadStatusLine("GET /?access_token=tok-7Hq2 HTTP/1.1 x"), "request_line_malformed",
     None, "Bad status line"),
    (hx.BadHttpMethod("G(T"), "request_line_malformed", None,
     "Bad HTTP method in status line"),
    (hx.InvalidURLError("http://[::1/?access_token=tok-7Hq2"), "request_target_malformed",
     None, "request target malformed"),
    (hx.InvalidURLError("tok-7Hq2"), "request_target_malformed", None,
     "request target malformed"),
    (hx.InvalidHeader(b"Bearer tok-7Hq2:x\x00"), "header_malformed", None,
     "Invalid HTTP header"),
    (hx.InvalidHeader(b"X-Token"), "header_malformed", "X-Token", "Invalid HTTP header"),
    (hx.BadHttpMessage("Missing 'Host' header in request."), "header_malformed", None,
     "Missing Host header in request"),
    (hx.BadHttpMessage("Transfer-Encoding can't be present with Content-Length:\n\n  "
                       "b'Content-Length: 5'\n  ^"), "transfer_encoding_malformed",
     "Content-Length", "Transfer-Encoding can't be present with Content-Length"),
]


@pytest.mark.parametrize("exc, code, value, fault", PARSER_MESSAGES,
                         ids=[type(case[0]).__name__ + str(i)
                              for i, case in enumerate(PARSER_MESSAGES)])
def test_the_parsers_words_never_carry_the_request(exc, code, value, fault) -> None:
    [problem] = http_errors.parse_refusal(exc, 400).problems

    assert (problem.code, problem.value) == (code, value)
    assert problem.message == "the request could not be read as HTTP: " + fault
    assert "tok-7Hq2" not in problem.message


def test_a_body_cut_short_is_logged_as_such_not_as_redis_away(live, caplog) -> None:
    """The connection closed mid-body: no answer can go back, and the log says what
    happened, not that Redis is away (both raise ConnectionError)."""
    caplog.set_level(logging.INFO)
    exchange(live, TRANSFER_HEAD + b"Content-Length: 100\r\n\r\n{}", half_close=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
            "event=request_body_unreadable" in r.getMessage() for r in caplog.records):
        time.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]

    assert any("event=request_body_unreadable" in m for m in messages), messages
    assert not any("event=request_needs_redis" in m for m in messages), messages


def test_a_well_formed_request_is_untouched(live) -> None:
    status, _, body = parsed(exchange(
        live, b"GET /nowhere HTTP/1.1\r\n" + HEAD + b"Connection: close\r\n\r\n"))

    assert (status, body["errors"][0]["code"]) == (404, "path_unknown")


@pytest.mark.parametrize("version, tested", [("3.14.5", True), ("3.9.0", True),
                                             ("3.8.6", False), ("4.0.0a1", False)])
def test_only_the_aiohttp_versions_it_was_written_for_are_changed(version, tested) -> None:
    assert http_errors._tested(version) is tested


def test_an_untested_aiohttp_keeps_its_own_answers(monkeypatch) -> None:
    monkeypatch.setattr(http_errors, "_tested", lambda: False)

    async def server_class(runner_class: Any) -> type:
        runner = runner_class(web.Application(), access_log=None)
        await runner.setup()
        try:
            return type(runner.server)
        finally:
            await runner.cleanup()
    assert asyncio.run(server_class(http_errors.GatewayRunner)) is web.Server
    monkeypatch.setattr(http_errors, "_tested", lambda: True)
    assert asyncio.run(server_class(http_errors.GatewayRunner)) is not web.Server


def test_a_handler_failing_past_every_middleware_is_a_500_in_the_error_shape(caplog) -> None:
    """What aiohttp answers 500 itself (a handler's exception no middleware caught) has
    the error shape too, logged with its traceback: a bug."""
    async def failing(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    async def scenario() -> tuple[int, str, Any]:
        app = web.Application()
        app.router.add_get("/", failing)
        runner = http_errors.GatewayRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = await reader.read()
            writer.close()
        finally:
            await runner.cleanup()
        status, headers, body = parsed(answer)
        return status, headers["content-type"], body

    caplog.set_level(logging.INFO)
    status, content_type, body = asyncio.run(scenario())

    assert (status, content_type) == (500, "application/json; charset=utf-8")
    assert body["errors"][0]["code"] == "internal_error"
    [failed] = [r for r in caplog.records if "event=request_failed" in r.getMessage()]
    assert failed.exc_info is not None


def _api_app() -> web.Application:
    """An application with the API's error middleware, as `gateway.api.make_app` makes
    it, and three routes: one answering, one refused, one failing."""
    from gateway.api import errors_middleware
    from gateway.errors import PaygateError, Problem

    async def fine(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def refused(request: web.Request) -> web.Response:
        raise PaygateError(Problem("amount_too_large", "/amount", "9", "at most 1"), 422)

    async def failing(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")
    app = web.Application(middlewares=[errors_middleware])
    app.router.add_get("/fine", fine)
    app.router.add_post("/refused", refused)
    app.router.add_get("/failing", failing)
    return app


async def _answers(app: web.Application) -> tuple[bool, list[tuple[int, str]]]:
    """Whether the error middleware is still in the application's chain once served by
    GatewayRunner(around=it), and what six requests are answered (status, code)."""
    from gateway.api import errors_middleware
    runner = http_errors.GatewayRunner(app, around=errors_middleware, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sent = [b"GET /fine HTTP/1.1\r\n", b"POST /refused HTTP/1.1\r\nContent-Length: 0\r\n",
            b"GET /failing HTTP/1.1\r\n", b"GET /nowhere HTTP/1.1\r\n",
            b"DELETE /fine HTTP/1.1\r\n",
            b"GET /fine HTTP/1.1\r\nX-Client-Id: a\r\nX-Client-Id: b\r\n"]
    out = []
    try:
        for head in sent:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head + HEAD + b"Connection: close\r\n\r\n")
            status, _, body = parsed(await reader.read())
            writer.close()
            out.append((status, body["errors"][0]["code"] if status >= 400 else "ok"))
    finally:
        await runner.cleanup()
    return errors_middleware in app.middlewares, out


ANSWERS_AROUND = [(200, "ok"), (422, "amount_too_large"), (500, "internal_error"),
                  (404, "path_unknown"), (405, "method_not_allowed"),
                  (400, "header_repeated")]


def test_the_error_middleware_run_around_the_application_answers_as_in_its_chain() -> None:
    """Served by GatewayRunner(around=errors_middleware), the middleware leaves aiohttp's
    chain (which would cost every request two coroutines more) and is run by the server
    around the application: each request is answered as the chain answered it, the
    router's refusals (404, 405) and a repeated header included."""
    in_chain, answers = asyncio.run(_answers(_api_app()))

    assert not in_chain
    assert answers == ANSWERS_AROUND


def test_on_an_untested_aiohttp_the_error_middleware_stays_in_the_chain(monkeypatch) -> None:
    monkeypatch.setattr(http_errors, "_tested", lambda: False)

    in_chain, answers = asyncio.run(_answers(_api_app()))

    assert in_chain
    assert answers == ANSWERS_AROUND
