"""A ccms.801 moves the HVPS window in memory inside its store work: when that work is
undone (a link POST's envelopes taken together and undone whole, the notice's own
processing failing, the whole transaction failing), the window is set back with the
rows, so that the notice taken again is judged afresh and its `window_changed` row
kept; and the log lines of an undone pass are not written."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from gateway import status_hold
from gateway import store as store_mod
from gateway.messages import ccms801, ccms900, ccms990, codec
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.messages.envelope import Header
from tests.test_hvps_close_lanes import OPEN, opened

BANK, NPC = "999100000019", "0000"
DAY = OPEN.date().isoformat()
BEFORE_CLOSE = OPEN.replace(hour=16, minute=55)


def _header(mesg_type: str, n: int) -> Header:
    mesg_id = f"20261207{n:012d}"
    return Header(orig_sender=NPC, orig_sender_sid="HVPS", orig_receiver=BANK,
                  orig_receiver_sid="HVPS", send_date="20261207", send_time="165500",
                  mesg_type=mesg_type, mesg_id=mesg_id, mesg_ref_id=mesg_id, direction="D")


def _group(n: int) -> GroupHeader:
    return GroupHeader(msg_id=f"20261207{n:012d}", created_at="2026-12-07T16:55:00",
                       instg_direct=NPC, instg_party=NPC, instd_direct=BANK,
                       instd_party=BANK, system="HVPS")


def notice(n: int, orig: str, cur: str) -> bytes:
    """A ccms.801 of today: HVPS from `orig` to `cur`."""
    body = ccms801.build(ccms801.SystemStatus(header=_group(n), orig_date=DAY,
                                              orig_status=orig, cur_date=DAY,
                                              cur_status=cur))
    return codec.encode(_header(ccms801.MESSAGE_TYPE, n), body, None, sign=False)


def result(n: int) -> bytes:
    """A ccms.900 about a message of ours."""
    body = ccms900.build(ccms900.CommonConf(
        header=_group(n), original=OriginalRef(msg_id=f"X{n}", instg_party=BANK,
                                               mt="hvps.111.001.01"),
        status="PR04", processed_on=DAY))
    return codec.encode(_header(ccms900.MESSAGE_TYPE, n), body, None, sign=False)


def receipt(n: int) -> bytes:
    """A ccms.990 for a message of ours."""
    body = ccms990.build(ccms990.CommConf(orig_sender=BANK, orig_send_date="20261207",
                                          mt="hvps.111.001.01", msg_id=f"X{n}",
                                          msg_ref_id=f"X{n}"))
    return codec.encode(_header(ccms990.MESSAGE_TYPE, n), body, None, sign=False)


def _fail(tx: Any, decoded: Any, now: Any) -> Any:
    raise RuntimeError("handler fault")


async def _changes(gw: Any) -> list[tuple[str, str]]:
    """The window changes recorded since 16:55 (the opening's is before)."""
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT detail FROM alerts WHERE code = 'window_changed' AND at >= ? ORDER BY id",
        (BEFORE_CLOSE.isoformat(),)))
    return [(json.loads(d)["from"], json.loads(d)["to"]) for (d,) in rows]


def _posted(tmp_path: Any, posts: list[list[bytes]], failing: str | None = None,
            confirmed_at: Any = None) -> dict[str, Any]:
    """The gateway open at 09:00, operators' 10 confirmed at `confirmed_at` if given;
    at 16:55 the link POSTs `posts` in turn, with `failing`'s handler failing."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path, unverified_senders=[NPC])
        try:
            gw = rig.gw
            if confirmed_at is not None:
                await gw.store.run(lambda tx: status_hold.record_confirmed(
                    tx, "10", date.fromisoformat(DAY), confirmed_at,
                    confirmed_at.isoformat()))
            if failing is not None:
                gw.handler_table()[failing] = _fail
            rig.clock.set(BEFORE_CLOSE)
            outcomes = [await gw.receive_link_many(raws) for raws in posts]
            inbox = await gw.store.run(lambda tx: tx.query(
                "SELECT mesg_type, state FROM inbox ORDER BY id", ()))
            _, take = await gw.store.run(lambda tx: status_hold.confirmed_at_start(
                tx, date.fromisoformat(DAY)))
            return {"outcomes": outcomes, "window": gw.window.code,
                    "changes": await _changes(gw), "inbox": inbox,
                    "confirmed_taken_at_restart": take}
        finally:
            await rig.stop()
    return asyncio.run(scenario())


def test_a_notice_in_a_post_of_its_own_records_its_window_change(tmp_path):
    """The control: the notice alone, the failing result in a POST after it."""
    got = _posted(tmp_path, [[notice(1, "10", "20")], [result(2)]], ccms900.MESSAGE_TYPE)

    assert got["window"] == "20"
    assert got["changes"] == [("10", "20")]


def test_a_notice_beside_a_failing_result_keeps_its_window_change(tmp_path):
    """One POST: the notice is processed, its change recorded once, the result kept to
    process later."""
    got = _posted(tmp_path, [[notice(1, "10", "20"), result(2)]], ccms900.MESSAGE_TYPE)

    assert got["window"] == "20"
    assert got["inbox"] == [("ccms.801.001.02", "processed"), ("ccms.900.001.02", "received")]
    assert got["changes"] == [("10", "20")]


def test_a_restart_after_the_notice_beside_a_failing_result_passes_over_a_confirmation(
        tmp_path):
    """Operators confirmed 10 at 16:00, the NPC's 10 -> 20 came at 16:55 beside a
    failing envelope: a process starting now takes the later notice, not the 10."""
    got = _posted(tmp_path, [[notice(1, "10", "20"), result(2)]], ccms900.MESSAGE_TYPE,
                  confirmed_at=OPEN.replace(hour=16, minute=0))

    assert got["confirmed_taken_at_restart"] is False


def test_a_notice_whose_processing_fails_after_moving_the_window_sets_it_back(tmp_path):
    """The notice's handler moved the window, then failed: its processing is undone and
    the notice kept to process later; the window is where it was, nothing recorded."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path, unverified_senders=[NPC])
        try:
            gw = rig.gw
            table = gw.handler_table()
            real = table[ccms801.MESSAGE_TYPE]

            def moves_then_fails(tx: Any, decoded: Any, now: Any) -> Any:
                real(tx, decoded, now)
                raise RuntimeError("fault after the window moved")
            table[ccms801.MESSAGE_TYPE] = moves_then_fails
            rig.clock.set(BEFORE_CLOSE)
            await gw.receive_link_many([notice(1, "10", "20")])
            seen = {"window": gw.window.code, "changes": await _changes(gw),
                    "history": [e.to_code for e in gw.window.history]}
            table[ccms801.MESSAGE_TYPE] = real
            again = await gw.store.run(lambda tx: gw.window.apply_notice(
                "10", "20", DAY, BEFORE_CLOSE))
            return {**seen, "again": again}
        finally:
            await rig.stop()
    got = asyncio.run(scenario())

    assert got["window"] == "10"
    assert got["changes"] == []
    assert "20" not in got["history"]
    assert got["again"] == "applied"  # not a repeat of itself


