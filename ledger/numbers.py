"""Numbers the bank issues: customers, accounts, internal accounts, suspense, vouchers.

Structures (DOMAIN.md §4):

| number | digits | structure |
|---|---|---|
| institution | 10 | province 2, city 2, county union 2, branch 4 |
| customer | 12 | kind 1 (1 person, 2 organisation), sequence 10, check 1 |
| customer account | 23 | customer 12, account type 3, sequence 7, check 1 |
| internal account | 25 | institution 10, currency 2, business code 4, sequence 8, check 1 |
| pending write-off | 9 | kind 1, date MMDD 4, daily sequence 4 from 0001 |
| voucher | 12 | voucher kind 2, print number 10 |

Check digit: the Luhn algorithm (ISO/IEC 7812-1, the one UnionPay card numbers use),
computed over every digit before the check digit. It catches every single mistyped
digit and every swap of two adjacent digits except 09/90. Only numbers we issue carry
it; other banks' numbers are opaque strings (CONTRACT.md §2).

Digits are checked against an explicit ASCII set, never `str.isdigit`, which also
accepts full-width and other non-ASCII digits a Chinese-locale client may send.
"""

from __future__ import annotations

from datetime import date
from typing import TypeGuard

ASCII_DIGITS = frozenset("0123456789")

CUSTOMER_KINDS = {"personal": "1", "corporate": "2"}
# Account types (DOMAIN.md §4): current accounts are the ones payments move through.
ACCOUNT_TYPES = {
    "100": "passbook savings", "101": "personal current", "102": "personal time",
    "103": "corporate current", "104": "corporate time",
}
# The currency code banks' internal account numbers use for renminbi.
CURRENCY_CNY = "01"
# Pending write-off kinds: 1 is an incoming payment that could not be credited.
PENDING_KIND_INCOMING = "1"
# A receivable (其他应收款-待销账): money that left our clearing account for a payment whose
# payer could not be debited (ledger.receivables).
PENDING_KIND_RECEIVABLE = "2"
PENDING_SEQUENCE_MAX = 9999


def is_ascii_digits(text: object, length: int | None = None) -> TypeGuard[str]:
    """True for a non-empty string of ASCII digits (of exactly `length`, if given)."""
    if not isinstance(text, str) or not text:
        return False
    if length is not None and len(text) != length:
        return False
    return all(ch in ASCII_DIGITS for ch in text)


def luhn_digit(payload: str) -> str:
    """The Luhn check digit to append to `payload` (ASCII digits)."""
    assert is_ascii_digits(payload), "a Luhn payload is ASCII digits"
    total = 0
    # Walking from the right, the digit next to the check digit is doubled first.
    for position, ch in enumerate(reversed(payload)):
        value = ord(ch) - 48
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return is_ascii_digits(number) and len(number) >= 2 and (
        luhn_digit(number[:-1]) == number[-1]
    )


def make_institution(province: int, city: int, county: int, branch: int) -> str:
    """A 10-digit institution number; accounting institutions end in an odd digit."""
    assert 0 <= province < 100 and 0 <= city < 100 and 0 <= county < 100
    assert 0 <= branch < 10_000
    return f"{province:02d}{city:02d}{county:02d}{branch:04d}"


def validate_institution(number: object) -> bool:
    return is_ascii_digits(number, 10)


def make_customer(kind: str, sequence: int) -> str:
    """A 12-digit customer number: kind, 10-digit sequence, Luhn digit."""
    assert kind in CUSTOMER_KINDS, f"customer kind is one of {sorted(CUSTOMER_KINDS)}"
    assert 0 <= sequence < 10**10, "a customer sequence has 10 digits"
    payload = f"{CUSTOMER_KINDS[kind]}{sequence:010d}"
    return payload + luhn_digit(payload)


def validate_customer(number: object) -> bool:
    if not is_ascii_digits(number, 12):
        return False
    return number[0] in CUSTOMER_KINDS.values() and luhn_valid(number)


def make_customer_account(customer_no: str, account_type: str, sequence: int) -> str:
    """A 23-digit customer account: customer, type, 7-digit sequence, Luhn digit."""
    assert validate_customer(customer_no), "the customer number must be valid"
    assert is_ascii_digits(account_type, 3), "an account type has 3 digits"
    assert 0 <= sequence < 10**7, "an account sequence has 7 digits"
    payload = f"{customer_no}{account_type}{sequence:07d}"
    return payload + luhn_digit(payload)


def validate_customer_account(number: object) -> bool:
    if not is_ascii_digits(number, 23):
        return False
    return validate_customer(number[:12]) and luhn_valid(number)


def customer_kind_of(account_no: str) -> str:
    """'personal' or 'corporate', from the first digit of the customer number."""
    return "personal" if account_no[0] == "1" else "corporate"


def make_internal_account(institution: str, business_code: str, sequence: int,
                          currency: str = CURRENCY_CNY) -> str:
    """A 25-digit internal account: institution, currency, business code, sequence, check."""
    assert validate_institution(institution), "an institution number has 10 digits"
    assert is_ascii_digits(currency, 2), "a currency code has 2 digits"
    assert is_ascii_digits(business_code, 4), "a business code has 4 digits"
    assert 0 <= sequence < 10**8, "an internal account sequence has 8 digits"
    payload = f"{institution}{currency}{business_code}{sequence:08d}"
    return payload + luhn_digit(payload)


def validate_internal_account(number: object) -> bool:
    return is_ascii_digits(number, 25) and luhn_valid(number)


def make_pending_no(work_date: date, sequence: int, kind: str = PENDING_KIND_INCOMING) -> str:
    """A 9-digit pending write-off number: kind, MMDD, daily sequence from 0001."""
    assert is_ascii_digits(kind, 1), "a pending write-off kind is one digit"
    assert 1 <= sequence <= PENDING_SEQUENCE_MAX, "the daily sequence runs 0001-9999"
    return f"{kind}{work_date:%m%d}{sequence:04d}"


def validate_pending_no(number: object) -> bool:
    if not is_ascii_digits(number, 9):
        return False
    month, day, sequence = int(number[1:3]), int(number[3:5]), int(number[5:])
    return 1 <= month <= 12 and 1 <= day <= 31 and sequence >= 1


def make_voucher_no(kind: str, print_number: int) -> str:
    """A 12-digit voucher number: 2-digit voucher kind, 10-digit print number."""
    assert is_ascii_digits(kind, 2), "a voucher kind has 2 digits"
    assert 0 < print_number < 10**10, "a print number has 10 digits"
    return f"{kind}{print_number:010d}"


def validate_voucher_no(number: object) -> bool:
    return is_ascii_digits(number, 12) and int(number[2:]) > 0


def split_voucher_no(number: str) -> tuple[str, int]:
    """(voucher kind, print number) of a valid voucher number."""
    assert validate_voucher_no(number), "not a voucher number"
    return number[:2], int(number[2:])
