"""A header's send date and time are written from the clock's fields (not strftime): the
same text strftime gives, at any moment of any day."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway import outbound, payments
from gateway.clock import SHANGHAI


def test_the_header_dates_and_times_are_strftimes(monkeypatch):
    monkeypatch.setattr(payments, "next_seq", lambda tx, name: 7)
    start = datetime(2026, 12, 31, 23, 59, 58, 999_999, tzinfo=SHANGHAI)
    moments = [start + timedelta(seconds=s) for s in range(4)]
    moments.append(datetime(2027, 1, 9, 0, 0, 0))
    for now in moments:
        header = outbound.new_header(None, now, "999100000019", outbound.NPC,
                                     "ccms.990.001.02", "HVPS")
        assert header.send_date == now.strftime("%Y%m%d")
        assert header.send_time == now.strftime("%H%M%S")
        assert header.mesg_id == f"{header.send_date}{7:012d}"
