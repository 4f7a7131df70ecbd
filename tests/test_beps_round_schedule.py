"""The simulated NPC's timed netting rounds follow the business clock: every interval
from midnight, numbered by their slot (docs/calendar.md), whatever restarts of the NPC
come between; a round whose time passed while the NPC was down runs when it starts."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from gateway.clock import SHANGHAI, ManualClock
from gateway.windows import netting_round_for
from simulators import beps_store as bs
from simulators import phases
from simulators.beps import Beps
from simulators.store import Store
from tests.test_beps_netting import A, B, C, Recorder, make_store

START = datetime(2026, 12, 7, 16, 59, 30, tzinfo=SHANGHAI)


def npc(store: Store, clock: ManualClock, interval_s: float = 1800.0) -> Beps:
    """A (re)started NPC's BEPS side on the database `store`: HVPS does not settle, so
    rounds stay unsettled and only their netting is looked at."""
    with store.transaction():
        store.set_meta(phases._STATUS_KEY, "00")
        store.set_meta(phases._DATE_KEY, "2026-12-08")
    return Beps(store, Recorder(), clock, frozenset({A, B, C}), interval_s)


def add(store: Store, clock: ManualClock, payer: str, payee: str, amount_fen: int) -> int:
    """A credit package taken now."""
    n = store.add("test:package")
    with store.transaction():
        return bs.add_package(store.conn, {
            "sender": payer, "receiver": payee, "payer": payer, "payee": payee,
            "mesg_type": "beps.121.001.01", "mesg_id": f"{n:020d}", "msg_id": f"{n:016d}",
            "count": 1, "amount_fen": amount_fen, "status": bs.WAITING,
            "received_on": clock.now().date().isoformat(),
            "received_at": clock.now().isoformat(), "raw": b""}, [(f"{n:016d}", amount_fen)])


def rounds(store: Store) -> list[tuple[str, str]]:
    return store.conn.execute("SELECT netting_date, netting_round FROM beps_rounds "
                              "ORDER BY netted_at").fetchall()


def one_package_at_1701(tmp_path: Path) -> tuple[Store, ManualClock, Beps]:
    """The NPC started at 16:59:30 on the 7th, with one package of 500 fen taken at 17:01."""
    store, clock = make_store(tmp_path), ManualClock(START)
    beps = npc(store, clock)
    beps.tick()
    clock.set(START.replace(hour=17, minute=1, second=0))
    add(store, clock, A, B, 500)
    return store, clock, beps


def run_until(beps: Beps, clock: ManualClock, until: datetime, step_s: float = 20.0) -> None:
    while clock.now() < until:
        clock.advance(min(step_s, (until - clock.now()).total_seconds()))
        beps.tick()


def test_rounds_close_every_interval_from_midnight(tmp_path: Path) -> None:
    """Started at 16:59:30, the first round is the one closing at 17:30, round 35 of the
    day (the one `netting_round_for` names to the gateway), not 30 minutes after the
    start."""
    store, clock, beps = one_package_at_1701(tmp_path)
    run_until(beps, clock, START.replace(hour=17, minute=29, second=50))
    assert rounds(store) == []

    run_until(beps, clock, START.replace(hour=17, minute=30, second=10))

    sent_at = START.replace(hour=17, minute=1, second=0)
    assert rounds(store) == [("2026-12-07", "35")]
    assert rounds(store)[0] == tuple(v if isinstance(v, str) else v.isoformat()
                                     for v in netting_round_for(sent_at))


def test_a_restart_neither_delays_nor_renumbers_rounds(tmp_path: Path) -> None:
    """The NPC restarted at 17:20 (and again at 17:25) still nets at 17:30, as round 35."""
    store, clock, beps = one_package_at_1701(tmp_path)
    run_until(beps, clock, START.replace(hour=17, minute=20, second=0))
    for restart_at in (17 * 60 + 20, 17 * 60 + 25):
        clock.set(START.replace(hour=restart_at // 60, minute=restart_at % 60, second=0))
        beps = npc(store, clock)
        beps.tick()

    run_until(beps, clock, START.replace(hour=17, minute=30, second=10))

    assert rounds(store) == [("2026-12-07", "35")]


def test_a_round_missed_while_down_runs_at_start(tmp_path: Path) -> None:
    """Down from 17:10 to 17:45, the NPC nets at once on start, as the 17:30 round it
    missed; down again from 23:50 to 08:29 the next day, the round closing at midnight
    (48 of the 7th) nets what came before it, and the next rounds keep the clock (the
    08:30 round is 17 of the 8th)."""
    store, clock, beps = one_package_at_1701(tmp_path)
    run_until(beps, clock, START.replace(hour=17, minute=10, second=0))

    clock.set(START.replace(hour=17, minute=45, second=0))
    beps = npc(store, clock)
    beps.tick()
    assert rounds(store) == [("2026-12-07", "35")]

    run_until(beps, clock, START.replace(hour=23, minute=50, second=0), step_s=600)
    add(store, clock, B, C, 700)
    clock.set(datetime(2026, 12, 8, 8, 29, tzinfo=SHANGHAI))
    beps = npc(store, clock)
    beps.tick()
    beps.tick()
    assert rounds(store) == [("2026-12-07", "35"), ("2026-12-07", "48")]
    assert bs.waiting(store.conn) == []

    add(store, clock, C, A, 900)
    run_until(beps, clock, datetime(2026, 12, 8, 9, 0, 10, tzinfo=SHANGHAI))
    assert rounds(store)[-1] == ("2026-12-08", "17")


def test_a_round_by_hand_takes_the_next_number_and_the_clock_goes_on(tmp_path: Path) -> None:
    """`POST /sim/beps/net` nets at once; the timed round after it keeps its slot."""
    store, clock = make_store(tmp_path), ManualClock(START.replace(hour=10, minute=1))
    beps = npc(store, clock)
    beps.tick()
    add(store, clock, A, B, 500)
    manual = beps.net_now()
    add(store, clock, B, A, 300)
    run_until(beps, clock, START.replace(hour=10, minute=30, second=10))

    assert manual.netting_round == "01"
    assert rounds(store) == [("2026-12-07", "01"), ("2026-12-07", "21")]


def test_a_new_database_with_packages_waiting_nets_them_at_start(tmp_path: Path) -> None:
    """No round was ever recorded (a database from before the schedule was kept), yet
    packages wait: the last round closed runs at once."""
    store, clock = make_store(tmp_path), ManualClock(START.replace(hour=17, minute=20))
    add(store, clock, A, B, 500)
    clock.set(START.replace(hour=17, minute=40))
    npc(store, clock).tick()

    assert rounds(store) == [("2026-12-07", "35")]


def test_an_interval_longer_than_a_day_runs_no_round_by_itself(tmp_path: Path) -> None:
    store, clock = make_store(tmp_path), ManualClock(START)
    beps = npc(store, clock, interval_s=10.0 ** 7)
    add(store, clock, A, B, 500)
    run_until(beps, clock, START + timedelta(days=2), step_s=3600)

    assert rounds(store) == []
    assert beps.net_now().netting_round == "01"
