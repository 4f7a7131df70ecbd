"""The exception actions (return, npc_cancel, status_query, suspense_keep,
suspense_release, suspense_apply) in the console: offered on a payment's detail by its state, refused
at once when they could not run, under dual control, named for people, and the bodies
of the console's JSON routes read as strictly as the core system's API reads its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.exceptions import schema as exc_schema
from gateway.ops import cli, control
from gateway.ops.schema import table_exists
from gateway.ops.testing import LoopThread, OpsRig, console_call, serving

SUSPENSE_FEN = 3_210_00
CREDITED_FEN = 4_560_00


class Rig:
    """The shared gateway; `call` sends one request with an operator's Basic credentials."""

    def __init__(self, loop: LoopThread, rig: OpsRig) -> None:
        self.loop, self.rig, self.keys = loop, rig, iter(range(1, 10_000))

    def call(self, method: str, path: str, user: str = "op1", body: Any = None,
             raw: bytes | None = None) -> tuple[int, Any]:
        return self.loop.run(console_call(self.rig.url, method, path, user, body, raw))

    def suspense(self) -> str:
        """A new incoming payment to an account we do not hold: in suspense."""
        return self.loop.run(self.rig.receive(next(self.keys), SUSPENSE_FEN))

    def credited(self) -> str:
        return self.loop.run(self.rig.receive(next(self.keys), CREDITED_FEN,
                                              self.rig.payer_account, "示例客户甲"))

    def outgoing(self) -> str:
        return self.loop.run(self.rig.submit(f"exc-{next(self.keys)}"))["id"]

    def queued(self) -> str:
        """A new outgoing payment the NPC has queued: only the NPC can stop it now."""
        pid = self.outgoing()
        self.loop.run(self.rig.gw.store.run(lambda tx: (
            tx.execute("UPDATE payments SET state = 'queued' WHERE id = ?", (pid,)),
            tx.execute("UPDATE outbox SET state = 'acked' WHERE payment_id = ?", (pid,)))))
        return pid

    def request(self, user: str, action: str, target: str, note: str = "") -> tuple[int, Any]:
        return self.call("POST", "/ops/api/requests", user,
                         {"action": action, "target": target, "params": {}, "note": note})

    def requests_on(self, target: str) -> list[dict[str, Any]]:
        # The console makes its tables on first use: none yet means no request yet.
        return self.loop.run(self.rig.gw.store.run(lambda tx: tx.query(
            "SELECT action, state FROM ops_requests WHERE target = ?", (target,))
            if table_exists(tx, "ops_requests") else []))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-exc")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def _offered(rig: Rig, pid: str, user: str = "op1") -> list[str]:
    status, detail = rig.call("GET", f"/ops/api/payments/{pid}", user)
    assert status == 200, detail
    return detail["actions"]


def test_a_payments_detail_offers_the_actions_its_state_allows(rig: Rig) -> None:
    """Suspense: return, keep (release once kept) and apply to an account; credited:
    return; an outgoing payment waiting for the window: the console's own hold, cancel
    and priority (not an NPC cancellation, which would do what cancel does), and to a
    supervisor no review action for a payment not held for review."""
    suspense, credited, outgoing = rig.suspense(), rig.credited(), rig.outgoing()
    before_keep = _offered(rig, suspense)
    kept, _ = rig.request("op1", "suspense_keep", suspense)
    after_keep = _offered(rig, suspense)

    assert before_keep == ["return", "suspense_keep", "suspense_apply"]
    assert kept == 201 and after_keep == ["return", "suspense_release", "suspense_apply"]
    assert _offered(rig, credited) == ["return"]
    assert _offered(rig, outgoing) == ["hold", "cancel", "priority"]
    assert _offered(rig, outgoing, "sup1") == ["hold", "cancel", "priority"]


def test_a_payment_queued_at_the_npc_offers_its_cancellation_and_status_query(
        rig: Rig) -> None:
    """Once the NPC has it, only the NPC can cancel it or say where it is."""
    pid = rig.queued()

    assert _offered(rig, pid) == ["npc_cancel", "status_query"]


