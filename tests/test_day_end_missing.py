"""A day end the gateway never ran (it was down when the work date moved): one alert per
missed date naming what was left open, and the day end run late under dual control."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web

from gateway import outbound
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.errors import PaygateError
from gateway.messages import ccms801, codec
from gateway.messages.common import GroupHeader
from gateway.ops.web import OPS_KEY, add_routes
from gateway.redisproc import free_port
from ledger.testing import customer_account

# The bytes of outgoing messages, kept in the archive (gateway.outbound.stored_bytes)
SENT_BYTES = "SELECT " + outbound.stored_bytes("outbox") + " FROM outbox"

PAYER = customer_account(1, "corporate")


def transfer(amount: str, urgency: str) -> dict[str, Any]:
    return {"payer_account": PAYER, "payer_name": "示例客户", "payer_bank": "999100000027",
            "payee_account": "6222000000000001", "payee_name": "对手客户",
            "payee_bank": "888200000023", "amount": amount, "urgency": urgency}


async def run_on(data_dir: Path, at: str, work: Callable[[Gateway], Awaitable[Any]]) -> Any:
    """Start the gateway on its data directory at `at` (Shanghai), do `work`, stop: one
    day of a gateway that is then down until the next call."""
    clock = ManualClock(datetime.fromisoformat(at).replace(tzinfo=SHANGHAI))
    gw = Gateway(Settings(data_dir=str(data_dir), port=0,
                          npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"), clock=clock)
    await gw.start(serve_http=False)
    try:
        return await work(gw)
    finally:
        await gw.stop()


async def pay(gw: Gateway, key: str, amount: str, urgency: str = "normal") -> None:
    status, answer = await gw.submit_transfer("tests", key, transfer(amount, urgency))
    assert status == 201, answer


async def open_payer(gw: Gateway) -> None:
    def work(tx: Any) -> None:
        gw.ledger.open_customer_account(tx, PAYER, "示例客户", "corporate", gw.work_date)
        gw.ledger.deposit(tx, "test:opening", PAYER, 10**10, gw.work_date)
    await gw.store.run(work)


async def until_all_sent(gw: Gateway, timeout_s: float = 20.0) -> None:
    """Wait until every payment has gone to the (unreachable) NPC: `sent`, no answer.
    (A BEPS package sealed while the gateway stops can hold the stop for its phase limit:
    the packer may lose its cancellation inside a Redis call. Each day leaves nothing to
    seal, so each stop is quick.)"""
    for _ in range(int(timeout_s / 0.05)):
        left = await gw.store.run(lambda tx: tx.query_one(
            "SELECT COUNT(*) FROM payments WHERE state != 'sent'", ())[0])
        if not left:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"payments not sent within {timeout_s} s")


def notice(orig: str, cur: str, cur_date: str, orig_date: str = "2026-12-07"
           ) -> codec.Decoded:
    """A ccms.801 from the NPC as the handler receives it (built, then read back)."""
    header = GroupHeader("20261207000000009001", "2026-12-07T09:00:00", "0000", "0000",
                         "999100000019", "999100000019", "HVPS")
    body = ccms801.build(ccms801.SystemStatus(header, orig_date, orig, cur_date, cur))
    decoded = codec.decode(body, bare_ok=True)
    assert not decoded.problems, decoded.problems
    return decoded


async def receive(gw: Gateway, decoded: codec.Decoded) -> str:
    processed = await gw.store.run(lambda tx: gw.handlers.on_system_status(
        tx, decoded, gw.clock.now()))
    for action in processed.after_commit:
        action()
    return processed.outcome["outcome"]


async def missing_alerts(gw: Gateway) -> list[dict[str, Any]]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT detail FROM alerts WHERE code = 'day_end_missing' ORDER BY id", ()))
    return [json.loads(detail) for (detail,) in rows]


def test_missed_day_ends_are_alerted_once_each(tmp_path: Path) -> None:
    """Down over Monday's day end, then over Tuesday's, the NPC last heard on Monday: a
    start that finds a missed date new raises it once (Monday's once the NPC's notice of
    leaving it is overdue), naming every date still open with what it left open and the
    command for each, oldest first; a later start raises nothing again."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")
        await pay(gw, "m2", "200.00")
        await pay(gw, "m3", "60000.00", "urgent")
        gw.clock.advance(60)  # the BEPS package is sealed by age
        await until_all_sent(gw)
        # The gateway follows the NPC's notices on Monday (the last it heard).
        assert await receive(gw, notice("10", "30", "2026-12-07")) in ("applied", "corrected")

    async def tuesday(gw: Gateway) -> list[dict[str, Any]]:
        assert await missing_alerts(gw) == []  # the NPC's notice may still come
        await pay(gw, "t1", "300.00")
        gw.clock.advance(gw.window.notice_grace_s + 1)
        await gw.window_tick()
        await until_all_sent(gw)
        return await missing_alerts(gw)

    asyncio.run(run_on(tmp_path, "2026-12-07T09:00", monday))
    on_tuesday = asyncio.run(run_on(tmp_path, "2026-12-08T09:00", tuesday))
    tuesday_again = asyncio.run(run_on(tmp_path, "2026-12-08T11:00", missing_alerts))
    on_wednesday = asyncio.run(run_on(tmp_path, "2026-12-09T09:00", missing_alerts))

    assert [a["work_dates"] for a in on_tuesday] == [["2026-12-07"]]
    assert on_tuesday[0]["dates"] == [{
        "work_date": "2026-12-07", "ledger_day": "open", "reconciled": {}, "payments": 3,
        "not_final": {"beps out sent": 2, "hvps out sent": 1}}]
    assert "`paygate ops request day-end 2026-12-07`" in on_tuesday[0]["message"]
    assert tuesday_again == on_tuesday
    assert [a["work_dates"] for a in on_wednesday] == [["2026-12-07"],
                                                       ["2026-12-07", "2026-12-08"]]
    assert [a["new_work_dates"] for a in on_wednesday] == [["2026-12-07"], ["2026-12-08"]]
    assert on_wednesday[1]["dates"][0] == on_tuesday[0]["dates"][0]
    assert ("run each late, oldest first: `paygate ops request day-end 2026-12-07`; then "
            "`paygate ops request day-end 2026-12-08`") in on_wednesday[1]["message"]


