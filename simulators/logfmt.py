"""Structured key=value log lines on standard error.

Every state change of a message or payment in the simulator is one line:

    ts=2026-12-07T09:00:01+08:00 level=info logger=npc.rtgs event=settled tx_id=... amount_fen=...

Values with spaces, quotes or equals signs are quoted, so a line splits unambiguously.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_FIELDS_ATTR = "kv_fields"


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class KeyValueFormatter(logging.Formatter):
    """Formats a record as ts, level, logger, event, then the record's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC)
        at_text = at.isoformat(timespec="milliseconds")
        parts = [f"ts={at_text}", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"event={_quote(record.getMessage())}"]
        for key, value in getattr(record, _FIELDS_ATTR, {}).items():
            parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send the simulator's loggers to `stream` (standard error by default), once."""
    root = logging.getLogger("npc")
    for existing in root.handlers:
        if isinstance(existing.formatter, KeyValueFormatter):
            return existing
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its key=value fields."""
    logger.log(level, name, extra={_FIELDS_ATTR: fields})
