"""Dual control of the operators' actions, on a real gateway (embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway import keys
from gateway.errors import PaygateError
from gateway.ops import review
from gateway.ops.operators import Operator
from gateway.ops.review import OUTBOX_HELD, OUTBOX_REVIEW
from gateway.ops.testing import OPENING_FEN, LoopThread, OpsRig

_keys = itertools.count(1)


class Rig:
    """The shared gateway and shortcuts that run one coroutine on its loop each."""

    def __init__(self, loop: LoopThread, rig: OpsRig) -> None:
        self.loop, self.rig, self.gw = loop, rig, rig.gw
        self.console = rig.ops.console

    def run(self, coro: Any) -> Any:
        return self.loop.run(coro)

    def db(self, work: Any) -> Any:
        return self.run(self.gw.store.run(work))

    def op(self, user: str) -> Operator:
        return self.rig.ops.directory.get(user)

    def payment(self, **fields: Any) -> str:
        return self.run(self.rig.submit(f"control-{next(_keys)}", **fields))["id"]

    def request(self, user: str, action: str, target: str, **params: Any) -> dict[str, Any]:
        return self.run(self.console.request(self.op(user), action, target, params))

    def decide(self, user: str, request_id: int, approve: bool) -> dict[str, Any]:
        return self.run(self.console.decide(self.op(user), request_id, approve))

    def state(self, payment_id: str) -> tuple[str, str | None, str, int, str]:
        """Payment state and reason, outbox state, priority and lane."""
        return self.db(lambda tx: tx.query_one(
            "SELECT p.state, p.reason, o.state, p.priority, o.stream FROM payments p "
            "JOIN outbox o ON o.payment_id = p.id WHERE p.id = ?", (payment_id,)))

    def balance(self) -> int:
        return self.db(lambda tx: self.gw.ledger.balance(tx, self.rig.payer_account))

    def lane_outboxes(self, lane: str) -> list[str]:
        return [f["outbox"] for _, f in self.run(self.gw.redis.xrange(lane))]

    def outbox_id(self, payment_id: str) -> str:
        return str(self.db(lambda tx: tx.query_one(
            "SELECT id FROM outbox WHERE payment_id = ?", (payment_id,)))[0])

    def held_for_review(self) -> list[str]:
        """The ids the console lists as held for review."""
        from gateway.ops import views
        return [p["id"] for p in self.db(views.held_for_review)]

    def offered(self, payment_ids: tuple[str, ...], names: tuple[str, ...]
                ) -> dict[tuple[str, str], bool]:
        """Whether the console offers each action on each payment now."""
        from gateway.ops import actions
        return {(pid, name): self.db(lambda tx, pid=pid, name=name: actions.offerable(
            self.gw, tx, name, pid)) for pid in payment_ids for name in names}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("ops-control")).start())
    yield Rig(loop, ops_rig)
    loop.run(ops_rig.stop())
    loop.close()


@pytest.fixture
def hvps_open(rig: Rig) -> Any:
    """HVPS open for one test (the window status as a ccms.801 would set it)."""
    rig.gw.hvps_status = "10"
    yield
    rig.gw.hvps_status = "00"


def codes(exc: pytest.ExceptionInfo) -> list[str]:
    return [p.code for p in exc.value.problems]


def test_cancel_waits_for_a_supervisor_then_releases_the_funds(rig: Rig) -> None:
    """A cancel stays pending until a supervisor approves; then the hold is released."""
    before = rig.balance()
    pid = rig.payment(amount="500.00")
    req = rig.request("op1", "cancel", pid)
    waiting, held = rig.state(pid), rig.balance()
    done = rig.decide("sup1", req["id"], approve=True)

    assert req["state"] == "pending" and waiting[0] == "held"
    assert held == before - 50000
    assert done["state"] == "executed" and done["decided_by"] == "sup1"
    assert rig.state(pid)[:3] == ("cancelled", "cancelled_by_operator", "done")
    assert rig.balance() == before


DECISIONS = [
    # requester, decider, approve, resulting request state or refusal code
    ("op1", "op1", True, "approver_is_requester"),
    ("op1", "op2", True, "approver_level_too_low"),
    ("op1", "op2", False, "approver_level_too_low"),
    ("op1", "sup1", True, "executed"),
    ("op1", "dir1", False, "rejected"),
    ("op1", "op1", False, "withdrawn"),
    ("sup1", "sup1", True, "approver_is_requester"),
    ("sup1", "dir1", True, "executed"),
]


@pytest.mark.parametrize("requester, decider, approve, expected", DECISIONS)
def test_who_may_decide_on_a_cancel(rig: Rig, requester: str, decider: str, approve: bool,
                                    expected: str) -> None:
    """Only a supervisor or director other than the requester approves or rejects."""
    pid = rig.payment()
    req = rig.request(requester, "cancel", pid)
    try:
        outcome = rig.decide(decider, req["id"], approve)["state"]
    except PaygateError as exc:
        outcome = exc.code

    assert outcome == expected
    assert rig.state(pid)[0] == ("cancelled" if expected == "executed" else "held")


REQUESTS = [
    # operator (level), action, refusal code or the request's state after it
    (("op1", "00"), "hold", "executed"),
    (("op1", "00"), "cancel", "pending"),
    (("op1", "00"), "review_approve", "operator_level_too_low"),
    (("vault1", "10"), "hold", "operator_level_too_low"),
    (("sup1", "20"), "cancel", "pending"),
    # waiting for the window while HVPS is closed: the opening sends it, refused when asked
    (("sup1", "20"), "release", "hvps_closed"),
    (("op1", "00"), "delete", "action_unknown"),
]


@pytest.mark.parametrize("who, action, expected", REQUESTS)
def test_who_may_request_what(rig: Rig, who: tuple[str, str], action: str,
                              expected: str) -> None:
    """Vault tellers only look; reviews are for supervisors; unknown actions are refused."""
    operator = Operator(who[0], who[0], who[1], "")
    pid = rig.payment()
    try:
        outcome = rig.run(rig.console.request(operator, action, pid))["state"]
    except PaygateError as exc:
        outcome = exc.code

    assert outcome == expected


def test_hold_is_immediate_and_survives_the_opening_of_hvps(rig: Rig) -> None:
    """An operator's hold needs nobody else, and the window opening does not release it."""
    pid = rig.payment()
    req = rig.request("op1", "hold", pid)
    rig.run(rig.gw.release_waiting())

    assert req["state"] == "executed"
    assert rig.state(pid)[:3] == ("held", "held_by_operator", OUTBOX_HELD)