def test_a_gateway_that_saw_the_date_move_raises_nothing(tmp_path: Path) -> None:
    """The day end ran (the ledger day of Monday closed): a start on Tuesday is quiet."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")
        await gw.store.run(lambda tx: gw.ledger.close_day(tx, gw.work_date))

    asyncio.run(run_on(tmp_path, "2026-12-07T09:00", monday))

    assert asyncio.run(run_on(tmp_path, "2026-12-08T09:00", missing_alerts)) == []


async def reconciliations_asked(gw: Gateway, count: int) -> list[str]:
    """The check dates of the hvps.710 in the outbox, once `count` are there."""
    for _ in range(200):
        rows = await gw.store.run(lambda tx: tx.query(
            SENT_BYTES + " WHERE mesg_type LIKE 'hvps.710%' ORDER BY id", ()))
        if len(rows) >= count:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # nothing more follows
    rows = await gw.store.run(lambda tx: tx.query(
        SENT_BYTES + " WHERE mesg_type LIKE 'hvps.710%' ORDER BY id", ()))
    return [codec.decode(bytes(envelope)).obj.check_date for (envelope,) in rows]


def test_a_start_during_end_of_day_reconciles_the_date_at_the_cutover(tmp_path: Path) -> None:
    """Started at 17:35 on Monday (40, end of day), the gateway never saw Monday's 40
    arrive; when the NPC cuts over to Tuesday, Monday's ledger day closes and Monday is
    reconciled (hvps.710 for 2026-12-07), once."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")
        gw.clock.advance(60)
        await until_all_sent(gw)

    async def evening(gw: Gateway) -> tuple[str, list[str], list[str]]:
        status = gw.hvps_status
        await receive(gw, notice("40", "00", "2026-12-08"))
        asked = await reconciliations_asked(gw, 1)
        closed = await gw.store.run(lambda tx: tx.query(
            "SELECT work_date FROM ledger_day", ()))
        return status, asked, [d for (d,) in closed]

    asyncio.run(run_on(tmp_path, "2026-12-07T09:00", monday))
    status, asked, closed = asyncio.run(run_on(tmp_path, "2026-12-07T17:35", evening))

    assert status == "40"
    assert asked == ["2026-12-07"]
    assert closed == ["2026-12-07"]