REFUSED_AT_ONCE = [
    # which payment, action, status, code
    ("outgoing", "return", 409, "return_only_for_incoming_payments"),
    ("outgoing", "status_query", 409, "payment_not_queryable"),
    ("outgoing", "suspense_keep", 422, "payment_not_in_suspense"),
    ("credited", "npc_cancel", 409, "cancel_only_for_outgoing_hvps_payments"),
    ("credited", "suspense_keep", 422, "payment_not_in_suspense"),
    ("suspense", "suspense_release", 409, "suspense_not_kept"),
]


@pytest.mark.parametrize("kind, action, status, code", REFUSED_AT_ONCE)
def test_an_exception_action_that_could_not_run_is_refused_when_asked(
        rig: Rig, kind: str, action: str, status: int, code: str) -> None:
    """The error its execution would give, at once, and no request is recorded."""
    pid = getattr(rig, kind)()
    got, answer = rig.request("op1", action, pid)

    assert (got, answer["errors"][0]["code"]) == (status, code)
    assert rig.requests_on(pid) == []


@pytest.mark.parametrize("action", ["npc_cancel", "cancel"])
def test_a_cancel_of_an_incoming_payment_says_what_it_takes_as_its_code_does(
        rig: Rig, action: str) -> None:
    """An operator's cancel or npc-cancel of a credit another bank sent us: the code
    says cancels are for outgoing payments, and so does `expected`, naming every
    channel an outgoing payment is cancelled on; the message says what to do instead."""
    pid = rig.credited()
    got, answer = rig.request("op1", action, pid)
    error = answer["errors"][0]

    assert (got, error["code"]) == (409, "cancel_only_for_outgoing_hvps_payments")
    assert error["expected"].startswith("an outgoing payment (HVPS, BEPS or a book transfer)")
    assert f"payment {pid} is incoming" in error["message"] and "return" in error["message"]


def test_a_return_the_credited_account_could_not_give_is_refused_when_asked(
        rig: Rig) -> None:
    """The customer spent the credit: the return's hold would be refused, so the request
    is, at once, with the hold's error at the payment's amount; nothing is recorded or
    held. Once the money is back the same return is asked."""
    gw, account = rig.rig.gw, rig.rig.payer_account
    pid = rig.credited()

    def balance() -> int:
        return rig.loop.run(gw.store.run(lambda tx: gw.ledger.balance(tx, account)))
    spent = balance() - CREDITED_FEN + 1
    hold_id = rig.loop.run(gw.store.run(lambda tx: gw.ledger.hold(
        tx, f"spend-{pid}", account, spent, gw.work_date, f"spend-{pid}")))
    before = balance()
    got, answer = rig.request("op1", "return", pid, "payee asks")
    after = balance()
    rig.loop.run(gw.store.run(lambda tx: gw.ledger.release(
        tx, f"spend-{pid}:release", hold_id, gw.work_date)))
    asked, later = rig.request("op1", "return", pid, "payee asks")

    assert got == 422
    problem = answer["errors"][0]
    assert (problem["code"], problem["path"]) == ("payer_funds_insufficient", "/amount")
    assert rig.requests_on(pid) == [("return", "pending")] and after == before
    assert asked == 201 and later["state"] == "pending"


def test_a_second_keep_of_a_kept_item_is_refused(rig: Rig) -> None:
    """Keeping is done at once (no second person); asking again names the rule."""
    pid = rig.suspense()
    first, done = rig.request("op1", "suspense_keep", pid)
    second, refusal = rig.request("op2", "suspense_keep", pid)

    assert first == 201 and done["state"] == "executed"
    assert second == 409 and refusal["errors"][0]["code"] == "suspense_already_kept"


@pytest.mark.parametrize("note, kept_as", [("tracing", "tracing"),
                                            ("  tracing the customer ", "tracing the customer"),
                                            ("", "kept by an operator")])
def test_a_keep_records_the_requests_note(rig: Rig, note: str, kept_as: str) -> None:
    """The note of `suspense-keep --note` is what the item is kept with (its exceptions
    view and its history), not a fixed text; without one, the fixed text."""
    from gateway.exceptions import schema
    pid = rig.suspense()
    asked, done = rig.request("op1", "suspense_keep", pid, note)
    kept = rig.loop.run(rig.rig.gw.store.run(lambda tx: schema.kept(tx, pid)))
    _, detail = rig.call("GET", f"/ops/api/payments/{pid}")

    assert asked == 201 and done["state"] == "executed"
    assert (kept["note"], kept["kept_by"]) == (kept_as, "op1")
    assert detail["history"][-1]["detail"]["note"] == kept_as


