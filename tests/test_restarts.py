"""Restarts: a Redis still loading its append-only file, demo money on a later date."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import BusyLoadingError

from gateway.app import Gateway
from gateway.config import Settings


class _Loading:
    def __init__(self, answers_loading: int) -> None:
        self.left = answers_loading
        self.pings = 0

    async def ping(self) -> bool:
        self.pings += 1
        if self.left:
            self.left -= 1
            raise BusyLoadingError("Redis is loading the dataset in memory")
        return True


def test_start_waits_until_redis_has_loaded(tmp_path):
    gw = Gateway(Settings(data_dir=str(tmp_path)))
    gw.redis = _Loading(answers_loading=3)
    asyncio.run(gw._redis_loaded())
    assert gw.redis.pings == 4


def test_demo_accounts_survive_a_restart_on_a_later_work_date(tmp_path):
    """`serve --simulate` opens its demo money once per data directory, whatever day the
    gateway restarts on."""
    from datetime import timedelta

    from gateway.serve import DEMO_BALANCE_FEN, open_demo_accounts

    async def scenario() -> tuple[list, dict]:
        gw = Gateway(Settings(data_dir=str(tmp_path)))
        await gw.store.open()
        try:
            first = await open_demo_accounts(gw)
            gw.work_date = gw.work_date + timedelta(days=1)
            again = await open_demo_accounts(gw)
            assert again == first
            shown = [(a["ledger_balance"], a["available"]) for a in again.values()]
            # 100.00 held for a payment under way: still in the ledger balance, no longer
            # available.
            held = next(iter(again))
            await gw.store.run(lambda tx: gw.ledger.hold(
                tx, "test:hold", held, 100_00, gw.work_date, "test"))
            return shown, (await open_demo_accounts(gw))[held]
        finally:
            await gw.store.close()
    balances, with_hold = asyncio.run(scenario())
    assert balances == [(f"{DEMO_BALANCE_FEN // 100}.00",) * 2] * 3
    assert (with_hold["ledger_balance"], with_hold["available"]) == (
        f"{DEMO_BALANCE_FEN // 100}.00", f"{DEMO_BALANCE_FEN // 100 - 100}.00")


def _alerts(gw) -> "asyncio.Future":
    return gw.store.run(lambda tx: tx.query(
        "SELECT code, detail FROM alerts WHERE code != 'calendar_data_missing' ORDER BY id", ()))


@pytest.mark.e2e
def test_restart_next_morning_raises_no_window_alerts(tmp_path):
    """`serve --simulate` restarted on the next working morning with its data kept: the
    simulated NPC re-announces HVPS open (10 on the 7th, now 10 on the 8th), which is the
    state the gateway's timetable already holds. The notice is taken as a confirmation:
    no alert and no `window_changed` row, while the window now follows notices."""
    from gateway.harness import Harness
    from tests.e2e_support import until

    async def run(clock: str) -> tuple[list, list]:
        h = Harness(tmp_path, clock_spec=clock, sim_args=["--follow-clock"])
        await h.start()
        try:
            gw = h.gateway
            if clock.startswith("2026-12-08"):
                await until(lambda: gw.store.run(lambda tx: tx.query_one(
                    "SELECT 1 FROM inbox WHERE mesg_type = 'ccms.801.001.02' AND state = "
                    "'processed'", ())), "the NPC's notice taken")
            await gw.window_tick()
            return await _alerts(gw), [e.outcome for e in gw.window.history]
        finally:
            await h.stop()

    first, _ = asyncio.run(run("2026-12-07T09:00"))
    after_restart, outcomes = asyncio.run(run("2026-12-08T09:00"))

    assert first == [] and after_restart == []
    assert outcomes == ["initial", "confirmed"]


@pytest.mark.e2e
@pytest.mark.parametrize("clock", ["2026-12-05T10:00",      # a Saturday
                                   "2026-12-07T23:59:45",   # Monday night: Tuesday's date
                                   "2026-12-07T10:00"])
def test_a_fresh_start_at_any_hour_raises_no_window_alerts(tmp_path, clock):
    """`serve --simulate` on a fresh data directory: the simulated NPC starts in the state
    the timetable gives for the clock's time, as a real NPC that has been running all
    along is, and announces nothing until its next change. No notice claims a previous
    status the gateway never had, so nothing is refused and nothing alerts."""
    from gateway.harness import Harness
    from simulators.store import PENDING
    from tests.e2e_support import until

    async def run() -> tuple[dict, tuple, list, list]:
        h = Harness(tmp_path, clock_spec=clock, sim_args=["--follow-clock"])
        await h.start()
        try:
            gw = h.gateway

            async def all_taken() -> bool:
                """Every message the NPC made so far is delivered and taken."""
                stats = await h.sim("GET", "/sim/stats")
                waiting = await gw.store.run(lambda tx: tx.query_one(
                    "SELECT count(*) FROM inbox WHERE state = 'received'", ()))
                return not stats["outbox"].get(PENDING) and waiting[0] == 0
            await until(all_taken, "the NPC's first messages taken")
            await gw.window_tick()
            stats = await h.sim("GET", "/sim/stats")
            window = (gw.window.code, gw.window.work_date.isoformat())
            return stats, window, await _alerts(gw), [e.outcome for e in gw.window.history]
        finally:
            await h.stop()

    stats, window, alerts, outcomes = asyncio.run(run())
    assert (stats["phase"], stats["work_date"]) == window
    assert alerts == [] and outcomes == ["initial"]
