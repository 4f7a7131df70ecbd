"""The demo's virtual day: its phases at the timetable's times, and a clock moved forward
to each (never back)."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from datetime import time as dt_time

import pytest

from gateway import demo
from gateway.clock import SHANGHAI, ScaledClock, clock_from_spec
from gateway.windows import Timetable

DAY = date(2026, 12, 7)


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 12, 7, hour, minute, tzinfo=SHANGHAI)


def test_the_phases_follow_the_timetable() -> None:
    times = demo.day_times(DAY, Timetable())
    assert times == {"preparation": at(8, 25), "opening": at(8, 30), "payments": at(9, 0),
                     "cut_off": at(17, 0), "clearing_window": at(17, 0),
                     "end_of_day": at(17, 30), "cut_over": at(17, 45)}
    late = demo.day_times(DAY, Timetable(open_at=dt_time(9, 30)))
    assert late["payments"] == late["opening"] == at(9, 30)


def test_a_scaled_clock_jumps_forward_keeping_its_rate_and_never_back() -> None:
    clock = ScaledClock(start=at(8, 25), anchor_epoch_s=time.time(), rate=1.0)
    clock.jump_to(at(17, 0))
    assert timedelta(0) <= clock.now() - at(17, 0) < timedelta(seconds=1)
    # Its spec now gives the time jumped to.
    assert clock_from_spec(clock.to_spec()).now() - at(17, 0) < timedelta(seconds=1)
    with pytest.raises(ValueError, match="never goes back"):
        clock.jump_to(at(9, 0))
    assert clock.now() >= at(17, 0)
