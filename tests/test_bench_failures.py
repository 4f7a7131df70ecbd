"""A benchmark that cannot run ends cleanly: a process it starts that exits, or does not
listen in time, is told by name with its log (`process_start_failed`, in the error shape,
exit status 2), every process it started is stopped, even those of a partial start, and
its folder is kept for the logs; a run interrupted (Ctrl-C) or told to stop (SIGTERM)
stops them all too and removes its folder. Nothing is left running after either."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import bench, bench_e2e
from gateway.errors import PaygateError
from gateway.fleet import Proc
from gateway.redisproc import free_port, wait_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def launched(monkeypatch) -> list[tuple[str, int]]:
    """Every process a Proc launches in the test, by name and pid."""
    seen: list[tuple[str, int]] = []
    launch = Proc._launch

    def noted(self: Proc) -> None:
        launch(self)
        seen.append((self.name, self.process.pid))
    monkeypatch.setattr(Proc, "_launch", noted)
    return seen


def alive(launched: list[tuple[str, int]]) -> list[str]:
    """The names of the launched processes still running (a zombie is not: it has
    ended and only waits to be reaped)."""
    names = []
    for name, pid in launched:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            names.append(name)
    return names


def test_a_process_that_exits_is_told_at_once_with_its_log(tmp_path: Path) -> None:
    """The wait for a port stops as soon as the process meant to listen there has
    exited, and names it, its exit status and its log's last line."""
    log_path = tmp_path / "child.log"
    log_path.write_text("starting\nrefused: the port is taken\n")
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()

    with pytest.raises(PaygateError) as refused:
        wait_port(free_port(), 60.0, child, log_path, "the child")

    assert time.monotonic() - started < 30
    problem = refused.value.problems[0]
    assert (problem.code, problem.path, problem.value) == (
        "process_start_failed", str(log_path), 3)
    assert "the child exited with status 3" in problem.message
    assert "refused: the port is taken" in problem.message


def test_a_process_that_never_listens_is_stopped_when_the_wait_ends(tmp_path: Path,
                                                                    monkeypatch,
                                                                    launched) -> None:
    """A process still running when its wait ends is refused naming its log, and
    stopped: the caller is given nothing left running."""
    monkeypatch.setattr("gateway.fleet.CHILD_START_WAIT_S", 1.0)
    proc = Proc("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                free_port(), tmp_path / "sleeper.log")

    with pytest.raises(PaygateError) as refused:
        proc.start()

    problem = refused.value.problems[0]
    assert (problem.code, problem.path, problem.value) == (
        "process_start_failed", str(tmp_path / "sleeper.log"), None)
    assert "did not listen" in problem.message
    assert launched and alive(launched) == []


def test_a_partial_start_stops_the_processes_already_started(tmp_path: Path,
                                                             monkeypatch, launched) -> None:
    """Redis and the NPC are up when the gateway refuses its settings and exits: the
    failure names the gateway's log, which holds the refusal, and Redis and the NPC are
    stopped with it."""
    # The gateway alone reads it, and its configuration file does not give it (the file's
    # own settings are hidden from the process's environment).
    monkeypatch.setenv("PAYGATE_SIGNATURE_ALGORITHM", "rot13")

    with pytest.raises(PaygateError) as refused:
        asyncio.run(bench_e2e.start_processes(tmp_path, free_port()))

    problem = refused.value.problems[0]
    assert (problem.code, problem.path) == ("process_start_failed",
                                            str(tmp_path / "gateway.log"))
    assert "PAYGATE_SIGNATURE_ALGORITHM" in problem.message
    assert [name for name, _ in launched] == ["redis", "npc", "gateway"]
    assert alive(launched) == []


async def _no_baselines(root: Path, duration_s: float) -> dict[str, float]:
    """The baselines left out: these runs end before any figure is compared."""
    return dict.fromkeys(("http", "redis", "lxml", "sqlite", "beps_sqlite",
                          "beps_npc_sqlite"), 1.0)


def test_bench_that_cannot_start_says_so_and_keeps_its_folder(tmp_path: Path, monkeypatch,
                                                              capsys, launched) -> None:
    """`paygate bench e2e` whose gateway does not start: the error shape on standard
    error, exit status 2, nothing left running, the folder kept and named."""
    monkeypatch.setenv("PAYGATE_SIGNATURE_ALGORITHM", "rot13")
    monkeypatch.setenv("PAYGATE_BENCH_KEEP", str(tmp_path))
    monkeypatch.setattr(bench_e2e, "baselines", _no_baselines)

    status = bench.bench_command(["e2e", "--quick", "--no-write"])

    err = capsys.readouterr().err
    errors = json.loads(err.strip().splitlines()[-1])["errors"]
    assert status == 2
    assert [e["code"] for e in errors] == ["process_start_failed"]
    (folder,) = tmp_path.glob("paygate-bench-e2e-*")
    assert errors[0]["path"] == str(folder / "product" / "gateway.log")
    assert f"(kept, since the run failed); remove it with: rm -r {folder}" in err
    assert alive(launched) == []


def test_bench_interrupted_stops_everything_and_removes_its_folder(tmp_path: Path,
                                                                  monkeypatch, capsys,
                                                                  launched) -> None:
    """Ctrl-C while the processes run: every one stopped, the folder removed, status
    130 and no traceback."""
    async def interrupted(*args: object) -> dict:
        assert alive(launched) == ["redis", "npc", "gateway"]
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(60)
        return {}
    monkeypatch.setenv("PAYGATE_BENCH_KEEP", str(tmp_path))
    monkeypatch.setattr(bench_e2e, "baselines", _no_baselines)
    monkeypatch.setattr(bench_e2e, "_phases", interrupted)
    # Ctrl-C as the command line has it: Python's own handler, whatever a test run
    # earlier in this process left installed.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = bench.bench_command(["e2e", "--quick", "--no-write"])
    finally:
        signal.signal(signal.SIGINT, before)

    assert status == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.glob("paygate-bench-e2e-*")) == []
    assert len(launched) == 3 and alive(launched) == []


