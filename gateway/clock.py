"""One injectable clock per process.

Business time is Asia/Shanghai (UTC+8) whatever the machine's zone (CONTRACT.md §3).
Every time-dependent part of the product takes a `Clock` and never calls
`datetime.now()` itself, so that a whole business day can run in seconds.

Three clocks exist:

- `SystemClock`: real time.
- `ScaledClock`: starts at a chosen business instant and runs `rate` times faster than
  real time. Two processes given the same anchor (real epoch seconds) and the same start
  agree on the time, which is how the demo runs gateway and simulator on one virtual day.
- `ManualClock`: moves only when told to (tests, the discrete-event driver).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


class Clock:
    """The interface: `now()` is an aware datetime in Asia/Shanghai."""

    def now(self) -> datetime:
        raise NotImplementedError

    def today(self) -> date:
        return self.now().date()

    def monotonic(self) -> float:
        """Seconds for measuring durations; never goes back."""
        return time.monotonic()


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(SHANGHAI)


@dataclass
class ScaledClock(Clock):
    """Virtual time = start + (real time since anchor) * rate."""

    start: datetime
    anchor_epoch_s: float
    rate: float = 1.0

    def __post_init__(self) -> None:
        assert self.start.tzinfo is not None, "a clock's start must be timezone-aware"
        assert self.rate > 0, "a clock's rate must be positive"
        self.start = self.start.astimezone(SHANGHAI)

    def now(self) -> datetime:
        elapsed_s = (time.time() - self.anchor_epoch_s) * self.rate
        return self.start + timedelta(seconds=elapsed_s)

    def jump_to(self, at: datetime) -> None:
        """Move the virtual time forward to `at`, the rate kept: `paygate demo` passes from
        one phase of its day to the next without waiting for it. Never back (ValueError).
        A process given the clock's spec earlier keeps the time it had: each one sharing
        the day is moved alike (the simulator: POST /sim/clock)."""
        at = at.astimezone(SHANGHAI)
        now = self.now()
        if at < now:
            raise ValueError(f"a clock never goes back: {at.isoformat()} is before "
                             f"{now.isoformat()}")
        self.start += at - now

    def to_spec(self) -> str:
        """A string another process can turn back into the same clock."""
        return f"{self.start.isoformat()}@{self.anchor_epoch_s!r}x{self.rate!r}"


class ManualClock(Clock):
    """A clock that moves only when `advance` or `set` is called."""

    def __init__(self, start: datetime) -> None:
        assert start.tzinfo is not None, "a clock's start must be timezone-aware"
        self._now = start.astimezone(SHANGHAI)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a clock never goes back"
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, at: datetime) -> None:
        at = at.astimezone(SHANGHAI)
        assert at >= self._now, "a clock never goes back"
        self.advance((at - self._now).total_seconds())


class InstantTexts(NamedTuple):
    """The ways one instant is written: in the database and the API (`iso`), in message
    ids and an envelope header's send date (`day`, yyyyMMdd), as the header's send time
    (`time`, HHmmss) and as a message's CreDtTm (`seconds`, yyyy-MM-ddTHH:mm:ss)."""

    iso: str
    day: str
    time: str
    seconds: str


_last_texts: tuple[datetime | None, InstantTexts | None] = (None, None)


def texts(at: datetime) -> InstantTexts:
    """`at` written each way the gateway writes it, cut from one isoformat(): the work
    that accepts a payment writes its instant about ten times (rows, history, headers,
    the hvps.111), and each strftime or isoformat of an aware datetime costs a few
    microseconds. The last instant asked is kept, by identity (one object is passed
    along one payment's work; the pair is replaced whole, so either thread reads a
    consistent one)."""
    global _last_texts
    last_at, last = _last_texts
    if last_at is at and last is not None:
        return last
    iso = at.isoformat()
    # isoformat() starts yyyy-mm-ddThh:mm:ss for every year from 1000 on.
    made = InstantTexts(iso, iso[:4] + iso[5:7] + iso[8:10], iso[11:13] + iso[14:16] +
                        iso[17:19], iso[:19])
    _last_texts = (at, made)
    return made


def date_digits(day: date) -> str:
    """A date as yyyyMMdd (what strftime("%Y%m%d") writes, for a fraction of its cost)."""
    iso = day.isoformat()
    return iso[:4] + iso[5:7] + iso[8:10]


def clock_from_spec(spec: str | None) -> Clock:
    """Build a clock from `None` (real time) or a `ScaledClock.to_spec()` string.

    A bare ISO datetime means "start there now, at real speed".
    """
    if not spec:
        return SystemClock()
    if "@" not in spec:
        return ScaledClock(start=parse_business_datetime(spec), anchor_epoch_s=time.time())
    start_text, rest = spec.split("@", 1)
    anchor_text, rate_text = rest.split("x", 1)
    return ScaledClock(
        start=parse_business_datetime(start_text),
        anchor_epoch_s=float(anchor_text),
        rate=float(rate_text),
    )


def anchored_spec(spec: str) -> str:
    """The same clock as `spec`, written so that any process reading it later keeps the
    same time: a bare start ("start there now") is anchored to this moment, while an
    empty spec (real time) or an anchored one is kept as it is. A process started again
    from a bare start would begin the day again from its start instead."""
    if not spec or "@" in spec:
        return spec
    clock = clock_from_spec(spec)
    assert isinstance(clock, ScaledClock), "a bare start makes a scaled clock"
    return clock.to_spec()


def parse_business_datetime(text: str) -> datetime:
    """An ISO datetime; a naive one is read as Asia/Shanghai business time."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value.astimezone(SHANGHAI)
