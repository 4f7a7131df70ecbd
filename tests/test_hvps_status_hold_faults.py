"""What goes wrong around HVPS closing and the status hold must stay local
(gateway.status_hold): a payment on a lane with no money held of its own (a return
from suspense) waits instead of breaking the notice that closes HVPS; one payment that
cannot follow the window is alerted and the others follow; a process that missed the
word of a confirmation takes the confirmed status from the table; work failing after a
confirmation committed leaves no process held; and a confirmation never takes the
window back to a date before the gateway's work date."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import status_hold
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.errors import PaygateError
from gateway.ops.testing import OpsRig
from ledger.fixtures import postgres_schema_or_skip
from tests.test_hvps_close_lanes import OPEN, opened, seen

BEFORE_CLOSE = OPEN.replace(hour=16, minute=50)  # HVPS still open by the timetable
DAY = OPEN.date().isoformat()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def ccms801(orig: str, cur: str, day: str) -> Any:
    """A decoded HVPS ccms.801, as the handler takes it."""
    return SimpleNamespace(obj=SimpleNamespace(
        header=SimpleNamespace(system="HVPS"), orig_status=orig, cur_status=cur,
        cur_date=day, orig_date=day))


async def notice(rig: Any, orig: str, cur: str) -> Any:
    """The notice's own work, as the link's receipt runs it; its outcome."""
    done = await rig.gw.store.run(lambda tx: rig.gw.handlers.on_system_status(
        tx, ccms801(orig, cur, DAY), rig.clock.now()))
    return done.outcome["outcome"]


async def like_a_return_from_suspense(rig: Any, payment_id: str) -> None:
    """Shape the payment as gateway.exceptions.returns makes a return of a suspense item:
    no hold of its own, a route naming no intake inputs."""
    route = {"channel": "hvps", "rule": "return_to_sender", "returns": "elsewhere"}
    await rig.gw.store.run(lambda tx: tx.execute(
        "UPDATE payments SET hold_id = NULL, route = ? WHERE id = ?",
        (json.dumps(route), payment_id)))


async def open_alerts_of(rig: Any, code: str) -> list[dict[str, Any]]:
    return await rig.gw.store.run(lambda tx: [json.loads(d) for (d,) in tx.query(
        "SELECT a.detail FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
        "WHERE a.code = ? AND k.alert_id IS NULL ORDER BY a.id", (code,))])


def test_a_return_without_a_hold_waits_when_the_notice_closes_hvps(tmp_path):
    """`when_closed_default = refuse`: the NPC's 10 -> 30 refuses the customer's payment
    left on its lane, while the return (no money held, made by operators) waits for the
    next opening; the notice is applied, and so is the next one."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        try:
            ret = (await rig.submit("return-like"))["id"]
            customer = (await rig.submit("customer"))["id"]
            await like_a_return_from_suspense(rig, ret)
            rig.gw.router.when_closed_default = "refuse"
            rig.clock.set(BEFORE_CLOSE)
            outcomes = [await notice(rig, "10", "30"), await notice(rig, "30", "40")]
            return {"outcomes": outcomes, "return": await seen(rig, ret),
                    "customer": await seen(rig, customer)}
        finally:
            await rig.stop()
    got = run(scenario())

    assert got["outcomes"] == ["applied", "applied"]
    assert got["return"] == ("held", "waiting_for_hvps_window", "waiting", 0)
    assert got["customer"] == ("rejected", "hvps_closed", "failed", 0)


