"""A message refused for its schema lists every schema error (gateway.messages.schema_report):
each at its element, with the value seen and what the schema expects, within bounds."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.errors import PaygateError
from gateway.messages import codec, schema_report

EXAMPLE = "hvps.111_normal-contract-payment.xml"
DOC = "/Document/FIToFICstmrCdtTrf"
TX = f"{DOC}/CdtTrfTxInf"


def example(*swaps: tuple[bytes, bytes]) -> bytes:
    raw = resources.files("gateway").joinpath("examples", EXAMPLE).read_bytes()
    for old, new in swaps:
        assert old in raw
        raw = raw.replace(old, new, 1)
    return raw


def problems(raw: bytes, every: bool = True) -> list[dict[str, Any]]:
    decoded = codec.decode(raw, bare_ok=True, every_schema_error=every)
    return [p.to_dict() for p in decoded.problems]


# Each fault, made by one swap in the example...
FAULTS = {
    "enumeration": (b"<SttlmPrty>NORM<", b"<SttlmPrty>SLOW<"),
    "element_missing": (b"<SttlmMtd>CLRG</SttlmMtd>", b""),
    "element_unexpected": (b"<Dbtr>", b"<Dbtr><Alias>x</Alias>"),
    "attribute_unknown": (b'Ccy="CNY"', b'Ccy="CNY" Rate="1"'),
    "attribute_missing": (b' Ccy="CNY"', b""),
    "total_digits": (b">86500.50<", b">8650000000000000000.50<"),
    "amount_below_zero": (b">86500.50<", b">-5.00<"),
}
# ...and the one problem it makes: path, value, expected.
TOLD = {
    "enumeration": (f"{TX}/SttlmPrty", "SLOW", "one of NORM, HIGH, URGT"),
    "element_missing": (f"{DOC}/GrpHdr/SttlmInf", None, "the element SttlmMtd here"),
    "element_unexpected": (f"{TX}/Dbtr/Alias", "Alias", "the element Nm here"),
    "attribute_unknown": (f"{TX}/IntrBkSttlmAmt/@Rate", "Rate", "only the attributes Ccy"),
    "attribute_missing": (f"{TX}/IntrBkSttlmAmt/@Ccy", None, "the attribute Ccy"),
    "total_digits": (f"{TX}/IntrBkSttlmAmt", "8650000000000000000.50", "at most 18 digits"),
    # The schema's floor is 0 (minInclusive), but 0 is refused too: said as the rule is.
    "amount_below_zero": (f"{TX}/IntrBkSttlmAmt", "-5.00",
                          "an amount above 0 with at most two decimals"),
}


@pytest.mark.parametrize("name", FAULTS)
def test_each_kind_of_schema_error_names_its_path_value_and_expectation(name: str) -> None:
    """One fault, one problem, said in the message's own names."""
    found = problems(example(FAULTS[name]))

    assert [(p["code"], p["path"], p["value"], p["expected"]) for p in found] == [
        ("schema_violation", *TOLD[name])]
    assert found[0]["message"].startswith("line ")


def test_errors_past_one_libxml2_stops_at_are_listed_in_document_order() -> None:
    """libxml2 checks none of CdtTrfTxInf's children after a missing ChrgBr; every error
    is listed all the same, in the order of the document."""
    raw = example((b"<ChrgBr>DEBT</ChrgBr>", b""), (b"<Dbtr>", b"<Dbtr><Alias>x</Alias>"),
                  (b"<Othr>\n            <Id>6222", b"<Othr>\n            <Code>6222"),
                  (b"0002</Id>\n          </Othr>", b"0002</Code>\n          </Othr>"))
    paths = [p["path"] for p in problems(raw)]
    first = [p["path"] for p in problems(raw, every=False)]

    assert paths == [f"{TX}/InstgAgt", f"{TX}/Dbtr/Alias", f"{TX}/CdtrAcct/Id/Othr/Code"]
    assert first == [f"{TX}/InstgAgt"]


def test_at_most_fifty_are_listed_and_the_rest_counted() -> None:
    """Seventy faults: fifty listed, then one problem counting the twenty others."""
    found = problems(example((b"<Dbtr>", b"<Dbtr>" + b"<Alias>x</Alias>" * 70)))

    assert len(found) == schema_report.ERRORS_LISTED_MAX + 1
    assert {p["code"] for p in found[:-1]} == {"schema_violation"}
    assert (found[-1]["code"], found[-1]["value"]) == ("more_problems_not_shown", 20)
    assert found[-1]["message"].startswith("20 more schema errors")


def test_counting_stops_at_its_bound() -> None:
    """A document with more faults than are ever counted says how many at least."""
    count = schema_report.ERRORS_COUNTED_MAX + 200
    found = problems(example((b"<Dbtr>", b"<Dbtr>" + b"<Alias>x</Alias>" * count)))
    rest = schema_report.ERRORS_COUNTED_MAX - schema_report.ERRORS_LISTED_MAX

    assert (found[-1]["code"], found[-1]["value"]) == ("more_problems_not_shown", rest)
    assert found[-1]["message"].startswith(f"{rest} or more")


def test_a_document_over_the_element_bound_keeps_libxml2_s_list(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ELEMENTS_MAX elements the second walk is not made."""
    raw = example((b"<ChrgBr>DEBT</ChrgBr>", b""), (b"<Dbtr>", b"<Dbtr><Alias>x</Alias>"))
    monkeypatch.setattr(schema_report, "ELEMENTS_MAX", 20)

    assert problems(raw) == problems(raw, every=False)
    assert [p["path"] for p in problems(raw)] == [f"{TX}/InstgAgt"]


def test_a_valid_message_never_takes_the_second_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The accepted path stays libxml2's alone: xmlschema is not even built."""
    def refuse(code: str) -> None:
        raise AssertionError(f"xmlschema asked for {code}")
    monkeypatch.setattr(schema_report, "_schema", refuse)

    assert problems(example()) == []


# Characters XML 1.0 allows in text (no control characters but tab and newline).
XML_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0xD7FF) | st.sampled_from("\t\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mangled_message_gets_problems_never_an_exception(data: st.DataObject) -> None:
    """Elements dropped and texts replaced at random: the refusal is a list of problems,
    each at an element of the message (or the document), never a crash."""
    root = etree.fromstring(example())
    elements = list(root.iter())[1:]
    for el in data.draw(st.lists(st.sampled_from(elements), max_size=6, unique=True)):
        if data.draw(st.booleans()) and el.getparent() is not None:
            el.getparent().remove(el)
        else:
            el.text = data.draw(st.text(XML_TEXT, max_size=40))
    raw = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    try:
        found = problems(raw)
    except PaygateError as exc:  # refused before the schema: not this test's subject
        found = [p.to_dict() for p in exc.problems]

    assert all(p["path"].startswith("/") and p["code"] for p in found)


def test_an_amount_below_zero_is_told_to_be_more_than_zero() -> None:
    """Not the schema's "at least 0", which a 0.00 would also fail (as not positive)."""
    [found] = problems(example(FAULTS["amount_below_zero"]))

    assert found["message"].endswith("an amount must be more than 0 (0 is refused too)")
    assert "at least 0" not in found["message"] + found["expected"]
