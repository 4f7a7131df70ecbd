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


def test_events_of_work_are_logged_only_once_it_commits(stream, tmp_path):
    """A payment created by work that fails is never in the log; one created by work
    that commits is, right after the commit (not an interval later)."""
    import ledger
    from gateway import payments
    from gateway.store import Store
    from tests.beps_support import NOW, credit_row

    async def scenario() -> None:
        store = Store(f"sqlite:///{tmp_path / 'gateway.db'}", ledger.Ledger())
        await store.open()
        try:
            def fails(tx):
                payments.insert(tx, credit_row(1, NOW))
                raise RuntimeError("undone")
            with pytest.raises(RuntimeError):
                await store.run(fails)
            await store.run(lambda tx: payments.insert_many(tx, [credit_row(2, NOW)]))
            assert "payment=P2026121200000002" in stream.getvalue()  # written at commit
        finally:
            await store.close()
    import asyncio
    asyncio.run(scenario())
    assert "P2026121200000001" not in stream.getvalue()


def test_a_broken_log_stream_never_stops_the_process(capsys):
    class Gone(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("INFO", Gone())
    try:
        logging.getLogger("paygate.test").warning("event=after_the_reader_left")
        logging.getLogger("paygate.test").warning("event=and_again")
        handler = root.handlers[0]
        assert handler.lost_lines == 2
    finally:
        root.handlers[0].close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_value_cannot_forge_a_line_or_a_field(stream):
    note = "x\nts=2026-12-04T00:00:00Z level=info component=paygate.payments event=forged"
    logging.getLogger("paygate.ops").info("event=held payment=P1 note=%s", logs.value(note))
    logging.getLogger().handlers[0].flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        'note="x\\nts=2026-12-04T00:00:00Z level=info component=paygate.payments '
        'event=forged"')


def test_a_virtual_clock_adds_its_time_to_every_line(stream):
    """On a clock that is not real time each line carries `vts`, the clock's business
    time in +08:00, after the real `ts`; on real time it carries none."""
    from datetime import datetime

    from gateway.clock import SHANGHAI, ManualClock, SystemClock
    clock = ManualClock(datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI))
    log = logging.getLogger("paygate.test")
    try:
        logs.follow_clock(clock)
        log.warning("event=on_the_virtual_day")
        clock.advance(1.5)
        logs.log_lines(log, logging.WARNING, ["event=a", "event=b"])
        logs.follow_clock(SystemClock())
        log.warning("event=on_real_time")
    finally:
        logs.follow_clock(SystemClock())

    lines = stream.getvalue().splitlines()
    stamped = re.compile(r"ts=\S+Z vts=(\S+) level=warning component=paygate.test (.*)")
    assert [stamped.fullmatch(line).groups() for line in lines[:3]] == [
        ("2026-12-07T09:30:00.000000+08:00", "event=on_the_virtual_day"),
        ("2026-12-07T09:30:01.500000+08:00", "event=a"),
        ("2026-12-07T09:30:01.500000+08:00", "event=b")]
    assert LINE.fullmatch(lines[3]).group(3) == "event=on_real_time"


def test_a_librarys_free_text_is_written_as_an_event(stream):
    """A message from a library (not written as event=...) still reads as key=value."""
    logging.getLogger("aiohttp.server").error("Error handling request from %s", "127.0.0.1")
    line = stream.getvalue().splitlines()[-1]
    assert line.endswith('component=aiohttp.server event=library_message '
                         'message="Error handling request from 127.0.0.1"')


def test_the_simulators_lines_always_name_an_event():
    """The simulator's formatter: its own events as they are, a library's text as
    event=library_message, an exception's traceback as one quoted value."""
    from simulators import logfmt
    formatter = logfmt.KeyValueFormatter()

    def formatted(name: str, message: str, **extra: object) -> str:
        record = logging.LogRecord(name, logging.ERROR, "", 0, message, (), None)
        record.__dict__.update(extra)
        return formatter.format(record).split(" ", 3)[3]

    assert formatted("npc.rtgs", "settled", kv_fields={"tx_id": "T1"}) == \
        "event=settled tx_id=T1"
    assert formatted("aiohttp.server", "Error handling request") == \
        'event=library_message message="Error handling request"'


# Logging calls of the product: logger.<level>(...) and logger.log(level, ...).
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _free_text_log_calls() -> list[str]:
    """Every logging call of the product whose message does not start with `event=`
    (the simulator logs through logfmt.event, so any direct call there is one)."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    found = []
    for package in ("gateway", "simulators", "routing", "ledger"):
        for path in sorted((root / package).rglob("*.py")):
            if path.name in ("logs.py", "logfmt.py"):  # the formatters themselves
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in _LOG_METHODS):
                    continue
                owner = node.func.value
                name = getattr(owner, "id", getattr(owner, "attr", ""))
                args = node.args[1:] if node.func.attr == "log" else node.args
                if "log" not in name.lower() or not args:
                    continue
                message = args[0]
                text = message.value if isinstance(message, ast.Constant) else ""
                if not (isinstance(text, str) and text.startswith("event=")):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_every_log_call_of_the_product_is_key_value():
    assert _free_text_log_calls() == []
