"""The dead-letter stream is bounded: letters of work resolved since (an outbox row sent
or done after a retry or a cancel, an inbound message processed or refused) go once older
than `dead_letter_retention_days`; letters of work still dead or failed, or naming no row
the gateway can look at, stay whatever their age. The sweeper reads only the letters
added since its last look, and the whole stream again when a letter went elsewhere."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from gateway import keys, recovery
from gateway.worker import write_letter
from tests.e2e_support import started

pytestmark = pytest.mark.e2e

OLD = "2026-12-01T09:00:00+08:00"


async def work_rows(gw: Any) -> dict[str, int]:
    """Outbox rows dead, done and sent, inbox rows failed and processed, by state."""
    def rows(tx: Any) -> dict[str, int]:
        ids = {}
        for state in ("dead", "done", "sent"):
            ids[state] = tx.query_one(
                "INSERT INTO outbox (payment_id, kind, stream, state, created_at, "
                "updated_at) VALUES (NULL, 'message', ?, ?, ?, ?) RETURNING id",
                (keys.HVPS_LANES[0], state, OLD, OLD))[0]
        for n, state in enumerate(("failed", "processed")):
            ids[state] = tx.query_one(
                "INSERT INTO inbox (sender, mesg_type, mesg_id, state, envelope, "
                "received_at, outcome) VALUES ('0000', 'hvps.111.001.01', ?, ?, ?, ?, ?) "
                "RETURNING id", (f"2026120788{n:06d}", state, b"", OLD,
                                 json.dumps({"error": "boom"})))[0]
        return ids
    return await gw.store.run(rows)


async def letter_of(gw: Any, name: str, work_id: int | str) -> str:
    stream = keys.INBOUND if name == "inbox" else keys.HVPS_LANES[0]
    return await write_letter(gw.redis, stream, "1-1", {name: str(work_id)}, "boom", "6", {})


async def remaining(gw: Any) -> dict[str, str]:
    """The letters in the stream: letter id -> what it names."""
    out = {}
    for letter, fields in await gw.redis.xrange(keys.DEAD):
        out[letter] = next(f"{k}={fields[k]}" for k in ("outbox", "inbox", "item")
                           if k in fields)
    return out


def test_letters_of_resolved_work_go_after_the_retention_and_the_rest_stay(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            ids = await work_rows(gw)
            for state in ("dead", "done", "sent"):
                await letter_of(gw, "outbox", ids[state])
            for state in ("failed", "processed"):
                await letter_of(gw, "inbox", ids[state])
            await letter_of(gw, "item", "P2026120700000001")  # names no row
            await letter_of(gw, "outbox", 999_999)  # a row the database does not hold
            index = recovery.LetterIndex()
            seen: dict[str, Any] = {"ids": ids}
            gw.settings.dead_letter_retention_days = 7
            seen["young"] = await recovery.trim_letters(gw, index)
            seen["reads_first"] = index.reads
            await asyncio.sleep(0.01)  # the letters' millisecond is past
            gw.settings.dead_letter_retention_days = 0
            seen["trimmed"] = await recovery.trim_letters(gw, index)
            seen["again"] = await recovery.trim_letters(gw, index)
            seen["reads_after_trim"] = index.reads
            seen["left"] = sorted((await remaining(gw)).values())
            return seen

    seen = asyncio.run(scenario())
    ids = seen["ids"]

    assert seen["young"] == 0
    assert seen["reads_first"] == 7
    assert seen["trimmed"] == 3 and seen["again"] == 0
    # Its own deletions counted, the index read nothing again.
    assert seen["reads_after_trim"] == 7
    assert seen["left"] == sorted([f"outbox={ids['dead']}", f"inbox={ids['failed']}",
                                   "item=P2026120700000001", "outbox=999999"])


def test_the_sweeper_reads_only_new_letters_and_all_again_after_a_deletion_elsewhere(
        tmp_path):
    """A letter deleted by another process (an operator's retry) may be the only letter of
    work that is dead again: the index reads the whole stream then, so that work gets
    its letter back."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            ids = await work_rows(gw)
            dead_letter = await letter_of(gw, "outbox", ids["dead"])
            await letter_of(gw, "inbox", ids["failed"])
            index = recovery.LetterIndex()
            later = gw.clock.now() + timedelta(seconds=1)
            seen: dict[str, Any] = {}
            seen["restored_first"] = await recovery.restore_letters(gw, "by the sweeper",
                                                                    later, index)
            seen["reads"] = [index.reads]
            await letter_of(gw, "outbox", ids["sent"])
            await index.refresh(gw.redis)
            seen["reads"].append(index.reads)
            await gw.redis.xdel(keys.DEAD, dead_letter)
            seen["restored"] = await recovery.restore_letters(gw, "by the sweeper", later,
                                                              index)
            seen["reads"].append(index.reads)
            seen["left"] = sorted((await remaining(gw)).values())
            seen["ids"] = ids
            return seen

    seen = asyncio.run(scenario())
    ids = seen["ids"]

    assert seen["restored_first"] == 0
    # 2 read whole, then the 1 new one, then the 2 left read whole after the deletion
    # (the restored letter is written after that read).
    assert seen["reads"] == [2, 3, 5]
    assert seen["restored"] == 1
    assert seen["left"] == sorted([f"outbox={ids['dead']}", f"inbox={ids['failed']}",
                                   f"outbox={ids['sent']}"])
