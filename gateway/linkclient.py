"""The link's HTTP client: envelopes POSTed to the NPC's inbound URL, connections kept.

Every HVPS payment puts two POSTs on the link (its hvps.111, and the ccms.990 answering
its result), and the BEPS packages, queries and probes go the same way. aiohttp's client
spent about 50 µs of the gateway's CPU on each (a request and a response object, header
multidicts, a cookie jar, tracing hooks, a timer, a payload lookup) for an exchange that
needs a write, a read and a status. This client does only what the link needs: POST
bytes to one URL and read the answer's status, over HTTP/1.1 connections kept open for
the next POST (at most `connections_max`; a POST beyond waits for one to come free).

The answer's body is read and dropped (its length from Content-Length, chunked
encoding, or the connection's end) so that the connection can carry the next POST; the
NPC's 2xx only means it took the message (CONTRACT.md §4). Whatever keeps an answer
from being read whole (the connection refused or closed, a malformed or oversized
answer, the deadline passed) is an OSError or TimeoutError, which the gateway counts as
a link failure (gateway.link).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

# An answer's head and body at most: the NPC answers a POST with a few hundred bytes of
# JSON, so anything near these is not an answer from the NPC.
HEAD_LEN_MAX = 64 * 1024
BODY_LEN_MAX = 1024 * 1024
# Connections open at once: the sends after commit (gateway.direct) and the stream
# workers' sends together.
CONNECTIONS_MAX = 128


class LinkClosed(ConnectionError):
    """The connection ended before the whole answer arrived (on a connection kept from
    an earlier POST, the NPC may have closed it just as it was reused)."""


class AnswerMalformed(ConnectionError):
    """What came back is not an HTTP/1.x answer this client can read."""


class _Connection(asyncio.Protocol):
    """One connection; reads the answer to the POST written on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._answer: asyncio.Future | None = None
        self._head: tuple[int, int | None, bool, bool] | None = None  # see _read_head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            head = self._head
            if head is not None and head[1] is None and not head[2]:
                self._answer.set_result((head[0], False))  # the body ran to the end
            else:
                self._answer.set_exception(LinkClosed(
                    f"connection closed before the whole answer ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        answer = self._answer
        if answer is None or answer.done():
            if self._buffer:  # bytes nobody asked for: this connection is not reused
                self.close()
            return
        try:
            outcome = self._read()
        except ConnectionError as exc:
            answer.set_exception(exc)
            self.close()
            return
        if outcome is not None:
            answer.set_result(outcome)

    def post(self, request: bytes) -> asyncio.Future:
        """Write a request; the future of (status, whether the connection may be kept)."""
        assert self._answer is None or self._answer.done(), "one POST at a time"
        self._buffer.clear()
        self._head = None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _read(self) -> tuple[int, bool] | None:
        """(status, keep) once the whole answer is in the buffer, else None."""
        while self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > HEAD_LEN_MAX:
                    raise AnswerMalformed(f"an answer head longer than {HEAD_LEN_MAX} bytes")
                return None
            head = _read_head(bytes(self._buffer[:end]))
            del self._buffer[:end + 4]
            if 100 <= head[0] < 200:
                continue  # an interim answer: the final one follows
            self._head = head
        status, length, chunked, keep = self._head
        if chunked:
            if not _chunked_complete(self._buffer):
                return None
        elif length is None:
            if len(self._buffer) > BODY_LEN_MAX:
                raise AnswerMalformed(f"an answer body longer than {BODY_LEN_MAX} bytes")
            return None  # the body runs to the connection's end (connection_lost)
        elif len(self._buffer) < length:
            return None
        elif len(self._buffer) > length:
            keep = False  # more than was announced: this connection is not reused
        return status, keep


def _read_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, body length or None, chunked, keep the connection) of an answer head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise AnswerMalformed(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(code)
    length: int | None = None
    chunked = False
    keep = version != b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit() or int(value) > BODY_LEN_MAX:
                raise AnswerMalformed(f"Content-Length {value[:20]!r} is not a length up "
                                      f"to {BODY_LEN_MAX}")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            keep = b"close" not in value if keep else b"keep-alive" in value
    if status in (204, 304):
        length, chunked = 0, False
    if chunked:
        length = None
    return status, length, chunked, keep


def _chunked_complete(buffer: bytearray) -> bool:
    """Whether a chunked body (RFC 9112 §7.1) ends in `buffer`."""
    at = 0
    while True:
        end = buffer.find(b"\r\n", at)
        if end < 0:
            return False
        size_text = bytes(buffer[at:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise AnswerMalformed(f"a chunk size that is not hexadecimal: "
                                  f"{size_text[:20]!r}") from None
        if size == 0:  # the last chunk; the trailer section ends with an empty line
            return buffer.find(b"\r\n\r\n", end) >= 0
        at = end + 2 + size + 2
        if at > BODY_LEN_MAX:
            raise AnswerMalformed(f"an answer body longer than {BODY_LEN_MAX} bytes")
        if len(buffer) < at:
            return False


class LinkClient:
    """POSTs to one URL over kept connections; `post` gives the answer's status."""

    def __init__(self, url: str, timeout_s: float,
                 connections_max: int = CONNECTIONS_MAX) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the link's URL must be http:// or https://, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = self.host if parts.port is None else f"{self.host}:{self.port}"
        self._request_head = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\n"
                              "Content-Type: application/octet-stream\r\n"
                              "Content-Length: ").encode("ascii")
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(connections_max)
        self._idle: list[_Connection] = []
        self._closed = False
        self.connections_opened = 0

    async def post(self, body: bytes) -> int:
        """POST `body`; the answer's status, once the whole answer was read."""
        request = self._request_head + b"%d\r\n\r\n" % len(body) + body
        async with asyncio.timeout(self.timeout_s), self._slots:
            connection = self._kept() or await self._connect()
            try:
                status, keep = await connection.post(request)
            except BaseException:
                connection.close()
                raise
            if keep and not connection.closed and not self._closed:
                self._idle.append(connection)
            else:
                connection.close()
            return status

    def _kept(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port,
                                                     ssl=self.ssl)
        self.connections_opened += 1
        return connection

    def close(self) -> None:
        """Close the kept connections; those of POSTs under way close as they end."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
