"""Whole numbers in what others send are counted before they are read: more digits than
Python reads as an int (4,300) or than the bound has are out of range, never an error."""

from __future__ import annotations

import pytest

from gateway.digits import whole_number


@pytest.mark.parametrize("text, high, low, number", [
    ("12", 200, 1, 12),
    ("06", 200, 1, 6),
    ("0" * 5_000 + "6", 200, 1, 6),
    ("200", 200, 1, 200),
    ("201", 200, 1, None),
    ("0", 200, 1, None),
    ("0", 200, 0, 0),
    ("1" * 5_000, 200, 1, None),
    ("9" * 30, 2**63 - 1, 0, None),
    (str(2**63 - 1), 2**63 - 1, 0, 2**63 - 1),
    (str(2**63), 2**63 - 1, 0, None),
    ("", 200, 0, None),
    ("-1", 200, 0, None),
    (" 1", 200, 0, None),
    ("１２", 200, 0, None),  # full-width digits are not ASCII digits
    ("²", 200, 0, None),    # str.isdigit says yes; int() would refuse it
    (12, 200, 0, None),
    (None, 200, 0, None),
])
def test_whole_number_reads_ascii_digits_within_their_range(text, high, low, number):
    """The number written, or None for anything else, whatever its length."""
    assert whole_number(text, high, low) == number
