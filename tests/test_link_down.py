"""A dead NPC is seen at the first failed delivery: the link shows down on /health and
the operators' page with one alert, retries are logged at a bounded rate, and every
payment waits and goes once the NPC is back (tests/test_link_hold.py: how often the dead
NPC is tried meanwhile)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from gateway import worker
from gateway.ops.snapshot import status
from tests.e2e_support import open_account, started, transfer, until, wait_state

pytestmark = pytest.mark.e2e


async def health(url: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(url + "/health") as r:
        assert r.status == 200
        return await r.json()


def test_a_killed_npc_marks_the_link_down_at_once(tmp_path, caplog, monkeypatch):
    """Kill the NPC, pay 20 times: within seconds the link is down (health, page, one
    alert); for several sweeps of retries the log holds one retry line per cause and
    a count; the NPC restarted, all 20 settle and the link is up."""
    monkeypatch.setattr(worker, "RETRY_LOG_INTERVAL_S", 2.0)

    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000_000 * 100)
            _, first = await gw.submit_transfer("core", "before", transfer(payer, "60000.00"))
            await wait_state(h, first["id"], "settled")
            before = (await health(gw.url))["link"]["state"]

            await h.stop_simulator(kill=True)
            with caplog.at_level(logging.INFO, logger="paygate.worker"):
                ids = []
                for i in range(20):
                    _, answer = await gw.submit_transfer("core", f"k{i}",
                                                         transfer(payer, f"{60001 + i}.00"))
                    ids.append(answer["id"])
                await until(lambda: gw.link.state == "down", "link down", timeout_s=5)
                down = await health(gw.url)
                page = (await status(gw))["link"]
                await asyncio.sleep(8)  # the sweeper sends each payment again, twice or more
            retried = [(r.created, r.getMessage()) for r in caplog.records
                       if r.getMessage().startswith("event=retry_later")]

            await h.start_simulator()
            for payment_id in ids:
                await wait_state(h, payment_id, "settled", timeout_s=60)
            alerts = await gw.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM alerts WHERE code = 'link_down'", ())[0])
            return before, down, page, retried, alerts, (await health(gw.url))

    before, down, page, retried, alerts, after = asyncio.run(scenario())
    full = [(at, line) for at, line in retried if line.startswith("event=retry_later ")]
    counted = [line for _, line in retried if line.startswith("event=retry_later_repeated ")]
    by_cause: dict[str, list[float]] = {}
    for at, line in full:
        by_cause.setdefault(line.split(" reason=")[1], []).append(at)

    assert before == "up"
    assert down["ok"] is False and down["link"]["state"] == "down"
    assert "link unreachable" in down["link"]["cause"]
    assert page["state"] == "down" and page["failed_deliveries"] >= 1
    assert alerts == 1
    # At most one full line per cause and interval (unreachable, held while down, and a
    # timeout maybe); the one attempt allowed every few seconds may log its cause again.
    assert 1 <= len(by_cause) <= 3, by_cause
    for times in by_cause.values():
        assert all(b - a >= 2.0 - 0.1 for a, b in zip(times, times[1:])), times
    # Each of the 20 payments was tried or held at least once: in full or counted.
    assert counted and sum(int(line.split("count=")[1].split()[0])
                           for line in counted) + len(full) >= 20
    assert after["ok"] is True and after["link"]["state"] == "up"
