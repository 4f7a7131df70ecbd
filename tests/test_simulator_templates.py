"""Property tests: the simulator's text-written ccms.990 and ccms.900 bodies are byte for
byte what the lxml builders write, and refuse what lxml refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.messages import ccms900, ccms990
from gateway.messages.common import GroupHeader, OriginalRef
from simulators import templates

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# Any character at all, with the ones that need care made frequent: the escaped ones,
# white space, non-ASCII text, and those lxml refuses (controls, surrogates, U+FFFE).
_EDGES = st.sampled_from(list("&<>\"'\r\n\t ]") + ["]]>", "中文", "\x00", "\x1f", "\x7f",
                                                       "\x85", "\ud800", "\ufffe", "\uffff",
                                                       "\U0001f600"])
_ANY = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())
ANY_TEXT = st.lists(_EDGES | st.text(_ANY, max_size=4), max_size=6).map("".join)
# The same without the characters lxml refuses, so that most documents get written.
XML_TEXT = ANY_TEXT.map(lambda value: templates._NOT_XML.sub("", value))


def acks(text: st.SearchStrategy[str]) -> st.SearchStrategy[ccms990.CommConf]:
    opt = st.none() | text
    return st.builds(ccms990.CommConf, opt, opt, opt, opt, opt, opt)


def results(text: st.SearchStrategy[str]) -> st.SearchStrategy[ccms900.CommonConf]:
    opt = st.none() | text
    return st.builds(ccms900.CommonConf,
                     st.builds(GroupHeader, opt, opt, opt, opt, opt, opt, opt, opt),
                     st.builds(OriginalRef, opt, opt, opt), opt, opt, opt, opt, opt, opt, opt)


def outcome(build: Callable[[Any], bytes], value: Any) -> bytes | str:
    """The bytes written, or the kind of refusal."""
    try:
        return build(value)
    except ValueError:
        return "refused: ValueError"


@SETTINGS
@given(acks(XML_TEXT))
def test_ack_body_is_what_the_builder_writes(ack: ccms990.CommConf) -> None:
    """Any ccms.990, with any values or none, comes out as the same bytes."""
    expected = ccms990.build(ack)

    assert templates.ack_body(ack) == expected


@SETTINGS
@given(results(XML_TEXT))
def test_result_body_is_what_the_builder_writes(result: ccms900.CommonConf) -> None:
    """Any ccms.900, with any values or none, comes out as the same bytes."""
    expected = ccms900.build(result)

    assert templates.result_body(result) == expected


@SETTINGS
@given(acks(ANY_TEXT), results(ANY_TEXT))
def test_what_lxml_refuses_is_refused(ack: ccms990.CommConf,
                                      result: ccms900.CommonConf) -> None:
    """Values with characters XML cannot hold are refused with ValueError by both, and
    everything else is written the same."""
    expected = (outcome(ccms990.build, ack), outcome(ccms900.build, result))

    assert (outcome(templates.ack_body, ack), outcome(templates.result_body, result)) == expected


def test_a_usual_result_is_the_builders() -> None:
    """A settled HVPS credit's PR04, as the NPC writes it, with Chinese text and escapes
    in the reject information of a refusal."""
    header = GroupHeader("2026120700000001", "2026-12-07T09:00:00", "0000", "0000",
                         "999100000019", "999100000019", "HVPS", "HVPS进入日间处理")
    for reject in (None, "规则 HV0E0004 <rule> & more"):
        result = ccms900.CommonConf(
            header, OriginalRef("2026120700000101", "999100000019", "hvps.111.001.01"),
            "PR04", "HV0I0000", reject_info=reject, processed_on="2026-12-07")

        assert templates.result_body(result) == ccms900.build(result)


def test_a_value_is_looked_at_closely_only_when_it_has_a_character_that_needs_it() -> None:
    """The one search that lets a plain value through (`templates._SPECIAL`) finds every
    character that is refused or escaped, in the whole of Unicode, and no other."""
    for code in range(0x110000):
        char = chr(code)
        needs_care = bool(templates._NOT_XML.search(char)) or char in "&<>\r"

        assert (templates._SPECIAL.search(char) is not None) == needs_care, hex(code)
