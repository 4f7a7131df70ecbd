"""A Redis serves the gateways of one database (gateway.deployment): a gateway given the
Redis of gateways on another database is refused at start, naming both databases, while
a gateway started again on its own database, and a second gateway on the same
PostgreSQL database, are taken."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from gateway import deployment
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.errors import PaygateError
from gateway.redisproc import EmbeddedRedis, free_port
from ledger.fixtures import postgres_schema_or_skip

MORNING = datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)


def gateway(folder: Path, redis_url: str, database_url: str = "") -> Gateway:
    # The NPC's URL is a closed loopback port: the leader's login just fails meanwhile.
    return Gateway(Settings(data_dir=str(folder), port=0, database_url=database_url,
                            redis_url=redis_url,
                            npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                   clock=ManualClock(MORNING))


async def started_and_stopped(gw: Gateway) -> str:
    await gw.start(serve_http=False)
    await gw.stop()
    return gw.database_id


@pytest.fixture
def redis_url(tmp_path: Path):
    redis = EmbeddedRedis(tmp_path / "redis").start()
    try:
        yield redis.url
    finally:
        redis.stop()


def test_a_redis_of_another_database_is_refused_and_a_restart_is_taken(
        tmp_path: Path, redis_url: str) -> None:
    async def scenario() -> tuple[str, str, str, PaygateError]:
        first = await started_and_stopped(gateway(tmp_path / "a", redis_url))
        again = await started_and_stopped(gateway(tmp_path / "a", redis_url))
        other = gateway(tmp_path / "b", redis_url)
        with pytest.raises(PaygateError) as refused:
            await other.start(serve_http=False)
        return first, again, other.database_id, refused.value

    first, again, theirs, refused = asyncio.run(scenario())

    assert first == again and len(first) == 32
    [problem] = refused.problems
    assert (problem.code, problem.path, problem.value) == (
        "redis_used_by_other_database", "redis_url", redis_url)
    assert first != theirs
    assert f"(id {first})" in problem.message and f"(id {theirs})" in problem.message


def test_an_unreadable_record_in_redis_is_refused_too(tmp_path: Path,
                                                       redis_url: str) -> None:
    async def scenario() -> PaygateError:
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_url, decode_responses=True)
        await client.set(deployment.DATABASE_KEY, "not json")
        await client.aclose()
        with pytest.raises(PaygateError) as refused:
            await gateway(tmp_path / "a", redis_url).start(serve_http=False)
        return refused.value

    assert [p.code for p in asyncio.run(scenario()).problems] == [
        "redis_used_by_other_database"]


@pytest.mark.postgres
def test_two_gateways_on_one_postgresql_database_share_its_redis(
        tmp_path: Path, redis_url: str) -> None:
    async def scenario(url: str) -> tuple[str, str]:
        a = gateway(tmp_path / "a", redis_url, url)
        await a.start(serve_http=False)
        try:
            return a.database_id, await started_and_stopped(
                gateway(tmp_path / "b", redis_url, url))
        finally:
            await a.stop()

    with postgres_schema_or_skip("redis_one_db") as url:
        a, b = asyncio.run(scenario(url))

    assert a == b
