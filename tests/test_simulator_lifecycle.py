"""The simulated NPC's process: one per data directory (a second is refused by name),
and under `serve --simulate` one that dies is started again on its port and data."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys

import pytest

from gateway.datalock import lock_data_dir
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
