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
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from gateway import critical, jsontext, logs
from gateway.app import Gateway
from gateway.clock import Clock, anchored_spec, clock_from_spec
from gateway.config import SIMULATED_GATEWAY_FOLDER, Settings
from gateway.errors import PaygateError, Problem
from gateway.messages.signing import write_keypair
from gateway.redisproc import die_with_parent, free_port
from simulators.app import CLOCK_ADVICE
from simulators.logfmt import KeyValueFormatter

SIM_START_TIMEOUT_S = 20.0
SIM_WATCH_EVERY_S = 0.5  # how often `keep_simulator` looks at the simulator's process
SIM_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # between failed restarts, the last repeated
# At start-up the simulator is tried as often as this, with the restart backoff between
# (3.5 s in all), before the start is refused: a running gateway waits for it without
# end, but a start must answer.
SIM_START_ATTEMPTS_MAX = 4
# A simulator that refuses to start again under a running gateway (its clock before its
# stored work date, its data directory held by another process) would refuse the same
# way at once; it is tried again this often, for a person to mend the cause meanwhile.
SIM_REFUSED_RETRY_S = 30.0
ALERT_NPC_RESTART_REFUSED = "simulated_npc_restart_refused"
# How long a simulator that closed its standard output is given to end, for its status.
SIM_EXIT_WAIT_S = 5.0
# Of npc.log, what a failed start reads for the simulator's last line (its end only), and
# how much of that line the error shows: a refusal or a traceback's last line is shorter.
SIM_LOG_TAIL_BYTES_MAX = 64 * 1024
SIM_LINE_SHOWN_MAX = 400

log = logging.getLogger("paygate.harness")


class SimulatorNotStarted(RuntimeError):
    """One start of the simulator's process that did not reach its ready line; the text
    says how it ended (its exit status or signal) or that it printed none in time."""