def test_a_payment_that_cannot_follow_the_window_is_alerted_once_and_the_rest_follow(
        tmp_path):
    """A payment whose hold the books do not know cannot be released: it stays on its
    lane, named by one `hvps_closed_lane_row_failed` alert however often it is tried
    again, while the notice is applied and the other payment follows the window."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        try:
            bad = (await rig.submit("bad", when_closed="refuse"))["id"]
            good = (await rig.submit("good", when_closed="refuse"))["id"]
            await rig.gw.store.run(lambda tx: tx.execute(
                "UPDATE payments SET hold_id = '987654321' WHERE id = ?", (bad,)))
            rig.clock.set(BEFORE_CLOSE)
            outcome = await notice(rig, "10", "30")
            again = await rig.gw.store.run(lambda tx: status_hold.follow_closed_window(
                rig.gw, tx, rig.clock.now()))
            return {"outcome": outcome, "again": again, "bad": await seen(rig, bad),
                    "good": await seen(rig, good), "bad_id": bad,
                    "alerts": await open_alerts_of(rig, status_hold.ALERT_LANE_ROW_FAILED)}
        finally:
            await rig.stop()
    got = run(scenario())

    assert got["outcome"] == "applied"
    assert got["again"] == {"waiting": 0, "refused": 0}
    assert got["good"] == ("rejected", "hvps_closed", "failed", 0)
    assert got["bad"] == ("accepted", None, "pending", 0)
    assert [a["payment"] for a in got["alerts"]] == [got["bad_id"]]


@pytest.mark.postgres
def test_on_postgresql_a_failing_row_undoes_only_itself(tmp_path):
    """PostgreSQL aborts a transaction at its first error unless a savepoint takes it:
    the notice closing HVPS is applied, the return waits, the customer's payment is
    refused and the payment that cannot follow stays on its lane, alerted."""
    async def scenario(url: str) -> dict[str, Any]:
        rig = await opened(tmp_path, database_url=url)
        try:
            ret = (await rig.submit("return-like"))["id"]
            bad = (await rig.submit("bad"))["id"]
            customer = (await rig.submit("customer"))["id"]
            await like_a_return_from_suspense(rig, ret)
            await rig.gw.store.run(lambda tx: tx.execute(
                "UPDATE payments SET hold_id = '987654321' WHERE id = ?", (bad,)))
            rig.gw.router.when_closed_default = "refuse"
            rig.clock.set(BEFORE_CLOSE)
            return {"outcome": await notice(rig, "10", "30"),
                    "rows": [await seen(rig, pid) for pid in (ret, bad, customer)],
                    "alerts": len(await open_alerts_of(rig,
                                                       status_hold.ALERT_LANE_ROW_FAILED))}
        finally:
            await rig.stop()
    with postgres_schema_or_skip("close_lane_rows") as url:
        got = run(scenario(url))

    assert got["outcome"] == "applied"
    assert got["rows"] == [("held", "waiting_for_hvps_window", "waiting", 0),
                           ("accepted", None, "pending", 0),
                           ("rejected", "hvps_closed", "failed", 0)]
    assert got["alerts"] == 1


def test_a_row_given_back_meanwhile_is_left_to_wait(tmp_path):
    """Between the look at the lane and the change of the row, a sender claimed it, the
    attempt failed without proof the NPC did not take it, and the row came back
    `pending`: the change made for the row as it was read (refuse, all attempts
    untaken) is not made."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        try:
            pid = (await rig.submit("raced", when_closed="refuse"))["id"]
            rig.gw.hvps_status = "30"
            read = rig.gw.store.run

            def meanwhile(tx: Any) -> dict[str, int]:
                real = tx.query

                def query(sql: str, args: Any = ()) -> Any:
                    rows = real(sql, args)
                    if sql.startswith("SELECT o.id, o.payment_id, o.attempts"):
                        tx.execute("UPDATE outbox SET attempts = 1, untaken = 0 "
                                   "WHERE payment_id = ?", (pid,))
                    return rows
                tx.query = query
                try:
                    return status_hold.follow_closed_window(rig.gw, tx, rig.clock.now())
                finally:
                    del tx.query
            counts = await read(meanwhile)
            return {"counts": counts, "row": await seen(rig, pid)}
        finally:
            await rig.stop()
    got = run(scenario())

    assert got["counts"] == {"waiting": 0, "refused": 0}
    assert got["row"] == ("accepted", None, "pending", 1)


async def held_rig(tmp_path: Any) -> Any:
    rig = await opened(tmp_path)
    await rig.gw.store.run(lambda tx: status_hold.begin(
        tx, "10", "00", DAY, "illegal", "10", OPEN.date(), rig.clock.now()))
    rig.gw._take_hvps_hold(await rig.gw.store.run(status_hold.read))
    return rig


