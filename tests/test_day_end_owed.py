"""The HVPS reconciliation a closed work date owes: recorded in the transaction that closes
its ledger day, so that a gateway killed between the cut-over's close and its hvps.710
asks for it at its next start; alerted while it stays owed, done once the NPC's hvps.711
is compared, and asked again by an operator (`hvps_reconcile`). A settlement booked after
its date closed is alerted and noted beside that date's reports. A ccms.801 sent before
the cut-over and delivered after it does not move the window back. A day end step that
fails says which step, which date and what it waited for."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway import late_entries, recon
from gateway.app import Gateway
from gateway.beps import items
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.dayend import day_reports
from gateway.errors import PaygateError
from gateway.messages.common import GroupHeader
from gateway.messages.hvps710 import ReconSummary
from gateway.ops import cli_render, snapshot
from gateway.ops.web import OPS_KEY, add_routes
from gateway.redisproc import free_port
from gateway.windows import WindowState
from tests.beps_support import NOW, held_package
from tests.beps_support import answer as answer_netted
from tests.test_day_end_missing import notice, open_payer, receive, reconciliations_asked

MONDAY, TUESDAY = "2026-12-07", "2026-12-08"


async def run_on(data_dir: Path, at: str, work: Callable[[Gateway], Awaitable[Any]],
                 **settings: Any) -> Any:
    """One life of the gateway on its data directory, from `at` (Shanghai): started,
    `work` done, stopped (an in-process restart: the next call is the next start)."""
    clock = ManualClock(datetime.fromisoformat(at).replace(tzinfo=SHANGHAI))
    gw = Gateway(Settings(data_dir=str(data_dir), port=0,
                          npc_url=f"http://127.0.0.1:{free_port()}/link/inbound", **settings),
                 clock=clock)
    await gw.start(serve_http=False)
    try:
        return await work(gw)
    finally:
        await gw.stop()


async def owed_rows(gw: Gateway) -> list[tuple[str, bool, Any]]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT work_date, done_at, alert_id FROM recon_owed ORDER BY work_date", ()))
    return [(day, done is not None, alert_id) for day, done, alert_id in rows]


async def owed_alerts(gw: Gateway) -> list[tuple[dict[str, Any], str | None]]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT a.detail, k.by FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
        "WHERE a.code = ? ORDER BY a.id", (recon.ALERT_OWED,)))
    return [(json.loads(detail), by) for detail, by in rows]


async def answer(gw: Gateway, day: str) -> None:
    """The NPC's hvps.711 for `day`, compared as its handler does (nothing settled on
    either side: the totals agree)."""
    header = GroupHeader("20261208000000009711", "2026-12-08T09:00:00", "0000", "0000",
                         "999100000019", "999100000019", "HVPS")
    summary = ReconSummary(header, None, day, (), ())
    now = gw.clock.now()
    result = await gw.store.run(lambda tx: recon.compare_hvps(tx, summary, now))
    gw.recon_done(result)


def test_a_kill_between_the_close_and_the_reconciliation_is_finished_at_the_restart(
        tmp_path: Path) -> None:
    """Monday's cut-over closes its ledger day; the process dies before its hvps.710 goes
    (the reconciliation step never runs). The closed day is recorded as owed in the
    close's own transaction; the next start asks the NPC for Monday, the owed date is
    alerted once it stays owed past `recon_answer_overdue_s` and done (its alert closed by
    the gateway) when the answer is compared; an operator may ask again, for a closed
    date only."""
    async def cutover_then_killed(gw: Gateway) -> tuple[list, list[str], list[str]]:
        await open_payer(gw)
        gw.day_end._reconcile_once = lambda day: None  # killed before the hvps.710
        await receive(gw, notice("40", "00", TUESDAY))
        await gw.day_end.wait_idle()
        closed = await gw.store.run(lambda tx: tx.query(
            "SELECT work_date FROM ledger_day", ()))
        return await owed_rows(gw), [d for (d,) in closed], await reconciliations_asked(gw, 0)

    async def restarted(gw: Gateway) -> dict[str, Any]:
        seen: dict[str, Any] = {"asked": await reconciliations_asked(gw, 1)}
        gw.clock.advance(601)
        await gw.day_end.finish_owed()
        seen["alerts"] = await owed_alerts(gw)
        seen["status"] = await gw.store.run(
            lambda tx: snapshot.books(gw, tx)["hvps_reconciliation_owed"])
        await answer(gw, MONDAY)
        await gw.day_end.wait_idle()
        seen["owed_after_answer"] = await owed_rows(gw)
        seen["alerts_after_answer"] = await owed_alerts(gw)
        app = web.Application()
        add_routes(app, gw)
        ops = app[OPS_KEY]
        await ops.console.ready()
        req = await ops.console.request(ops.directory.get("op1"), "hvps_reconcile", MONDAY)
        seen["request"] = req["state"]
        seen["asked_again"] = await reconciliations_asked(gw, 2)
        seen["owed_again"] = await owed_rows(gw)
        with pytest.raises(PaygateError) as refused:
            await ops.console.request(ops.directory.get("op1"), "hvps_reconcile", TUESDAY)
        seen["refused"] = refused.value.problems[0].code
        return seen

    owed, closed, asked = asyncio.run(run_on(tmp_path, f"{MONDAY}T17:35", cutover_then_killed))
    seen = asyncio.run(run_on(tmp_path, f"{TUESDAY}T09:00", restarted))

    assert closed == [MONDAY] and asked == []
    assert owed == [(MONDAY, False, None)]
    assert seen["asked"] == [MONDAY]
    [(alert, by)] = seen["alerts"]
    assert alert["work_date"] == MONDAY and by is None
    assert f"paygate ops request hvps-reconcile {MONDAY}" in alert["message"]
    [owed_row] = seen["status"]
    assert owed_row["work_date"] == MONDAY and owed_row["alert"]
    assert cli_render._recon_owed(seen["status"])[0][1].startswith(
        f"OWED: HVPS {MONDAY} (ledger day closed) since ")
    assert [(day, done) for day, done, _ in seen["owed_after_answer"]] == [(MONDAY, True)]
    assert [by for _, by in seen["alerts_after_answer"]] == ["gateway"]
    assert seen["request"] == "executed"
    assert seen["asked_again"] == [MONDAY, MONDAY]
    assert seen["owed_again"] == [(MONDAY, False, None)]
    assert seen["refused"] == "work_date_not_closed"


def test_a_date_reconciled_before_its_cutover_owes_nothing(tmp_path: Path) -> None:
    """Monday's 40 reconciles Monday (answered before the cut-over): its close records
    nothing owed, and a restart asks the NPC for nothing."""
    async def evening(gw: Gateway) -> list:
        await open_payer(gw)
        await receive(gw, notice("30", "40", MONDAY))
        await reconciliations_asked(gw, 1)
        await answer(gw, MONDAY)
        await receive(gw, notice("40", "00", TUESDAY))
        await gw.day_end.wait_idle()
        return await owed_rows(gw)

    async def restarted(gw: Gateway) -> list[str]:
        return await reconciliations_asked(gw, 1)  # Monday's own, nothing more

    owed = asyncio.run(run_on(tmp_path, f"{MONDAY}T17:30", evening))

    assert owed == []
    assert asyncio.run(run_on(tmp_path, f"{TUESDAY}T09:00", restarted)) == [MONDAY]


def test_a_status_notice_of_a_past_date_never_moves_the_window_back() -> None:
    """Cut over to Tuesday by the NPC's own notice, the gateway then gets Monday's 30 -> 40
    the NPC sent before the cut-over (the caller found the NPC moved on past Monday):
    kept in the history as `past_work_date`, the window stays on Tuesday; a 15 dated
    Monday is the 15 in force."""
    state = WindowState(BusinessCalendar(), datetime(2026, 12, 7, 17, 40, tzinfo=SHANGHAI))
    cutover = datetime(2026, 12, 7, 17, 46, tzinfo=SHANGHAI)
    assert state.apply_notice("40", "15", TUESDAY, cutover) in ("applied", "corrected")
    assert (state.code, state.work_date) == ("15", date(2026, 12, 8))

    late = datetime(2026, 12, 7, 17, 47, tzinfo=SHANGHAI)
    # As the gateway finds it stored: Monday's ledger day closed, Tuesday the NPC's.
    assert state.apply_notice("30", "40", MONDAY, late, moved_on_by_notice=True) == \
        "past_work_date"
    assert state.apply_notice("40", "15", MONDAY, late, moved_on_by_notice=True) == "repeat"

    assert (state.code, state.work_date) == ("15", date(2026, 12, 8))
    assert [(e.to_code, e.work_date.isoformat(), e.outcome) for e in state.history[-1:]] == \
        [("40", MONDAY, "past_work_date")]


def test_an_npc_running_late_wins_over_the_timetables_cutover() -> None:
    """Only the timetable cut over to Tuesday (no notice yet): the NPC, running late,
    announces Monday's 20 -> 30 at 17:50. The schedule is a forecast, the first notice
    wins: the window is Monday's clearing window again (`corrected`), not left on
    Tuesday while the NPC settles."""
    state = WindowState(BusinessCalendar(), datetime(2026, 12, 7, 16, 0, tzinfo=SHANGHAI))
    state.apply_schedule(datetime(2026, 12, 7, 17, 46, tzinfo=SHANGHAI))
    assert (state.code, state.work_date) == ("15", date(2026, 12, 8))
    out = state.apply_notice("20", "30", MONDAY, datetime(2026, 12, 7, 17, 50, tzinfo=SHANGHAI))
    assert (out, state.code, state.work_date) == ("corrected", "30", date(2026, 12, 7))


def test_an_npc_running_late_is_followed_by_the_gateway(tmp_path: Path) -> None:
    """At the gateway: its timetable cut over to Tuesday at 17:45 (Monday's ledger day
    closed), the NPC's 20 -> 30 for Monday comes at 17:50. The NPC settles Monday still:
    the window follows it (`corrected`, status 30), nothing ignored."""
    async def evening(gw: Gateway) -> tuple[str, str, str, bool]:
        gw.day_end._reconcile_once = lambda day: None
        gw.clock.advance(46 * 60)  # 17:46
        await gw.window_tick()
        await gw.day_end.wait_idle()
        closed = await gw.store.run(lambda tx: tx.query_one(
            "SELECT 1 FROM ledger_day WHERE work_date = ?", (MONDAY,)))
        gw.clock.advance(4 * 60)
        outcome = await receive(gw, notice("20", "30", MONDAY))
        return outcome, gw.hvps_status, gw.window.work_date.isoformat(), closed is not None

    assert asyncio.run(run_on(tmp_path, f"{MONDAY}T17:00", evening)) == (
        "corrected", "30", MONDAY, True)


def test_a_process_started_after_the_cutover_judges_a_late_notice_as_the_others_do(
        tmp_path: Path) -> None:
    """The NPC's 40 -> 00 moved the gateway on to Tuesday (recorded as a notice's
    change); a process started after it, its window forecast by the timetable, gets
    Monday's late 30 -> 40 (after its own timetable opened Tuesday): `past_work_date`, as
    the process that lived through the cut-over judged it, from the last state the NPC
    stated as recorded, not from this process's start or window. A cut-over
    made by the timetable alone lets the same notice win (`corrected`) in either."""
    async def monday(gw: Gateway) -> str:
        await open_payer(gw)
        gw.day_end._reconcile_once = lambda day: None
        await receive(gw, notice("40", "00", TUESDAY))
        await gw.day_end.wait_idle()
        return gw.window.source

    async def restarted(gw: Gateway) -> tuple[str, str, str, Any]:
        assert (gw.window.source, gw.window.work_date.isoformat()) == ("schedule", TUESDAY)
        gw.clock.advance(11 * 60)  # 08:31: its timetable opens Tuesday, recorded as such
        await gw.window_tick()
        outcome = await receive(gw, notice("30", "40", MONDAY))
        return outcome, gw.window.code, gw.window.work_date.isoformat(), gw.hvps_hold

    assert asyncio.run(run_on(tmp_path, f"{MONDAY}T17:35", monday)) == "ccms.801"
    assert asyncio.run(run_on(tmp_path, f"{TUESDAY}T08:20", restarted)) == (
        "past_work_date", "10", TUESDAY, None)

    by_timetable = WindowState(BusinessCalendar(),
                               datetime(2026, 12, 7, 18, 10, tzinfo=SHANGHAI))
    assert by_timetable.apply_notice(
        "30", "40", MONDAY, datetime(2026, 12, 7, 18, 11, tzinfo=SHANGHAI)) == "corrected"


def test_a_late_notice_of_a_past_date_is_logged_and_holds_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """At the gateway: the late notice is logged with its date and status, leaves the
    status and work date as they are, and neither holds HVPS sending nor raises."""
    async def evening(gw: Gateway) -> tuple[str, str, str, Any, list]:
        gw.clock.advance(6 * 60)  # 17:46: the NPC cuts over to Tuesday
        gw.day_end._reconcile_once = lambda day: None
        await receive(gw, notice("40", "15", TUESDAY))
        await gw.day_end.wait_idle()  # Monday's ledger day closed
        outcome = await receive(gw, notice("30", "40", MONDAY))
        alerts = await gw.store.run(lambda tx: tx.query(
            "SELECT code FROM alerts WHERE code != 'window_changed'", ()))
        return outcome, gw.hvps_status, gw.window.work_date.isoformat(), gw.hvps_hold, alerts

    with caplog.at_level(logging.WARNING, logger="paygate.handlers"):
        outcome, status, day, hold, alerts = asyncio.run(
            run_on(tmp_path, f"{MONDAY}T17:40", evening))

    assert (outcome, status, day, hold) == ("past_work_date", "15", TUESDAY, None)
    assert [code for (code,) in alerts if code.startswith("hvps_status")] == []
    logged = [r.getMessage() for r in caplog.records
              if "event=hvps_status_notice_past_work_date" in r.getMessage()]
    assert len(logged) == 1
    assert f"cur=40 notice_work_date={MONDAY}" in logged[0]
    assert f"work_date={TUESDAY}" in logged[0]


def test_a_date_reconciled_once_is_asked_again_when_owed_again(tmp_path: Path) -> None:
    """The leader reconciled Monday at its 40; Monday is then owed again by other means
    (an operator's hvps-reconcile whose hvps.710 another process sent unanswered, a close
    committing after the answer's comparison): the leader's `finish_owed` asks for it
    again, the date no longer counted as one a step of this run reconciles."""
    async def work(gw: Gateway) -> list[str]:
        await open_payer(gw)
        await receive(gw, notice("30", "40", MONDAY))
        await reconciliations_asked(gw, 1)
        await answer(gw, MONDAY)
        await gw.day_end.wait_idle()
        now = gw.clock.now()
        await gw.store.run(lambda tx: recon.owe(tx, MONDAY, now))  # owed again elsewhere
        gw.clock.advance(3600)
        return await gw.day_end.finish_owed()

    assert asyncio.run(run_on(tmp_path, f"{MONDAY}T17:25", work)) == [MONDAY]


def test_a_failed_day_end_step_names_the_step_the_date_and_what_it_waited_for(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The NPC does not answer Monday's hvps.710 in time: the failure's log line names the
    step, the work date, the hvps.711 it waited for and the link's state."""
    async def evening(gw: Gateway) -> None:
        async def no_answer(day: date, timeout_s: float = 0.0) -> dict[str, Any]:
            raise TimeoutError()
        gw.reconcile_hvps = no_answer
        await receive(gw, notice("30", "40", MONDAY))
        await gw.day_end.wait_idle()

    with caplog.at_level(logging.ERROR, logger="paygate.dayend"):
        asyncio.run(run_on(tmp_path, f"{MONDAY}T17:30", evening))

    [line] = [r.getMessage() for r in caplog.records
              if "event=day_end_step_failed" in r.getMessage()]
    assert f"step=reconcile work_date={MONDAY}" in line
    assert 'waited_for="hvps.711 answer to our hvps.710"' in line
    assert "link=" in line and 'cause="no answer within 60 s"' in line


def test_a_settlement_booked_after_its_day_closed_is_alerted_and_noted(
        tmp_path: Path) -> None:
    """The NPC settled a BEPS round on Monday, but its saps.606 came after Monday's ledger
    day closed: booked on Tuesday. The entry is kept as late with an alert that stays
    open (naming Monday, the entry, the amounts and the difference), Monday's
    `late-entries` note is written beside its reports and given by `ops day-reports`; a
    settlement booked on its own date is nothing of the kind."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        gw.day_end._reconcile_once = lambda day: None  # no NPC to wait for here
        await receive(gw, notice("40", "00", TUESDAY))
        await gw.day_end.wait_idle()

    async def tuesday(gw: Gateway) -> dict[str, Any]:
        now = gw.clock.now()

        def book(tx: Any, settled_on: str, event: str) -> Any:
            entry = gw.ledger.settle_net(tx, event, f"{MONDAY}/05", 0, 250_00,
                                         gw.work_date.isoformat())
            return entry, late_entries.booked_after_close(
                tx, gw, settled_on, entry, f"BEPS round {MONDAY}/05", 0, 250_00, now)
        seen: dict[str, Any] = {}
        seen["late"] = await gw.store.run(lambda tx: book(tx, MONDAY, "t:late"))
        seen["on_time"] = await gw.store.run(lambda tx: book(tx, TUESDAY, "t:on_time"))
        seen["alerts"] = await gw.store.run(lambda tx: tx.query(
            "SELECT a.id, a.detail, k.by FROM alerts a LEFT JOIN alert_acks k "
            "ON k.alert_id = a.id WHERE a.code = ?", (late_entries.ALERT,)))
        seen["written"] = await gw.day_end.write_late_notes()
        seen["written_again"] = await gw.day_end.write_late_notes()
        seen["reports"] = await gw.store.run(lambda tx: day_reports(tx, gw.ledger, MONDAY))
        return seen

    asyncio.run(run_on(tmp_path, f"{MONDAY}T17:35", monday))
    seen = asyncio.run(run_on(tmp_path, f"{TUESDAY}T09:00", tuesday))

    (entry, alert_id), (_, on_time) = seen["late"], seen["on_time"]
    assert entry and alert_id and on_time is None
    [(listed_id, detail, by)] = seen["alerts"]
    detail = json.loads(detail)
    assert (listed_id, by) == (alert_id, None)
    assert {k: detail[k] for k in ("closed_date", "entry_id", "booked_on", "credit_fen",
                                   "debit_fen", "statement_minus_npc_fen")} == {
        "closed_date": MONDAY, "entry_id": entry, "booked_on": TUESDAY, "credit_fen": 250_00,
        "debit_fen": 0, "statement_minus_npc_fen": -250_00}
    assert (f"the clearing balance of daily-statement-{MONDAY}.csv is 250.00 yuan below the "
            f"NPC's position for {MONDAY}") in detail["message"]
    [path] = seen["written"]
    assert path.endswith(f"reports/late-entries-{MONDAY}.csv") and seen["written_again"] == []
    text = Path(path).read_text(encoding="utf-8")
    assert f"{entry},{TUESDAY},BEPS round {MONDAY}/05,0.00,250.00,250.00" in text
    names = [f["name"] for f in seen["reports"]["files"]]
    assert names[-1] == f"late-entries-{MONDAY}.csv"
    assert seen["reports"]["files"][-1]["text"].replace("\r\n", "\n") == text


def test_a_round_settled_on_a_closed_date_is_kept_as_late_by_the_settlement(
        tmp_path: Path) -> None:
    """Through the BEPS settlement itself: a round the NPC settled on Saturday the 12th,
    whose ledger day had closed, booked on Monday the 14th, is kept as late, with its
    alert (a round booked on its own date is not: `booked_after_close` above)."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300])
    answer_netted(db, gw, package_id, "PR03")
    with db.transaction() as tx:
        gw.ledger.close_day(tx, date(2026, 12, 12))
    gw.work_date = date(2026, 12, 14)
    with db.transaction() as tx:
        items.settle(tx, gw, "2026-12-12", "03", "2026-12-12", NOW)
        late = tx.query("SELECT closed_date, booked_on, source, debit_fen, credit_fen "
                        "FROM late_entries", ())

    assert late == [("2026-12-12", "2026-12-14", "BEPS round 2026-12-12/03", 600, 0)]
    assert gw.alerts[-1] == late_entries.ALERT


def test_a_round_of_a_date_whose_day_end_was_missed_is_kept_as_late(tmp_path: Path) -> None:
    """The gateway down over the 12th's cut-over (its day end missed, the ledger day still
    open): the round the NPC settled on the 12th is booked on the 14th and kept as late
    at once; the 12th, closed late, lacks it as a closed day would."""
    db, gw, package_id = held_package(tmp_path, [100, 200, 300])
    answer_netted(db, gw, package_id, "PR03")
    gw.work_date = date(2026, 12, 14)
    with db.transaction() as tx:
        items.settle(tx, gw, "2026-12-12", "03", "2026-12-12", NOW)
    with db.transaction() as tx:
        gw.ledger.close_day(tx, date(2026, 12, 12))  # the late day end
        late = tx.query("SELECT closed_date, booked_on FROM late_entries", ())

    assert late == [("2026-12-12", "2026-12-14")]
    assert gw.alerts[-1] == late_entries.ALERT


async def alerts_of(gw: Gateway, code: str) -> list[tuple[dict[str, Any], str | None]]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT a.detail, k.by FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
        "WHERE a.code = ? ORDER BY a.id", (code,)))
    return [(json.loads(detail), by) for detail, by in rows]


