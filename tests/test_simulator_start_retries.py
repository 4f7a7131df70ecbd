"""A simulated NPC that ends before its ready line while `serve --simulate` starts: it is
started again with the restart backoff of a running gateway; one that never starts is
the named error `simulator_start_failed` (exit status 2, no traceback), and how it ended
(its exit status or signal) is in the error and in npc.log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import harness as harness_mod
from gateway.errors import PaygateError
from gateway.harness import SIM_START_ATTEMPTS_MAX, Harness

# A simulator's process that dies before its ready line, writing nothing (as one the
# kernel's out-of-memory killer ends does).
KILLED = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
# One that ends with a status of its own and a last line on standard error.
EXITED_3 = [sys.executable, "-c",
            "import sys; print('npc: cannot bind its port', file=sys.stderr); sys.exit(3)"]


def _failing_first(monkeypatch: pytest.MonkeyPatch, failures: int, args: list[str]
                   ) -> list[int]:
    """The harness's simulator command replaced by `args` for the first `failures`
    starts, then the real one; the returned list counts the starts."""
    real = Harness.simulator_args
    starts: list[int] = []

    def simulator_args(self: Harness) -> list[str]:
        starts.append(len(starts) + 1)
        return list(args) if len(starts) <= failures else real(self)
    monkeypatch.setattr(Harness, "simulator_args", simulator_args)
    monkeypatch.setattr(harness_mod, "SIM_RESTART_BACKOFF_S", (0.05,))
    return starts


@pytest.mark.e2e
def test_a_simulator_killed_before_its_ready_line_is_started_again(tmp_path, monkeypatch):
    """Two starts killed by SIGKILL, the third one serves: the start succeeds, on the
    same port, and npc.log says how each failed start ended."""
    starts = _failing_first(monkeypatch, 2, KILLED)

    async def scenario() -> tuple[str, int]:
        h = Harness(tmp_path, clock_spec="2026-12-07T09:00", sim_args=["--follow-clock"])
        await h.start()
        try:
            return h.sim_url, h.sim_port
        finally:
            await h.stop()

    url, port = asyncio.run(scenario())
    log = (tmp_path / "npc.log").read_text(encoding="utf-8")

    assert starts == [1, 2, 3]
    assert url == f"http://127.0.0.1:{port}"
    not_started = [line for line in log.splitlines() if "event=npc_not_started" in line]
    assert len(not_started) == 2
    assert all("SIGKILL" in line and "exit_code=-9" in line for line in not_started)


@pytest.mark.parametrize("args, how", [
    (KILLED, "ended by SIGKILL"),
    (EXITED_3, "exited with status 3 before its ready line; its last line: npc: cannot bind"),
])
def test_a_simulator_that_never_starts_is_a_named_error(tmp_path, monkeypatch, args, how):
    """Every start fails: the start is refused as `simulator_start_failed`, saying how
    the last one ended and where its log is, after SIM_START_ATTEMPTS_MAX starts; no
    simulator's process is left."""
    starts = _failing_first(monkeypatch, SIM_START_ATTEMPTS_MAX, args)
    h = Harness(tmp_path, clock_spec="2026-12-07T09:00")

    with pytest.raises(PaygateError) as refused:
        asyncio.run(h.start())
    problem = refused.value.problems[0]

    assert refused.value.code == "simulator_start_failed"
    assert how in problem.value and how in problem.message
    assert str(tmp_path / "npc.log") in problem.message
    assert len(starts) == SIM_START_ATTEMPTS_MAX
    assert h.sim_process is None and h.gateway is None


def test_an_older_refusal_in_npc_log_is_not_taken_for_this_start(tmp_path, monkeypatch):
    """npc.log ends with a refusal from an earlier run; a simulator killed now is its own
    failure, not that refusal again."""
    _failing_first(monkeypatch, SIM_START_ATTEMPTS_MAX, KILLED)
    (tmp_path / "npc.log").write_text(json.dumps({"errors": [{
        "code": "clock_before_stored_work_date", "path": "clock", "value": "2026-12-04",
        "expected": "a later clock", "message": "an earlier run's refusal"}]}) + "\n")
    h = Harness(tmp_path, clock_spec="2026-12-07T09:00")

    with pytest.raises(PaygateError) as refused:
        asyncio.run(h.start())

    assert refused.value.code == "simulator_start_failed"
    assert "SIGKILL" in refused.value.problems[0].value


SERVE_WITH_A_DYING_SIMULATOR = """
import sys
from gateway import harness
harness.SIM_RESTART_BACKOFF_S = (0.05,)
harness.Harness.simulator_args = lambda self: {killed!r}
from gateway.cli import main
sys.exit(main(["serve", "--simulate", "--port", "0"]))
"""


def test_serve_simulate_with_a_simulator_that_never_starts_exits_2(tmp_path: Path) -> None:
    """`paygate serve --simulate` whose simulator dies at every start: the error shape on
    standard output and status 2, no traceback."""
    env = {**os.environ, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_CLOCK": "2026-12-07T09:00"}

    run = subprocess.run([sys.executable, "-c",
                          SERVE_WITH_A_DYING_SIMULATOR.format(killed=KILLED)],
                         env=env, capture_output=True, text=True, timeout=120, check=False)

    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    error = json.loads(run.stdout.strip().splitlines()[-1])["errors"][0]
    assert error["code"] == "simulator_start_failed" and "SIGKILL" in error["value"]
    assert "event=npc_not_started" in (tmp_path / "npc.log").read_text(encoding="utf-8")
