"""Several gateway processes on one PostgreSQL database and one Redis (README, "Scale
out"): who leads, and what the others must hear.

Shared work needs no leader: the streams' consumer groups give each entry to one process,
and every claim of a row is a conditional UPDATE (gateway.outbound.take). Work on a
timer, which every process would otherwise do at the same moment, is the leader's: the
sweeper and start-up recovery, sealing BEPS packages, the window's timetable and the day
end, the link session's login and probes, the exception and query deadline sweeps.

The leader is the process whose store connection holds a PostgreSQL session advisory
lock (`LEADER_LOCK`, one per schema). The lock lives in the database that is the truth, not beside it:
when the leader dies its session ends and the lock is free at once, with no lease to run
out and no clock to trust; while its session lives no other process can take it, so two
leaders never act together. The others try again every `LEAD_CHECK_S`. On SQLite the one
process that owns the file always leads, and nothing here runs.

Facts a process learns from an inbound message that every process must act on (the HVPS
status of a ccms.801, a reconciliation's answer that the leader waits for, the answers to
the leader's link login and probes: gateway.session) are told to the others over a Redis
pub/sub channel (`keys.CLUSTER`).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import keys

log = logging.getLogger("paygate.cluster")

# The leader's advisory lock: a class of our own and the schema's name, so that gateways
# of separate deployments in one database (one schema each) each have their own leader.
LEADER_LOCK = f"{0x7061}, hashtext(current_schema())"
LEAD_CHECK_S = 1.0        # how often a follower tries to take the lead
LISTEN_RETRY_S = 0.5      # pause before listening again after Redis went away

Listener = Callable[[dict[str, Any]], Any]
_GATEWAYS = itertools.count(1)  # gateways started in this process


class Cluster:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.single = gw.store.dialect == "sqlite"
        self.leading = self.single
        # Unique to this gateway, also when one process runs several (tests do).
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{next(_GATEWAYS)}"
        self.listeners: dict[str, Listener] = {}
        # Called once when this process takes the lead (after start-up).
        self.on_lead: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Try to lead, and listen to the other processes (PostgreSQL only)."""
        if self.single:
            return
        self.leading = await self._try_lead()
        log.info("event=cluster_joined instance=%s leading=%s", self.instance, self.leading)
        self._tasks = [asyncio.create_task(self._listen(), name="cluster-listen")]
        if not self.leading:
            self._tasks.append(asyncio.create_task(self._follow(), name="cluster-follow"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _try_lead(self) -> bool:
        # Session-level: the lock stays with the store's connection until it closes.
        return bool(await self.gw.store.run(lambda tx: tx.query_one(
            f"SELECT pg_try_advisory_lock({LEADER_LOCK})", ())[0]))

    async def _follow(self) -> None:
        while not self.leading:
            await asyncio.sleep(LEAD_CHECK_S)
            try:
                self.leading = await self._try_lead()
            except Exception as exc:  # the next check tries again; logged in full
                log.exception("event=lead_check_failed error=%r", exc)
        log.info("event=leader_taken_over instance=%s", self.instance)
        for hook in self.on_lead:
            await hook()

    # Telling the other processes

    def publish(self, kind: str, **data: Any) -> None:
        """Tell the other gateway processes (none on SQLite); never waits for them."""
        if self.single:
            return
        body = json.dumps({"from": self.instance, "kind": kind, **data}, default=str)
        self.gw.spawn(self._send(body))

    async def _send(self, body: str) -> None:
        try:
            await self.gw.redis.publish(keys.CLUSTER, body)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("event=cluster_publish_failed error=%r", exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.gw.redis.pubsub() as pubsub:
                    await pubsub.subscribe(keys.CLUSTER)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._dispatch(message["data"])
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("event=cluster_listen_interrupted error=%r", exc)
                await asyncio.sleep(LISTEN_RETRY_S)

    async def _dispatch(self, raw: str) -> None:
        """Give an event of another process to its listener; one that returns an
        awaitable (its work in the store) is awaited, so that events are taken in the
        order they were published."""
        event = json.loads(raw)
        if event.get("from") == self.instance:
            return
        listener = self.listeners.get(event.get("kind", ""))
        if listener is None:
            log.warning("event=cluster_event_unknown kind=%s", event.get("kind"))
            return
        try:
            taken = listener(event)
            if inspect.isawaitable(taken):
                await taken
        except Exception as exc:  # one bad event must not end the listener
            log.exception("event=cluster_event_failed kind=%s error=%r", event["kind"], exc)