def test_a_return_asked_by_one_operator_runs_when_a_supervisor_approves(rig: Rig) -> None:
    """The request waits; the requester cannot approve it; the supervisor's approval
    returns the payment with the request's note as the reason, recorded as asked by the
    operator and approved by the supervisor (never as the supervisor's own request)."""
    pid = rig.suspense()
    asked, req = rig.request("op1", "return", pid, "账户不存在")
    own, refusal = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "op1",
                            {"note": ""})
    approved, done = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1",
                              {"note": "已核实"})
    returns = rig.loop.run(rig.rig.gw.store.run(lambda tx: exc_schema.returns_of(tx, pid)))
    _, detail = rig.call("GET", f"/ops/api/payments/{pid}")
    asked_for = next(h["detail"] for h in detail["history"]
                     if h["event"] == "return_requested")

    assert asked == 201 and req["state"] == "pending" and req["needs_approval"] is True
    assert own == 403 and refusal["errors"][0]["code"] == "approver_is_requester"
    assert approved == 200 and done["state"] == "executed"
    assert [(r["reason"], r["requested_by"]) for r in returns] == [("账户不存在", "op1")]
    assert (asked_for["by"], asked_for["approved_by"]) == ("op1", "sup1")


def test_a_return_lists_who_approved_it_beside_who_asked(rig: Rig) -> None:
    """An operators' return keeps its second person in its own row (`approved_by` of
    exc_returns, which GET /v1/transfers/{id}/exceptions lists), as the history names
    both."""
    pid = rig.suspense()
    _, req = rig.request("op1", "return", pid, "查无此人")
    rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1", {"note": "已核实"})

    def read(tx: Any) -> tuple[Any, ...]:
        (listed,) = exc_schema.returns_of(tx, pid)
        stored = tx.query_one("SELECT requested_by, approved_by FROM exc_returns "
                              "WHERE original_id = ?", (pid,))
        return listed, stored, exc_schema.return_by_id(tx, listed["return_id"])
    listed, stored, by_id = rig.loop.run(rig.rig.gw.store.run(read))
    _, detail = rig.call("GET", f"/ops/api/payments/{pid}")
    asked_for = next(h["detail"] for h in detail["history"]
                     if h["event"] == "return_requested")

    assert (listed["requested_by"], listed["approved_by"]) == (asked_for["by"],
                                                               asked_for["approved_by"])
    assert listed["approved_by"].endswith("sup1") and listed["requested_by"].endswith("op1")
    assert tuple(stored) == (listed["requested_by"], listed["approved_by"])
    assert by_id == listed


def test_requests_carry_their_actions_human_name_and_the_payments_amount(rig: Rig) -> None:
    """Every action has a name in both languages, none of them its code; a request on a
    payment shows that payment's amount, one on something else none."""
    pid = rig.suspense()
    rig.request("op1", "return", pid)
    status, listing = rig.call("GET", "/ops/api/requests?state=pending")
    row = next(r for r in listing["requests"] if r["target"] == pid)
    _, catalogue = rig.call("GET", "/ops/api/actions")
    names = {a["action"]: a["label"] for a in catalogue["actions"]}

    assert status == 200 and row["action_label"] == {"en": "Return to sender", "zh": "退汇"}
    assert row["amount"] == "3,210.00"
    assert set(names) == set(control.RULES)
    assert all(label["en"] != action and label["zh"] != action and label["zh"] != label["en"]
               for action, label in names.items())


DUPLICATE_KEYS = [
    ("/ops/api/requests", b'{"action": "hold", "target": "TARGET", "note": "", '
                          b'"action": "cancel"}', "/action"),
    ("/ops/api/requests/1/approve", b'{"note": "ok", "note": "not ok"}', "/note"),
    ("/ops/api/requests/1/reject", b'{"note": "", "note": ""}', "/note"),
    ("/ops/login", b'{"user": "op1", "password": "x", "password": "op1-demo"}', "/password"),
    ("/ops/logout", b'{"a": 1, "a": 1}', "/a"),
]


