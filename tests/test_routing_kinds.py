"""Business kinds (Purp/Prtry) are checked against SPEC.md d.5: a kind it does not list
is refused, and so is a listed kind it does not allow with the business type; the
refusal names the kinds the type allows, or docs/routing.md's list of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.kinds import KINDS, KINDS_OF_TYPE
from routing.request import RouteRequest, request_problems

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("business_type, business_kind, listed", [
    ("A100", "99999", "02101, 02102, 02103"),
    ("A105", "99999", "one of 02108 "),
    ("A105", "02102", "one of 02108 "),
])
def test_a_refused_kind_is_told_the_kinds_its_type_allows(business_type, business_kind,
                                                            listed):
    """The refusal names what the client may send, never a document it does not have."""
    [problem] = request_problems(RouteRequest("999100000027", "888200000023", 100,
                                              business_type, business_kind)).items

    assert listed in problem.expected and "docs/routing.md" in problem.expected
    assert "SPEC" not in problem.expected + problem.message


def test_a_kind_unknown_for_a_type_without_a_list_points_at_the_documented_list():
    [problem] = request_problems(RouteRequest("999100000027", "888200000023", 100,
                                              "E100", "12345")).items

    assert problem.code == "business_kind_unknown"
    assert "docs/routing.md, Business kinds" in problem.expected
    assert "SPEC" not in problem.expected + problem.message


def _doc_rows(heading: str) -> dict[str, str]:
    """The two-column table rows of a section of docs/routing.md, by first cell."""
    text = (ROOT / "docs" / "routing.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("business type", "kind", "---"):
            rows[cells[0]] = cells[1]
    return rows


def test_the_documented_kinds_are_the_ones_checked():
    """docs/routing.md, Business kinds, lists exactly the kinds and the lists per type
    that the checks use, so a client can find what a refusal points at."""
    rows = _doc_rows("Business kinds")
    by_type = {k: v for k, v in rows.items() if not k.isdigit()}
    kinds = {k: v for k, v in rows.items() if k.isdigit()}

    assert kinds == KINDS
    assert by_type == {t: ", ".join(ks) for t, ks in KINDS_OF_TYPE.items()}
