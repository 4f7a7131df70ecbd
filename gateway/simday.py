"""`paygate simulate-day`: a whole business day on one discrete-event clock.

Gateway and simulated NPC run in this one process and read one `ManualClock`. The day
is a list of events, generated from the seed and the business calendar: the HVPS phase
changes of the timetable (the NPC announces each with a ccms.801), transfers from the
core system, payments from a peer bank, a top-up of our clearing account when HVPS
payments have queued, reconciliation after the close (and, once the day's BEPS netting
date is complete after midnight, that date's), and whatever events the installed
extensions add (BEPS, queries). The day ends with the cut-over to the next working day,
which closes the day's ledger day and writes its reports, as the demo does. The driver moves the clock to each event's time, runs
it, and waits until gateway and NPC are quiet before the next one, so the same seed
gives the same messages in the same order: the summary's digests are equal run to run.

The command simulates working days only: a weekend day or holiday is refused
(`date_must_be_a_working_day`), naming the next working day. `DayRun` itself also runs
such a day, with BEPS and no HVPS, which the tests use to check that it balances too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

from gateway import logs, summary
from gateway.app import Gateway
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import SIMULATED_GATEWAY_FOLDER, Settings
from gateway.demo import wait_day_closed
from gateway.errors import PaygateError, Problem
from gateway.messages.signing import write_keypair
from gateway.redisproc import free_port
from gateway.runfolder import DATA_HELP, KEEP_HELP, RunFolder, print_errors
from gateway.windows import (DEFAULT_TIMETABLE, hvps_phase, netting_date_complete_at,
                             status_changes_between)
from ledger.testing import customer_account
from simulators import settings as sim_settings
from simulators.app import Simulator

BANK, BRANCH = "999100000019", "999100000027"
PEER, PEER_BRANCH = "888200000015", "888200000023"
YUAN = 100
QUIET_POLL_S = 0.01
QUIET_ROUNDS = 3           # consecutive quiet polls that count as quiet
QUIET_TIMEOUT_S = 30.0


@dataclass(order=True)
class Event:
    at: datetime
    seq: int
    name: str = field(compare=False)
    run: Callable[[], Awaitable[Any]] = field(compare=False)


@dataclass
class Volumes:
    hvps_out: int = 60
    hvps_in: int = 20
    beps_out: int = 40
    beps_in: int = 10


class DayRun:
    def __init__(self, day: date, seed: int, data_dir: Path, volumes: Volumes) -> None:
        self.day = day
        self.seed = seed
        self.rng = random.Random(seed)
        self.data_dir = data_dir
        self.volumes = volumes
        self.calendar = BusinessCalendar()
        self.clock = ManualClock(datetime.combine(day, time(7, 0), SHANGHAI))
        self.sim: Simulator | None = None
        self.gw: Gateway | None = None
        self.customers: dict[str, str] = {}
        self.opening_clearing_fen = 20_000_000 * YUAN
        self.refusals: dict[str, int] = {}
        self.recon: dict[str, Any] = {"reconciled": False, "differences": ["not run"]}
        self._seq = 0

    # Start and stop

    async def start(self) -> None:
        keys_dir = self.data_dir / "keys"
        write_keypair(keys_dir, BANK)
        gw_port = free_port()
        now = self.clock.now()
        phase = hvps_phase(now, self.calendar)
        self.sim = Simulator(sim_settings.Settings(
            port=0, data_dir=self.data_dir / "npc", keys_dir=keys_dir,
            banks={BANK: f"http://127.0.0.1:{gw_port}/link/inbound"}, seed=self.seed,
            balances_fen={BANK: self.opening_clearing_fen, PEER: 10**14,
                          "777300000011": 10**14},
            initial_phase=phase.code, initial_date=phase.work_date.isoformat(),
            delivery=sim_settings.Delivery(parallel_max=1),
            # Netting rounds are events of the day (see gateway.beps.demo), not a timer.
            beps_netting_interval_s=10.0 ** 7), self.clock)
        await self.sim.start()
        self.gw = Gateway(Settings(data_dir=str(self.data_dir / SIMULATED_GATEWAY_FOLDER),
                                   port=gw_port,
                                   npc_url=f"{self.sim.url}/link/inbound",
                                   keys_dir=str(keys_dir),
                                   # Timers that read the clock at random real moments
                                   # would make the day depend on the machine's speed.
                                   queries_check_interval_s=10.0 ** 7,
                                   exceptions_sweep_interval_s=10.0 ** 7),
                          clock=self.clock)
        await self.gw.start()
        await self.open_books()

    async def stop(self) -> None:
        if self.gw is not None:
            await self.gw.stop()
        if self.sim is not None:
            await self.sim.stop()

    async def open_books(self) -> None:
        gw = self.gw
        self.customers = {f"c{i}": customer_account(i, "corporate") for i in range(1, 11)}
        opening_day = self.day

        def work(tx: Any) -> None:
            gw.ledger.fund_clearing(tx, "day:opening:clearing", self.opening_clearing_fen,
                                    opening_day)
            for name, account in self.customers.items():
                gw.ledger.open_customer_account(tx, account, f"日终客户{name}", "corporate",
                                                opening_day)
                gw.ledger.deposit(tx, f"day:opening:{name}", account, 8_000_000 * YUAN,
                                  opening_day)
        await gw.store.run(work)

    # The schedule

    def add(self, at: datetime, name: str, run: Callable[[], Awaitable[Any]]) -> None:
        self._seq += 1
        self.events.append(Event(at, self._seq, name, run))

    def schedule(self) -> list[Event]:
        self.events: list[Event] = []
        start = self.clock.now()
        end = datetime.combine(self.day, time(18, 30), SHANGHAI)
        for change in status_changes_between(start, end, self.calendar):
            self.add(change.at, f"phase {change.cur_code}", self._phase(change.cur_code,
                                                                       change.cur_date))
            if change.cur_code == "40":
                self.add(change.at + timedelta(minutes=2), "reconcile", self.reconcile)
        open_from = datetime.combine(self.day, DEFAULT_TIMETABLE.open_at, SHANGHAI)
        window_s = 8 * 3600
        for i in range(self.volumes.hvps_out):
            at = open_from + timedelta(seconds=self.rng.randrange(window_s))
            self.add(at, f"hvps out {i}", self._transfer(i))
        for i in range(self.volumes.hvps_in):
            at = open_from + timedelta(seconds=self.rng.randrange(window_s))
            self.add(at, f"hvps in {i}", self._peer_payment(i))
        self.add(datetime.combine(self.day, time(15, 0), SHANGHAI), "top up", self.top_up)
        for ext in self.gw.extensions:
            if hasattr(ext, "simulate_day_events"):
                for at, name, run in ext.simulate_day_events(self):
                    self.add(at, name, run)
        if not any(e.name == "reconcile" for e in self.events):
            self.add(end - timedelta(minutes=5), "reconcile", self.reconcile)
        for ext in self.gw.extensions:
            if hasattr(ext, "reconcile_due"):
                complete = netting_date_complete_at(self.day, ext.settings.recon_delay_s)
                self.add(complete + timedelta(minutes=1), "reconcile netting dates",
                         self._netting_dates(ext))
        return sorted(self.events)

    def _phase(self, status: str, on: date) -> Callable[[], Awaitable[Any]]:
        async def run() -> None:
            with self.sim.store.transaction():
                self.sim.phases.change(status, on.isoformat())
            # Net positions waiting for HVPS settle now, in this step, not whenever the
            # simulator's own ticker next looks (which depends on the machine's speed).
            self.sim.beps.settle_if_open()
        return run

    def _transfer(self, i: int) -> Callable[[], Awaitable[Any]]:
        name = self.rng.choice(sorted(self.customers))
        amount_fen = self.rng.randint(60_000, 900_000) * YUAN
        urgency = self.rng.choice(["urgent", "extra_urgent", "normal"])

        async def run() -> None:
            body = {"payer_account": self.customers[name], "payer_name": f"日终客户{name}",
                    "payer_bank": BRANCH, "payee_account": f"6222{i:012d}",
                    "payee_name": "对手客户", "payee_bank": PEER_BRANCH,
                    "amount": f"{amount_fen // 100}.00", "urgency": urgency,
                    "when_closed": "queue"}
            try:
                await self.gw.submit_transfer("simday", f"day-{i}", body)
            except PaygateError as exc:
                self.refusals[exc.code] = self.refusals.get(exc.code, 0) + 1
        return run

    def _peer_payment(self, i: int) -> Callable[[], Awaitable[Any]]:
        name = self.rng.choice(sorted(self.customers))
        unknown = self.rng.random() < 0.1
        amount_fen = self.rng.randint(1_000, 500_000) * YUAN

        async def run() -> None:
            self.sim.send_from_peer({
                "sender": PEER, "receiver": BANK, "payee_bank": BRANCH,
                "payee_account": f"6299{i:019d}" if unknown else self.customers[name],
                "payee_name": f"日终客户{name}", "amount_fen": amount_fen, "count": 1,
                "business_type": "A100", "business_kind": "02102", "priority": "HIGH"})
        return run

    async def top_up(self) -> None:
        queued = await self.gw.store.run(lambda tx: tx.query_one(
            "SELECT COALESCE(SUM(amount_fen), 0) FROM payments WHERE direction = 'out' "
            "AND state = 'queued'", ())[0])
        if not queued:
            return
        with self.sim.store.transaction():
            self.sim.rtgs.fund(BANK, queued)
        await self.gw.store.run(lambda tx: self.gw.ledger.fund_clearing(
            tx, "day:topup", queued, self.day))

    async def reconcile(self) -> None:
        """The day end's reconciliation over the link, HVPS and BEPS (on a day HVPS does
        not run, asked for here since no end-of-day notice comes)."""
        self.recon = await self.gw.day_end.reconcile(self.day)

    def _netting_dates(self, ext: Any) -> Callable[[], Awaitable[Any]]:
        async def run() -> None:
            """The pass the gateway's periodic check runs once the day's BEPS netting
            date is complete: the day reconciles only if that date does too."""
            part = await ext.reconcile_due()
            self.recon = dict(self.recon, beps_netting_dates=part, reconciled=bool(
                self.recon["reconciled"]) and part["reconciled"] and self.day.isoformat()
                in [d["netting_date"] for d in part["netting_dates"]])
        return run

    # Driving

    async def quiet(self) -> None:
        """Wait until neither side has anything left to deliver or process."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUIET_TIMEOUT_S
        rounds = 0
        while rounds < QUIET_ROUNDS:
            if loop.time() > deadline:
                raise TimeoutError("gateway and simulator did not go quiet")
            await self.sim.drain()
            busy = await self.gw.store.run(lambda tx: tx.query_one(
                "SELECT (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')) "
                "+ (SELECT COUNT(*) FROM inbox WHERE state = 'received')", ())[0])
            pending = sum(self.sim.store.outbox_counts().get(k, 0) for k in ("pending",))
            rounds = rounds + 1 if busy == 0 and pending == 0 else 0
            await asyncio.sleep(QUIET_POLL_S)

    async def run(self) -> tuple[int, dict[str, Any]]:
        await self.start()
        try:
            for event in self.schedule():
                self.clock.set(max(event.at, self.clock.now()))
                await event.run()
                await self.quiet()
            await self.close_ledger_day()
            return await self.close()
        finally:
            await self.stop()

    async def close_ledger_day(self) -> None:
        """The cut-over, as the demo ends: the NPC starts the next working day's
        preparation, so the gateway closes the day's ledger day and writes its reports; a
        later start on the folder finds the day closed, not `day_end_missing`. A day whose
        postings went to another work date (a weekend day or holiday: HVPS does not run,
        the work date is the next working day's already) has no ledger day of its own."""
        if self.gw.work_date != self.day:
            return
        following = self.calendar.next_working_day(self.day)
        await self._phase("00", following)()
        await wait_day_closed(self.gw, self.day, following)
        await self.quiet()

    async def close(self) -> tuple[int, dict[str, Any]]:
        gw = self.gw
        npc_balance = self.sim.store.balances()[BANK]

        def work(tx: Any) -> dict[str, Any]:
            ours = gw.ledger.clearing_balance(tx)
            agreed = ours == npc_balance
            if not agreed:
                gw.alert(tx, "clearing_balance_differs", ledger_fen=ours, npc_fen=npc_balance)
            alerts = [{"code": code} for (code,) in tx.query(
                "SELECT code FROM alerts WHERE code != 'window_changed' ORDER BY id", ())]
            return summary.build(tx, gw.ledger, self.day.isoformat(),
                                 bool(self.recon["reconciled"]) and agreed, alerts,
                                 gw.extensions)
        result = await gw.store.run(work)
        ok = result["ledger"]["balanced"] and result["ledger"]["reconciled"]
        return (0 if ok else 1), result


