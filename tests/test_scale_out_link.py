"""Two gateway processes behind one bank code keep one link session with the NPC.

The leader logs in and probes (gateway.session); the NPC delivers to the bank's inbound
URLs in turn, so its answers (ccms.806, ccms.992) reach either process. Whichever takes
an answer, the leader must learn of it: a probe answered at the other process is
answered, and the session is logged in on every process. Real processes on loopback:
Redis, the simulated NPC, two `paygate serve` on one PostgreSQL schema, probing every
PROBE_INTERVAL_S.

Budget: about 15 seconds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

import ledger
from gateway.clock import SHANGHAI
from gateway.fleet import Fleet, prepare_books
from gateway.messages import ccms991
from ledger.fixtures import postgres_schema_or_skip

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

START = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)  # a Monday, HVPS open
PROBE_INTERVAL_S = 1.0
# Answers to wait for: a probe unanswered for two intervals is an alert, so several
# answered probes in a row give the leader as many chances to raise one.
ANSWERS_MIN = 6
ANSWERS_WAIT_S = 40.0
OPERATOR = aiohttp.BasicAuth("op1", "op1-demo")


def _shared(url: str) -> dict[str, Any]:
    db = ledger.connect(url)
    try:
        with db.transaction() as tx:
            return {
                "answers": tx.query_one("SELECT COUNT(*) FROM inbox WHERE mesg_type = ?",
                                        (ccms991.RESPONSE_TYPE,))[0],
                "unanswered_alerts": tx.query_one(
                    "SELECT COUNT(*) FROM alerts WHERE code = 'link_probe_unanswered'",
                    ())[0]}
    finally:
        db.close()


async def _sessions(fleet: Fleet) -> dict[str, str]:
    out = {}
    async with aiohttp.ClientSession(auth=OPERATOR) as http:
        for name in fleet.gateway_names:
            async with http.get(f"{fleet.url(name)}/ops/api/status") as r:
                assert r.status == 200, await r.text()
                out[name] = (await r.json())["link"]["session"]
    return out


def test_probe_answered_at_the_other_gateway_counts_for_the_leader(tmp_path):
    """Probes keep being answered with two gateways behind one bank code: no
    link_probe_unanswered alert, and every process shows the session logged in."""
    with postgres_schema_or_skip("scaleout_link") as url:
        fleet = Fleet(tmp_path, url, gateways=2, start=START,
                      settings={"probe_interval_s": PROBE_INTERVAL_S})
        fleet.build(clearing_fen=10**12, peer_fen=10**12)
        prepare_books(url, 1, 10**12, 10**9, "2026-12-07")
        try:
            fleet.start_all()
            deadline = time.monotonic() + ANSWERS_WAIT_S
            while _shared(url)["answers"] < ANSWERS_MIN and time.monotonic() < deadline:
                time.sleep(0.25)
            # One interval more, so that the leader's check after the last answer has run.
            time.sleep(PROBE_INTERVAL_S * 1.5)
            shared = _shared(url)
            sessions = asyncio.run(_sessions(fleet))
        finally:
            fleet.stop_all()
    leader_log = (tmp_path / "gateway0.log").read_text(encoding="utf-8", errors="replace")

    assert "leading=True" in leader_log
    assert shared["answers"] >= ANSWERS_MIN, shared
    assert shared["unanswered_alerts"] == 0, shared
    assert sessions == {name: "logged_in" for name in fleet.gateway_names}, sessions
