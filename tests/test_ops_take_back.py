"""An operator takes back a payment the NPC never received (docs/exceptions.md, "A
payment the NPC never took"): a `sent` payment is held out of sending, and then
cancelled, only while every delivery attempt of its message provably left the NPC
without it; otherwise the request is refused, saying why and what to do instead. A
status query about a payment whose message is not taken is refused too."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import keys, outbound
from gateway.ops import actions
from gateway.ops.testing import serving
from tests.test_ops_exception_actions import Rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-take-back")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def on_its_way(rig: Rig, payment_state: str, outbox_state: str, attempts: int,
               untaken: int) -> str:
    """A new payment as the sender leaves it: `payment_state`, its outbox row in
    `outbox_state` after `attempts` delivery attempts, `untaken` of them provably not
    taken by the NPC."""
    pid = rig.outgoing()
    rig.loop.run(rig.rig.gw.store.run(lambda tx: (
        tx.execute("UPDATE payments SET state = ? WHERE id = ?", (payment_state, pid)),
        tx.execute("UPDATE outbox SET state = ?, attempts = ?, untaken = ? "
                   "WHERE payment_id = ?", (outbox_state, attempts, untaken, pid)))))
    return pid


def state_of(rig: Rig, pid: str) -> tuple[str, str]:
    return rig.loop.run(rig.rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT p.state, o.state FROM payments p JOIN outbox o ON o.payment_id = p.id "
        "WHERE p.id = ?", (pid,))))


def available(rig: Rig) -> int:
    gw = rig.rig.gw
    return rig.loop.run(gw.store.run(lambda tx: gw.ledger.customer_balance(
        tx, rig.rig.payer_account, gw.work_date))).available_fen


# The outbox row of a `sent` payment, and what an operator's hold of it gives.
HOLDS = [
    ("pending", 3, 3, 201, None),
    ("pending", 1, 1, 201, None),
    ("pending", 3, 2, 409, "payment_maybe_taken_by_npc"),
    ("sending", 2, 1, 409, "payment_delivery_under_way"),
    ("sending", 1, 0, 409, "payment_delivery_under_way"),
    ("sent", 1, 0, 409, "payment_not_unsent"),
    ("acked", 2, 1, 409, "payment_not_unsent"),
]


@pytest.mark.parametrize("outbox, attempts, untaken, status, code", HOLDS)
def test_a_sent_payment_is_held_only_while_the_npc_provably_never_took_it(
        rig: Rig, outbox: str, attempts: int, untaken: int, status: int,
        code: str | None) -> None:
    """Held (no second person: holding moves no money) when every attempt was provably
    not taken; refused with the reason otherwise, nothing changed."""
    pid = on_its_way(rig, "sent", outbox, attempts, untaken)
    got, answer = rig.request("op1", "hold", pid)

    assert got == status
    if code is None:
        assert answer["state"] == "executed"
        assert answer["outcome"]["taken_back_from_sending"] is True
        assert state_of(rig, pid) == ("held", "held")
    else:
        assert answer["errors"][0]["code"] == code
        assert pid in answer["errors"][0]["message"]
        assert state_of(rig, pid) == ("sent", outbox)


def test_a_refusal_says_what_may_still_reach_the_npc_and_what_to_do(rig: Rig) -> None:
    """The operator reads how many attempts may have reached the NPC and the way on."""
    pid = on_its_way(rig, "sent", "pending", 4, 3)
    _, answer = rig.request("op1", "hold", pid)
    problem = answer["errors"][0]

    assert problem["value"] == 1
    assert ("4 delivery attempts: 4 failed, of which 3 provably never reached the NPC"
            in problem["message"])
    assert "timeout" in problem["message"] and "status-query" in problem["message"]


def test_a_payment_held_out_of_sending_is_cancelled_with_a_second_persons_approval(
        rig: Rig) -> None:
    """Hold, then cancel: the cancel waits for a supervisor, then releases the hold; the
    outbox row is closed so the sender never sends it."""
    pid = on_its_way(rig, "sent", "pending", 2, 2)
    before = available(rig)
    rig.request("op1", "hold", pid)
    asked, req = rig.request("op1", "cancel", pid)
    waiting = state_of(rig, pid)
    approved, done = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1",
                              {"note": ""})

    assert asked == 201 and req["state"] == "pending" and waiting == ("held", "held")
    assert approved == 200 and done["state"] == "executed"
    assert state_of(rig, pid) == ("cancelled", "done")
    assert available(rig) == before + 1_234_56


@pytest.mark.parametrize("attempts, untaken, status", [(2, 2, 201), (2, 1, 409)])
def test_a_dead_lettered_payment_is_cancelled_only_when_nothing_reached_the_npc(
        rig: Rig, attempts: int, untaken: int, status: int) -> None:
    """A payment held after its message died: refused by the NPC (4xx) every time, it is
    cancelled as before; after an attempt that may have reached the NPC it is not."""
    pid = on_its_way(rig, "held", "dead", attempts, untaken)
    got, answer = rig.request("op1", "cancel", pid)

    assert got == status
    if status == 409:
        assert answer["errors"][0]["code"] == "payment_maybe_taken_by_npc"


@pytest.mark.parametrize("attempts, untaken, status", [(2, 2, 201), (2, 1, 409)])
def test_an_accepted_payment_whose_letter_was_retried_is_held_only_when_never_taken(
        rig: Rig, attempts: int, untaken: int, status: int) -> None:
    """A payment accepted again by the retry of its dead letter, its row pending on the
    lane: held as any payment not yet sent while every attempt provably left the NPC
    without its message; after an attempt that may have reached the NPC (a timeout) the
    hold is refused as the cancel is: it could not stop the money, and the only way out of
    such a hold would be its release."""
    pid = on_its_way(rig, "accepted", "pending", attempts, untaken)
    got, answer = rig.request("op1", "hold", pid)

    assert got == status
    if status == 201:
        assert answer["state"] == "executed"
        assert state_of(rig, pid) == ("held", "held")
    else:
        problem = answer["errors"][0]
        assert problem["code"] == "payment_maybe_taken_by_npc"
        assert problem["value"] == 1 and pid in problem["message"]
        assert state_of(rig, pid) == ("accepted", "pending")
        assert rig.requests_on(pid) == []
        _, detail = rig.call("GET", f"/ops/api/payments/{pid}")
        assert "hold" not in detail["actions"] and "cancel" not in detail["actions"]


def test_status_queries_wait_until_the_npc_took_the_message(rig: Rig) -> None:
    """An operator's status query about a payment whose message is not taken is refused
    when asked; once the NPC took it the query is made."""
    waiting = on_its_way(rig, "sent", "pending", 1, 1)
    taken = on_its_way(rig, "sent", "acked", 1, 0)
    refused, answer = rig.request("op1", "status_query", waiting)
    asked, done = rig.request("op1", "status_query", taken)

    assert (refused, answer["errors"][0]["code"]) == (409, "payment_not_yet_taken_by_npc")
    assert rig.requests_on(waiting) == []
    assert asked == 201 and done["state"] == "executed"


def test_the_detail_view_offers_a_hold_of_a_payment_the_npc_never_took(rig: Rig) -> None:
    """Offered what a request would be allowed: a hold for the one never taken, the
    status query for the one taken, neither for the one that may have reached the NPC."""
    def offered(pid: str) -> list[str]:
        _, detail = rig.call("GET", f"/ops/api/payments/{pid}")
        return detail["actions"]

    assert offered(on_its_way(rig, "sent", "pending", 2, 2)) == ["hold"]
    assert offered(on_its_way(rig, "sent", "acked", 1, 0)) == ["status_query"]
    assert offered(on_its_way(rig, "sent", "pending", 2, 1)) == []



# A hold whose sender claims the payment's outbox row between the hold's read of the row
# and its change of it: the payment as it stands, and what the hold gives.
CLAIMED_MEANWHILE = [
    ("accepted", 0, 0, "payment_already_on_the_wire"),
    ("sent", 2, 2, "payment_delivery_under_way"),
]


@pytest.mark.parametrize("payment_state, attempts, untaken, code", CLAIMED_MEANWHILE)
def test_a_hold_refuses_a_row_a_sender_claimed_after_it_was_read(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, payment_state: str, attempts: int,
        untaken: int, code: str) -> None:
    """The sender claims the row (pending → sending, an attempt counted) once the hold
    has found the payment holdable: the hold is refused, saying the message is on its
    way, and neither the payment nor its row is held."""
    pid = on_its_way(rig, payment_state, "pending", attempts, untaken)
    claims: list[bool] = []
    read = actions._holdable

    def read_then_claim(tx: Any, target: str, params: dict[str, Any]) -> Any:
        found = read(tx, target, params)
        if not claims:
            claims.append(outbound.take(tx, found[1][0], rig.rig.gw.clock.now()))
        return found
    monkeypatch.setattr(actions, "_holdable", read_then_claim)
    got, answer = rig.request("op1", "hold", pid)
    request = rig.loop.run(rig.rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT state, outcome FROM ops_requests WHERE id = ?", (answer["id"],))))
    payment, row = state_of(rig, pid)

    assert claims == [True]
    assert got == 201 and answer["state"] == request[0] == "failed"
    assert [e["code"] for e in answer["outcome"]["errors"]] == [code]
    assert pid in answer["outcome"]["errors"][0]["message"]
    assert payment == payment_state and row != "held"


def dead_letter_of(rig: Rig, pid: str) -> str:
    """The dead letter of the payment's message, as the sender writes it when the NPC
    refuses the message (400): its outbox row's fields, where it came from, why."""
    gw = rig.rig.gw
    outbox = rig.loop.run(gw.store.run(lambda tx: tx.query_one(
        "SELECT id FROM outbox WHERE payment_id = ?", (pid,))))[0]
    return rig.loop.run(gw.redis.xadd(keys.DEAD, {
        "outbox": str(outbox), "stream": keys.lane_for_priority(3), "entry": "1-1",
        "reason": "npc refused the message: 400", "deliveries": "1", "payment": pid}))


