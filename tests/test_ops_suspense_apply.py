"""An operator applies a suspense item (待销账) to the customer account it belongs to
(销账), under dual control: the item named by its pending write-off number (or its
payment), the account checked when asked and again when it runs, the ledger posting from
suspense to the account, the payment credited with the application in its history and
told to the core system, and every request that could not run refused when asked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import payments
from gateway.exceptions import schema as exc_schema
from gateway.exceptions.extension import Exceptions
from gateway.ops import cli
from gateway.ops.schema import table_exists
from gateway.ops.testing import LoopThread, OpsRig, console_call, serving
from gateway.redisproc import free_port
from ledger.chart import SUSPENSE
from ledger.testing import customer_account

ITEM_FEN = 2_345_67
OWNER_NAME = "示例客户丙"
NOTE = "客户来电确认，户名简写"


class Rig:
    """The shared gateway; `call` sends one request with an operator's credentials."""

    def __init__(self, loop: LoopThread, rig: OpsRig) -> None:
        self.loop, self.rig, self.keys = loop, rig, iter(range(1, 10_000))
        self.accounts = iter(range(50, 10_000))

    @property
    def gw(self) -> Any:
        return self.rig.gw

    def call(self, method: str, path: str, user: str = "op1", body: Any = None
             ) -> tuple[int, Any]:
        return self.loop.run(console_call(self.rig.url, method, path, user, body))

    def tx(self, work: Any) -> Any:
        return self.loop.run(self.gw.store.run(work))

    def account(self, name: str = OWNER_NAME) -> str:
        """A new open customer account of ours, empty."""
        number = customer_account(next(self.accounts), "corporate")
        self.tx(lambda tx: self.gw.ledger.open_customer_account(
            tx, number, name, "corporate", self.gw.work_date))
        return number

    def parked(self, account: str | None = None) -> tuple[str, str]:
        """An incoming credit parked in suspense: to `account` under a name that is not
        its holder's (name_mismatch), or to an account we do not hold; (payment, its
        pending write-off number)."""
        key = next(self.keys)
        pid = self.loop.run(self.rig.receive(key, ITEM_FEN, account or "", "示例丙"))
        payment = self.tx(lambda tx: payments.get(tx, pid))
        assert payment["state"] == "suspense" and payment["pending_no"], payment
        return pid, payment["pending_no"]

    def credited(self) -> str:
        return self.loop.run(self.rig.receive(next(self.keys), ITEM_FEN,
                                              self.rig.payer_account, "示例客户甲"))

    def ask(self, target: str, account: Any = None, note: str = NOTE, user: str = "op1",
            **params: Any) -> tuple[int, Any]:
        if account is not None:
            params["account"] = account
        return self.call("POST", "/ops/api/requests", user,
                         {"action": "suspense_apply", "target": target, "params": params,
                          "note": note})

    def approve(self, request_id: int, user: str = "sup1") -> tuple[int, Any]:
        return self.call("POST", f"/ops/api/requests/{request_id}/approve", user,
                         {"note": "已核对"})

    def balance(self, account: str) -> int:
        return self.tx(lambda tx: self.gw.ledger.balance(tx, account))

    def item_state(self, pending_no: str) -> str:
        return self.tx(lambda tx: tx.query_one(
            "SELECT state FROM ledger_suspense WHERE pending_no = ?", (pending_no,))[0])

    def requests_on(self, target: str) -> list[tuple[str, str]]:
        return self.tx(lambda tx: tx.query(
            "SELECT action, state FROM ops_requests WHERE target = ?", (target,))
            if table_exists(tx, "ops_requests") else [])


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # A webhook on a closed loopback port: the status changes are written for it (and
    # their pushes fail harmlessly), so a test sees what the core system is told.
    hook = {"webhook_url": f"http://127.0.0.1:{free_port()}/hook"}
    with serving(tmp_path_factory.mktemp("ops-apply"), hook) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def test_an_item_named_by_its_pending_number_is_applied_once_a_supervisor_approves(
        rig: Rig) -> None:
    """Requested by one operator, approved by a supervisor: Dr suspense, Cr the account;
    the item cleared, the payment credited with the account, pending number, request and
    note in its history, and the change queued for the core system's webhook."""
    owner = rig.account()
    pid, pending_no = rig.parked(owner)
    asked, req = rig.ask(pending_no, owner)
    waiting = (rig.balance(owner), rig.item_state(pending_no),
               rig.tx(lambda tx: payments.get(tx, pid))["state"])
    _, listing = rig.call("GET", "/ops/api/requests?state=pending", "sup1")
    shown = next(r for r in listing["requests"] if r["id"] == req["id"])
    approved, done = rig.approve(req["id"])
    payment = rig.tx(lambda tx: payments.get(tx, pid))
    history = rig.tx(lambda tx: payments.history(tx, pid))
    told = rig.tx(lambda tx: payments.told(tx, pid))
    books = rig.tx(lambda tx: rig.gw.ledger.trial_balance(tx))

    assert asked == 201 and req["state"] == "pending" and req["needs_approval"] is True
    assert req["target"] == pid and req["params"] == {"account": owner,
                                                      "pending_no": pending_no}
    assert shown["amount"] == "2,345.67" and shown["action_label"]["zh"] == "待销账入账"
    assert waiting == (0, "open", "suspense")
    assert approved == 200 and done["state"] == "executed", done
    assert done["outcome"]["account"] == owner and done["outcome"]["state"] == "credited"
    assert rig.balance(owner) == ITEM_FEN and rig.item_state(pending_no) == "cleared"
    assert payment["state"] == "credited" and payment["pending_no"] == pending_no
    last = history[-1]
    assert (last["state"], last["event"]) == ("credited", "suspense_applied")
    assert {k: last["detail"][k] for k in ("account", "pending_no", "by", "approved_by",
                                           "note")} == {
        "account": owner, "pending_no": pending_no, "by": "op1",
        "approved_by": "sup1", "note": NOTE}
    assert [t["state"] for t in told][-1] == "credited"
    assert books.balanced