def simulate_day_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="paygate simulate-day")
    parser.add_argument("--date", help="the business date, YYYY-MM-DD, a working day "
                        "(default: the next one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hvps-out", type=int, default=Volumes.hvps_out)
    parser.add_argument("--hvps-in", type=int, default=Volumes.hvps_in)
    parser.add_argument("--beps-out", type=int, default=Volumes.beps_out)
    parser.add_argument("--beps-in", type=int, default=Volumes.beps_in)
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--keep", action="store_true", help=KEEP_HELP)
    args = parser.parse_args(argv)
    calendar = BusinessCalendar()
    day = date_given(args.date)
    if isinstance(day, Problem):
        print_errors({"errors": [day.to_dict()]})
        return 2
    day = day or calendar.next_working_day(datetime.now(SHANGHAI).date())
    problem = date_problem(day, calendar)
    if problem is not None:
        print_errors({"errors": [problem.to_dict()]})
        return 2
    try:
        folder = RunFolder.open(args.data, "paygate-day-", args.keep)
    except PaygateError as exc:
        print_errors(exc.to_dict())
        return 2
    code, result = 1, None
    try:
        with open(folder.path / "day.log", "a", encoding="utf-8") as log_file:
            logs.configure("INFO", log_file)
            run = DayRun(day, args.seed, folder.path,
                         Volumes(args.hvps_out, args.hvps_in, args.beps_out, args.beps_in))
            try:
                code, result = asyncio.run(run.run())
            except PaygateError as exc:  # a refusal of ours, said as every command says it
                print_errors(exc.to_dict())
            finally:
                logs.configure("WARNING")  # the buffered lines reach the file before it closes
    finally:
        print(f"[simulate-day] {day}: {folder.close(code == 0)}", file=sys.stderr)
    if result is not None:
        print(json.dumps(result, ensure_ascii=False))
    return code