def test_a_backward_correction_reconciles_the_notices_date(tmp_path: Path) -> None:
    """Started at 18:05 on Monday the timetable says Tuesday's preparation; the NPC is
    late and announces Monday's end of day (40 for 2026-12-07): Monday is reconciled,
    never Tuesday, whose day has not begun."""
    async def evening(gw: Gateway) -> tuple[str, str, list[str]]:
        forecast = gw.work_date.isoformat()
        outcome = await receive(gw, notice("30", "40", "2026-12-07"))
        return forecast, outcome, await reconciliations_asked(gw, 1)

    forecast, outcome, asked = asyncio.run(run_on(tmp_path, "2026-12-07T18:05", evening))

    assert (forecast, outcome) == ("2026-12-08", "corrected")
    assert asked == ["2026-12-07"]


# Requests for a late day end on Wednesday 9 December, Monday and Tuesday both missed:
# (requester, work date) -> refusal code, or the request's state after a supervisor's
# approval. In order: each row sees what the rows before it did.
LATE_DAY_ENDS = [
    ("op1", "2026-12-09", "day_end_work_date_not_past"),
    ("op1", "2026-12-10", "day_end_work_date_not_past"),
    ("op1", "2026-12-32", "target_malformed"),
    ("op1", "20261207", "target_malformed"),
    ("op1", "2026-12-06", "day_end_not_work_date"),
    ("op1", "2026-12-05", "day_end_not_work_date"),
    ("op1", "2026-12-04", "day_end_before_first_work_date"),
    ("op1", "2026-12-08", "day_end_earlier_date_open"),
    ("op1", "2026-12-07", "executed"),
    ("op1", "2026-12-07", "work_date_closed"),
    ("sup1", "2026-12-08", "executed"),
    ("op1", "2026-12-01", "work_date_closed"),
]


def test_late_day_end_needs_a_second_person_and_the_oldest_date_first(tmp_path: Path) -> None:
    """An operator asks, a supervisor approves: the missed date's ledger day closes and a
    reconciliation (hvps.710) for it goes out; today, a closed date, a date after an open
    one and a malformed date are refused at once."""
    async def day(gw: Gateway) -> None:
        if gw.work_date.day == 7:
            await open_payer(gw)
        await pay(gw, f"d{gw.work_date.day}", "100.00")
        gw.clock.advance(60)
        await until_all_sent(gw)

    async def left_open(gw: Gateway) -> list[list[str]]:
        rows = await gw.store.run(lambda tx: tx.query(
            "SELECT a.detail FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
            "WHERE a.code = 'day_end_missing' AND k.alert_id IS NULL ORDER BY a.id", ()))
        return [json.loads(detail)["work_dates"] for (detail,) in rows]

    async def wednesday(gw: Gateway) -> tuple[list, list, list]:
        app = web.Application()
        add_routes(app, gw)
        ops = app[OPS_KEY]
        await ops.console.ready()
        outcomes = []
        still_open = [await left_open(gw)]
        for user, target, _expected in LATE_DAY_ENDS:
            try:
                req = await ops.console.request(ops.directory.get(user), "day_end", target)
            except PaygateError as exc:
                outcomes.append(exc.problems[0].code)
                continue
            approver = "dir1" if user == "sup1" else "sup1"
            done = await ops.console.decide(ops.directory.get(approver), req["id"], True)
            outcomes.append(done["state"])
            if done["state"] == "executed":
                still_open.append(await left_open(gw))
        closed = await gw.store.run(lambda tx: tx.query(
            "SELECT work_date FROM ledger_day ORDER BY work_date", ()))
        notes = await gw.store.run(lambda tx: tx.query(
            "SELECT k.by, k.note FROM alerts a JOIN alert_acks k ON k.alert_id = a.id "
            "WHERE a.code = 'day_end_missing' ORDER BY a.id", ()))
        asked = await gw.store.run(lambda tx: tx.query(
            "SELECT mesg_type FROM outbox WHERE mesg_type LIKE 'hvps.710%'", ()))
        return outcomes, [d for (d,) in closed], asked, still_open, notes

    asyncio.run(run_on(tmp_path, "2026-12-07T09:00", day))
    asyncio.run(run_on(tmp_path, "2026-12-08T09:00", day))
    outcomes, closed, asked, still_open, notes = asyncio.run(
        run_on(tmp_path, "2026-12-09T09:00", wednesday))

    assert outcomes == [expected for *_rest, expected in LATE_DAY_ENDS]
    assert closed == ["2026-12-07", "2026-12-08"]
    assert len(asked) == 2
    # Each alert is closed by the gateway once every date it names has run late.
    assert still_open == [[["2026-12-07"], ["2026-12-07", "2026-12-08"]],
                          [["2026-12-07", "2026-12-08"]], []]
    assert [by for by, _ in notes] == ["gateway", "gateway"]
    assert "2026-12-07 ran late" in notes[0][1] and "approved by" in notes[0][1]
    assert "2026-12-07, 2026-12-08 ran late" in notes[1][1]


