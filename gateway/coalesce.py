"""Stream appends and acknowledgements sent to Redis in pipelines, not one by one.

Under load many payments reach the same step at once: each wants an XADD once its
transaction has committed, and each consumer an XACK once its handler has committed.
Sent one by one, every call costs a round trip, a connection from the pool and its share
of the client's Python work. Here calls made while a pipeline is on its way wait for the
next one, so a burst goes out as a few pipelines (group commit, as the store does for
the database). A call returns only once Redis has answered it, and a failure reaches
exactly the callers whose commands it concerns: nothing is acknowledged or reported
appended that Redis did not take.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("paygate.coalesce")

PIPELINE_MAX = 2000  # commands in one pipeline; bounds the size of one Redis reply


class Coalescer:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._pending: list[tuple[str, tuple, asyncio.Future]] = []
        self._flushing = False
        self.pipelines = 0
        self.commands = 0

    async def xadd(self, stream: str, fields: dict[str, str]) -> str:
        """Append one entry; its id."""
        return await self._call("xadd", (stream, fields))

    async def xadd_many(self, entries: list[tuple[str, dict[str, str]]]) -> list[str]:
        if not entries:
            return []
        return list(await asyncio.gather(*(self._call("xadd", e) for e in entries)))

    async def xack(self, stream: str, group: str, entry_id: str) -> int:
        return await self._call("xack", (stream, group, entry_id))

    def _call(self, command: str, args: tuple) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((command, args, future))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._start_flush)
        return future

    def _start_flush(self) -> None:
        asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:PIPELINE_MAX]
                del self._pending[:PIPELINE_MAX]
                await self._send(batch)
        finally:
            self._flushing = False
            if self._pending:  # added while the last send was finishing
                self._flushing = True
                asyncio.get_running_loop().call_soon(self._start_flush)

    async def _send(self, batch: list[tuple[str, tuple, asyncio.Future]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for command, args, _ in batch:
            getattr(pipe, command)(*args)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller hears it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception)
                                         else ConnectionError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        self.pipelines += 1
        self.commands += len(batch)
        for (_, _, future), reply in zip(batch, replies):
            if future.done():  # the caller was cancelled; Redis did the work all the same
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
