"""HVPS phases from the timetable, ccms.801 handling, BEPS settlement and netting rounds."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway import status_hold
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI
from gateway.errors import PaygateError, ValidationFailed
from gateway.windows import (
    HVPS_TRANSITIONS,
    Timetable,
    WindowState,
    beps_settlement_allowed,
    beps_work_date,
    hvps_phase,
    netting_round_for,
    netting_round_label,
    netting_round_times,
    next_change_not_reached,
    next_hvps_opening,
    next_transition,
    status_changes_between,
    timetable_from_settings,
    transitions_between,
)

LATE_WINDOW = Timetable(clearing_window_start_at=Timetable().cutoff_at.replace(minute=15))
EVENING = Timetable(evening_open=True)


def sh(text: str) -> datetime:
    """A Shanghai business instant from "YYYY-MM-DD HH:MM[:SS]"."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def calendar() -> BusinessCalendar:
    return BusinessCalendar()


@pytest.mark.parametrize("at, key, code, work_date, accepts, settles", [
    # Monday 7 December 2026, an ordinary working day.
    ("2026-12-07 08:29", "preparation", "00", "2026-12-07", False, False),
    ("2026-12-07 08:30", "daytime", "10", "2026-12-07", True, True),
    ("2026-12-07 16:59", "daytime", "10", "2026-12-07", True, True),
    ("2026-12-07 17:00", "clearing_window", "30", "2026-12-07", False, True),
    ("2026-12-07 17:31", "end_of_day", "40", "2026-12-07", False, False),
    ("2026-12-07 17:45", "cutover", "15", "2026-12-08", False, False),
    ("2026-12-07 18:00", "preparation", "00", "2026-12-08", False, False),
    # Friday evening to Monday: cut-over to Monday on Friday evening, then preparation
    # for Monday over the weekend.
    ("2026-12-11 17:50", "cutover", "15", "2026-12-14", False, False),
    ("2026-12-11 18:00", "preparation", "00", "2026-12-14", False, False),
    ("2026-12-12 10:00", "preparation", "00", "2026-12-14", False, False),
    ("2026-12-13 17:50", "preparation", "00", "2026-12-14", False, False),
    # National Day holiday: preparation for Thursday 8 October since Wednesday 30
    # September's end of day.
    ("2026-10-01 10:00", "preparation", "00", "2026-10-08", False, False),
    ("2026-10-07 18:30", "preparation", "00", "2026-10-08", False, False),
    # Make-up working Saturday 14 February and Sunday 20 September (调休); after the
    # Saturday the Spring Festival holiday runs to Monday 23 February.
    ("2026-02-14 10:00", "daytime", "10", "2026-02-14", True, True),
    ("2026-02-15 10:00", "preparation", "00", "2026-02-24", False, False),
    ("2026-09-19 20:00", "preparation", "00", "2026-09-20", False, False),
    ("2026-09-20 09:00", "daytime", "10", "2026-09-20", True, True),
    # Friday 9 October cuts over to the make-up working Saturday 10 October, which cuts
    # over to Monday 12 October.
    ("2026-10-09 18:00", "preparation", "00", "2026-10-10", False, False),
    ("2026-10-10 09:00", "daytime", "10", "2026-10-10", True, True),
    ("2026-10-10 17:45", "cutover", "15", "2026-10-12", False, False),
    ("2026-10-11 12:00", "preparation", "00", "2026-10-12", False, False),
])
def test_phase_at_instant(calendar: BusinessCalendar, at: str, key: str, code: str,
                          work_date: str, accepts: bool, settles: bool) -> None:
    """The default timetable gives each instant its phase, code, work date and rights."""
    phase = hvps_phase(sh(at), calendar)

    assert (phase.key, phase.code, phase.work_date.isoformat()) == (key, code, work_date)
    assert (phase.accepts_customer_payments, phase.settles) == (accepts, settles)


@pytest.mark.parametrize("timetable, at, code, work_date", [
    (LATE_WINDOW, "2026-12-07 17:00", "20", "2026-12-07"),
    (LATE_WINDOW, "2026-12-07 17:14", "20", "2026-12-07"),
    (LATE_WINDOW, "2026-12-07 17:15", "30", "2026-12-07"),
    (EVENING, "2026-12-07 08:00", "10", "2026-12-07"),
    (EVENING, "2026-12-07 20:29", "00", "2026-12-08"),
    (EVENING, "2026-12-07 20:30", "10", "2026-12-08"),
    # Friday 20:30 before a weekend: the restricted session of the first day off takes
    # no customer payment, so preparation for Monday goes on.
    (EVENING, "2026-12-11 20:30", "00", "2026-12-14"),
    (EVENING, "2026-12-13 20:29", "00", "2026-12-14"),
    (EVENING, "2026-12-13 20:30", "10", "2026-12-14"),
])
def test_phase_with_configured_timetable(calendar: BusinessCalendar, timetable: Timetable,
                                         at: str, code: str, work_date: str) -> None:
    """A later clearing window shows the cut-off; evening opening starts the day at 20:30."""
    phase = hvps_phase(sh(at), calendar, timetable)

    assert (phase.code, phase.work_date.isoformat()) == (code, work_date)