def date_given(text: str | None) -> date | Problem | None:
    """The date of `--date` (None when not given), or why it is no date: a date that
    does not exist (2031-02-30) is refused as the product refuses any value, not with
    the argument parser's usage line."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return Problem("date_malformed", "--date", text,
                       "a date that exists, written YYYY-MM-DD (2026-12-07)",
                       f"--date {text} is no date of the calendar")


def date_problem(day: date, calendar: BusinessCalendar) -> Problem | None:
    """Why `day` cannot be simulated as a business day, or None. A day without HVPS (a
    weekend or a holiday) is no business day of its own: the HVPS work date it falls in
    is another date, so its summary could not name its work date truthfully."""
    if not 2004 <= day.year <= 2099:
        return Problem("date_out_of_calendar", "--date", day.isoformat(),
                       "a date from 2004 to 2099")
    if calendar.is_working_day(day):
        return None
    following = calendar.next_working_day(day).isoformat()
    kind = calendar.holiday_name(day) or "a weekend day"
    return Problem(
        "date_must_be_a_working_day", "--date", day.isoformat(),
        f"a working day, such as the next one, {following}",
        f"{day.isoformat()} is not a working day ({kind}): HVPS does not run and no "
        f"business day bears that date; simulate the next working day with --date "
        f"{following}", detail=(("next_working_day", following),))
