"""A whole business day on one virtual clock: right windows per kind of day, balanced and
reconciled books, and the same summary for the same seed."""

from __future__ import annotations

import asyncio
from datetime import date, datetime

import pytest

from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.redisproc import free_port
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
    # At day end the NPC holds nothing queued: those queued during the day are counted
    # apart, never read as still queued.
    assert result["hvps"]["queued"] == 0, result["hvps"]
    assert result["hvps"]["queued_at_some_point"] >= 0


def test_same_seed_same_summary(tmp_path):
    """Two runs with one seed give the same summary, digests included."""
    first = run_day(tmp_path / "a", date(2026, 12, 7), seed=11)
    second = run_day(tmp_path / "b", date(2026, 12, 7), seed=11)
    other = run_day(tmp_path / "c", date(2026, 12, 7), seed=12)

    assert first == second
    assert other[1]["wire"]["digest"] != first[1]["wire"]["digest"]


def test_the_day_is_closed_so_the_gateway_starts_again_on_its_folder(tmp_path):
    """The run ends with the cut-over: the day's ledger day is closed with its reports,
    and a gateway started on the folder the next working day raises no day_end_missing."""
    day = date(2026, 12, 7)
    code, result = run_day(tmp_path, day)
    assert code == 0, result
    reports = sorted(p.name for p in (tmp_path / "gateway" / "reports").iterdir())
    assert reports == [f"daily-statement-{day}.csv", f"subject-day-sheets-{day}.txt"]

    async def start_again() -> tuple[list, list]:
        clock = ManualClock(datetime(2026, 12, 8, 9, 0, tzinfo=SHANGHAI))
        gw = Gateway(Settings(data_dir=str(tmp_path / "gateway"), port=0,
                              keys_dir=str(tmp_path / "keys"),
                              npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                     clock=clock)
        await gw.start(serve_http=False)
        try:
            return await gw.store.run(lambda tx: (
                [r[0] for r in tx.query("SELECT work_date FROM ledger_day", ())],
                [r[0] for r in tx.query("SELECT code FROM alerts", ())]))
        finally:
            await gw.stop()
    closed, codes = asyncio.run(start_again())

    assert closed == [day.isoformat()]
    assert "day_end_missing" not in codes


def test_a_saturday_leaves_the_ledger_day_of_its_work_date_open(tmp_path):
    """A weekend day's postings belong to the next working day's work date, which its own
    day end closes: the run closes none."""
    code, result = run_day(tmp_path, date(2026, 12, 5))
    assert code == 0, result
    assert not (tmp_path / "gateway" / "reports").exists() or \
        not list((tmp_path / "gateway" / "reports").iterdir())
