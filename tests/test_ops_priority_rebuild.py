"""An operator's new priority for a payment whose message was built already (taken back
from sending, its dead letter retried): the message is built again with the new
priority under the same ids while the NPC provably never had it, and the change is
refused, nothing changed, when a delivery attempt may have given the NPC the message."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import outbound, payments
from gateway.messages import codec
from gateway.ops.testing import serving
from tests.test_ops_exception_actions import Rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-priority")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def built(rig: Rig, payment_state: str, outbox_state: str, attempts: int,
          untaken: int) -> str:
    """A new payment whose hvps.111 the sender built (priority 2, urgent), left as the
    sender leaves it: `payment_state`, its outbox row `outbox_state` after `attempts`
    delivery attempts, `untaken` of them provably not taken by the NPC."""
    pid = rig.outgoing()
    gw = rig.rig.gw

    def build(tx: Any) -> None:
        outbox_id = outbound.delivery(tx, pid).outbox_id
        outbound._build_credit(tx, outbox_id, payments.get(tx, pid), gw.keyring,
                               gw.clock.now())
        tx.execute("UPDATE payments SET state = ? WHERE id = ?", (payment_state, pid))
        tx.execute("UPDATE outbox SET state = ?, attempts = ?, untaken = ? WHERE id = ?",
                   (outbox_state, attempts, untaken, outbox_id))
    rig.loop.run(gw.store.run(build))
    return pid


def message_of(rig: Rig, pid: str) -> tuple[str, bytes, int]:
    """(MesgID, archived bytes, archive rows) of the payment's message."""
    def read(tx: Any) -> tuple[str, bytes, int]:
        rows = tx.query("SELECT a.mesg_id, a.envelope FROM archive a JOIN outbox o ON "
                        "o.mesg_id = a.mesg_id WHERE o.payment_id = ? AND a.direction = 'out'",
                        (pid,))
        return rows[0][0], rows[0][1], len(rows)
    return rig.loop.run(rig.rig.gw.store.run(read))


def ask_priority(rig: Rig, pid: str, priority: int) -> tuple[int, Any]:
    asked, request = rig.call("POST", "/ops/api/requests", "op1",
                              {"action": "priority", "target": pid,
                               "params": {"priority": priority}, "note": ""})
    if asked != 201:
        return asked, request
    return rig.call("POST", f"/ops/api/requests/{request['id']}/approve", "sup1",
                    {"note": ""})


def test_a_message_the_npc_never_had_is_built_again_with_the_new_priority(rig: Rig) -> None:
    """Taken back from sending after two 503s, then priority 1: the archived message is
    extra urgent in its body (URGT) and header (1), under the same MesgID and MsgId,
    signed again so that the NPC's check of our signature passes; nothing else of it
    changed, and the archive holds one message for the payment."""
    pid = built(rig, "sent", "pending", 2, 2)
    mesg_id, before, _ = message_of(rig, pid)
    held, _ = rig.request("op1", "hold", pid)
    approved, done = ask_priority(rig, pid, 1)
    after_id, after, rows = message_of(rig, pid)
    old, new = codec.decode(before), codec.decode(after, rig.rig.gw.keyring)

    assert held == 201 and approved == 200 and done["state"] == "executed"
    assert done["outcome"]["message_rebuilt"] == mesg_id == after_id and rows == 1
    assert (old.header.priority, old.obj.priority) == ("2", "HIGH")
    assert (new.header.priority, new.obj.priority) == ("1", "URGT")
    assert new.signature == "verified" and not new.problems
    assert new.obj.msg_id == old.obj.msg_id and new.obj.created_at == old.obj.created_at
    assert new.header.send_time == old.header.send_time
    assert after.replace(b"<SttlmPrty>URGT<", b"<SttlmPrty>HIGH<").split(b"}", 2)[2] \
        .split(b"<ds:Signature")[0] == before.split(b"}", 2)[2].split(b"<ds:Signature")[0]


@pytest.mark.parametrize("payment_state, outbox_state, attempts, untaken", [
    ("accepted", "pending", 3, 2),   # its dead letter retried after a timeout
    ("held", "held", 1, 0),          # held after an attempt that may have reached the NPC
])
def test_a_new_priority_is_refused_when_the_npc_may_have_the_message(
        rig: Rig, payment_state: str, outbox_state: str, attempts: int, untaken: int) -> None:
    """Refused when asked, saying what the NPC may hold and what to do; the payment and
    its message as they were, and the page offers no new priority."""
    pid = built(rig, payment_state, outbox_state, attempts, untaken)
    _, before, _ = message_of(rig, pid)
    asked, answer = ask_priority(rig, pid, 1)
    _, detail = rig.call("GET", f"/ops/api/payments/{pid}")
    problem = answer["errors"][0]

    assert asked == 409 and problem["code"] == "payment_maybe_taken_by_npc"
    assert problem["value"] == attempts - untaken and pid in problem["message"]
    assert "priority 2" in problem["message"] and "npc-cancel" in problem["message"]
    assert message_of(rig, pid)[1] == before
    assert detail["priority"] == 2 and "priority" not in detail["actions"]


def test_a_payment_whose_message_is_not_built_yet_changes_lane_only(rig: Rig) -> None:
    """Waiting for the window, nothing built: the sender builds its message from the
    payment when it first claims it, so nothing is rebuilt."""
    pid = rig.outgoing()
    approved, done = ask_priority(rig, pid, 3)

    assert approved == 200 and done["state"] == "executed"
    assert done["outcome"]["message_rebuilt"] is None
    assert done["outcome"]["lane"].endswith("3")
