"""The link's state across several gateway processes (README, "Scale out").

Each process sees the link through its own deliveries and the inbound messages that
reach it (gateway.link): its deliveries fail or are refused on their own, and the NPC
hands its ccms.911 discard notices and ccms.990 acknowledgements to the bank's inbound
URLs in turn, so each process hears only part of them. Operators and the judgement of
the link's alerts need the cluster's picture, kept in Redis:

- every process writes its own state (gateway.link.LinkHealth.raw) under a key of its
  own every `PUBLISH_EVERY_S`, living `VIEW_TTL_S`: a process that stopped or died drops
  out of the picture once its key expires (a stopping one removes it at once);
- the discard episode is one for the cluster (`keys.LINK_DISCARDING`): every discard
  notice any process handles is counted into it, the one process whose count begins it
  raises the episode's one `link_discarding` alert (marked raised once written: a
  process that dies before writing it leaves a claim the next discard takes over after
  `ALERT_CLAIM_S`; while Redis cannot be reached, a process raises its own episode's
  alert instead), and an acknowledgement taken by
  any process of a message sent after the latest discarded one ends it (two scripts,
  each one atomic step in Redis).

The cluster's view (`view`) is the worst state any live process reports (down, then
degraded, then up, then unknown) since the earliest of those processes' episodes, with
counts summed and the shared discard episode; it names this process (`instance`) and
shows each process's own view (`processes`). With one process (SQLite) the view is that
process's, as before. While Redis cannot be read, or does not answer within
`PING_TIMEOUT_S` (as /health's ping), the view is this process's own, with
`cluster_error` saying why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from gateway import keys, logs
from gateway.link import (ALERT_LINK_DISCARDING, LINK_DEGRADED, LINK_DOWN, LINK_UP,
                          discarding_message, shown)
from gateway.redisstate import PING_TIMEOUT_S, REDIS_DOWN_ERRORS, Outage

log = logging.getLogger("paygate.link")

PUBLISH_EVERY_S = 1.0   # how often a process writes its own view
VIEW_TTL_S = 10         # a view not written again within this is a process gone
# Worst first: the cluster shows the worst state a live process reports.
_RANK = {LINK_DOWN: 3, LINK_DEGRADED: 2, LINK_UP: 1}

# The episode's `alerted`: ALERT_WRITTEN once its alert is in the database; before, the
# claim of the process raising it, "claim:<epoch seconds>". A claim older than
# ALERT_CLAIM_S (its process died, or its database write failed, between the claim and
# the alert) is taken over by the next discard any process counts.
ALERT_WRITTEN = "1"
ALERT_CLAIM_S = 30
# One discard counted into the cluster's episode: ARGV mesg_id, said, since, now (epoch
# seconds), ALERT_CLAIM_S. Returns [the claim this process holds to raise the episode's
# alert ('' when another raised it or holds a fresh claim), the episode's since]. A
# MesgID is later than another when its length differs or it sorts after
# (gateway.link._later).
_DISCARDED = """
redis.call('HINCRBY', KEYS[1], 'discards', 1)
redis.call('HSET', KEYS[1], 'last_discard', ARGV[2])
redis.call('HSETNX', KEYS[1], 'since', ARGV[3])
local last = redis.call('HGET', KEYS[1], 'last_id') or ''
if #ARGV[1] ~= #last or ARGV[1] > last then
  redis.call('HSET', KEYS[1], 'last_id', ARGV[1])
end
local alerted = redis.call('HGET', KEYS[1], 'alerted')
local claim = ''
if not alerted or (alerted ~= '""" + ALERT_WRITTEN + """' and
    tonumber(ARGV[4]) - tonumber(string.sub(alerted, 7)) >= tonumber(ARGV[5])) then
  claim = 'claim:' .. ARGV[4]
  redis.call('HSET', KEYS[1], 'alerted', claim)
end
return {claim, redis.call('HGET', KEYS[1], 'since')}
"""
# The episode's alert written under ARGV claim: marked so, when the episode still goes
# on and the claim is still this process's.
_ALERTED = """
if redis.call('HGET', KEYS[1], 'alerted') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'alerted', '""" + ALERT_WRITTEN + """')
  return 1
end
return 0
"""
# An acknowledgement of ARGV mesg_id: the episode ends when it is later than the last
# discarded; returns the ended episode's fields, or an empty list.
_ACKNOWLEDGED = """
local last = redis.call('HGET', KEYS[1], 'last_id')
if not last then return {} end
if #ARGV[1] ~= #last or ARGV[1] > last then
  local ended = redis.call('HGETALL', KEYS[1])
  redis.call('DEL', KEYS[1])
  return ended
