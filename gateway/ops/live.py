"""Live updates: every open page hears at once that something changed.

A `Hub` counts changes. An action in this process bumps the count at once and
publishes on the Redis channel `keys.EVENTS`, so that pages served by other gateway
processes (which listen on that channel) refresh too. Pages also refresh on their own
every `PUSH_EVERY_S`, which is how changes made by the pipeline (a payment settled, a
message dead-lettered) reach them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from redis.exceptions import RedisError

from gateway import keys
from gateway.waiting import wait_set

log = logging.getLogger("paygate.ops")

PUSH_EVERY_S = 1.0


class Hub:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.version = 0
        self.stopping = False
        self.origin = secrets.token_hex(8)  # tells our own publications from others'
        self._event = asyncio.Event()
        self._listener: asyncio.Task | None = None

    async def changed(self) -> None:
        """Something changed here: wake local pages and tell the other processes."""
        self._bump()
        try:
            await self.gw.redis.publish(keys.EVENTS, self.origin)
        except RedisError as exc:
            # The change itself is committed; other processes' pages then catch up
            # within PUSH_EVERY_S, so a failed notice is worth a warning, not a failure.
            log.warning("event=ops_publish_failed error=%r", exc)

    def _bump(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen_version: int, timeout_s: float = PUSH_EVERY_S) -> None:
        """Return after a change newer than `seen_version`, or after `timeout_s`."""
        if self.version != seen_version or self.stopping:
            return
        self.listen()
        await wait_set(self._event, timeout_s)

    def listen(self) -> None:
        """Start listening to other processes' changes (once, on first use)."""
        if self._listener is not None and self._listener.done():
            self._report(self._listener)
            self._listener = None
        if self._listener is None and not self.stopping:
            self._listener = asyncio.create_task(self._listen(), name="ops_hub")

    @staticmethod
    def _report(task: asyncio.Task) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            # Pages still refresh every PUSH_EVERY_S without the listener; it restarts
            # on the next wait.
            log.warning("event=ops_listener_failed error=%r", error)

    async def _listen(self) -> None:
        pubsub = self.gw.redis.pubsub()
        await pubsub.subscribe(keys.EVENTS)
        try:
            async for message in pubsub.listen():
                if message.get("type") == "message" and message.get("data") != self.origin:
                    self._bump()
        finally:
            await pubsub.aclose()

    async def stop(self) -> None:
        """End every page's stream and the listener (on shutdown)."""
        self.stopping = True
        self._bump()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait([self._listener])
            self._report(self._listener)
            self._listener = None
