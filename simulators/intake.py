"""Group commit of the envelopes banks POST to the NPC's inbound URL.

A 2xx on the link means "taken" (CONTRACT.md §4), so the NPC answers only once what it
took is committed. Committing each envelope on its own costs a write of every page it
touched; under load many POSTs arrive in the same turn of the event loop, and they are
taken together instead: the requests that came in while the loop was busy wait for the
next turn, which processes them in arrival order in one transaction, each inside its
own savepoint, and answers every request after the one COMMIT. An envelope whose
processing fails is undone alone and its request gets the error; the others stand.

A batch holds at most `BATCH_MAX` envelopes, so one commit never waits for an unbounded
amount of work; whatever is left over goes in the next turn's batch.

The envelopes of one framed POST are submitted together (`submit_many`): the request
waits once for all of their outcomes, rather than for a task and a future of each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from simulators.logfmt import event
from simulators.store import Store

log = logging.getLogger("npc.intake")

# Large enough that a full round of every bank connection fits in one commit (the
# benchmark's gateway keeps 32 to 64 requests in flight), small enough that one batch
# takes tens of milliseconds, not seconds.
BATCH_MAX = 256


class _Post:
    """The envelopes of one framed POST in the intake: their outcomes, in order, and the
    future its request waits for until the last of them is known."""

    __slots__ = ("future", "left", "outcomes")

    def __init__(self, future: asyncio.Future[list[str | BaseException]], count: int) -> None:
        self.future = future
        self.outcomes: list[str | BaseException] = [""] * count
        self.left = count


class Intake:
    def __init__(self, store: Store, take: Callable[[bytes], str]) -> None:
        self.store = store
        self.take = take  # one envelope's processing (Node.take), inside the batch's unit
        # An envelope waiting for the next batch, with who waits for its outcome: the
        # future of a request that brought it alone, or its POST and its place there.
        self._waiting: list[tuple[bytes, asyncio.Future[str] | _Post, int]] = []
        self._scheduled = False

    async def submit(self, raw: bytes) -> str:
        """Take one envelope; returns once it is committed, with what became of it."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw, future, 0))
        self._schedule()
        return await future

    async def submit_many(self, raws: list[bytes]) -> list[str | BaseException]:
        """Take the envelopes of one POST; returns once all are committed, with what
        became of each, in order: an envelope whose processing failed has its exception
        for an outcome, and the others stand."""
        if not raws:
            return []
        post = _Post(asyncio.get_running_loop().create_future(), len(raws))
        self._waiting.extend((raw, post, place) for place, raw in enumerate(raws))
        self._schedule()
        return await post.future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        batch, self._waiting = self._waiting[:BATCH_MAX], self._waiting[BATCH_MAX:]
        self._scheduled = bool(self._waiting)
        if self._scheduled:
            asyncio.get_running_loop().call_soon(self._flush)
        outcomes: list[str | BaseException] = []
        try:
            with self.store.transaction():
                for raw, _, _ in batch:
                    outcomes.append(self._take_one(raw))
        except Exception as exc:  # the COMMIT itself failed: nothing of the batch stands
            outcomes = [exc] * len(batch)
        for (_, waiter, place), outcome in zip(batch, outcomes):
            if isinstance(waiter, _Post):
                waiter.outcomes[place] = outcome
                waiter.left -= 1
                if waiter.left:
                    continue
                future: asyncio.Future[Any] = waiter.future
            else:
                future = waiter
            if future.cancelled():
                # The request went away; an error then has nobody to answer, so it is
                # logged here rather than lost.
                for lost in (waiter.outcomes if isinstance(waiter, _Post) else [outcome]):
                    if isinstance(lost, BaseException):
                        event(log, "take_failed_unanswered", logging.ERROR,
                              error=type(lost).__name__, detail=str(lost)[:200])
                continue
            if isinstance(waiter, _Post):
                future.set_result(waiter.outcomes)
            elif isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _take_one(self, raw: bytes) -> str | BaseException:
        try:
            with self.store.savepoint():
                return self.take(raw)
        except Exception as exc:  # handed to this envelope's request, which answers 500
            return exc
