"""Operator alerts that name one problem once: a refused ccms.801, an overdue notice and
a period with no calendar data each raise one alert, however many ticks and restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from tests.test_day_end_missing import notice, receive, run_on


async def alert_codes(gw: Gateway) -> list[str]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT code FROM alerts WHERE code NOT IN ('window_changed', "
        "'calendar_data_missing', 'link_down') ORDER BY id", ()))
    return [code for (code,) in rows]


def test_a_refused_notice_raises_one_alert(tmp_path: Path) -> None:
    """An illegal ccms.801 (10 back to 00) is alerted by its handler; the window's ticks
    that follow raise nothing more about it."""
    async def monday(gw: Gateway) -> tuple[str, list[str]]:
        outcome = await receive(gw, notice("10", "00", "2026-12-07"))
        for _ in range(3):
            gw.clock.advance(5)
            await gw.window_tick()
        return outcome, await alert_codes(gw)

    outcome, codes = asyncio.run(run_on(tmp_path, "2026-12-07T09:00", monday))

    assert outcome == "illegal"
    assert codes == ["hvps_status_notice_refused"]


def test_an_overdue_notice_raises_one_alert(tmp_path: Path) -> None:
    """Notices rule from 09:00; the 30 the timetable expects at 17:00 never comes: one
    alert, not one per tick."""
    async def monday(gw: Gateway) -> list[str]:
        await receive(gw, notice("00", "10", "2026-12-07"))
        gw.clock.advance(8 * 3600 + 15 * 60)  # 17:15, past the grace of ten minutes
        for _ in range(4):
            await gw.window_tick()
            gw.clock.advance(5)
        return await alert_codes(gw)

    assert asyncio.run(run_on(tmp_path, "2026-12-07T09:00", monday)) == [
        "hvps_status_notice_overdue"]


def test_missing_calendar_data_is_alerted_once_per_period(tmp_path: Path) -> None:
    """2027 is not in the calendar: its first day is alerted once, on a later day and
    after a restart too, though the days left change."""
    async def calendar_alerts(gw: Gateway) -> list[dict[str, Any]]:
        await gw.check_calendar()
        rows = await gw.store.run(lambda tx: tx.query(
            "SELECT detail FROM alerts WHERE code = 'calendar_data_missing'", ()))
        return [json.loads(detail) for (detail,) in rows]

    asyncio.run(run_on(tmp_path, "2026-12-07T09:00", calendar_alerts))
    asyncio.run(run_on(tmp_path, "2026-12-08T09:00", calendar_alerts))
    found = asyncio.run(run_on(tmp_path, "2026-12-09T09:00", calendar_alerts))

    assert [(a["date"], a["days_ahead"]) for a in found] == [("2027-01-01", 25)]
