"""Several gateway processes on loopback beside one Redis, one PostgreSQL database and the
simulated NPC: for `paygate bench e2e --gateways N` and the scale-out test.

Every process is started as a deployment would start it (`paygate serve --config`,
`paygate simulate npc`, `redis-server`), each with its own log file, and can be killed
with SIGKILL and started again on the same data. The gateways share the keys directory,
Redis and the database; each has its own data directory and port. The NPC is given
every gateway's inbound URL for our bank and takes them in turn. All processes read the
same virtual clock (a start instant on a shared real-time anchor), so a gateway started
again later keeps the others' time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ledger
from gateway import dialect
from gateway.clock import ScaledClock
from gateway.messages.signing import write_keypair
from gateway.redisproc import (
    CHILD_START_WAIT_S,
    free_port,
    redis_binary,
    wait_port,
    wait_port_async,
)
from gateway.store import SCHEMA
from ledger.testing import customer_account, demo_holder

BANK, PEER = "999100000019", "888200000015"
STOP_WAIT_S = 10.0


def setting_variables(values: Mapping[str, Any]) -> frozenset[str]:
    """The PAYGATE_ variables of the settings a process's configuration file gives, which
    would win over the file (gateway.config) and point it at another database or port
    than the one laid out for it: the process must not see them (`Proc.hidden`)."""
    return frozenset(f"PAYGATE_{name.upper()}" for name in values)


@dataclass
class Proc:
    name: str
    args: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    # Variables of this environment the process must not see: the PAYGATE_ variables
    # of the settings its configuration file gives, which would otherwise win over the
    # file (gateway.config) and point it at another database or port than the fleet's.
    hidden: frozenset[str] = frozenset()

    def start(self) -> None:
        """Start the process and wait until it listens on its port; one that exits first,
        or does not listen in time, is refused as `process_start_failed` naming its log,
        and is not left running."""
        self._launch()
        try:
            wait_port(self.port, CHILD_START_WAIT_S, self.process, self.log_path, self.name)
        except BaseException:  # a failed start, or Ctrl-C during the wait
            self.stop()
            raise

    async def start_async(self) -> None:
        """`start` for a caller on an event loop, which runs while the process starts."""
        self._launch()
        try:
            await wait_port_async(self.port, CHILD_START_WAIT_S, self.process,
                                  self.log_path, self.name)
        except BaseException:  # a failed start, or the wait cancelled (Ctrl-C)
            self.stop()
            raise

    def _launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in self.hidden}
        with open(self.log_path, "ab") as log:
            # Both outputs to the log: Redis writes its own lines on standard output.
            self.process = subprocess.Popen(self.args, stdout=log, stderr=log,
                                            env=dict(env, PYTHONUNBUFFERED="1"))

    def kill(self) -> None:
        """SIGKILL: no clean stop, nothing flushed, as a machine that dies."""
        if self.up:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.up:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is running"
        return self.process.pid


@dataclass
class Fleet:
    root: Path
    database_url: str
    gateways: int = 2
    start: datetime | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # for every gateway
    npc_args: list[str] = field(default_factory=list)
    procs: dict[str, Proc] = field(default_factory=dict)
    clock_anchor_epoch: float | None = None  # real time at which the clock read `start`

    @property
    def gateway_names(self) -> list[str]:
        return [f"gateway{i}" for i in range(self.gateways)]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.procs[name].port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.procs['redis'].port}/0"

    def build(self, clearing_fen: int, peer_fen: int) -> None:
        """Lay out the processes (nothing started yet)."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_keypair(self.root / "keys", BANK)
        redis_port, sim_port = free_port(), free_port()
        gw_ports = [free_port() for _ in range(self.gateways)]
        (self.root / "redis").mkdir(exist_ok=True)
        self.procs["redis"] = Proc("redis", [
            redis_binary(), "--bind", "127.0.0.1", "--port", str(redis_port), "--dir",
            str(self.root / "redis"), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", ""], redis_port, self.root / "redis.log")
        self.clock_anchor_epoch = time.time() if self.start is not None else None
        clock = ScaledClock(start=self.start, anchor_epoch_s=self.clock_anchor_epoch,
                            rate=1.0).to_spec() if self.start is not None else ""
        inbound = ",".join(f"http://127.0.0.1:{port}/link/inbound" for port in gw_ports)
        self.procs["npc"] = Proc("npc", [
            sys.executable, "-m", "gateway.cli", "simulate", "npc", "--port", str(sim_port),
            "--data", str(self.root / "npc"), "--keys", str(self.root / "keys"),
            "--bank", f"{BANK}={inbound}", "--balance", f"{BANK}={clearing_fen}",
            "--balance", f"{PEER}={peer_fen}", "--phase", "10",
            *(["--clock", clock] if clock else []), *self.npc_args],
            sim_port, self.root / "npc.log")
        for name, port in zip(self.gateway_names, gw_ports):
            config = self.root / f"{name}.toml"
            values = {"data_dir": str(self.root / name), "port": port,
                      "npc_url": f"http://127.0.0.1:{sim_port}/link/inbound",
                      "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                      "database_url": self.database_url,
                      "keys_dir": str(self.root / "keys"), "clock": clock, **self.settings}
            config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
            self.procs[name] = Proc(name, [
                sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                port, self.root / f"{name}.log",
                hidden=setting_variables(values))

    @property
    def start_order(self) -> list[str]:
        """Redis, the NPC, then the gateways one after the other (the first one leads)."""
        return ["redis", "npc", *self.gateway_names]

    def start_all(self) -> None:
        """Every process, in `start_order`. A start that fails stops those started
        before it, and is raised."""
        try:
            for name in self.start_order:
                self.procs[name].start()
        except BaseException:
            self.stop_all()
            raise

    async def start_all_async(self) -> None:
        """`start_all` for a caller on an event loop, which runs meanwhile."""
        try:
            for name in self.start_order:
                await self.procs[name].start_async()
        except BaseException:
            self.stop_all()
            raise

    def stop_all(self) -> None:
        for name in (*self.gateway_names, "npc", "redis"):
            if name in self.procs:
                self.procs[name].stop()


def prepare_books(database_url: str, accounts: int, clearing_fen: int,
                  account_fen: int, work_date: str,
                  holder: Callable[[int], str] = demo_holder) -> list[str]:
    """The gateway's tables and the ledger on an empty database, our clearing account
    funded and `accounts` customer accounts with money; their numbers. Account `i` is
    held by `holder(i)`: by default the holders of `serve --simulate`'s demo accounts,
    which are the same numbers, so that the README's example transfer goes as written."""
    db = ledger.connect(database_url)
    led = ledger.Ledger()
    numbers = [customer_account(i, "corporate") for i in range(1, accounts + 1)]
    try:
        with db.transaction() as tx:
            dialect.install(tx, SCHEMA)
            led.install(tx)
            led.fund_clearing(tx, "fleet:opening", clearing_fen, work_date)
            for i, account in enumerate(numbers, 1):
                led.open_customer_account(tx, account, holder(i), "corporate", work_date)
                led.deposit(tx, f"fleet:deposit:{i}", account, account_fen, work_date)
    finally:
        db.close()
    return numbers
