"""Putting unfinished work back on the Redis streams from the database.

At start-up every outbox row not yet sent and every inbox row not yet processed is
added to its stream again (`recover`); while running, a sweeper does the same every few
seconds for rows left untouched (a stream entry lost with a Redis restart, a crash
between commit and XADD, a send postponed while the link was down). Consumers check the
database before acting, so an entry added twice does its work once. Work marked dead
without its dead letter (a stop between the commit and the letter) gets the letter
(`restore_letters`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from gateway import keys, logs, outbound
from gateway.link import LINK_DOWN
from gateway.redisstate import Outage
from gateway.worker import trim_handled, write_letter

log = logging.getLogger("paygate.recovery")

SWEEP_EVERY_S = 2.0
PAGE_ROWS = 1000  # rows put back on the streams per piece of work
# The streams whose entries are deliveries to the NPC (held while the link is down).
_TO_NPC = ", ".join(f"'{s}'" for s in keys.TO_NPC)
_HVPS_LANES = ", ".join(f"'{s}'" for s in keys.HVPS_LANES)
# Work untouched for this long is put back on its stream (a lost XADD, a flushed Redis).
SWEEP_AGE_S = 5.0
# The sweeper looks for work marked dead without its letter every this many passes (the
# dead-letter stream is read whole then), at work dead for longer than LETTER_AGE_S: a
# letter is written straight after the commit that marks its work dead.
LETTER_EVERY_PASSES = 30
LETTER_AGE_S = 60.0
LETTER_PAGE = 1000


async def sweep_forever(gw: Any) -> None:
    outage = Outage(log, "sweep_postponed")  # one line per cause while Redis is away
    passes = 0
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        if not gw.leading:  # one sweeper for all gateway processes (gateway.cluster)
            continue
        try:
            await sweep(gw)
            await trim(gw)
            passes += 1
            if passes % LETTER_EVERY_PASSES == 0:
                await restore_letters(gw, "by the sweeper", gw.clock.now() - timedelta(
                    seconds=LETTER_AGE_S))
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
    restored = await restore_letters(gw, "at start-up")
    log.info("event=recovered outbox=%s inbox=%s letters_restored=%s", len(out), len(inbox),
             restored)


async def restore_letters(gw: Any, by: str, older_than: datetime | None = None) -> int:
    """Write the dead letter of each piece of work marked dead without one; how many.

    Work is marked dead (an outbox row `dead`, its payment held; an inbox row `failed`)
    in one commit and its letter written to Redis after it (gateway.worker.dead_letter):
    the two cannot be one transaction. A gateway that stops in between, or a Redis that
    goes away then, leaves the work where neither the sweeper nor recovery puts it back,
    and no letter for an operator to retry; only a cancel would end it. Such work gets
    its letter here, at start-up (`by` says when: "at start-up"), and from the sweeper for
    outbox rows dead since before `older_than`. The letters are read first and the
    work again after, so that work revived by a retry meanwhile is left alone. A letter
    only lets an operator retry: the retry sends the stored bytes under the same ids,
    which the NPC takes once."""
    since = None if older_than is None else older_than.isoformat()

    def dead_work(tx: Any) -> tuple[list, list]:
        if since is None:
            out = tx.query("SELECT id FROM outbox WHERE state = 'dead' ORDER BY id", ())
            inbox = tx.query("SELECT id FROM inbox WHERE state = 'failed' ORDER BY id", ())
        else:
            out = tx.query("SELECT id FROM outbox WHERE state = 'dead' AND updated_at < ? "
                           "ORDER BY id", (since,))
            inbox = []
        return [i for (i,) in out], [i for (i,) in inbox]
    out, inbox = await gw.store.run(dead_work)
    if not out and not inbox:
        return 0
    lettered_out, lettered_in = await _lettered(gw.redis)
    out = [i for i in out if str(i) not in lettered_out]
    inbox = [i for i in inbox if str(i) not in lettered_in]
    if not out and not inbox:
        return 0
    letters = await gw.store.run(lambda tx: _letters_owed(gw, tx, out, inbox))
    for stream, fields, reason, deliveries, named in letters:
        why = f"{reason}; letter written {by}: the work was marked dead without one"
        letter = await write_letter(gw.redis, stream, "", fields, why, deliveries, named)
        said = "".join(f" {k}={v}" for k, v in {**fields, **named}.items())
        log.warning("event=dead_letter_restored by=%s letter=%s stream=%s%s reason=%s",
                    logs.value(by), letter, stream, said, logs.value(reason[:200]))
    return len(letters)


async def _lettered(r: aioredis.Redis) -> tuple[set[str], set[str]]:
    """The outbox and inbox ids the dead-letter stream names (it is never trimmed)."""
    out: set[str] = set()
    inbox: set[str] = set()
    start = "-"
    while True:
        page = await r.xrange(keys.DEAD, min=start, count=LETTER_PAGE)
        for _, fields in page:
            if "outbox" in fields:
                out.add(fields["outbox"])
            if "inbox" in fields:
                inbox.add(fields["inbox"])
        if len(page) < LETTER_PAGE:
            return out, inbox
        start = f"({page[-1][0]}"


def _letters_owed(gw: Any, tx: Any, out: list[int], inbox: list[int]) -> list[tuple]:
    """(stream, fields, reason, deliveries, named) of each letter still owed: the work
    read again, still dead."""
    letters = []
    for outbox_id in out:
        row = tx.query_one("SELECT stream, kind, payment_id, attempts FROM outbox WHERE "
                           "id = ? AND state = 'dead'", (outbox_id,))
        if row is None:
            continue
        stream, kind, payment_id, attempts = row
        named = {"outbox": str(outbox_id)}
        reason = "dead"
        if payment_id is not None:
            named["payment"] = str(payment_id)
            held = tx.query_one("SELECT reason FROM payments WHERE id = ?", (payment_id,))
            reason = (held[0] if held else None) or reason
        names = gw.outbox_letter_names.get(kind)
        if names is not None:  # a BEPS package: its id
            named.update(names(tx, outbox_id))
        letters.append((stream, {"outbox": str(outbox_id)}, reason, str(attempts), named))
    for inbox_id in inbox:
        row = tx.query_one("SELECT outcome FROM inbox WHERE id = ? AND state = 'failed'",
                           (inbox_id,))
        if row is None:
            continue
        error = (json.loads(row[0]) if row[0] else {}).get("error") or "failed"
        letters.append((keys.INBOUND, {"inbox": str(inbox_id)}, error, "", {}))
    return letters


async def _requeue(gw: Any, out: list, inbox: list) -> None:
    entries = [(stream, {"outbox": str(outbox_id)}) for outbox_id, stream in out]
    entries += [(keys.INBOUND, {"inbox": str(inbox_id)}) for (inbox_id,) in inbox]
    await add_entries(gw, entries)


async def add_entries(gw: Any, entries: list[tuple[str, dict[str, str]]]) -> None:
    if not entries:
        return
    await gw.streams.xadd_many(entries)
