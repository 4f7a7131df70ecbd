"""The simulated NPC announces only HVPS status changes the gateway applies: POST /sim/phase
refuses the others (gateway.windows.change_allowed) unless the request says "force"."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI
from gateway.windows import HVPS_TRANSITIONS, WindowState, change_allowed
from simulators.testing import WORK_DATE, call, simulated

NEXT_DAY = "2026-12-08"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _post_phases(tmp_path: Path, before: str, bodies: list[dict]) -> list[tuple]:
    async with simulated(tmp_path, initial_phase=before, initial_date=WORK_DATE) as w:
        answers = []
        for body in bodies:
            status, answer = await call(w.sim.url, "POST", "/sim/phase", body)
            await w.sim.drain()
            answers.append((status, answer))
        notices = len(w.bank.bodies("ccms.801.001.02"))
        return answers + [("phase", w.sim.stats()["phase"], notices)]


# (case, status before, bodies posted in turn, HTTP statuses, phase after)
PHASE_RULE_CASES = [
    ("clearing window back to daytime is refused", "30", [{"status": "10"}], [422], "30"),
    ("daytime straight to end of day is refused", "10", [{"status": "40"}], [422], "10"),
    ("a new date before the cut-over is refused", "30",
     [{"status": "00", "date": NEXT_DAY}], [422], "30"),
    ("cut-over onto the same date is refused", "40",
     [{"status": "00", "date": WORK_DATE}], [422], "40"),
    ("the day in order is taken", "10",
     [{"status": "20"}, {"status": "30"}, {"status": "40"}, {"status": "00"}],
     [200, 200, 200, 200], "00"),
    ("the status in force again is taken", "10", [{"status": "10"}], [200], "10"),
    ("forced, the illegal change is sent", "30",
     [{"status": "10", "force": True}, {"status": "40", "force": True}], [200, 200], "40"),
    ("force must be a boolean", "30", [{"status": "10", "force": "yes"}], [422], "30"),
]


@pytest.mark.parametrize("case, before, bodies, statuses, after", PHASE_RULE_CASES,
                         ids=[c[0] for c in PHASE_RULE_CASES])
def test_phase_changes_follow_the_gateways_rule(tmp_path: Path, case: str, before: str,
                                                bodies: list[dict], statuses: list[int],
                                                after: str) -> None:
    """A change the gateway would refuse is refused with 422 and announced to nobody."""
    *answers, (_, phase, notices) = run(_post_phases(tmp_path, before, bodies))

    assert [status for status, _ in answers] == statuses
    assert phase == after
    assert notices == statuses.count(200)


def test_refused_change_names_from_to_and_what_is_allowed(tmp_path: Path) -> None:
    """The refusal has the product's error shape and says where the NPC is, where the
    request wanted it, the statuses it may move to, and how to force it."""
    (status, answer), _ = run(_post_phases(tmp_path, "30", [{"status": "10"}]))
    problem = answer["errors"][0]

    assert status == 422
    assert (problem["code"], problem["path"], problem["value"]) == (
        "hvps_status_change_illegal", "/status", "10")
    assert problem["from"] == {"status": "30", "date": WORK_DATE}
    assert problem["to"] == {"status": "10", "date": WORK_DATE}
    assert problem["allowed"] == ["40"]
    assert "from 30" in problem["expected"] and '"force": true' in problem["expected"]


DAYS = (date(2026, 12, 7), date(2026, 12, 8))


@pytest.mark.parametrize("orig, cur", list(product(sorted(HVPS_TRANSITIONS), repeat=2)))
def test_rule_is_the_one_the_gateway_applies_to_notices(orig: str, cur: str) -> None:
    """For every pair of statuses and dates, change_allowed agrees with what WindowState
    does with a ccms.801 from the state it is in (put there by an earlier notice)."""
    calendar = BusinessCalendar()
    for cur_date in DAYS:
        state = WindowState(calendar, _at())
        state.code, state.work_date, state.source = orig, DAYS[0], "ccms.801"
        outcome = state.apply_notice(orig, cur, cur_date, _at(), DAYS[0])

        taken = outcome in ("applied", "repeat")
        same = (orig, DAYS[0]) == (cur, cur_date)
        assert taken == (same or change_allowed(orig, DAYS[0], cur, cur_date)), (
            orig, cur, cur_date, outcome)


def _at() -> datetime:
    """Noon of 20 November, whose forecast (10 of that date) is none of the states tested,
    so that WindowState's allowance for a notice agreeing with the forecast never applies."""
    return datetime(2026, 11, 20, 12, 0, tzinfo=SHANGHAI)
