"""The crash test's processes start as a benchmark's do (gateway.fleet.Proc): one that
exits before it listens is seen at once, refused with its log's last line, instead of
the test waiting out a fixed time for a port nothing will open."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import PaygateError, Problem
from gateway.fleet import setting_variables
from tests.crash_support import System


def refused_at_once(start: Callable[[], object]) -> Problem:
    """The `process_start_failed` a start whose process exits raises, well before any
    wait for a port runs out."""
    began = time.monotonic()
    with pytest.raises(PaygateError) as refused:
        start()
    assert time.monotonic() - began < 10
    problem = refused.value.problems[0]
    assert problem.code == "process_start_failed"
    return problem


def test_a_process_that_exits_is_refused_at_once_with_its_log_s_last_line(
        tmp_path: Path) -> None:
    system = System(tmp_path)
    system.build(clearing_fen=100, peer_fen=100)
    npc = system.procs["npc"]
    npc.args = [sys.executable, "-c", ("import sys, time; time.sleep(0.5); "
                                       "print('refused: no such bank', file=sys.stderr); "
                                       "sys.exit(3)")]

    problem = refused_at_once(npc.start)

    assert "exited with status 3" in problem.message
    assert problem.message.endswith("refused: no such bank")
    assert not npc.up


def test_the_gateway_does_not_see_the_variables_its_file_gives(tmp_path: Path) -> None:
    """A PAYGATE_ variable of this environment would win over the gateway's file and point
    it at another database or port than the test's."""
    system = System(tmp_path)
    system.build(clearing_fen=100, peer_fen=100)

    hidden = system.procs["gateway"].hidden

    assert hidden == setting_variables({name: None for name in (
        "data_dir", "database_url", "port", "npc_url", "redis_url", "keys_dir", "clock")})
