"""Our 25-digit internal accounts, as far as routing needs them: the clearing accounts.

Structure (DOMAIN.md §4): institution 10 · currency 2 · business code 4 · sequence 8 ·
check 1. The numbering and its check digit (Luhn) belong to the ledger package
(`ledger.numbers`); routing only checks the accounts named in the institutions file
against it, so that a mistyped clearing account is caught at start-up.
"""

from __future__ import annotations

from ledger.numbers import is_ascii_digits, validate_internal_account

ACCOUNT_LENGTH = 25
ACCOUNT_EXPECTED = "25 ASCII digits: institution 10, currency 2, business 4, sequence 8, check 1"


def account_problem(account: str) -> str | None:
    """The code of the rule a 25-digit internal account breaks, or None when it is sound."""
    if not is_ascii_digits(account, ACCOUNT_LENGTH):
        return "clearing_account_must_be_25_ascii_digits"
    if not validate_internal_account(account):
        return "clearing_account_check_digit_invalid"
    return None


def account_institution(account: str) -> str:
    """The institution number that holds an internal account (its first 10 digits)."""
    return account[:10]
