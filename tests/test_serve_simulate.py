"""`paygate serve --simulate`: the simulated NPC beside the gateway is started on the
gateway's business calendar and BEPS netting interval."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from gateway.calendar import BusinessCalendar
from gateway.config import Settings
from gateway.serve import simulator_args
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
