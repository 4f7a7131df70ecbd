"""Processes for the crash test: Redis, the simulated NPC and the gateway, each its own
process on loopback, each killable with SIGKILL and restartable on the same data
(gateway.fleet.Proc: a process that exits before listening is seen at once, with its
log's last line, and a loaded machine is given as long as a benchmark's processes)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.clock import SHANGHAI, ScaledClock
from gateway.config import DB_FILE
from gateway.fleet import Proc, setting_variables
from gateway.redisproc import free_port, redis_binary


@dataclass
class System:
    root: Path
    bank: str = "999100000019"
    # The gateway's database; empty: the SQLite file in its data folder.
    database_url: str = ""
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        """The database the gateway process opens, for the test's own look at it."""
        return self.database_url or f"sqlite:///{self.root / 'gateway' / DB_FILE}"

    def build(self, clearing_fen: int, peer_fen: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        redis_port, sim_port, gw_port = free_port(), free_port(), free_port()
        (self.root / "redis").mkdir(exist_ok=True)
        self.procs["redis"] = Proc("redis", [
            redis_binary(), "--bind", "127.0.0.1", "--port", str(redis_port), "--dir",
            str(self.root / "redis"), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", ""], redis_port, self.root / "redis.log")
        self.procs["npc"] = Proc("npc", [
            sys.executable, "-m", "gateway.cli", "simulate", "npc", "--port", str(sim_port),
            "--data", str(self.root / "npc"), "--keys", str(self.root / "keys"),
            "--bank", f"{self.bank}=http://127.0.0.1:{gw_port}/link/inbound",
            "--balance", f"{self.bank}={clearing_fen}",
            "--balance", f"888200000015={peer_fen}", "--phase", "10"],
            sim_port, self.root / "npc.log")
        config = self.root / "gateway.toml"
        values = {
            "data_dir": str(self.root / "gateway"), "database_url": self.database_url,
            "port": gw_port,
            "npc_url": f"http://127.0.0.1:{sim_port}/link/inbound",
            "redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "keys_dir": str(self.root / "keys"),
            # One clock for every start, running on from the first: a restart continues
            # the day instead of going back to 09:00 (which the gateway refuses).
            "clock": ScaledClock(datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI),
                                 time.time()).to_spec()}
        config.write_text(json_toml(values))
        self.procs["gateway"] = Proc("gateway", [
            sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            gw_port, self.root / "gateway.log", hidden=setting_variables(values))

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.procs[name].port}"

    def stop_all(self) -> None:
        for name in ("gateway", "npc", "redis"):
            if name in self.procs:
                self.procs[name].stop()


def json_toml(values: dict) -> str:
    """Flat TOML from a dict of strings and numbers (JSON strings are valid TOML ones)."""
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