def test_a_retry_of_a_payments_letter_is_refused_while_a_cancel_of_it_waits(
        rig: Rig) -> None:
    """The payment refused at the link, its letter dead: an operator's cancel waits for
    a supervisor; a retry of the letter (which needs nobody) would send the money the
    cancel is to stop, so it is refused, naming the cancel; once the cancel is
    withdrawn the retry runs."""
    pid = on_its_way(rig, "held", "dead", 1, 1)
    letter = dead_letter_of(rig, pid)
    asked, cancel = rig.request("op1", "cancel", pid)
    refused, answer = rig.request("op1", "retry", letter)
    withdrawn, _ = rig.call("POST", f"/ops/api/requests/{cancel['id']}/reject", "op1",
                            {"note": "sending it after all"})
    retried, done = rig.request("op1", "retry", letter)

    assert asked == 201 and cancel["state"] == "pending"
    assert refused == 409
    problem = answer["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "request_contradicts_pending", "/target", letter)
    assert f"request {cancel['id']} (cancel) on payment {pid}" in problem["message"]
    assert rig.requests_on(letter) == [("retry", "executed")]
    assert withdrawn == 200 and retried == 201 and done["state"] == "executed"
    assert done["outcome"]["payment"] == pid


def test_a_payments_detail_lists_the_retries_of_its_dead_letters(rig: Rig) -> None:
    """A retry names the letter, not the payment: the payment's detail lists it beside
    the requests on the payment itself, newest first."""
    pid = on_its_way(rig, "held", "dead", 1, 1)
    letter = dead_letter_of(rig, pid)
    _, retried = rig.request("op1", "retry", letter)
    _, hold = rig.request("op1", "hold", pid)
    _, detail = rig.call("GET", f"/ops/api/payments/{pid}")

    assert retried["state"] == "executed"
    assert [(r["id"], r["action"], r["target"]) for r in detail["requests"]] == [
        (hold["id"], "hold", pid), (retried["id"], "retry", letter)]
