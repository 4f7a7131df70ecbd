"""`paygate serve` that cannot start names why, in the error shape, and ends with status
2: no traceback for a data directory it cannot make or a Redis that does not answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gateway.redisproc import free_port


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--port", "0"],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("fault, env, code", [
    ("data directory under /proc", {"PAYGATE_DATA_DIR": "/proc/nope"}, "data_dir_unusable"),
    ("Redis on a closed loopback port", {"PAYGATE_REDIS_URL": "redis://127.0.0.1:{port}/0"},
     "redis_unreachable"),
])
def test_a_start_that_fails_is_a_named_error_with_status_2(tmp_path, fault, env, code):
    """Each fault is printed as its code, path and value, and serve exits 2."""
    closed = free_port()  # bound and released: nothing listens there
    env = {"PAYGATE_DATA_DIR": str(tmp_path / "data"),
           **{k: v.format(port=closed) for k, v in env.items()}}

    run = _serve(env)

    assert run.returncode == 2, (fault, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    error = json.loads(run.stdout.strip().splitlines()[-1])["errors"][0]
    assert error["code"] == code
