"""`serve --simulate` on a virtual clock warns when the simulated NPC's clock is moved
away from the gateway's (POST /sim/clock moves the NPC's alone): one line per parting,
naming both instants and the difference; agreeing clocks say nothing."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import sim_clock_check
from gateway.clock import SHANGHAI, ManualClock

START = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)


class FakeHarness:
    """The gateway's clock, and a simulator answering /sim/stats with the NPC's now
    ahead of it by each of `ahead_s` in turn; it stops the watch after the last."""

    def __init__(self, ahead_s: list[float]) -> None:
        self.gateway = SimpleNamespace(clock=ManualClock(START))
        self.ahead_s = list(ahead_s)

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        assert (method, path) == ("GET", "/sim/stats")
        if not self.ahead_s:
            raise asyncio.CancelledError
        self.gateway.clock.advance(60)
        npc_now = self.gateway.clock.now() + timedelta(seconds=self.ahead_s.pop(0))
        return {"now": npc_now.isoformat()}


def _watch(ahead_s: list[float], caplog: pytest.LogCaptureFixture,
           monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(sim_clock_check, "LOOK_EVERY_S", 0)
    caplog.set_level(logging.INFO, logger="paygate.sim_clock")
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(sim_clock_check.watch(FakeHarness(ahead_s)))
    return [r.getMessage() for r in caplog.records if r.name == "paygate.sim_clock"]


def test_clocks_that_read_alike_say_nothing(caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert _watch([0, 30, -30], caplog, monkeypatch) == []


def test_a_moved_npc_clock_is_named_once_then_its_agreeing_again(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _watch([0, 7200, 7200, 0], caplog, monkeypatch)

    assert len(lines) == 2
    assert lines[0].startswith("event=simulated_npc_clock_differs npc_now="
                               "2026-12-07T11:02:00+08:00 gateway_now=2026-12-07T09:02:00"
                               "+08:00 npc_ahead_s=7200 message=")
    assert lines[1].startswith("event=simulated_npc_clock_agrees")
