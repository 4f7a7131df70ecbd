"""The simulated NPC's process: one per data directory (a second is refused by name),
and under `serve --simulate` one that dies is started again on its port and data."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from datetime import datetime

import pytest

from gateway import harness as harness_module
from gateway.clock import SHANGHAI, clock_from_spec
from gateway.datalock import lock_data_dir
from gateway.harness import Harness
from simulators.npc import LOCK_FILE
from tests.e2e_support import open_account, started, transfer, until, wait_state


def test_a_second_simulator_on_a_data_directory_in_use_is_refused(tmp_path):
    """The first holder's pid is named; the second simulator ends with status 2."""
    held = lock_data_dir(tmp_path, LOCK_FILE, "simulator", "--data")
    try:
        run = subprocess.run([sys.executable, "-m", "gateway.cli", "simulate", "npc",
                              "--data", str(tmp_path), "--port", "0",
                              "--keys", str(tmp_path / "keys")],
                             capture_output=True, text=True, timeout=60)
    finally:
        held.close()

    assert run.returncode == 2, run.stderr
    error = json.loads(run.stderr.strip().splitlines()[-1])["errors"][0]
    assert error["code"] == "data_dir_in_use" and "pid " in error["message"]


@pytest.mark.e2e
def test_a_killed_simulator_is_started_again_and_payments_go_on(tmp_path, caplog):
    """kill -9 the simulated NPC while its keeper runs: it comes back on the same URL,
    with a warning line, and a payment taken after settles."""
    async def scenario():
        async with started(tmp_path) as h:
            keeper = asyncio.create_task(h.keep_simulator())
            try:
                payer = await open_account(h, 1, 100_000_000 * 100)
                url, old_pid = h.sim_url, h.sim_process.pid
                with caplog.at_level(logging.WARNING, logger="paygate.harness"):
                    h.sim_process.kill()
                    await until(lambda: h.sim_restarts == 1, "simulator restarted", 30)
                _, answer = await h.gateway.submit_transfer("core", "after",
                                                            transfer(payer, "100.00"))
                await wait_state(h, answer["id"], "settled", timeout_s=60)
                return url, old_pid, h.sim_url, h.sim_process.pid
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)

    url, old_pid, new_url, new_pid = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]

    assert new_url == url and new_pid != old_pid
    assert any(line.startswith("event=npc_died") for line in lines)
    assert any(line.startswith("event=npc_restarted") for line in lines)


@pytest.mark.e2e
def test_a_simulator_refusing_to_start_again_is_alerted_at_once_and_tried_until_it_starts(
        tmp_path, monkeypatch, caplog):
    """The simulated NPC dies and its restart is refused (its data directory held by
    another process): the refusal is logged and alerted at once, the keeper goes on
    trying, and once the cause is gone the simulator starts and the gateway closes the
    alert."""
    monkeypatch.setattr(harness_module, "SIM_REFUSED_RETRY_S", 0.5)
    held_dir = tmp_path / "held"

    def alerts(h):
        return h.gateway.store.run(lambda tx: tx.query(
            "SELECT a.code, k.by FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
            "WHERE a.code = ?", (harness_module.ALERT_NPC_RESTART_REFUSED,)))

    async def scenario():
        async with started(tmp_path) as h:
            keeper = asyncio.create_task(h.keep_simulator())
            held = lock_data_dir(held_dir, LOCK_FILE, "simulator", "--data")
            own_args = h.simulator_args
            args = own_args()
            # Its restarts read a data directory another process holds: refused.
            monkeypatch.setattr(h, "simulator_args", lambda: [
                str(held_dir) if arg == args[args.index("--data") + 1] else arg
                for arg in args])
            try:
                with caplog.at_level(logging.WARNING, logger="paygate.harness"):
                    h.sim_process.kill()
                    await until(lambda: alerts(h), "the refusal alerted", 30)
                    refused = {"keeper_running": not keeper.done(),
                               "alerts": await alerts(h)}
                    held.close()
                    monkeypatch.setattr(h, "simulator_args", own_args)
                    await until(lambda: h.sim_restarts == 1, "simulator restarted", 30)
                return refused, await alerts(h)
            finally:
                held.close()
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)

    refused, after = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    refusal = next(line for line in lines if line.startswith("event=npc_restart_refused"))

    assert refused == {"keeper_running": True,
                       "alerts": [(harness_module.ALERT_NPC_RESTART_REFUSED, None)]}
    assert "data_dir_in_use" in refusal
    assert after == [(harness_module.ALERT_NPC_RESTART_REFUSED, "gateway")]
    assert any(line.startswith("event=npc_restarted") for line in lines)