def test_release_while_hvps_is_closed_waits_for_the_window(rig: Rig) -> None:
    """Released before the opening, a payment waits like any payment taken then."""
    pid = rig.payment()
    rig.request("op1", "hold", pid)
    req = rig.request("op1", "release", pid)
    rig.decide("dir1", req["id"], approve=True)

    assert rig.state(pid)[:3] == ("held", "waiting_for_hvps_window", "waiting")


def test_release_while_hvps_is_open_puts_the_payment_on_its_lane(rig: Rig, hvps_open: Any
                                                                 ) -> None:
    """Released in the window, the payment is accepted and its outbox row queued."""
    pid = rig.payment()
    rig.request("op1", "hold", pid)
    req = rig.request("op1", "release", pid)
    rig.decide("sup1", req["id"], approve=True)
    state, reason, outbox, _, lane = rig.state(pid)

    assert (state, reason, outbox) == ("accepted", None, "pending")
    assert rig.outbox_id(pid) in rig.lane_outboxes(lane)


def test_priority_change_moves_a_queued_payment_to_the_new_lane(rig: Rig, hvps_open: Any
                                                                ) -> None:
    """A payment waiting on lane 2 moves to lane 3 and leaves nothing behind on lane 2."""
    pid = rig.payment()
    rig.request("op1", "hold", pid)
    rig.decide("sup1", rig.request("op1", "release", pid)["id"], approve=True)
    req = rig.request("op1", "priority", pid, priority=3)
    rig.decide("sup1", req["id"], approve=True)
    outbox = rig.outbox_id(pid)

    assert rig.state(pid)[3:] == (3, keys.lane_for_priority(3))
    assert outbox not in rig.lane_outboxes(keys.lane_for_priority(2))
    assert outbox in rig.lane_outboxes(keys.lane_for_priority(3))


def test_priority_change_of_a_waiting_payment_changes_its_urgency(rig: Rig) -> None:
    """Before it is on a lane, only the payment and its outbox row change."""
    pid = rig.payment(urgency="urgent")
    rig.decide("sup1", rig.request("op1", "priority", pid, priority=1)["id"], approve=True)
    urgency = rig.db(lambda tx: tx.query_one("SELECT urgency FROM payments WHERE id = ?",
                                             (pid,))[0])

    assert rig.state(pid)[3:] == (1, keys.lane_for_priority(1))
    assert urgency == "extra_urgent"


