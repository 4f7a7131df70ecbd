"""Every gateway process holds HVPS sending while the gateway and the NPC disagree on
HVPS's status (gateway.status_hold): one told by another over the cluster channel, one
that missed that word and reads the hold on its window tick, one started while the hold
lasts; and each takes the status operators confirmed when the hold ends so."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import keys, status_hold
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.errors import PaygateError
from gateway.worker import RetryLater

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=SHANGHAI)  # a Tuesday, HVPS open by the timetable
DAY = date(2026, 12, 8)


def follower(tmp_path: Path) -> Gateway:
    """A gateway process of several that does not lead (no Redis needed: what it is told
    is handed to its listener here)."""
    gw = Gateway(Settings(data_dir=str(tmp_path)), clock=ManualClock(NOW))
    gw.cluster.single, gw.cluster.leading = False, False
    return gw


def begin(tx: Any) -> dict[str, Any]:
    return status_hold.begin(tx, "10", "00", DAY.isoformat(), "illegal", "10", DAY, NOW)


def test_a_process_told_of_the_hold_stops_sending_and_takes_the_confirmed_status(
        tmp_path: Path) -> None:
    """Told of the hold, a process sends no HVPS payment, neither from its lanes (the
    entry is put off before any row is claimed) nor straight after accepting one; told
    that operators confirmed 30, its window takes 30 and sending is free again."""
    gw = follower(tmp_path)

    async def scenario() -> dict[str, Any]:
        await gw.store.open()
        try:
            # Another process began the hold (its row), then told the others.
            hold = await gw.store.run(begin)
            await gw.cluster._dispatch(json.dumps({
                "from": "elsewhere", "kind": status_hold.CLUSTER_KIND, "hold": hold}))
            held, real_run = gw.hvps_hold, gw.store.run

            async def no_store(work: Any) -> Any:
                raise AssertionError("an outbox row was claimed")
            gw.store.run = no_store  # a claim would fail otherwise than with RetryLater
            try:
                await gw._send_outbox(keys.HVPS_LANES[1], "1-0", {"outbox": "1"})
                put_off = None
            except RetryLater as exc:
                put_off = str(exc)
            finally:
                gw.store.run = real_run
            may_send = gw._may_send_now()
            # HVPS closed under 30: the process looks at the lanes (nothing on them).
            await gw.store.run(lambda tx: status_hold.end(tx, "confirmed", NOW))
            await gw._on_peer_hvps_hold({"hold": None, "confirmed": {
                "seq": 1, "status": "30", "work_date": DAY.isoformat(),
                "at": NOW.isoformat(), "since": hold["since"]}})
            await asyncio.gather(*gw._tasks)
            return {"hold": hold, "held": held, "put_off": put_off, "may_send": may_send}
        finally:
            await gw.store.close()
    seen = asyncio.run(scenario())

    assert seen["held"] == seen["hold"]
    assert seen["put_off"] == status_hold.HELD
    assert seen["may_send"] is False
    assert gw.hvps_hold is None
    assert (gw.hvps_status, gw.work_date) == ("30", DAY)
    assert (gw.window.history[-1].source, gw.window.history[-1].outcome) == (
        "operator", "set_by_operator")


def test_a_process_that_missed_the_word_reads_the_hold_on_its_tick(tmp_path: Path) -> None:
    """The cluster channel is not a queue: a process that was not listening finds the
    hold in the table on its next window tick, and its end the same way."""
    gw = follower(tmp_path)

    async def scenario() -> tuple[Any, Any, Any]:
        await gw.store.open()
        try:
            before = gw.hvps_hold
            await gw.store.run(begin)
            await gw.window_tick()
            during = gw.hvps_hold
            await gw.store.run(lambda tx: status_hold.end(tx, "test", NOW))
            await gw.window_tick()
            return before, during, gw.hvps_hold
        finally:
            await gw.store.close()
    before, during, after = asyncio.run(scenario())

    assert before is None
    assert during is not None and during["cur"] == "00" and during["notices"] == 1
    assert after is None


@pytest.mark.parametrize("word", ["begun", "ended"])
def test_a_word_older_than_the_table_never_overrides_it(tmp_path: Path, word: str) -> None:
    """Another process's word arrives after the hold changed again: a hold begun and
    ended since (the table holds none), or a hold ended and begun again since (the
    table holds the new one). The process takes what the table says, not the word:
    sending is neither held by a word of a hold that has ended nor freed by a word of
    an end that a new hold followed."""
    gw = follower(tmp_path)

    async def scenario() -> tuple[Any, Any]:
        await gw.store.open()
        try:
            if word == "begun":
                said = await gw.store.run(begin)
                await gw.store.run(lambda tx: status_hold.end(tx, "test", NOW))
            else:
                said = None
                await gw.store.run(begin)
            await gw._on_peer_hvps_hold({"hold": said})
            await asyncio.gather(*gw._tasks)
            return gw.hvps_hold, await gw.store.run(status_hold.read)
        finally:
            await gw.store.close()
    taken, table = asyncio.run(scenario())

    assert taken == table
    assert (taken is None) == (word == "begun")


@pytest.mark.parametrize("told", ["begun", "ended"])
def test_a_tick_does_not_undo_a_hold_changed_between_its_read_and_its_apply(
        tmp_path: Path, told: str) -> None:
    """The tick reads the table, then applies what it read: another process's notice
    that begins (or ends) the hold in between, its word taken here before the tick
    applies, is newer than the read and is kept (not lifted, or held again, until the
    next tick); that next tick reads the table afresh and agrees."""
    gw = follower(tmp_path)

    async def scenario() -> tuple[Any, Any]:
        await gw.store.open()
        try:
            if told == "ended":
                await gw.store.run(begin)
                await gw.window_tick()
            real_run, interleaved = gw.store.run, []

            async def read_then_notice(work: Any) -> Any:
                # The tick's read done, the other process's notice commits and its word
                # arrives before the tick goes on.
                read = await real_run(work)
                if not interleaved:
                    interleaved.append(work)
                    hold = await real_run(begin) if told == "begun" else None
                    if hold is None:
                        await real_run(lambda tx: status_hold.end(tx, "test", NOW))
                    await gw._on_peer_hvps_hold({"hold": hold})
                return read
            gw.store.run = read_then_notice
            try:
                await gw.window_tick()
            finally:
                gw.store.run = real_run
            after_tick = gw.hvps_hold
            await gw.window_tick()
            await asyncio.gather(*gw._tasks)
            return after_tick, gw.hvps_hold
        finally:
            await gw.store.close()
    after_tick, after_next = asyncio.run(scenario())

    if told == "begun":
        assert after_tick is not None and after_tick["cur"] == "00"
        assert after_next == after_tick
    else:
        assert after_tick is None and after_next is None


def test_the_hold_outlives_a_restart_and_counts_its_notices(tmp_path: Path) -> None:
    """A second refused notice counts into the hold going on (its start kept); a process
    started while it lasts holds from its start, and its /health view says so."""
    async def scenario() -> tuple[dict[str, Any], dict[str, Any] | None]:
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0), clock=ManualClock(NOW))
        await gw.store.open()
        try:
            await gw.store.run(begin)
            second = await gw.store.run(lambda tx: status_hold.begin(
                tx, "00", "20", DAY.isoformat(), "illegal", "10", DAY,
                NOW.replace(minute=5)))
        finally:
            await gw.store.close()
        again = Gateway(Settings(data_dir=str(tmp_path), port=0), clock=ManualClock(NOW))
        await again.start(serve_http=False)
        try:
            return second, again.hvps_hold
        finally:
            await again.stop()
    second, loaded = asyncio.run(scenario())

    assert second["since"] == NOW.isoformat() and second["notices"] == 2
    assert (second["orig"], second["cur"]) == ("00", "20")
    assert loaded == second
    assert status_hold.view(loaded)["held"] is True
    assert status_hold.view(loaded)["notices_refused"] == 2


def test_a_confirmation_takes_only_the_work_date_or_the_refused_notices_and_never_a_day(
        tmp_path: Path) -> None:
    """The work date confirmed is the gateway's own or the refused notice's, never one
    after the business date; a status that would move the gateway to another work date
    (a later date, or the cut-over) is refused: it would close a ledger day and run a
    day end. The approval checks again (the gateway's work date may have moved on)."""
    gw = Gateway(Settings(data_dir=str(tmp_path), port=0), clock=ManualClock(NOW))
    tomorrow = date(2026, 12, 9)

    async def code_of(target: str, status: str, at: datetime) -> Any:
        try:
            return await gw.store.run(lambda tx: status_hold.check_confirmable(
                gw, tx, target, status, at))
        except PaygateError as exc:
            found = exc.problems[0]
            return found.code, found.path, found.expected, found.message

    async def scenario() -> dict[str, Any]:
        await gw.store.open()
        try:
            # The NPC announced 00 of tomorrow while the gateway is at 10 today.
            await gw.store.run(lambda tx: status_hold.begin(
                tx, "10", "00", tomorrow.isoformat(), "illegal", "10", DAY, NOW))
            seen = {
                "tomorrow_today": await code_of(tomorrow.isoformat(), "00", NOW),
                "yesterday": await code_of("2026-12-07", "10", NOW),
                "not_a_date": await code_of("08/12/2026", "10", NOW),
                "cutover": await code_of(DAY.isoformat(), "15", NOW),
                "today_40": await code_of(DAY.isoformat(), "40", NOW),
                # Past midnight, the gateway still on yesterday's date: tomorrow may be
                # named but moving onto it is the day end's.
                "tomorrow_later": await code_of(tomorrow.isoformat(), "00",
                                                NOW.replace(day=9)),
            }
            try:
                await gw.store.run(lambda tx: status_hold.confirm(
                    gw, tx, tomorrow.isoformat(), {"status": "00"}, 1, "sup1",
                    NOW.replace(day=9)))
            except PaygateError as exc:
                seen["approved"] = exc.problems[0].code
            seen["still_held"] = await gw.store.run(status_hold.read) is not None
            return seen
        finally:
            await gw.store.close()
    seen = asyncio.run(scenario())

    code, path, expected, message = seen["tomorrow_today"]
    assert (code, path) == ("hvps_status_date_not_allowed", "/target")
    assert "2026-12-08" in expected and "2026-12-09" not in expected
    # The refused notice's own date, refused for the one rule it breaks.
    assert message == ("work date 2026-12-09 is after the business date 2026-12-08: a "
                       "status cannot be confirmed for a day that has not begun")
    assert seen["yesterday"][:2] == ("hvps_status_date_not_allowed", "/target")
    assert "before the gateway's work date 2026-12-08" in seen["yesterday"][3]
    assert seen["not_a_date"][3] == "08/12/2026 is not a date (YYYY-MM-DD)"
    assert seen["cutover"][:2] == ("hvps_status_confirm_changes_day", "/params/status")
    assert seen["today_40"]["notice_date"] == tomorrow.isoformat()  # the hold: allowed
    assert seen["tomorrow_later"][:2] == ("hvps_status_confirm_changes_day", "/params/status")
    assert seen["approved"] == "hvps_status_confirm_changes_day"
    assert seen["still_held"] is True


def test_a_missing_status_is_required_and_the_cut_over_is_not_offered() -> None:
    """No --status: said to be required, not malformed; the statuses offered leave out
    the cut-over (15), which a confirmation always refuses."""
    _, missing = status_hold.status_param({})
    _, wrong = status_hold.status_param({"status": "11"})
    kept, fine = status_hold.status_param({"status": "10"})

    assert (missing[0].code, missing[0].path, missing[0].value) == (
        "hvps_status_required", "/params/status", None)
    assert "--status" in missing[0].message and "required" in missing[0].message
    assert wrong[0].code == "hvps_status_malformed"
    for problem in (missing[0], wrong[0]):
        assert problem.expected == "the status the NPC is in: one of 00, 10, 20, 30, 40"
    assert (kept, fine) == ({"status": "10"}, [])


def test_the_npc_moving_on_to_the_status_kept_ends_the_hold(tmp_path: Path) -> None:
    """Forced from 10 to 40 (refused: the gateway keeps 10 and holds HVPS sending), the
    NPC then moves from 40 back to 10, the status the gateway kept: the two are in step,
    the notice is taken, the hold ends and its alert is closed by the gateway, and no
    second alert is raised. A notice from another status to 10 (20 back to 10) is still
    refused."""
    from tests.test_day_end_missing import notice, receive

    async def scenario() -> tuple[list[str], Any, list[tuple[str, str]]]:
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0), clock=ManualClock(NOW))
        await gw.start(serve_http=False)
        try:
            outcomes = [await receive(gw, notice("10", "40", DAY.isoformat(), DAY.isoformat()))]
            held = gw.hvps_hold is not None
            outcomes.append(await receive(gw, notice("40", "10", DAY.isoformat(), DAY.isoformat())))
            ended = gw.hvps_hold
            alerts = await gw.store.run(lambda tx: tx.query(
                "SELECT a.code, COALESCE(k.by, '') FROM alerts a LEFT JOIN alert_acks k "
                "ON k.alert_id = a.id WHERE a.code = ? ORDER BY a.id", (status_hold.ALERT,)))
            outcomes.append(await receive(gw, notice("20", "10", DAY.isoformat(), DAY.isoformat())))
            return [*outcomes, str(held)], ended, alerts
        finally:
            await gw.stop()
    outcomes, ended, alerts = asyncio.run(scenario())

    assert outcomes == ["illegal", "confirmed", "illegal", "True"]
    assert ended is None
    assert alerts == [(status_hold.ALERT, "gateway")]
