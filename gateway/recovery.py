"""Putting unfinished work back on the Redis streams from the database.

At start-up every outbox row not yet sent and every inbox row not yet processed is
added to its stream again (`recover`); while running, a sweeper does the same every few
seconds for rows left untouched (a stream entry lost with a Redis restart, a crash
between commit and XADD, a send postponed while the link was down). Consumers check the
database before acting, so an entry added twice does its work once. Work marked dead
without its dead letter (a stop between the commit and the letter) gets the letter
(`restore_letters`). The sweeper also drops the letters of work resolved since (sent or
done after a retry, cancelled by an operator, an inbound message processed) once they are
older than `dead_letter_retention_days` (`trim_letters`), and reads the dead-letter
stream incrementally (`LetterIndex`).
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
from gateway.ops.queues import COMPLETED_OUTBOX, redis_now_ms
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
# letters added since it last looked are read then, see LetterIndex), at work dead for
# longer than LETTER_AGE_S: a letter is written straight after the commit that marks its
# work dead. The same passes drop the letters of resolved work (trim_letters).
LETTER_EVERY_PASSES = 30
LETTER_AGE_S = 60.0
LETTER_PAGE = 1000
# Inbox states of an inbound message that is no longer failed: its letter is history.
RESOLVED_INBOX = ("processed", "refused")
IDS_PER_QUERY = 500
# How many of the rows put back a log line names by their ids (their count is given).
NAMED_MAX = 10


def named_work(tx: Any, out: list[tuple[int, str]], inbox: list[tuple[int]],
               reclaimed: list[tuple[int, str]]) -> str:
    """The ` key=value` fields of a line about work put back on the streams: the
    payments and message ids of the outbox rows (the first NAMED_MAX), of those of them
    taken back from a sender that is gone (`reclaimed`: sent again, though the NPC may
    have had them; the NPC acknowledges such a message as a duplicate) and of the inbox
    rows. A list cut short ends with `+N`, the rows left out."""
    again = sorted(i for i, _ in reclaimed)
    fields = _outbox_fields(tx, "", [i for i, _ in out])
    if again:
        fields["reclaimed"] = str(len(again))
        fields.update(_outbox_fields(tx, "reclaimed_", again))
    received = [i for (i,) in inbox[:NAMED_MAX]]
    if received:
        messages = tx.query("SELECT mesg_id FROM inbox WHERE id IN (%s) ORDER BY id"
                            % ",".join(str(int(i)) for i in received), ())
        fields["inbox_msg_ids"] = _listed([m for (m,) in messages],
                                          len(inbox) - len(received))
    return "".join(f" {key}={value}" for key, value in fields.items() if value)


def _outbox_fields(tx: Any, prefix: str, ids: list[int]) -> dict[str, str]:
    shown = ids[:NAMED_MAX]
    if not shown:
        return {}
    rows = tx.query("SELECT payment_id, mesg_id FROM outbox WHERE id IN (%s) ORDER BY id"
                    % ",".join(str(int(i)) for i in shown), ())
    return {f"{prefix}payments": _listed([p for p, _ in rows if p], len(ids) - len(shown)),
            f"{prefix}msg_ids": _listed([m for _, m in rows if m], len(ids) - len(shown))}


def _listed(values: list[Any], left: int) -> str:
    """`values` comma-separated, then `+N` for `left` more rows not shown."""
    text = ",".join(str(v) for v in values)
    if left <= 0:
        return text
    return f"{text},+{left}" if text else f"+{left}"


async def sweep_forever(gw: Any) -> None:
    outage = Outage(log, "sweep_postponed")  # one line per cause while Redis is away
    passes = 0
    letters = LetterIndex()  # the dead-letter stream as read so far, kept between passes
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
                    seconds=LETTER_AGE_S), letters)
                await trim_letters(gw, letters)
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

    def work(tx: Any) -> tuple[list, list, str]:
        out = outbound.orphaned(tx, now, lease_ended)
        if lanes_held:
            out = [(i, stream) for i, stream in out if stream not in keys.HVPS_LANES]
        reclaimed = list(out)
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
        named = named_work(tx, out + pending, inbox, reclaimed) if out or pending or inbox \
            else ""
        return out + pending, inbox, named
    out, inbox, named = await gw.store.run(work)
    if out or inbox:
        await _requeue(gw, out, inbox)
        log.info("event=swept outbox=%s inbox=%s%s", len(out), len(inbox), named)
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

    def work(tx: Any) -> tuple[list, list, str]:
        reclaimed = outbound.orphaned(tx, now, older_than)
        out = outbound.unfinished(tx)
        inbox = tx.query("SELECT id FROM inbox WHERE state = 'received' ORDER BY id", ())
        return out, inbox, named_work(tx, out, inbox, reclaimed)
    out, inbox, named = await gw.store.run(work)
    await _requeue(gw, out, inbox)
    restored = await restore_letters(gw, "at start-up")
    log.info("event=recovered outbox=%s inbox=%s letters_restored=%s%s", len(out),
             len(inbox), restored, named)


async def restore_letters(gw: Any, by: str, older_than: datetime | None = None,
                          letters: LetterIndex | None = None) -> int:
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
    which the NPC takes once. `letters` is the stream as a previous call read it (only
    what was added since is read); without it the stream is read whole."""
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
    letters = letters or LetterIndex()
    await letters.refresh(gw.redis)
    out = [i for i in out if str(i) not in letters.out]
    inbox = [i for i in inbox if str(i) not in letters.inbox]
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


