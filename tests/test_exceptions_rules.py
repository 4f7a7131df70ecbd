"""The exception flows' own rules, without processes: when a suspense item is due for
its automatic return, what a request may carry, and the operators' actions."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.errors import PaygateError
from gateway.exceptions import cancels, ops, returns, suspense, wire
from simulators.exceptions import parse_return

PEERS = frozenset({"888200000015"})


class WeekdayCalendar:
    """Monday to Friday are working days, with one declared holiday (a Wednesday)."""

    holiday = date(2026, 12, 16)

    def is_working_day(self, d: date) -> bool:
        return d.weekday() < 5 and d != self.holiday


# (arrived, today, working days, due): counted from the day after arrival, weekends and
# the holiday left out.
DUE = [
    (date(2026, 12, 7), date(2026, 12, 7), 1, False),    # same day
    (date(2026, 12, 7), date(2026, 12, 8), 1, True),     # Monday → Tuesday
    (date(2026, 12, 7), date(2026, 12, 9), 3, False),    # two working days so far
    (date(2026, 12, 7), date(2026, 12, 10), 3, True),    # Tue, Wed, Thu
    (date(2026, 12, 11), date(2026, 12, 14), 2, False),  # Friday → Monday is one
    (date(2026, 12, 11), date(2026, 12, 15), 2, True),   # Mon, Tue
    (date(2026, 12, 12), date(2026, 12, 14), 1, True),   # arrived on a Saturday
    (date(2026, 12, 15), date(2026, 12, 17), 2, False),  # the Wednesday is a holiday
    (date(2026, 12, 15), date(2026, 12, 18), 2, True),   # Thu, Fri
    (date(2026, 1, 5), date(2026, 12, 18), 30, True),    # long overdue
]


@pytest.mark.parametrize("arrived, today, days, expected", DUE)
def test_suspense_is_due_after_working_days(arrived, today, days, expected):
    """An item is due once the given number of working days has passed since arrival."""
    assert suspense.due(WeekdayCalendar(), arrived, today, days) is expected


DAYS = [(1, None), (3, None), (30, None), (0, "suspense_return_days_out_of_range"),
        (31, "suspense_return_days_out_of_range"), (True, "suspense_return_days_out_of_range"),
        ("3", "suspense_return_days_out_of_range")]


@pytest.mark.parametrize("days, code", DAYS)
def test_automatic_return_days_are_bounded(days, code):
    """The configured number of working days is a whole number from 1 to 30."""
    try:
        got = suspense.check_days(days)
    except PaygateError as exc:
        got = exc.code

    assert got == (days if code is None else code)


REASONS = [
    (returns.check_reason, "收款人账号不存在", "收款人账号不存在"),
    (returns.check_reason, "  padded  ", "padded"),
    (returns.check_reason, "", "return_reason_malformed"),
    (returns.check_reason, "   ", "return_reason_malformed"),
    (returns.check_reason, None, "return_reason_malformed"),
    (returns.check_reason, "x" * 101, "return_reason_malformed"),
    (cancels.check_reason, None, None),
    (cancels.check_reason, "客户撤销", "客户撤销"),
    (cancels.check_reason, 7, "field_must_be_text"),  # a number is no text at all
    (cancels.check_reason, "x" * 257, "cancel_reason_malformed"),
    # The reason goes out in the message's XML: text a name may not hold is refused
    # before anything is done (a NUL once failed the return's message, and a cancel 500).
    (returns.check_reason, "a\u0000b", "text_has_control_or_invisible_characters"),
    (returns.check_reason, "退\u202e回", "text_has_control_or_invisible_characters"),
    (cancels.check_reason, "x\u0000y", "text_has_control_or_invisible_characters"),
    (cancels.check_reason, "撤\u200b销", "text_has_control_or_invisible_characters"),
]


@pytest.mark.parametrize("check, given, expected", REASONS)
def test_reasons_are_checked(check, given, expected):
    """A return needs a reason that fits its /H20/ line; a cancel's is optional text."""
    try:
        got = check(given)
    except PaygateError as exc:
        got = exc.code

    assert got == expected


PEER_RETURNS = [
    ({"sender": "888200000015", "msg_id": "2026120700000001"}, None),
    ([], "body_must_be_a_json_object"),
    ({"sender": "999100000019", "msg_id": "1"}, "sender_must_be_a_simulated_peer"),
    ({"sender": "888200000015"}, "field_required"),
    ({"sender": "888200000015", "msg_id": "1", "reason": ""}, "return_reason_malformed"),
    ({"sender": "888200000015", "msg_id": "1", "amount": 3}, "field_unknown"),
]


