"""The link's HTTP client (simulators/wire.py) against scripted servers on 127.0.0.1: how
it reads each shape of answer, when it keeps a connection, and how it fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from gateway.redisproc import free_port
from simulators import wire
from simulators.wire import LinkHttpError, Poster

BODY = "{H:02 ...}\r\n<Document/>".encode() + "中文".encode()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Scripted:
    """A server that answers the n-th request (over all connections) with answers[n]
    (None: close the connection without answering), closes the connection after the
    last answer, and records what it was sent."""

    answers: list[bytes | None]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers[len(self.requests) - 1]
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if (b"connection: close" in answer.lower() or b"HTTP/1.0" in answer[:8]
                        or len(self.requests) == len(self.answers)):
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()


@asynccontextmanager
async def scripted(*answers: bytes | None) -> AsyncIterator[Scripted]:
    server = Scripted(list(answers))
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/link/inbound"
    try:
        yield server
    finally:
        listening.close()


ANSWERS = [
    # (what the bank answers, status expected, connection kept for the next POST)
    (OK, 200, True),
    (b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 202, True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
     b"3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n", 200, True),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, 200, True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, False),
    (b"HTTP/1.0 200 OK\r\n\r\nread to the end", 200, False),
    (b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy", 503, True),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad", 400, True),
]


async def post_all(server: Scripted, count: int, timeout_s: float = 5.0) -> list[int]:
    """POST BODY `count` times, one after the other, with one client."""
    poster = Poster(timeout_s)
    try:
        return [await poster.post(server.url, BODY, "application/octet-stream")
                for _ in range(count)]
    finally:
        await poster.close()


async def with_server(answers: tuple[bytes | None, ...], count: int
                      ) -> tuple[Scripted, list[int] | str]:
    """The server after `count` POSTs, and their statuses or the error they ended in."""
    async with scripted(*answers) as server:
        try:
            return server, await post_all(server, count)
        except LinkHttpError as exc:
            return server, str(exc)


@pytest.mark.parametrize("answer,status,kept", ANSWERS)
def test_each_shape_of_answer_is_read(answer: bytes, status: int, kept: bool) -> None:
    """The status comes back whatever way the body is delimited, and the connection is
    kept unless the answer ends it."""
    server, statuses = asyncio.run(with_server((answer, OK), 2))

    assert statuses == [status, 200]
    assert server.connections == (1 if kept else 2)


def test_the_request_is_one_plain_post() -> None:
    """Request line, Host, Content-Type and Content-Length, then the body's bytes."""
    server, _ = asyncio.run(with_server((OK,), 1))
    port = server.url.split(":")[2].split("/")[0]

    assert server.requests == [
        f"POST /link/inbound HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(BODY)}\r\n\r\n"
        .encode() + BODY]


def test_a_kept_connection_closed_while_idle_is_replaced() -> None:
    """The bank closing a kept connection (as a keep-alive timeout does) costs nothing:
    the next POST goes on a new connection."""
    async def scenario() -> tuple[Scripted, int]:
        async with scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", OK) as server:
            poster = Poster(timeout_s=5.0)
            await poster.post(server.url, BODY, "text/plain")
            for conns in poster._idle.values():
                for conn in conns:
                    conn.reader.feed_eof()  # as if the bank had closed it meanwhile
            status = await poster.post(server.url, BODY, "text/plain")
            await poster.close()
            return server, status

    server, status = asyncio.run(scenario())

    assert status == 200
    assert server.connections == 2


def test_a_close_crossing_the_request_sends_it_once_more() -> None:
    """A kept connection that ends before any byte of an answer: the POST is sent again
    on a new connection, once."""
    server, statuses = asyncio.run(with_server((OK, None, OK), 2))

    assert statuses == [200, 200]
    assert (server.connections, len(server.requests)) == (2, 3)


BROKEN = [
    # (what the bank answers, what the client says)
    (None, "the connection ended within the answer's head"),
    (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "a header line without a colon"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length '-1'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "Content-Length '99999999'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "within the answer's body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
     "not hexadecimal"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * wire.HEAD_LEN_MAX + b"\r\n\r\n", "head over"),
]


@pytest.mark.parametrize("answer,message", BROKEN)
def test_an_unreadable_answer_is_an_error_naming_what_is_wrong(answer: bytes | None,
                                                               message: str) -> None:
    """On a new connection nothing is sent twice; the error says what broke."""
    server, error = asyncio.run(with_server((answer,), 1))

    assert message in error
    assert len(server.requests) == 1


def test_a_bank_that_does_not_answer_times_out() -> None:
    """The whole exchange is bounded by the delivery timeout."""
    async def scenario() -> None:
        slow = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nslow"
        async with scripted(slow, OK) as server:
            await post_all(server, 1, timeout_s=0.2)

    with pytest.raises(TimeoutError):
        asyncio.run(scenario())


def test_nobody_listening_and_bad_urls_are_errors() -> None:
    """A refused connection is an OSError; a URL that is not http(s) a LinkHttpError."""
    def post(url: str) -> int:
        return asyncio.run(Poster(timeout_s=2.0).post(url, BODY, "text/plain"))

    with pytest.raises(OSError):
        post(f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(LinkHttpError, match="expected http"):
        post("ftp://127.0.0.1/x")
    assert wire.url_problem("http://127.0.0.1:8080/link/inbound") is None
    assert wire.url_problem("http://h:99999/") == "Port out of range 0-65535"


def test_an_aiohttp_server_takes_many_posts_on_few_connections() -> None:
    """Against the same server library the gateway uses, concurrent POSTs all arrive
    whole, and connections are reused."""
    got: list[bytes] = []
    peers: set[int] = set()

    async def inbound(request: web.Request) -> web.Response:
        got.append(await request.read())
        peers.add(request.transport.get_extra_info("peername")[1])
        return web.json_response({"taken": True})

    async def scenario() -> list[int]:
        app = web.Application()
        app.router.add_post("/link/inbound", inbound)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/link/inbound"
        poster = Poster(timeout_s=5.0)
        statuses: list[int] = []
        try:
            for _ in range(3):
                statuses += await asyncio.gather(*(
                    poster.post(url, BODY + str(i).encode(), "application/octet-stream")
                    for i in range(20)))
        finally:
            await poster.close()
            await runner.cleanup()
        return statuses

    statuses = asyncio.run(scenario())

    assert statuses == [200] * 60
    assert sorted(got) == sorted(BODY + str(i).encode() for i in range(20) for _ in range(3))
    assert len(peers) <= 20
