"""The simulated NPC starting later in the day than its stored phase announces every
phase on the way (as participants would have heard them), never a jump such as 10
straight to 40; onto another date it announces that date's state in one notice."""

from __future__ import annotations

import pytest

from gateway.windows import HVPS_TRANSITIONS
from simulators.phases import _next_step

NEXT_DAY = {"07": "08", "08": "09", "09": "10"}


def _walk(code: str, day: str, goal_code: str, goal_day: str) -> list[tuple[str, str]]:
    steps = []
    while (step := _next_step(code, day, goal_code, goal_day)) is not None:
        assert step in HVPS_TRANSITIONS[code], f"{code} -> {step} is not a legal change"
        if code in ("40", "15") and step == "00":
            day = NEXT_DAY[day]
        code = step
        steps.append((code, day))
        assert len(steps) < 50
    return steps


@pytest.mark.parametrize("start, goal, path", [
    (("10", "07"), ("40", "07"), [("30", "07"), ("40", "07")]),
    (("00", "07"), ("40", "07"), [("10", "07"), ("30", "07"), ("40", "07")]),
    (("10", "07"), ("30", "07"), [("30", "07")]),
    (("10", "07"), ("10", "08"), []),   # another date: one notice of its state
])
def test_every_phase_on_the_way_is_announced_in_order(start, goal, path):
    assert _walk(*start, *goal) == path


@pytest.mark.parametrize("start, goal", [
    (("40", "07"), ("10", "07")),   # earlier in the same day: the clock went back
    (("10", "08"), ("10", "07")),   # an earlier day
    (("10", "07"), ("00", "08")),   # a later day: one notice, not a day end run late
    (("30", "07"), ("30", "07")),   # already there
])
def test_no_walk_backwards_or_in_place(start, goal):
    assert _next_step(*start, *goal) is None
