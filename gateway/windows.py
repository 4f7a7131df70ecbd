"""HVPS business phases, BEPS settlement and netting rounds, from a timetable and calendar.

HVPS (大额) runs one business day per working day and announces each phase change with a
ccms.801 notice carrying a two-digit status (SPEC.md d.9, DOMAIN.md §7):

    00 preparation -> 10 daytime -> [20 cut-off] -> 30 clearing window
       -> 40 end of day -> 15 day cutover (to the next working day) -> 00 ...

The local timetable below forecasts those changes; once notices arrive they are the
authority (`WindowState`). Every time is configurable (docs/calendar.md). The day of a
working day W, with N the next working day, runs on the defaults as follows:

- 10 daytime from `open_at` (08:30) on W, or from `evening_open_at` (20:30) on the
  calendar day before W when `evening_open` is set (the PBOC timetable of May 2018).
- 20 cut-off at `cutoff_at` (17:00) and 30 clearing window at `clearing_window_start_at`;
  when both are equal (the default) 20 lasts no time and is not announced.
- 40 end-of-day processing from `clearing_window_end_at` (17:30) to `day_end_at` (17:45).
- 15 cut-over from `day_end_at` on W, with work date N, then 00 preparation for N from
  `prepare_at` (18:00) on W, until N opens (DOMAIN.md §7: after end of day the system
  date moves to the next working day and preparation starts again). When `prepare_at`
  equals `day_end_at`, 40 goes straight to 00, as in the captured notice. When N is not the
  next calendar day (a weekend, a holiday) the preparation lasts until then: on Saturday
  2026-10-03, inside the National Day holiday, HVPS is in 00 for Thursday 2026-10-08.
- The restricted session of the first day of a weekend or holiday (20:30 the evening
  before until 08:30, cross-border funding only) takes no customer payment: it stays
  00 for N here, and a customer payment then is refused as HVPS closed.

BEPS (小额) accepts packages at every hour; its work date is the natural day, but net
positions settle only while HVPS settles, in phases 10 and 30 (DOMAIN.md §1).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from gateway.calendar import WORKING_DAY_SEARCH_DAYS_MAX, BusinessCalendar, no_working_day_error
from gateway.clock import SHANGHAI
from gateway.errors import ProblemList
from gateway.workstate import in_work, log_after_commit, on_undo

log = logging.getLogger("paygate.windows")

PREPARATION = "preparation"
DAYTIME = "daytime"
CUTOVER = "cutover"
CUTOFF = "cutoff"
CLEARING_WINDOW = "clearing_window"
END_OF_DAY = "end_of_day"

# key: (CNAPS code, English name, Chinese name, accepts customer payments, settles).
# Settlement of queued items and of BEPS net positions needs HVPS open: 10 or 30.
_KINDS: dict[str, tuple[str, str, str, bool, bool]] = {
    PREPARATION: ("00", "business preparation", "营业准备", False, False),
    DAYTIME: ("10", "daytime processing", "日间处理", True, True),
    CUTOVER: ("15", "day cutover", "日切", False, False),
    CUTOFF: ("20", "business cut-off", "业务截止", False, False),
    CLEARING_WINDOW: ("30", "clearing window", "清算窗口", False, True),
    END_OF_DAY: ("40", "end-of-day processing", "日终处理", False, False),
}
_KEY_BY_CODE = {code: key for key, (code, *_rest) in _KINDS.items()}

# Allowed status changes between ccms.801 codes. 10 -> 30 skips a cut-off of no length;
# 40 -> 00 is the captured notice, where the cut-over was not announced on its own.
HVPS_TRANSITIONS: dict[str, frozenset[str]] = {
    "00": frozenset({"10"}),
    "10": frozenset({"20", "30"}),
    "20": frozenset({"30"}),
    "30": frozenset({"40"}),
    "40": frozenset({"15", "00"}),
    "15": frozenset({"00"}),
}
_CUTOVER_PAIRS = {("40", "15"), ("40", "00"), ("15", "00")}

# Order of the codes within one work date. Whether the NPC dates a 15 with the old or the
# new date is not known, so a 15 counts as late as possible when it is the target and as
# early as possible when it is the current state, which gives the notice the benefit.
_RANK_AS_TARGET = {"15": 6, "00": 1, "10": 2, "20": 3, "30": 4, "40": 5}
_RANK_AS_CURRENT = {**_RANK_AS_TARGET, "15": 0}


def change_allowed(orig_code: str, orig_date: date, cur_code: str, cur_date: date) -> bool:
    """Whether a ccms.801 moving from the state in force (orig) to cur is one the gateway
    applies: a step of `HVPS_TRANSITIONS`, forward in (work date, order in the day), and
    onto another work date only at the cut-over (40 -> 15, 40 -> 00, 15 -> 00). The
    simulated NPC checks its own changes with this same rule, so that it never announces
    one the gateway refuses and the two stay in step."""
    if cur_code not in HVPS_TRANSITIONS.get(orig_code, frozenset()):
        return False
    if (cur_date, _RANK_AS_TARGET[cur_code]) <= (orig_date, _RANK_AS_CURRENT[orig_code]):
        return False
    return cur_date == orig_date or (orig_code, cur_code) in _CUTOVER_PAIRS

# NetgRnd is Max2NumericText, so a netting date holds at most 99 rounds.
NETTING_ROUNDS_PER_DAY_MAX = 99
# A whole day of transitions is about six; a year bounds any scan of the schedule.
SCHEDULE_SPAN_DAYS_MAX = 400

# A local time of day in configuration: "08:30" or "08:30:00", 24-hour clock.
_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")


@dataclass(frozen=True)
class Phase:
    key: str
    code: str
    name_en: str
    name_zh: str
    work_date: date
    accepts_customer_payments: bool
    settles: bool

    @classmethod
    def of(cls, key: str, work_date: date) -> Phase:
        code, name_en, name_zh, accepts, settles = _KINDS[key]
        return cls(key, code, name_en, name_zh, work_date, accepts, settles)

    @classmethod
    def from_code(cls, code: str, work_date: date) -> Phase:
        """The phase a ccms.801 status code stands for (40 reads as end of day)."""
        return cls.of(_KEY_BY_CODE[code], work_date)


def _check_interval(value: Any, problems: ProblemList) -> None:
    valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
    if not valid or math.ceil(24 * 60 / value) > NETTING_ROUNDS_PER_DAY_MAX:
        problems.add("netting_interval_must_give_at_most_99_rounds", "netting_interval_min",
                     value, "whole minutes, at least 15")


def _raise_on_bad_interval(interval_min: int) -> None:
    problems = ProblemList()
    _check_interval(interval_min, problems)
    problems.raise_if_any()


def _parse_time(key: str, value: Any, problems: ProblemList) -> time | None:
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if isinstance(value, str) and _HH_MM.match(value):
        return time.fromisoformat(value)
    problems.add("timetable_time_must_be_hh_mm", key, value, "a local time such as 08:30")
    return None


def _parse_flag(key: str, value: Any, problems: ProblemList) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.add("timetable_flag_must_be_true_or_false", key, value, "true or false")
    return None


@dataclass(frozen=True)
class Timetable:
    """The HVPS day in local Shanghai times of day, and the BEPS netting interval."""

    open_at: time = time(8, 30)
    cutoff_at: time = time(17, 0)
    clearing_window_start_at: time = time(17, 0)
    clearing_window_end_at: time = time(17, 30)
    day_end_at: time = time(17, 45)
    prepare_at: time = time(18, 0)
    evening_open: bool = False
    evening_open_at: time = time(20, 30)
    netting_interval_min: int = 30

    def __post_init__(self) -> None:
        problems = ProblemList()
        order = ["open_at", "cutoff_at", "clearing_window_start_at",
                 "clearing_window_end_at", "day_end_at", "prepare_at"]
        if self.evening_open:
            order.append("evening_open_at")
        # A phase of no length is skipped only where that is a known CNAPS shape: the
        # cut-off (20) when the clearing window opens at once, and the cut-over (15).
        strict = {"cutoff_at", "clearing_window_end_at", "day_end_at", "evening_open_at"}
        for before, after in zip(order, order[1:]):
            first, second = getattr(self, before), getattr(self, after)
            if second < first or (second == first and after in strict):
                problems.add("timetable_times_must_be_in_order", after, second.isoformat(),
                             f"{'after' if after in strict else 'at or after'} {before}")
        _check_interval(self.netting_interval_min, problems)
        problems.raise_if_any()

    def business_window(self) -> str:
        """When HVPS takes customer payments, in words: what a payment refused because
        HVPS is closed expected (routing.router, error `hvps_closed`)."""
        cutoff = self.cutoff_at.strftime("%H:%M")
        days = ("working days (Monday to Friday but public holidays, and the weekend days "
                "worked in their place, as the business calendar says)")
        if self.evening_open:
            return (f"from {self.evening_open_at.strftime('%H:%M')} Beijing time on the "
                    f"evening before one of the {days} until {cutoff} on that day")
        return f"{self.open_at.strftime('%H:%M')}–{cutoff} Beijing time on {days}"

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> Timetable:
        """Build from configuration: times as "HH:MM" strings or TOML local times."""
        problems = ProblemList()
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in names:
                problems.add("timetable_key_must_be_known", key, key, ", ".join(sorted(names)))
            elif key == "evening_open":
                values[key] = _parse_flag(key, value, problems)
            elif key == "netting_interval_min":
                values[key] = value
            else:
                values[key] = _parse_time(key, value, problems)
        problems.raise_if_any()
        return cls(**values)


DEFAULT_TIMETABLE = Timetable()

# The flat setting names (gateway.config style) for each timetable field.
TIMETABLE_SETTINGS = {
    "hvps_open_at": "open_at",
    "hvps_cutoff_at": "cutoff_at",
    "hvps_clearing_window_start_at": "clearing_window_start_at",
    "hvps_clearing_window_end_at": "clearing_window_end_at",
    "hvps_day_end_at": "day_end_at",
    "hvps_prepare_at": "prepare_at",
    "hvps_evening_open": "evening_open",
    "hvps_evening_open_at": "evening_open_at",
    "beps_netting_interval_min": "netting_interval_min",
}


def timetable_from_settings(settings: object) -> Timetable:
    """The timetable from a settings object's `hvps_*`/`beps_*` attributes; an attribute
    the object lacks keeps its default."""
    mapping = {field_name: getattr(settings, name)
               for name, field_name in TIMETABLE_SETTINGS.items() if hasattr(settings, name)}
    return Timetable.from_mapping(mapping)


class StatusChange(NamedTuple):
    """One CNAPS-visible change: the fields a ccms.801 notice carries."""

    at: datetime
    orig_code: str
    orig_date: date
    cur_code: str
    cur_date: date


def hvps_phase(at: datetime, calendar: BusinessCalendar,
               timetable: Timetable | None = None) -> Phase:
    """The phase the timetable forecasts for the instant `at`."""
    at = _business(at)
    for back in range(WORKING_DAY_SEARCH_DAYS_MAX):
        day = at.date() - timedelta(days=back)
        started = [phase for t, phase in _day_boundaries(day, calendar, timetable) if t <= at]
        if started:
            return started[-1]
    raise no_working_day_error(at.date())


def next_transition(at: datetime, calendar: BusinessCalendar,
                    timetable: Timetable | None = None) -> tuple[datetime, Phase]:
    """The first phase change strictly after `at`."""
    at = _business(at)
    for ahead in range(WORKING_DAY_SEARCH_DAYS_MAX):
        day = at.date() + timedelta(days=ahead)
        for t, phase in _day_boundaries(day, calendar, timetable):
            if t > at:
                return t, phase
    raise no_working_day_error(at.date())


# The forecast changes scanned for the next one of the state in force, from the working
# day before its work date: a day has about six, so this reaches four working days on,
# past any NPC running early.
NEXT_CHANGE_SCAN_MAX = 24


def next_change_not_reached(at: datetime, code: str, work_date: date,
                            calendar: BusinessCalendar,
                            timetable: Timetable | None = None) -> tuple[datetime, Phase]:
    """The next change of the state in force (code, work_date): the first forecast
    change that state has not already reached. Notices, not the clock, set the state:
    when the NPC moved early (30 at 16:40 for a 17:00 change), the 17:00 change is behind
    us and the one to show is the next. When the NPC is behind the forecast (offline, or
    late), the change it owes is shown at its forecast time, now past (`at` or earlier:
    overdue), never a later change of a work date that has not begun. The schedule dates
    a cut-over (15) with its new work date, where it comes first. Without a known code,
    the first change after `at`."""
    first = next_transition(at, calendar, timetable)
    if code not in _RANK_AS_CURRENT:
        return first
    in_force = (work_date, _RANK_AS_CURRENT[code])
    # Each change of the state's work date comes after the working day before it began.
    t = _on(calendar.previous_working_day(work_date), time(0))
    for _ in range(NEXT_CHANGE_SCAN_MAX):
        t, phase = next_transition(t, calendar, timetable)
        if (phase.work_date, _RANK_AS_CURRENT[phase.code]) > in_force:
            return t, phase
    return first


def transitions_between(a: datetime, b: datetime, calendar: BusinessCalendar,
                        timetable: Timetable | None = None) -> list[tuple[datetime, Phase]]:
    """Every phase change in (a, b], local `closed` included, in time order."""
    a, b = _business(a), _business(b)
    span_days = (b.date() - a.date()).days
    assert 0 <= span_days <= SCHEDULE_SPAN_DAYS_MAX, "a schedule scan spans at most a year"
    out = []
    for offset in range(span_days + 1):
        day = a.date() + timedelta(days=offset)
        out.extend((t, p) for t, p in _day_boundaries(day, calendar, timetable) if a < t <= b)
    return out


def status_changes_between(a: datetime, b: datetime, calendar: BusinessCalendar,
                           timetable: Timetable | None = None) -> list[StatusChange]:
    """The changes in (a, b] that alter the CNAPS status or date, one per ccms.801."""
    current = hvps_phase(a, calendar, timetable)
    out = []
    for t, phase in transitions_between(a, b, calendar, timetable):
        if (phase.code, phase.work_date) != (current.code, current.work_date):
            out.append(StatusChange(t, current.code, current.work_date, phase.code,
                                    phase.work_date))
        current = phase
    return out


def next_hvps_opening(at: datetime, calendar: BusinessCalendar,
                      timetable: Timetable | None = None) -> datetime:
    """When HVPS next accepts customer payments; `at` itself when it accepts them now."""
    at = _business(at)
    if hvps_phase(at, calendar, timetable).accepts_customer_payments:
        return at
    for ahead in range(WORKING_DAY_SEARCH_DAYS_MAX):
        day = at.date() + timedelta(days=ahead)
        for t, phase in _day_boundaries(day, calendar, timetable):
            if t > at and phase.accepts_customer_payments:
                return t
    raise no_working_day_error(at.date())


def beps_work_date(at: datetime) -> date:
    """BEPS runs every day; its work date is the natural Shanghai day."""
    return _business(at).date()


def beps_settlement_allowed(at: datetime, calendar: BusinessCalendar,
                            timetable: Timetable | None = None) -> bool:
    """BEPS net positions settle only while HVPS settles (phases 10 and 30)."""
    return hvps_phase(at, calendar, timetable).settles


def netting_round_times(day: date, interval_min: int = 30) -> list[datetime]:
    """When each netting round of the netting date `day` closes; the last at midnight."""
    _raise_on_bad_interval(interval_min)
    start = datetime.combine(day, time(0), tzinfo=SHANGHAI)
    count = math.ceil(24 * 60 / interval_min)
    return [start + timedelta(minutes=min(n * interval_min, 24 * 60))
            for n in range(1, count + 1)]


def netting_round_label(number: int) -> str:
    """NetgRnd as CNAPS writes it: "01", "02", ... within a netting date."""
    assert 1 <= number <= NETTING_ROUNDS_PER_DAY_MAX, "a netting round number has two digits"
    return f"{number:02d}"


def netting_round_for(at: datetime, interval_min: int = 30) -> tuple[date, str]:
    """The netting date and round an item committed at `at` joins: the first round that
    closes strictly after `at`."""
    _raise_on_bad_interval(interval_min)
    at = _business(at)
    second_of_day = at.hour * 3600 + at.minute * 60 + at.second
    number = second_of_day // (interval_min * 60) + 1
    return at.date(), netting_round_label(number)


def netting_date_complete_at(day: date, delay_s: float = 0.0) -> datetime:
    """When every round of the netting date `day` has netted and been told: its last
    round closes at the next midnight, and its notices get `delay_s` to arrive."""
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    return end + timedelta(seconds=delay_s)


def last_complete_netting_date(at: datetime, delay_s: float = 0.0) -> date:
    """The latest netting date complete at `at` (`netting_date_complete_at` reached):
    yesterday once `delay_s` has passed since midnight, else the day before."""
    return (_business(at) - timedelta(seconds=delay_s)).date() - timedelta(days=1)


SOURCE_SCHEDULE = "schedule"
SOURCE_NOTICE = "ccms.801"
# The status operators confirmed with the NPC, two of them (gateway.status_hold): taken
# as a notice's would be, the NPC's later notices judged from it.
SOURCE_OPERATOR = "operator"

# How a ccms.801 notice or a scheduled change was treated; the first four move the state.
OUTCOME_INITIAL = "initial"
OUTCOME_APPLIED = "applied"
OUTCOME_CONFIRMED = "confirmed"
OUTCOME_CORRECTED = "corrected"
OUTCOME_GAP = "gap"
OUTCOME_REPEAT = "repeat"
OUTCOME_STALE = "stale"
OUTCOME_ILLEGAL = "illegal"
OUTCOME_UNKNOWN_STATUS = "unknown_status"
OUTCOME_SET_BY_OPERATOR = "set_by_operator"
# A notice for a work date before the one the state moved on to (a ccms.801 queued before
# the cut-over, delivered after it): kept in the history and logged, never applied, never
# a disagreement with the NPC (the cut-over it came before has happened since).
OUTCOME_PAST_DATE = "past_work_date"
_MOVES = {OUTCOME_APPLIED, OUTCOME_CONFIRMED, OUTCOME_CORRECTED, OUTCOME_GAP}
# After these the state in force is another one (status or work date): what operators see
# as a window change. `confirmed` and `repeat` leave it as it was.
CHANGING_OUTCOMES = frozenset({OUTCOME_APPLIED, OUTCOME_CORRECTED, OUTCOME_GAP})
# These leave the notice unapplied.
REFUSED_OUTCOMES = frozenset({OUTCOME_STALE, OUTCOME_ILLEGAL, OUTCOME_UNKNOWN_STATUS})

# About six changes a working day: a thousand entries keep more than five months.
HISTORY_ENTRIES_MAX = 1000


class HistoryEntry(NamedTuple):
    """One change, or one refused notice, as operators see it."""

    at: datetime
    from_code: str | None
    to_code: str
    work_date: date
    source: str
    outcome: str = OUTCOME_APPLIED


class WindowState:
    """The HVPS status the gateway acts on.

    Until the first ccms.801 notice arrives the local schedule drives the state
    (`apply_schedule`). From then on notices are the authority: the schedule only tells
    when an expected notice is overdue. A notice that breaks `HVPS_TRANSITIONS`, goes
    back in time or names an unknown status is logged and recorded, and not applied.

    The gateway's window (`changed_in_work`) is changed only inside the store's work,
    on its one thread, one piece of work at a time: a ccms.801's processing, and the
    timetable's tick, another process's notice and the status operators confirmed,
    which the gateway runs there too. A piece of work that is undone so sets back its
    own change alone: the works undone with it are the later ones of its transaction,
    undone first, and no change of another thread can have come in between.
    """

    def __init__(self, calendar: BusinessCalendar, at: datetime,
                 timetable: Timetable | None = None, notice_grace_s: float = 600.0,
                 changed_in_work: bool = False) -> None:
        self.calendar = calendar
        self.changed_in_work = changed_in_work
        self.timetable = timetable or DEFAULT_TIMETABLE
        self.notice_grace_s = notice_grace_s
        at = _business(at)
        phase = hvps_phase(at, calendar, self.timetable)
        self.code, self.work_date, self.source = phase.code, phase.work_date, SOURCE_SCHEDULE
        self.history = [HistoryEntry(at, None, phase.code, phase.work_date, SOURCE_SCHEDULE,
                                     OUTCOME_INITIAL)]
        self._schedule_at = at
        self._last_notice_at: datetime | None = None
        self._expected: StatusChange | None = None
        self._overdue_raised: StatusChange | None = None

    @property
    def phase(self) -> Phase:
        return Phase.from_code(self.code, self.work_date)

    @property
    def last_notice_at(self) -> datetime | None:
        """When the state in force was last taken from a notice or operators, None when
        only the timetable set it."""
        return self._last_notice_at

    @property
    def accepts_customer_payments(self) -> bool:
        return self.phase.accepts_customer_payments

    @property
    def settles(self) -> bool:
        return self.phase.settles

    def apply_notice(self, orig_sts: str, cur_sts: str, cur_date: date | str,
                     at: datetime, orig_date: date | str | None = None,
                     moved_on_by_notice: bool = False, refused_status: str | None = None
                     ) -> str:
        """Take a ccms.801 (OrgnlSysSts, CurSysSts, CurSysDt, and OrgnlSysDt when
        known); return the outcome. `moved_on_by_notice`: the caller found in the stored
        state, which every process reads alike, that the NPC itself has moved on past
        the notice's work date (its ledger day closed, a later date the NPC stated
        recorded: gateway.app.Gateway.hvps_moved_on_by_notice); this window alone cannot
        tell a cut-over the NPC made from one the timetable forecast. `refused_status`:
        while a refused notice holds HVPS sending (gateway.status_hold), the status it
        announced: a notice moving from it to the state in force brings the two back in
        step, whatever the step."""
        at = _business(at)
        new_date = date.fromisoformat(cur_date) if isinstance(cur_date, str) else cur_date
        self._check_in_work()
        outcome = self._judge(orig_sts, cur_sts, new_date, at,
                              str(orig_date) if orig_date is not None else None,
                              moved_on_by_notice, refused_status)
        if outcome == OUTCOME_REPEAT:
            return outcome
        self._undo_with_work()
        entry = HistoryEntry(at, self.code, cur_sts, new_date, SOURCE_NOTICE, outcome)
        self._record(entry, orig_sts)
        if outcome in _MOVES:
            self.code, self.work_date, self.source = cur_sts, new_date, SOURCE_NOTICE
            self._last_notice_at = at
            if self._expected and self._has_reached(self._expected):
                self._expected = None
        return outcome

    def set_by_operator(self, code: str, work_date: date, at: datetime) -> bool:
        """Take the status operators confirmed with the NPC after a notice was refused
        (gateway.status_hold), whatever the transition rules say: it is what the NPC is
        in, and its later notices are judged from it. True when the state in force
        changed."""
        assert code in HVPS_TRANSITIONS, "a status the HVPS day knows"
        self._check_in_work()
        at = _business(at)
        changed = (code, work_date) != (self.code, self.work_date)
        self._undo_with_work()
        self._record(HistoryEntry(at, self.code, code, work_date, SOURCE_OPERATOR,
                                  OUTCOME_SET_BY_OPERATOR), self.code)
        self.code, self.work_date, self.source = code, work_date, SOURCE_NOTICE
        self._last_notice_at = at
        if self._expected and self._has_reached(self._expected):
            self._expected = None
        return changed

    def apply_schedule(self, at: datetime) -> list[HistoryEntry]:
        """Bring the local schedule up to `at`; return the changes it made."""
        self._check_in_work()
        at = _business(at)
        if at <= self._schedule_at:
            return []
        changes = status_changes_between(self._schedule_at, at, self.calendar, self.timetable)
        self._undo_with_work()
        self._schedule_at = at
        made = []
        for change in changes:
            if self._has_reached(change):
                continue
            if self.source == SOURCE_NOTICE:
                self._expected = self._expected or change
                continue
            entry = HistoryEntry(change.at, self.code, change.cur_code, change.cur_date,
                                 SOURCE_SCHEDULE)
            self._record(entry, self.code)
            self.code, self.work_date = change.cur_code, change.cur_date
            made.append(entry)
        return made

    def alerts(self) -> list[dict[str, Any]]:
        """The alert for a change the schedule expected that no ccms.801 announced within
        `notice_grace_s`, once per expected change. A refused or surprising notice is
        raised by the ccms.801 handler, in the notice's own transaction (one alert per
        notice); the history records its outcome."""
        self._check_in_work()
        expected = self._expected
        if expected is None or expected == self._overdue_raised or \
                (self._schedule_at - expected.at).total_seconds() <= self.notice_grace_s:
            return []
        self._undo_with_work()
        self._overdue_raised = expected
        return [{
            "code": "hvps_status_notice_overdue", "at": expected.at.isoformat(),
            "expected": expected.cur_code, "work_date": expected.cur_date.isoformat(),
            "message": f"no ccms.801 announced status {expected.cur_code} due at "
                       f"{expected.at.isoformat()}; the state stays {self.code}",
        }]

    def _judge(self, orig: str, cur: str, cur_date: date, at: datetime,
               orig_date: str | None, moved_on_by_notice: bool,
               refused_status: str | None = None) -> str:
        outcome = self._judge_change(orig, cur, cur_date, at, moved_on_by_notice,
                                     refused_status)
        if outcome != OUTCOME_ILLEGAL or not self._forecast_is(cur, cur_date, at):
            return outcome
        from_earlier = (orig_date is not None and orig_date < cur_date.isoformat()) or \
            _RANK_AS_CURRENT.get(orig, 0) < _RANK_AS_TARGET[cur]
        if (cur, cur_date) == (self.code, self.work_date) and from_earlier:
            # The NPC, back after being down over a date change, states the status in
            # force, the timetable's for this instant, from an earlier one it last
            # announced (an earlier date, or earlier in the day): nothing changes here.
            # (A change backwards within a date, 20 to 10, is refused.)
            return OUTCOME_REPEAT if self.source == SOURCE_NOTICE else OUTCOME_CONFIRMED
        if cur_date > self.work_date:
            # Notices were missed over a date change (the NPC, or the link, was down
            # across a day end) and the NPC now states the later date's status, the one
            # the timetable also gives for this instant: taken, as a gap, rather than
            # staying on a past work date until the next cut-over.
            return OUTCOME_GAP
        return outcome

    def _judge_change(self, orig: str, cur: str, cur_date: date, at: datetime,
                      moved_on_by_notice: bool, refused_status: str | None = None) -> str:
        if orig not in HVPS_TRANSITIONS or cur not in HVPS_TRANSITIONS:
            return OUTCOME_UNKNOWN_STATUS
        if cur_date < self.work_date and moved_on_by_notice:
            # The NPC itself (or operators who asked it) moved on to a later work date,
            # and the notice's date has had its day end: the notice was sent before that
            # cut-over and delivered late. A cut-over 15 the NPC dated with the old date
            # is the 15 in force. When only the timetable moved on, the forecast may be
            # ahead of an NPC running late (its 20 -> 30 of the date after our forecast
            # cut over), and the notice is judged as before: the first notice wins
            # (`corrected`), or a disagreement holds HVPS sending.
            return OUTCOME_REPEAT if cur == self.code == "15" else OUTCOME_PAST_DATE
        if self._last_notice_at is not None and at < self._last_notice_at:
            return OUTCOME_STALE
        if (cur, cur_date) == (self.code, self.work_date) and (
                orig == cur or cur in HVPS_TRANSITIONS[orig] or orig == refused_status):
            # The notice announces the state already in force: the same notice again, the
            # first one agreeing with the forecast, a notice whose status did not change
            # (orig = cur, as the NPC re-announces its state after its own restart, with
            # OrgnlSysDt the date it last announced), or the NPC moving on from the status
            # of a notice the gateway refused to the one the gateway kept (the two back in
            # step). Nothing changes, nothing to alert.
            return OUTCOME_REPEAT if self.source == SOURCE_NOTICE else OUTCOME_CONFIRMED
        if cur not in HVPS_TRANSITIONS[orig]:
            return OUTCOME_ILLEGAL
        if self.source == SOURCE_SCHEDULE:
            # The schedule was only a forecast: the first notice wins wherever it lands.
            return OUTCOME_APPLIED if orig == self.code else OUTCOME_CORRECTED
        if orig != self.code:
            forward = self._is_forward(StatusChange(at, orig, cur_date, cur, cur_date))
            return OUTCOME_GAP if forward else OUTCOME_ILLEGAL
        if not change_allowed(self.code, self.work_date, cur, cur_date):
            return OUTCOME_ILLEGAL
        return OUTCOME_APPLIED

    def _forecast_is(self, code: str, work_date: date, at: datetime) -> bool:
        phase = hvps_phase(at, self.calendar, self.timetable)
        return (phase.code, phase.work_date) == (code, work_date)

    def _has_reached(self, change: StatusChange) -> bool:
        """Whether the state in force is the scheduled change's or later. The schedule
        dates a cut-over (15) with the new work date, whose first status it is; a notice
        may date it with the old one (see the ranks), so a 15 of either date in force has
        reached the scheduled one. Judged with `_is_forward`, where a 15 as target ranks
        last, a 15 announced by a notice would never reach the scheduled 15, and that
        expectation would stay open until it was raised as overdue."""
        if (self.code, change.cur_code) == ("15", "15") and \
                self.work_date in (change.orig_date, change.cur_date):
            return True
        reached = (change.cur_date, _RANK_AS_CURRENT[change.cur_code])
        return (self.work_date, _RANK_AS_CURRENT[self.code]) >= reached

    def _is_forward(self, change: StatusChange) -> bool:
        target = (change.cur_date, _RANK_AS_TARGET[change.cur_code])
        return target > (self.work_date, _RANK_AS_CURRENT[self.code])

    def _check_in_work(self) -> None:
        assert not self.changed_in_work or in_work(), \
            "the gateway's HVPS window is changed inside the store's work (its one thread)"

    def _undo_with_work(self) -> None:
        """Inside database work (a ccms.801's processing, a tick), the whole state is set
        back as it is now should the work be undone: the notice is then judged again from
        it, not taken for a repeat of itself, and the `window_changed` row it records is
        not lost; the tick's changes are made again by the next tick, and an overdue
        notice raised again (gateway.workstate.on_undo)."""
        kept = (self.code, self.work_date, self.source, self._last_notice_at,
                self._expected, self._overdue_raised, self._schedule_at, list(self.history))

        def restore() -> None:
            (self.code, self.work_date, self.source, self._last_notice_at, self._expected,
             self._overdue_raised, self._schedule_at, history) = kept
            self.history[:] = history
        on_undo(restore)

    def _record(self, entry: HistoryEntry, orig_code: str) -> None:
        self.history.append(entry)
        del self.history[:-HISTORY_ENTRIES_MAX]
        level = logging.INFO if entry.outcome in (OUTCOME_APPLIED, OUTCOME_CONFIRMED) \
            else logging.WARNING
        # Inside database work, written once it commits (an undone notice logs nothing).
        log_after_commit(log, level, [(
            f"event=hvps_window_change source={entry.source} outcome={entry.outcome} "
            f"orig={orig_code} from={entry.from_code} to={entry.to_code} "
            f"work_date={entry.work_date.isoformat()} at={entry.at.isoformat()}")])


def _day_boundaries(day: date, calendar: BusinessCalendar,
                    timetable: Timetable | None) -> list[tuple[datetime, Phase]]:
    """The phase changes that happen on calendar day `day`, in time order."""
    tt = timetable or DEFAULT_TIMETABLE
    out = []
    if calendar.is_working_day(day):
        if not tt.evening_open:
            out.append((_on(day, tt.open_at), Phase.of(DAYTIME, day)))
        if tt.clearing_window_start_at > tt.cutoff_at:
            out.append((_on(day, tt.cutoff_at), Phase.of(CUTOFF, day)))
        out.append((_on(day, tt.clearing_window_start_at), Phase.of(CLEARING_WINDOW, day)))
        out.append((_on(day, tt.clearing_window_end_at), Phase.of(END_OF_DAY, day)))
        # After end of day the work date moves to the next working day, however many
        # days off come first, and preparation for it starts (DOMAIN.md §7).
        following = calendar.next_working_day(day)
        if tt.prepare_at > tt.day_end_at:
            out.append((_on(day, tt.day_end_at), Phase.of(CUTOVER, following)))
        out.append((_on(day, tt.prepare_at), Phase.of(PREPARATION, following)))
    tomorrow = day + timedelta(days=1)
    if tt.evening_open and calendar.is_working_day(tomorrow):
        out.append((_on(day, tt.evening_open_at), Phase.of(DAYTIME, tomorrow)))
    return out


def _on(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=SHANGHAI)


def _business(at: datetime) -> datetime:
    assert at.tzinfo is not None, "business instants must be timezone-aware"
    return at.astimezone(SHANGHAI)

