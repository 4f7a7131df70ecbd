"""Ours is at least as strict: whatever corruption of a valid message the published
schema rejects, our schema rejects too.

Corruptions are generated from each type's example: drop an element, make a text too
long, put a bad code into a field, add an unknown element, break an amount. The number
of examples is bounded so that the whole file runs in well under a minute.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.messages import codec, xml
from gateway.messages.examples import EXAMPLES
from message_schemas import catalogue

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cnaps"
REFERENCE = SHARED / "reference-xsd"
ISO_SCHEMA = {"hvps.111.001.01": "pacs.008.001.02", "hvps.112.001.01": "pacs.009.001.02"}
PUBLISHED = sorted(code for code, row in catalogue.CATALOGUE.items() if row.published)
BAD_AMOUNTS = ["-1.00", "1.2.3", "abc", "1e5", "12345678901234567890.00", "", " ", "1.123456",
               "+", "NaN"]
BAD_CODES = ["ZZZZ", "", "X" * 41, "pr04", "中文", "0"]

pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared is not present")


@lru_cache(maxsize=None)
def reference(code: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(REFERENCE / f"{ISO_SCHEMA.get(code, code)}.xsd")))


@lru_cache(maxsize=None)
def example_root(code: str) -> etree._Element:
    return xml.parse(codec.build_body(code, EXAMPLES[code]()))


def _elements(root: etree._Element) -> list[etree._Element]:
    return [el for el in root.iter() if el is not root and isinstance(el.tag, str)]


def _leaves(root: etree._Element) -> list[etree._Element]:
    return [el for el in _elements(root) if len(el) == 0]


@st.composite
def corrupted(draw: st.DrawFn, code: str) -> tuple[str, etree._Element]:
    root = copy.deepcopy(example_root(code))
    kind = draw(st.sampled_from(["drop", "too_long", "bad_code", "extra", "bad_amount"]))
    if kind == "drop":
        victim = draw(st.sampled_from(_elements(root)))
        victim.getparent().remove(victim)
    elif kind == "too_long":
        leaf = draw(st.sampled_from(_leaves(root)))
        leaf.text = (leaf.text or "") + "9" * draw(st.integers(1, 300))
    elif kind == "bad_code":
        draw(st.sampled_from(_leaves(root))).text = draw(st.sampled_from(BAD_CODES))
    elif kind == "extra":
        parent = draw(st.sampled_from([root] + [el for el in _elements(root) if len(el)]))
        at = draw(st.integers(0, len(parent)))
        ns = etree.QName(root).namespace
        parent.insert(at, etree.Element(f"{{{ns}}}{draw(st.sampled_from(['Xtra', 'Nm']))}"))
    else:
        amounts = [el for el in _leaves(root) if el.get("Ccy") is not None]
        if not amounts:
            amounts = _leaves(root)
        target = draw(st.sampled_from(amounts))
        target.text = draw(st.sampled_from(BAD_AMOUNTS))
        if draw(st.booleans()) and target.get("Ccy") is not None:
            target.set("Ccy", draw(st.sampled_from(["cny", "CN", "CNYY", ""])))
    return kind, root


@pytest.mark.parametrize("code", PUBLISHED)
def test_ours_rejects_whatever_the_published_schema_rejects(code: str) -> None:
    """For generated corruptions of the example, published-invalid implies ours-invalid."""
    ours, theirs = catalogue.schema(code), reference(code)

    @settings(max_examples=100, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(corrupted(code))
    def check(case: tuple[str, etree._Element]) -> None:
        kind, root = case
        if not theirs.validate(root):
            assert not ours.validate(root), f"{kind}: ours accepted what the published " \
                f"schema refused: {theirs.error_log.last_error}"

    check()


@pytest.mark.parametrize("code", PUBLISHED)
def test_the_uncorrupted_example_is_valid_for_both(code: str) -> None:
    """The base of the corruptions is valid, so every rejection comes from the corruption."""
    root = example_root(code)

    assert catalogue.schema(code).validate(root)
    assert reference(code).validate(root)