def test_phase_of_utc_instant(calendar: BusinessCalendar) -> None:
    """An instant in UTC is read in Shanghai time: 00:30Z is 08:30, the opening."""
    assert hvps_phase(datetime.fromisoformat("2026-12-07T00:30:00+00:00"), calendar).code == "10"


@pytest.mark.parametrize("timetable, expected", [
    (None, [("08:30", "10", "12-07"), ("17:00", "30", "12-07"), ("17:30", "40", "12-07"),
            ("17:45", "15", "12-08"), ("18:00", "00", "12-08")]),
    (LATE_WINDOW, [("08:30", "10", "12-07"), ("17:00", "20", "12-07"),
                   ("17:15", "30", "12-07"), ("17:30", "40", "12-07"),
                   ("17:45", "15", "12-08"), ("18:00", "00", "12-08")]),
    (EVENING, [("17:00", "30", "12-07"), ("17:30", "40", "12-07"), ("17:45", "15", "12-08"),
               ("18:00", "00", "12-08"), ("20:30", "10", "12-08")]),
])
def test_transitions_over_a_working_day(calendar: BusinessCalendar,
                                        timetable: Timetable | None,
                                        expected: list[tuple[str, str, str]]) -> None:
    """A Monday runs through every phase and cuts over to Tuesday in the evening."""
    found = transitions_between(sh("2026-12-07 00:00"), sh("2026-12-08 00:00"), calendar,
                                timetable)

    assert [(t.strftime("%H:%M"), p.code, p.work_date.strftime("%m-%d"))
            for t, p in found] == expected


def test_transitions_over_a_weekend(calendar: BusinessCalendar) -> None:
    """Friday's end of day cuts over to Monday at once; nothing changes over the weekend."""
    found = transitions_between(sh("2026-12-11 12:00"), sh("2026-12-14 09:00"), calendar)

    assert [(t.strftime("%a %H:%M"), p.key, p.work_date.day) for t, p in found] == [
        ("Fri 17:00", "clearing_window", 11), ("Fri 17:30", "end_of_day", 11),
        ("Fri 17:45", "cutover", 14), ("Fri 18:00", "preparation", 14),
        ("Mon 08:30", "daytime", 14),
    ]


def test_status_changes_over_a_weekend(calendar: BusinessCalendar) -> None:
    """The ccms.801 changes from Friday to Monday: the cut-over to Monday is Friday's."""
    changes = status_changes_between(sh("2026-12-11 17:10"), sh("2026-12-14 09:00"), calendar)

    assert [(c.at.strftime("%a %H:%M"), c.orig_code, c.orig_date.day, c.cur_code,
             c.cur_date.day) for c in changes] == [
        ("Fri 17:30", "30", 11, "40", 11), ("Fri 17:45", "40", 11, "15", 14),
        ("Fri 18:00", "15", 14, "00", 14), ("Mon 08:30", "00", 14, "10", 14),
    ]


def national_day_expected(at: datetime, opening: datetime) -> tuple[str, str]:
    """What DOMAIN.md §7 gives from 30 September 17:00 on: the clearing window, the end
    of day of the 30th, then the cut-over to the next working day, 8 October, and its
    preparation until it opens at `opening`, then daytime."""
    if at < sh("2026-09-30 17:30"):
        return "30", "2026-09-30"
    if at < sh("2026-09-30 17:45"):
        return "40", "2026-09-30"
    if at < sh("2026-09-30 18:00"):
        return "15", "2026-10-08"
    if at < opening:
        return "00", "2026-10-08"
    return "10", "2026-10-08"


@pytest.mark.parametrize("timetable, opening", [
    (None, "2026-10-08 08:30"), (EVENING, "2026-10-07 20:30")])
def test_clock_walk_over_national_day(calendar: BusinessCalendar,
                                      timetable: Timetable | None, opening: str) -> None:
    """Every quarter of an hour from 30 September 17:00 to 8 October 09:00: after the end
    of day of the 30th the work date is 8 October (1-7 October are days off), in
    preparation until 8 October opens; nothing is ever code 40 for the 30th after 17:45,
    and customer payments are refused all holiday long."""
    at, end = sh("2026-09-30 17:00"), sh("2026-10-08 09:00")
    steps = 0
    while at <= end:
        phase = hvps_phase(at, calendar, timetable)
        expected = national_day_expected(at, sh(opening))
        assert (phase.code, phase.work_date.isoformat()) == expected, at
        assert phase.accepts_customer_payments is (expected[0] == "10"), at
        assert not phase.settles or expected[0] in ("10", "30"), at
        at += timedelta(minutes=15)
        steps += 1
    assert steps == 7 * 96 + 65