def test_a_payment_on_the_wire_cannot_be_cancelled(rig: Rig) -> None:
    """Sent between request and approval: the approval records a failure, nothing moves."""
    pid = rig.payment()
    req = rig.request("op1", "cancel", pid)
    rig.db(lambda tx: tx.execute("UPDATE outbox SET state = 'sending' WHERE payment_id = ?",
                                 (pid,)))
    done = rig.decide("sup1", req["id"], approve=True)

    assert done["state"] == "failed"
    assert [e["code"] for e in done["outcome"]["errors"]] == ["payment_already_on_the_wire"]
    assert rig.state(pid)[0] == "held"


REFUSED = [
    # action, target, params, code
    ("cancel", "P-NO-SUCH-PAYMENT", {}, "payment_not_found"),
    ("priority", None, {"priority": 4}, "priority_unknown"),
    # Only the JSON number: true (1 to Python) and "1" were once taken as lane 1.
    ("priority", None, {"priority": True}, "priority_unknown"),
    ("priority", None, {"priority": False}, "priority_unknown"),
    ("priority", None, {"priority": "1"}, "priority_unknown"),
    ("priority", None, {"priority": 1.0}, "priority_unknown"),
    ("priority", None, {"priority": [1]}, "priority_unknown"),
    ("priority", None, {"priority": 2}, "priority_unchanged"),
    ("release", None, {}, "hvps_closed"),
    ("review_approve", None, {}, "payment_not_held_for_review"),
    ("retry", "0-1", {}, "dead_letter_not_found"),
    # A dead letter's id not of a stream entry's form is refused before Redis reads it
    # (XRANGE answered an error of its own, and the console 500).
    ("retry", "abc", {}, "target_malformed"),
    ("retry", "-1", {}, "target_malformed"),
    ("retry", "1-", {}, "target_malformed"),
    ("retry", "1765000000000", {}, "target_malformed"),
    ("retry", "+", {}, "target_malformed"),
    ("retry", f"{2**64}-0", {}, "target_malformed"),
    ("retry", f"0-{2**64}", {}, "target_malformed"),
    ("retry", f"{2**64 - 1}-{2**64 - 1}", {}, "dead_letter_not_found"),
]


@pytest.mark.parametrize("action, target, params, code", REFUSED)
def test_refused_requests_name_the_rule(rig: Rig, action: str, target: str | None,
                                        params: dict[str, Any], code: str) -> None:
    """Each refusal carries the code of the rule broken, at request or at execution."""
    target = target or rig.payment(urgency="urgent")
    user = "sup1" if action.startswith("review") else "op1"
    try:
        req = rig.run(rig.console.request(rig.op(user), action, target, params))
        if req["state"] == "pending":
            req = rig.decide("dir1", req["id"], approve=True)
        found = [e["code"] for e in req["outcome"]["errors"]]
    except PaygateError as exc:
        found = [p.code for p in exc.problems]

    assert found == [code]


def _cancelled(rig: Rig) -> str:
    pid = rig.payment()
    rig.decide("sup1", rig.request("op1", "cancel", pid)["id"], approve=True)
    return pid


def _sent(rig: Rig) -> str:
    pid = rig.payment()
    rig.db(lambda tx: tx.execute("UPDATE outbox SET state = 'sending' WHERE payment_id = ?",
                                 (pid,)))
    return pid


def _held(rig: Rig) -> str:
    pid = rig.payment()
    rig.request("op1", "hold", pid)
    return pid


