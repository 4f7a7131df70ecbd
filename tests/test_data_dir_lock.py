"""One gateway per data directory: a second `paygate serve` on a directory in use is
refused by name (and the lock goes with the first process, however it ends)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gateway.serve import LOCK_FILE, _lock_data_dir


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    first = _lock_data_dir(tmp_path)
    assert not isinstance(first, dict)
    refused = _lock_data_dir(tmp_path)
    assert isinstance(refused, dict)
    error = refused["errors"][0]
    assert error["code"] == "data_dir_in_use" and f"pid {os.getpid()}" in error["message"]
    first.close()
    again = _lock_data_dir(tmp_path)
    assert not isinstance(again, dict)
    again.close()


def test_serve_refuses_a_directory_another_process_holds(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from gateway.serve import _lock_data_dir; "
         "lock = _lock_data_dir(Path(sys.argv[1])); print('held', flush=True); "
         "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--port", "0"],
                             env={**os.environ, "PAYGATE_DATA_DIR": str(tmp_path)},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2
        error = json.loads(run.stdout)["errors"][0]
        assert error["code"] == "data_dir_in_use"
        assert f"pid {holder.pid}" in error["message"]
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    # Killed, the holder left its lock: the directory is free again.
    free = _lock_data_dir(tmp_path)
    assert not isinstance(free, dict)
    free.close()