async def confirmed_by_operators(rig: Any, status: str, day: str = DAY) -> Any:
    ops = rig.ops
    op1, sup1 = ops.directory.get("op1"), ops.directory.get("sup1")
    asked = await ops.console.request(op1, status_hold.ACTION, day, {"status": status},
                                      f"NPC desk confirmed {status} by phone")
    return await ops.console.decide(sup1, asked["id"], True)


def test_a_process_that_missed_the_confirmation_takes_its_status_on_its_tick(tmp_path):
    """Another process confirms 30 and its word never comes: on its window tick this one
    finds the hold ended and takes 30 from the table with it, so it does not resume
    sending into a closed window with the 10 it had."""
    async def scenario() -> dict[str, Any]:
        rig = await held_rig(tmp_path)
        other = Gateway(Settings(data_dir=str(tmp_path)), clock=ManualClock(OPEN))
        other.cluster.single, other.cluster.leading = False, False
        await other.store.open()
        try:
            await other.window_tick()
            before = (other.hvps_hold is not None, other.hvps_status)
            approved = await confirmed_by_operators(rig, "30")
            await other.window_tick()
            return {"before": before, "approved": approved["state"],
                    "after": (other.hvps_hold, other.hvps_status, other.hvps_open),
                    "source": other.window.history[-1].outcome}
        finally:
            await other.store.close()
            await rig.stop()
    got = run(scenario())

    assert got["before"] == (True, "10")
    assert got["approved"] == "executed"
    assert got["after"] == (None, "30", False)
    assert got["source"] == "set_by_operator"


@pytest.mark.parametrize("notice_after, status", [(False, "30"), (True, "10")])
def test_a_process_started_after_a_confirmation_takes_its_status(tmp_path, notice_after,
                                                                 status):
    """Operators confirm 30 and the gateway restarts: the new process takes 30 (its
    timetable alone says 10 at this hour) and does not send into a closed window;
    unless a notice changed the window after the confirmation, which is then in force."""
    async def scenario() -> tuple[Any, ...]:
        rig = await held_rig(tmp_path)
        try:
            await confirmed_by_operators(rig, "30")
            if notice_after:
                rig.clock.advance(60)
                await rig.gw.store.run(lambda tx: rig.gw.windows_record(
                    tx, "HVPS", "30", "10", DAY, rig.clock.now(), "ccms.801"))
        finally:
            await rig.stop()
        again = OpsRig(tmp_path, clock=ManualClock(rig.clock.now()))
        await again.start()
        try:
            return (again.gw.hvps_status, again.gw.work_date.isoformat(),
                    again.gw.hvps_open, again.gw.hvps_hold)
        finally:
            await again.stop()
    got = run(scenario())

    assert got == (status, DAY, status == "10", None)


def test_work_failing_after_a_confirmation_committed_still_ends_the_hold(tmp_path):
    """The lanes cannot be looked at once the confirmation of 30 committed: the process
    still ends its hold and takes 30 (a new confirmation is refused as nothing is held,
    as the table says), and the failure is alerted."""
    async def scenario() -> dict[str, Any]:
        rig = await held_rig(tmp_path)
        try:
            async def broken(*_: Any) -> dict[str, int]:
                raise RuntimeError("database gone")
            rig.gw._follow_closed_window = broken
            approved = await confirmed_by_operators(rig, "30")
            again = None
            try:
                await rig.gw.store.run(lambda tx: status_hold.check_confirmable(
                    rig.gw, tx, DAY, "30", rig.clock.now()))
            except PaygateError as exc:
                again = exc.problems[0].code
            return {"approved": approved["state"], "held": rig.gw.hvps_hold,
                    "status": rig.gw.hvps_status, "again": again,
                    "alerts": await open_alerts_of(rig, status_hold.ALERT_CONFIRM_AFTER_COMMIT)}
        finally:
            await rig.stop()
    got = run(scenario())

    assert got["approved"] == "executed"
    assert got["held"] is None and got["status"] == "30"
    assert got["again"] == "hvps_status_not_held"
    assert [(a["status"], a["error"]) for a in got["alerts"]] == [
        ("30", "RuntimeError: database gone")]


