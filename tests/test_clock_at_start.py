"""A clock earlier than the work date the data directory holds is refused at start, with
both dates named, instead of a gateway that answers every transfer 422."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import ledger
from gateway import config, dayend, dialect
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.errors import PaygateError
from gateway.redisproc import free_port
from gateway.serve import serve
from gateway.store import SCHEMA
from tests.test_alert_indexes import _plan
from tests.test_day_end_missing import open_payer, pay, run_on


def settings_for(data_dir: Path, clock: str = "") -> Settings:
    return Settings(data_dir=str(data_dir), port=0, clock=clock,
                    npc_url=f"http://127.0.0.1:{free_port()}/link/inbound")


def start_at(data_dir: Path, at: str) -> str:
    """Start and stop the gateway at `at`; "started" or the refusal's code and message."""
    async def attempt() -> str:
        clock = ManualClock(datetime.fromisoformat(at).replace(tzinfo=SHANGHAI))
        gw = Gateway(settings_for(data_dir), clock=clock)
        try:
            await gw.start(serve_http=False)
        except PaygateError as exc:
            return f"{exc.code}: {exc.problems[0].message}"
        await gw.stop()
        return "started"
    return asyncio.run(attempt())


def paid_at(data_dir: Path, at: str) -> None:
    """One run at `at`: a payer opened and one payment taken."""
    async def run(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")
    asyncio.run(run_on(data_dir, at, run))


async def monday_closed(gw: Gateway) -> None:
    """Monday's run: a payment, then Monday's ledger day closed (the cut-over)."""
    await open_payer(gw)
    await pay(gw, "m1", "100.00")
    await gw.store.run(lambda tx: gw.ledger.close_day(tx, gw.work_date))


async def tuesday_paid(gw: Gateway) -> None:
    await pay(gw, "t1", "100.00")


# (runs before, clock at the next start) -> the code it is refused with, or "started".
# Monday 7 December is closed by the first run; the second pays on Tuesday.
STARTS = [
    ([monday_closed], "2026-12-04T10:00", "clock_before_stored_work_date"),  # Friday
    ([monday_closed], "2026-12-07T10:00", "clock_before_stored_work_date"),  # closed day
    # Monday's end of day: the NPC may cut over before the timetable does.
    ([monday_closed], "2026-12-07T17:35", "started"),
    ([monday_closed], "2026-12-08T10:00", "started"),
    ([monday_closed, tuesday_paid], "2026-12-07T17:35", "clock_before_stored_work_date"),
    ([monday_closed, tuesday_paid], "2026-12-08T10:00", "started"),
    ([monday_closed, tuesday_paid], "2026-12-09T10:00", "started"),
]


@pytest.mark.parametrize("runs, at, outcome", STARTS)
def test_a_start_before_the_stored_work_date_is_refused(tmp_path: Path, runs: list[Any],
                                                        at: str, outcome: str) -> None:
    """Only a clock whose work date is before the stored one is refused."""
    for day, run in zip(("2026-12-07T09:00", "2026-12-08T09:00"), runs):
        asyncio.run(run_on(tmp_path, day, run))

    assert start_at(tmp_path, at).split(":")[0] == outcome


def test_the_refusal_names_both_dates(tmp_path: Path) -> None:
    """The message names the clock's time, its work date and the stored date."""
    paid_at(tmp_path, "2026-12-08T09:00")

    refused = start_at(tmp_path, "2026-12-07T09:00")

    assert refused == (
        "clock_before_stored_work_date: the clock (2026-12-07T09:00:00+08:00, from the clock "
        "this command runs on) gives work date 2026-12-07, but the data directory holds "
        "work date 2026-12-08: set the clock this command runs on to a later time")


def test_serve_prints_the_refusal_and_ends_with_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`paygate serve` prints the error shape and exits 2, no traceback."""
    paid_at(tmp_path, "2026-12-08T09:00")

    status = asyncio.run(serve(settings_for(tmp_path, "2026-12-07T09:00")))

    printed: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 2
    assert printed["errors"][0]["code"] == "clock_before_stored_work_date"
    assert printed["errors"][0]["path"] == "clock"


def test_a_start_before_the_newest_stored_time_is_refused(tmp_path: Path) -> None:
    """A payment at 09:20, then a restart at 09:00 of the same work date: refused, with
    the newest stored time named, instead of payments older than earlier ones. A clock a
    few seconds back (NTP stepping a real-time clock) starts; the newest time itself too."""
    paid_at(tmp_path, "2026-12-07T09:20")

    refused = start_at(tmp_path, "2026-12-07T09:00")

    assert refused == (
        "clock_before_stored_time: the clock (2026-12-07T09:00:00+08:00, from the clock this "
        "command runs on) is 1200 s before 2026-12-07T09:20:00+08:00, the newest time the "
        "data directory holds (a payment or its event): set the clock this command runs on "
        "to that time or later")
    assert start_at(tmp_path, "2026-12-07T09:19:56") == "started"
    assert start_at(tmp_path, "2026-12-07T09:20") == "started"
    assert start_at(tmp_path, "2026-12-07T09:19:54").startswith("clock_before_stored_time")


@pytest.mark.parametrize("where", ["environment", "file"])
def test_the_refusal_names_where_the_clock_was_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        where: str) -> None:
    """A clock set by PAYGATE_CLOCK is named so, one set by the configuration file's
    `clock` as that key of that file: the refusal says what the user set, at its path."""
    paid_at(tmp_path / "data", "2026-12-08T09:00")
    for name in [n for n in os.environ if n.startswith("PAYGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PAYGATE_NPC_URL", f"http://127.0.0.1:{free_port()}/link/inbound")
    path = None
    if where == "environment":
        monkeypatch.setenv("PAYGATE_CLOCK", "2026-12-07T09:00")
        named = "PAYGATE_CLOCK"
    else:
        path = str(tmp_path / "paygate.toml")
        Path(path).write_text('clock = "2026-12-07T09:00"\n', encoding="utf-8")
        named = f"clock in {path}"
    monkeypatch.setenv("PAYGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PAYGATE_PORT", "0")

    status = asyncio.run(serve(config.load(path)))

    [error] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["errors"]
    assert status == 2
    assert (error["code"], error["path"]) == ("clock_before_stored_work_date", named)
    assert f"set {named} to a later time" in error["message"]


def test_the_newest_event_time_is_read_through_an_index_not_from_the_last_row(
        database_url: str) -> None:
    """Rows copied to a payment leaving its BEPS package come last with the older times
    of what they copy (payments.leave_group): the newest time is the greatest `at`,
    read from the index of times, not the last row's."""
    db = ledger.connect(database_url)
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        tx.executemany("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                       "VALUES (?, ?, ?, ?, '{}')", [
                           ("package:1", "2026-12-07T09:00:00+08:00", "sent", "beps_sent"),
                           ("P1", "2026-12-07T09:20:00+08:00", "held", "ops_held"),
                           ("P2", "2026-12-07T09:00:00+08:00", "sent", "beps_sent")])

        newest = dayend._newest_stored_time(tx)
        plan = _plan(tx, "SELECT MAX(at) FROM payment_events", ())

    assert newest == datetime.fromisoformat("2026-12-07T09:20:00+08:00")
    assert "payment_events_at" in plan, plan
