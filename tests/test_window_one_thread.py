"""The HVPS window is changed on the store's thread alone (gateway.windows.WindowState):
a ccms.801's work that moved it and is then undone sets back its own change, and a
change another part of the gateway makes meanwhile (the timetable's tick, another
process's notice, the status operators confirmed) waits for that work and is made on
the window as it is after it, never lost under the undo."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from gateway.ops.testing import OpsRig
from tests.test_hvps_close_lanes import OPEN, opened

DAY = OPEN.date().isoformat()
NOTICE_AT = OPEN.replace(hour=16, minute=59)  # HVPS open (10), its 17:00 change ahead
TICK_AT = OPEN.replace(hour=17, minute=1)  # the timetable's clearing window (30)
WAIT_S = 10.0


async def tick(rig: OpsRig) -> None:
    rig.clock.set(TICK_AT)
    await rig.gw.window_tick()


async def peer_notice(rig: OpsRig) -> None:
    """Another process took the NPC's 10 -> 30 and tells this one."""
    await rig.gw._on_peer_hvps_status({"orig": "10", "cur": "30", "date": DAY,
                                       "at": TICK_AT.isoformat()})


async def confirmed_by_operators(rig: OpsRig) -> None:
    """Operators confirmed 30, after the notice, in another process."""
    await rig.gw._take_confirmed_status({"seq": 1, "status": "30", "work_date": DAY,
                                         "at": TICK_AT.isoformat(), "since": DAY})


def _undone_around(tmp_path: Any, change: Callable[[OpsRig], Any]) -> dict[str, Any]:
    """HVPS open at 16:59; a ccms.801's work moves the window to 20 and, while it is
    still open, `change` is made; then the work fails and is undone."""
    released = threading.Event()

    def notice_then_fault(gw: Any) -> Callable[[Any], Any]:
        def work(tx: Any) -> Any:
            gw.window.apply_notice("10", "20", DAY, NOTICE_AT)
            assert released.wait(WAIT_S), "the test let the work go on"
            raise RuntimeError("fault after the window moved")
        return work

    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        try:
            gw = rig.gw
            rig.clock.set(NOTICE_AT)
            notice = asyncio.ensure_future(gw.store.run(notice_then_fault(gw)))
            await asyncio.sleep(0.2)  # the notice's work has moved the window and waits
            other = asyncio.ensure_future(change(rig))
            await asyncio.sleep(0.2)  # the change is made now, or waits for the store
            released.set()
            with pytest.raises(RuntimeError, match="fault after the window moved"):
                await notice
            await asyncio.wait_for(other, WAIT_S)
            seen = {"window": gw.window.code, "gateway": gw.hvps_status,
                    "history": [e.to_code for e in gw.window.history]}
            rig.clock.set(TICK_AT + timedelta(minutes=5))
            await gw.window_tick()
            return {**seen, "window_after_next_tick": gw.window.code}
        finally:
            released.set()
            await rig.stop()
    return asyncio.run(scenario())


@pytest.mark.parametrize("change", [tick, peer_notice, confirmed_by_operators])
def test_a_change_made_while_a_notice_is_undone_is_kept(tmp_path, change):
    """Each change takes HVPS to 30 from the window as the undone notice left it (10):
    the window and the gateway are on 30, the undone 20 is in no history."""
    got = _undone_around(tmp_path, change)

    assert (got["window"], got["gateway"]) == ("30", "30")
    assert "20" not in got["history"]
    assert got["window_after_next_tick"] == "30"


def test_the_gateways_window_is_changed_only_in_the_stores_work(tmp_path):
    """An invariant of our own: a change made elsewhere is a bug, and fails at once."""
    async def scenario() -> None:
        rig = await opened(tmp_path)
        try:
            rig.gw.window.apply_notice("10", "30", DAY, TICK_AT)
        finally:
            await rig.stop()

    with pytest.raises(AssertionError, match="inside the store's work"):
        asyncio.run(scenario())
