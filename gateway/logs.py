"""Structured logs: one line per event, `key=value` pairs, to standard error.

Every line starts with the time, level and component; the message itself is written as
`event=<what happened>` followed by the ids it concerns (payment, message id, outbox
row), so that `grep payment=P2026120700000001` tells one payment's whole story.


Lines are written in chunks (`LineBuffer`): a warning or an error at once, with every
line before it; the events of a transaction right after it commits (gateway.store
logs them then, and only if it commits: a rolled-back payment never appears in the
log); other information lines at most FLUSH_INTERVAL_S later. Under load the gateway
writes several lines per payment; one write per line cost about a sixth of its
database thread. A line break inside a value is written as \\n, so no value can forge a
line.

`ts` is the machine's real time in UTC. When the gateway runs on a clock that is not
real time (PAYGATE_CLOCK, the demo, `simulate-day`, tests), each line also carries
`vts`, the business time of that clock in +08:00 as the API and the messages show it,
so that a line can be matched with the payments and notices it concerns
(`follow_clock`).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from gateway.clock import Clock, SystemClock

FLUSH_INTERVAL_S = 0.2
# The clock whose time is written as `vts`; None when the process runs on real time.
_virtual_clock: Clock | None = None


def follow_clock(clock: Clock) -> None:
    """Write `clock`'s time on every line as `vts`, unless it is real time."""
    global _virtual_clock
    _virtual_clock = None if isinstance(clock, SystemClock) else clock


def unfollow_clock(clock: Clock) -> None:
    """Stop writing `clock`'s time (its gateway stopped), if it is the one written."""
    global _virtual_clock
    if _virtual_clock is clock:
        _virtual_clock = None
FLUSH_BYTES = 64 * 1024


class KeyValueFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # the date and time to the second, made once a second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        micros = int((record.created - second) * 1_000_000)
        virtual = _virtual_clock
        vts = "" if virtual is None else \
            f"vts={virtual.now().isoformat(timespec='microseconds')} "
        prefix = f"ts={self._second_text}.{micros:06d}Z {vts}" \
                 f"level={record.levelname.lower()} component={record.name} "
        if isinstance(record.msg, Lines):
            return "\n".join(prefix + _one_line(message) for message in record.msg)
        line = prefix + _one_line(_structured(record.getMessage()))
        if record.exc_info:
            line += " traceback=" + repr(self.formatException(record.exc_info))
        return line


def _structured(message: str) -> str:
    """Every line of the gateway says `event=...`; a library's own message (aiohttp's
    "Error handling request", asyncio's "Task exception was never retrieved") is written
    as event=library_message with its text as one quoted value."""
    if message.startswith("event="):
        return message
    return "event=library_message message=" + value(message)


def _one_line(message: str) -> str:
    """A message as one line: a line break inside a value (an operator's note, a name)
    is written as \\n, so no value can start a line of its own that reads as an event."""
    if "\n" in message or "\r" in message:
        return message.replace("\r", "\\r").replace("\n", "\\n")
    return message


def value(v: object) -> str:
    """A value for `key=value`: quoted (with \\ and \" escaped) when it is empty or holds
    a space, a quote or an equals sign, so that a line splits one way only."""
    text = str(v)
    if text and not any(c in text for c in ' "=\\\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Lines(tuple):
    """Many events logged as one record (`log_lines`): each becomes its own line."""

    def __str__(self) -> str:  # for handlers other than ours: one event a line all the same
        return "\n".join(self)


def log_lines(logger: logging.Logger, level: int, messages: list[str]) -> None:
    """Log many events of one kind at once (a package's thousand payments moving
    together): the same lines as one call each, at a fraction of the cost."""
    if messages and logger.isEnabledFor(level):
        logger.log(level, Lines(messages))


class LineBuffer(logging.StreamHandler):
    """A stream handler that writes lines in chunks (see the module's docstring)."""

    def __init__(self, stream: TextIO, interval_s: float = FLUSH_INTERVAL_S) -> None:
        super().__init__(stream)
        self.interval_s = interval_s
        self._lines: list[str] = []
        self._bytes = 0
        self._closed = False
        self.lost_lines = 0
        self._loss_reported = False
        threading.Thread(target=self._flush_every_interval, name="log-flush",
                         daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds self.lock here.
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        self._bytes += len(line)
        if record.levelno >= logging.WARNING or self._bytes >= FLUSH_BYTES:
            self._write()

    def _write(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines, self._bytes = [], 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError) as exc:
            # The stream is gone (a closed file, a reader that went away). Logging must
            # never stop the gateway: the lines are counted as lost, and the first loss
            # is reported on the process's own standard error if that still works.
            self.lost_lines += text.count("\n")
            if not self._loss_reported:
                self._loss_reported = True
                try:
                    sys.__stderr__.write(f"event=log_lines_lost error={value(repr(exc))}\n")
                except (OSError, ValueError, AttributeError):
                    pass  # nowhere left to say it; lost_lines still counts

    def flush(self) -> None:
        with self.lock:
            self._write()

    def close(self) -> None:
        self.flush()
        self._closed = True
        super().close()

    def _flush_every_interval(self) -> None:
        while not self._closed:
            time.sleep(self.interval_s)
            if self._lines:
                self.flush()


def write_now() -> None:
    """Write the buffered lines at once (after a commit, so that the events of committed
    work are on disk with it rather than up to FLUSH_INTERVAL_S later)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LineBuffer):
            handler.flush()


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    # Lines name no source file, thread or process: not collecting them halves the cost
    # of a line (the logging HOWTO's "Optimization" section lists these switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for old in logging.getLogger().handlers:
        if isinstance(old, LineBuffer):
            old.close()
    handler = LineBuffer(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
