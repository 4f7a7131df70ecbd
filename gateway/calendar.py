"""The business calendar: which dates are working days (法定工作日) for HVPS.

HVPS runs on statutory working days only, including the weekend days the State Council
declares working days to make up for bridged holidays (调休). BEPS runs every calendar
day, so only HVPS and the deadlines that follow it ("by the morning of the next working
day") need this module (DOMAIN.md §1, §2).

Two sources answer, in this order:

1. The operator's calendar file (TOML), which overrides and extends the package data.
   Each `[[day]]` entry gives `date`, `working` and an optional `name`; the optional
   top-level `complete_years` lists years the file describes in full, so that a date of
   such a year that is not listed follows Monday to Friday and still counts as known.
2. The `chinese_calendar` package, for the years it carries data for.

A date neither source knows is assumed to be a working day when it falls on Monday to
Friday, and `alerts()` tells the operators before such a date comes near (CONTRACT.md §3):
the State Council publishes each year's holiday arrangement only in the late autumn
before, so a package release always lags behind.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar

from gateway.clock import SHANGHAI
from gateway.errors import PaygateError, Problem, ProblemList, ValidationFailed

# The longest run of non-working days ever declared is nine (Spring Festival 2026), so a
# search that finds no working day within a year means the calendar file is broken.
WORKING_DAY_SEARCH_DAYS_MAX = 366

ALERT_DATA_MISSING = "calendar_data_missing"

SOURCE_FILE = "file"
SOURCE_PACKAGE = "package"
SOURCE_ASSUMED = "assumed"

# The package names its holidays in English; operators read the Chinese names.
_CHINESE_NAMES = {holiday.value: holiday.chinese for holiday in chinese_calendar.Holiday}
_PACKAGE_YEARS = range(
    min(day.year for day in chinese_calendar.holidays),
    max(day.year for day in chinese_calendar.holidays) + 1,
)
_FILE_KEYS = {"day", "complete_years"}
_DAY_KEYS = {"date", "working", "name"}


@dataclass(frozen=True)
class DayInfo:
    """What the calendar says about one date, and which source said it."""

    day: date
    working: bool
    name: str | None
    source: str

    @property
    def known(self) -> bool:
        return self.source != SOURCE_ASSUMED


@dataclass(frozen=True)
class _FileData:
    days: dict[date, DayInfo]
    complete_years: frozenset[int]


class BusinessCalendar:
    """Working days from the official calendar, corrected by the operator's file."""

    def __init__(self, override_path: str | Path | None = None, alert_days: int = 30) -> None:
        assert alert_days >= 0, "alert_days counts days ahead and cannot be negative"
        self.override_path = Path(override_path) if override_path is not None else None
        self.alert_days = alert_days
        self._file = _load_file(self.override_path) if self.override_path else _empty_file()

    def day_info(self, d: date) -> DayInfo:
        d = _as_date(d)
        listed = self._file.days.get(d)
        if listed is not None:
            return listed
        if d.year in self._file.complete_years:
            return DayInfo(d, d.weekday() < 5, None, SOURCE_FILE)
        if d.year in _PACKAGE_YEARS:
            return _package_day(d)
        return DayInfo(d, d.weekday() < 5, None, SOURCE_ASSUMED)

    def is_working_day(self, d: date) -> bool:
        return self.day_info(d).working

    def is_known(self, d: date) -> bool:
        return self.day_info(d).known

    def holiday_name(self, d: date) -> str | None:
        """The holiday's name when `d` is a named day off; None on working days and
        ordinary weekends. A make-up working day (调休) has no holiday name here; its
        `day_info().name` says which holiday it makes up for."""
        info = self.day_info(d)
        return None if info.working else info.name

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after `d`."""
        return self._search(_as_date(d) + timedelta(days=1), step_days=1)

    def previous_working_day(self, d: date) -> date:
        """The last working day strictly before `d`."""
        return self._search(_as_date(d) - timedelta(days=1), step_days=-1)

    def working_day_on_or_after(self, d: date) -> date:
        return self._search(_as_date(d), step_days=1)

    def deadline_morning(self, start: datetime, cutoff: time = time(12, 0)) -> datetime:
        """The next working day after `start`'s business date, at `cutoff`.

        This is the query/reply rule "the same day, at the latest by the morning of the
        next working day" (DOMAIN.md §2), with the morning ending at `cutoff`.
        """
        assert start.tzinfo is not None, "a deadline's start must be timezone-aware"
        next_day = self.next_working_day(start.astimezone(SHANGHAI).date())
        return datetime.combine(next_day, cutoff, tzinfo=SHANGHAI)

    def first_unknown_day(self, start: date, days: int) -> date | None:
        """The first date from `start` to `start + days` (inclusive) with no data."""
        start = _as_date(start)
        for offset in range(days + 1):
            d = start + timedelta(days=offset)
            if not self.is_known(d):
                return d
        return None

    def alerts(self, today: date) -> list[dict[str, Any]]:
        """One `calendar_data_missing` alert when a date within `alert_days` of today
        has no data, naming the first such date."""
        today = _as_date(today)
        missing = self.first_unknown_day(today, self.alert_days)
        if missing is None:
            return []
        return [{
            "code": ALERT_DATA_MISSING,
            "date": missing.isoformat(),
            "days_ahead": (missing - today).days,
            "message": (
                f"the business calendar has no data for {missing.isoformat()}; until the "
                "calendar file lists it, Monday to Friday are assumed to be working days"
            ),
        }]

    def _search(self, start: date, step_days: int) -> date:
        for offset in range(WORKING_DAY_SEARCH_DAYS_MAX):
            d = start + timedelta(days=offset * step_days)
            if self.is_working_day(d):
                return d
        raise no_working_day_error(start)


def no_working_day_error(start: date) -> PaygateError:
    """The error for a calendar with no working day within the search limit of `start`."""
    return PaygateError(Problem(
        "calendar_must_have_a_working_day_within_a_year", "calendar", start.isoformat(),
        f"a working day within {WORKING_DAY_SEARCH_DAYS_MAX} days",
    ), status=500)


def _as_date(d: date) -> date:
    # A datetime is a date too; it is reduced to its Shanghai business date so that
    # dictionary lookups and weekday arithmetic see a plain date.
    if isinstance(d, datetime):
        assert d.tzinfo is not None, "a business datetime must be timezone-aware"
        return d.astimezone(SHANGHAI).date()
    return d


def _package_day(d: date) -> DayInfo:
    is_off, english = chinese_calendar.get_holiday_detail(d)
    name = _CHINESE_NAMES.get(english, english) if english else None
    return DayInfo(d, not is_off, name, SOURCE_PACKAGE)


def _empty_file() -> _FileData:
    return _FileData({}, frozenset())


def _load_file(path: Path) -> _FileData:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValidationFailed(Problem(
            "calendar_file_must_exist", "calendar.file", str(path), "a readable TOML file",
        )) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValidationFailed(Problem(
            "calendar_file_must_be_toml", "calendar.file", str(path), "UTF-8 TOML",
            f"{path}: {exc}",
        )) from exc
    return _parse_document(document)


def _parse_document(document: dict[str, Any]) -> _FileData:
    problems = ProblemList()
    for key in sorted(set(document) - _FILE_KEYS):
        problems.add("calendar_key_must_be_known", key, key, ", ".join(sorted(_FILE_KEYS)))
    years = _parse_years(document.get("complete_years", []), problems)
    entries = document.get("day", [])
    if not isinstance(entries, list):
        problems.add("calendar_day_must_be_a_table_array", "day", None, "[[day]] tables")
        entries = []
    days: dict[date, DayInfo] = {}
    for index, entry in enumerate(entries):
        info = _parse_day(entry, f"day[{index}]", problems)
        if info is not None and info.day in days:
            problems.add("calendar_day_must_be_listed_once", f"day[{index}].date",
                         info.day.isoformat(), "each date at most once")
        elif info is not None:
            days[info.day] = info
    problems.raise_if_any()
    return _FileData(days, years)


def _parse_years(value: Any, problems: ProblemList) -> frozenset[int]:
    valid = isinstance(value, list) and all(
        isinstance(y, int) and not isinstance(y, bool) and 1900 <= y <= 2999 for y in value
    )
    if not valid:
        problems.add("calendar_complete_years_must_be_years", "complete_years", value,
                     "a list of four-digit years")
        return frozenset()
    return frozenset(value)


def _parse_day(entry: Any, path: str, problems: ProblemList) -> DayInfo | None:
    if not isinstance(entry, dict):
        problems.add("calendar_day_must_be_a_table", path, entry, "a [[day]] table")
        return None
    for key in sorted(set(entry) - _DAY_KEYS):
        problems.add("calendar_key_must_be_known", f"{path}.{key}", key,
                     ", ".join(sorted(_DAY_KEYS)))
    day, working, name = entry.get("date"), entry.get("working"), entry.get("name")
    # TOML has a native local-date type; a quoted string or a datetime is refused so
    # that "2027-1-1" or a time of day never slips in.
    day_ok = isinstance(day, date) and not isinstance(day, datetime)
    if not day_ok:
        problems.add("calendar_day_date_must_be_a_date", f"{path}.date", day,
                     "an unquoted TOML date such as 2027-01-01")
    if not isinstance(working, bool):
        problems.add("calendar_day_working_must_be_true_or_false", f"{path}.working",
                     working, "true or false")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        problems.add("calendar_day_name_must_be_text", f"{path}.name", name,
                     "a non-empty string")
    if not day_ok or not isinstance(working, bool):
        return None
    return DayInfo(day, working, name if isinstance(name, str) else None, SOURCE_FILE)
