"""HVPS closing while payments wait on their priority lanes (docs/operations.md, "When
HVPS closes"): from the moment a gateway process knows HVPS is closed it sends nothing
more from the lanes, and each payment left there follows its `when_closed` as one
arriving now (gateway.status_hold.follow_closed_window), except one a delivery attempt
may have given the NPC, which waits and is never rejected."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

from gateway import keys, payments, status_hold
from gateway.clock import SHANGHAI
from gateway.ops.testing import OpsRig

OPEN = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)  # Monday, HVPS open by the timetable
CLOSED = datetime(2026, 12, 7, 17, 5, tzinfo=SHANGHAI)  # the clearing window (30)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def opened(tmp_path: Any, **settings: Any) -> OpsRig:
    """A gateway on a manual clock whose senders are stopped (payments stay on their
    lanes), HVPS open by its timetable; `settings` over the rig's (`database_url`, say)."""
    rig = await OpsRig(tmp_path, settings).start()
    rig.clock.set(OPEN)
    await rig.gw.window_tick()
    assert rig.gw.hvps_open
    return rig


async def seen(rig: OpsRig, payment_id: str) -> tuple[Any, ...]:
    """The payment's state and reason, its outbox row's state and attempts."""
    return tuple(await rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT p.state, p.reason, o.state, o.attempts FROM payments p JOIN outbox o ON "
        "o.payment_id = p.id WHERE p.id = ?", (payment_id,))))


async def until_row_left_pending(rig: OpsRig, payment_id: str, timeout_s: float = 10.0
                                 ) -> None:
    """The work started by a change of the window is spawned: wait for its end."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await seen(rig, payment_id))[2] != "pending":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"payment {payment_id} still pending on its lane")


async def attempted(rig: OpsRig, payment_id: str, attempts: int, untaken: int) -> None:
    """As after delivery attempts given back: the payment `sent`, its row pending again
    with `attempts`, of which `untaken` provably left the NPC without the message."""
    def work(tx: Any) -> None:
        payment = payments.get(tx, payment_id)
        payments.transition(tx, payment, "sent", "hvps_sent", rig.clock.now())
        tx.execute("UPDATE outbox SET attempts = ?, untaken = ? WHERE payment_id = ?",
                   (attempts, untaken, payment_id))
    await rig.gw.store.run(work)


async def released(rig: OpsRig, payment_id: str) -> Any:
    return await rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT e.state FROM payments p LEFT JOIN ledger_hold_end e ON "
        "e.hold_id = CAST(p.hold_id AS BIGINT) WHERE p.id = ?", (payment_id,))[0])


def test_the_timetable_closing_hvps_sends_the_lane_payments_by_their_when_closed(tmp_path):
    """17:00 by the timetable: a payment asking to queue waits for the next opening; one
    asking to be refused is rejected `hvps_closed`, its money released and the core
    told; one whose attempts all provably left the NPC without it is refused too; one
    an attempt may have given the NPC stays `sent`, its row waiting, never rejected."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        try:
            ids = {name: (await rig.submit(f"close-{name}", **extra))["id"]
                   for name, extra in (("queue", {}), ("refuse", {"when_closed": "refuse"}),
                                       ("untaken", {"when_closed": "refuse"}),
                                       ("maybe", {"when_closed": "refuse"}))}
            before = {name: await seen(rig, pid) for name, pid in ids.items()}
            await attempted(rig, ids["untaken"], 2, 2)
            await attempted(rig, ids["maybe"], 2, 1)
            rig.clock.set(CLOSED)
            await rig.gw.window_tick()
            for pid in ids.values():
                await until_row_left_pending(rig, pid)
            return {"before": before, "status": rig.gw.hvps_status,
                    "after": {name: await seen(rig, pid) for name, pid in ids.items()},
                    "released": {name: await released(rig, pid) for name, pid in ids.items()},
                    "events": await rig.gw.store.run(lambda tx: [e for (e,) in tx.query(
                        "SELECT event FROM payment_events WHERE payment_id = ? ORDER BY id",
                        (ids["refuse"],))])}
        finally:
            await rig.stop()
    got = run(scenario())

    assert {name: row[:3] for name, row in got["before"].items()} == {
        name: ("accepted", None, "pending") for name in got["before"]}
    assert got["status"] == "30"
    assert got["after"] == {
        "queue": ("held", "waiting_for_hvps_window", "waiting", 0),
        "refuse": ("rejected", "hvps_closed", "failed", 0),
        "untaken": ("rejected", "hvps_closed", "failed", 2),
        "maybe": ("sent", None, "waiting", 2)}
    assert got["released"] == {"queue": None, "refuse": "released", "untaken": "released",
                               "maybe": None}
    assert got["events"][-1] == status_hold.CLOSED_ON_LANE


def test_a_sender_that_knows_hvps_closed_sends_nothing_from_its_lane(tmp_path):
    """A payment accepted onto a lane before the close (by this process or another):
    the lane's sender, once its process knows HVPS is closed, claims nothing (no
    attempt is counted, nothing goes to the NPC) and the payment follows the window;
    nothing is sent straight after accepting either."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        try:
            pid = (await rig.submit("sender-closed"))["id"]
            outbox_id = await rig.gw.store.run(lambda tx: tx.query_one(
                "SELECT id FROM outbox WHERE payment_id = ?", (pid,))[0])
            rig.gw.hvps_status = "30"  # its view only: nothing has followed yet
            pending = await seen(rig, pid)
            await rig.gw._send_outbox(keys.HVPS_LANES[0], "1-0", {"outbox": str(outbox_id)})
            return {"pending": pending, "after": await seen(rig, pid),
                    "send_now": rig.gw._may_send_now()}
        finally:
            await rig.stop()
    got = run(scenario())

    assert got["pending"][:3] == ("accepted", None, "pending")
    assert got["after"] == ("held", "waiting_for_hvps_window", "waiting", 0)
    assert got["send_now"] is False


def test_a_process_told_of_a_confirmed_closed_status_rechecks_the_lanes(tmp_path):
    """Another process approved `hvps_status_confirm` with 40 and followed the lanes as
    they were; this one, still held and on 10, accepted a payment onto a lane before it
    heard. Told, it takes 40 and the payment follows the window: it waits for the next
    opening instead of going out on a later retry into a closed window."""
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        gw = rig.gw
        try:
            gw.cluster.single, gw.cluster.leading = False, False
            gw._take_hvps_hold({"since": OPEN.isoformat(), "orig": "10", "cur": "40",
                                "notice_date": OPEN.date().isoformat(),
                                "outcome": "illegal", "status": "10",
                                "work_date": OPEN.date().isoformat(), "notices": 1})
            pid = (await rig.submit("in-the-gap"))["id"]
            during = await seen(rig, pid)
            await gw._on_peer_hvps_hold({"hold": None, "confirmed": {
                "seq": 1, "status": "40", "work_date": OPEN.date().isoformat(),
                "at": (OPEN + timedelta(minutes=1)).isoformat(),
                "since": OPEN.isoformat()}})
            await until_row_left_pending(rig, pid)
            return {"during": during, "after": await seen(rig, pid),
                    "status": gw.hvps_status, "held": gw.hvps_hold}
        finally:
            gw.cluster.single, gw.cluster.leading = True, True
            await rig.stop()
    got = run(scenario())

    assert got["during"] == ("accepted", status_hold.HELD_REASON, "pending", 0)
    assert got["status"] == "40" and got["held"] is None
    assert got["after"] == ("held", "waiting_for_hvps_window", "waiting", 0)
