"""The NPC forwards a bank's envelope by writing its header's direction in place, and
writes the times in headers without strftime: the same bytes as the slow ways."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.clock import SHANGHAI, ManualClock
from gateway.messages import envelope as envelope_mod
from gateway.messages.envelope import Envelope
from gateway.messages.common import iso_datetime
from simulators.ids import Ids, iso_time, send_date_time
from simulators.notices import Notices, turned_down
from simulators.store import Store
from simulators.testing import MONDAY_0900, PEER, BankSender


def _decoded_and_encoded_again(raw: bytes) -> bytes:
    """The forward as the envelope module writes it."""
    env = envelope_mod.decode(raw)
    return Envelope(replace(env.header, direction="D"), env.signature, env.body,
                    after_header=env.after_header, signature_raw=env.signature_raw,
                    after_signature=env.after_signature).encode()


def _shapes(raw: bytes) -> list[bytes]:
    """One signed envelope as banks may lay it out: line ends CR LF, LF or none, the
    signature wrapped at 76 characters, a byte-order mark first, a reserve field used."""
    env = envelope_mod.decode(raw)
    assert env.signature is not None
    wrapped = b"\r\n".join(env.signature.encode()[i:i + 76]
                           for i in range(0, len(env.signature), 76))
    head = env.header.encode()
    return [raw, b"\xef\xbb\xbf" + raw,
            head + b"\n{S:" + env.signature.encode() + b"}\n" + env.body,
            head + b"{S:" + wrapped + b"}" + env.body,
            replace(env.header, reserve="R1").encode() + b"\r\n" + env.body]


@pytest.mark.parametrize("priority", ["NORM", "HIGH", "URGT"])
def test_a_forward_is_the_envelope_encoded_again_with_direction_d(
        tmp_path: Path, priority: str) -> None:
    sender = BankSender(tmp_path, ManualClock(MONDAY_0900))
    for raw in _shapes(sender.credit(12_345, priority=priority)):
        header, down = turned_down(raw)
        assert down == _decoded_and_encoded_again(raw)
        assert header == envelope_mod.decode(raw).header
        assert envelope_mod.decode(down).header.direction == "D"


def test_a_forward_of_a_header_already_down_changes_nothing(tmp_path: Path) -> None:
    sender = BankSender(tmp_path, ManualClock(MONDAY_0900))
    _, down = turned_down(sender.credit(1))
    assert turned_down(down)[1] == down


def test_a_forward_given_its_ids_puts_the_same_outbox_row(tmp_path: Path) -> None:
    """A credit's row hands the forward the MesgType and MesgID its header had: the
    outbox row is the one reading the header again gives, in every layout."""
    clock = ManualClock(MONDAY_0900)
    store = Store(tmp_path / "npc.sqlite3")
    notices = Notices(store, Ids(store, clock), clock, None, lambda dest: None)
    sender = BankSender(tmp_path / "keys", clock)
    for raw in _shapes(sender.credit(12_345)):
        header = envelope_mod.decode(raw).header
        with store.transaction():
            notices.forward(PEER, raw)
            notices.forward(PEER, raw, (header.mesg_type, header.mesg_id))
        read_again, given = store.pending(PEER, 100)[-2:]

        assert (given.mesg_type, given.mesg_id, given.raw) == (
            read_again.mesg_type, read_again.mesg_id, read_again.raw)
        assert (given.mesg_type, given.mesg_id) == (header.mesg_type, header.mesg_id)


def test_header_times_are_what_strftime_writes() -> None:
    at = datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=SHANGHAI)
    for step in range(0, 400 * 24 * 3600, 7_919):  # a year and more, odd seconds
        now = at + timedelta(seconds=step)
        assert send_date_time(now) == (now.strftime("%Y%m%d"), now.strftime("%H%M%S"))
        assert iso_time(now) == iso_datetime(now)


class _Stepping(ManualClock):
    """A clock that moves on a second each time it is read."""

    def now(self) -> datetime:
        instant = super().now()
        self.advance(1)
        return instant


def test_a_notice_made_as_midnight_passes_has_one_date(tmp_path: Path) -> None:
    """The NPC reads the clock once for a message's header and its MesgID, and once for
    a group header and its MsgId: a clock passing midnight in between does not give the
    id another date than the header's."""
    clock = _Stepping(datetime(2026, 12, 7, 23, 59, 59, tzinfo=SHANGHAI))
    store = Store(tmp_path / "npc.sqlite3")
    notices = Notices(store, Ids(store, clock), clock, None, lambda dest: None)
    with store.transaction():
        for _ in range(3):
            header = notices._header(PEER, "ccms.990.001.02", "HVPS")
            group = notices._group_header(PEER, "HVPS")

            assert header.mesg_id[4:12] == header.send_date
            assert group.msg_id[:8] == group.created_at[:10].replace("-", "")


def test_a_notices_outbox_row_is_dated_from_its_headers_reading(tmp_path: Path) -> None:
    """A notice's outbox row bears the time its header was made with: one reading of
    the clock for both, even when the clock moves on at every reading."""
    clock = _Stepping(datetime(2026, 12, 7, 23, 59, 59, tzinfo=SHANGHAI))
    store = Store(tmp_path / "npc.sqlite3")
    notices = Notices(store, Ids(store, clock), clock, None, lambda dest: None)
    original = BankSender(tmp_path / "keys", ManualClock(MONDAY_0900)).header(
        "hvps.111.001.01")
    with store.transaction():
        notices.ack(original)
    (row,) = store.pending(original.orig_sender, 10)
    made = store.conn.execute("SELECT created_at FROM outbox WHERE seq = ?",
                              (row.seq,)).fetchone()[0]
    header = envelope_mod.decode_header(row.raw[:envelope_mod.HEADER_LEN])
    assert datetime.fromisoformat(made).strftime("%Y%m%d%H%M%S") == \
        header.send_date + header.send_time
