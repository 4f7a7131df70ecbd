"""Payments held for the HVPS window leave it whenever the gateway finds HVPS open: at
start, on each change of its view, on the sweeper's pass; operators may send one while
HVPS is open, and `ops stuck` lists one left waiting in the window."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway import recovery
from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import Settings
from gateway.errors import PaygateError
from gateway.ops import views
from gateway.ops.testing import START, OpsRig

pytestmark = pytest.mark.e2e


def _outbox_state(gw: Gateway, payment_id: str) -> "asyncio.Future":
    return gw.store.run(lambda tx: tx.query_one(
        "SELECT p.state, p.reason, o.state FROM payments p JOIN outbox o "
        "ON o.payment_id = p.id WHERE p.id = ?", (payment_id,)))


def test_a_restart_in_the_window_releases_what_waits_for_it(tmp_path):
    """Held before the opening, the gateway killed, started again at 09:00 (HVPS open by
    its timetable, no notice needed): the payment leaves `waiting`."""
    async def scenario() -> tuple[tuple, tuple, str]:
        rig = await OpsRig(tmp_path).start()
        try:
            pid = (await rig.submit("restart-1", amount="60000.00"))["id"]
            before = await _outbox_state(rig.gw, pid)
        finally:
            await rig.stop()
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0, npc_url=rig.gw.settings.npc_url),
                     clock=ManualClock(START + timedelta(hours=2)))
        await gw.start(serve_http=False)
        try:
            return before, await _outbox_state(gw, pid), gw.hvps_status
        finally:
            await gw.stop()
    before, after, status = asyncio.run(scenario())

    assert before == ("held", "waiting_for_hvps_window", "waiting")
    assert status == "10"
    assert after[2] != "waiting"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory):
    from gateway.ops.testing import LoopThread
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("window-waiting")).start())
    yield loop, ops_rig
    loop.run(ops_rig.stop())
    loop.close()


def _waiting_in_open_window(loop, ops_rig, key: str) -> str:
    """A payment held for the window, then HVPS open without its release (as after a
    refused notice or a start before the fix)."""
    ops_rig.gw.hvps_status = "00"
    pid = loop.run(ops_rig.submit(key))["id"]
    ops_rig.gw.hvps_status = "10"
    return pid


def test_the_sweeper_releases_what_waits_while_hvps_is_open(rig):
    loop, ops_rig = rig
    try:
        pid = _waiting_in_open_window(loop, ops_rig, "sweep-1")
        loop.run(recovery.sweep(ops_rig.gw))
        state = loop.run(_outbox_state(ops_rig.gw, pid))
    finally:
        ops_rig.gw.hvps_status = "00"

    assert state[2] == "pending"


def test_stuck_lists_a_payment_waiting_while_hvps_is_open(rig):
    loop, ops_rig = rig
    try:
        pid = _waiting_in_open_window(loop, ops_rig, "stuck-1")
        later = ops_rig.clock.now() + timedelta(minutes=30)
        open_ids = [p["id"] for p in loop.run(ops_rig.gw.store.run(
            lambda tx: views.stuck(tx, later, 10, hvps_open=True)))]
        closed_ids = [p["id"] for p in loop.run(ops_rig.gw.store.run(
            lambda tx: views.stuck(tx, later, 10, hvps_open=False)))]
    finally:
        ops_rig.gw.hvps_status = "00"

    assert pid in open_ids and pid not in closed_ids


def test_operators_release_a_waiting_payment_only_while_hvps_is_open(rig):
    loop, ops_rig = rig
    console, ops = ops_rig.ops.console, ops_rig.ops.directory
    pid = loop.run(ops_rig.submit("release-closed"))["id"]
    with pytest.raises(PaygateError) as refused:
        loop.run(console.request(ops.get("op1"), "release", pid, {}))
    try:
        pid_open = _waiting_in_open_window(loop, ops_rig, "release-open")
        req = loop.run(console.request(ops.get("op1"), "release", pid_open, {}))
        loop.run(console.decide(ops.get("sup1"), req["id"], True))
        state = loop.run(_outbox_state(ops_rig.gw, pid_open))
    finally:
        ops_rig.gw.hvps_status = "00"

    assert [p.code for p in refused.value.problems] == ["hvps_closed"]
    assert state == ("accepted", None, "pending")




def test_a_release_of_a_payment_on_its_lane_is_refused_as_not_held(rig):
    loop, ops_rig = rig
    console, ops = ops_rig.ops.console, ops_rig.ops.directory
    try:
        ops_rig.gw.hvps_status = "10"
        pid = loop.run(ops_rig.submit("release-pending"))["id"]
        with pytest.raises(PaygateError) as refused:
            loop.run(console.request(ops.get("op1"), "release", pid, {}))
    finally:
        ops_rig.gw.hvps_status = "00"

    assert [p.code for p in refused.value.problems] == ["payment_not_held"]


def test_stuck_leaves_out_a_payment_the_opening_just_put_on_its_lane(tmp_path):
    """Held overnight, released onto its lane by the opening a moment ago: it is no
    longer waiting for the window, and not stuck."""
    from gateway.ops.testing import LoopThread
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path).start())
    try:
        pid = loop.run(ops_rig.submit("opening-1"))["id"]
        ops_rig.clock.advance(2 * 3600)
        ops_rig.gw.hvps_status = "10"
        loop.run(ops_rig.gw.release_waiting())
        now = ops_rig.clock.now()
        state = loop.run(_outbox_state(ops_rig.gw, pid))
        listed = [p["id"] for p in loop.run(ops_rig.gw.store.run(
            lambda tx: views.stuck(tx, now, 10, hvps_open=True)))]
    finally:
        ops_rig.gw.hvps_status = "00"
        loop.run(ops_rig.stop())
        loop.close()

    assert state == ("held", "waiting_for_hvps_window", "pending")
    assert pid not in listed