def test_bench_terminated_stops_everything_and_removes_its_folder(tmp_path: Path,
                                                                 monkeypatch, capsys,
                                                                 launched) -> None:
    """SIGTERM while the processes run (a supervisor, `kill`): as Ctrl-C, every one
    stopped and the folder removed, with status 143 and no traceback, where the
    signal's default action ended the command and left its processes running."""
    async def terminated(*args: object) -> dict:
        assert alive(launched) == ["redis", "npc", "gateway"]
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(60)
        return {}

    def not_handled(signum: int, frame: object) -> None:
        raise AssertionError("SIGTERM reached the handler the bench found, not its own")
    monkeypatch.setenv("PAYGATE_BENCH_KEEP", str(tmp_path))
    monkeypatch.setattr(bench_e2e, "baselines", _no_baselines)
    monkeypatch.setattr(bench_e2e, "_phases", terminated)
    # Python's own SIGINT handler, as the command line has it; SIGTERM's stands for the
    # default action (which would end the test run itself).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    before_term = signal.signal(signal.SIGTERM, not_handled)
    try:
        status = bench.bench_command(["e2e", "--quick", "--no-write"])
        assert signal.getsignal(signal.SIGTERM) is not_handled  # given back after
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, before_term)

    assert status == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert list(tmp_path.glob("paygate-bench-e2e-*")) == []
    assert len(launched) == 3 and alive(launched) == []


def test_bench_whose_load_generator_fails_reports_its_error(tmp_path: Path, monkeypatch,
                                                            capsys, launched) -> None:
    """The BEPS load generator that cannot reach its gateway: the run ends with its
    error shape on standard error and status 2, no traceback of the bench's, nothing
    left running, and the folder kept with the generator's log."""
    async def beps_only(running: bench_e2e.Running, *args: object) -> dict:
        return await bench_e2e.beps_phase(
            running.root, {}, running.database_url, running.clock_anchor_epoch,
            [f"http://127.0.0.1:{free_port()}"], 2.0)
    monkeypatch.setenv("PAYGATE_BENCH_KEEP", str(tmp_path))
    monkeypatch.setattr(bench_e2e, "baselines", _no_baselines)
    monkeypatch.setattr(bench_e2e, "_phases", beps_only)

    status = bench.bench_command(["e2e", "--quick", "--no-write"])

    err = capsys.readouterr().err
    (error,) = json.loads(err.strip().splitlines()[-1])["errors"]
    assert status == 2
    assert (error["code"], error["value"]) == ("load_generator_failed",
                                               "ClientConnectorError")
    assert "Traceback" not in err
    (folder,) = tmp_path.glob("paygate-bench-e2e-*")
    (log,) = folder.rglob("beps-load.log")
    assert log.read_text().strip().splitlines()[-1] == json.dumps(
        {"errors": [error]}, ensure_ascii=False)
    assert len(launched) == 3 and alive(launched) == []
