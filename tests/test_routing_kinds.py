"""Business kinds (Purp/Prtry) are checked against SPEC.md d.5: a kind it does not list
is refused, and so is a listed kind it does not allow with the business type."""

from __future__ import annotations

import pytest

from routing.request import RouteRequest, request_problems


@pytest.mark.parametrize("business_type, business_kind, code", [
    ("A100", "02102", None),
    ("A100", "09001", None),
    ("A105", "02108", None),
    ("A200", "02105", None),
    ("E100", "01200", None),          # a type SPEC.md gives no list for: any listed kind
    ("A100", None, None),             # no kind given: the channel's default
    ("A100", "99999", "business_kind_unknown"),
    ("E100", "12345", "business_kind_unknown"),
    ("A100", "02108", "business_kind_not_allowed_for_type"),
    ("A105", "02102", "business_kind_not_allowed_for_type"),
    ("A100", "0210", "business_kind_must_be_5_ascii_digits"),
])
def test_business_kinds(business_type, business_kind, code):
    problems = request_problems(RouteRequest("999100000027", "888200000023", 100,
                                             business_type, business_kind)).items

    assert [p.code for p in problems] == ([code] if code else [])
    assert all(p.path == "business_kind" for p in problems)
