"""Hostile and odd input: each case is accepted or refused with a clear code, and no
input ever escapes as anything but a PaygateError."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import PaygateError
from gateway.messages import codec, envelope, examples, xml
from gateway.messages.envelope import Envelope, Header

NS_990 = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.990.001.02"
HEADER = Header("0000", "HVPS", "999100000019", "HVPS", "20240520", "101531",
                "ccms.990.001.02", "HVPD0000000000000990", "HVPD0000000000000990", "3", "D")
ACK = codec.build_body("ccms.990.001.02", examples.EXAMPLES["ccms.990.001.02"]())
GOOD = Envelope(HEADER, None, ACK).encode()
CREDIT = Envelope(replace_type := HEADER.reply_to(
    orig_sender="999100000019", orig_receiver="888200000015", mesg_type="hvps.111.001.01",
    mesg_id="20240520000000000101", mesg_ref_id="20240520000000000101", direction="U"),
    "MEQCIAAAAA==", codec.build_body("hvps.111.001.01", examples.credit_transfer())).encode()


def outcome(raw: bytes) -> str:
    """'ok', the first problem's code, or the refusal's code; anything else propagates."""
    try:
        decoded = codec.decode(raw, bare_ok=True)
    except PaygateError as exc:
        return exc.code
    return decoded.problems[0].code if decoded.problems else "ok"


def _entities(levels: int) -> bytes:
    defs = b'<!ENTITY e0 "lol">' + b"".join(
        b'<!ENTITY e%d "%s">' % (i, b"&e%d;" % (i - 1) * 10) for i in range(1, levels))
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE Document [' + defs +
            b']>\n<Document xmlns="' + NS_990.encode() + b'">&e%d;</Document>' % (levels - 1))


def _deep(levels: int) -> bytes:
    return (b'<Document xmlns="' + NS_990.encode() + b'">' + b"<a>" * levels +
            b"</a>" * levels + b"</Document>")


def _prefixed() -> bytes:
    body = ACK.decode().replace("<Document xmlns=", "<c:Document xmlns:c=")
    body = body.replace("<", "<c:").replace("<c:/", "</c:").replace("<c:?", "<?")
    return body.replace("<c:c:", "<c:").encode()


CASES = [
    ("plain", GOOD, "ok"),
    ("bom before header", b"\xef\xbb\xbf" + GOOD, "ok"),
    ("bom before xml", GOOD.replace(b"\r\n<?xml", b"\r\n\xef\xbb\xbf<?xml"), "ok"),
    ("lf everywhere", GOOD.replace(b"\r\n", b"\n"), "ok"),
    ("crlf inside xml", Envelope(HEADER, None, ACK.replace(b"\n", b"\r\n")).encode(), "ok"),
    ("namespace prefixes", Envelope(HEADER, None, _prefixed()).encode(), "ok"),
    ("comments and pis", Envelope(HEADER, None, ACK.replace(
        b"<ComConf>", b"<!-- note --><?pi x?><ComConf>")).encode(), "ok"),
    ("cdata text", Envelope(HEADER, None, ACK.replace(
        b"<MsgPrcCd>PM1I0000", b"<MsgPrcCd><![CDATA[PM1I0000]]>")).encode(), "ok"),
    ("schema location ignored", Envelope(HEADER, None, ACK.replace(
        b"<Document ", b'<Document xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:schemaLocation="urn:x http://127.0.0.1:9/evil.xsd" ')).encode(), "ok"),
    ("lowercase utf-8 declaration", GOOD.replace(b'encoding="UTF-8"', b'encoding="utf-8"'),
     "ok"),
    ("wrapped signature", CREDIT.replace(b"MEQCIAAAAA==", b"MEQCIA\r\nAAAA=="), "ok"),
    ("no break after signature", CREDIT.replace(b"==}\r\n", b"==}"), "ok"),
    ("billion laughs", _entities(10), "xml_doctype_not_allowed"),
    ("external entity", b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<Document xmlns="' + NS_990.encode() + b'">&x;</Document>', "xml_doctype_not_allowed"),
    ("parameter entity", b'<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x">%p;]>'
     b"<Document/>", "xml_doctype_not_allowed"),
    ("undeclared entity", ACK.replace(b"PM1I0000", b"&boom;"), "xml_not_well_formed"),
    ("xinclude not processed", ACK.replace(
        b"<ComConf>", b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
        b'href="file:///etc/passwd"/><ComConf>'), "schema_violation"),
    ("deep but bounded", _deep(200), "schema_violation"),
    ("too deep", _deep(300), "xml_too_deep"),
    ("far too deep", _deep(100_000), "xml_too_deep"),
    ("oversized body", b"<Document>" + b" " * xml.BODY_LEN_MAX + b"</Document>",
     "xml_too_large"),
    ("oversized envelope", GOOD + b" " * envelope.ENVELOPE_LEN_MAX, "message_too_large"),
    ("declared gbk", GOOD.replace(b'encoding="UTF-8"', b'encoding="GBK"'),
     "xml_encoding_must_be_utf8"),
    ("declared utf-16", GOOD.replace(b'encoding="UTF-8"', b"encoding='UTF-16'"),
     "xml_encoding_must_be_utf8"),
    ("utf-16 body", ACK.decode().replace('encoding="UTF-8"', "").encode("utf-16"),
     "xml_must_be_utf8"),
    ("invalid utf-8", ACK.replace(b"PM1I0000", b"PM1I\xc3\x28000"), "xml_must_be_utf8"),
    ("overlong utf-8", ACK.replace(b"PM1I0000", b"PM1I\xc0\xaf000"), "xml_must_be_utf8"),
    ("nul byte", ACK.replace(b"PM1I0000", b"PM1I\x00000"), "xml_not_well_formed"),
    ("header 129", GOOD[:128] + GOOD[129:], "header_must_be_130_characters"),
    ("header 131", GOOD[:129] + b" " + GOOD[129:], "header_must_be_130_characters"),
    ("header not ascii", GOOD[:20] + "行".encode()[:1] + GOOD[21:], "header_must_be_ascii"),
    ("header field shifted", GOOD[:5] + GOOD[6:19] + b" " + GOOD[19:],
     "header_field_malformed"),
    ("truncated header", GOOD[:60], "header_must_be_130_characters"),
    ("header only", GOOD[:132], "body_missing"),
    ("truncated body", GOOD[:-40], "xml_not_well_formed"),
    ("signature unterminated", CREDIT.replace(b"==}", b"=="), "signature_block_unterminated"),
    ("signature with junk", CREDIT.replace(b"MEQCIAAAAA==", b"MEQ<CI>"),
     "signature_block_malformed"),
    ("missing signature on business", CREDIT.replace(b"{S:MEQCIAAAAA==}\r\n", b""), "ok"),
    ("empty", b"", "xml_not_well_formed"),
    ("only whitespace", b" \r\n\t", "xml_not_well_formed"),
    ("text before xml", b"hello" + ACK, "xml_not_well_formed"),
    ("text before header", b"hello" + GOOD, "xml_not_well_formed"),
    ("unknown namespace", ACK.replace(NS_990.encode(), b"urn:x"), "message_namespace_unknown"),
    ("no namespace", ACK.replace(b' xmlns="' + NS_990.encode() + b'"', b""),
     "message_namespace_unknown"),
    ("root not Document", ACK.replace(b"Document", b"Documents"), "root_must_be_document"),
    ("many attributes", ACK.replace(b"<ComConf>", b"<ComConf " + b" ".join(
        b'a%d="x"' % i for i in range(5000)) + b">"), "schema_violation"),
]


@pytest.mark.parametrize("name, raw, expected", CASES, ids=[c[0] for c in CASES])
def test_input_is_accepted_or_refused_by_name(name: str, raw: bytes, expected: str) -> None:
    """Each odd input ends as 'ok' or as the named refusal, never as a crash."""
    assert outcome(raw) == expected


def test_missing_signature_is_refused_when_signatures_are_checked() -> None:
    """With a key ring, an unsigned business message is refused as unsigned."""
    from gateway.messages.signing import KeyRing

    with pytest.raises(PaygateError) as refused:
        codec.decode(CREDIT.replace(b"{S:MEQCIAAAAA==}\r\n", b""), KeyRing())

    assert refused.value.code == "signature_required"


def test_prefixed_document_maps_like_the_plain_one() -> None:
    """Namespace prefixes change nothing in the object the message maps to."""
    plain = codec.decode(ACK, bare_ok=True).obj

    assert codec.decode(_prefixed(), bare_ok=True).obj == plain


def test_entity_bomb_is_refused_quickly() -> None:
    """The refusal happens before any expansion: well under a second."""
    started = time.perf_counter()

    assert outcome(_entities(30)) == "xml_doctype_not_allowed"
    assert time.perf_counter() - started < 1.0


def test_every_truncation_of_an_envelope_is_handled() -> None:
    """Cutting a signed credit at any byte gives a refusal or, at the very end, 'ok'."""
    results = {outcome(CREDIT[:cut]) for cut in range(len(CREDIT) + 1)}

    assert "ok" in results
    assert results <= {"ok", "envelope_must_start_with_header", "header_must_be_130_characters",
                       "body_missing", "signature_block_unterminated", "xml_not_well_formed",
                       "signature_block_malformed", "header_must_be_ascii",
                       "header_field_malformed"}


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(CREDIT) - 1), st.integers(0, 255)),
                min_size=1, max_size=8))
def test_random_byte_changes_never_crash(changes: list[tuple[int, int]]) -> None:
    """Whatever bytes are changed, decode answers with an object or a PaygateError."""
    raw = bytearray(CREDIT)
    for at, value in changes:
        raw[at] = value

    assert isinstance(outcome(bytes(raw)), str)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(raw: bytes) -> None:
    """Arbitrary bytes, with or without a valid header in front, never crash decode."""
    assert isinstance(outcome(raw), str)
    assert isinstance(outcome(GOOD[:132] + raw), str)
