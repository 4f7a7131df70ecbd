"""Small field checks shared by the directory, the institutions and the router.

Digits are checked against an explicit ASCII set, never with `str.isdigit`, because
`isdigit` accepts full-width digits (１２３) that a Chinese-locale client sends easily,
and CNAPS2 bank codes are plain ASCII.
"""

from __future__ import annotations

from datetime import date
from typing import Any

ASCII_DIGITS = frozenset("0123456789")


def is_ascii_digits(text: object, length: int) -> bool:
    """True when `text` is a string of exactly `length` ASCII digits."""
    return (
        isinstance(text, str)
        and len(text) == length
        and all(char in ASCII_DIGITS for char in text)
    )


def cell_text(value: Any) -> str:
    """A CSV cell or a settings value as stripped text; None becomes the empty string."""
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def parse_iso_date(value: Any) -> date | None:
    """A `date`, or an ISO `YYYY-MM-DD` string turned into one; None when unreadable."""
    if isinstance(value, date):
        return value
    text = cell_text(value)
    if len(text) != 10:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def type_matches(pattern: str, business_type: str) -> bool:
    """A business type pattern: an exact type ("A100"), a prefix ("A*") or "*"."""
    if pattern.endswith("*"):
        return business_type.startswith(pattern[:-1])
    return pattern == business_type
