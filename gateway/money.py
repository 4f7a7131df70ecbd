"""Money is integer fen everywhere inside the product (CONTRACT.md §2).

Amounts given to us are decimal strings in yuan, above 0, with at most two decimals;
anything else is refused, never rounded. Rounding half up applies only to amounts we
compute ourselves (fees, interest).
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

from gateway.errors import Problem, not_text

# An amount in yuan: ASCII digits, no sign, no exponent, at most two decimals.
# 18 integer digits is the ISO ActiveCurrencyAndAmount total-digits bound.
_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,2})?$")
AMOUNT_EXPECTED = "an amount above 0 with at most two decimals"
# The same, for a request that left its amount out: it comes as a JSON string.
AMOUNT_TEXT_EXPECTED = f'{AMOUNT_EXPECTED}, in yuan as a JSON string ("1200.00")'
# An amount otherwise well formed but for zeros before its first digit (00010.00): group
# 1 is the amount they stand before, as it should be written.
_LEADING_ZEROS = re.compile(r"0+((?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,2})?)")
CURRENCY = "CNY"


def currency_problem(currency: object, path: str) -> Problem | None:
    """CNAPS2 clears renminbi only: a currency other than CNY is refused, never
    converted, and the refusal writes the code as messages and CONTRACT.md do (CNY)."""
    if currency == CURRENCY:
        return None
    found = Problem("currency_must_be_cny", path, currency, CURRENCY)
    return replace(found, message=found.describe(f"the currency must be {CURRENCY}"))


def parse_yuan(text: object, path: str = "amount") -> int | Problem:
    """Turn a decimal string in yuan into fen, or say which rule it breaks."""
    wrong_type = not_text(path, text, AMOUNT_EXPECTED, "amount_must_be_a_decimal_string")
    if wrong_type is not None:
        return wrong_type
    if not isinstance(text, str):
        return Problem("amount_must_be_a_decimal_string", path, text, AMOUNT_EXPECTED)
    match = _AMOUNT.match(text)
    zeros = _LEADING_ZEROS.fullmatch(text) if match is None else None
    if zeros is not None and zeros.group(1).strip("0.") == "":
        return Problem("amount_must_be_positive", path, text, AMOUNT_EXPECTED)
    if zeros is not None:
        # Written so, an amount reads as another at a glance (00010.00, 010): refused as
        # CONTRACT.md §2 refuses any other form, never read as if it had no zeros.
        return Problem("amount_must_not_have_leading_zeros", path, text,
                       f"{AMOUNT_EXPECTED}, written without leading zeros "
                       "(one 0 before the decimal point only for an amount below 1: 0.50)",
                       f"amount at {path}: {text!r} has a leading zero; write it without "
                       f"leading zeros ({zeros.group(1)!r}), expected {AMOUNT_EXPECTED}")
    if match is None and re.fullmatch(r"-[0-9]+(\.[0-9]+)?", text):
        return Problem("amount_must_be_positive", path, text, AMOUNT_EXPECTED)
    if match is None and re.fullmatch(r"[0-9]{17,}(\.[0-9]{1,2})?", text):
        return Problem("amount_too_large", path, text,
                       "at most 16 digits before the decimal point")
    if match is None:
        if re.match(r"^[0-9]+\.[0-9]{3,}$", text):
            return Problem("amount_must_have_at_most_two_decimals", path, text, AMOUNT_EXPECTED)
        return Problem("amount_must_be_a_decimal_number", path, text, AMOUNT_EXPECTED)
    whole, frac = match.group(1), (match.group(2) or ".")[1:]
    fen = int(whole) * 100 + int(frac.ljust(2, "0"))
    if fen <= 0:
        return Problem("amount_must_be_positive", path, text, AMOUNT_EXPECTED)
    return fen


def format_yuan(fen: int) -> str:
    """Fen as a plain decimal string with two decimals, as CNAPS2 writes amounts."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def format_yuan_grouped(fen: int) -> str:
    """Fen with thousands separators, for people: 1,234,567.89."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100:,}.{fen % 100:02d}"


def round_half_up_fen(amount_yuan: Decimal) -> int:
    """Only for amounts we compute (fees, interest)."""
    return int((amount_yuan * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