@pytest.mark.parametrize("make, action, params, code", [
    (_cancelled, "cancel", {}, "payment_not_unsent"),
    (_cancelled, "release", {}, "payment_not_unsent"),
    (_cancelled, "priority", {"priority": 1}, "payment_not_unsent"),
    (_sent, "cancel", {}, "payment_already_on_the_wire"),
    (_sent, "hold", {}, "payment_already_on_the_wire"),
    (_held, "hold", {}, "payment_already_held"),
    (_cancelled, "review_reject", {}, "payment_not_unsent"),
])
def test_a_request_whose_precondition_fails_is_refused_at_once(
        rig: Rig, make: Any, action: str, params: dict[str, Any], code: str) -> None:
    """Not a pending request that fails only once a supervisor approves it: refused
    when asked, with the error its execution would give, and nothing recorded."""
    pid = make(rig)
    before = rig.db(lambda tx: tx.query_one("SELECT count(*) FROM ops_requests", ())[0])
    user = "sup1" if action.startswith("review") else "op1"
    with pytest.raises(PaygateError) as exc:
        rig.run(rig.console.request(rig.op(user), action, pid, params))

    assert codes(exc) == [code]
    assert rig.db(lambda tx: tx.query_one("SELECT count(*) FROM ops_requests", ())[0]) \
        == before


def test_a_second_pending_request_for_the_same_thing_is_refused(rig: Rig) -> None:
    """Two pending cancels of one payment would be approved twice."""
    pid = rig.payment()
    rig.request("op1", "cancel", pid)
    with pytest.raises(PaygateError) as exc:
        rig.request("op2", "cancel", pid)

    assert codes(exc) == ["request_already_pending"]


CORE_OVERTAKES = [
    # the operators' pending request on a held payment: (action, hold first)
    ("cancel", False),
    ("release", True),
]


@pytest.mark.parametrize("action, hold", CORE_OVERTAKES)
def test_the_core_systems_cancel_waits_while_operators_decide(rig: Rig, action: str,
                                                             hold: bool) -> None:
    """While an operators' request deciding a payment waits for its second person, the
    core system's cancel is refused (409 operator_request_pending, naming it), and the
    payment stays as it was; once the request is withdrawn, the cancel is taken."""
    pid = rig.payment()
    if hold:
        rig.request("op1", "hold", pid)
    req = rig.request("op1", action, pid)
    ext = next(e for e in rig.gw.extensions if hasattr(e, "request_cancel"))
    with pytest.raises(PaygateError) as exc:
        rig.run(ext.request_cancel(pid, None, "core:test"))
    waiting = rig.state(pid)[:2]
    rig.decide("op1", req["id"], approve=False)
    done = rig.run(ext.request_cancel(pid, None, "core:test"))

    problem = exc.value.problems[0]
    assert (exc.value.status, problem.code, problem.value) == (
        409, "operator_request_pending", req["id"])
    assert dict(problem.detail)["pending_request"] == {
        "id": req["id"], "action": action, "requested_by": "op1"}
    assert waiting[0] == "held"
    assert done["state"] == "cancelled"


def test_an_expired_request_cannot_be_approved(rig: Rig) -> None:
    """A request older than its life expires instead of being executed."""
    pid = rig.payment()
    req = rig.request("op1", "cancel", pid)
    rig.db(lambda tx: tx.execute("UPDATE ops_requests SET expires_at = "
                                 "'2000-01-01T00:00:00+08:00' WHERE id = ?", (req["id"],)))
    with pytest.raises(PaygateError) as exc:
        rig.decide("sup1", req["id"], approve=True)
    state = rig.db(lambda tx: tx.query_one("SELECT state FROM ops_requests WHERE id = ?",
                                           (req["id"],))[0])

    assert codes(exc) == ["request_expired"]
    assert state == "expired" and rig.state(pid)[0] == "held"


@pytest.mark.parametrize("approve, user", [(True, "sup1"), (False, "sup1"), (False, "op1")])
def test_a_decision_on_a_request_already_marked_expired_is_request_expired(
        rig: Rig, approve: bool, user: str) -> None:
    """Marked expired by whatever came first (the console's snapshot, a new request, a
    decision), a request is still answered request_expired when approved, rejected or
    withdrawn, naming it and when it expired, never request_not_pending."""
    pid = rig.payment()
    req = rig.request("op1", "cancel", pid)
    rig.db(lambda tx: tx.execute("UPDATE ops_requests SET state = 'expired', expires_at = "
                                 "'2000-01-01T00:00:00+08:00' WHERE id = ?", (req["id"],)))
    with pytest.raises(PaygateError) as exc:
        rig.decide(user, req["id"], approve=approve)
    problem = exc.value.problems[0]

    assert (exc.value.status, problem.code, problem.path, problem.value) == (
        409, "request_expired", "/id", req["id"])
    assert "expired at 2000-01-01T00:00:00+08:00" in problem.message
    assert rig.state(pid)[0] == "held"


