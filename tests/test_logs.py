"""Structured log lines: buffered writes that lose no line and keep warnings prompt, and
many events logged at once that read exactly as one call each."""

from __future__ import annotations

import io
import logging
import re
import time

import pytest

from gateway import logs

LINE = re.compile(r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z level=(\w+) component=([\w.]+) (.*)")


@pytest.fixture()
def stream():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure("INFO", out)
    yield out
    root.handlers[0].close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_information_waits_for_the_interval_and_a_warning_writes_everything(stream):
    log = logging.getLogger("paygate.test")
    log.info("event=first payment=P1")
    assert stream.getvalue() == ""
    log.warning("event=second payment=P1")
    lines = stream.getvalue().splitlines()
    assert [LINE.fullmatch(line).group(1, 3) for line in lines] == [
        ("info", "event=first payment=P1"), ("warning", "event=second payment=P1")]
    log.info("event=third")
    deadline = time.monotonic() + 5
    while "event=third" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.getvalue().endswith("event=third\n")


def test_many_events_at_once_read_as_one_line_each(stream):
    log = logging.getLogger("paygate.payments")
    logs.log_lines(log, logging.INFO, [f"event=beps_sent payment=P{n}" for n in range(3)])
    log.info("event=single payment=P9")
    logging.getLogger().handlers[0].flush()
    parsed = [LINE.fullmatch(line).groups() for line in stream.getvalue().splitlines()]
    assert parsed == [("info", "paygate.payments", f"event=beps_sent payment=P{n}")
                      for n in range(3)] + [("info", "paygate.payments",
                                             "event=single payment=P9")]


def test_nothing_is_written_below_the_level(stream):
    logs.log_lines(logging.getLogger("paygate.x"), logging.DEBUG, ["event=hidden"])
    logging.getLogger().handlers[0].flush()
    assert stream.getvalue() == ""


def test_lines_shown_by_other_handlers_one_event_a_line(caplog):
    with caplog.at_level(logging.INFO):
        logs.log_lines(logging.getLogger("paygate.y"), logging.INFO, ["event=a", "event=b"])
    assert caplog.text.count("event=") == 2 and "event=a\nevent=b" in caplog.text