end
return {}
"""


class LinkShare:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.discarding = False  # whether the cluster's discard episode went on when last read
        self._task: asyncio.Task | None = None
        self._outage = Outage(log, "link_share_failed")

    @property
    def active(self) -> bool:
        return not self.gw.cluster.single

    @property
    def _own_key(self) -> str:
        return keys.LINK_VIEW_PREFIX + self.gw.cluster.instance

    # This process's view, written for the others

    def start(self) -> None:
        if self.active:
            self._task = asyncio.create_task(self._publish_loop(), name="link-share")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.gw.redis.delete(self._own_key)
            await self.gw.redis.srem(keys.LINK_VIEWS, self.gw.cluster.instance)
        except REDIS_DOWN_ERRORS as exc:  # the key expires by itself
            log.warning("event=link_view_not_removed error=%r", exc)

    async def _publish_loop(self) -> None:
        while True:
            try:
                await self.publish()
                self._outage.recovered()
            except REDIS_DOWN_ERRORS as exc:
                self._outage.failed(exc)
            await asyncio.sleep(PUBLISH_EVERY_S)

    async def publish(self) -> None:
        body = json.dumps(self.gw.link.raw())
        async with self.gw.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._own_key, body, ex=VIEW_TTL_S)
            pipe.sadd(keys.LINK_VIEWS, self.gw.cluster.instance)
            pipe.exists(keys.LINK_DISCARDING)
            *_, discarding = await pipe.execute()
        self.discarding = bool(discarding)

    # The cluster's discard episode

    async def discarded(self, mesg_id: str, mesg_type: str, code: str, reason: str,
                        said: str, now_iso: str) -> None:
        """Count a discard (its handling committed here) into the cluster's episode; the
        discard that begins it raises the episode's one alert, marked raised in Redis
        only once written (a claim left unmarked is taken over, ALERT_CLAIM_S). While
        Redis cannot be reached, this process raises its own episode's alert instead
        (gateway.link.LinkHealth.alert_discarding), which the view, this process's own
        then, shows open."""
        try:
            claim, since = await self.gw.redis.eval(
                _DISCARDED, 1, keys.LINK_DISCARDING, mesg_id, said, now_iso,
                repr(self.gw.clock.now().timestamp()), ALERT_CLAIM_S)
        except REDIS_DOWN_ERRORS as exc:
            log.warning("event=link_discard_not_shared mesg_id=%s error=%r", mesg_id, exc)
            alerting = self.gw.link.alert_discarding(mesg_id, mesg_type, code, reason)
            if alerting is not None:
                await alerting
            return
        self.discarding = True
        if not claim:
            return
        log.warning("event=link_discarding code=%s reason=%s mesg_id=%s since=%s "
                    "cluster=true", code, logs.value(reason), mesg_id, since)
        await self.gw.store.run(lambda tx: self.gw.alert(
            tx, ALERT_LINK_DISCARDING, since=since, npc_code=code, reason=reason,
            mesg_id=mesg_id, mt=mesg_type, message=discarding_message(said)))
        if not await self.gw.redis.eval(_ALERTED, 1, keys.LINK_DISCARDING, claim):
            log.info("event=link_discarding_alert_unmarked since=%s claim=%s", since, claim)

    async def acknowledged(self, mesg_id: str) -> None:
        """An acknowledgement taken here: the cluster's episode ends when `mesg_id` was
        sent after the last discarded message."""
        ended = await self.gw.redis.eval(_ACKNOWLEDGED, 1, keys.LINK_DISCARDING, mesg_id)
        if not ended:
            return
        self.discarding = False
        fields = dict(zip(ended[::2], ended[1::2]))
        log.warning("event=link_discarding_over discarding_since=%s discarded_messages=%s "
                    "last_discard=%s cluster=true", fields.get("since", ""),
                    fields.get("discards", 0), logs.value(fields.get("last_discard", "")))

    # The view operators see and alerts are judged by

    async def view(self) -> dict[str, Any]:
        own = self.gw.link.raw()
        if not self.active:
            return shown(own)
        me = self.gw.cluster.instance
        try:
            # Bounded as /health's ping: a Redis that stalls must not hold /health and
            # the operators' pages for the client's socket timeout.
            async with asyncio.timeout(PING_TIMEOUT_S):
                others, episode = await self._read(me)
        except (*REDIS_DOWN_ERRORS, TimeoutError) as exc:
            return dict(shown(own), instance=me, processes={me: shown(own)},
                        cluster_error=f"{type(exc).__name__}: "
                        f"{str(exc) or f'no answer within {PING_TIMEOUT_S} s'}"[:200])
        raws = {me: own, **others}
        return dict(shown(merged(list(raws.values()), episode)), instance=me,
                    processes={name: shown(raw) for name, raw in sorted(raws.items())})

    async def _read(self, me: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        r = self.gw.redis
        names = sorted(n for n in await r.smembers(keys.LINK_VIEWS) if n != me)
        bodies = await r.mget([keys.LINK_VIEW_PREFIX + n for n in names]) if names else []
        gone = [n for n, body in zip(names, bodies) if body is None]
        if gone:
            await r.srem(keys.LINK_VIEWS, *gone)
        episode = await r.hgetall(keys.LINK_DISCARDING)
        self.discarding = bool(episode)
        return ({n: json.loads(body) for n, body in zip(names, bodies) if body is not None},
                episode)


def merged(raws: list[dict[str, Any]], episode: dict[str, str]) -> dict[str, Any]:
    """The processes' own states (gateway.link.LinkHealth.raw) as one, with the cluster's
    discard episode (`episode`, empty when none goes on)."""
    worst = max(raws, key=lambda r: (_RANK.get(r["state"], 0)))
    state = worst["state"]
    at_worst = sorted((r for r in raws if r["state"] == state),
                      key=lambda r: r["since"] or "")
    refusing = sorted((r for r in raws if r["refusing_since"]),
                      key=lambda r: r["refusing_since"])
    return {"state": state, "since": at_worst[0]["since"], "cause": at_worst[0]["cause"],
            "failed_deliveries": sum(r["failed_deliveries"] for r in raws),
            "refused_deliveries": sum(r["refused_deliveries"] for r in raws),
            "last_refusal": refusing[-1]["last_refusal"] if refusing else None,
            "refusing_since": refusing[0]["refusing_since"] if refusing else None,
            "discarded_messages": int(episode.get("discards", 0)),
            "last_discard": episode.get("last_discard") or None,
            "discarding_since": episode.get("since") or None}