def exit_text(code: int) -> str:
    """A process's exit status in words: a negative status is the signal that ended it."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"it was ended by {name} before its ready line"
    return f"it exited with status {code} before its ready line"


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
        await self.start_simulator_retrying(SIM_START_ATTEMPTS_MAX)
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
        """One start of the simulator's process, until its ready line. A refusal it wrote
        (the error shape) is raised as that error; a process that ended, or printed no
        ready line in time, raises SimulatorNotStarted naming how, which is also written
        into npc.log (a process killed by a signal writes nothing there itself)."""
        self.sim_port = self.sim_port or free_port()
        args = self.simulator_args()
        log_path = self.data_dir / "npc.log"
        with open(log_path, "ab") as log_file:
            written_from = log_file.seek(0, os.SEEK_END)  # what this start writes follows
            self.sim_process = subprocess.Popen(args, stdout=subprocess.PIPE,
                                                stderr=log_file,
                                                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                                preexec_fn=die_with_parent,
                                                # stopped by the gateway's side, not by
                                                # a Ctrl-C aimed at the terminal's group
                                                start_new_session=True)
        try:
            line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                None, self.sim_process.stdout.readline), SIM_START_TIMEOUT_S)
        except TimeoutError:
            raise self._not_started(
                log_path, f"it printed no ready line within {SIM_START_TIMEOUT_S:g} s"
            ) from None
        if not line:
            ended = await self._ended(log_path, written_from)
            raise self._not_started(log_path, ended)
        try:
            self.sim_url = json.loads(line)["npc"]
        except (ValueError, KeyError, TypeError):
            raise self._not_started(log_path, "its first line on standard output was not "
                                    f"its ready line: {line[:80]!r}") from None

    async def _ended(self, log_path: Path, written_from: int) -> str:
        """How the simulator that closed its standard output without a ready line ended:
        its exit status or signal, and the last line it wrote at this start (the end of a
        traceback, say); its refusal, when that line is one, is raised instead."""
        process = self.sim_process
        assert process is not None
        try:
            code = await asyncio.get_running_loop().run_in_executor(
                None, process.wait, SIM_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            return "it closed its standard output without its ready line and went on running"
        last_line = _last_line_written(log_path, written_from)
        refusal = _simulator_refusal(last_line, self.clock_named)
        if refusal is not None:
            raise refusal
        if last_line:
            return f"{exit_text(code)}; its last line: {last_line[-SIM_LINE_SHOWN_MAX:]}"
        return exit_text(code)

    def _not_started(self, log_path: Path, reason: str) -> SimulatorNotStarted:
        """The failed start, its reason written into npc.log after the simulator's own
        lines (a traceback, when it wrote one)."""
        fields = {"reason": reason}
        if self.sim_process is not None and self.sim_process.returncode is not None:
            fields["exit_code"] = str(self.sim_process.returncode)
        line = KeyValueFormatter().line(time.time(), "ERROR", log.name, "npc_not_started",
                                        fields)
        try:
            with open(log_path, "a", encoding="utf-8") as log_file:
                log_file.write(line + "\n")
        except OSError as exc:
            log.error("event=npc_log_unwritable path=%s error=%s", logs.value(str(log_path)),
                      logs.value(repr(exc)))
        return SimulatorNotStarted(reason)

    async def start_simulator_retrying(self, attempts_max: int | None) -> None:
        """Start the simulator, and while a start fails (the process ended or printed no
        ready line), try again on the same port and data after SIM_RESTART_BACKOFF_S:
        without end for a simulator that died under a running gateway
        (`keep_simulator`), at most `attempts_max` starts for the first one, whose last
        failure is raised as `simulator_start_failed`. A refusal the simulator wrote (a
        clock before its stored work date, its data directory held) is raised at once: it
        would refuse the same way again."""
        for attempt in itertools.count():
            try:
                await self.start_simulator()
                return
            except (SimulatorNotStarted, OSError) as exc:
                await self._stop_failed_start()
                if attempt == 0 or attempts_max is not None:
                    log.error("event=npc_start_failed attempt=%s error=%s", attempt + 1,
                              logs.value(str(exc)))
                if attempts_max is not None and attempt + 1 >= attempts_max:
                    raise self._start_failed(exc, attempt + 1) from None
            await asyncio.sleep(SIM_RESTART_BACKOFF_S[
                min(attempt, len(SIM_RESTART_BACKOFF_S) - 1)])

    def _start_failed(self, exc: Exception, attempts: int) -> PaygateError:
        log_path = self.data_dir / "npc.log"
        return PaygateError(Problem(
            "simulator_start_failed", "--simulate", str(exc),
            "a simulated NPC that prints its ready line within "
            f"{SIM_START_TIMEOUT_S:g} s",
            f"the simulated NPC did not start ({attempts} attempts on port "
            f"{self.sim_port}): {exc}; its log is {log_path}"), 503)

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
            await self._restart_simulator()
            self.sim_restarts += 1
            log.warning("event=npc_restarted url=%s restarts=%s", self.sim_url,
                        self.sim_restarts)

    async def _restart_simulator(self) -> None:
        """Start the simulator that died again, however long it takes. A refusal it
        writes is logged at once (`npc_restart_refused`) and raised as the alert
        `simulated_npc_restart_refused` (the gateway's deliveries to it fail meanwhile:
        `link_down`), then tried again every SIM_REFUSED_RETRY_S, each refusal logged;
        once it starts, the gateway closes the alert."""
        alert_id = None
        for refusals in itertools.count(1):
            try:
                await self.start_simulator_retrying(None)
                break
            except PaygateError as exc:
                await self._stop_failed_start()
                log.error("event=npc_restart_refused refusals=%s retry_in_s=%g errors=%s",
                          refusals, SIM_REFUSED_RETRY_S,
                          logs.value(jsontext.dumps(exc.to_dict()["errors"])))
                if alert_id is None:
                    alert_id = await self._restart_refused_alert(exc)
            await asyncio.sleep(SIM_REFUSED_RETRY_S)
        if alert_id is not None:
            note = f"the simulated NPC started again after {refusals - 1} refused starts"
            await self._in_store(lambda tx: critical.close_by_gateway(
                tx, [alert_id], note, self.gateway.clock.now()), "close")

    async def _restart_refused_alert(self, exc: PaygateError) -> int | None:
        """The alert of a simulator refusing to start again (None when it could not be
        written: the next refusal tries again)."""
        return await self._in_store(lambda tx: self.gateway.alert(
            tx, ALERT_NPC_RESTART_REFUSED, errors=exc.to_dict()["errors"],
            data=str(self.data_dir / "npc"), retry_every_s=SIM_REFUSED_RETRY_S,
            message="the simulated NPC died and refuses to start again; deliveries to it "
                    f"fail until it starts, tried every {SIM_REFUSED_RETRY_S:g} s: mend what "
                    "its refusal names (npc.log has it)"), "raise")

    async def _in_store(self, work: Any, step: str) -> Any:
        """`work` in the gateway's store for the keeper's alert; a failure is logged
        (None) rather than end the keeper, which goes on restarting the simulator."""
        assert self.gateway is not None, "the keeper runs under a started gateway"
        try:
            return await self.gateway.store.run(work)
        except Exception as failed:
            log.error("event=npc_restart_alert_failed step=%s error=%s", step,
                      logs.value(repr(failed)))
            return None

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


def _last_line_written(log_path: Path, written_from: int) -> str:
    """The last line the simulator wrote into npc.log after `written_from` (where the
    file ended when it was started): an older line is not this start's. Empty when it
    wrote none, or the file cannot be read."""
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(written_from)
            text = log_file.read(SIM_LOG_TAIL_BYTES_MAX + 1)
            if len(text) > SIM_LOG_TAIL_BYTES_MAX:
                log_file.seek(-SIM_LOG_TAIL_BYTES_MAX, os.SEEK_END)
                text = log_file.read()
    except OSError as exc:
        log.error("event=npc_log_unreadable path=%s error=%s", logs.value(str(log_path)),
                  logs.value(repr(exc)))
        return ""
    lines = [line for line in text.decode("utf-8", errors="replace").splitlines()
             if line.strip()]
    return lines[-1] if lines else ""


def _simulator_refusal(last_line: str, clock_named: str = "") -> PaygateError | None:
    """The refusal a simulator that would not start wrote as its last line (the error
    shape, exit status 2), as the same error here; None when it ended otherwise. With
    `clock_named`, a refusal of its clock names that setting, which the user gave,
    instead of the simulator's --clock, which the harness gave."""
    try:
        errors = json.loads(last_line)["errors"] if last_line else None
    except (ValueError, KeyError, TypeError):
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
