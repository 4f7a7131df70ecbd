"""The embedded redis-server's start waits as a command's own processes do
(gateway.fleet): one that exits before it listens is seen at once, the refusal naming
its log's last line (what it said on its outputs included), and none is left running;
a gateway whose embedded Redis so fails refuses to start with that line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import redisproc
from gateway.app import Gateway
from gateway.errors import PaygateError
from gateway.redisproc import EmbeddedRedis
from tests.test_clock_at_start import settings_for
from tests.test_crash_support import refused_at_once

SAID = "FATAL CONFIG FILE ERROR: no such directive"


@pytest.fixture
def failing_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A redis-server that says why it cannot start on its error output, and exits 1
    after a moment (a real one reads its configuration first)."""
    binary = tmp_path / "redis-server"
    binary.write_text(f"#!/bin/sh\nsleep 0.3\necho '{SAID}' >&2\nexit 1\n")
    binary.chmod(0o755)
    monkeypatch.setattr(redisproc, "redis_binary", lambda: str(binary))
    return binary


def test_a_redis_server_that_exits_is_refused_at_once_with_its_last_line(
        tmp_path: Path, failing_redis: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")

    problem = refused_at_once(redis.start)

    assert problem.path == str(tmp_path / "redis" / "redis.log")
    assert "exited with status 1" in problem.message
    assert problem.message.endswith(SAID)
    assert redis.process is None


def test_the_wait_is_a_command_s_for_its_own_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine busy with other work can take over 10 s to start a process: the wait
    is the one a benchmark gives its Redis (CHILD_START_WAIT_S, made short here), and a
    server still running but not listening by then is stopped."""
    binary = tmp_path / "redis-server"
    binary.write_text("#!/bin/sh\nexec sleep 60\n")
    binary.chmod(0o755)
    monkeypatch.setattr(redisproc, "redis_binary", lambda: str(binary))
    monkeypatch.setattr(redisproc, "CHILD_START_WAIT_S", 1.5)
    redis = EmbeddedRedis(tmp_path / "redis")

    with pytest.raises(PaygateError) as refused:
        redis.start()

    assert "did not listen on 127.0.0.1:" in refused.value.problems[0].message
    assert "within 1.5 s" in refused.value.problems[0].message
    assert redis.process is None


def test_a_gateway_whose_embedded_redis_exits_refuses_to_start_with_its_line(
        tmp_path: Path, failing_redis: Path) -> None:
    async def attempt() -> PaygateError:
        gw = Gateway(settings_for(tmp_path / "data"))
        with pytest.raises(PaygateError) as refused:
            await gw.start(serve_http=False)
        return refused.value

    refused = asyncio.run(attempt())

    problem = refused.problems[0]
    assert (problem.code, problem.path, refused.status) == (
        "redis_start_failed", "redis_url", 503)
    assert problem.message.startswith("the embedded Redis did not start: the embedded "
                                      "redis-server exited with status 1")
    assert problem.message.endswith(SAID)
