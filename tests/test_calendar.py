"""The business calendar: official 2026 data, the operator file, alerts and deadlines."""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path

import pytest

from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI
from gateway.errors import PaygateError, ValidationFailed

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "gateway" / "defaults" / "calendar.toml"

NEW_YEAR_2027 = """
[[day]]
date = 2027-01-01
working = false
name = "元旦"
"""

OVERRIDE_2027 = NEW_YEAR_2027 + """
[[day]]
date = 2026-12-31
working = false
name = "临时停运"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def official() -> BusinessCalendar:
    return BusinessCalendar()


@pytest.mark.parametrize("day, working, name", [
    # Spring Festival 2026: nine days off, 15-23 February, with two make-up Saturdays.
    (date(2026, 2, 13), True, None),
    (date(2026, 2, 14), True, None),
    (date(2026, 2, 15), False, "春节"),
    (date(2026, 2, 17), False, "春节"),
    (date(2026, 2, 23), False, "春节"),
    (date(2026, 2, 24), True, None),
    (date(2026, 2, 28), True, None),
    # National Day week: 1-7 October off; Sunday 20 September and Saturday 10 October work.
    (date(2026, 9, 20), True, None),
    (date(2026, 9, 30), True, None),
    (date(2026, 10, 1), False, "国庆节"),
    (date(2026, 10, 7), False, "国庆节"),
    (date(2026, 10, 8), True, None),
    (date(2026, 10, 10), True, None),
    (date(2026, 10, 11), False, None),
    # Mid-autumn falls on Friday 25 September, the weekend after it is ordinary.
    (date(2026, 9, 25), False, "中秋"),
    (date(2026, 9, 19), False, None),
    # New Year's Eve 2026 is an ordinary Thursday.
    (date(2026, 12, 31), True, None),
])
def test_official_2026_days(official: BusinessCalendar, day: date, working: bool,
                            name: str | None) -> None:
    """The 2026 package data gives holidays, make-up working days and holiday names."""
    assert official.is_working_day(day) is working
    assert official.holiday_name(day) == name
    assert official.is_known(day)


@pytest.mark.parametrize("day, name", [
    (date(2026, 2, 14), "春节"),
    (date(2026, 9, 20), "国庆节"),
    (date(2026, 10, 10), "国庆节"),
    (date(2026, 5, 9), "劳动节"),
])
def test_make_up_working_day_names_its_holiday(official: BusinessCalendar, day: date,
                                               name: str) -> None:
    """A weekend make-up working day (调休) is a working day that names its holiday."""
    info = official.day_info(day)

    assert info.working and day.weekday() >= 5
    assert info.name == name and info.source == "package"


@pytest.mark.parametrize("method, day, expected", [
    ("next_working_day", date(2026, 2, 13), date(2026, 2, 14)),
    ("next_working_day", date(2026, 2, 14), date(2026, 2, 24)),
    ("next_working_day", date(2026, 9, 30), date(2026, 10, 8)),
    ("next_working_day", date(2026, 9, 18), date(2026, 9, 20)),
    ("next_working_day", date(2026, 10, 8), date(2026, 10, 9)),
    ("next_working_day", date(2026, 12, 31), date(2027, 1, 1)),
    ("previous_working_day", date(2026, 10, 8), date(2026, 9, 30)),
    ("previous_working_day", date(2026, 2, 24), date(2026, 2, 14)),
    ("previous_working_day", date(2026, 9, 21), date(2026, 9, 20)),
    ("previous_working_day", date(2026, 10, 12), date(2026, 10, 10)),
    ("working_day_on_or_after", date(2026, 10, 8), date(2026, 10, 8)),
    ("working_day_on_or_after", date(2026, 10, 3), date(2026, 10, 8)),
    ("working_day_on_or_after", date(2027, 1, 2), date(2027, 1, 4)),
])
def test_working_day_search(official: BusinessCalendar, method: str, day: date,
                            expected: date) -> None:
    """Searches step over holidays and stop at make-up working days."""
    assert getattr(official, method)(day) == expected


@pytest.mark.parametrize("day, working", [
    (date(2027, 1, 1), True),
    (date(2027, 1, 2), False),
    (date(2027, 1, 3), False),
    (date(2027, 2, 8), True),
])
def test_year_beyond_package_assumes_monday_to_friday(official: BusinessCalendar, day: date,
                                                      working: bool) -> None:
    """A 2027 date is unknown to the package and assumed to follow Monday to Friday."""
    info = official.day_info(day)

    assert info.working is working
    assert not official.is_known(day) and info.source == "assumed"


@pytest.mark.parametrize("today, alert_days, alert_date", [
    (date(2026, 12, 4), 30, "2027-01-01"),
    (date(2026, 12, 1), 30, None),
    (date(2026, 12, 2), 30, "2027-01-01"),
    (date(2026, 12, 31), 0, None),
    (date(2027, 1, 5), 30, "2027-01-05"),
])
def test_alert_names_first_unknown_date(today: date, alert_days: int,
                                        alert_date: str | None) -> None:
    """An alert names the first date without data within alert_days of today."""
    alerts = BusinessCalendar(alert_days=alert_days).alerts(today)

    assert [a["date"] for a in alerts] == ([alert_date] if alert_date else [])
    assert all(a["code"] == "calendar_data_missing" for a in alerts)


def test_override_makes_2027_new_year_a_holiday(tmp_path: Path) -> None:
    """The operator file makes 2027-01-01 a holiday and overrides a 2026 package date."""
    calendar = BusinessCalendar(_write(tmp_path, OVERRIDE_2027))

    assert not calendar.is_working_day(date(2027, 1, 1))
    assert calendar.holiday_name(date(2027, 1, 1)) == "元旦"
    assert calendar.is_known(date(2027, 1, 1))
    assert not calendar.is_working_day(date(2026, 12, 31))
    assert calendar.next_working_day(date(2026, 12, 30)) == date(2027, 1, 4)
    assert calendar.alerts(date(2026, 12, 4))[0]["date"] == "2027-01-02"


def test_complete_year_is_known_without_listing_every_day(tmp_path: Path) -> None:
    """A year listed in complete_years is known, unlisted dates following Monday-Friday."""
    text = "complete_years = [2027]\n" + OVERRIDE_2027
    calendar = BusinessCalendar(_write(tmp_path, text), alert_days=60)

    assert calendar.is_known(date(2027, 1, 2)) and not calendar.is_working_day(date(2027, 1, 2))
    assert calendar.is_working_day(date(2027, 1, 4))
    assert calendar.alerts(date(2026, 12, 4)) == []


def test_shipped_example_file_loads() -> None:
    """The shipped example calendar loads and still alerts for the rest of 2027."""
    calendar = BusinessCalendar(DEFAULT_FILE)

    assert calendar.holiday_name(date(2027, 10, 1)) == "国庆节"
    assert calendar.alerts(date(2026, 12, 4))[0]["date"] == "2027-01-02"


@pytest.mark.parametrize("text, codes", [
    ('[[day]]\ndate = "2027-01-01"\nworking = false\n',
     ["calendar_day_date_must_be_a_date"]),
    ("[[day]]\ndate = 2027-01-01\nworking = 0\n",
     ["calendar_day_working_must_be_true_or_false"]),
    ("[[day]]\ndate = 2027-01-01T08:00:00\nworking = false\nname = 3\n",
     ["calendar_day_date_must_be_a_date", "calendar_day_name_must_be_text"]),
    ("[[day]]\ndate = 2027-01-01\nworking = false\n[[day]]\ndate = 2027-01-01\nworking = true\n",
     ["calendar_day_must_be_listed_once"]),
    ("[[day]]\ndate = 2027-01-01\nworkng = false\n",
     ["calendar_key_must_be_known", "calendar_day_working_must_be_true_or_false"]),
    ('complete_years = ["2027"]\nholidays = []\n',
     ["calendar_key_must_be_known", "calendar_complete_years_must_be_years"]),
    ("day = 3\n", ["calendar_day_must_be_a_table_array"]),
    ("[[day]\n", ["calendar_file_must_be_toml"]),
])
def test_broken_calendar_file_reports_every_problem(tmp_path: Path, text: str,
                                                     codes: list[str]) -> None:
    """A broken calendar file is refused with one named problem per broken rule."""
    with pytest.raises(ValidationFailed) as caught:
        BusinessCalendar(_write(tmp_path, text))

    assert sorted(p.code for p in caught.value.problems) == sorted(codes)


def test_missing_calendar_file_is_refused(tmp_path: Path) -> None:
    """A configured calendar file that does not exist is refused at start."""
    with pytest.raises(ValidationFailed) as caught:
        BusinessCalendar(tmp_path / "absent.toml")

    assert caught.value.code == "calendar_file_must_exist"


def test_year_without_working_day_fails_loudly(tmp_path: Path) -> None:
    """A file that closes a whole year stops the search with a named problem."""
    complete = "complete_years = [2028]\n" + "".join(
        f"[[day]]\ndate = {date.fromordinal(n).isoformat()}\nworking = false\n"
        for n in range(date(2028, 1, 1).toordinal(), date(2029, 1, 1).toordinal())
    )
    calendar = BusinessCalendar(_write(tmp_path, complete))

    with pytest.raises(PaygateError) as caught:
        calendar.next_working_day(date(2027, 12, 31))

    assert caught.value.code == "calendar_must_have_a_working_day_within_a_year"


@pytest.mark.parametrize("start, cutoff, expected", [
    # Query on a Friday before the Tomb-sweeping holiday: due Tuesday noon.
    (datetime(2026, 4, 3, 10, 0), time(12, 0), datetime(2026, 4, 7, 12, 0)),
    # Arriving late on Friday 13 February: the make-up Saturday counts.
    (datetime(2026, 2, 13, 23, 30), time(12, 0), datetime(2026, 2, 14, 12, 0)),
    # Arriving during the holiday itself.
    (datetime(2026, 10, 3, 9, 0), time(10, 0), datetime(2026, 10, 8, 10, 0)),
    # New Year's Eve 2026: 2027-01-01 is assumed a working Friday without a file.
    (datetime(2026, 12, 31, 15, 0), time(12, 0), datetime(2027, 1, 1, 12, 0)),
])
def test_deadline_morning(official: BusinessCalendar, start: datetime, cutoff: time,
                          expected: datetime) -> None:
    """The reply deadline is the next working day's morning cutoff in Shanghai time."""
    deadline = official.deadline_morning(start.replace(tzinfo=SHANGHAI), cutoff)

    assert deadline == expected.replace(tzinfo=SHANGHAI)


def test_deadline_uses_shanghai_date_of_a_utc_instant(official: BusinessCalendar) -> None:
    """A UTC instant late on Thursday is already Friday in Shanghai."""
    start = datetime.fromisoformat("2026-04-02T17:00:00+00:00")

    assert official.deadline_morning(start) == datetime(2026, 4, 7, 12, 0, tzinfo=SHANGHAI)


def test_deadline_with_override_skips_new_year(tmp_path: Path) -> None:
    """With 2027-01-01 a holiday, a New Year's Eve query is due on Monday 4 January."""
    calendar = BusinessCalendar(_write(tmp_path, NEW_YEAR_2027))
    start = datetime(2026, 12, 31, 15, 0, tzinfo=SHANGHAI)

    assert calendar.deadline_morning(start) == datetime(2027, 1, 4, 12, 0, tzinfo=SHANGHAI)