@pytest.mark.parametrize("timetable", [None, LATE_WINDOW, EVENING])
def test_whole_year_follows_transition_table(calendar: BusinessCalendar,
                                             timetable: Timetable | None) -> None:
    """Every status change the 2026 schedule makes is allowed by HVPS_TRANSITIONS."""
    changes = status_changes_between(sh("2026-01-01 00:00"), sh("2027-01-01 00:00"), calendar,
                                     timetable)

    assert len(changes) > 5 * 240
    assert [c for c in changes if c.cur_code not in HVPS_TRANSITIONS[c.orig_code]] == []
    assert all(c.cur_date >= c.orig_date for c in changes)


def test_phase_agrees_with_transitions(calendar: BusinessCalendar) -> None:
    """At each transition instant the phase is the new one, an instant before the old one."""
    found = transitions_between(sh("2026-09-17 00:00"), sh("2026-10-12 00:00"), calendar)
    before = hvps_phase(sh("2026-09-17 00:00"), calendar)

    for t, phase in found:
        assert hvps_phase(t - timedelta(microseconds=1), calendar) == before
        assert hvps_phase(t, calendar) == phase
        assert next_transition(t - timedelta(seconds=1), calendar) == (t, phase)
        before = phase


# (case, status in force, its work date, next change shown at 09:00 Monday 7 December)
NEXT_CHANGE_CASES = [
    ("in step with the clock", "10", "2026-12-07", ("2026-12-07 17:00", "30")),
    ("NPC early in the clearing window", "30", "2026-12-07", ("2026-12-07 17:30", "40")),
    ("NPC early at end of day", "40", "2026-12-07", ("2026-12-07 17:45", "15")),
    # Behind: the opening it owes, at its time now past (overdue), not a later change.
    ("NPC behind in preparation", "00", "2026-12-07", ("2026-12-07 08:30", "10")),
    ("NPC already on the next date", "00", "2026-12-08", ("2026-12-08 08:30", "10")),
]


@pytest.mark.parametrize("case, code, work_date, expected", NEXT_CHANGE_CASES,
                         ids=[c[0] for c in NEXT_CHANGE_CASES])
def test_next_change_is_one_the_status_in_force_has_not_reached(
        calendar: BusinessCalendar, case: str, code: str, work_date: str,
        expected: tuple[str, str]) -> None:
    """The next change shown is never one to the status in force or an earlier one."""
    at, phase = next_change_not_reached(sh("2026-12-07 09:00"), code,
                                        date.fromisoformat(work_date), calendar)

    assert (at, phase.code) == (sh(expected[0]), expected[1])


@pytest.mark.parametrize("at, timetable, expected", [
    # Friday evening before the Tomb-sweeping holiday (4-6 April): Tuesday morning.
    ("2026-04-03 19:00", None, "2026-04-07 08:30"),
    ("2026-04-03 19:00", EVENING, "2026-04-06 20:30"),
    # Friday evening before the make-up working Sunday 20 September.
    ("2026-09-18 19:00", None, "2026-09-20 08:30"),
    # Friday before Spring Festival: the make-up Saturday 14 February opens.
    ("2026-02-13 19:00", None, "2026-02-14 08:30"),
    ("2026-02-14 17:00", None, "2026-02-24 08:30"),
    ("2026-09-30 18:00", None, "2026-10-08 08:30"),
    # Open now: the instant itself.
    ("2026-12-07 10:00", None, "2026-12-07 10:00"),
    # New Year's Eve 2026: 2027-01-01 is assumed a working Friday without a calendar file.
    ("2026-12-31 18:00", None, "2027-01-01 08:30"),
])
def test_next_opening(calendar: BusinessCalendar, at: str, timetable: Timetable | None,
                      expected: str) -> None:
    """The next opening skips weekends and holidays and honours make-up working days."""
    assert next_hvps_opening(sh(at), calendar, timetable) == sh(expected)


def test_next_opening_after_new_year_override(tmp_path: Path) -> None:
    """With 2027-01-01 a holiday in the operator file, New Year's Eve waits for Monday."""
    path = tmp_path / "calendar.toml"
    path.write_text('[[day]]\ndate = 2027-01-01\nworking = false\nname = "元旦"\n', "utf-8")

    assert next_hvps_opening(sh("2026-12-31 18:00"), BusinessCalendar(path)) == \
        sh("2027-01-04 08:30")


@pytest.mark.parametrize("at, allowed", [
    ("2026-12-07 02:00", False),
    ("2026-12-07 10:00", True),
    ("2026-12-07 17:10", True),
    ("2026-12-07 17:40", False),
    ("2026-12-12 10:00", False),
    ("2026-02-14 10:00", True),
])
def test_beps_settles_only_while_hvps_settles(calendar: BusinessCalendar, at: str,
                                              allowed: bool) -> None:
    """BEPS net positions settle only in HVPS phases 10 and 30."""
    assert beps_settlement_allowed(sh(at), calendar) is allowed


@pytest.mark.parametrize("at, work_date", [
    ("2026-12-12T23:00:00+08:00", "2026-12-12"),
    ("2026-12-12T16:30:00+00:00", "2026-12-13"),
    ("2026-10-01T00:00:00+08:00", "2026-10-01"),
])
def test_beps_work_date_is_natural_day(at: str, work_date: str) -> None:
    """The BEPS work date is the Shanghai calendar day, holidays included."""
    assert beps_work_date(datetime.fromisoformat(at)).isoformat() == work_date


