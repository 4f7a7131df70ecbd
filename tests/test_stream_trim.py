"""Acknowledged stream entries are trimmed; pending and undelivered ones never are."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from gateway import keys
from gateway.redisproc import EmbeddedRedis
from gateway.worker import ensure_groups, trim_handled

STREAM = "paygate:test:trim"


def test_only_acknowledged_entries_go(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()

    async def scenario() -> list[int]:
        r = aioredis.from_url(server.url, decode_responses=True)
        try:
            await ensure_groups(r, (STREAM,))
            ids = [await r.xadd(STREAM, {"n": str(n)}) for n in range(6)]
            got = await r.xreadgroup(keys.GROUP, "c1", {STREAM: ">"}, count=4)
            delivered = [entry_id for entry_id, _ in got[0][1]]
            await r.xack(STREAM, keys.GROUP, delivered[0], delivered[1], delivered[3])
            lengths = [await r.xlen(STREAM)]
            await trim_handled(r, (STREAM,))
            # ids[2] is pending (so it and all after stay), ids[4:] never delivered.
            kept = [entry_id for entry_id, _ in await r.xrange(STREAM)]
            lengths.append(len(kept))
            assert kept == ids[2:]
            await r.xack(STREAM, keys.GROUP, delivered[2])
            await trim_handled(r, (STREAM,))
            # Nothing pending: everything before the last delivered entry goes.
            kept = [entry_id for entry_id, _ in await r.xrange(STREAM)]
            assert kept == ids[3:]
            lengths.append(len(kept))
            await trim_handled(r, ("paygate:test:absent",))  # no stream: nothing to do
            return lengths
        finally:
            await r.aclose()
    try:
        assert asyncio.run(scenario()) == [6, 4, 3]
    finally:
        server.stop()


class _Raced:
    """A Redis whose last pending entry is acknowledged between the two reads."""

    def __init__(self) -> None:
        self.trimmed: list[str] = []

    async def exists(self, stream: str) -> int:
        return 1

    async def xinfo_groups(self, stream: str) -> list[dict]:
        return [{"name": keys.GROUP, "pending": 1, "last-delivered-id": "5-0"}]

    async def xpending(self, stream: str, group: str) -> dict:
        return {"pending": 0, "min": None, "max": None, "consumers": []}

    async def xtrim(self, stream: str, minid: str, approximate: bool) -> int:
        self.trimmed.append(minid)
        return 3


def test_an_acknowledgement_between_the_reads_is_no_error():
    r = _Raced()
    assert asyncio.run(trim_handled(r, (STREAM,))) == 3
    assert r.trimmed == ["5-0"]
