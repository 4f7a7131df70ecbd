"""The simulated NPC delivers to a bank with several gateway processes: their inbound
URLs in turn, and at once to the next one when one does not answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from gateway.clock import SystemClock
from gateway.redisproc import free_port
from simulators.faults import FaultState
from simulators.link import Link
from simulators.settings import Delivery
from simulators.store import SENT, Store

BANK = "999100000019"


async def _inbound(taken: list[bytes]) -> tuple[web.AppRunner, str]:
    async def take(request: web.Request) -> web.Response:
        taken.append(await request.read())
        return web.json_response({"taken": True})
    app = web.Application()
    app.router.add_post("/link/inbound", take)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/link/inbound"


async def _deliver(tmp_path: Path, urls: list[str], count: int) -> Store:
    """Deliver `count` messages one per POST (`batch_max` 1: these inbound URLs read a
    body as one envelope, as a bank that takes no framed POSTs does)."""
    store = Store(tmp_path / "npc.db")
    for i in range(count):
        store.enqueue(BANK, "ccms.990.001.02", f"m{i}", f"message {i}".encode(), "t")
    link = Link(store, SystemClock(), {BANK: ",".join(urls)},
                Delivery(attempts_max=1, parallel_max=1, batch_max=1), FaultState(1))
    await link.start()
    await asyncio.wait_for(link.drain(), 10)
    await link.stop()
    return store


def test_messages_alternate_between_the_gateways(tmp_path: Path) -> None:
    """Two reachable gateways get the bank's messages in turn, each message once."""
    async def scenario() -> tuple[list[bytes], list[bytes], dict]:
        first, second = [], []
        runner_a, url_a = await _inbound(first)
        runner_b, url_b = await _inbound(second)
        try:
            store = await _deliver(tmp_path, [url_a, url_b], 6)
            return first, second, store.outbox_counts()
        finally:
            await runner_a.cleanup()
            await runner_b.cleanup()
    first, second, counts = asyncio.run(scenario())

    assert len(first) == 3 and len(second) == 3
    assert sorted(first + second) == sorted(f"message {i}".encode() for i in range(6))
    assert counts == {SENT: 6}


def test_a_gateway_that_is_down_is_passed_over_at_once(tmp_path: Path) -> None:
    """With one of two gateways down, every message reaches the other on its first
    attempt (no retries left: attempts_max is 1)."""
    async def scenario() -> tuple[list[bytes], dict]:
        taken: list[bytes] = []
        runner, url = await _inbound(taken)
        down = f"http://127.0.0.1:{free_port()}/link/inbound"  # nothing listens there
        try:
            store = await _deliver(tmp_path, [down, url], 4)
            return taken, store.outbox_counts()
        finally:
            await runner.cleanup()
    taken, counts = asyncio.run(scenario())

    assert sorted(taken) == sorted(f"message {i}".encode() for i in range(4))
    assert counts == {SENT: 4}
