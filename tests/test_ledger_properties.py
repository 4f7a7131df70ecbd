"""Property tests: any sequence of ledger operations keeps every invariant of the books,
and every refused operation changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import CreditResult, LedgerError
from ledger.chart import HOLDS_IN_TRANSIT, SUSPENSE
from ledger.dayend import day_rows_from_lines
from ledger.holds import HELD, find_hold
from ledger.testing import WORK_DATE, customer_account, fresh_books

NAMES = ["张三", "李四", "王五"]
ACCOUNT_COUNT = len(NAMES)
amounts = st.integers(min_value=1, max_value=50_000)
picks = st.integers(min_value=0, max_value=30)
account_picks = st.integers(min_value=0, max_value=ACCOUNT_COUNT)  # the last is unknown

operations = st.one_of(
    st.tuples(st.just("deposit"), account_picks, amounts),
    st.tuples(st.just("hold"), account_picks, amounts),
    st.tuples(st.sampled_from(["release", "settle", "net"]), picks),
    st.tuples(st.just("settle_net"), st.integers(0, 60_000), st.integers(0, 60_000)),
    st.tuples(st.just("credit"), account_picks, st.booleans(), amounts, st.booleans()),
    st.tuples(st.just("clear"), picks, account_picks),
    st.tuples(st.just("return"), picks),
    st.tuples(st.just("reverse"), picks),
    st.tuples(st.just("fee"), account_picks, st.integers(1, 300_000_000)),
    st.tuples(st.sampled_from(["freeze", "unfreeze", "close"]), account_picks),
    st.tuples(st.just("replay"), picks),
    st.tuples(st.just("close_day")),
    st.tuples(st.just("bad_amount"), account_picks, st.sampled_from([0, -5, 2.5, True])),
)


class Run:
    """Applies generated operations to fresh books and checks the invariants after each."""

    def __init__(self) -> None:
        self.db, self.led = fresh_books(clearing_fen=1_000_000)
        self.accounts = [customer_account(n + 1) for n in range(ACCOUNT_COUNT)]
        self.accounts.append(customer_account(99))  # never opened
        with self.db.transaction() as tx:
            for number, name in zip(self.accounts, NAMES):
                self.led.open_customer_account(tx, number, name, "personal", WORK_DATE)
                self.led.deposit(tx, f"opening:{number}", number, 100_000, WORK_DATE)
        self.day = WORK_DATE
        self.holds: list[int] = []
        self.pending: list[str] = []
        self.entries: list[int] = []
        self.calls: list[tuple[str, tuple, object]] = []
        self.serial = 0

    def apply(self, op: tuple) -> None:
        before = self.snapshot()
        try:
            with self.db.transaction() as tx:
                method, args, outcome = self.call(tx, op)
        except LedgerError:
            assert self.snapshot() == before, f"refused {op} changed the books"
            return
        if method:
            self.calls.append((method, args, outcome))
        self.check_invariants()

    def call(self, tx, op: tuple) -> tuple[str, tuple, object]:
        self.serial += 1
        event_id, kind = f"e{self.serial}", op[0]
        handler = getattr(self, f"op_{kind}")
        return handler(tx, event_id, *op[1:])

    def pick(self, items: list, index: int):
        if not items:
            raise LedgerError("nothing_to_pick")
        return items[index % len(items)]

    def post(self, tx, method: str, *args):
        outcome = getattr(self.led, method)(tx, *args)
        return method, args, outcome

    def op_deposit(self, tx, event_id, account, amount_fen):
        return self.post(tx, "deposit", event_id, self.accounts[account], amount_fen, self.day)

    def op_hold(self, tx, event_id, account, amount_fen):
        result = self.post(tx, "hold", event_id, self.accounts[account], amount_fen, self.day,
                           "p")
        self.holds.append(result[2])
        return result

    def op_release(self, tx, event_id, index):
        return self.post(tx, "release", event_id, self.pick(self.holds, index), self.day)

    def op_settle(self, tx, event_id, index):
        return self.post(tx, "settle", event_id, self.pick(self.holds, index), self.day)

    def op_net(self, tx, event_id, index):
        return self.post(tx, "net", event_id, self.pick(self.holds, index), self.day)

    def op_settle_net(self, tx, event_id, debit_fen, credit_fen):
        return self.post(tx, "settle_net", event_id, "round", debit_fen, credit_fen, self.day)

    def op_credit(self, tx, event_id, account, right_name, amount_fen, netted):
        name = NAMES[account % ACCOUNT_COUNT] if right_name else "某人"
        method = "credit_incoming_netted" if netted else "credit_incoming"
        result = self.post(tx, method, event_id, self.accounts[account], name, amount_fen,
                           self.day, "m")
        credit: CreditResult = result[2]
        self.entries.append(credit.entry_id)
        if credit.kind == "suspense":
            self.pending.append(credit.pending_no)
        return result

    def op_clear(self, tx, event_id, index, account):
        return self.post(tx, "clear_suspense", event_id, self.pick(self.pending, index),
                         self.accounts[account], self.day)

    def op_return(self, tx, event_id, index):
        return self.post(tx, "return_suspense", event_id, self.pick(self.pending, index),
                         self.day)

    def op_reverse(self, tx, event_id, index):
        all_entries = self.holds + self.entries
        return self.post(tx, "reverse", event_id, self.pick(all_entries, index), self.day,
                         "teller01")

    def op_fee(self, tx, event_id, account, amount_fen):
        return self.post(tx, "charge_fee", event_id, self.accounts[account], "hvps",
                         amount_fen, self.day)

    def op_freeze(self, tx, event_id, account):
        self.led.freeze(tx, self.accounts[account], self.day)
        return "", (), None

    def op_unfreeze(self, tx, event_id, account):
        self.led.unfreeze(tx, self.accounts[account], self.day)
        return "", (), None

    def op_close(self, tx, event_id, account):
        self.led.close_account(tx, self.accounts[account], self.day)
        return "", (), None

    def op_bad_amount(self, tx, event_id, account, amount_fen):
        return self.post(tx, "hold", event_id, self.accounts[account], amount_fen, self.day,
                         "p")

    def op_close_day(self, tx, event_id):
        """A close from the stored figures gives what the whole book gives, and leaves
        every stored figure agreeing with the lines."""
        closed = self.led.close_day(tx, self.day)
        assert closed.trial_balance == self.led.trial_balance(tx, self.day)
        assert self.led.day_rows(tx, self.day) == day_rows_from_lines(tx, self.day.isoformat())
        assert self.led.audit(tx).findings == ()
        self.day += timedelta(days=1)
        return "", (), None

    def op_replay(self, tx, event_id, index):
        """Posting an earlier event again returns its first result and changes nothing."""
        method, args, outcome = self.pick(self.calls, index)
        before = self.led.entry_count(tx), self.led.digest(tx)
        again = getattr(self.led, method)(tx, *args)
        if method != "return_suspense":
            assert again == outcome, f"replay of {method} answered differently"
        assert (self.led.entry_count(tx), self.led.digest(tx)) == before
        return "", (), None

    def snapshot(self):
        with self.db.transaction() as tx:
            balances = [self.led.balance(tx, a) for a in self.accounts[:ACCOUNT_COUNT]]
            return self.led.entry_count(tx), self.led.digest(tx), balances

    def check_invariants(self) -> None:
        with self.db.transaction() as tx:
            trial = self.led.trial_balance(tx)
            assert trial.balanced, "debits equal credits and the balance equation holds"
            for account_no in self.accounts[:ACCOUNT_COUNT]:
                assert self.led.balance(tx, account_no) >= 0, "no customer account below zero"
            held_fen = sum(h.amount_fen for h in (find_hold(tx, i) for i in self.holds)
                           if h.state == HELD)
            internal = self.led.internal_accounts
            assert self.led.balance(tx, internal[HOLDS_IN_TRANSIT]) == held_fen
            open_fen = sum(item.amount_fen for item in self.led.open_suspense(tx, self.day))
            assert self.led.balance(tx, internal[SUSPENSE]) == open_fen

    def close(self) -> None:
        self.db.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, min_size=1, max_size=40))
def test_any_sequence_of_operations_keeps_the_books(ops):
    """Whatever happens, the books balance, agree in detail and refuse without effect."""
    run = Run()
    try:
        for op in ops:
            run.apply(op)
    finally:
        run.close()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2]), amounts, st.booleans()),
                min_size=1, max_size=20))
def test_savepoint_rollbacks_leave_balances_agreeing(items):
    """Holds undone by savepoints (deferred balances included) leave the detail agreeing."""
    db, led = fresh_books(clearing_fen=1_000_000)
    account = customer_account(1)
    with db.transaction() as tx:
        led.open_customer_account(tx, account, "张三", "personal", WORK_DATE)
        led.deposit(tx, "d", account, 1_000_000, WORK_DATE)
    kept_fen = 0
    with db.transaction() as tx:
        for n, (_, amount_fen, fail) in enumerate(items):
            with pytest.raises(RuntimeError) if fail else _nothing(), tx.savepoint():
                led.hold(tx, f"h{n}", account, amount_fen, WORK_DATE, "p")
                if fail:
                    raise RuntimeError("the caller's item failed")
            kept_fen += 0 if fail else amount_fen
    with db.transaction() as tx:
        holds_fen = led.balance(tx, led.internal_accounts[HOLDS_IN_TRANSIT])
        balanced = led.trial_balance(tx).balanced
    db.close()

    assert holds_fen == kept_fen and balanced


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