@pytest.mark.parametrize("path, raw, where", DUPLICATE_KEYS)
def test_a_json_body_naming_a_member_twice_is_refused(rig: Rig, path: str, raw: bytes,
                                                      where: str) -> None:
    """Every JSON body the console takes is refused with json_key_duplicate, as the
    core system's API refuses one, never read with the last value winning."""
    pid = rig.outgoing()
    got, answer = rig.call("POST", path, raw=raw.replace(b"TARGET", pid.encode()))

    assert (got, answer["errors"][0]["code"], answer["errors"][0]["path"]) == (
        400, "json_key_duplicate", where)
    assert rig.requests_on(pid) == []


def test_the_command_line_asks_for_every_exception_action(rig: Rig,
                                                          capsys: pytest.CaptureFixture
                                                          ) -> None:
    """`paygate ops request` takes the five actions by their command words, with the
    same checks and dual control; tables name actions as people read them."""
    def run(user: str, *argv: str) -> tuple[int, str]:
        capsys.readouterr()
        status = cli.ops_command(["--url", rig.rig.url, "--user", user,
                                  "--password", f"{user}-demo", *argv])
        return status, capsys.readouterr().out

    suspense, outgoing = rig.suspense(), rig.outgoing()
    kept, kept_out = run("op1", "request", "suspense-keep", suspense)
    offered, detail = run("op1", "payment", suspense)
    returned, return_out = run("op1", "request", "return", suspense, "--note", "查无此户")
    listed, table = run("op1", "requests")
    refused, refusal = run("op1", "request", "status-query", outgoing)
    # A release of the keep would contradict the pending return: it is asked of another.
    other = rig.suspense()
    run("op1", "request", "suspense-keep", other)
    released, _ = run("op1", "request", "suspense-release", other)
    catalogue, actions = run("op1", "actions")
    return_line = next(line for line in table.splitlines() if suspense in line
                       and "pending" in line)

    assert kept == 0 and "Keep from the automatic return" in kept_out
    assert offered == 0 and "you may request: return, suspense-release" in detail
    assert returned == 0 and "pending" in return_out
    assert listed == 0 and "Return to sender" in return_line and "3,210.00" in return_line
    assert refused == 1 and "refused: payment_not_queryable at /state" in refusal
    assert released == 0
    assert catalogue == 0 and all(word in actions for word in (
        "npc-cancel", "status-query", "suspense-keep", "suspense-release", "退汇"))


def _apply_request(rig: Rig, user: str, pid: str) -> tuple[int, Any]:
    return rig.call("POST", "/ops/api/requests", user,
                    {"action": "suspense_apply", "target": pid,
                     "params": {"account": rig.rig.payer_account},
                     "note": "payee confirmed by telephone"})


@pytest.mark.parametrize("first", ["return", "suspense_apply"])
def test_a_request_contradicting_a_pending_one_on_the_same_item_is_refused(
        rig: Rig, first: str) -> None:
    """A return and an application of one suspense item cannot both wait for approval:
    each approver would decide on the facts before the other ran. The second is refused,
    naming the first; once the first is withdrawn, the second may be asked."""
    pid = rig.suspense()
    asked, req = (rig.request("op1", "return", pid, "unknown payee") if first == "return"
                  else _apply_request(rig, "op1", pid))
    second, refusal = (_apply_request(rig, "op2", pid) if first == "return"
                       else rig.request("op2", "return", pid, "unknown payee"))
    withdrawn, _ = rig.call("POST", f"/ops/api/requests/{req['id']}/reject", "op1",
                            {"note": "asked the other way"})
    again, later = (_apply_request(rig, "op2", pid) if first == "return"
                    else rig.request("op2", "return", pid, "unknown payee"))

    assert asked == 201 and req["state"] == "pending"
    assert second == 409
    problem = refusal["errors"][0]
    assert problem["code"] == "request_contradicts_pending"
    assert f"request {req['id']} ({first})" in problem["message"]
    assert withdrawn == 200 and again == 201 and later["state"] == "pending"
    assert sorted(rig.requests_on(pid)) == sorted([(first, "withdrawn"),
                                                   (later["action"], "pending")])


