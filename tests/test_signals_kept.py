"""A run of the gateway's or the simulator's loop leaves the process's signal handlers as
it found them (gateway.signals.kept), even when the loop handled SIGINT itself."""

from __future__ import annotations

import asyncio
import signal

import uvloop

from gateway import signals


async def _handled_inside() -> None:
    with signals.kept(signal.SIGINT, signal.SIGTERM):
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: None)


def test_an_ignored_sigint_stays_ignored_after_a_loop_that_handled_it() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        asyncio.run(_handled_inside())
        after_asyncio = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        uvloop.run(_handled_inside())
        after_uvloop = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])

    assert after_asyncio == (signal.SIG_IGN, signal.SIG_DFL)
    assert after_uvloop == (signal.SIG_IGN, signal.SIG_DFL)
