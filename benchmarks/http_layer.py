"""The gateway's HTTP layer alone, in process: the API's application (`gateway.api.make_app`)
served by `http_errors.GatewayRunner` over a stub gateway whose work answers at once,
driven through aiohttp's own server protocol with a transport that keeps what is
written (no socket, no kernel), one request after the other on one kept-alive
connection. It prints the thread CPU a request, best and median of the rounds, for each
way of serving asked for, taken in turns in one process so that the machine's load
falls on all alike:

- `around`: as `Gateway.start` serves it (the error middleware run around the
  application by the server);
- `chain`: the error middleware in aiohttp's middleware chain (any other runner);
- `bare`: an aiohttp application with one handler that reads the body and answers the
  same JSON, for aiohttp's own cost;
- `lowlevel`: aiohttp's low-level server (`web.Server`, no application) with that handler.

    .venv/bin/python -m benchmarks.http_layer [--request transfer|link:32]
        [--ways around,chain,bare,lowlevel] [--rounds 12] [--per-round 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
import types
from typing import Any

import uvloop
from aiohttp import web

from gateway import api
from gateway.http_errors import GatewayRunner

ANSWER = {"id": "PG20261207000000001234", "status": "accepted", "route": "hvps",
          "created_at": "2026-12-07T10:00:00.123456+08:00"}
TRANSFER = json.dumps({
    "payer_account": "62220212345678901234567", "payer_name": "张三有限公司",
    "payee_account": "6222021234567890123", "payee_name": "李四贸易有限公司",
    "payee_bank": "102100099996", "amount": "1234.56", "currency": "CNY",
    "business_type": "A100", "urgency": "normal", "remittance_info": ["货款"]},
    ensure_ascii=False).encode()


class StubGateway:
    """What the API's handlers ask of the gateway, answered at once."""

    extensions: tuple[Any, ...] = ()
    settings = types.SimpleNamespace(api_keys={}, api_balance_accounts={})

    async def submit_transfer(self, client: str, key: str | None, body: Any,
                              **_: Any) -> tuple[int, dict[str, Any]]:
        return 201, dict(ANSWER)

    async def receive_link_many(self, envelopes: list[bytes]) -> list[dict[str, Any]]:
        return [{"outcome": "taken"} for _ in envelopes]

    async def receive_link(self, raw: bytes) -> dict[str, Any]:
        return {"outcome": "taken"}


class KeptTransport(asyncio.Transport):
    """A transport that keeps what the server writes and tells when it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.status_line = b""
        self.answered: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000),
                "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: Any) -> None:
        self._wrote(bytes(data[:16]), len(data))

    def writelines(self, lines: Any) -> None:
        lines = list(lines)
        self._wrote(bytes(lines[0][:16]), sum(len(line) for line in lines))

    def _wrote(self, start: bytes, size: int) -> None:
        if start.startswith(b"HTTP/1.1 "):
            self.status_line = start
        self.written += size
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def requests(kind: str, count: int) -> list[bytes]:
    """`count` requests: transfers under their own keys, or link POSTs of N envelopes."""
    if kind == "transfer":
        head = (b"POST /v1/transfers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nIdempotency-Key: k-%d\r\n"
                b"Content-Length: %d\r\nAccept: */*\r\n\r\n")
        return [head % (i, len(TRANSFER)) + TRANSFER for i in range(count)]
    envelopes = [b"{H:" + b"x" * 3000] * int(kind.removeprefix("link:"))
    body = b"".join(envelopes)
    head = (b"POST /link/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\nEnvelope-Lengths: "
            + ",".join(str(len(e)) for e in envelopes).encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    return [head + body] * count


async def serve(way: str) -> tuple[Any, KeptTransport, web.BaseRunner]:
    """A connection of the server served `way`, and the transport it writes to."""
    if way in ("around", "chain"):
        runner: web.BaseRunner = GatewayRunner(
            api.make_app(StubGateway()), access_log=None,
            **({"around": api.errors_middleware} if way == "around" else {}))
    else:
        answer = json.dumps(ANSWER).encode()

        async def handler(request: web.BaseRequest) -> web.Response:
            await request.read()
            return web.Response(body=answer, status=201, content_type="application/json",
                                charset="utf-8")
        if way == "lowlevel":
            runner = web.ServerRunner(web.Server(handler), access_log=None)
        else:
            app = web.Application()
            app.router.add_post("/v1/transfers", handler)
            app.router.add_post("/link/inbound", handler)
            runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    protocol = runner.server()
    transport = KeptTransport()
    protocol.connection_made(transport)
    return protocol, transport, runner


async def main(kind: str, ways: list[str], rounds: int, per_round: int) -> None:
    loop = asyncio.get_running_loop()
    sent = requests(kind, per_round)
    served = {way: await serve(way) for way in ways}

    async def send(way: str, batch: list[bytes]) -> float:
        protocol, transport, _ = served[way]
        gc.collect()
        start = time.thread_time()
        for raw in batch:
            transport.answered = loop.create_future()
            protocol.data_received(raw)
            await transport.answered
        return (time.thread_time() - start) / len(batch) * 1e6
    for way in ways:
        await send(way, sent[:500])  # warmed up, and checked to answer
        status = served[way][1].status_line
        assert status.startswith((b"HTTP/1.1 200", b"HTTP/1.1 201")), (way, status)
    taken: dict[str, list[float]] = {way: [] for way in ways}
    for turn in range(rounds):
        for way in (ways if turn % 2 == 0 else ways[::-1]):
            taken[way].append(await send(way, sent))
    for way, figures in taken.items():
        print(f"{kind} {way}: best {min(figures):.1f} µs, median "
              f"{statistics.median(figures):.1f} µs a request ({rounds} rounds of "
              f"{per_round})", flush=True)
    for _, _, runner in served.values():
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--request", default="transfer",
                        help="transfer, or link:N for a link POST of N envelopes")
    parser.add_argument("--ways", default="around,chain",
                        help="comma-separated: around, chain, bare, lowlevel")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=3000)
    args = parser.parse_args()
    uvloop.run(main(args.request, args.ways.split(","), args.rounds, args.per_round))