def test_a_request_past_its_time_is_listed_and_counted_as_expired(rig: Rig) -> None:
    """Once its time has passed by the gateway's clock, a request nobody marked expired
    yet is listed as expired, counted as pending nowhere (the status, the metrics), and
    no clash for a new request of the same action."""
    from gateway.ops import metrics, views

    pid = rig.payment()
    req = rig.request("op1", "cancel", pid)
    now = rig.gw.clock.now()
    before = rig.db(lambda tx: views.pending_count(tx, now))
    rig.db(lambda tx: tx.execute("UPDATE ops_requests SET expires_at = "
                                 "'2000-01-01T00:00:00+08:00' WHERE id = ?", (req["id"],)))
    pending = rig.db(lambda tx: [r["id"] for r in views.requests(tx, now, state="pending")])
    expired = rig.db(lambda tx: {r["id"]: r["state"] for r in views.requests(
        tx, now, state="expired")})
    listed = rig.db(lambda tx: {r["id"]: r["state"] for r in views.requests(tx, now)})
    count = rig.db(lambda tx: views.pending_count(tx, now))
    gauge = [line for line in rig.run(metrics.render(rig.gw, rig.console)).splitlines()
             if line.startswith("paygate_ops_requests_pending ")]
    again = rig.request("op2", "cancel", pid)

    assert req["id"] not in pending
    assert expired[req["id"]] == listed[req["id"]] == "expired"
    assert (count, gauge) == (before - 1, [f"paygate_ops_requests_pending {before - 1}"])
    assert again["state"] == "pending"
    rig.decide("op2", again["id"], approve=False)


def test_retry_puts_a_dead_letter_back_on_its_stream(rig: Rig) -> None:
    """Retry re-adds the original fields to the original stream and drops the dead letter."""
    lane = keys.lane_for_priority(3)
    dead_id = rig.run(rig.gw.redis.xadd(keys.DEAD, {
        "outbox": "4242", "stream": lane, "entry": "1-1", "reason": "RuntimeError('link')",
        "deliveries": "6"}))
    req = rig.request("op1", "retry", dead_id)
    left = rig.run(rig.gw.redis.xrange(keys.DEAD, min=dead_id, max=dead_id))

    assert req["state"] == "executed"
    assert req["params"] == {"stream": lane, "fields": {"outbox": "4242"},
                             "reason": "RuntimeError('link')"}
    assert "4242" in rig.lane_outboxes(lane) and left == []


def test_a_dead_letter_written_with_leading_zeros_is_its_entry(rig: Rig) -> None:
    """A dead letter's id with zeros before its numbers names the entry Redis gave: the
    request records that id, as the audit log and a second request on it read it."""
    dead_id = rig.run(rig.gw.redis.xadd(keys.DEAD, {
        "outbox": "4243", "stream": keys.lane_for_priority(3), "entry": "1-1",
        "reason": "RuntimeError('link')", "deliveries": "6"}))
    ms, seq = dead_id.split("-")
    req = rig.request("op1", "retry", f"00{ms}-0{seq}")

    assert (req["state"], req["target"]) == ("executed", dead_id)


def _review_hold(rig: Rig, pid: str) -> None:
    """What intake does for a payment that needs review (see gateway.ops.review)."""
    rig.db(lambda tx: (
        tx.execute("UPDATE payments SET state = 'held', reason = "
                   "'review_amount_above_threshold' WHERE id = ?", (pid,)),
        tx.execute("UPDATE outbox SET state = ? WHERE payment_id = ?", (OUTBOX_REVIEW, pid))))


def test_review_pass_releases_and_review_fail_cancels(rig: Rig) -> None:
    """A supervisor's review decides alone: pass sends the payment on, fail cancels it."""
    before = rig.balance()
    passed, failed = rig.payment(), rig.payment(amount="77.00")
    _review_hold(rig, passed)
    _review_hold(rig, failed)
    rig.request("sup1", "review_approve", passed)
    rig.request("dir1", "review_reject", failed)

    assert rig.state(passed)[:3] == ("held", "waiting_for_hvps_window", "waiting")
    assert rig.state(failed)[:3] == ("cancelled", "review_rejected", "done")
    assert rig.balance() == before - 123456


@pytest.mark.parametrize("reason", ["screening_match_payee_name",
                                    "review_amount_above_threshold"])
