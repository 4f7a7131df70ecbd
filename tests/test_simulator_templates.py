"""Property tests: the simulator's text-written ccms.990 and ccms.900 bodies are byte for
byte what the lxml builders write, and refuse what lxml refuses; an unsigned envelope
is what the envelope module writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.messages import ccms900, ccms990, envelope
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


# Values as the simulator's own usually are: every one there, none to escape, so that the
# documents come out of the one-piece path (`templates._plain`).
PLAIN_TEXT = st.text(st.sampled_from(list("0123456789AZaz.:- _/中文\"'")), max_size=8)


@SETTINGS
@given(st.builds(ccms990.CommConf, PLAIN_TEXT, PLAIN_TEXT, PLAIN_TEXT, PLAIN_TEXT,
                 PLAIN_TEXT, PLAIN_TEXT),
       st.builds(ccms900.CommonConf,
                 st.builds(GroupHeader, *[PLAIN_TEXT] * 7, st.none() | PLAIN_TEXT),
                 st.builds(OriginalRef, PLAIN_TEXT, PLAIN_TEXT, PLAIN_TEXT), PLAIN_TEXT,
                 *[st.none() | PLAIN_TEXT] * 6))
def test_plain_values_written_in_one_piece_are_what_the_builders_write(
        ack: ccms990.CommConf, result: ccms900.CommonConf) -> None:
    """Documents whose values need no care, written in one piece, are the builders'
    bytes, with any of the optional elements there or not."""
    assert templates.ack_body(ack) == ccms990.build(ack)
    assert templates.result_body(result) == ccms900.build(result)


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


def _written(write: Callable[[], bytes]) -> bytes | str:
    """The bytes written, or the kind of refusal."""
    try:
        return write()
    except (AssertionError, UnicodeEncodeError) as exc:
        return f"refused: {type(exc).__name__}"


_FIELD_CHARS = st.sampled_from(list("0123456789 ABCXYZabcxyz."))
# Each field within its width mostly, now and then wider or not ASCII.
_HEADER_FIELDS = st.fixed_dictionaries({
    name: st.text(_FIELD_CHARS, max_size=width)
    | st.text(_FIELD_CHARS | st.just("中"), max_size=width + 2)
    for name, width in envelope.HEADER_FIELDS})


@SETTINGS
@given(_HEADER_FIELDS, st.binary(max_size=40))
def test_an_unsigned_envelope_is_what_the_envelope_module_writes(
        fields: dict[str, str], body: bytes) -> None:
    """Any header, its fields within their widths or wider, ASCII or not: the same bytes
    as Envelope.encode, or the same refusal."""
    header = envelope.Header(**fields)
    expected = _written(lambda: envelope.Envelope(header, None, body).encode())

    assert _written(lambda: templates.unsigned_envelope(header, body)) == expected