def test_an_unanswered_hvps_710_of_an_owed_date_is_one_alert(tmp_path: Path) -> None:
    """One alert per cause. Monday's 710 asked at its 40 goes unanswered: overdue. Its
    ledger day closes owing the reconciliation: once owed past the limit, the owed alert
    stands and the overdue one is closed by the gateway, naming it. Tuesday, closed and
    owed before its 710 went, gets the owed alert only. The answers close the owed alerts;
    a BEPS ask is alerted as overdue as before."""
    async def work(gw: Gateway) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        after_s = gw.settings.recon_answer_overdue_s

        async def tick() -> None:
            now = gw.clock.now()
            await gw.store.run(lambda tx: recon.raise_overdue(tx, gw, now, after_s))
            await gw.store.run(lambda tx: recon.raise_owed(tx, gw, now, after_s))

        def run(fn: Callable[..., Any], *args: Any) -> Any:
            now = gw.clock.now()
            return gw.store.run(lambda tx: fn(tx, *args, now))
        await run(recon.asked, "HVPS", MONDAY)
        await run(recon.asked, "BEPS", MONDAY)
        gw.clock.advance(after_s + 1)
        await tick()
        seen["overdue_first"] = [(a["system"], by) for a, by in
                                 await alerts_of(gw, recon.ALERT_OVERDUE)]
        await run(recon.owe, MONDAY)  # the cut-over closed Monday unreconciled
        await run(recon.owe, TUESDAY)  # Tuesday's close, then its 710
        await run(recon.asked, "HVPS", TUESDAY)
        gw.clock.advance(after_s + 1)
        await tick()
        await tick()
        seen["overdue"] = await alerts_of(gw, recon.ALERT_OVERDUE)
        seen["owed"] = await alerts_of(gw, recon.ALERT_OWED)
        seen["listed"] = await gw.store.run(lambda tx: recon.overdue(tx))
        await run(recon.answered, "HVPS", MONDAY)
        await run(recon.answered, "HVPS", TUESDAY)
        seen["owed_after"] = [by for _, by in await alerts_of(gw, recon.ALERT_OWED)]
        return seen

    seen = asyncio.run(run_on(tmp_path, f"{MONDAY}T17:25", work))

    assert seen["overdue_first"] == [("HVPS", None), ("BEPS", None)]
    [(hvps, closed_by), (beps, beps_by)] = seen["overdue"]
    assert hvps["system"] == "HVPS" and closed_by == "gateway"
    assert beps["system"] == "BEPS" and beps_by is None
    assert [a["work_date"] for a, by in seen["owed"] if by is None] == [MONDAY, TUESDAY]
    assert [(row["system"], row["work_date"]) for row in seen["listed"]] == [("BEPS", MONDAY)]
    assert seen["owed_after"] == ["gateway", "gateway"]


