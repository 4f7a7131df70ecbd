"""`paygate serve --simulate`: the simulated NPC beside the gateway is started on the
gateway's business calendar, HVPS timetable and BEPS netting interval."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, time
from pathlib import Path

from gateway import windows
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI
from gateway.config import Settings
from gateway.errors import ValidationFailed
from gateway.serve import log_task_failure, simulator_args
from simulators import settings as sim_settings

HOLIDAY = """
[[day]]
date = 2026-12-09
working = false
name = "临时停运"
"""


def test_the_simulated_npc_takes_the_gateways_calendar_and_netting_interval(
        tmp_path: Path, monkeypatch) -> None:
    """A holiday the gateway's calendar file names is one at the simulated NPC too (its
    path given as the gateway reads it, relative to where it runs), and the NPC nets
    BEPS rounds at the gateway's interval."""
    (tmp_path / "calendar.toml").write_text(HOLIDAY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    gateway = Settings(calendar_file="calendar.toml", beps_netting_interval_min=15)

    npc = sim_settings.load(simulator_args(gateway))

    assert npc.follow_clock
    assert npc.calendar_file == str(tmp_path / "calendar.toml")
    assert not BusinessCalendar(npc.calendar_file).is_working_day(date(2026, 12, 9))
    assert npc.beps_netting_interval_s == 15 * 60


def test_without_a_calendar_file_the_npc_keeps_the_official_calendar() -> None:
    npc = sim_settings.load(simulator_args(Settings()))

    assert npc.calendar_file is None
    assert npc.beps_netting_interval_s == Settings().beps_netting_interval_min * 60


def test_the_simulated_npc_keeps_the_gateways_hvps_day() -> None:
    """An HVPS day the gateway's settings move (a later opening, the evening session)
    is the simulated NPC's too: it announces the phases, so its times decide when
    the gateway sees HVPS open."""
    later = Settings(hvps_open_at="09:00", hvps_cutoff_at="16:30",
                     hvps_clearing_window_start_at="16:30")
    evening = Settings(hvps_evening_open=True, hvps_evening_open_at="21:00")
    tuesday = BusinessCalendar(None)

    for gateway, usual, before_opening in (
            (later, Settings(), datetime(2026, 12, 8, 8, 45, tzinfo=SHANGHAI)),
            (evening, Settings(hvps_evening_open=True),
             datetime(2026, 12, 7, 20, 45, tzinfo=SHANGHAI))):
        npc = sim_settings.load(simulator_args(gateway))
        table = windows.Timetable.from_mapping(npc.timetable)
        assert table == windows.timetable_from_settings(gateway)
        assert windows.hvps_phase(before_opening, tuesday, table).code != "10"
        # ... where the default times would have opened it by then
        assert windows.hvps_phase(before_opening, tuesday,
                                  windows.timetable_from_settings(usual)).code == "10"
    assert table.evening_open and table.evening_open_at == time(21, 0)


def test_a_malformed_timetable_option_is_refused_at_its_key() -> None:
    try:
        sim_settings.load(["--timetable", "open_at=25:00", "--timetable", "noon"])
    except ValidationFailed as exc:
        found = {(p.code, p.path) for p in exc.problems}
    else:
        raise AssertionError("a malformed --timetable was taken")
    assert ("option_must_be_code_equals_value", "--timetable") in found
    assert any(path == "open_at" for _, path in found)


def test_a_task_beside_the_gateway_that_fails_is_logged_when_it_fails(caplog) -> None:
    """Not only at shutdown: the line names the task and the error as it ends; a task
    cancelled at shutdown or ended without an error logs nothing."""
    async def scenario() -> list[str]:
        async def fails() -> None:
            raise RuntimeError("refused")

        async def waits() -> None:
            await asyncio.sleep(3600)
        tasks = [asyncio.create_task(fails(), name="npc_keeper"),
                 asyncio.create_task(asyncio.sleep(0), name="quiet"),
                 asyncio.create_task(waits(), name="cancelled")]
        for task in tasks:
            task.add_done_callback(log_task_failure)
        await asyncio.sleep(0.05)
        seen = [r.getMessage() for r in caplog.records]
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return seen

    with caplog.at_level(logging.ERROR, logger="paygate.serve"):
        seen = asyncio.run(scenario())

    assert seen == ["event=serve_task_failed task=npc_keeper error=RuntimeError('refused')"]
    assert [r.getMessage() for r in caplog.records] == seen
