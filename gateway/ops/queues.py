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


async def dead_letters(r: Any, limit: int = 50) -> dict[str, Any]:
    total = await r.xlen(keys.DEAD)
    entries = await r.xrevrange(keys.DEAD, count=min(limit, DEAD_LIST_MAX))
    now_ms = await redis_now_ms(r)
    rows = [{"id": eid, "stream": f.get("stream", ""), "reason": f.get("reason", ""),
             "deliveries": f.get("deliveries", ""), "age_s": _age_s(now_ms, [eid]),
             "fields": {k: v for k, v in f.items()
                        if k not in ("stream", "entry", "reason", "deliveries")}}
            for eid, f in entries]
    return {"total": total, "entries": rows}


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
