"""Two gateway processes on one PostgreSQL schema and one Redis see one link: the NPC's
discard notices counted at either make one episode with one alert, which an
acknowledgement taken at either ends; an outage met by one shows at the other, whose
list of alerts keeps the outage's alert open; a process stopped drops out of the view. Two Gateway objects in this test's
process stand for the two processes (each with its own instance name, data folder and
connections); `a`'s path to the NPC is cut until the outage ends, `b`'s takes what it is
sent (`Npc`), and the link's events are fed as the inbound handlers feed them once their
transaction committed (gateway.handlers)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway import keys
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.linkshare import merged
from gateway.ops import attention
from gateway.redisproc import EmbeddedRedis
from ledger.fixtures import postgres_schema_or_skip
from tests.e2e_support import until

pytestmark = pytest.mark.postgres

MORNING = datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)
# Our header MesgIDs: the send date and a sequence, of one length (they sort as sent).
SENT = [f"20261207{n:08d}" for n in range(1, 6)]


class Npc:
    """The NPC as each process reaches it, on loopback: `/a/` is `a`'s path to it, which
    answers every POST 503 (the NPC away) while `a_cut`; `/b/` is `b`'s, which takes every
    POST. The outbox's stream gives each attempt at a message to any one process, so the
    leader's login, sent again while its outage lasts, may leave from `b`: `b`'s own
    deliveries meet no outage only when its path answers, whenever they happen."""

    def __init__(self) -> None:
        self.a_cut = True
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{process}/link/inbound", self._inbound)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _inbound(self, request: web.Request) -> web.Response:
        await request.read()
        if request.match_info["process"] == "a" and self.a_cut:
            return web.Response(status=503)
        return web.Response(status=200)  # a framed POST's 200: every envelope taken


def gateway(folder: Path, url: str, redis_url: str, npc_url: str) -> Gateway:
    return Gateway(Settings(data_dir=str(folder), port=0, database_url=url,
                            redis_url=redis_url, npc_url=npc_url),
                   clock=ManualClock(MORNING))


async def alerts(gw: Gateway, code: str) -> list[dict[str, Any]]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT id, detail FROM alerts WHERE code = ? ORDER BY id", (code,)))
    return [{"id": i, "detail": d} for i, d in rows]


async def published(*gws: Gateway) -> None:
    """Each writes its own view now, as its loop does every second."""
    for gw in gws:
        await gw.link_share.publish()


def test_two_gateways_show_one_link_and_one_discard_episode(tmp_path: Path) -> None:
    async def scenario(redis_url: str) -> dict[str, Any]:
        npc = Npc()
        await npc.start()
        try:
            return await two_gateways(redis_url, npc)
        finally:
            await npc.stop()

    async def two_gateways(redis_url: str, npc: Npc) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        a = gateway(tmp_path / "a", url, redis_url, f"{npc.url}/a/link/inbound")
        await a.start(serve_http=False)  # the leader: it logs in, and the NPC is away
        try:
            # Only `a` is there to make the login's first attempt.
            await until(lambda: a.link.state == "down", "the leader's link down")
            b = gateway(tmp_path / "b", url, redis_url, f"{npc.url}/b/link/inbound")
            await b.start(serve_http=False)

            # The leader's login found no NPC: `b`, whose path to it answers, shows the
            # link down since then, and keeps the outage's alert open.
            await published(a, b)
            seen["down_b"] = await b.link_share.view()
            seen["down_alert"] = (await alerts(a, "link_down"))[-1]["id"]
            seen["ongoing_b"] = await b.store.run(
                lambda tx: attention.ongoing_ids(tx, seen["down_b"]))
            seen["own_b"] = b.link.view()
            npc.a_cut = False  # the login, sent again, now gets through from either
            a.link.delivered()  # a delivery gets through again

            # The NPC discards one message at each process.
            a.link.discarded(SENT[1], "hvps.111.001.01", "O501", "signature")
            b.link.discarded(SENT[2], "hvps.111.001.01", "O501", "signature")
            await until(lambda: _count(b, 2), "both discards counted into the episode")
            await published(a, b)
            seen["discarding_a"] = await a.link_share.view()
            seen["discarding_b"] = await b.link_share.view()
            seen["alerts"] = await alerts(a, "link_discarding")

            # An acknowledgement of a message sent before the last discarded one ends
            # nothing; one sent after it, taken at the other process, ends the episode.
            # The early one is judged against the cluster's episode in work of its own:
            # its end awaited (never a pause that could end before it), it left the
            # episode as it was.
            early_judged = asyncio.Event()
            judge = b.link_share.acknowledged

            async def judged(mesg_id: str) -> None:
                try:
                    await judge(mesg_id)
                finally:
                    early_judged.set()
            b.link_share.acknowledged = judged  # type: ignore[method-assign]
            b.link.acknowledged(SENT[0])
            await asyncio.wait_for(early_judged.wait(), 10)
            b.link_share.acknowledged = judge  # type: ignore[method-assign]
            seen["early_ack_episode"] = await b.redis.hgetall(keys.LINK_DISCARDING)
            seen["after_early_ack"] = (await a.link_share.view())["discarded_messages"]
            b.link.acknowledged(SENT[3])
            await until(lambda: _count(a, 0), "the episode over")
            seen["over_a"] = await a.link_share.view()
        finally:
            await a.stop()
        try:
            seen["alone_b"] = await b.link_share.view()  # `a` gone: its view with it
        finally:
            await b.stop()
        return seen

    with postgres_schema_or_skip("link_cluster") as url:
        redis = EmbeddedRedis(tmp_path / "redis").start()
        try:
            seen = asyncio.run(scenario(redis.url))
        finally:
            redis.stop()

    down = seen["down_b"]
    assert down["state"] == "down" and down["since"] == MORNING.isoformat(), down
    assert down["failed_deliveries"] >= 1
    assert seen["own_b"]["state"] != "down"  # b's own deliveries met no outage
    assert seen["down_alert"] in seen["ongoing_b"]

    for name in ("discarding_a", "discarding_b"):
        view = seen[name]
        assert view["state"] == "degraded", view
        assert view["discarded_messages"] == 2, view
        assert view["discarding_since"] == MORNING.isoformat(), view
        assert sorted(p["discarded_messages"] for p in view["processes"].values()) == [1, 1]
        assert view["instance"] in view["processes"]
    assert seen["discarding_a"]["instance"] != seen["discarding_b"]["instance"]
    assert len(seen["alerts"]) == 1  # one alert for the cluster's episode
    assert '"since": "2026-12-07T09:30:00+08:00"' in seen["alerts"][0]["detail"]

    assert seen["early_ack_episode"].get("discards") == "2", seen["early_ack_episode"]
    assert seen["after_early_ack"] == 2
    assert seen["over_a"]["discarded_messages"] == 0
    assert seen["over_a"]["state"] != "degraded", seen["over_a"]

    assert len(seen["alone_b"]["processes"]) == 1
    assert seen["alone_b"]["state"] != "down"


async def _count(gw: Gateway, n: int) -> bool:
    return (await gw.link_share.view())["discarded_messages"] == n


def test_the_worst_state_shows_since_the_earliest_of_its_processes() -> None:
    def raw(state: str, since: str | None, failed: int = 0, refused: int = 0,
            refusing_since: str | None = None, last_refusal: str | None = None
            ) -> dict[str, Any]:
        return {"state": state, "since": since, "cause": f"{state} at {since}",
                "failed_deliveries": failed, "refused_deliveries": refused,
                "last_refusal": last_refusal, "refusing_since": refusing_since,
                "discarded_messages": 0, "last_discard": None, "discarding_since": None}

    out = merged([raw("up", "T1"), raw("down", "T3", 2), raw("down", "T2", 5),
                  raw("degraded", "T0", 0, 4, "T0", "first"),
                  raw("up", "T4", 0, 1, "T5", "latest")], {})

    assert (out["state"], out["since"], out["cause"]) == ("down", "T2", "down at T2")
    assert out["failed_deliveries"] == 7 and out["refused_deliveries"] == 5
    assert (out["refusing_since"], out["last_refusal"]) == ("T0", "latest")
    assert out["discarded_messages"] == 0
    episode = {"discards": "3", "last_discard": "O501 x", "since": "T9"}
    assert merged([raw("unknown", None)], episode)["discarded_messages"] == 3
