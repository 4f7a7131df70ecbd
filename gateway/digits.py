"""Whole numbers written as ASCII digits in what others send: a query parameter, a row id
in a path, a header's lengths.

Python refuses to read more than 4,300 digits as an int (ValueError, sys.int_info), and a
number past 64 bits is refused by the database as a parameter (OverflowError): either
would end a request in a 500 instead of the refusal its rule names. So the digits are
counted before they are read, and a text with more significant digits than the bound
has is out of range without being read at all.
"""

from __future__ import annotations

from typing import Any


def whole_number(text: Any, high: int, low: int = 0) -> int | None:
    """The number `text` writes in ASCII digits when it lies from `low` to `high`, else
    None (not text, empty, any other character, or out of range). Zeros before the first
    digit do not count against the bound: "06" is 6, as the console reads a row id."""
    if not isinstance(text, str) or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > len(str(high)):
        return None
    number = int(significant or "0")
    return number if low <= number <= high else None
