"""A whole business day on one virtual clock: right windows per kind of day, balanced and
reconciled books, and the same summary for the same seed."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from gateway.simday import DayRun, Volumes

pytestmark = pytest.mark.e2e

SMALL = Volumes(hvps_out=16, hvps_in=6, beps_out=12, beps_in=4)


def run_day(tmp_path, day: date, seed: int = 5) -> tuple[int, dict]:
    return asyncio.run(DayRun(day, seed, tmp_path, SMALL).run())


@pytest.mark.parametrize("day, kind, hvps_runs", [
    (date(2026, 12, 7), "ordinary Monday", True),
    (date(2026, 12, 5), "Saturday", False),
    (date(2026, 10, 1), "National Day", False),
    (date(2026, 10, 10), "Saturday declared a working day (调休)", True),
])
def test_day_balances_and_reconciles(tmp_path, day, kind, hvps_runs):
    """Each kind of day ends balanced and reconciled, with HVPS traffic only when open."""
    code, result = run_day(tmp_path, day)

    assert code == 0, result
    assert result["work_date"] == day.isoformat()
    assert result["ledger"]["balanced"] and result["ledger"]["reconciled"]
    assert (result["hvps"]["settled"] > 0) is hvps_runs, (kind, result["hvps"])
    assert (result["hvps"]["received"] > 0) is hvps_runs, (kind, result["hvps"])


def test_same_seed_same_summary(tmp_path):
    """Two runs with one seed give the same summary, digests included."""
    first = run_day(tmp_path / "a", date(2026, 12, 7), seed=11)
    second = run_day(tmp_path / "b", date(2026, 12, 7), seed=11)
    other = run_day(tmp_path / "c", date(2026, 12, 7), seed=12)

    assert first == second
    assert other[1]["wire"]["digest"] != first[1]["wire"]["digest"]
