"""An NPC that answers but refuses every message (4xx) is not a link that is up: /health
and `ops status` show it `degraded`, with how many messages were refused and the last
refusal's reason, one `link_refusing` alert is raised for the episode, and the first
message the NPC takes again ends it (a later episode raises its own alert)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from gateway import keys
from gateway.ops import cli_render
from tests.e2e_support import (payer_after_one_settled, started, transfer, until,
                                wait_state)

pytestmark = pytest.mark.e2e


async def health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url + "/health") as r:
        assert r.status == 200
        return await r.json()


async def ops_status(url: str) -> dict[str, Any]:
    auth = aiohttp.BasicAuth("op1", "op1-demo")
    async with aiohttp.ClientSession(auth=auth) as s, s.get(url + "/ops/api/status") as r:
        assert r.status == 200
        return await r.json()


async def alerts(gw: Any) -> list[str]:
    return [code for (code,) in await gw.store.run(lambda tx: tx.query(
        "SELECT code FROM alerts WHERE code = 'link_refusing' ORDER BY id", ()))]


async def dead_letters(gw: Any) -> int:
    return len(await gw.redis.xrange(keys.DEAD))


def test_a_refusing_npc_shows_the_link_degraded_with_one_alert_per_episode(tmp_path, caplog):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await payer_after_one_settled(h)
            seen: dict[str, Any] = {"before": await health(gw.url)}

            await h.sim("POST", "/sim/faults", {"error_status": 400})
            for i in range(3):
                _, answer = await gw.submit_transfer("core", f"refused-{i}",
                                                     transfer(payer, f"{2 + i}.00"))
                await wait_state(h, answer["id"], "held")
            await until(lambda: dead_letters(gw), "the dead letters")
            seen["refusing"] = await health(gw.url)
            seen["status"] = await ops_status(gw.url)
            seen["alerts_refusing"] = await alerts(gw)

            await h.sim("POST", "/sim/faults", {"error_status": None})
            _, taken = await gw.submit_transfer("core", "ok-2", transfer(payer, "9.00"))
            await wait_state(h, taken["id"], "settled")
            seen["after"] = await health(gw.url)

            await h.sim("POST", "/sim/faults", {"error_status": 403})
            _, again = await gw.submit_transfer("core", "refused-again",
                                                transfer(payer, "10.00"))
            await wait_state(h, again["id"], "held")
            await until(lambda: gw.link.state == "degraded", "degraded again")
            seen["second"] = await health(gw.url)
            await until(lambda: _two(gw), "the second alert")
            seen["alerts_end"] = await alerts(gw)
            return seen

    with caplog.at_level(logging.INFO):
        seen = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]

    assert seen["before"]["ok"] is True and seen["before"]["link"]["state"] == "up"
    refusing = seen["refusing"]
    assert refusing["ok"] is False
    assert refusing["link"]["state"] == "degraded"
    # The three payments' messages, and any other message sent meanwhile (a probe).
    count = refusing["link"]["refused_deliveries"]
    assert count >= 3
    assert "400" in refusing["link"]["last_refusal"]
    assert refusing["link"]["since"] == refusing["link"]["refusing_since"]
    shown = cli_render.status(seen["status"])
    assert "DEGRADED" in shown and f"{count} messages" in shown, shown
    assert "link answered 400" in shown, shown
    assert seen["alerts_refusing"] == ["link_refusing"]
    assert seen["after"]["ok"] is True and seen["after"]["link"]["state"] == "up"
    assert seen["after"]["link"]["refused_deliveries"] == 0
    assert seen["after"]["link"]["last_refusal"] is None
    assert any(line.startswith("event=link_refusing_over") for line in lines)
    assert seen["second"]["link"]["state"] == "degraded"
    assert "403" in seen["second"]["link"]["last_refusal"]
    assert seen["alerts_end"] == ["link_refusing", "link_refusing"]


async def _two(gw: Any) -> bool:
    return len(await alerts(gw)) == 2
