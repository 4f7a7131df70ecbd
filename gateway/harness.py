"""Runs the gateway beside a simulated NPC on loopback: for the demo, `serve
--simulate` and the end-to-end tests.

The simulator is its own process (`paygate simulate npc`), reached over real HTTP; the
gateway runs in this process; Redis is the gateway's embedded one. Both processes read
the same virtual clock (a start instant and a shared real-time anchor) and share one
keys directory, in which each side writes its own key pair and reads the others'
public keys.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from gateway.app import Gateway
from gateway.clock import Clock, anchored_spec, clock_from_spec
from gateway.config import SIMULATED_GATEWAY_FOLDER, Settings
from gateway.errors import PaygateError, Problem
from gateway.messages.signing import write_keypair
from gateway.redisproc import die_with_parent, free_port
from simulators.app import CLOCK_ADVICE

SIM_START_TIMEOUT_S = 20.0
SIM_WATCH_EVERY_S = 0.5  # how often `keep_simulator` looks at the simulator's process
SIM_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # between failed restarts, the last repeated

log = logging.getLogger("paygate.harness")


@dataclass
class Harness:
    data_dir: Path
    clock_spec: str = ""
    balances_fen: dict[str, int] = field(default_factory=dict)
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    sim_args: list[str] = field(default_factory=list)
    gateway_port: int = 0
    sim_port: int = 0
    gateway: Gateway | None = None
    sim_process: subprocess.Popen | None = None
    sim_url: str = ""
    sim_restarts: int = 0
    # Where the user set the clock (`PAYGATE_CLOCK`, a file's `clock`), for `serve
    # --simulate`: a refusal of the clock at start, the gateway's or the simulator's,
    # names that and not the settings the harness makes. Empty: the clock is the
    # harness's own (tests, the demo).
    clock_named: str = ""
    _http: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        # Anchored once: the gateway, the simulator and every restart of the simulator
        # (`keep_simulator`) read the same instant, never a day that starts again.
        self.clock_spec = anchored_spec(self.clock_spec)

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    def settings(self) -> Settings:
        values = dict(data_dir=str(self.data_dir / SIMULATED_GATEWAY_FOLDER),
                      port=self.gateway_port,
                      npc_url=f"{self.sim_url}/link/inbound", keys_dir=str(self.keys_dir),
                      clock=self.clock_spec)
        values.update(self.settings_overrides)
        settings = Settings(**values)
        if self.clock_named:
            settings._sources = {"clock": self.clock_named}  # type: ignore[attr-defined]
        return settings

    async def start(self) -> "Harness":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.gateway_port = self.gateway_port or free_port()
        bank = self.settings_overrides.get("bank_code", Settings().bank_code)
        write_keypair(self.keys_dir, bank)
        await self.start_simulator()
        try:
            self.gateway = Gateway(self.settings(), clock=self.clock())
            await self.gateway.start()
        except BaseException:
            await self.stop_simulator()
            raise
        return self

    def clock(self) -> Clock:
        return clock_from_spec(self.clock_spec)

    def simulator_args(self) -> list[str]:
        """The simulator's command line, the same at every (re)start."""
        bank = self.settings_overrides.get("bank_code", Settings().bank_code)
        args = [sys.executable, "-m", "gateway.cli", "simulate", "npc",
                "--host", "127.0.0.1", "--port", str(self.sim_port),
                "--data", str(self.data_dir / "npc"), "--keys", str(self.keys_dir),
                "--bank", f"{bank}=http://127.0.0.1:{self.gateway_port}/link/inbound"]
        if self.clock_spec:
            args += ["--clock", self.clock_spec]
        for code, fen in self.balances_fen.items():
            args += ["--balance", f"{code}={fen}"]
        return args + self.sim_args

    async def start_simulator(self) -> None:
        self.sim_port = self.sim_port or free_port()
        args = self.simulator_args()
        log_file = open(self.data_dir / "npc.log", "ab")
        self.sim_process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file,
                                            env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                            preexec_fn=die_with_parent,
                                            # stopped by the gateway's side, not by a
                                            # Ctrl-C aimed at the terminal's group
                                            start_new_session=True)
        log_file.close()
        line = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, self.sim_process.stdout.readline),
            SIM_START_TIMEOUT_S)
        if not line:
            raise _simulator_refusal(self.data_dir / "npc.log", self.clock_named) or RuntimeError(
                f"the simulator exited; see {self.data_dir / 'npc.log'}")
        self.sim_url = json.loads(line)["npc"]

    async def stop_simulator(self, kill: bool = False) -> None:
        if self.sim_process is None:
            return
        if kill:
            self.sim_process.kill()
        else:
            self.sim_process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, self.sim_process.wait)
        self.sim_process.stdout.close()
        self.sim_process = None

    async def keep_simulator(self) -> None:
        """Until cancelled: start the simulator again, on its port and data directory,
        whenever its process ends (`serve --simulate`). It is a simulator: a restart
        loses nothing the tests or the demo rely on (its database holds what it took)."""
        while True:
            await asyncio.sleep(SIM_WATCH_EVERY_S)
            process = self.sim_process
            if process is None or process.poll() is None:
                continue
            log.warning("event=npc_died exit_code=%s restarting=true", process.returncode)
            process.stdout.close()
            self.sim_process = None
            for attempt in itertools.count():
                try:
                    await self.start_simulator()
                    break
                except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
                    if attempt == 0:
                        log.error("event=npc_restart_failed error=%r", exc)
                    await self._stop_failed_start()
                    await asyncio.sleep(SIM_RESTART_BACKOFF_S[
                        min(attempt, len(SIM_RESTART_BACKOFF_S) - 1)])
            self.sim_restarts += 1
            log.warning("event=npc_restarted url=%s restarts=%s", self.sim_url,
                        self.sim_restarts)

    async def _stop_failed_start(self) -> None:
        if self.sim_process is not None and self.sim_process.poll() is None:
            await self.stop_simulator(kill=True)
        elif self.sim_process is not None:
            self.sim_process.stdout.close()
            self.sim_process = None

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._http.request(method, f"{self.sim_url}{path}", json=body) as r:
            data = await r.json(content_type=None)
            if r.status >= 300:
                raise RuntimeError(f"simulator {method} {path} answered {r.status}: {data}")
            return data

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        await self.stop_simulator()
        if self._http is not None:
            await self._http.close()


def _simulator_refusal(log_path: Path, clock_named: str = "") -> PaygateError | None:
    """The refusal a simulator that would not start wrote as its last line (the error
    shape, exit status 2), as the same error here; None when it ended otherwise. With
    `clock_named`, a refusal of its clock names that setting, which the user gave,
    instead of the simulator's --clock, which the harness gave."""
    try:
        last = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-1:]
        errors = json.loads(last[0])["errors"] if last else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(errors, list) or not errors:
        return None
    problems = [Problem(e.get("code", "simulator_refused"), e.get("path", ""),
                        e.get("value"), e.get("expected", ""), e.get("message", ""))
                for e in errors if isinstance(e, dict)]
    if clock_named:
        problems = [replace(p, path=clock_named, message=p.message.replace(
                        CLOCK_ADVICE, f"set {clock_named} to a later time"))
                    if p.path == "clock" else p for p in problems]
    return PaygateError(problems, status=409)
