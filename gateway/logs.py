"""Structured logs: one line per event, `key=value` pairs, to standard error.

Every line starts with the time, level and component; the message itself is written as
`event=<what happened>` followed by the ids it concerns (payment, message id, outbox
row), so that `grep payment=P2026120700000001` tells one payment's whole story.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ")
        line = f"ts={at} level={record.levelname.lower()} component={record.name} " \
               f"{record.getMessage()}"
        if record.exc_info:
            line += " traceback=" + repr(self.formatException(record.exc_info))
        return line


def configure(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