def test_an_operators_release_does_not_pass_the_review(rig: Rig, hvps_open: Any,
                                                       reason: str) -> None:
    """A payment the screening or the amount review holds leaves only by the review: a
    release is refused when asked for, by any level, saying what passes it."""
    pid = rig.payment()
    _review_hold(rig, pid)
    rig.db(lambda tx: tx.execute("UPDATE payments SET reason = ? WHERE id = ?", (reason, pid)))
    refused = []
    for user in ("op1", "sup1"):
        with pytest.raises(PaygateError) as exc:
            rig.request(user, "release", pid)
        refused.append(exc.value.problems[0])

    assert [(p.code, p.value, p.expected) for p in refused] == [
        ("payment_held_for_review", reason, "review_approve or review_reject")] * 2
    assert f"paygate ops request review-approve {pid}" in str(refused[0].message)
    assert rig.offered((pid,), ("release", "review_approve", "cancel")) == {
        (pid, "release"): False, (pid, "review_approve"): True, (pid, "cancel"): True}
    assert rig.state(pid)[:3] == ("held", reason, OUTBOX_REVIEW)


def test_the_intake_review_hook_holds_large_payments_for_review(rig: Rig, hvps_open: Any
                                                               ) -> None:
    """Through the gateway's review hook, a large payment waits until a supervisor passes it."""
    if not hasattr(rig.gw, "review"):
        pytest.skip("this gateway has no review hook at intake")
    rig.gw.review, threshold = review.hold_reason, rig.gw.settings.review_threshold_fen
    rig.gw.settings.review_threshold_fen = 1_000_00
    try:
        small, large = rig.payment(amount="999.99"), rig.payment(amount="1000.01")
    finally:
        rig.gw.review, rig.gw.settings.review_threshold_fen = None, threshold
    held = rig.state(large)
    rig.request("sup1", "review_approve", large)

    assert rig.state(small)[:3] == ("accepted", None, "pending")
    assert held[:3] == ("held", "review_amount_above_threshold", OUTBOX_REVIEW)
    assert rig.state(large)[:3] == ("accepted", None, "pending")


def test_only_hvps_payments_change_priority(rig: Rig) -> None:
    """A BEPS item travels in a package, not on a priority lane: a new priority of it is
    refused. (Its hold, release and cancel are the BEPS rules': tests/test_beps_stops.py.)"""
    pid = rig.payment()
    rig.db(lambda tx: tx.execute("UPDATE payments SET channel = 'beps' WHERE id = ?", (pid,)))
    with pytest.raises(PaygateError) as exc:
        rig.request("op1", "priority", pid, priority=1)

    assert codes(exc) == ["payment_channel_not_supported"]


def test_every_step_is_audited_with_who_and_what(rig: Rig) -> None:
    """Request, approval and execution each leave an audit row naming the person."""
    pid = rig.payment()
    req = rig.request("op2", "cancel", pid)
    rig.decide("dir1", req["id"], approve=True)
    rows = rig.db(lambda tx: tx.query("SELECT actor, level, what, target FROM ops_audit "
                                      "WHERE request_id = ? ORDER BY id", (req["id"],)))

    assert rows == [("op2", "00", "request", pid), ("dir1", "30", "approve", pid),
                    ("dir1", "30", "execute", pid)]


def test_opening_balance_is_what_the_rig_paid_in(rig: Rig) -> None:
    """The payer's money is only ever held and released by these tests, never lost."""
    held = rig.db(lambda tx: tx.query_one(
        "SELECT COALESCE(SUM(amount_fen), 0) FROM payments WHERE state NOT IN "
        "('cancelled', 'rejected')", ())[0])

    assert rig.balance() == OPENING_FEN - held


def test_a_cancel_of_a_sent_payment_says_how_it_can_be_stopped(rig: Rig) -> None:
    """A sent payment is not cancelled as it stands: the refusal says the way there (a
    hold first, or the NPC's own cancellation once it has the message)."""
    pid = rig.payment()
    rig.db(lambda tx: tx.execute("UPDATE payments SET state = 'sent' WHERE id = ?", (pid,)))
    with pytest.raises(PaygateError) as exc:
        rig.run(rig.console.request(rig.op("op1"), "cancel", pid, {}))

    problem = exc.value.problems[0]
    assert (problem.code, problem.value) == ("payment_not_unsent", "sent")
    assert "hold it first" in problem.message and "then cancel it" in problem.message
    assert "npc-cancel" in problem.message
