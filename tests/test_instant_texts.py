"""An instant written each way the gateway writes it (gateway.clock.texts) reads as the
formatting calls it stands for would have written it."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import SHANGHAI, date_digits, texts

INSTANTS = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30),
                        timezones=st.sampled_from([SHANGHAI, timezone.utc, None]))


@settings(max_examples=500)
@given(INSTANTS)
def test_each_text_is_what_its_formatting_writes(at):
    """isoformat, yyyyMMdd, HHmmss and the CreDtTm's seconds, whole or with microseconds,
    aware or naive."""
    written = texts(at)

    assert written.iso == at.isoformat()
    assert written.day == at.strftime("%Y%m%d")
    assert written.time == at.strftime("%H%M%S")
    assert written.seconds == at.strftime("%Y-%m-%dT%H:%M:%S")


def test_the_next_instant_is_written_anew():
    """The instant kept is the last one asked; another (equal or not) is written anew."""
    first = datetime(2026, 12, 7, 9, 0, 0, tzinfo=SHANGHAI)
    later = first + timedelta(microseconds=1)

    assert texts(first).iso == "2026-12-07T09:00:00+08:00"
    assert texts(later).iso == "2026-12-07T09:00:00.000001+08:00"
    assert texts(first) == texts(datetime(2026, 12, 7, 9, tzinfo=SHANGHAI))


@given(st.dates(min_value=date(1000, 1, 1)))
def test_date_digits_are_strftimes(day):
    """A work date in message ids, as strftime("%Y%m%d") writes it."""
    assert date_digits(day) == day.strftime("%Y%m%d")