@pytest.mark.parametrize("interval_min, count, first, last", [
    (30, 48, "2026-12-07 00:30", "2026-12-08 00:00"),
    (60, 24, "2026-12-07 01:00", "2026-12-08 00:00"),
    (25, 58, "2026-12-07 00:25", "2026-12-08 00:00"),
    (15, 96, "2026-12-07 00:15", "2026-12-08 00:00"),
])
def test_netting_round_times(interval_min: int, count: int, first: str, last: str) -> None:
    """Rounds close every interval through the day, the last one at midnight."""
    times = netting_round_times(date(2026, 12, 7), interval_min)

    assert (len(times), times[0], times[-1]) == (count, sh(first), sh(last))


@pytest.mark.parametrize("at, interval_min, netting_date, label", [
    ("2026-12-07 00:00:00", 30, "2026-12-07", "01"),
    ("2026-12-07 00:29:59", 30, "2026-12-07", "01"),
    ("2026-12-07 00:30:00", 30, "2026-12-07", "02"),
    ("2026-12-07 23:59:59", 30, "2026-12-07", "48"),
    ("2026-12-08 00:00:00", 30, "2026-12-08", "01"),
    ("2026-12-07 09:10:00", 60, "2026-12-07", "10"),
])
def test_netting_round_for(at: str, interval_min: int, netting_date: str, label: str) -> None:
    """An item joins the first round closing after it, numbered from 01 each date."""
    found = netting_round_for(sh(at), interval_min)

    assert (found[0].isoformat(), found[1]) == (netting_date, label)


@pytest.mark.parametrize("number, label", [(1, "01"), (9, "09"), (48, "48"), (99, "99")])
def test_netting_round_label(number: int, label: str) -> None:
    """NetgRnd is two digits with a leading zero."""
    assert netting_round_label(number) == label


@pytest.mark.parametrize("interval_min", [0, 10, 14, -30, True])
def test_netting_interval_too_short_is_refused(interval_min: int) -> None:
    """More than 99 rounds a day would not fit NetgRnd, so such an interval is refused."""
    with pytest.raises(ValidationFailed) as caught:
        netting_round_times(date(2026, 12, 7), interval_min)

    assert caught.value.code == "netting_interval_must_give_at_most_99_rounds"


def test_timetable_from_mapping_and_settings() -> None:
    """Times come as "HH:MM" strings or TOML times; settings use hvps_/beps_ names."""
    from_map = Timetable.from_mapping({"clearing_window_start_at": "17:15",
                                       "evening_open": True, "netting_interval_min": 20})
    from_settings = timetable_from_settings(SimpleNamespace(
        hvps_clearing_window_start_at="17:15", hvps_evening_open=True,
        beps_netting_interval_min=20, bank_code="999100000019"))

    assert from_map == from_settings
    assert from_map.clearing_window_start_at.isoformat() == "17:15:00"
    assert from_map.open_at.isoformat() == "08:30:00"


@pytest.mark.parametrize("mapping, codes", [
    ({"open_at": "8:30"}, ["timetable_time_must_be_hh_mm"]),
    ({"open_at": "24:00"}, ["timetable_time_must_be_hh_mm"]),
    ({"opening_at": "08:30"}, ["timetable_key_must_be_known"]),
    ({"evening_open": "yes"}, ["timetable_flag_must_be_true_or_false"]),
    ({"cutoff_at": "08:00"}, ["timetable_times_must_be_in_order"]),
    ({"clearing_window_end_at": "17:00"}, ["timetable_times_must_be_in_order"]),
    ({"evening_open": True, "evening_open_at": "17:50"}, ["timetable_times_must_be_in_order"]),
    ({"netting_interval_min": 5}, ["netting_interval_must_give_at_most_99_rounds"]),
    ({"open_at": "x", "close_at": "17:00"},
     ["timetable_key_must_be_known", "timetable_time_must_be_hh_mm"]),
])
def test_bad_timetable_is_refused(mapping: dict[str, object], codes: list[str]) -> None:
    """A broken timetable is refused with a named problem for each broken rule."""
    with pytest.raises(ValidationFailed) as caught:
        Timetable.from_mapping(mapping)

    assert sorted(p.code for p in caught.value.problems) == sorted(codes)


def test_zero_length_cutover_is_skipped(calendar: BusinessCalendar) -> None:
    """With preparation at day end the cut-over is not announced: 40 goes to 00."""
    timetable = Timetable.from_mapping({"prepare_at": "17:45"})
    changes = status_changes_between(sh("2026-12-07 17:20"), sh("2026-12-07 18:00"), calendar,
                                     timetable)

    assert [(c.orig_code, c.cur_code) for c in changes] == [("30", "40"), ("40", "00")]


