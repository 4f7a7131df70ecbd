"""What each exception path posts, on an in-memory database with the gateway's tables:
the books balance after every step and money moves only on the NPC's stated word."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from routing.defaults import load_default

from gateway import critical, payments
from gateway.errors import PaygateError
from gateway.money import format_yuan
from gateway.exceptions import cancels, ops, outcomes, returns, schema, status
from gateway.messages import hvps111
from gateway.store import SCHEMA
from gateway.outbound import credit_body
from ledger import Ledger
from ledger.chart import SUSPENSE
from ledger.db import connect
from ledger.testing import WORK_DATE, customer_account

BANK, BRANCH, PEER, PEER_BRANCH = "999100000019", "999100000027", "888200000015", "888200000023"
CLEARING_FEN = 10_000_000_00
AMOUNT_FEN = 5_000_00
NOW = WORK_DATE.isoformat() + "T10:00:00+08:00"


@dataclass
class FakeGateway:
    """The parts of gateway.app.Gateway the exception flows use."""

    ledger: Ledger
    notifier: payments.Notifier = field(default_factory=payments.Notifier)
    work_date: Any = WORK_DATE
    hvps_open: bool = True
    hvps_hold: Any = None  # HVPS sending not held (gateway.status_hold)
    settings: Any = field(default_factory=lambda: SimpleNamespace(bank_code=BANK))
    own_banks: frozenset[str] = frozenset({BANK, BRANCH})
    account_bank: str | None = BRANCH  # the branch whose books the ledger keeps
    router: Any = field(default_factory=load_default)
    alerts: list[str] = field(default_factory=list)

    def alert(self, tx: Any, code: str, **detail: Any) -> None:
        self.alerts.append(code)


@pytest.fixture
def books():
    db = connect("sqlite:///:memory:")
    gw = FakeGateway(Ledger())
    with db.transaction() as tx:
        for statement in SCHEMA:
            tx.execute(statement, ())
        critical.install(tx)  # the alerts' closings, as the gateway's store installs them
        gw.ledger.install(tx)
        schema.create_tables(tx)
        gw.ledger.fund_clearing(tx, "opening", CLEARING_FEN, WORK_DATE)
        gw.ledger.open_customer_account(tx, customer_account(1), "收款客户", "personal",
                                        WORK_DATE)
    yield db, gw
    db.close()


def now() -> datetime:
    return datetime.fromisoformat(NOW)


def receive(tx: Any, gw: FakeGateway, account: str, name: str,
            payee_bank: str = BRANCH) -> str:
    """An incoming HVPS credit from the peer, posted as the core handler posts it."""
    pid = "I88820000001520261207000000000001"
    row = {"id": pid, "direction": "in", "channel": "hvps", "state": "received",
           "msg_type": "hvps.111.001.01", "msg_id": "2026120700000001",
           "tx_id": "2026120700000001", "end_to_end_id": "e2e-1", "sender_direct": PEER,
           "receiver_direct": BANK, "amount_fen": AMOUNT_FEN, "currency": "CNY",
           "payer_account": "6222000000000009", "payer_name": "对手客户",
           "payer_bank": PEER_BRANCH, "payee_account": account, "payee_name": name,
           "payee_bank": payee_bank, "business_type": "A100", "business_kind": "02102",
           "urgency": "normal", "priority": 3, "remittance": [], "route": {},
           "work_date": WORK_DATE.isoformat(), "created_at": NOW, "updated_at": NOW}
    payments.insert(tx, row)
    credit = gw.ledger.credit_incoming(tx, f"{pid}:credit", account, name, AMOUNT_FEN,
                                       WORK_DATE, pid)
    new_state = "credited" if credit.kind == "credited" else "suspense"
    payments.transition(tx, row, new_state, "credit", now(), pending_no=credit.pending_no)
    return pid


def send(tx: Any, gw: FakeGateway, payment_id: str) -> dict[str, Any]:
    """The payment as the sender leaves it once the message is on the wire."""
    return payments.transition(tx, payments.get(tx, payment_id), "sent", "hvps_sent", now())


def snapshot(tx: Any, gw: FakeGateway) -> dict[str, Any]:
    return {"customer": gw.ledger.balance(tx, customer_account(1)),
            "clearing": gw.ledger.clearing_balance(tx),
            "open_items": len(gw.ledger.open_suspense(tx, WORK_DATE)),
            "entries": gw.ledger.entry_count(tx),
            "balanced": gw.ledger.trial_balance(tx).balanced}


# Where the incoming credit went, what the NPC says of our return, the original's and
# the return's states afterwards, and how the customer's account, the clearing account
# and the open suspense items moved from the moment the return was requested.
CASES = [
    ("suspense", "PR04", "returned", "settled", 0, -AMOUNT_FEN, -1),
    ("suspense", "PR09", "suspense", "rejected", 0, 0, 0),
    ("suspense", "PR12", "suspense", "queued", 0, 0, 0),
    ("account", "PR04", "returned", "settled", -AMOUNT_FEN, -AMOUNT_FEN, 0),
    ("account", "PR09", "credited", "rejected", 0, 0, 0),
    ("account", "PR24", "credited", "rejected", 0, 0, 0),
    ("account", "PR08", "credited", "cancelled", 0, 0, 0),
    ("account", "PR12", "credited", "queued", -AMOUNT_FEN, 0, 0),
]


@pytest.mark.parametrize("via, npc, original_after, return_after, customer_fen, "
                         "clearing_fen, items", CASES)
def test_a_return_posts_only_what_the_npc_states(books, via, npc, original_after,
                                                 return_after, customer_fen, clearing_fen,
                                                 items):
    """Each NPC status on a return moves exactly the money it says moved."""
    db, gw = books
    name = "收款客户" if via == "account" else "别人"
    with db.transaction() as tx:
        original = receive(tx, gw, customer_account(1), name)
        before = snapshot(tx, gw)
        ret, _ = returns.request_tx(gw, tx, original, "客户要求退回", "core:test", now())
        done = outcomes.apply(gw, tx, send(tx, gw, ret["id"]), npc, "2026-12-07", now(),
                              "hvps", "test")
        after = snapshot(tx, gw)
        states = (payments.get(tx, original)["state"], payments.get(tx, ret["id"])["state"])

    assert done == return_after
    assert states == (original_after, return_after)
    assert after["customer"] - before["customer"] == customer_fen
    assert after["clearing"] - before["clearing"] == clearing_fen
    assert after["open_items"] - before["open_items"] == items
    assert before["balanced"] and after["balanced"]


def test_a_second_word_on_a_settled_return_posts_nothing(books):
    """A late result after a status answer settled the return changes nothing."""
    db, gw = books
    with db.transaction() as tx:
        original = receive(tx, gw, customer_account(1), "别人")
        ret, _ = returns.request_tx(gw, tx, original, "退回", "core:test", now())
        outcomes.apply(gw, tx, send(tx, gw, ret["id"]), "PR04", "2026-12-07", now(),
                       "npc_status")
        entries = gw.ledger.entry_count(tx)
        again = outcomes.apply(gw, tx, payments.get(tx, ret["id"]), "PR04", "2026-12-07",
                               now(), "hvps")

        assert again == "already_final"
        assert gw.ledger.entry_count(tx) == entries


def test_returning_money_the_customer_no_longer_has_is_refused(books):
    """The bank never advances funds: a credited payment whose money is gone cannot be
    returned from the account, and nothing is recorded."""
    db, gw = books
    with db.transaction() as tx:
        original = receive(tx, gw, customer_account(1), "收款客户")
        gw.ledger.hold(tx, "spent", customer_account(1), AMOUNT_FEN, WORK_DATE, "elsewhere")
        with pytest.raises(PaygateError) as refused:
            with tx.savepoint():
                returns.request_tx(gw, tx, original, "退回", "core:test", now())
        count = tx.query_one("SELECT COUNT(*) FROM exc_returns", ())[0]

    assert refused.value.code == "payer_funds_insufficient"
    problem = refused.value.problems[0]
    assert (problem.path, problem.value) == ("/amount", format_yuan(AMOUNT_FEN))
    assert count == 0


def test_a_return_cancelled_before_sending_frees_the_original_for_another(books):
    """Cancelling our return while it is still unsent releases its hold, and the
    original may then be returned again."""
    db, gw = books
    with db.transaction() as tx:
        original = receive(tx, gw, customer_account(1), "收款客户")
        first, _ = returns.request_tx(gw, tx, original, "退回", "core:test", now())
        result, entries = cancels.request_tx(gw, tx, first["id"], None, "core:test", now())
        customer = gw.ledger.balance(tx, customer_account(1))
        second, _ = returns.request_tx(gw, tx, original, "再退回", "core:test", now())

    assert (result["cancelled"], entries) == ("before_sending", [])
    assert customer == AMOUNT_FEN
    assert second["id"] != first["id"]
    assert gw.alerts == ["return_not_settled"]


# Checks made before a return is recorded, in the order they are made.
REFUSALS = [
    ("out", "A100", "settled", "return_only_for_incoming_payments"),
    ("in", "A105", "credited", "return_of_a_return_not_allowed"),
    ("in", "A100", "received", "payment_not_returnable"),
    ("in", "A100", "returned", "payment_not_returnable"),
]


@pytest.mark.parametrize("direction, business_type, state, code", REFUSALS)
def test_returns_are_refused_by_rule(books, direction, business_type, state, code):
    """Only an incoming, non-return payment in suspense or credited can be returned."""
    db, gw = books
    with db.transaction() as tx:
        pid = receive(tx, gw, customer_account(1), "收款客户")
        tx.execute("UPDATE payments SET direction = ?, business_type = ?, state = ? "
                   "WHERE id = ?", (direction, business_type, state, pid))
        with pytest.raises(PaygateError) as refused:
            returns.request_tx(gw, tx, pid, "退回", "core:test", now())

    assert refused.value.code == code


def test_unknown_since_counts_from_the_latest_entry_into_unknown(books):
    """How long a payment has been unknown starts at its latest move into `unknown`."""
    db, gw = books
    with db.transaction() as tx:
        pid = receive(tx, gw, customer_account(1), "收款客户")
        for at, state in (("T10:01", "unknown"), ("T10:02", "unknown"), ("T10:03", "sent"),
                          ("T10:04", "unknown"), ("T10:05", "unknown")):
            tx.execute("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                       "VALUES (?, ?, ?, 'test', '{}')",
                       (pid, WORK_DATE.isoformat() + at, state))
        since = status.unknown_since(tx, pid)

    assert since == WORK_DATE.isoformat() + "T10:04"


def test_an_operators_return_takes_its_reason_from_the_request_note(books):
    """The console's `return` action returns the payment with the request's note as
    reason, recorded as asked by the request's author (not the supervisor carrying it
    out), and hands the lane entry to the console for after the commit."""
    if not ops.console_present():
        pytest.skip("the operators' console is not part of this checkout")
    from gateway.ops import actions
    from gateway.ops import schema as ops_schema

    ops.register()
    db, gw = books
    with db.transaction() as tx:
        ops_schema.create_tables(tx)
        tx.execute("INSERT INTO ops_requests (action, target, note, state, requested_by, "
                   "requested_at, expires_at) VALUES ('return', 'x', '查无此人', 'pending', "
                   "'op1', ?, ?)", (NOW, NOW))
        original = receive(tx, gw, customer_account(1), "别人")
        context = actions.Context(gw, now(), 1, "sup1", "op1")
        outcome = actions.EXECUTORS["return"](context, tx, original, {})
        ret = schema.returns_of(tx, original)[0]

    assert outcome.detail == {"payment": original, "return_id": ret["return_id"]}
    assert (ret["reason"], ret["requested_by"]) == ("查无此人", "op1")
    assert len(outcome.after) == 1


@pytest.mark.parametrize("via", ["suspense", "account"])
def test_a_return_from_suspense_is_paid_by_our_suspense_account(books, via):
    """Money returned from suspense leaves our suspense account, not the account the
    original named (never credited, perhaps no customer's): the return's payer, in its
    view and its hvps.111, is that account in our branch's name; the payee is the
    original sender. Returned from a credited account, that account's holder pays."""
    db, gw = books
    name = "收款客户" if via == "account" else "别人"
    with db.transaction() as tx:
        original = payments.get(tx, receive(tx, gw, customer_account(1), name))
        ret, _ = returns.request_tx(gw, tx, original["id"], "查无此户", "core:test", now())
        view = payments.public_view(payments.get(tx, ret["id"]))
    sent, problems = hvps111.parse(etree.fromstring(credit_body(ret, NOW)))
    expected = ((gw.ledger.internal_accounts[SUSPENSE], "甲市农村商业银行城东支行", BRANCH)
                if via == "suspense" else (customer_account(1), "收款客户", BRANCH))

    assert problems == []
    assert (view["payer"]["account"], view["payer"]["name"], view["payer"]["bank"]) == expected
    assert (sent.debtor_account, sent.debtor_name, sent.debtor_agent) == expected
    assert (view["payee"]["account"], view["payee"]["name"], view["payee"]["bank"]) == (
        original["payer_account"], original["payer_name"], original["payer_bank"])
    assert (sent.creditor_account, sent.creditor_name) == (
        original["payer_account"], original["payer_name"])


@pytest.mark.parametrize("account_bank, payer_bank, payer_name", [
    (BRANCH, BRANCH, "甲市农村商业银行城东支行"),
    (None, BANK, "甲市农村商业银行股份有限公司")])
def test_a_return_from_suspense_is_sent_by_the_branch_holding_the_suspense_account(
        books, account_bank, payer_bank, payer_name):
    """A credit naming as its payee bank another of our banks than the one whose books
    keep the account (here our direct participant) goes to suspense; its return is paid
    by the suspense account at the branch whose books hold it (the ledger's
    institution's bank code, our direct participant when it has none), in that
    branch's name, as payer's bank (DbtrAgt) and in the return's ids, never at the
    bank the original named."""
    db, gw = books
    gw.account_bank = account_bank
    with db.transaction() as tx:
        original = payments.get(tx, receive(tx, gw, customer_account(1), "别人", BANK))
        ret, _ = returns.request_tx(gw, tx, original["id"], "查无此户", "core:test", now())
    sent, problems = hvps111.parse(etree.fromstring(credit_body(ret, NOW)))

    assert original["state"] == "suspense" and problems == []
    assert (sent.debtor_account, sent.debtor_name, sent.debtor_agent) == (
        gw.ledger.internal_accounts[SUSPENSE], payer_name, payer_bank)
    assert ret["end_to_end_id"].startswith(payer_bank)


@pytest.mark.parametrize("account_bank, named, payer_bank", [
    (BRANCH, BANK, BRANCH), (BRANCH, BRANCH, BRANCH), (None, BRANCH, BRANCH),
    (None, BANK, BANK)])
def test_a_return_from_a_credited_account_is_sent_by_the_branch_keeping_the_account(
        books, account_bank, named, payer_bank):
    """Money returned from a customer's account leaves the branch whose books keep that
    account (the ledger's institution's bank code) as payer's bank (DbtrAgt) and in the
    return's ids, whichever of our banks the original named as its payee bank (an item
    applied from suspense may have named another): the returning bank is us, where the
    account is. Only when the institution has no bank code does the original's payee
    bank, ours, stand for it."""
    db, gw = books
    gw.account_bank = account_bank
    with db.transaction() as tx:
        original = payments.get(tx, receive(tx, gw, customer_account(1), "收款客户", named))
        ret, _ = returns.request_tx(gw, tx, original["id"], "客户要求退回", "core:test", now())
        view = payments.public_view(payments.get(tx, ret["id"]))
    sent, problems = hvps111.parse(etree.fromstring(credit_body(ret, NOW)))

    assert original["state"] == "credited" and problems == []
    assert (sent.debtor_account, sent.debtor_name, sent.debtor_agent) == (
        customer_account(1), "收款客户", payer_bank)
    assert view["payer"]["bank"] == payer_bank
    assert ret["end_to_end_id"].startswith(payer_bank)