def test_a_process_running_for_years_keeps_a_bounded_memory_of_dates(
        tmp_path: Path) -> None:
    """Each day end leaves a result by date in memory (the day end's, the hvps.711's, the
    hvps.713's) and a failed try a rest: over two years of work dates only the newest
    `recon.DAYS_KEPT` stay, and a rest ends with the date's debt."""
    async def work(gw: Gateway) -> dict[str, Any]:
        async def agreed(day: date, timeout_s: float = 0.0) -> dict[str, Any]:
            return {"reconciled": True}
        gw.reconcile_hvps = agreed
        for ext in gw.extensions:
            if hasattr(ext, "reconcile_at_day_end"):
                ext.reconcile_at_day_end = agreed
        day = date.fromisoformat(MONDAY)
        days = []
        for _ in range(500):
            day = gw.calendar.next_working_day(day)
            days.append(day.isoformat())
            await gw.day_end.reconcile(day)
            await gw.day_end.wait_reconciled(day)
            gw.recon_done({"work_date": day.isoformat(), "reconciled": True})
            recon.keep_day(gw.recon_details, day.isoformat(), {"differences": []})
            gw.day_end._owed_retry_at[day.isoformat()] = gw.clock.now()
        await gw.day_end.finish_owed()  # none owed in the books: no rest left
        return {"days": days, "results": sorted(gw.day_end.results),
                "done": sorted(gw.day_end._done), "recon_results": sorted(gw.recon_results),
                "recon_details": sorted(gw.recon_details),
                "retry": dict(gw.day_end._owed_retry_at)}

    seen = asyncio.run(run_on(tmp_path, f"{MONDAY}T09:00", work))

    newest = seen["days"][-recon.DAYS_KEPT:]
    for name in ("results", "done", "recon_results", "recon_details"):
        assert seen[name] == newest, name
    assert seen["retry"] == {}