def feed(state: WindowState, day: str, rows: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    """Apply a table's notices (orig, cur, date, at on `day`, ...) in order: for each, the
    outcome and the status in force after it."""
    return [(state.apply_notice(orig, cur, cur_date, sh(f"{day} {at}")), state.code)
            for orig, cur, cur_date, at, *_expected in rows]


def expected(rows: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    """A table's expected outcome and status in force, its last two columns."""
    return [(outcome, code) for *_notice, outcome, code in rows]


# One HVPS day announced by ccms.801, each notice legal: (orig, cur, date, at) -> outcome.
LEGAL_DAY = [
    ("00", "10", "2026-12-07", "08:30", "applied", "10"),
    ("10", "20", "2026-12-07", "17:00", "applied", "20"),
    ("20", "30", "2026-12-07", "17:15", "applied", "30"),
    ("30", "40", "2026-12-07", "17:30", "applied", "40"),
    ("40", "15", "2026-12-08", "17:45", "applied", "15"),
    ("15", "00", "2026-12-08", "18:00", "applied", "00"),
    ("15", "00", "2026-12-08", "18:01", "repeat", "00"),
]


def test_window_state_follows_legal_notices(calendar: BusinessCalendar) -> None:
    """A legal sequence of ccms.801 notices moves the state through the day."""
    state = WindowState(calendar, sh("2026-12-07 08:00"))
    outcomes = feed(state, "2026-12-07", LEGAL_DAY)

    assert outcomes == expected(LEGAL_DAY)
    assert state.work_date == date(2026, 12, 8) and state.source == "ccms.801"
    assert [(e.from_code, e.to_code, e.source, e.outcome) for e in state.history][:3] == [
        (None, "00", "schedule", "initial"), ("00", "10", "ccms.801", "applied"),
        ("10", "20", "ccms.801", "applied"),
    ]
    assert len(state.history) == 7
    assert state.alerts() == []


def test_window_state_takes_captured_sample_notice(calendar: BusinessCalendar) -> None:
    """The captured notice, 40 on 2024-05-20 to 00 on 2024-05-21, is a legal cut-over."""
    state = WindowState(calendar, sh("2024-05-20 17:31"))
    state.apply_notice("30", "40", "2024-05-20", sh("2024-05-20 17:31"))

    assert state.apply_notice("40", "00", "2024-05-21", sh("2024-05-20 17:33:43")) == "applied"
    assert (state.code, state.work_date) == ("00", date(2024, 5, 21))


# Fed in order after 00 -> 10 at 08:30: (orig, cur, date, at) -> outcome, state after.
ILLEGAL_SEQUENCE = [
    ("10", "00", "2026-12-07", "09:00", "illegal", "10"),
    ("00", "30", "2026-12-07", "09:01", "illegal", "10"),
    ("10", "20", "2026-12-06", "09:02", "illegal", "10"),
    ("10", "20", "2026-12-08", "09:03", "illegal", "10"),
    ("10", "99", "2026-12-07", "09:04", "unknown_status", "10"),
    ("00", "10", "2026-12-07", "08:00", "stale", "10"),
    ("30", "40", "2026-12-07", "17:31", "gap", "40"),
    ("00", "10", "2026-12-07", "17:40", "illegal", "40"),
    ("15", "00", "2026-12-08", "18:00", "gap", "00"),
]


def test_window_state_records_illegal_notices(calendar: BusinessCalendar) -> None:
    """Illegal, stale and unknown notices are recorded and refused; missed ones are gaps."""
    state = WindowState(calendar, sh("2026-12-07 08:00"))
    state.apply_notice("00", "10", "2026-12-07", sh("2026-12-07 08:30"))
    outcomes = feed(state, "2026-12-07", ILLEGAL_SEQUENCE)

    assert outcomes == expected(ILLEGAL_SEQUENCE)
    assert [e.outcome for e in state.history[2:]] == [row[4] for row in ILLEGAL_SEQUENCE]
    assert state.alerts() == []  # the ccms.801 handler raises them, once each


def test_later_date_stated_after_missed_notices_is_a_gap(calendar: BusinessCalendar) -> None:
    """The NPC was down over a night (or the link was): on its return it states the new
    date's status in one notice. Where the timetable gives that very status for now, the
    notices in between were missed (a gap); any other date jump is still refused."""
    state = WindowState(calendar, sh("2026-12-07 08:00"))
    state.apply_notice("00", "10", "2026-12-07", sh("2026-12-07 08:30"))
    state.apply_schedule(sh("2026-12-08 09:10"))

    assert state.apply_notice("10", "20", "2026-12-08", sh("2026-12-08 09:10")) == "illegal"
    assert state.apply_notice("10", "10", "2026-12-08", sh("2026-12-08 09:11")) == "gap"
    assert (state.code, state.work_date) == ("10", date(2026, 12, 8))
    assert state.alerts() == []  # the expected changes are behind the state in force

    saturday = WindowState(calendar, sh("2026-12-12 10:00"))
    assert (saturday.code, saturday.work_date) == ("00", date(2026, 12, 14))
    assert saturday.apply_notice("10", "00", "2026-12-14", sh("2026-12-12 10:00"),
                                 "2026-12-11") == "confirmed"
    assert saturday.apply_notice("10", "30", "2026-12-11", sh("2026-12-12 10:01")) == "illegal"

    monday = WindowState(calendar, sh("2026-12-14 09:00"))
    assert monday.apply_notice("40", "10", "2026-12-14", sh("2026-12-14 09:00"),
                               "2026-12-11") == "confirmed"
    assert monday.apply_notice("40", "10", "2026-12-14", sh("2026-12-14 09:01"),
                               "2026-12-14") == "illegal"  # back within one date

    friday = WindowState(calendar, sh("2026-12-11 17:20"))
    friday.apply_notice("30", "40", "2026-12-11", sh("2026-12-11 17:31"))
    assert friday.apply_notice("40", "10", "2026-12-14", sh("2026-12-14 08:40")) == "gap"
    assert friday.work_date == date(2026, 12, 14) and friday.accepts_customer_payments


def test_illegal_notice_is_logged(calendar: BusinessCalendar,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """A refused notice leaves one warning line naming the outcome and both codes."""
    state = WindowState(calendar, sh("2026-12-07 08:00"))
    with caplog.at_level(logging.INFO, logger="paygate.windows"):
        state.apply_notice("10", "00", "2026-12-07", sh("2026-12-07 09:00"))

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [(
        "WARNING",
        "event=hvps_window_change source=ccms.801 outcome=illegal orig=10 from=00 to=00 "
        "work_date=2026-12-07 at=2026-12-07T09:00:00+08:00",
    )]


def test_schedule_drives_until_first_notice(calendar: BusinessCalendar) -> None:
    """Before any notice the schedule moves the state; a late NPC's notice corrects it."""
    state = WindowState(calendar, sh("2026-12-07 08:00"))
    made = state.apply_schedule(sh("2026-12-07 17:10"))

    assert [(e.to_code, e.source) for e in made] == [("10", "schedule"), ("30", "schedule")]
    assert state.code == "30" and state.settles and not state.accepts_customer_payments
    assert state.apply_notice("10", "20", "2026-12-07", sh("2026-12-07 17:20")) == "corrected"
    assert state.code == "20"


def test_notices_rule_once_they_arrive(calendar: BusinessCalendar) -> None:
    """After a notice the schedule no longer moves the state but flags an overdue notice."""
    state = WindowState(calendar, sh("2026-12-07 08:00"))
    state.apply_notice("00", "10", "2026-12-07", sh("2026-12-07 08:31"))
    made = state.apply_schedule(sh("2026-12-07 17:05"))
    quiet = state.alerts()
    state.apply_schedule(sh("2026-12-07 17:20"))
    overdue = state.alerts()
    state.apply_notice("10", "30", "2026-12-07", sh("2026-12-07 17:21"))

    assert made == [] and state.code == "30"
    assert quiet == []
    assert [(a["code"], a["expected"]) for a in overdue] == [("hvps_status_notice_overdue", "30")]
    assert state.alerts() == []


# The NPC's evening around a cut-over, the gateway's schedule ticking every 5 minutes
# (a 1 s tick on a clock running 300 times real time): notices (at, orig, cur, cur date)
# from the 30 -> 40 of the working day, and the overdue alerts the window raises. Friday
# 2026-09-18 cuts over to Sunday 2026-09-20, worked in place of National Day (调休); the
# schedule is followed into the Saturday evening, where no change is due.
CUTOVER_EVENINGS = [
    ("15 just before the schedule passes 17:45, Friday", "2026-09-18 17:20",
     "2026-09-19 18:20", [("2026-09-18 17:30", "30", "40", "2026-09-18"),
                          ("2026-09-18 17:44:59", "40", "15", "2026-09-20"),
                          ("2026-09-18 18:00", "15", "00", "2026-09-20")], []),
    ("15 just before the schedule passes 17:45, working Sunday", "2026-09-20 17:20",
     "2026-09-20 18:20", [("2026-09-20 17:30", "30", "40", "2026-09-20"),
                          ("2026-09-20 17:44:59", "40", "15", "2026-09-21"),
                          ("2026-09-20 18:00", "15", "00", "2026-09-21")], []),
    ("15 after the schedule passed 17:45", "2026-09-20 17:20", "2026-09-20 18:20",
     [("2026-09-20 17:30", "30", "40", "2026-09-20"),
      ("2026-09-20 17:47", "40", "15", "2026-09-21"),
      ("2026-09-20 18:00", "15", "00", "2026-09-21")], []),
    ("15 dated with the old work date", "2026-09-20 17:20", "2026-09-20 18:20",
     [("2026-09-20 17:30", "30", "40", "2026-09-20"),
      ("2026-09-20 17:45", "40", "15", "2026-09-20"),
      ("2026-09-20 18:00", "15", "00", "2026-09-21")], []),
    ("no 15: 40 straight to 00, as in the captured notice", "2026-09-20 17:20",
     "2026-09-20 18:20", [("2026-09-20 17:30", "30", "40", "2026-09-20"),
                          ("2026-09-20 17:50", "40", "00", "2026-09-21")], []),
    ("the NPC silent after 40", "2026-09-20 17:20", "2026-09-20 18:20",
     [("2026-09-20 17:30", "30", "40", "2026-09-20")], [("15", "2026-09-20T17:45:00+08:00")]),
]


@pytest.mark.parametrize("case, start, end, notices, alerts", CUTOVER_EVENINGS,
                         ids=[row[0] for row in CUTOVER_EVENINGS])
def test_a_cutover_announced_is_not_raised_as_overdue(
        calendar: BusinessCalendar, case: str, start: str, end: str,
        notices: list[tuple[str, ...]], alerts: list[tuple[str, str]]) -> None:
    """A ccms.801 that announced the cut-over (15) or what follows it, before or after
    the schedule passes 17:45, closes the schedule's expectation: no overdue alert. Only
    a cut-over that no notice announced within the grace is raised, once."""
    state = WindowState(calendar, sh(start))
    ticks = [sh(start) + timedelta(minutes=5 * n) for n in range(1, 24 * 12 * 2)]
    events = sorted([(sh(at), 0, (orig, cur, cur_date)) for at, orig, cur, cur_date in notices]
                    + [(at, 1, None) for at in ticks if at <= sh(end)])
    raised, outcomes = [], []
    for at, _order, notice in events:
        if notice is None:
            state.apply_schedule(at)
            raised.extend((a["expected"], a["at"]) for a in state.alerts())
        else:
            outcomes.append(state.apply_notice(*notice, at))

    assert set(outcomes) <= {"applied", "confirmed"}, outcomes
    assert raised == alerts
    assert state.code == ("00" if notices[-1][2] != "40" else "40")


def test_first_notice_confirms_schedule(calendar: BusinessCalendar) -> None:
    """A first notice matching the forecast confirms it; the same notice again is a repeat."""
    state = WindowState(calendar, sh("2026-12-07 09:00"))

    assert state.apply_notice("00", "10", "2026-12-07", sh("2026-12-07 09:01")) == "confirmed"
    assert state.apply_notice("00", "10", "2026-12-07", sh("2026-12-07 09:02")) == "repeat"
    assert [e.outcome for e in state.history] == ["initial", "confirmed"]


# Notices announcing no change, on the morning of Tuesday 8 December (schedule: 10):
# (orig, cur, cur date, at) -> outcome, status in force after. OrgnlSysDt is not judged.
RESTATED = [
    # The NPC restarted and re-announces its state: 10 on the 7th, now 10 on the 8th.
    ("10", "10", "2026-12-08", "09:00", "confirmed", "10"),
    # Once notices rule, the same statement again is a repeat, as any repeated notice.
    ("10", "10", "2026-12-08", "09:01", "repeat", "10"),
    # A restated status that is not the state in force is no change we can take.
    ("00", "00", "2026-12-08", "09:02", "illegal", "10"),
    ("10", "10", "2026-12-07", "09:03", "illegal", "10"),
    # An impossible change that lands on the state in force is still refused.
    ("20", "10", "2026-12-08", "09:04", "illegal", "10"),
]


def test_notice_restating_the_state_in_force_is_quiet(calendar: BusinessCalendar) -> None:
    """A ccms.801 whose status did not change and which names the state in force confirms
    it; a restated status that differs, or an impossible change, is refused."""
    state = WindowState(calendar, sh("2026-12-08 09:00"))
    outcomes = feed(state, "2026-12-08", RESTATED)

    assert outcomes == expected(RESTATED)
    assert [e.outcome for e in state.history] == ["initial", "confirmed", "illegal",
                                                  "illegal", "illegal"]
    assert state.alerts() == []  # the ccms.801 handler raises the three refusals


# At 09:00 on Tuesday 8 December, the timetable's state 10 in force, one notice each:
# (system, orig, orig date, cur, cur date) -> rows the gateway records in `alerts`.
NOTICE_RECORDS = [
    ("HVPS", "10", "2026-12-07", "10", "2026-12-08", []),
    ("HVPS", "00", "2026-12-08", "10", "2026-12-08", []),
    ("HVPS", "10", "2026-12-08", "30", "2026-12-08",
     [("window_changed", {"system": "HVPS", "from": "10", "to": "30",
                          "work_date": "2026-12-08",
                          "source": "ccms.801"})]),
    ("HVPS", "20", "2026-12-08", "30", "2026-12-08",
     [("window_changed", {"system": "HVPS", "from": "10", "to": "30",
                          "work_date": "2026-12-08",
                          "source": "ccms.801"})]),
    ("HVPS", "10", "2026-12-08", "00", "2026-12-08",
     [("hvps_status_notice_refused", {"orig": "10", "cur": "00", "date": "2026-12-08",
                                      "outcome": "illegal"})]),
    ("BEPS", "10", "2026-12-08", "10", "2026-12-08", []),
    ("BEPS", "10", "2026-12-07", "10", "2026-12-08",
     [("window_changed", {"system": "BEPS", "from": "10", "to": "10",
                          "work_date": "2026-12-08",
                          "source": "ccms.801"})]),
]


@pytest.mark.parametrize("system, orig, orig_date, cur, cur_date, rows", NOTICE_RECORDS)
def test_gateway_records_a_window_change_only_when_the_state_changes(
        tmp_path: Path, system: str, orig: str, orig_date: str, cur: str, cur_date: str,
        rows: list) -> None:
    """A `window_changed` row names the state in force before and after; a notice that
    restates the state in force leaves no row, a refused one leaves its alert only (and
    the hold of HVPS sending it starts, gateway.status_hold)."""
    import asyncio
    import json

    from gateway.app import Gateway
    from gateway.clock import ManualClock
    from gateway.config import Settings

    now = sh("2026-12-08 09:00")
    notice = SimpleNamespace(obj=SimpleNamespace(
        header=SimpleNamespace(system=system), orig_status=orig, orig_date=orig_date,
        cur_status=cur, cur_date=cur_date))

    async def scenario() -> list:
        gw = Gateway(Settings(data_dir=str(tmp_path)), clock=ManualClock(now))
        await gw.store.open()
        try:
            await gw.store.run(lambda tx: gw.handlers.on_system_status(tx, notice, now))
            return await gw.store.run(lambda tx: (tx.query(
                "SELECT code, detail FROM alerts ORDER BY id", ()), status_hold.read(tx)))
        finally:
            await gw.store.close()
    recorded, hold = asyncio.run(scenario())

    assert [(code, json.loads(detail)) for code, detail in recorded] == rows
    refused = any(code == "hvps_status_notice_refused" for code, _ in rows)
    assert (hold is not None) == refused
    if refused:
        assert (hold["orig"], hold["cur"], hold["status"]) == (orig, cur, "10")


def test_calendar_without_working_day_fails_loudly(tmp_path: Path) -> None:
    """A calendar file closing all of 2028 stops the search for an opening by name."""
    path = tmp_path / "calendar.toml"
    path.write_text("complete_years = [2028]\n" + "".join(
        f"[[day]]\ndate = {date.fromordinal(n).isoformat()}\nworking = false\n"
        for n in range(date(2028, 1, 1).toordinal(), date(2029, 1, 1).toordinal())
    ), "utf-8")

    with pytest.raises(PaygateError) as caught:
        next_hvps_opening(sh("2027-12-31 18:00"), BusinessCalendar(path))

    assert caught.value.code == "calendar_must_have_a_working_day_within_a_year"


# (status in force, its work date, the clock while the NPC is offline, the change shown)
OFFLINE_CASES = [
    # Monday's end of day, no notice since: the cut-over it owes, not Tuesday's opening.
    ("40", "2026-12-07", "2026-12-07 19:00", ("2026-12-07 17:45", "15")),
    # ... still none on Tuesday morning: not Tuesday's clearing window either.
    ("40", "2026-12-07", "2026-12-08 10:00", ("2026-12-07 17:45", "15")),
    # Open on Monday, offline until Tuesday: Monday's clearing window is what it owes.
    ("10", "2026-12-07", "2026-12-08 10:00", ("2026-12-07 17:00", "30")),
    # Friday's end of day, offline over the weekend: the cut-over to Monday.
    ("40", "2026-12-04", "2026-12-06 12:00", ("2026-12-04 17:45", "15")),
]


@pytest.mark.parametrize("code, work_date, at, expected", OFFLINE_CASES)
def test_next_change_of_an_npc_offline_is_the_one_it_owes(
        calendar: BusinessCalendar, code: str, work_date: str, at: str,
        expected: tuple[str, str]) -> None:
    """While no notice comes, the next change is the one the status in force makes next,
    at its forecast time (past), never one of a work date that has not begun."""
    shown_at, phase = next_change_not_reached(sh(at), code, date.fromisoformat(work_date),
                                              calendar)

    assert (shown_at, phase.code) == (sh(expected[0]), expected[1])
    assert phase.work_date >= date.fromisoformat(work_date)


def test_ops_status_says_a_change_not_announced_in_time_is_overdue(
        calendar: BusinessCalendar) -> None:
    from gateway.ops import cli_render, snapshot

    gw = SimpleNamespace(clock=SimpleNamespace(now=lambda: sh("2026-12-08 10:00")),
                         hvps_status="40", hvps_open=False, work_date=date(2026, 12, 7),
                         calendar=calendar, timetable=None)

    shown = snapshot.window(gw)["next"]

    assert (shown["at"], shown["status"], shown["overdue"]) == (
        sh("2026-12-07 17:45").isoformat(), "15", True)
    assert "(overdue: not announced by the NPC)" in cli_render.next_change(shown)


def test_ops_window_shows_the_next_change_not_yet_reached(calendar: BusinessCalendar) -> None:
    """`ops status` and the console never show "next change -> 30" while 30 is in force
    (the NPC moved early): they show the change after it."""
    from gateway.ops import snapshot

    gw = SimpleNamespace(clock=SimpleNamespace(now=lambda: sh("2026-12-07 09:00")),
                         hvps_status="30", hvps_open=False, work_date=date(2026, 12, 7),
                         calendar=calendar, timetable=None)

    shown = snapshot.window(gw)["next"]

    assert (shown["at"], shown["status"]) == (sh("2026-12-07 17:30").isoformat(), "40")
