"""While HVPS is closed, each transfer's route names when HVPS next opens. Finding that
walks the calendar day by day; a batch's transfers share the instant it arrived, so the
walk is made once for the batch, and again for another instant or another calendar."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway import app, windows
from gateway.app import Gateway
from gateway.beps.bench import _credit
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from ledger.testing import customer_account

SATURDAY_NIGHT = datetime(2026, 12, 5, 23, 0, tzinfo=SHANGHAI)


def test_a_batch_taken_while_hvps_is_closed_walks_the_calendar_once(tmp_path, monkeypatch):
    gw = Gateway(Settings(data_dir=str(tmp_path), port=0), clock=ManualClock(SATURDAY_NIGHT))
    asked: list[datetime] = []

    def counted(at, calendar, timetable=None):
        asked.append(at)
        return windows.next_hvps_opening(at, calendar, timetable)

    monkeypatch.setattr(app, "next_hvps_opening", counted)
    now = gw.clock.now()
    payer = customer_account(1, "corporate")
    batch = [gw._prepare("core", f"k{n}", _credit(payer, n), None, "", now) for n in range(20)]
    opening = windows.next_hvps_opening(now, gw.calendar, gw.timetable)

    assert not gw.hvps_open and opening > now
    assert asked == [now]
    assert {p.decision.channel for p in batch} == {"beps"}
    assert {p.decision.explanation["inputs"]["next_hvps_opening"] for p in batch} == \
        {opening.isoformat()}

    later = now + timedelta(minutes=1)
    gw._prepare("core", "k-later", _credit(payer, 99), None, "", later)
    gw.calendar = BusinessCalendar()
    gw._prepare("core", "k-calendar", _credit(payer, 98), None, "", later)
    assert asked == [now, later, later]
