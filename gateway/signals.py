"""The process's signal handlers kept across a run of an event loop.

A loop that handled SIGINT (`loop.add_signal_handler`) leaves Python's own handler behind
when it closes, whatever was there before: a process started with SIGINT ignored (in the
background of a non-interactive shell) would take Ctrl-C again afterwards, and a caller
running the gateway or the simulator in its own process (the tests) would find its
handlers changed. `kept` puts back what was there.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def kept(*signums: signal.Signals) -> Iterator[None]:
    """The handlers of `signums` as they were before the block, put back after it: the
    block's running loop (if any) gives up its own handlers of them first, so that its
    closing later changes nothing."""
    before = [(signum, signal.getsignal(signum)) for signum in signums]
    try:
        yield
    finally:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for signum, handler in before:
            if loop is not None:
                loop.remove_signal_handler(signum)
            if handler is not None:  # None: set from outside Python, left alone
                signal.signal(signum, handler)
