"""Small pieces of database work of one kind, merged into one piece of store work.

Under load many coroutines want the same small change at the same moment: an outbox
row marked sent, a webhook row claimed or marked done. Run one by one, each costs the
store a savepoint, a future and a closure, and the event loop a wake-up, for a single
short statement. A Batcher gathers the calls made in one turn of the event loop and
runs them as one piece of store work, which the store then commits with the rest of its
group. Each caller gets its own result once that work has committed, or the error that
undid it: nothing is reported done that the database did not commit.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Generic, TypeVar

Key = TypeVar("Key")
Result = TypeVar("Result")

# Calls merged into one piece of work; bounds one statement list and one savepoint's size.
BATCH_MAX = 256


class Batcher(Generic[Key, Result]):
    """`await batcher(key)`: `work(tx, keys)` for the keys of one loop turn, whose
    results come back in the keys' order."""

    def __init__(self, store: Any, work: Callable[[Any, list[Key]], list[Result]]) -> None:
        self.store = store
        self.work = work
        self._pending: list[tuple[Key, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0

    async def __call__(self, key: Key) -> Result:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((key, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        if not batch:
            return
        keys = [key for key, _ in batch]
        task = asyncio.get_running_loop().create_task(
            self.store.run(lambda tx: self.work(tx, keys)))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._settle(batch, done))
        self.batches += 1

    def _settle(self, batch: list[tuple[Key, asyncio.Future]], done: asyncio.Task) -> None:
        self._tasks.discard(done)
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        results = None if error is not None else done.result()
        assert results is None or len(results) == len(batch), \
            f"a batch of {len(batch)} calls gave {len(results or [])} results"
        for i, (_, future) in enumerate(batch):
            if future.done():  # the caller was cancelled; the work was done all the same
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(results[i])
