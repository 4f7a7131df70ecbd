"""The simulator's own process writes an event's line without a log record
(logfmt._ProcessLines): the same line the formatter writes of the record, and only while
the simulator's records have no other handler to reach."""

from __future__ import annotations

import io
import logging

import pytest

from simulators import logfmt

EVENTS = [
    (logging.INFO, "npc.rtgs", "settled", {"sender": "999100000019", "amount_fen": 15_000,
                                           "end_to_end_id": "E2E 1", "note": 'a "b" = c'}),
    (logging.WARNING, "npc.link", "delivery_retry_scheduled",
     {"dest": "999100000019", "pause_s": 0.2, "last": "answered 503", "empty": ""}),
    (logging.INFO, "npc.peers", "peer_received", {}),
]


def _lines(handler: logfmt._ProcessLines, stream: io.StringIO) -> list[str]:
    handler.flush()
    # The time of writing differs between two lines; everything after it is compared.
    return [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("level, logger, name, fields", EVENTS)
def test_an_event_written_without_a_record_is_the_records_line(level, logger, name, fields):
    stream = io.StringIO()
    handler = logfmt._ProcessLines(stream)
    handler.setFormatter(logfmt.KeyValueFormatter())
    handler.add(level, logger, name, fields)
    record = logging.LogRecord(logger, level, "", 0, name, (), None)
    record.kv_fields = fields
    handler.handle(record)
    direct, through_record = _lines(handler, stream)
    assert direct == through_record
    assert direct.startswith(f"level={logging.getLevelName(level).lower()} logger={logger} ")


def test_events_go_straight_to_the_process_handler_only_when_nothing_else_listens(
        monkeypatch, caplog):
    stream = io.StringIO()
    handler = logfmt._ProcessLines(stream)
    handler.setFormatter(logfmt.KeyValueFormatter())
    monkeypatch.setattr(logfmt, "_process_lines", handler)
    npc = logging.getLogger("npc")
    monkeypatch.setattr(npc, "handlers", [handler])
    logger = logging.getLogger("npc.test_logs")
    logger.setLevel(logging.INFO)
    try:
        logfmt.event(logger, "straight", amount_fen=1)
        logfmt.event(logger, "below_the_level", logging.DEBUG, amount_fen=2)
        assert _lines(handler, stream) == [
            "level=info logger=npc.test_logs event=straight amount_fen=1"]
        assert not [r for r in caplog.records if r.name == "npc.test_logs"]
        # Another handler of the simulator's loggers (a test's capture, attached where
        # records go) gets the record instead, as does one of the logger's own.
        for owner in (npc, logger):
            owner.addHandler(caplog.handler)
            logfmt.event(logger, "recorded", amount_fen=3)
            owner.removeHandler(caplog.handler)
            assert [r.getMessage() for r in caplog.records
                    if r.name == "npc.test_logs"][-1:] == ["recorded"]
            caplog.clear()
        # The process's handler still writes the line, from the record.
        assert _lines(handler, stream)[1:] == [
            "level=info logger=npc.test_logs event=recorded amount_fen=3"] * 2
    finally:
        logger.setLevel(logging.NOTSET)