def test_a_priority_change_may_wait_beside_a_deciding_request(rig: Rig) -> None:
    """A new priority decides nothing about the money: it is not refused beside a
    pending cancel."""
    pid = rig.outgoing()
    held, _ = rig.request("op1", "hold", pid)
    cancel, _ = rig.request("op1", "cancel", pid)
    priority, _ = rig.call("POST", "/ops/api/requests", "op2",
                           {"action": "priority", "target": pid,
                            "params": {"priority": 1}, "note": ""})

    assert (held, cancel, priority) == (201, 201, 201)


def test_allowing_the_automatic_return_of_an_item_returned_meanwhile_fails(rig: Rig) -> None:
    """The item was kept, then returned while a release of the keep waited: the release,
    approved after, fails with payment_not_in_suspense instead of reporting done."""
    pid = rig.suspense()
    kept, _ = rig.request("op1", "suspense_keep", pid)
    asked, release = rig.request("op1", "suspense_release", pid)
    rig.loop.run(rig.rig.gw.store.run(lambda tx: tx.execute(
        "UPDATE payments SET state = 'returned' WHERE id = ?", (pid,))))
    approved, done = rig.call("POST", f"/ops/api/requests/{release['id']}/approve", "sup1",
                              {"note": ""})

    assert (kept, asked, approved) == (201, 201, 200)
    assert done["state"] == "failed"
    assert done["outcome"]["errors"][0]["code"] == "payment_not_in_suspense"


# Each console action on a payment and the history event it records: (the payment, the
# request carried out first, the action, its params, its event, whether a second person
# approves it). The request is always op1's; sup1 approves what needs approval.
RECORDED = [
    ("outgoing", None, "hold", {}, "ops_held", False),
    ("outgoing", "hold", "release", {}, "ops_released", True),
    ("outgoing", None, "cancel", {}, "ops_cancelled", True),
    ("outgoing", None, "priority", {"priority": 1}, "ops_priority_changed", True),
    ("queued", None, "npc_cancel", {}, "cancel_requested", True),
    ("queued", None, "status_query", {}, "status_query_sent", False),
    ("suspense", None, "suspense_keep", {}, "automatic_return_kept", False),
    ("suspense", "suspense_keep", "suspense_release", {}, "automatic_return_allowed", True),
    ("suspense", None, "suspense_apply", {"account": "payer"}, "suspense_applied", True),
    ("suspense", None, "return", {}, "return_requested", True),
]


@pytest.mark.parametrize("kind, first, action, params, event, approved", RECORDED,
                         ids=[row[2] for row in RECORDED])
def test_an_executed_request_records_who_asked_and_who_approved(
        rig: Rig, kind: str, first: str | None, action: str, params: dict[str, Any],
        event: str, approved: bool) -> None:
    """The payment's history names the request's author as `by` and, for an action
    under dual control, its approver as `approved_by`: never the approver alone as if
    they had asked. An action needing nobody's approval is its author's alone. Each is
    written by the user name alone, whichever road the action takes (the console's
    own, the exception flows'), as stored and as shown."""
    pid = rig.queued() if kind == "queued" else getattr(rig, kind)()
    if first is not None:
        assert rig.request("op1", first, pid)[1]["state"] == "executed"
    params = {name: rig.rig.payer_account if value == "payer" else value
              for name, value in params.items()}
    asked, req = rig.call("POST", "/ops/api/requests", "op1",
                          {"action": action, "target": pid, "params": params,
                           "note": "payee confirmed by telephone"})
    if approved:
        asked, req = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1",
                              {"note": "checked"})
    _, detail = rig.call("GET", f"/ops/api/payments/{pid}")
    recorded = [h["detail"] for h in detail["history"] if h["event"] == event][-1]
    stored = json.loads(rig.loop.run(rig.rig.gw.store.run(lambda tx: tx.query_one(
        "SELECT detail FROM payment_events WHERE payment_id = ? AND event = ? "
        "ORDER BY id DESC", (pid, event))))[0])

    assert asked in (200, 201) and req["state"] == "executed", req
    for shown in (recorded, stored):
        assert shown["by"] == "op1"
        assert shown.get("approved_by") == ("sup1" if approved else None)
