"""The link's HTTP client (gateway.linkclient): POSTs over kept connections, answers read
whole whatever their framing, and every way an answer can fail is a link failure."""

import asyncio

import pytest

from gateway.linkclient import AnswerMalformed, LinkClient, LinkClosed

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n" \
     b'{"taken": true}'


class Scripted(asyncio.Protocol):
    """A server that answers the n-th request it reads with the n-th scripted answer
    (None: close the connection instead; a tuple: write its bytes, then close), and
    records what it read."""

    def __init__(self, answers: list[bytes | None], seen: list[bytes], connections: list):
        self.answers, self.seen, self.buffer = answers, seen, b""
        connections.append(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) < length:
                return
            self.seen.append(head + b"\r\n\r\n" + rest[:length])
            self.buffer = rest[length:]
            answer = self.answers.pop(0)
            if answer is None:
                self.transport.close()
                return
            self.transport.write(answer[0] if isinstance(answer, tuple) else answer)
            if isinstance(answer, tuple):
                self.transport.close()
                return


async def serve(answers: list[bytes | None]):
    seen: list[bytes] = []
    connections: list = []
    server = await asyncio.get_running_loop().create_server(
        lambda: Scripted(answers, seen, connections), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/link/inbound", seen, connections


def test_posts_go_over_one_kept_connection_and_give_each_answer_status():
    """Consecutive POSTs share one connection; each gives its answer's status, and the
    NPC reads the envelope's bytes under their length and content type."""
    async def scenario():
        server, url, seen, connections = await serve(
            [OK, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", OK])
        client = LinkClient(url, timeout_s=5)
        statuses = [await client.post(b"{H:first"), await client.post(b"{H:second"),
                    await client.post(b"")]
        client.close()
        server.close()
        return statuses, seen, len(connections), client.connections_opened

    statuses, seen, connections, opened = asyncio.run(scenario())

    assert statuses == [200, 503, 200]
    assert connections == opened == 1
    assert seen[0].startswith(b"POST /link/inbound HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Type: application/octet-stream\r\nContent-Length: 8\r\n\r\n{H:first" \
        in seen[0]
    assert seen[2].endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize("answer, reused", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"7\r\n{\"taken\"\r\n8;x=y\r\n: true}\r\n\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
     b"Trailer: yes\r\n\r\n", True),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}", True),
])
def test_answers_are_read_whole_whatever_their_framing(answer, reused):
    """Chunked bodies (with extensions and trailers), interim answers and bodiless ones
    are read whole and leave the connection ready for the next POST; an answer that
    asks for the connection to close gets a new connection next time."""
    async def scenario():
        server, url, _, connections = await serve([answer, OK])
        client = LinkClient(url, timeout_s=5)
        statuses = [await client.post(b"one"), await client.post(b"two")]
        client.close()
        server.close()
        return statuses, len(connections)

    statuses, connections = asyncio.run(scenario())

    assert statuses[1] == 200
    assert statuses[0] in (200, 204)
    assert connections == (1 if reused else 2)


def test_an_answer_that_runs_to_the_end_of_its_connection_is_read_whole():
    """An answer without a length ends with its connection: its status counts."""
    class UntilClose(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(b"HTTP/1.1 202 Accepted\r\n\r\n{\"taken\": true}")
            self.transport.close()

    async def scenario():
        server = await asyncio.get_running_loop().create_server(UntilClose, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/in"
        client = LinkClient(url, timeout_s=5)
        status = await client.post(b"x")
        server.close()
        return status

    assert asyncio.run(scenario()) == 202


@pytest.mark.parametrize("answer, error", [
    (None, LinkClosed),
    ((b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}", "close"), LinkClosed),
    ((b"HTTP/1.1 200 OK\r\nContent-Le", "close"), LinkClosed),
    (b"SMTP ready\r\n\r\n", AnswerMalformed),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", AnswerMalformed),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", AnswerMalformed),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", AnswerMalformed),
])
def test_an_answer_that_cannot_be_read_is_a_connection_error(answer, error):
    """A connection closed before the whole answer, or an answer that is not HTTP, fails
    the POST with a ConnectionError, which the gateway counts as a link failure."""
    async def scenario():
        server, url, _, _ = await serve([answer])
        client = LinkClient(url, timeout_s=5)
        try:
            with pytest.raises(error) as raised:
                await client.post(b"x")
            return raised.value
        finally:
            client.close()
            server.close()

    assert isinstance(asyncio.run(scenario()), ConnectionError)


def test_a_kept_connection_the_server_closed_is_not_used_again():
    """The NPC closing a kept connection while it is idle costs nothing: the next POST
    goes on a new one."""
    async def scenario():
        server, url, _, connections = await serve([OK, OK])
        client = LinkClient(url, timeout_s=5)
        first = await client.post(b"one")
        connections[0].transport.close()
        await asyncio.sleep(0.05)
        second = await client.post(b"two")
        client.close()
        server.close()
        return first, second, client.connections_opened

    assert asyncio.run(scenario()) == (200, 200, 2)


def test_no_answer_within_the_deadline_is_a_timeout():
    """A POST the NPC never answers ends at the deadline, its connection closed."""
    class Silent(asyncio.Protocol):
        def data_received(self, data):
            pass

    async def scenario():
        server = await asyncio.get_running_loop().create_server(Silent, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/in"
        client = LinkClient(url, timeout_s=0.2)
        try:
            with pytest.raises(TimeoutError):
                await client.post(b"x")
            return client._idle
        finally:
            server.close()

    assert asyncio.run(scenario()) == []


def test_a_link_nobody_listens_on_is_an_os_error():
    """Connection refused is an OSError (a link failure), raised at once."""
    async def scenario():
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol,
                                                                "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = LinkClient(f"http://127.0.0.1:{port}/in", timeout_s=5)
        with pytest.raises(OSError):
            await client.post(b"x")

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["ftp://npc/in", "npc:8090/in", "http:///in"])
def test_only_http_urls_name_a_link(url):
    """The link is HTTP or HTTPS to a named host."""
    with pytest.raises(ValueError):
        LinkClient(url, timeout_s=1)
