"""Numbers we issue and amounts in Chinese capitals."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import numbers
from ledger.capitals import amount_in_capitals


@pytest.mark.parametrize("fen, capitals", [
    (1_023_450, "人民币壹万零贰佰叁拾肆元伍角整"),
    (100_000_005, "人民币壹佰万元零伍分"),
    (10_000, "人民币壹佰元整"),
    (100, "人民币壹元整"),
    (1_600, "人民币壹拾陆元整"),
    (5, "人民币伍分"),
    (50, "人民币伍角整"),
    (55, "人民币伍角伍分"),
    (0, "人民币零元整"),
    (32_504, "人民币叁佰贰拾伍元零肆分"),
    (168_032, "人民币壹仟陆佰捌拾元叁角贰分"),
    (140_950, "人民币壹仟肆佰零玖元伍角整"),
    (101_000, "人民币壹仟零壹拾元整"),
    (1_001_000, "人民币壹万零壹拾元整"),
    (10_700_053, "人民币壹拾万柒仟元伍角叁分"),
    (11_000_000, "人民币壹拾壹万元整"),
    (10_000_000_100, "人民币壹亿零壹元整"),
    (10_001_000_000, "人民币壹亿零壹万元整"),
    (20_005_000_000, "人民币贰亿零伍万元整"),
    (10_100_000_000, "人民币壹亿零壹佰万元整"),
    (11_000_000_000, "人民币壹亿壹仟万元整"),
    (100_000_000_000_000, "人民币壹万亿元整"),
    (123_456_789_012, "人民币壹拾贰亿叁仟肆佰伍拾陆万柒仟捌佰玖拾元壹角贰分"),
])
def test_amount_in_capitals(fen, capitals):
    """Capitals follow the zero, 壹拾 and 整 rules."""
    assert amount_in_capitals(fen) == capitals


@given(st.integers(min_value=0, max_value=10**16))
def test_capitals_never_end_in_zheng_after_fen(fen):
    """整 appears exactly when the amount has no 分 digit, and never after 分."""
    text = amount_in_capitals(fen)

    assert text.startswith("人民币")
    assert text.endswith("整") == (fen % 10 == 0)
    assert "零零" not in text and not text.endswith("零整")


@pytest.mark.parametrize("kind, sequence", [("personal", 1), ("corporate", 9_999_999_999)])
def test_made_customer_numbers_validate(kind, sequence):
    """A customer number and its accounts we make pass our own validation."""
    customer_no = numbers.make_customer(kind, sequence)
    account_no = numbers.make_customer_account(customer_no, "101", 42)

    assert len(customer_no) == 12 and numbers.validate_customer(customer_no)
    assert len(account_no) == 23 and numbers.validate_customer_account(account_no)
    assert numbers.customer_kind_of(account_no) == kind


def test_luhn_reference_value():
    """The check digit is the standard Luhn digit (7992739871 -> 3)."""
    assert numbers.luhn_digit("7992739871") == "3"
    assert numbers.luhn_valid("79927398713")


@given(st.integers(min_value=0, max_value=10**10 - 1), st.integers(0, 22),
       st.integers(1, 9))
def test_every_single_digit_change_is_caught(sequence, position, delta):
    """Changing any one digit of an account number makes it invalid."""
    account_no = numbers.make_customer_account(numbers.make_customer("personal", sequence),
                                               "101", 1)
    digit = (int(account_no[position]) + delta) % 10
    mistyped = account_no[:position] + str(digit) + account_no[position + 1:]

    assert not numbers.validate_customer_account(mistyped)


@pytest.mark.parametrize("text", [
    "１" + numbers.make_customer_account(numbers.make_customer("personal", 1), "101", 1)[1:],
    "1000000000" + "٣" + "1" + "1010000001" + "3",
    "",
    None,
    "12345",
])
def test_non_ascii_or_short_account_numbers_are_invalid(text):
    """Full-width or Arabic-Indic digits and wrong lengths never validate."""
    assert not numbers.validate_customer_account(text)


def test_internal_account_structure():
    """An internal account is institution, currency, business code, sequence and check."""
    account_no = numbers.make_internal_account("1101010001", "1003", 1)

    assert account_no[:10] == "1101010001" and account_no[10:12] == "01"
    assert account_no[12:16] == "1003" and account_no[16:24] == "00000001"
    assert numbers.validate_internal_account(account_no)


@pytest.mark.parametrize("work_date, sequence, expected", [
    (date(2026, 12, 7), 1, "112070001"),
    (date(2026, 1, 31), 9999, "101319999"),
])
def test_pending_write_off_numbers(work_date, sequence, expected):
    """A pending write-off number is kind 1, MMDD and a 4-digit daily sequence."""
    number = numbers.make_pending_no(work_date, sequence)

    assert number == expected and numbers.validate_pending_no(number)


def test_voucher_numbers_split_back():
    """A voucher number is a 2-digit kind and a 10-digit print number."""
    number = numbers.make_voucher_no("30", 1234)

    assert number == "300000001234"
    assert numbers.split_voucher_no(number) == ("30", 1234)
