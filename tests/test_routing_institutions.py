"""Our institutions: numbers, clearing parents and the clearing accounts they resolve to."""

from __future__ import annotations

import pytest

from gateway.errors import PaygateError
from routing import Institutions
from ledger.chart import InternalAccounts
from routing.accounts import account_problem
from routing.defaults import INSTITUTIONS_PATH

HQ_ACCOUNT = "1101000001011003000000012"
EAST_ACCOUNT = "1101010001011003000000010"


def inst(number: str, clearing_parent: str = "", bank_code: str = "",
         clearing_account: str = "", management_parent: str = "") -> dict[str, str]:
    return {
        "institution_no": number, "name": f"Institution {number}",
        "management_parent": management_parent, "clearing_parent": clearing_parent,
        "bank_code": bank_code, "clearing_account": clearing_account,
    }


def codes(error: pytest.ExceptionInfo[PaygateError]) -> list[str]:
    return [problem.code for problem in error.value.problems]


@pytest.mark.parametrize("institution_no, account", [
    ("1101000001", HQ_ACCOUNT),
    ("1101010001", EAST_ACCOUNT),
    ("1101010011", EAST_ACCOUNT),
    ("1101010021", EAST_ACCOUNT),
])
def test_shipped_institutions_resolve_clearing_accounts_upward(institution_no: str,
                                                               account: str) -> None:
    """An institution without an account of its own uses its clearing parent's."""
    institutions = Institutions.load(INSTITUTIONS_PATH)

    assert institutions.clearing_account(institution_no) == account


@pytest.mark.parametrize("bank_a, bank_b, shared", [
    ("999100000027", "999100000035", EAST_ACCOUNT),
    ("999100000035", "999100000027", EAST_ACCOUNT),
    ("999100000027", "999100000027", EAST_ACCOUNT),
    ("999100000019", "999100000027", None),
    ("999100000027", "888200000023", None),
    ("888200000023", "888200000015", None),
])
def test_two_bank_codes_share_a_clearing_account_only_when_both_resolve_to_it(
        bank_a: str, bank_b: str, shared: str | None) -> None:
    """Two branches under one clearing account share it; other banks never do."""
    institutions = Institutions.load(INSTITUTIONS_PATH)

    assert institutions.shared_clearing_account(bank_a, bank_b) == shared


def test_management_only_institutions_have_no_clearing_account() -> None:
    """Institutions ending in an even digit are management-only and hold no account."""
    institutions = Institutions.load(INSTITUTIONS_PATH)

    management = [i.institution_no for i in institutions.all() if not i.accounting]

    assert management == ["1101000002"]


def test_the_branch_clearing_account_is_the_ledger_clearing_account() -> None:
    """The branches' shared clearing account is the ledger's clearing account (1003)."""
    institutions = Institutions.load(INSTITUTIONS_PATH)

    assert institutions.clearing_account("1101010011") == (
        InternalAccounts.for_institution("1101010001").clearing)


@pytest.mark.parametrize("account, expected", [
    ("1101000001011003000000012", None),
    ("1101000001011003000000013", "clearing_account_check_digit_invalid"),
    ("1101000001011003000000021", "clearing_account_check_digit_invalid"),
    ("110100000101100300000001", "clearing_account_must_be_25_ascii_digits"),
    ("11010000010110030000000１2", "clearing_account_must_be_25_ascii_digits"),
])
def test_broken_clearing_accounts_are_named(account: str, expected: str | None) -> None:
    """A clearing account with the wrong length, digits or check digit is refused."""
    assert account_problem(account) == expected


@pytest.mark.parametrize("rows, expected", [
    ([inst("110100000１", bank_code="999100000019")],
     ["institution_no_must_be_10_ascii_digits"]),
    ([inst("11010000x1")], ["institution_no_must_be_10_ascii_digits"]),
    ([inst("1101000001", bank_code="99910000001", clearing_account=HQ_ACCOUNT)],
     ["bank_code_must_be_12_ascii_digits"]),
    ([inst("1101000001", clearing_account="1101000001011003000000013")],
     ["clearing_account_check_digit_invalid"]),
    ([inst("1101000001", clearing_account=HQ_ACCOUNT),
      inst("1101000002", bank_code="999100000019")],
     ["management_institution_must_not_hold_accounts"]),
    ([inst("1101000001", clearing_account=HQ_ACCOUNT), inst("1101000001")],
     ["institution_no_duplicate"]),
    ([inst("1101000001", bank_code="999100000019", clearing_account=HQ_ACCOUNT),
      inst("1101010001", "1101000001", bank_code="999100000019")],
     ["institution_bank_code_duplicate"]),
    ([inst("1101000001", clearing_account=HQ_ACCOUNT, management_parent="1101009998")],
     ["management_parent_unknown"]),
    ([inst("1101000001", clearing_account=HQ_ACCOUNT), inst("1101000002"),
      inst("1101010001", "1101000002")],
     ["clearing_parent_must_be_an_accounting_institution"]),
    ([inst("1101010001", clearing_account=HQ_ACCOUNT)],
     ["clearing_account_institution_unknown"]),
    ([inst("1101000001"), inst("1101010001", "1101000001")],
     ["clearing_account_not_found", "clearing_account_not_found"]),
    ([inst("1101000001", "1101010001"), inst("1101010001", "1101000001")],
     ["clearing_parent_cycle", "clearing_parent_cycle"]),
])
def test_loading_reports_broken_institutions(rows: list[dict[str, str]],
                                             expected: list[str]) -> None:
    """Each broken institution rule is named, all of them at once."""
    with pytest.raises(PaygateError) as error:
        Institutions.load(rows)

    assert codes(error) == expected


def test_a_new_clearing_parent_without_an_account_for_the_chain_fails_to_load() -> None:
    """Moving a branch under a parent that reaches no clearing account is refused."""
    rows = [
        inst("1101000001", clearing_account=HQ_ACCOUNT),
        inst("1101020001"),
        inst("1101020011", "1101020001", bank_code="999100000035"),
    ]

    with pytest.raises(PaygateError) as error:
        Institutions.load(rows)

    assert [p.path for p in error.value.problems] == [
        "rows/1101020001/clearing_parent", "rows/1101020011/clearing_parent"]
