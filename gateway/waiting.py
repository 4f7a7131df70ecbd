"""Waiting for an asyncio event with a time limit, without losing a cancellation.

On Python 3.11, `asyncio.wait_for` can swallow a cancellation that arrives in the same
turn of the loop as the awaited event: the waiting task then goes on as if nothing had
happened, and a loop built on it can never be stopped (a gateway stop would wait for it
for ever). `asyncio.timeout` counts cancellations properly, so the waits of the
gateway's long-running loops use it.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` has passed; True if it was set."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
