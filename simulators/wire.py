"""The HTTP client the link delivers with: POST one envelope, return the answer's status.

The NPC sends two messages to the payer's bank for every HVPS payment (its ccms.990 and
the ccms.900), so the client's own cost counts: a general-purpose client (aiohttp's)
spends about 130 µs of CPU on a POST, this one about 40 µs, because it does only what the
link needs. It speaks HTTP/1.1 (RFC 9112) over kept-alive connections, `http` or `https`:

- The request is one write: request line, Host, Content-Type, Content-Length, body.
- The answer's body is read by Content-Length, by chunks, or to the end of the
  connection, and thrown away: on the link a 2xx only means "taken" (CONTRACT.md §4).
  1xx answers before the final one are skipped.
- The connection is kept for the next POST unless the answer is HTTP/1.0, says
  `Connection: close` or ends with the connection. A kept connection the bank closed
  while it was idle is noticed before use; if the close crosses the request (the
  connection ends before any byte of an answer, or is reset before the answer's head),
  the POST goes once more on a new connection: the bank cannot have answered it, and
  were it taken, a second copy is a duplicate the bank recognises.
- Every read is bounded: the answer's head at `HEAD_LEN_MAX` bytes, its body at
  `BODY_LEN_MAX`, the whole exchange (connecting included) at the delivery timeout.

Connection errors and timeouts raise OSError and TimeoutError; a URL that is not http(s)
or an answer that is not HTTP/1.x or breaks a bound raises `LinkHttpError`. The link
retries all three, as it would any failed delivery.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

# An answer's status line and headers; banks answer with a few short headers.
HEAD_LEN_MAX = 64 * 1024
# An answer's body; the gateway answers a POST to its inbound URL with a short JSON text.
BODY_LEN_MAX = 1024 * 1024
# Kept-alive connections per bank URL: the link's parallel deliveries (32 by default)
# with room to spare; more are closed after use.
IDLE_MAX = 64
_NO_BODY = frozenset({204, 304})
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class LinkHttpError(Exception):
    """A POST that cannot be made (the URL is not http(s)) or an answer that is not an
    HTTP/1.x answer within the bounds."""


class _Stale(Exception):
    """A kept connection ended before any byte of an answer."""


@dataclass(frozen=True)
class _Target:
    origin: tuple[str, str, int]  # scheme, host, port: connections are kept by origin
    host: str
    port: int
    tls: bool
    path: str
    host_header: str


def url_problem(url: str) -> str | None:
    """Why `post` cannot send to `url`, or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected http(s)://host[:port]/path"
    return None


@lru_cache(maxsize=256)
def _target(url: str) -> _Target:
    problem = url_problem(url)
    if problem is not None:
        raise LinkHttpError(f"cannot POST to {url!r}: {problem}")
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target((parts.scheme, parts.hostname, port), parts.hostname, port, tls, path,
                   parts.netloc.rpartition("@")[2])


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


@dataclass
class Poster:
    timeout_s: float
    _idle: dict[tuple[str, str, int], list[_Connection]] = field(default_factory=dict)
    _tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, content_type: str) -> int:
        """POST `body` to `url`; the answer's status."""
        target = _target(url)
        request = (f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
                   f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode("latin-1") + body
        async with asyncio.timeout(self.timeout_s):
            conn = self._kept(target)
            if conn is not None:
                try:
                    return await self._exchange(target, conn, request, reused=True)
                except _Stale:
                    pass
            conn = await self._connect(target)
            return await self._exchange(target, conn, request, reused=False)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _kept(self, target: _Target) -> _Connection | None:
        conns = self._idle.get(target.origin)
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        tls = None
        if target.tls:
            tls = self._tls = self._tls or ssl.create_default_context()
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=tls,
                                                       limit=HEAD_LEN_MAX)
        return _Connection(reader, writer)

    async def _exchange(self, target: _Target, conn: _Connection, request: bytes,
                        reused: bool) -> int:
        keep = False
        try:
            try:
                conn.writer.write(request)
                await conn.writer.drain()
            except ConnectionError:
                if reused:
                    raise _Stale() from None
                raise
            status, keep = await _answer(conn.reader, reused)
            return status
        finally:
            if keep:
                self._keep(target, conn)
            else:
                conn.close()

    def _keep(self, target: _Target, conn: _Connection) -> None:
        conns = self._idle.setdefault(target.origin, [])
        if len(conns) < IDLE_MAX:
            conns.append(conn)
        else:
            conn.close()


async def _answer(reader: asyncio.StreamReader, reused: bool) -> tuple[int, bool]:
    """Read one final answer; (status, whether the connection may carry the next POST)."""
    first = True
    while True:
        version, status, headers = await _head(reader, reused and first)
        first = False
        if not 100 <= status < 200:
            break
    tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
    keep = version == "HTTP/1.1" and "close" not in tokens
    if status in _NO_BODY:
        return status, keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        await _chunks(reader)
    elif "content-length" in headers:
        await _exactly(reader, _length(headers["content-length"]))
    else:
        await _to_end(reader)
        keep = False
    return status, keep


async def _head(reader: asyncio.StreamReader,
                may_be_stale: bool) -> tuple[str, int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except ConnectionError:
        if may_be_stale:
            raise _Stale() from None
        raise
    except asyncio.IncompleteReadError as exc:
        if may_be_stale and not exc.partial:
            raise _Stale() from None
        raise LinkHttpError(f"the connection ended within the answer's head "
                               f"({len(exc.partial)} bytes)") from None
    except asyncio.LimitOverrunError:
        raise LinkHttpError(f"an answer's head over {HEAD_LEN_MAX} bytes") from None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if (len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or len(parts[1]) != 3
            or not parts[1].isascii() or not parts[1].isdigit()):
        raise LinkHttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise LinkHttpError(f"a header line without a colon: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    return parts[0], int(parts[1]), headers


def _length(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > BODY_LEN_MAX:
        raise LinkHttpError(f"Content-Length {value[:40]!r}: expected a whole number "
                               f"of at most {BODY_LEN_MAX}")
    return int(value)


async def _exactly(reader: asyncio.StreamReader, count: int) -> None:
    try:
        await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        raise LinkHttpError(f"the connection ended within the answer's body "
                               f"({len(exc.partial)} of {count} bytes)") from None


async def _chunks(reader: asyncio.StreamReader) -> None:
    total = 0
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise LinkHttpError("a chunk's size line is cut short or too long") from None
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise LinkHttpError(f"a chunk size that is not hexadecimal: "
                                   f"{size_text[:20]!r}")
        size = int(size_text, 16)
        total += size
        if total > BODY_LEN_MAX:
            raise LinkHttpError(f"a chunked body over {BODY_LEN_MAX} bytes")
        if size == 0:
            break
        await _exactly(reader, size + 2)
    while True:  # trailer fields, up to the empty line
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise LinkHttpError("the chunked body's trailer is cut short") from None
        if line == b"\r\n":
            return


async def _to_end(reader: asyncio.StreamReader) -> None:
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > BODY_LEN_MAX:
            raise LinkHttpError(f"an answer's body over {BODY_LEN_MAX} bytes")
