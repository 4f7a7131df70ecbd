"""The per-transaction rules of a BEPS package (package.check_transfer, which the NPC's
reading and our sealing both run) tell a transaction that breaks none without collecting
(package._passes), and give every problem, in order, for one that breaks any: the quick
answer is the rule-by-rule one for transactions of every family, good or not; and the
transactions of a package checked together get what each gets checked alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import Problem
from gateway.messages import beps121, beps122, beps125, beps127, package
from gateway.messages.common import OriginalRef, OriginalTx
from gateway.messages.package import ReturnInfo, Transfer

LAYOUTS = [m.LAYOUT for m in (beps121, beps122, beps125, beps127)]
ON = date(2026, 12, 7)
GOOD = Transfer(tx_id="2026120700000001", debtor_name="示例客户",
                debtor_account="20000000001410300000013", debtor_account_bank="999100000027",
                debtor_bank="999100000027", creditor_bank="888200000023",
                creditor_name="对手客户", creditor_account="6228000000000000001",
                creditor_account_bank="888200000023", amount_fen=10_000,
                business_type="A100", business_kind="02102")
RETURN = ReturnInfo(OriginalRef("2026120600000001", "888200000015", "beps.121.001.01"),
                    OriginalTx("888200000023", "999100000027", "2026120600000001", "A100"))

_banks = st.sampled_from([None, "", "999100000027", "88820000002", "99910000002x",
                          "999100000027 "])
_names = st.sampled_from(["示例客户", "", " ", "\u3000", "a"])
_changes = st.fixed_dictionaries({}, optional={
    "currency": st.sampled_from(["CNY", "USD", "cny"]),
    "debtor_bank": _banks, "creditor_bank": _banks,
    "debtor_account_bank": _banks, "creditor_account_bank": _banks,
    "debtor_name": _names, "creditor_name": _names,
    "debtor_account": _names, "creditor_account": _names,
    "business_type": st.sampled_from(["A100", "A105", "B100", "C102", "D200", "a100",
                                      "A10", "E100"]),
    "business_kind": st.sampled_from(["02102", "0210", "0210x", "09001"]),
    "amount_fen": st.sampled_from([1, 5_000_000, 5_000_001, 10**12]),
    "extra": st.sampled_from([None, RETURN])})


def _rule_by_rule(layout: package.Layout, t: Transfer) -> list[Problem]:
    p: list[Problem] = []
    passes = package._passes
    package._passes = lambda layout, t: False
    try:
        package.check_transfer(layout, None, t, p)
    finally:
        package._passes = passes
    return p


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(LAYOUTS), _changes)
def test_a_transaction_passes_quickly_only_when_no_rule_finds_a_problem(layout, changes):
    t = replace(GOOD, **changes)
    slow = _rule_by_rule(layout, t)
    quick: list[Problem] = []
    package.check_transfer(layout, None, t, quick)

    assert quick == slow
    if package._passes(layout, t):
        assert slow == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.code for layout in LAYOUTS])
def test_the_transactions_of_a_package_checked_together_get_what_each_gets_alone(layout):
    transfers = [GOOD, replace(GOOD, creditor_name="\u3000"),
                 replace(GOOD, business_type="A105", extra=RETURN),
                 replace(GOOD, amount_fen=10**12), replace(GOOD, debtor_bank=None)]

    together = package.check_items(layout, transfers, ON)

    assert together == [package.check_item(layout, t, ON) for t in transfers]
    assert together[1] and together[4]
    if layout is beps121.LAYOUT:
        assert together[0] == [] and together[3]


class _Counted:
    """A compiled pattern whose fullmatch calls are counted."""

    def __init__(self, pattern):
        self.pattern, self.calls = pattern, 0

    def fullmatch(self, text):
        self.calls += 1
        return self.pattern.fullmatch(text)


def test_a_packages_shared_codes_are_matched_once_not_once_a_transaction(monkeypatch):
    """A thousand transactions with one set of banks and business codes, each its own
    payee: the codes' patterns are matched once for them all, and every transaction still
    passes or fails on its own names and accounts (the one with a blank account is then
    checked rule by rule, which matches its codes again)."""
    monkeypatch.setattr(package, "_codes_passing", set())
    kind = _Counted(package.BUSINESS_KIND)
    monkeypatch.setattr(package, "BUSINESS_KIND", kind)
    transfers = [replace(GOOD, tx_id=f"20261207{n:08d}", creditor_account=f"6228{n:015d}")
                 for n in range(1000)]
    transfers[500] = replace(transfers[500], creditor_account=" ")

    found = package.check_items(beps121.LAYOUT, transfers, ON)

    assert kind.calls == 2
    assert [n for n, problems in enumerate(found) if problems] == [500]
    assert [p.code for p in found[500]] == ["party_field_required"]


def test_codes_passing_in_one_family_are_judged_again_in_another(monkeypatch):
    """The same codes found good in a family whose accounts may leave out their bank
    (beps.122) are refused in one that requires it (beps.121): what was found passing is
    kept with what of the family the rules read."""
    monkeypatch.setattr(package, "_codes_passing", set(), raising=False)
    t = replace(GOOD, debtor_account_bank=None)

    assert package.check_item(beps122.LAYOUT, t, ON) == []
    assert [p.code for p in package.check_item(beps121.LAYOUT, t, ON)] != []
