"""`paygate serve | head -1`: a reader of the start-up line that goes away does not stop
the gateway (as a broken log stream does not); it runs until it is told to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.redisproc import free_port


def test_a_closed_standard_output_does_not_stop_the_gateway(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads the start-up line
    env = {**os.environ, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_NPC_URL": f"http://127.0.0.1:{free_port()}/link/inbound"}
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", "0"],
                               stdout=write_end, stderr=subprocess.PIPE, env=env, text=True)
    os.close(write_end)
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "event=stdout_lost" in line:
                break
        assert any("event=stdout_lost" in line for line in seen), "".join(seen)
        time.sleep(1.5)
        assert process.poll() is None, "the gateway stopped when its stdout closed"
        stop(process)
    finally:
        kill_if_running(process)


def stop(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a `paygate serve` started by a test as an operator does (Ctrl-C): it ends 0."""
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=timeout_s) == 0


def kill_if_running(process: subprocess.Popen) -> None:
    """After a failed test: leave no process of its own behind."""
    if process.poll() is None:
        process.kill()
        process.wait()
