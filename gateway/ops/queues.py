"""The Redis side of the console: depth and age of every work stream, dead letters, and
each stage's throughput.

For each stream and the gateway's consumer group: `length` (XLEN: entries kept; the
sweeper trims acknowledged ones every few seconds), `pending` (delivered to a consumer,
not yet acknowledged), `lag` (not yet delivered) and `oldest_age_s`, the age of the oldest entry that is pending or
not yet delivered. Ages come from stream entry ids, which Redis stamps with its own
clock, so they are measured against Redis' clock (TIME), not the business clock.
"""

from __future__ import annotations

import collections
from typing import Any

from gateway import keys

LAG_COUNT_MAX = 10_000   # counted by hand only on Redis before 7, which does not report lag
DEAD_LIST_MAX = 200
# Dead letters looked up in the database at once to tell outstanding from completed: each
# piece of work has one letter, so more than this many outstanding is an incident that
# the older letters' count still shows.
DEAD_SCAN_MAX = 1000
# Outbox states of work that has completed: a dead letter of such a row is history.
COMPLETED_OUTBOX = ("sent", "acked", "done")
RATE_WINDOW_S = 60.0     # throughput is averaged over the last minute
RATE_SAMPLES_MAX = 120


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


async def redis_now_ms(r: Any) -> int:
    seconds, micros = await r.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def stream_stats(r: Any) -> list[dict[str, Any]]:
    now_ms = await redis_now_ms(r)
    return [await _one_stream(r, stream, now_ms) for stream in keys.ALL_STREAMS]


async def _one_stream(r: Any, stream: str, now_ms: int) -> dict[str, Any]:
    row: dict[str, Any] = {"stream": stream, "length": 0, "pending": 0, "lag": 0,
                           "oldest_age_s": None}
    if not await r.exists(stream):
        return row
    row["length"] = await r.xlen(stream)
    group = next((g for g in await r.xinfo_groups(stream) if g["name"] == keys.GROUP), None)
    if group is None:
        row["lag"] = row["length"]
        oldest = await r.xrange(stream, count=1)
        row["oldest_age_s"] = _age_s(now_ms, [e[0] for e in oldest])
        return row
    last = group["last-delivered-id"]
    row["pending"] = group["pending"]
    undelivered = await r.xrange(stream, min=f"({last}", count=1)
    row["lag"] = group.get("lag")
    if row["lag"] is None:
        row["lag"] = len(await r.xrange(stream, min=f"({last}", count=LAG_COUNT_MAX))
    firsts = [e[0] for e in undelivered]
    if row["pending"]:
        summary = await r.xpending(stream, keys.GROUP)
        firsts.append(summary["min"])
    row["oldest_age_s"] = _age_s(now_ms, firsts)
    return row


def _age_s(now_ms: int, entry_ids: list[str]) -> float | None:
    if not entry_ids:
        return None
    return round(max(0, now_ms - min(_entry_ms(e) for e in entry_ids)) / 1000, 1)


async def dead_letters(r: Any, limit: int = 50, store: Any = None) -> dict[str, Any]:
    """The newest dead letters, at most `limit`, and how many there are (`total`).

    With the gateway's `store`, a letter whose outbox row has since completed (sent by a
    retry, or its payment cancelled) is no longer outstanding: it is left out of the
    list and of `total`, and counted in `completed`; each listed letter of an outbox
    row names the row's state and its payment. Only the newest DEAD_SCAN_MAX letters
    are looked up; older ones count as outstanding."""
    total = await r.xlen(keys.DEAD)
    count = DEAD_SCAN_MAX if store is not None else min(limit, DEAD_LIST_MAX)
    entries = await r.xrevrange(keys.DEAD, count=count)
    now_ms = await redis_now_ms(r)
    rows = [{"id": eid, "stream": f.get("stream", ""), "reason": f.get("reason", ""),
             "deliveries": f.get("deliveries", ""), "age_s": _age_s(now_ms, [eid]),
             "fields": {k: v for k, v in f.items()
                        if k not in ("stream", "entry", "reason", "deliveries", "payment")}}
            for eid, f in entries]
    completed = 0
    if store is not None:
        rows, completed = await _outstanding(store, rows)
    return {"total": total - completed, "completed": completed,
            "entries": rows[:min(limit, DEAD_LIST_MAX)]}


async def _outstanding(store: Any, rows: list[dict[str, Any]]
                       ) -> tuple[list[dict[str, Any]], int]:
    ids = sorted({int(row["fields"]["outbox"]) for row in rows
                  if str(row["fields"].get("outbox", "")).isascii()
                  and str(row["fields"].get("outbox", "")).isdigit()})
    if not ids:
        return rows, 0
    found = await store.run(lambda tx: tx.query(
        "SELECT id, state, payment_id FROM outbox WHERE id IN (%s)" % ",".join(
            str(i) for i in ids), ()))
    by_id = {str(i): (state, payment_id) for i, state, payment_id in found}
    kept = []
    for row in rows:
        outbox = by_id.get(str(row["fields"].get("outbox")))
        if outbox is not None and outbox[0] in COMPLETED_OUTBOX:
            continue
        if outbox is not None:
            row["outbox_state"], row["payment"] = outbox
        kept.append(row)
    return kept, len(rows) - len(kept)


class Rates:
    """Each stage's handled entries per second over the last `RATE_WINDOW_S`."""

    def __init__(self) -> None:
        self._samples: collections.deque = collections.deque(maxlen=RATE_SAMPLES_MAX)

    def stages(self, workers: list[Any], now_s: float) -> list[dict[str, Any]]:
        counts = {w.name: w.processed for w in workers}
        self._samples.append((now_s, counts))
        while self._samples and now_s - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        first_s, first = self._samples[0]
        span_s = now_s - first_s
        out = []
        for w in workers:
            done = counts[w.name] - first.get(w.name, 0)
            out.append({"stage": w.name, "streams": list(w.streams), "processed": w.processed,
                        "failed": w.failed,
                        "per_s": round(done / span_s, 2) if span_s > 0 else None})
        return out
