"""Our 25-digit internal accounts, as far as routing needs them: the clearing accounts.

Structure (DOMAIN.md §4): institution 10 · currency 2 · business code 4 · sequence 8 ·
check 1. The check digit is computed locally, because the ledger package offers no
shared implementation yet: take the ISO 7064 MOD 97-10 check value of the first 24
digits (98 minus the remainder of those digits followed by 00, divided by 97; two
digits, 02 to 98) and keep its last digit, since the layout leaves room for one.
"""

from __future__ import annotations

from routing.fields import is_ascii_digits

ACCOUNT_LENGTH = 25
ACCOUNT_EXPECTED = "25 ASCII digits: institution 10, currency 2, business 4, sequence 8, check 1"


def check_digit(body: str) -> str:
    """The check digit for the first 24 digits of an internal account."""
    assert is_ascii_digits(body, ACCOUNT_LENGTH - 1), "an account body is 24 ASCII digits"
    mod97_value = 98 - (int(body) * 100) % 97
    return str(mod97_value % 10)


def with_check_digit(body: str) -> str:
    """The full 25-digit account for a 24-digit body."""
    return body + check_digit(body)


def account_problem(account: str) -> str | None:
    """The code of the rule a 25-digit internal account breaks, or None when it is sound."""
    if not is_ascii_digits(account, ACCOUNT_LENGTH):
        return "clearing_account_must_be_25_ascii_digits"
    if check_digit(account[:-1]) != account[-1]:
        return "clearing_account_check_digit_invalid"
    return None


def account_institution(account: str) -> str:
    """The institution number that holds an internal account (its first 10 digits)."""
    return account[:10]
