"""`paygate serve`: run the gateway until interrupted.

With `--simulate`, the simulated NPC runs beside it as its own process and Redis is the
embedded one, so that a core system (or curl) can talk to a complete system on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import logging
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import uvloop

from gateway import clearing_check, logs, signals, sim_clock_check, windows
from gateway.app import Gateway
from gateway.clock import clock_from_spec
from gateway.config import Settings, source_of
from gateway.datalock import lock_data_dir
from gateway.errors import PaygateError
from gateway.harness import Harness
from gateway.money import format_yuan
from gateway.redisproc import free_port, port_in_use
from ledger.testing import DEMO_HOLDERS, customer_account


SIM_CLEARING_FEN = 50_000_000 * 100
LOCK_FILE = "paygate.lock"
DEMO_BALANCE_FEN = 5_000_000 * 100
# With --simulate: the simulated NPC's port, kept in the data folder for the next start.
NPC_PORT_FILE = "npc.port"
log = logging.getLogger("paygate.serve")


# How many of the ledger's customer accounts the start-up line names.
ACCOUNTS_SHOWN = len(DEMO_HOLDERS)


async def open_demo_accounts(gw: Gateway) -> dict[str, dict[str, str]]:
    """With --simulate: three customer accounts with money, and our clearing account at
    the simulated NPC mirrored in the ledger, so a transfer can be tried at once. Done
    only on books without a single entry: a restart, on any later date, finds them made,
    and books kept from another run (`paygate demo --data`) are left as they are, their
    clearing account already equal to the simulated NPC's balance for us, which that run
    kept in the same folder. Returns customer accounts as the ledger holds them: the
    three demo account numbers it holds, else its first ones, each with its holder, its
    ledger balance and what is available (the ledger balance less holds)."""
    accounts = {name: customer_account(i, "corporate")
                for i, name in enumerate(DEMO_HOLDERS, 1)}
    day = gw.work_date

    def work(tx: Any) -> None:
        if tx.query_one("SELECT 1 FROM ledger_entry LIMIT 1", ()) is not None:
            log.info("event=simulate_openings_skipped reason=books_exist")
            return
        gw.ledger.fund_clearing(tx, "simulate:opening:clearing", SIM_CLEARING_FEN, day)
        for name, account in accounts.items():
            gw.ledger.open_customer_account(tx, account, name, "corporate", day)
            gw.ledger.deposit(tx, f"simulate:opening:{account}", account,
                              DEMO_BALANCE_FEN, day)

    def shown(tx: Any) -> dict[str, dict[str, str]]:
        marks = ", ".join("?" for _ in accounts)
        rows = tx.query("SELECT account_no, name FROM ledger_account WHERE role = 'customer'"
                        f" AND account_no IN ({marks}) ORDER BY account_no",
                        tuple(accounts.values()))
        if not rows:
            rows = tx.query("SELECT account_no, name FROM ledger_account WHERE role = "
                            "'customer' ORDER BY account_no LIMIT ?", (ACCOUNTS_SHOWN,))
        out = {}
        for account, name in rows:
            found = gw.ledger.customer_balance(tx, account, day)
            # As GET /v1/accounts/{id}/balance names them: the books' balance, and what
            # is free to pay from (less the money held for payments under way).
            out[account] = {"name": name,
                            "ledger_balance": format_yuan(found.ledger_balance_fen),
                            "available": format_yuan(found.available_fen)}
        return out
    await gw.store.run(work)
    return await gw.store.run(shown)


def run(settings: Settings, simulate: bool = False) -> int:
    """`serve` on uvloop's event loop. Every payment crosses the loop many times (HTTP in
    and out, Redis, hand-overs to the database thread); libuv's loop and transports do
    that work in C, where asyncio's own loop does much of it in Python."""
    return uvloop.run(serve(settings, simulate))


async def serve(settings: Settings, simulate: bool = False) -> int:
    if settings.port and port_in_use(settings.host, settings.port):
        print(json.dumps({"errors": [{
            "code": "port_in_use", "path": source_of(settings, "port"), "value": settings.port,
            "expected": f"a free port (set {source_of(settings, 'port')})",
            "message": f"{settings.host}:{settings.port} is taken by another process"}]}),
            flush=True)
        return 2
    held = _lock_data_dir(Path(settings.data_dir))
    if isinstance(held, dict):
        print(json.dumps(held, ensure_ascii=False), flush=True)
        return 2
    try:
        with signals.kept(signal.SIGINT, signal.SIGTERM):
            return await _serve(settings, simulate)
    finally:
        held.close()  # the lock goes with the file (and with the process, however it ends)


def _lock_data_dir(data: Path) -> Any:
    """The data directory's lock file, held for this process's life; or the error to
    print when another process holds it (gateway.datalock)."""
    return lock_data_dir(data, LOCK_FILE, "gateway",
                         "--config data_dir or PAYGATE_DATA_DIR")


