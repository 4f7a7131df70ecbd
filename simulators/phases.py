"""The HVPS system status the simulated NPC announces (DOMAIN.md §7, SPEC.md d.9).

Each change is applied and announced to every external participant with a ccms.801
carrying the previous and the new (date, status). Entering 40 (end of day) from 10, 20
or 30 cancels what is still queued; entering 10 or 30 from a status that does not settle
releases what funding made coverable meanwhile. Leaving 40 for 15 or 00 moves the work
date to the date given, or else to the calendar's next working day. A change the
gateway's own rules refuse (`gateway.windows.change_allowed`: 30 back to 10, 10 straight
to 40, a new date before the cut-over) is refused with hvps_status_change_illegal unless
the request says `"force": true`; forced, the simulator sends the gateway changes the
timetable would never make, to test how it copes.

With `--follow-clock` a ticker asks gateway.windows which changes the clock has passed
since the last tick and applies them in order, so a scaled or manual clock drives the
day exactly as the gateway forecasts it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from typing import Any

from gateway import windows
from gateway.calendar import BusinessCalendar
from gateway.clock import Clock
from gateway.errors import PaygateError, Problem
from simulators.logfmt import event
from simulators.notices import Notices
from simulators.rtgs import SETTLING_PHASES, Rtgs
from simulators.settings import PHASES
from simulators.store import Store

log = logging.getLogger("npc.phases")

_STATUS_KEY, _DATE_KEY = "hvps_status", "hvps_work_date"
_CANCELLING_FROM = frozenset({"10", "20", "30"})
_CUTOVER_TO = frozenset({"15", "00"})


def current_phase(store: Store) -> tuple[str, str]:
    """(status, work date) as last applied."""
    status, work_date = store.meta(_STATUS_KEY), store.meta(_DATE_KEY)
    assert status is not None and work_date is not None, "the phase is set at start"
    return status, work_date


def _parse_date(value: Any) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise PaygateError(Problem("date_must_be_iso", "/date", value, "yyyy-MM-dd"),
                           status=422) from None


def _refuse_illegal(orig: tuple[str, str], cur: tuple[str, str]) -> None:
    """Raise hvps_status_change_illegal for a change the gateway's transition rules refuse.
    Announcing the status in force again (same status, same date) is allowed: participants
    take it as a repeat."""
    (orig_code, orig_day), (cur_code, cur_day) = orig, cur
    if orig == cur or windows.change_allowed(orig_code, date.fromisoformat(orig_day),
                                             cur_code, date.fromisoformat(cur_day)):
        return
    allowed = sorted(windows.HVPS_TRANSITIONS.get(orig_code, frozenset()))
    day = date.fromisoformat(orig_day)
    steps = [f"{code} {_dates_allowed(orig_code, day, code)}" for code in allowed]
    expected = (f"from {orig_code} on {orig_day}: {' or '.join(steps) or 'none'}; "
                'or "force": true to send it anyway')
    raise PaygateError(Problem(
        "hvps_status_change_illegal", "/status", cur_code, expected,
        detail=(("from", {"status": orig_code, "date": orig_day}),
                ("to", {"status": cur_code, "date": cur_day}),
                ("allowed", allowed))), status=422)


def _dates_allowed(orig_code: str, day: date, code: str) -> str:
    """On which work date the rule lets `code` follow `orig_code` of `day`, in words."""
    same = windows.change_allowed(orig_code, day, code, day)
    later = windows.change_allowed(orig_code, day, code, day + timedelta(days=1))
    if same and later:
        return f"on {day} or a later work date"
    return f"on {day}" if same else "on a later work date (the cut-over)"


class Phases:
    def __init__(self, store: Store, notices: Notices, rtgs: Rtgs, calendar: BusinessCalendar,
                 externals: list[str]) -> None:
        self.store = store
        self.notices = notices
        self.rtgs = rtgs
        self.calendar = calendar
        self.externals = externals

    def initialise(self, status: str, work_date: str) -> None:
        """Set the phase at the first start only; afterwards the database keeps it."""
        if self.store.meta(_STATUS_KEY) is None:
            self.store.set_meta(_STATUS_KEY, status)
            self.store.set_meta(_DATE_KEY, work_date)

    def change(self, status: Any, new_date: Any = None, force: bool = False) -> dict[str, Any]:
        """Apply and announce one status change; returns what happened. A change the
        gateway would refuse (`windows.change_allowed`) is refused here too unless `force`
        asks for it: a participant that refuses a notice stays on its old status while the
        NPC has moved on, for the rest of the day."""
        if status not in PHASES:
            raise PaygateError(Problem("hvps_status_unknown", "/status", status,
                                       "one of " + ", ".join(PHASES)), status=422)
        old_status, old_date = current_phase(self.store)
        if new_date is not None:
            target_date = _parse_date(new_date)
        elif old_status == "40" and status in _CUTOVER_TO:
            target_date = self.calendar.next_working_day(date.fromisoformat(old_date)).isoformat()
        else:
            target_date = old_date
        if not force:
            _refuse_illegal((old_status, old_date), (status, target_date))
        cancelled = 0
        if status == "40" and old_status in _CANCELLING_FROM:
            cancelled = self.rtgs.cancel_queue()
        self.store.set_meta(_STATUS_KEY, status)
        self.store.set_meta(_DATE_KEY, target_date)
        self._announce((old_date, old_status), (target_date, status))
        if status in SETTLING_PHASES and old_status not in SETTLING_PHASES:
            # Funding that arrived while settlement was closed takes effect now.
            self.rtgs.release_all()
        event(log, "hvps_status_changed", orig_status=old_status, orig_date=old_date,
              status=status, work_date=target_date, cancelled=cancelled)
        return {"status": status, "work_date": target_date, "previous_status": old_status,
                "previous_work_date": old_date, "cancelled": cancelled,
                "notified": list(self.externals)}

    def _announce(self, orig: tuple[str, str], cur: tuple[str, str]) -> None:
        cur_day = date.fromisoformat(cur[0])
        next_date = self.calendar.next_working_day(cur_day).isoformat()
        name = windows.Phase.from_code(cur[1], cur_day).name_zh
        for dest in self.externals:
            self.notices.system_status(dest, orig, cur, next_date, f"HVPS进入{name}")


_ORDER_IN_DAY = {"00": 1, "10": 2, "20": 3, "30": 4, "40": 5, "15": 6}
CATCH_UP_STEPS_MAX = 64  # phases announced on the way at start (about ten days' worth)


def _next_step(code: str, day: str, goal_code: str, goal_day: str) -> str | None:
    """The next phase on the shortest legal way from (code, day) to the goal's phase,
    within one work date. Across dates there is none: the NPC was down over a day end,
    which participants see as one notice of the new date's state (taken as such by the
    gateway, docs/calendar.md), not as a day end run late at start."""
    if day != goal_day or code == goal_code or _ORDER_IN_DAY[code] > _ORDER_IN_DAY[goal_code]:
        return None
    aim = goal_code
    seen, frontier = {code}, [(code, None)]
    while frontier:
        following = []
        for at, first in frontier:
            for nxt in sorted(windows.HVPS_TRANSITIONS.get(at, ())):
                if nxt == "15" or nxt in seen:
                    continue  # the evening session is optional: never on the way
                step = first or nxt
                if nxt == aim:
                    return step
                seen.add(nxt)
                following.append((nxt, step))
        frontier = following
    return None


class ClockFollower:
    """Applies the timetable's status changes as the clock passes them."""

    def __init__(self, phases: Phases, clock: Clock, calendar: BusinessCalendar,
                 timetable: windows.Timetable, tick_s: float) -> None:
        self.phases = phases
        self.clock = clock
        self.calendar = calendar
        self.timetable = timetable
        self.tick_s = tick_s
        self._last: datetime | None = None

    def forecast(self, at: datetime | None = None) -> tuple[str, str]:
        """(status, work date) the timetable gives for `at` (the clock's time now)."""
        phase = windows.hvps_phase(at or self.clock.now(), self.calendar, self.timetable)
        return phase.code, phase.work_date.isoformat()

    def catch_up(self) -> None:
        """At start: move to the phase the timetable forecasts for now, if different:
        within the same work date through every phase a participant would have been
        told of on the way (10 straight to 40 is not a change CNAPS makes, and
        participants rightly refuse it); onto another date in one notice."""
        now = self.clock.now()
        goal = self.forecast(now)
        for _ in range(CATCH_UP_STEPS_MAX):
            step = _next_step(*current_phase(self.phases.store), *goal)
            if step is None:
                break
            with self.phases.store.transaction():
                self.phases.change(step)
        if current_phase(self.phases.store) != goal:
            # Backwards in time, or further than the steps allow: straight there.
            with self.phases.store.transaction():
                self.phases.change(*goal, force=True)
        self._last = now

    def step(self) -> int:
        """Apply every change between the last step and now; returns how many."""
        assert self._last is not None, "catch_up runs before the first step"
        now = self.clock.now()
        changes = windows.status_changes_between(self._last, now, self.calendar,
                                                 self.timetable)
        for change in changes:
            with self.phases.store.transaction():
                self.phases.change(change.cur_code, change.cur_date.isoformat())
        self._last = now
        return len(changes)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.step()
