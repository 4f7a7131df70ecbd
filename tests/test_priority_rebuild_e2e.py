"""A new priority for a payment whose hvps.111 was built but never taken by the NPC,
end to end against the simulated NPC in its own process: what settles at the NPC is
the message with the new priority (SttlmPrty and header priority), the same bytes the
archive holds, under the message ids the payment had; the old bytes never go out."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from gateway.errors import PaygateError
from gateway.messages import codec
from tests.e2e_support import started, wait_state
from tests.test_npc_not_taken_e2e import sent_while_offline

pytestmark = pytest.mark.e2e


def npc_payments(h: Any) -> list[tuple[str, str, int, bytes]]:
    """(MsgId, header MesgID, priority rank, bytes) of every HVPS credit the NPC took."""
    conn = sqlite3.connect(h.data_dir / "npc" / "npc.sqlite3")
    try:
        return conn.execute("SELECT msg_id, mesg_id, priority_rank, raw FROM payments "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()


async def archived(h: Any, payment_id: str) -> list[tuple[str, bytes]]:
    return await h.gateway.store.run(lambda tx: tx.query(
        "SELECT mesg_id, envelope FROM archive WHERE payment_id = ? AND direction = 'out' "
        "ORDER BY id", (payment_id,)))


async def hold_between_attempts(ops: Any, operator: Any, pid: str) -> None:
    """Hold the payment as an operator does while its sender retries the NPC: a hold asked
    while an attempt is on its way is refused (payment_delivery_under_way) and asked
    again once that attempt has failed."""
    for _ in range(100):
        try:
            await ops.console.request(operator, "hold", pid)
            return
        except PaygateError as exc:
            if exc.code != "payment_delivery_under_way":
                raise
            await asyncio.sleep(0.05)
    raise AssertionError(f"{pid} was always being sent")


def test_a_new_priority_after_a_payment_was_taken_back_is_what_settles(tmp_path):
    """The user's steps: the NPC offline, an urgent transfer `sent` with its hvps.111
    built and refused with 503; an operator holds it, asks for priority 1 and for its
    release, a supervisor approving each; the NPC back. The NPC settles one message,
    extra urgent (URGT, header priority 1), under the MsgId and MesgID first built, and
    the archive holds exactly those bytes."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            ops, _, pid = await sent_while_offline(h, 35, "prio-1")
            op1, sup1 = ops.directory.get("op1"), ops.directory.get("sup1")
            before = await archived(h, pid)

            await hold_between_attempts(ops, op1, pid)
            asked = await ops.console.request(op1, "priority", pid, {"priority": 1})
            changed = await ops.console.decide(sup1, asked["id"], True)
            asked = await ops.console.request(op1, "release", pid)
            released = await ops.console.decide(sup1, asked["id"], True)
            await h.sim("POST", "/sim/faults", {"offline": False})
            await wait_state(h, pid, "settled", 30.0)
            return (before, changed, released, await gw.get_transfer(pid),
                    await archived(h, pid), npc_payments(h))

    before, changed, released, view, after, at_npc = asyncio.run(scenario())

    assert changed["state"] == "executed" and released["state"] == "executed"
    assert changed["outcome"]["message_rebuilt"] == before[0][0]
    assert view["urgency"] == "extra_urgent"
    assert len(before) == 1 and b"<SttlmPrty>HIGH</SttlmPrty>" in before[0][1]
    assert len(after) == 1 and after[0][0] == before[0][0]
    [(msg_id, mesg_id, rank, raw)] = at_npc
    assert (msg_id, mesg_id) == (view["message"]["msg_id"], before[0][0])
    assert raw == after[0][1]
    decoded = codec.reread(raw)
    assert decoded.header.priority == "1" and decoded.obj.priority == "URGT"
    assert b"<SttlmPrty>HIGH</SttlmPrty>" not in raw
    assert rank == 0  # URGT, the first in the NPC's queue order