@pytest.mark.parametrize("user", ["op1", "sup1"])
def test_nobody_approves_their_own_late_day_end(tmp_path: Path, user: str) -> None:
    """A late day end closes books for good: the requester cannot approve it."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")

    async def tuesday(gw: Gateway) -> str:
        app = web.Application()
        add_routes(app, gw)
        ops = app[OPS_KEY]
        operator = ops.directory.get(user)
        req = await ops.console.request(operator, "day_end", "2026-12-07")
        with pytest.raises(PaygateError) as refused:
            await ops.console.decide(operator, req["id"], True)
        return refused.value.problems[0].code

    asyncio.run(run_on(tmp_path, "2026-12-07T09:00", monday))

    assert asyncio.run(run_on(tmp_path, "2026-12-08T09:00", tuesday)) == "approver_is_requester"


def test_a_gateway_with_no_data_says_it_has_nothing_to_close(tmp_path: Path) -> None:
    """A gateway holding no payment and no closed ledger day has no past date to close:
    a late day end says so (day_end_nothing_to_close, naming the current date's day end
    as its first), rather than that the date is before a first work date it does not
    have; today and non-working days are refused as on any gateway."""
    async def wednesday(gw: Gateway) -> list[tuple[str, str]]:
        app = web.Application()
        add_routes(app, gw)
        ops = app[OPS_KEY]
        refusals = []
        for target in ("2026-12-08", "2026-12-06", "2026-12-09"):
            with pytest.raises(PaygateError) as refused:
                await ops.console.request(ops.directory.get("op1"), "day_end", target)
            problem = refused.value.problems[0]
            refusals.append((problem.code, problem.message))
        return refusals

    refusals = asyncio.run(run_on(tmp_path, "2026-12-09T09:00", wednesday))

    assert [code for code, _ in refusals] == ["day_end_nothing_to_close",
                                              "day_end_not_work_date",
                                              "day_end_work_date_not_past"]
    assert "2026-12-09" in refusals[0][1]


async def reconciled_at_start(gw: Gateway) -> None:
    """Friday reconciled at a start during its end of day, with nothing of it yet (as the
    NPC's answers would record it: HVPS and BEPS agreeing)."""
    at = gw.clock.now().isoformat()
    await gw.store.run(lambda tx: tx.executemany(
        "INSERT INTO recon (work_date, system, at, reconciled, differences) "
        "VALUES (?, ?, ?, 1, '[]')", [(gw.work_date.isoformat(), system, at)
                                      for system in ("HVPS", "BEPS")]))


def test_beps_payments_taken_after_the_day_end_leave_its_reconciliation_standing(
        tmp_path: Path) -> None:
    """Started on Friday during its end of day (40, before the cut-over to Monday), the
    gateway reconciles Friday, then takes BEPS payments into Friday, and is down before
    the cut-over. On Monday `day_end_missing` shows Friday reconciled: BEPS payments are
    reconciled with their netting date once it is complete (gateway.beps.netting_dates),
    not with the work date, and a BEPS row of the recon table names a netting date."""
    async def friday_evening(gw: Gateway) -> str:
        await open_payer(gw)
        await reconciled_at_start(gw)
        gw.clock.advance(60)
        await pay(gw, "s1", "100.00")
        await pay(gw, "s2", "200.00")
        gw.clock.advance(60)
        await until_all_sent(gw)
        return gw.work_date.isoformat()

    friday = asyncio.run(run_on(tmp_path, "2026-12-11T17:35", friday_evening))
    [alert] = asyncio.run(run_on(tmp_path, "2026-12-14T09:00", missing_alerts))

    assert friday == "2026-12-11"
    assert alert["dates"] == [{
        "work_date": "2026-12-11", "ledger_day": "open", "reconciled": {"HVPS": True},
        "payments": 2, "not_final": {"beps out sent": 2}}]
    assert "2026-12-11: ledger day open, reconciled, payments not final" in alert["message"]


def test_beps_payments_taken_after_the_day_end_do_not_reconcile_it_again(
        tmp_path: Path) -> None:
    """The same Friday evening, the gateway up until the NPC cuts over to Monday:
    Friday's ledger day closes, and Friday is not reconciled again for the BEPS payment
    taken after its reconciliation (no second hvps.710)."""
    async def friday_evening(gw: Gateway) -> tuple[list[str], list[str]]:
        await open_payer(gw)
        await reconciled_at_start(gw)
        gw.clock.advance(60)
        await pay(gw, "s1", "100.00")
        gw.clock.advance(60)
        await until_all_sent(gw)
        await receive(gw, notice("40", "00", "2026-12-14"))
        for _ in range(200):
            closed = await gw.store.run(lambda tx: tx.query(
                "SELECT work_date FROM ledger_day", ()))
            if closed:
                break
            await asyncio.sleep(0.05)
        return [d for (d,) in closed], await reconciliations_asked(gw, 0)

    assert asyncio.run(run_on(tmp_path, "2026-12-11T17:35", friday_evening)) == (
        ["2026-12-11"], [])


def test_an_hvps_payment_held_for_the_next_window_leaves_the_date_s_hvps_reconciliation_standing(
        tmp_path):
    """The HVPS reconciliation counts our payments by the day the NPC settled them: one
    taken after the HVPS day end and held for the next window settles on a later date,
    so it cannot make the date's reconciliation stale. A BEPS row of the same date is
    that netting date's reconciliation, not the work date's: it is not listed, and a
    BEPS payment taken after it changes nothing."""
    import ledger
    from gateway import dayend, dialect, payments
    from gateway.store import SCHEMA
    from tests.test_postgres_concurrency import _payment

    def payment(pid: str, channel: str, created: str) -> dict[str, Any]:
        return dict(_payment(pid, pid, "held"), channel=channel, created_at=created,
                    updated_at=created, reason="waiting_for_hvps_window"
                    if channel == "hvps" else None)

    db = ledger.connect(f"sqlite:///{tmp_path / 'gw.db'}")
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        ledger.Ledger().install(tx)
        for system in ("HVPS", "BEPS"):
            tx.execute("INSERT INTO recon (work_date, system, at, reconciled, differences) "
                       "VALUES ('2026-12-07', ?, '2026-12-07T17:30:00+08:00', 1, '[]')",
                       (system,))
        payments.insert(tx, payment("P1", "hvps", "2026-12-07T18:00:00+08:00"))
        payments.insert(tx, payment("P2", "beps", "2026-12-07T18:00:00+08:00"))
        [found] = dayend.missing_day_ends(tx, datetime(2026, 12, 8).date())
    db.close()

    assert found["reconciled"] == {"HVPS": True}
    assert "joined_after_reconciliation" not in found


class _Alerts:
    """The gateway as a day end's record of its reconciliation sees it: alerts raised."""

    def __init__(self) -> None:
        self.raised: list[tuple[str, dict[str, Any]]] = []

    def alert(self, tx: Any, code: str, **detail: Any) -> None:
        self.raised.append((code, detail))


def test_a_days_differences_are_alerted_as_a_list() -> None:
    """A work date's differences go into its alert as a list (as the package differences'
    do), not as JSON text inside the detail; a long list is cut, its count kept."""
    from gateway.dayend import DayEnd
    from gateway.recon import DIFFERENCES_LISTED_MAX
    differences = [{"kind": "hvps.111/A100", "field": "count", "ours": n, "npc": n + 1}
                   for n in range(DIFFERENCES_LISTED_MAX + 3)]
    gw = _Alerts()
    DayEnd(gw)._record(None, {"work_date": "2026-12-07", "reconciled": False, "parts": {
        "hvps": {"reconciled": False, "differences": differences},
        "BepsExtension": {"reconciled": False, "alerted": True, "differences": [{}]}}})

    (code, detail), = gw.raised
    assert code == "reconciliation_differences"
    assert (detail["system"], detail["count"]) == ("hvps", DIFFERENCES_LISTED_MAX + 3)
    assert detail["differences"] == differences[:DIFFERENCES_LISTED_MAX]


async def closed_days(gw: Gateway) -> list:
    """The closed ledger days, once one is (or after two seconds)."""
    for _ in range(40):
        closed = await gw.store.run(lambda tx: tx.query("SELECT work_date FROM ledger_day",
                                                        ()))
        if closed:
            return closed
        await asyncio.sleep(0.05)
    return closed


def test_a_restart_over_the_cutover_runs_the_day_end_at_the_npc_s_notice(
        tmp_path: Path) -> None:
    """Down from 17:44 to 17:46 on Monday, the NPC last heard at 40 on Monday: the
    timetable gives Tuesday at the restart, but the day end waits for the NPC; its notice
    of the cut-over (40 on Monday to 15 on Tuesday, the state the timetable already gives)
    runs Monday's day end as a live cut-over does: ledger day closed, reports written,
    Monday reconciled, no `day_end_missing`; a second notice runs nothing again."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")
        gw.clock.advance(60)
        await until_all_sent(gw)
        assert await receive(gw, notice("30", "40", "2026-12-07")) in ("applied", "corrected")

    async def restarted(gw: Gateway) -> tuple[list, list, list, list[str], list[str]]:
        before = await gw.store.run(lambda tx: tx.query("SELECT work_date FROM ledger_day",
                                                        ()))
        # Monday's own 40 may have asked already, before that process stopped: only what
        # this run asks is counted.
        earlier = len(await reconciliations_asked(gw, 0))
        assert await receive(gw, notice("40", "15", "2026-12-08")) == "confirmed"
        asked = (await reconciliations_asked(gw, earlier + 1))[earlier:]
        assert await receive(gw, notice("15", "00", "2026-12-08")) == "applied"
        await asyncio.sleep(0.2)
        closed = await closed_days(gw)
        reports = sorted(p.name for p in (tmp_path / "reports").iterdir())
        return before, closed, await missing_alerts(gw), asked, reports

    asyncio.run(run_on(tmp_path, "2026-12-07T16:59", monday))
    before, closed, alerts, asked, reports = asyncio.run(
        run_on(tmp_path, "2026-12-07T17:46", restarted))

    assert before == []
    assert closed == [("2026-12-07",)]
    assert alerts == []
    assert asked == ["2026-12-07"]
    assert any("2026-12-07" in name for name in reports)


@pytest.mark.parametrize("status, stated_date", [("00", "2026-12-08"),
                                                  ("15", "2026-12-07")])
def test_a_restart_after_the_npc_left_the_date_runs_its_day_end_at_start(
        tmp_path: Path, status: str, stated_date: str) -> None:
    """The NPC's cut-over notice came (Tuesday stated, or the cut-over 15 dated with
    Monday) but the process stopped before Monday's ledger day closed: the next start
    runs Monday's day end itself."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")
        gw.clock.advance(60)
        await until_all_sent(gw)
        await gw.store.run(lambda tx: gw.windows_record(
            tx, "HVPS", "40", status, stated_date, gw.clock.now(), "ccms.801"))

    async def tuesday(gw: Gateway) -> tuple[list, list]:
        return await closed_days(gw), await missing_alerts(gw)

    asyncio.run(run_on(tmp_path, "2026-12-07T09:00", monday))
    closed, alerts = asyncio.run(run_on(tmp_path, "2026-12-08T09:00", tuesday))

    assert closed == [("2026-12-07",)]
    assert alerts == []