def test_a_transaction_failing_after_a_notice_moved_the_window_sets_it_back(
        tmp_path, monkeypatch, caplog):
    """The notice's work succeeded, then its transaction failed (its gathered rows, as a
    commit may): the POST is refused, the window set back, no line logged; the NPC
    sends it again and it is taken as a change."""
    real_write = store_mod._write_gathered
    failures = [RuntimeError("disk full")]

    def write_failing_once(tx: Any, gathered: Any) -> None:
        if failures:
            raise failures.pop()
        real_write(tx, gathered)
    monkeypatch.setattr(store_mod, "_write_gathered", write_failing_once)
    caplog.set_level("INFO")

    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path, unverified_senders=[NPC])
        try:
            gw = rig.gw
            rig.clock.set(BEFORE_CLOSE)
            first = await gw.receive_link_many([notice(1, "10", "20")])
            after_failure = (gw.window.code, await _changes(gw),
                             [m for m in caplog.messages if "to=20" in m])
            second = await gw.receive_link_many([notice(1, "10", "20")])
            return {"first": first, "after_failure": after_failure, "second": second,
                    "window": gw.window.code, "changes": await _changes(gw)}
        finally:
            await rig.stop()
    got = asyncio.run(scenario())

    assert [str(o) for o in got["first"]] == ["disk full"]
    assert got["after_failure"] == ("10", [], [])
    assert got["second"] == [{"taken": True, "duplicate": False}]
    assert (got["window"], got["changes"]) == ("20", [("10", "20")])


def _lines(caplog: Any, event: str) -> list[str]:
    return [line for m in caplog.messages for line in m.splitlines()
            if f"event={event} " in line]


def test_a_refused_notice_beside_a_failing_result_is_logged_refused_once(tmp_path, caplog):
    """The notice refused (no handler), the result failing."""
    async def scenario() -> None:
        rig = await opened(tmp_path, unverified_senders=[NPC])
        try:
            table = rig.gw.handler_table()
            table[ccms900.MESSAGE_TYPE] = _fail
            del table[ccms801.MESSAGE_TYPE]
            rig.clock.set(BEFORE_CLOSE)
            await rig.gw.receive_link_many([notice(1, "10", "20"), result(2)])
        finally:
            await rig.stop()
    caplog.set_level("INFO")
    asyncio.run(scenario())

    assert len(_lines(caplog, "inbound_refused")) == 1


def test_results_taken_together_and_undone_log_only_the_pass_that_commits(tmp_path, caplog):
    """A POST of results, taken together: a receipt refused (no handler) and a result
    already received before, beside a result failing; undone whole and taken one by
    one, each line is written once."""
    async def scenario() -> list[Any]:
        rig = await opened(tmp_path, unverified_senders=[NPC])
        try:
            gw = rig.gw
            table = gw.handler_table()
            table[ccms900.MESSAGE_TYPE] = _fail
            del table[ccms990.MESSAGE_TYPE]
            rig.clock.set(BEFORE_CLOSE)
            await gw.receive_link_many([result(1)])
            return await gw.receive_link_many([receipt(2), result(1), result(3)])
        finally:
            await rig.stop()
    caplog.set_level("INFO")
    outcomes = asyncio.run(scenario())

    assert outcomes == [{"taken": True, "duplicate": False},
                        {"taken": True, "duplicate": True},
                        {"taken": True, "duplicate": False}]
    assert len(_lines(caplog, "link_envelopes_taken_one_by_one")) == 1
    assert len(_lines(caplog, "inbound_refused")) == 1
    assert len(_lines(caplog, "duplicate_message")) == 1