async def held_on(tmp_path: Any, orig: str, cur: str, notice_date: str
                  ) -> tuple[Any, dict[str, Any]]:
    """An opened rig on status 10 whose notice (orig -> cur on `notice_date`) was refused:
    the rig and its hold."""
    rig = await opened(tmp_path)
    hold = await rig.gw.store.run(lambda tx: status_hold.begin(
        tx, orig, cur, notice_date, "refused", "10", OPEN.date(), rig.clock.now()))
    return rig, hold


async def refusal_of(gw: Any, target: str, status: str, now: datetime) -> Any:
    """The problem a confirmation of `status` on `target` is refused for, or None."""
    try:
        await gw.store.run(lambda tx: status_hold.check_confirmable(
            gw, tx, target, status, now))
    except PaygateError as exc:
        return exc.problems[0]
    return None


def test_a_confirmation_never_names_a_date_before_the_gateways_work_date(tmp_path):
    """A refused notice naming yesterday: its date is not offered, and a confirmation
    naming it is refused, saying the gateway never goes back to an earlier day; the
    window's work date stays the gateway's."""
    yesterday = "2026-12-04"  # the Friday before the Monday of the rig

    async def scenario() -> dict[str, Any]:
        rig, hold = await held_on(tmp_path, "30", "40", yesterday)
        gw = rig.gw
        try:
            refused = await refusal_of(gw, yesterday, "40", rig.clock.now())
            return {"allowed": status_hold.allowed_dates(gw, hold, rig.clock.now()),
                    "refused": refused, "window": gw.window.work_date.isoformat()}
        finally:
            await rig.stop()
    got = run(scenario())

    assert got["allowed"] == [DAY]
    assert got["refused"].code == "hvps_status_date_not_allowed"
    assert "before the gateway's work date" in got["refused"].message
    assert got["window"] == DAY


def test_the_gateways_work_date_is_confirmable_while_ahead_of_the_business_date(tmp_path):
    """A cut-over notice took the gateway to Monday while the business clock still reads
    Saturday (over a weekend): the hold is refused on Monday, and operators may still
    confirm a status on the gateway's own work date, which moves nothing; a later date
    than the business date stays refused."""
    saturday = OPEN.replace(day=5, hour=10)
    later = "2026-12-08"

    async def scenario() -> dict[str, Any]:
        rig, hold = await held_on(tmp_path, "10", "20", later)
        gw = rig.gw
        try:
            # The business clock's reading is passed as it would read (a clock never
            # goes back): Saturday, before the gateway's work date.
            allowed = status_hold.allowed_dates(gw, hold, saturday)
            taken = await gw.store.run(lambda tx: status_hold.check_confirmable(
                gw, tx, DAY, "10", saturday))
            refused = await refusal_of(gw, later, "10", saturday)
            return {"allowed": allowed, "taken": taken["notice_date"], "refused": refused,
                    "window": gw.window.work_date.isoformat()}
        finally:
            await rig.stop()
    got = run(scenario())

    assert got["allowed"] == [DAY]
    assert got["taken"] == later
    assert got["refused"].code == "hvps_status_date_not_allowed"
    assert got["window"] == DAY


def test_the_confirmation_record_counts_up(tmp_path):
    """Each confirmation is kept with a number one more than the last, so every process
    takes each once whichever way it hears of it (the word, or the table)."""
    now = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)

    async def scenario() -> list[Any]:
        gw = Gateway(Settings(data_dir=str(tmp_path)), clock=ManualClock(now))
        await gw.store.open()
        try:
            first = await gw.store.run(lambda tx: status_hold.record_confirmed(
                tx, "30", now.date(), now, "s1"))
            second = await gw.store.run(lambda tx: status_hold.record_confirmed(
                tx, "10", now.date(), now, "s2"))
            taken = [await gw._take_confirmed_status(first),
                     await gw._take_confirmed_status(second),
                     await gw._take_confirmed_status(first)]
            return [first["seq"], second["seq"], taken, gw.hvps_status]
        finally:
            await gw.store.close()

    assert run(scenario()) == [1, 2, [True, True, False], "10"]
