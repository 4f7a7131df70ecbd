"""`serve --simulate` keeps its simulated NPC on one port across restarts of one data
folder (a saved /sim URL goes on working), and says so on the start-up line when that
port is taken and the NPC had to move."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.redisproc import free_port
from gateway.serve import NPC_PORT_FILE, simulated_npc_port
from tests.test_serve_stdout import kill_if_running, stop


def test_a_free_remembered_port_is_taken_again(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / NPC_PORT_FILE).write_text(f"{port}\n")
    assert simulated_npc_port(tmp_path) == (port, None)


def test_a_taken_remembered_port_gives_a_new_one_saying_so(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        (tmp_path / NPC_PORT_FILE).write_text(f"{taken}\n")
        port, note = simulated_npc_port(tmp_path)
    assert port != taken and port > 0
    assert note is not None and str(taken) in note and str(port) in note


@pytest.mark.parametrize("text", ["", "x", "0", "70000"])
def test_no_usable_remembered_port_gives_a_new_one_quietly(tmp_path: Path, text: str
                                                           ) -> None:
    if text:
        (tmp_path / NPC_PORT_FILE).write_text(text)
    port, note = simulated_npc_port(tmp_path)
    assert port > 0 and note is None


def _start_line(data: Path) -> dict[str, Any]:
    """One `serve --simulate` on `data`: its start-up line, then stopped."""
    env = {**os.environ, "PAYGATE_DATA_DIR": str(data),
           "PAYGATE_CLOCK": "2026-12-07T09:00"}
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--simulate",
                                "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        line = process.stdout.readline()
        stop(process, 60)
    finally:
        kill_if_running(process)
    assert line, "no start-up line"
    return json.loads(line)


@pytest.mark.e2e
def test_serve_simulate_restarts_its_npc_on_the_same_port(tmp_path: Path) -> None:
    first = _start_line(tmp_path)
    again = _start_line(tmp_path)
    assert again["npc"] == first["npc"]
    assert "npc_port_changed" not in first and "npc_port_changed" not in again
    old = int(first["npc"].rsplit(":", 1)[1])
    with socket.socket() as held:
        # The stopped NPC's closed connections may leave the port in TIME_WAIT for a
        # minute; a listener bound with SO_REUSEADDR still holds it against the next NPC.
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", old))
        held.listen()
        moved = _start_line(tmp_path)
    assert moved["npc"] != first["npc"]
    assert str(old) in moved["npc_port_changed"]
    assert _start_line(tmp_path)["npc"] == moved["npc"]
