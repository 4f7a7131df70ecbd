"""Putting unfinished work back on the Redis streams from the database.

At start-up every outbox row not yet sent and every inbox row not yet processed is
added to its stream again (`recover`); while running, a sweeper does the same every few
seconds for rows left untouched (a stream entry lost with a Redis restart, a crash
between commit and XADD, a send postponed while the link was down). Consumers check the
database before acting, so an entry added twice does its work once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis

from gateway import keys, outbound
from gateway.link import LINK_DOWN
from gateway.redisstate import Outage
from gateway.worker import trim_handled

log = logging.getLogger("paygate.recovery")

SWEEP_EVERY_S = 2.0
PAGE_ROWS = 1000  # rows put back on the streams per piece of work
# The streams whose entries are deliveries to the NPC (held while the link is down).
_TO_NPC = ", ".join(f"'{s}'" for s in keys.TO_NPC)
_HVPS_LANES = ", ".join(f"'{s}'" for s in keys.HVPS_LANES)
# Work untouched for this long is put back on its stream (a lost XADD, a flushed Redis).
SWEEP_AGE_S = 5.0


async def sweep_forever(gw: Any) -> None:
    outage = Outage(log, "sweep_postponed")  # one line per cause while Redis is away
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        if not gw.leading:  # one sweeper for all gateway processes (gateway.cluster)
            continue
        try:
            await sweep(gw)
            await trim(gw)
            outage.recovered()
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            outage.failed(exc)
        except Exception as exc:  # never the end of the sweeper: the next pass tries again
            log.exception("event=sweep_failed error=%r", exc)


async def trim(gw: Any) -> int:
    """Drop the stream entries every stage has acknowledged (gateway.worker.trim_handled)."""
    streams = tuple(sorted({s for worker in gw.workers for s in worker.streams}))
    removed = await trim_handled(gw.redis, streams)
    if removed:
        log.debug("event=streams_trimmed entries=%s", removed)
    return removed


async def sweep(gw: Any) -> int:
    """Put back on the streams what the database says is unfinished and stale."""
    now = gw.clock.now()
    stale = (now - timedelta(seconds=SWEEP_AGE_S)).isoformat()
    lease_ended = now - timedelta(seconds=outbound.CLAIM_LEASE_S)

    held = gw.link.state == LINK_DOWN
    # HVPS sending held (gateway.status_hold): the lanes' rows wait in the outbox.
    lanes_held = getattr(gw, "hvps_hold", None) is not None
    skip = f" AND stream NOT IN ({_HVPS_LANES})" if lanes_held else ""

    def work(tx: Any) -> tuple[list, list]:
        out = outbound.orphaned(tx, now, lease_ended)
        if lanes_held:
            out = [(i, stream) for i, stream in out if stream not in keys.HVPS_LANES]
        if held:
            # The link is down: its deliveries wait in the outbox, and one row (the
            # oldest) goes back per pass for the one attempt allowed (gateway.link).
            pending = tx.query(f"SELECT id, stream FROM outbox WHERE state = 'pending' AND "
                               f"updated_at < ? AND stream NOT IN ({_TO_NPC}) "
                               f"ORDER BY id LIMIT 1000", (stale,))
            pending += tx.query(f"SELECT id, stream FROM outbox WHERE state = 'pending' "
                                f"AND updated_at < ? AND stream IN ({_TO_NPC}){skip} "
                                f"ORDER BY id LIMIT 1", (stale,))
        else:
            pending = tx.query("SELECT id, stream FROM outbox WHERE state = 'pending' AND "
                               f"updated_at < ?{skip} ORDER BY id LIMIT 1000", (stale,))
        inbox = tx.query("SELECT id FROM inbox WHERE state = 'received' AND "
                         "received_at < ? ORDER BY id LIMIT 1000", (stale,))
        if pending:
            tx.execute("UPDATE outbox SET updated_at = ? WHERE id IN (%s)" % ",".join(
                str(int(i)) for i, _ in pending), (now.isoformat(),))
        return out + pending, inbox
    out, inbox = await gw.store.run(work)
    if out or inbox:
        await _requeue(gw, out, inbox)
        log.info("event=swept outbox=%s inbox=%s", len(out), len(inbox))
    if gw.hvps_open:  # nothing waits for a window that is open
        await gw.release_waiting()
    return len(out) + len(inbox)


async def resume(gw: Any, streams: tuple[str, ...] = keys.TO_NPC) -> int:
    """The link answers again (or HVPS sending is no longer held, `streams` its lanes):
    every row held for the NPC meanwhile goes back on its stream now, oldest first, a
    page at a time (each on its own priority lane)."""
    after, count = 0, 0
    named = ", ".join(f"'{s}'" for s in streams)
    while True:
        now = gw.clock.now().isoformat()

        def work(tx: Any) -> list:
            rows = tx.query(f"SELECT id, stream FROM outbox WHERE state = 'pending' AND "
                            f"stream IN ({named}) AND id > ? ORDER BY id LIMIT {PAGE_ROWS}",
                            (after,))
            if rows:
                tx.execute("UPDATE outbox SET updated_at = ? WHERE id IN (%s)" % ",".join(
                    str(int(i)) for i, _ in rows), (now,))
            return rows
        rows = await gw.store.run(work)
        if not rows:
            break
        await _requeue(gw, rows, [])
        after, count = rows[-1][0], count + len(rows)
    log.info("event=held_deliveries_resumed outbox=%s", count)
    return count


async def recover(gw: Any) -> None:
    """Put every unfinished outbox and inbox row back on its stream. Claims of senders
    that are gone become pending first: on SQLite, where this process is the only one,
    every claim; on PostgreSQL those of ended sessions and those past their lease."""
    now = gw.clock.now()
    older_than = None if gw.store.dialect == "sqlite" else \
        now - timedelta(seconds=outbound.CLAIM_LEASE_S)

    def work(tx: Any) -> tuple[list, list]:
        outbound.orphaned(tx, now, older_than)
        out = outbound.unfinished(tx)
        inbox = tx.query("SELECT id FROM inbox WHERE state = 'received' ORDER BY id", ())
        return out, inbox
    out, inbox = await gw.store.run(work)
    await _requeue(gw, out, inbox)
    log.info("event=recovered outbox=%s inbox=%s", len(out), len(inbox))


async def _requeue(gw: Any, out: list, inbox: list) -> None:
    entries = [(stream, {"outbox": str(outbox_id)}) for outbox_id, stream in out]
    entries += [(keys.INBOUND, {"inbox": str(inbox_id)}) for (inbox_id,) in inbox]
    await add_entries(gw, entries)


async def add_entries(gw: Any, entries: list[tuple[str, dict[str, str]]]) -> None:
    if not entries:
        return
    await gw.streams.xadd_many(entries)