def _simulate(data, keys, clock: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "simulate", "npc",
                             "--data", str(data), "--port", "0", "--keys", str(keys),
                             "--clock", clock, "--follow-clock"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_simulator_on_a_clock_before_its_work_date_is_refused(tmp_path):
    """A simulator that ran on Monday, started again on the Friday before, refuses by
    name (status 2) instead of following the clock back through a day end, which would
    cancel what is queued at it; the harness of `serve --simulate` shows the same error."""
    data, keys = tmp_path / "npc", tmp_path / "keys"
    first = _simulate(data, keys, "2026-12-07T10:00")
    try:
        assert json.loads(first.stdout.readline())["npc"].startswith("http://")
    finally:
        first.terminate()
        first.communicate(timeout=60)

    again = _simulate(data, keys, "2026-12-04T10:00")
    out, err = again.communicate(timeout=60)

    assert again.returncode == 2 and out == "", err
    error = json.loads(err.strip().splitlines()[-1])["errors"][0]
    assert error["code"] == "clock_before_stored_work_date"
    assert "2026-12-07" in error["expected"] and "2026-12-04" in error["message"]


def test_serve_simulate_refuses_before_the_simulator_moves_back(tmp_path):
    """The pair started again with an earlier clock: the start is refused in the error
    shape (the simulator's refusal, or the gateway's), naming the setting the user gave
    (not the simulator's --clock, which `serve` made from it), and nothing at the NPC
    moved."""
    from gateway.errors import PaygateError
    from gateway.harness import Harness

    async def scenario():
        first = Harness(tmp_path, clock_spec="2026-12-07T10:00", sim_args=["--follow-clock"])
        await first.start()
        await first.stop()
        again = Harness(tmp_path, clock_spec="2026-12-04T10:00", sim_args=["--follow-clock"],
                        clock_named="PAYGATE_CLOCK")
        with pytest.raises(PaygateError) as refused:
            await again.start()
        return refused.value

    refusal = asyncio.run(scenario())
    log = (tmp_path / "npc.log").read_text(encoding="utf-8")

    assert refusal.code == "clock_before_stored_work_date"
    problem = refusal.problems[0]
    assert problem.path == "PAYGATE_CLOCK"
    assert problem.message.endswith("set PAYGATE_CLOCK to a later time"), problem.message
    assert "--clock" not in problem.message
    assert "2026-12-04" not in "".join(
        line for line in log.splitlines() if "phase" in line and "work_date=" in line)


def test_a_restarted_simulator_keeps_the_gateways_virtual_time(tmp_path, monkeypatch):
    """`serve --simulate` with a bare PAYGATE_CLOCK start: the simulator is given the
    anchored clock, so one started again an hour later reads the same time as the
    gateway, not the start instant again."""
    harness = Harness(tmp_path, clock_spec="2026-12-07T09:10:00+08:00")
    first = harness.simulator_args()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    again = harness.simulator_args()
    spec = again[again.index("--clock") + 1]

    assert again == first
    assert "@" in spec
    assert abs((clock_from_spec(spec).now() - harness.clock().now()).total_seconds()) < 60
    assert clock_from_spec(spec).now() >= datetime(2026, 12, 7, 10, 9, tzinfo=SHANGHAI)