@pytest.mark.parametrize("body, code", PEER_RETURNS)
def test_peer_return_requests_are_checked(body, code):
    """/sim/peer/return names a simulated peer and the payment's MsgId."""
    try:
        parse_return(body, PEERS)
        got = None
    except PaygateError as exc:
        got = exc.code

    assert got == code


TX_IDS = [("2026120700000001", True), ("1", True), ("20261207000000011", False),
          ("ABC", False)]


@pytest.mark.parametrize("tx_id, named", TX_IDS)
def test_requests_name_the_transaction_only_when_its_id_fits(tx_id, named):
    """OrgnlTx carries the transaction id only when it is at most 16 digits."""
    payment = {"tx_id": tx_id, "payer_bank": "999100000027", "payee_bank": "888200000023",
               "business_type": "A100"}

    assert (wire.original_tx_of(payment) is not None) is named


def test_operators_actions_join_the_console_with_their_approval_rules():
    """The console offers the exception actions, the money-moving ones under dual control."""
    if not ops.console_present():
        pytest.skip("the operators' console is not part of this checkout")
    from gateway.ops import actions, control

    registered = ops.register()

    assert registered
    assert {name: control.RULES[name].needs_approval for name in ops.ACTIONS} == {
        "return": True, "npc_cancel": True, "status_query": False, "suspense_keep": False,
        "suspense_release": True, "suspense_apply": True, "suspense_return": True}
    assert all(callable(actions.EXECUTORS[name]) for name in ops.ACTIONS)


# A return naming only our package's MsgId (no TxId): the package's one transaction of
# the return's amount, paid to the account the return comes from, or none when several.

def _our_beps_package(tmp_path, payees):
    import ledger
    from gateway import payments
    from gateway.beps.schema import TABLES
    from gateway.store import SCHEMA
    db = ledger.connect(f"sqlite:///{tmp_path / 'gw.db'}")
    with db.transaction() as tx:
        for statement in [*SCHEMA, *TABLES]:
            tx.execute(statement, ())
        tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, "
                   "receiver, count, total_fen, state, created_at, updated_at) VALUES "
                   "('P1', 'out', 'beps.121.001.01', '2026121400000009', '999100000019', "
                   "'888200000015', ?, 0, 'netted', 'x', 'x')", (len(payees),))
        for n, (account, amount_fen) in enumerate(payees, 1):
            pid = f"B{n}"
            payments.insert(tx, {
                "id": pid, "direction": "out", "channel": "beps", "state": "settled",
                "msg_type": "beps.121.001.01", "msg_id": f"T{n}", "tx_id": f"T{n}",
                "end_to_end_id": f"E{n}", "sender_direct": "999100000019",
                "receiver_direct": "888200000015", "amount_fen": amount_fen,
                "currency": "CNY", "payer_account": "1", "payer_name": "a",
                "payer_bank": "999100000027", "payee_account": account, "payee_name": "b",
                "payee_bank": "888200000023", "business_type": "A100",
                "business_kind": "02102", "urgency": "normal", "priority": 3,
                "remittance": [], "route": {}, "work_date": "2026-12-14",
                "created_at": "x", "updated_at": "x"})
            tx.execute("INSERT INTO beps_items (payment_id, kind, side, counterparty, "
                       "msg_type, amount_fen, package_id, created_at) VALUES "
                       "(?, 'credit_out', 'D', '888200000015', 'beps.121.001.01', ?, 'P1', "
                       "'x')", (pid, amount_fen))
    return db


NAMED = returns.Named("999100000019", "beps.121.001.01", "2026121400000009")


def test_a_package_named_alone_finds_its_one_transaction_of_that_amount_and_payee(tmp_path):
    db = _our_beps_package(tmp_path, [("6222001", 500), ("6222002", 500), ("6222001", 700)])
    with db.transaction() as tx:
        found, why = returns.original_of(tx, NAMED, 500, "6222002")
        assert (found["id"], why) == ("B2", None)
        found, why = returns.original_of(tx, NAMED, 700, "6222001")
        assert (found["id"], why) == ("B3", None)
        assert returns.original_of(tx, NAMED, 600, "6222001") == (None, None)
        with_tx_id = returns.Named(NAMED.sender, NAMED.msg_type, NAMED.msg_id, "T1")
        found, why = returns.original_of(tx, with_tx_id, 1, "other")
        assert found["id"] == "B1"  # the TxId decides; the amount is checked after
    db.close()


def test_a_package_named_alone_that_fits_several_transactions_names_none(tmp_path):
    db = _our_beps_package(tmp_path, [("6222001", 500), ("6222001", 500)])
    with db.transaction() as tx:
        assert returns.original_of(tx, NAMED, 500, "6222001") == (
            None, "original_not_unique_in_package")
    db.close()
