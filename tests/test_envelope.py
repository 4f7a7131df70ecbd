"""The transport envelope: the 130-character `{H:` header, the `{S:` block, the body,
and the signature policy around them."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from gateway.errors import PaygateError
from gateway.messages import envelope
from gateway.messages.envelope import HEADER_FIELDS, HEADER_LEN, Envelope, Header
from gateway.messages.signing import KeyRing, unsigned_allowed, write_keypair

HEADER = Header("999100000019", "HVPS", "888200000015", "HVPS", "20240520", "101530",
                "hvps.111.001.01", "00000000000000000101", "20240520000000000101", "1", "U")
BODY = b'<?xml version="1.0" encoding="UTF-8"?>\r\n<Document xmlns="urn:x"/>\r\n'
SIGNATURE = base64.b64encode(bytes(range(70))).decode()


def _raw(header: bytes = b"", between: bytes = b"\r\n", signature: bytes | None = None,
         after: bytes = b"\r\n", body: bytes = BODY) -> bytes:
    out = (header or HEADER.encode()) + between
    if signature is not None:
        out += b"{S:" + signature + b"}" + after
    return out + body


def test_header_is_130_characters_with_fields_at_their_offsets() -> None:
    """Every field sits at the offset SPEC.md a.1 gives, padded to its width."""
    text = HEADER.encode().decode("ascii")
    offsets = {}
    at = 3
    for name, width in HEADER_FIELDS:
        offsets[name] = (at, width)
        at += width

    assert len(text) == HEADER_LEN and text.startswith("{H:") and text.endswith("}")
    assert [text[a:a + w] for a, w in (offsets["orig_sender"], offsets["mesg_type"],
                                       offsets["priority"], offsets["reserve"])] == \
        ["999100000019  ", "hvps.111.001.01     ", "1", " " * 9]
    assert offsets["mesg_id"] == (78, 20) and offsets["direction"] == (119, 1)


@pytest.mark.parametrize("raw, signature, after_header", [
    (_raw(), None, b"\r\n"),
    (_raw(between=b"\n"), None, b"\n"),
    (_raw(signature=SIGNATURE.encode()), SIGNATURE, b"\r\n"),
    (_raw(signature=SIGNATURE[:76].encode() + b"\r\n" + SIGNATURE[76:].encode()), SIGNATURE,
     b"\r\n"),
    (_raw(signature=SIGNATURE.encode(), after=b""), SIGNATURE, b"\r\n"),
    (b"\xef\xbb\xbf" + _raw(), None, b"\r\n"),
], ids=["crlf", "lf", "signed", "wrapped-signature", "no-break-before-xml", "bom"])
def test_tolerated_layouts_decode(raw: bytes, signature: str | None,
                                  after_header: bytes) -> None:
    """CR LF or LF, wrapped or unbroken {S: values and a leading BOM are all accepted."""
    env = envelope.decode(raw)

    assert env.header == HEADER
    assert env.signature == signature
    assert env.after_header == after_header
    assert env.body == BODY


@pytest.mark.parametrize("raw", [
    _raw(), _raw(between=b"\n"), _raw(signature=SIGNATURE.encode(), after=b""),
    _raw(signature=SIGNATURE[:76].encode() + b"\r\n" + SIGNATURE[76:].encode(),
         after=b"\n"),
], ids=["crlf", "lf", "no-break", "wrapped"])
def test_round_trip_keeps_the_bytes(raw: bytes) -> None:
    """What was between the blocks on the wire is kept, so encode gives the same bytes."""
    assert envelope.decode(raw).encode() == raw


def _header_with(name: str, value: str) -> bytes:
    text = HEADER.encode().decode()
    at = 3
    for field, width in HEADER_FIELDS:
        if field == name:
            return (text[:at] + value.ljust(width)[:width] + text[at + width:]).encode()
        at += width
    raise AssertionError(name)


@pytest.mark.parametrize("raw, code", [
    (HEADER.encode()[:-2] + b"}" + b"\r\n" + BODY, "header_must_be_130_characters"),
    (b"{X:" + HEADER.encode()[3:] + b"\r\n" + BODY, "envelope_must_start_with_header"),
    (_raw(header=_header_with("priority", "4")), "header_field_malformed"),
    (_raw(header=_header_with("direction", "X")), "header_field_malformed"),
    (_raw(header=_header_with("send_date", "2024052A")), "header_field_malformed"),
    (_raw(header=_header_with("orig_sender", "99910000001")), "header_field_malformed"),
    (_raw(header=_header_with("orig_sender", " 999100000019")), "header_field_malformed"),
    (_raw(header=_header_with("mesg_type", "HVPS.111.001.01")), "header_field_malformed"),
    (_raw(header=_header_with("struct_type", "CMT")), "header_field_malformed"),
    (_raw(header=_header_with("mesg_id", "")), "header_field_malformed"),
    # A NUL inside a field (the fields are checked in one match, joined by NUL).
    (_raw(header=_header_with("mesg_id", "2024\x000520")), "header_field_malformed"),
    (_raw(header=_header_with("send_time", "\x00")), "header_field_malformed"),
    (_raw(header=HEADER.encode()[:60] + "报".encode()[:1] + HEADER.encode()[61:]),
     "header_must_be_ascii"),
    (HEADER.encode() + b"\r\n{S:MEQCIabc\r\n" + BODY, "signature_block_unterminated"),
    (_raw(signature=b"MEQ*CI"), "signature_block_malformed"),
    (_raw(signature=b"A" * 2049), "signature_block_malformed"),
    (_raw(body=b"\r\n"), "body_missing"),
    (HEADER.encode(), "body_missing"),
    (b"", "envelope_must_start_with_header"),
    (b"<?xml version='1.0'?><Document/>", "envelope_must_start_with_header"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_envelopes_are_refused_by_name(raw: bytes, code: str) -> None:
    """Each broken envelope is refused with the code of the rule it breaks."""
    with pytest.raises(PaygateError) as refused:
        envelope.decode(raw)

    assert refused.value.code == code
    assert refused.value.status == 400


def test_every_malformed_header_field_is_reported_at_once() -> None:
    """A header with several bad fields names each of them, not only the first."""
    raw = _raw(header=_header_with("priority", "9")[:119] + b"Z" + _header_with(
        "priority", "9")[120:])

    with pytest.raises(PaygateError) as refused:
        envelope.decode(raw)

    assert {p.path for p in refused.value.problems} == {"{H:/priority", "{H:/direction"}


def test_oversized_message_is_refused_before_splitting() -> None:
    """A message over the envelope bound is refused without looking at its content."""
    with pytest.raises(PaygateError) as refused:
        envelope.decode(b"{H:" + b"0" * envelope.ENVELOPE_LEN_MAX)

    assert refused.value.code == "message_too_large"


def test_a_too_wide_field_cannot_be_encoded() -> None:
    """Building a header with a field wider than its slot is a programming error."""
    with pytest.raises(AssertionError):
        replace(HEADER, mesg_id="1" * 21).encode()


def test_signature_binds_sender_receiver_type_id_and_body(tmp_path) -> None:
    """A signed envelope verifies, and changing any bound part makes it fail."""
    write_keypair(tmp_path, HEADER.orig_sender)
    ring = KeyRing.load(tmp_path, own=[HEADER.orig_sender])
    env = Envelope(HEADER, ring.sign(HEADER, BODY), BODY)

    assert ring.verify(env) == "verified"
    for changed in (replace(env, body=BODY + b" "),
                    replace(env, header=replace(HEADER, mesg_id="00000000000000000102")),
                    replace(env, header=replace(HEADER, orig_receiver="888200000023"))):
        with pytest.raises(PaygateError) as refused:
            ring.verify(changed)
        assert refused.value.code == "signature_invalid"


@pytest.mark.parametrize("sender, mesg_type, allowed", [
    ("0000", "ccms.990.001.02", True),
    ("999100000019", "ccms.990.001.02", True),
    ("0000", "ccms.900.001.02", True),
    ("0000", "saps.606.001.01", True),
    ("0000", "beps.721.001.01", True),
    ("888200000015", "ccms.900.001.02", False),
    ("0000", "hvps.111.001.01", False),
    ("888200000015", "beps.121.001.01", False),
])
def test_unsigned_messages_are_allowed_only_where_captures_show_them(
        sender: str, mesg_type: str, allowed: bool) -> None:
    """Acks travel unsigned from anyone; NPC notices only from the NPC; business never."""
    header = replace(HEADER, orig_sender=sender, mesg_type=mesg_type)

    assert unsigned_allowed(header) is allowed


def test_missing_signature_on_business_is_refused(tmp_path) -> None:
    """An unsigned hvps.111 is refused with signature_required."""
    ring = KeyRing()

    with pytest.raises(PaygateError) as refused:
        ring.verify(Envelope(HEADER, None, BODY))

    assert refused.value.code == "signature_required"
    assert refused.value.status == 401