def test_an_item_named_by_its_payment_is_offered_and_applied_the_same_way(rig: Rig) -> None:
    """A payment in suspense offers the application on its detail; asked by the payment's
    id, the request still names the item's pending number."""
    owner = rig.account()
    pid, pending_no = rig.parked()
    status, detail = rig.call("GET", f"/ops/api/payments/{pid}")
    asked, req = rig.ask(pid, owner)
    approved, done = rig.approve(req["id"], "dir1")

    assert status == 200 and "suspense_apply" in detail["actions"]
    assert asked == 201 and req["params"]["pending_no"] == pending_no
    assert approved == 200 and done["state"] == "executed"
    assert rig.balance(owner) == ITEM_FEN


def _closed(rig: Rig) -> str:
    number = rig.account()
    rig.tx(lambda tx: rig.gw.ledger.close_account(tx, number, rig.gw.work_date))
    return number


def _applied(rig: Rig) -> str:
    owner = rig.account()
    _, pending_no = rig.parked()
    _, req = rig.ask(pending_no, owner)
    rig.approve(req["id"])
    return pending_no


def _returning(rig: Rig) -> str:
    pid, pending_no = rig.parked()
    rig.loop.run(_return(rig, pid))
    return pending_no


async def _return(rig: Rig, pid: str) -> Any:
    """The core system asks for the payment's return (the exceptions extension's)."""
    ext = next(e for e in rig.gw.extensions if isinstance(e, Exceptions))
    return await ext.request_return(pid, "查无此户", "core:test")


# (what is asked, status, code, path): each refused when asked, no request recorded.
REFUSED = [
    ("no_note", 422, "note_required", "/note"),
    ("no_account", 422, "field_required", "/params/account"),
    ("account_malformed", 422, "account_malformed", "/params/account"),
    ("account_unknown", 422, "account_not_found", "/params/account"),
    ("account_internal", 422, "account_not_found", "/params/account"),
    ("account_closed", 409, "account_closed", "/params/account"),
    ("applied_already", 409, "suspense_item_not_open", "/target"),
    ("being_returned", 409, "return_already_requested", "/target"),
    ("credited_payment", 422, "payment_not_in_suspense", "/target"),
    ("unknown_pending_no", 404, "suspense_item_not_found", "/target"),
    ("other_items_pending_no", 422, "pending_no_not_of_payment", "/params/pending_no"),
]


def _refused_case(rig: Rig, case: str) -> tuple[str, dict[str, Any], str]:
    """(target, request fields, note) of one refused case."""
    owner = rig.account()
    if case == "applied_already":
        return _applied(rig), {"account": owner}, NOTE
    if case == "being_returned":
        return _returning(rig), {"account": owner}, NOTE
    if case == "credited_payment":
        return rig.credited(), {"account": owner}, NOTE
    if case == "unknown_pending_no":
        return "112319999", {"account": owner}, NOTE
    pid, pending_no = rig.parked()
    accounts = {"no_account": None, "account_malformed": "账户 1",
                "account_unknown": customer_account(9_999, "corporate"),
                "account_internal": rig.gw.ledger.internal_accounts[SUSPENSE],
                "account_closed": _closed(rig)}
    if case == "other_items_pending_no":
        _, other = rig.parked()
        return pid, {"account": owner, "pending_no": other}, NOTE
    return pending_no, {"account": accounts.get(case, owner)}, "" if case == "no_note" \
        else NOTE


