"""Structured key=value log lines on standard error.

Every state change of a message or payment in the simulator is one line (at DEBUG only:
a message put in the outbox, whose row records it and whose delivery has a line; a
credit taken, whose settlement, queueing or refusal has a line naming its MesgID; an
acknowledgement taken, which the duplicate set records):

    ts=2026-12-07T09:00:01+08:00 level=info logger=npc.rtgs event=settled mesg_id=... tx_id=... amount_fen=...

Values with spaces, quotes or equals signs are quoted, so a line splits unambiguously.

Lines are written in chunks, as the gateway's are (gateway.logs.LineBuffer): a warning or
an error at once with every line before it, information lines at most 0.2 s later. Under
load the simulator writes four lines per HVPS payment, and one write each cost
about a tenth of its CPU. What happened to a payment is in the database; a crash loses at
most that fraction of a second of information lines.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from typing import Any, TextIO

from gateway.logs import FLUSH_BYTES, LineBuffer

_FIELDS_ATTR = "kv_fields"
_NEEDS_QUOTES = re.compile(r'[ ="\\\n\t]')
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_.]*")


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class _UtcStamp:
    """ISO 8601 UTC time to the millisecond, as datetime.isoformat(timespec="milliseconds")
    writes it, with the date and time of day worked out once per second: a busy simulator
    logs hundreds of lines a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        # datetime.fromtimestamp rounds to the microsecond, half to even; isoformat then
        # cuts to the millisecond.
        fraction, whole = math.modf(created)
        second, micros = int(whole), round(fraction * 1e6)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{micros // 1000:03d}+00:00"


class KeyValueFormatter(logging.Formatter):
    """Formats a record as ts, level, logger, event, then the record's own fields."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _UtcStamp()

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields = getattr(record, _FIELDS_ATTR, None)
        if fields is None and not _EVENT_NAME.fullmatch(message):
            # A library's own message (aiohttp's "Error handling request"): its text as
            # one value, so that every line still names an event.
            message, fields = "library_message", {"message": message}
        line = self.line(record.created, record.levelname, record.name, message, fields)
        if record.exc_info:
            line += f" exc={_quote(self.formatException(record.exc_info))}"
        return line

    def line(self, created: float, level_name: str, logger_name: str, message: str,
             fields: dict[str, Any] | None) -> str:
        """The line of an event without a traceback."""
        parts = [f"ts={self._stamp(created)}", f"level={level_name.lower()}",
                 f"logger={logger_name}", f"event={_quote(message)}"]
        for key, value in (fields or {}).items():
            parts.append(f"{key}={_quote(value)}")
        return " ".join(parts)


class _ProcessLines(LineBuffer):
    """The handler of the simulator's own process, where the simulator's loggers write
    to it alone (`configure` with `libraries`): `event` hands it the event itself, and
    it writes the line its formatter would write of the record, without the record. The
    logging module's path (a record made, the logger's chain walked, the handler
    locked) was about two thirds of a line's cost, for four lines per HVPS payment."""

    def add(self, level: int, logger_name: str, name: str, fields: dict[str, Any]) -> None:
        formatter = self.formatter
        assert isinstance(formatter, KeyValueFormatter)
        line = formatter.line(time.time(), logging.getLevelName(level), logger_name, name,
                              fields)
        with self.lock:  # as Handler.handle holds it around emit
            self._lines.append(line)
            self._bytes += len(line)
            if level >= logging.WARNING or self._bytes >= FLUSH_BYTES:
                self._write()


# The process's handler, once `configure` made it. An event goes straight to it only
# while it is the one handler of the simulator's loggers ("npc", which does not
# propagate, and a logger right below it with no handler or filter of its own): a
# test's log capture, say, adds its own handler there and gets records.
_process_lines: _ProcessLines | None = None
_NPC = logging.getLogger("npc")


def configure(stream: TextIO | None = None, level: int = logging.INFO,
              libraries: bool = False) -> logging.Handler:
    """Send the simulator's loggers to `stream` (standard error by default), once. With
    `libraries` (the simulator's own process), the warnings of the libraries it runs on
    (aiohttp, asyncio) go there too, in the same form, instead of as bare text."""
    root = logging.getLogger("npc")
    for existing in root.handlers:
        if isinstance(existing.formatter, KeyValueFormatter):
            return existing
    handler = (_ProcessLines if libraries else LineBuffer)(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    if libraries:
        global _process_lines
        root.propagate = False  # its lines are written once, by its own handler
        process_root = logging.getLogger()
        process_root.addHandler(handler)
        process_root.setLevel(logging.WARNING)
        _process_lines = handler
    return handler


def event(logger: logging.Logger, name: str, level: int = logging.INFO,
          exc_info: BaseException | None = None, **fields: Any) -> None:
    """Log one event with its key=value fields (and an exception's traceback as `exc`).
    In the simulator's own process an event goes straight to the process's handler when
    nothing else would get its record (`_process_lines`): the same line."""
    if not logger.isEnabledFor(level):
        return
    lines = _process_lines
    if (lines is not None and exc_info is None and logger.parent is _NPC
            and not logger.handlers and not logger.filters and not _NPC.filters):
        handlers = _NPC.handlers
        if len(handlers) == 1 and handlers[0] is lines:
            lines.add(level, logger.name, name, fields)
            return
    logger.log(level, name, extra={_FIELDS_ATTR: fields}, exc_info=exc_info)
