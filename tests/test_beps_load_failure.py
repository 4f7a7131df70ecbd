"""The BEPS load generator (gateway.bench_load) that cannot go on ends with exit status
2 and the error shape as the last line of its standard error, `load_generator_failed`
naming what it posted to and what it got: a batch refused other than 503, or a gateway
it cannot reach (then after the traceback, for its log). The bench reads that line
back as its own refusal (bench_e2e.load_failed), or names the log when there is none."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway import bench_e2e
from gateway.redisproc import free_port
from ledger.testing import customer_account


class _Refusing(BaseHTTPRequestHandler):
    """A gateway that answers every batch 500 with the error shape."""

    def do_POST(self) -> None:  # the name http.server calls
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"errors": [{"code": "internal_error"}]}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def refusing() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_load(tmp_path: Path, url: str) -> tuple[int, list[str], Path]:
    """The generator's process on a spec posting to `url`: its status, its standard
    error's lines, and that standard error kept as a log (as the bench keeps it)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "urls": [url], "duration_s": 5, "clients": 1, "batch_items": 2,
        "out": str(tmp_path / "out.json"), "payers": [customer_account(1, "corporate")]}))
    done = subprocess.run([sys.executable, "-m", "gateway.bench_load", str(spec)],
                          check=False, capture_output=True, text=True, timeout=60)
    log = tmp_path / "beps-load.log"
    log.write_text(done.stderr)
    return done.returncode, done.stderr.strip().splitlines(), log


def test_a_batch_refused_ends_with_the_error_shape(tmp_path: Path, refusing: str) -> None:
    status, lines, log = run_load(tmp_path, refusing)

    assert status == 2
    assert len(lines) == 1, lines  # no traceback: the refusal says it all
    (error,) = json.loads(lines[-1])["errors"]
    assert (error["code"], error["path"], error["value"]) == (
        "load_generator_failed", f"{refusing}/v1/transfers/batch", 500)
    assert "batch 0 was answered HTTP 500" in error["message"]
    assert "internal_error" in error["message"]

    refused = bench_e2e.load_failed(status, log)
    assert refused.to_dict()["errors"] == [error]


def test_a_gateway_not_reached_ends_with_the_error_shape_after_the_traceback(
        tmp_path: Path) -> None:
    status, lines, log = run_load(tmp_path, f"http://127.0.0.1:{free_port()}")

    assert status == 2
    assert lines[0].startswith("Traceback")
    (error,) = json.loads(lines[-1])["errors"]
    assert (error["code"], error["value"]) == ("load_generator_failed",
                                               "ClientConnectorError")
    assert error["message"].startswith("the BEPS load generator stopped: "
                                       "ClientConnectorError")
    assert bench_e2e.load_failed(status, log).to_dict()["errors"] == [error]


def test_a_generator_that_wrote_no_error_is_named_by_its_log(tmp_path: Path) -> None:
    """Killed, or dead before it could write: the bench's own refusal, naming the log
    and its last line."""
    log = tmp_path / "beps-load.log"
    log.write_text("Fatal Python error: Segmentation fault\n")

    (error,) = bench_e2e.load_failed(-9, log).to_dict()["errors"]

    assert (error["code"], error["path"], error["value"]) == (
        "load_generator_failed", str(log), -9)
    assert error["message"] == (f"the BEPS load generator exited with status -9; its log "
                                f"{log} ends with: Fatal Python error: Segmentation fault")
