"""The cluster's link state (gateway.linkshare) when Redis fails it: a discard episode
raises its `link_discarding` alert while Redis cannot be reached (the process's own),
an alert claimed but never written is raised by a later discard, and the view answers
within PING_TIMEOUT_S from a Redis that stalls. One process's objects, Redis real (an
embedded server, or a loopback listener that never answers) or refusing every call."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.clock import SHANGHAI, ManualClock
from gateway.link import ALERT_LINK_DISCARDING, LinkHealth
from gateway.linkshare import LinkShare
from gateway.ops import attention
from gateway.redisproc import EmbeddedRedis
from gateway.redisstate import PING_TIMEOUT_S

MORNING = datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)
# How long a claim to raise the episode's alert is left to its holder (linkshare).
CLAIM_S = 30
SENT = [f"20261207{n:08d}" for n in range(1, 6)]


class RefusingRedis:
    """A Redis that cannot be reached: every call refused."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def refused(*_args: Any, **_kw: Any) -> Any:
            raise RedisConnectionError("Connection refused")
        return refused


def process(redis: Any, fail_writes: list[bool] | None = None) -> SimpleNamespace:
    """One gateway process's link objects: alerts kept in `alerts`, its spawned tasks in
    `tasks`; a write is refused while `fail_writes` holds True (its database down)."""
    gw = SimpleNamespace(clock=ManualClock(MORNING), redis=redis, alerts=[], tasks=[],
                         cluster=SimpleNamespace(single=False, instance="p-1"))
    gw.spawn = lambda coro: gw.tasks.append(asyncio.ensure_future(coro))

    async def run(fn: Callable[[Any], Any]) -> Any:
        if fail_writes and fail_writes[0]:
            raise ConnectionError("database down")
        return fn(None)
    gw.store = SimpleNamespace(run=run)
    gw.alert = lambda _tx, code, **detail: gw.alerts.append((code, detail))
    gw.link = LinkHealth(gw)
    gw.link_share = LinkShare(gw)
    return gw


async def discarded(gw: SimpleNamespace, mesg_id: str) -> list[BaseException | None]:
    gw.link.discarded(mesg_id, "hvps.111.001.01", "O501", "signature")
    outcomes = await asyncio.gather(*gw.tasks, return_exceptions=True)
    gw.tasks.clear()
    return outcomes


def test_a_discard_while_redis_is_down_raises_the_process_own_alert() -> None:
    async def scenario() -> tuple[Any, ...]:
        gw = process(RefusingRedis())
        outcomes = [*await discarded(gw, SENT[0]), *await discarded(gw, SENT[1])]
        return outcomes, gw.alerts, await gw.link_share.view()

    outcomes, alerts, view = asyncio.run(scenario())
    assert outcomes == [None, None]
    assert [code for code, _ in alerts] == [ALERT_LINK_DISCARDING]  # one per episode
    assert alerts[0][1]["since"] == MORNING.isoformat()
    assert view["cluster_error"].startswith("ConnectionError")
    # The list of alerts finds the episode, so the alert is shown open.
    assert attention.ongoing_episodes(view) == {ALERT_LINK_DISCARDING: {MORNING.isoformat()}}


def test_an_alert_claimed_but_never_written_is_raised_by_a_later_discard(
        tmp_path: Path) -> None:
    async def scenario(url: str) -> dict[str, Any]:
        client = aioredis.from_url(url, decode_responses=True)
        fail = [True]
        gw = process(client, fail)
        try:
            seen = {"first": await discarded(gw, SENT[0])}  # claimed, its write failed
            fail[0] = False
            await discarded(gw, SENT[1])     # the claim is fresh: its holder may write
            seen["fresh"] = list(gw.alerts)
            gw.clock.advance(CLAIM_S)
            await discarded(gw, SENT[2])     # a stale claim: taken over and written
            seen["taken_over"] = list(gw.alerts)
            gw.clock.advance(CLAIM_S)
            await discarded(gw, SENT[3])     # written: never raised again
            seen["after"] = list(gw.alerts)
            return seen
        finally:
            await client.aclose()

    redis = EmbeddedRedis(tmp_path / "redis").start()
    try:
        seen = asyncio.run(scenario(redis.url))
    finally:
        redis.stop()
    assert [type(e).__name__ for e in seen["first"]] == ["ConnectionError"]
    assert seen["fresh"] == []
    assert [code for code, _ in seen["taken_over"]] == [ALERT_LINK_DISCARDING]
    assert seen["taken_over"][0][1]["since"] == MORNING.isoformat()
    assert seen["after"] == seen["taken_over"]


def test_the_view_answers_within_the_bound_when_redis_stalls() -> None:
    async def scenario() -> tuple[dict[str, Any], float]:
        held: list[asyncio.StreamWriter] = []

        async def never_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            held.append(w)

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True,
                                   socket_timeout=5.0)
        gw = process(client)
        try:
            started = time.monotonic()
            view = await asyncio.wait_for(gw.link_share.view(), 4)
            return view, time.monotonic() - started
        finally:
            for w in held:
                w.close()
            server.close()
            await client.aclose()

    view, took = asyncio.run(scenario())
    assert took < PING_TIMEOUT_S + 1.5, took
    assert view["cluster_error"] == f"TimeoutError: no answer within {PING_TIMEOUT_S} s", view
    assert view["instance"] == "p-1" and view["state"] == "unknown"