@pytest.mark.parametrize("case, status, code, path", REFUSED)
def test_an_application_that_could_not_run_is_refused_when_asked(
        rig: Rig, case: str, status: int, code: str, path: str) -> None:
    """The error its execution would give, at the field at fault, and nothing recorded
    or posted."""
    target, fields, note = _refused_case(rig, case)
    account = fields.pop("account")
    before = rig.tx(lambda tx: rig.gw.ledger.entry_count(tx))
    got, answer = rig.ask(target, account, note, **fields)

    assert got == status, answer
    assert [(e["code"], e["path"]) for e in answer["errors"]][:1] == [(code, path)]
    assert rig.requests_on(target) == []
    assert rig.tx(lambda tx: rig.gw.ledger.entry_count(tx)) == before


def test_the_core_systems_return_waits_while_an_application_waits_for_approval(
        rig: Rig) -> None:
    """The operators' pending decision is not overtaken: the core system's return is
    refused (409 operator_request_pending, naming the request, its action and who
    asked), the application is then approved and runs; once operators reject a request,
    the core system's return is taken."""
    from gateway.errors import Conflict
    owner = rig.account()
    pid, pending_no = rig.parked()
    _, req = rig.ask(pending_no, owner)
    with pytest.raises(Conflict) as refused:
        rig.loop.run(_return(rig, pid))
    approved, done = rig.approve(req["id"])
    other, other_no = rig.parked()
    _, rejected = rig.ask(other_no, owner, user="op2")
    rig.call("POST", f"/ops/api/requests/{rejected['id']}/reject", "sup1", {"note": "不符"})
    returned = rig.loop.run(_return(rig, other))

    problem = refused.value.problems[0]
    assert (refused.value.status, problem.code, problem.path, problem.value) == (
        409, "operator_request_pending", "/id", req["id"])
    assert dict(problem.detail)["pending_request"] == {
        "id": req["id"], "action": "suspense_apply", "requested_by": "op1"}
    assert f"request {req['id']} (suspense_apply, asked by op1)" in problem.message
    assert approved == 200 and done["state"] == "executed"
    assert rig.balance(owner) == ITEM_FEN and rig.item_state(pending_no) == "cleared"
    assert [r["return_id"] for r in rig.tx(lambda tx: exc_schema.returns_of(tx, other))] == [
        returned["return"]["id"]]


def test_an_item_returned_before_the_approval_is_not_applied(rig: Rig) -> None:
    """Checked again when it runs: a return the gateway started meanwhile (its automatic
    return of suspense, which waits on no request) wins, the request fails with the
    rule, and nothing is posted."""
    from gateway.exceptions import returns
    owner = rig.account()
    pid, pending_no = rig.parked()
    _, req = rig.ask(pending_no, owner)
    rig.tx(lambda tx: returns.request_tx(rig.gw, tx, pid, "查无此户", "gateway",
                                         rig.gw.clock.now()))
    approved, done = rig.approve(req["id"])

    assert approved == 200 and done["state"] == "failed"
    assert done["outcome"]["errors"][0]["code"] == "return_already_requested"
    assert rig.balance(owner) == 0 and rig.item_state(pending_no) == "open"


def test_an_applied_payment_returned_later_is_taken_from_the_account_it_went_to(
        rig: Rig) -> None:
    """The customer asks for it back: the return holds the money on the account the
    item was applied to, never on the account the message named."""
    owner = rig.account()
    named = rig.account("另一客户")
    pid, pending_no = rig.parked(named)
    _, req = rig.ask(pending_no, owner)
    rig.approve(req["id"])
    rig.loop.run(_return(rig, pid))
    returned = rig.tx(lambda tx: exc_schema.returns_of(tx, pid))

    assert [r["via"] for r in returned] == ["account"]
    assert rig.tx(lambda tx: rig.gw.ledger.customer_balance(
        tx, owner, rig.gw.work_date)).held_fen == ITEM_FEN
    assert rig.balance(named) == 0


def test_the_command_line_applies_an_item_by_its_pending_number(
        rig: Rig, capsys: pytest.CaptureFixture) -> None:
    """`paygate ops request suspense-apply PENDING_NO --account A --note WHY`; a
    supervisor approves it like any request."""
    def run(user: str, *argv: str) -> tuple[int, str]:
        capsys.readouterr()
        status = cli.ops_command(["--url", rig.rig.url, "--user", user,
                                  "--password", f"{user}-demo", "--json", *argv])
        return status, capsys.readouterr().out

    owner = rig.account()
    _, pending_no = rig.parked()
    asked, out = run("op1", "request", "suspense-apply", pending_no, "--account", owner,
                     "--note", NOTE)
    req = json.loads(out)
    approved, _ = run("sup1", "approve", str(req["id"]))
    missing, refusal = run("op1", "request", "suspense-apply", pending_no, "--note", NOTE)

    assert asked == 0 and req["params"] == {"account": owner, "pending_no": pending_no}
    assert approved == 0 and rig.balance(owner) == ITEM_FEN
    assert missing == 1 and json.loads(refusal)["errors"][0]["path"] == "/params/account"