class LetterIndex:
    """The outbox and inbox ids the dead-letter stream names, each with its letters' ids,
    kept up to date by reading only the letters added since the last read.

    Letters are also deleted: by an operator's retry (in any gateway process) and by
    `trim_letters`. Redis counts both: a stream's `entries-added` less its length is how
    many it ever lost. When that count is not the one this index last saw plus what it
    deleted itself, a letter it lists may be gone, and the stream is read whole again;
    so is it when Redis does not tell the count."""

    def __init__(self) -> None:
        self.out: dict[str, set[str]] = {}    # outbox id -> its letters
        self.inbox: dict[str, set[str]] = {}  # inbox id -> its letters
        self.last: str | None = None          # the newest letter read
        self.deleted: int | None = None       # letters the stream had lost by then
        self.reads = 0                        # letters read, for the tests and logs

    async def refresh(self, r: aioredis.Redis) -> None:
        """Read what was added to the stream since the last refresh (all of it when a
        letter may have gone meanwhile)."""
        info = await _dead_info(r)
        if info is None:  # no stream: no letters
            self.out, self.inbox, self.last, self.deleted = {}, {}, None, 0
            return
        deleted = info["entries-added"] - info["length"] \
            if isinstance(info.get("entries-added"), int) else None
        if deleted is None or deleted != self.deleted or self.last is None:
            self.out, self.inbox, self.last = {}, {}, None
        self.deleted = deleted
        start = "-" if self.last is None else f"({self.last}"
        while True:
            page = await r.xrange(keys.DEAD, min=start, count=LETTER_PAGE)
            for letter, fields in page:
                if "outbox" in fields:
                    self.out.setdefault(fields["outbox"], set()).add(letter)
                if "inbox" in fields:
                    self.inbox.setdefault(fields["inbox"], set()).add(letter)
            self.reads += len(page)
            if page:
                self.last = page[-1][0]
            if len(page) < LETTER_PAGE:
                return
            start = f"({page[-1][0]}"

    def forget(self, letters: set[str], deleted: int) -> None:
        """These letters were deleted from the stream here (`deleted` of them were there
        still)."""
        for named in (self.out, self.inbox):
            for work_id in list(named):
                named[work_id] -= letters
                if not named[work_id]:
                    del named[work_id]
        if self.deleted is not None:
            self.deleted += deleted


async def _dead_info(r: aioredis.Redis) -> dict[str, Any] | None:
    """XINFO STREAM of the dead-letter stream; None when it does not exist."""
    try:
        return await r.xinfo_stream(keys.DEAD)
    except aioredis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise


async def trim_letters(gw: Any, letters: LetterIndex) -> int:
    """Delete the dead letters nobody has to act on any more, older than the retention
    (`dead_letter_retention_days`, by the letter's own time, as `ops dead` shows its
    age); how many went. A letter's work is resolved when its outbox row has completed
    (sent or done after a retry, or its payment or package cancelled by an operator:
    COMPLETED_OUTBOX) or its inbound message is processed or refused after a retry. A
    letter naming work still dead or failed, work the database does not hold, or no
    outbox or inbox row at all is kept, whatever its age."""
    await letters.refresh(gw.redis)
    retention_ms = int(gw.settings.dead_letter_retention_days * 86_400_000)
    cutoff_ms = await redis_now_ms(gw.redis) - retention_ms
    old_out = _older(letters.out, cutoff_ms)
    old_in = _older(letters.inbox, cutoff_ms)
    if not old_out and not old_in:
        return 0

    def resolved(tx: Any) -> tuple[list[str], list[str]]:
        return (_resolved(tx, "outbox", COMPLETED_OUTBOX, list(old_out)),
                _resolved(tx, "inbox", RESOLVED_INBOX, list(old_in)))
    done_out, done_in = await gw.store.run(resolved)
    doomed = {letter for i in done_out for letter in old_out[i]} | {
        letter for i in done_in for letter in old_in[i]}
    # Work dead more than once has a letter for each time: those within the retention
    # stay until they are older.
    if not doomed:
        return 0
    ordered = sorted(doomed, key=_letter_key)
    removed = 0
    for start in range(0, len(ordered), LETTER_PAGE):
        removed += await gw.redis.xdel(keys.DEAD, *ordered[start:start + LETTER_PAGE])
    letters.forget(doomed, removed)
    log.info("event=dead_letters_trimmed count=%s outbox=%s inbox=%s retention_days=%s "
             "oldest=%s newest=%s", removed, len(done_out), len(done_in),
             gw.settings.dead_letter_retention_days, ordered[0], ordered[-1])
    return removed


def _older(named: dict[str, set[str]], cutoff_ms: int) -> dict[str, set[str]]:
    """The letters of each piece of work written before `cutoff_ms` (Redis time)."""
    out = {}
    for work_id, ids in named.items():
        old = {letter for letter in ids if _letter_key(letter)[0] <= cutoff_ms}
        if old and work_id.isascii() and work_id.isdigit():
            out[work_id] = old
    return out


def _letter_key(letter: str) -> tuple[int, int]:
    ms, _, seq = letter.partition("-")
    return int(ms), int(seq or 0)


def _resolved(tx: Any, table: str, states: tuple[str, ...], ids: list[str]) -> list[str]:
    """Which of these rows of `table` are in one of `states`."""
    found = []
    marks = ", ".join("?" * len(states))
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start:start + IDS_PER_QUERY]
        rows = tx.query(f"SELECT id FROM {table} WHERE id IN ({', '.join('?' * len(chunk))}) "
                        f"AND state IN ({marks})", (*(int(i) for i in chunk), *states))
        found += [str(i) for (i,) in rows]
    return found


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