def simulated_npc_port(data: Path) -> tuple[int, str | None]:
    """The port for the simulated NPC of `serve --simulate`: the one it listened on at the
    last start on this data folder (NPC_PORT_FILE), when that port is free, so that a
    /sim URL saved then still works; otherwise a new one, with a note for the start-up
    line when the old one is taken (None at a first start)."""
    try:
        kept = int((data / NPC_PORT_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        kept = 0
    if not 0 < kept < 65536:
        return free_port(), None
    if not port_in_use("127.0.0.1", kept):
        return kept, None
    port = free_port()
    return port, (f"port {kept}, the simulated NPC's at the last start on this data "
                  f"folder, is taken: it listens on {port} now (URLs naming {kept} no "
                  "longer reach it)")


def announce(line: dict[str, Any]) -> None:
    """Print the start-up line (where to reach the gateway) on standard output. A reader
    that went away (`paygate serve | head -1`) does not stop the gateway, as a broken log
    stream does not: standard output is pointed at /dev/null, so that neither a later
    line nor the flush at exit fails again, and the loss is logged."""
    try:
        print(json.dumps(line, ensure_ascii=False), flush=True)
    except (OSError, ValueError) as exc:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
        log.warning("event=stdout_lost error=%s", logs.value(repr(exc)))


async def _started(start: Any) -> bool:
    """Await a start; a refusal (a clock before the stored work date, say) is printed in
    the error shape instead of a traceback, and the caller ends with status 2."""
    try:
        await start
    except PaygateError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False), flush=True)
        return False
    return True


def simulator_args(settings: Settings) -> list[str]:
    """What `--simulate` tells the simulated NPC of the gateway's configuration: follow
    the clock, on the gateway's business calendar (its holidays and make-up days), with
    its HVPS timetable and its BEPS netting interval, so a holiday, a changed window or
    the rounds can be rehearsed."""
    args = ["--follow-clock",
            "--beps-netting-interval", str(settings.beps_netting_interval_min * 60)]
    if settings.calendar_file:
        args += ["--calendar", str(Path(settings.calendar_file).resolve())]
    # Its HVPS day is the gateway's: the NPC announces each phase (ccms.801), so an
    # opening the gateway moved would otherwise come at the simulator's default time.
    for name, key in windows.TIMETABLE_SETTINGS.items():
        if key == "netting_interval_min":
            continue
        value = getattr(settings, name)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args += ["--timetable", f"{key}={text}"]
    return args


def log_task_failure(task: asyncio.Task[Any]) -> None:
    """A task of `serve --simulate` that ended with an error, logged when it ends (not
    at shutdown, when nobody reads it any more): it does not run again."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("event=serve_task_failed task=%s error=%s", task.get_name(),
              logs.value(repr(task.exception())))


async def _serve(settings: Settings, simulate: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        # The first signal stops cleanly; a second one while stopping ends the process at
        # once (its children die with it), for an operator who cannot wait.
        if stop.is_set():
            os._exit(1)
        stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    if simulate:
        data = Path(settings.data_dir).resolve()
        data.mkdir(parents=True, exist_ok=True)
        sim_port, moved = simulated_npc_port(data)
        harness = Harness(data, clock_spec=settings.clock, gateway_port=settings.port,
                          sim_port=sim_port,
                          settings_overrides={k: v for k, v in asdict(settings).items()
                                              if k not in ("data_dir", "port", "npc_url",
                                                           "keys_dir", "clock")},
                          balances_fen={settings.bank_code: SIM_CLEARING_FEN},
                          sim_args=simulator_args(settings),
                          clock_named=source_of(settings, "clock") if settings.clock else "")
        if not await _started(harness.start()):
            return 2
        gw = harness.gateway
        accounts = await open_demo_accounts(gw)
        (data / NPC_PORT_FILE).write_text(f"{harness.sim_port}\n", encoding="ascii")
        line = {"api": gw.url, "npc": harness.sim_url, "ops": f"{gw.url}/ops/",
                "data": str(data), "accounts": accounts}
        if moved:
            line["npc_port_changed"] = moved
            log.warning("event=simulated_npc_port_changed port=%s", harness.sim_port)
        announce(line)
        # A simulated NPC that dies is started again (a warning line names it); the
        # clearing balances are compared once nothing is in flight (gateway.clearing_check).
        tasks = [asyncio.create_task(harness.keep_simulator(), name="npc_keeper"),
                 asyncio.create_task(clearing_check.watch(harness), name="clearing_check")]
        if settings.clock:
            # On a virtual clock, a warning line when the NPC's clock is moved away from
            # the gateway's (gateway.sim_clock_check).
            tasks.append(asyncio.create_task(sim_clock_check.watch(harness),
                                             name="sim_clock_check"))
        for task in tasks:
            task.add_done_callback(log_task_failure)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await harness.stop()
        return 0
    gw = Gateway(settings, clock=clock_from_spec(settings.clock))
    if not await _started(gw.start()):
        return 2
    announce({"api": gw.url})
    await stop.wait()
    await gw.stop()
    return 0
