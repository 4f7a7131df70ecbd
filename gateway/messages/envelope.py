"""The CNAPS2 transport envelope: `{H:` header, optional `{S:` block, XML body.

The `{H:` block is 130 ASCII characters (SPEC.md a.1), followed by CR LF:

    {H: | version 2 | orig sender 14 | sender SID 4 | orig receiver 14 | receiver SID 4 |
    send date 8 | send time 6 | struct type 3 | message type 20 | message id 20 |
    message ref id 20 | priority 1 | direction 1 | reserve 9 | }

Bank codes are left-aligned and space-padded (the NPC is `0000` and 10 spaces). The
`{S:` block carries a base64 signature; captured traffic wraps it at 76 characters or
omits the line break before `<?xml`, so the decoder tolerates both and remembers what it
saw, which is what makes a decode/encode round trip byte-exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TypeVar

from gateway.errors import PaygateError, Problem

HEADER_LEN = 130
SIGNATURE_LEN_MAX = 2048  # the field table's bound on the {S: value
ENVELOPE_LEN_MAX = 8 * 1024 * 1024  # a 1,000-transaction package is about 2 MiB

# (name, width); offsets follow from the order. BeginFlag and EndFlag are literals.
HEADER_FIELDS: tuple[tuple[str, int], ...] = (
    ("version", 2),
    ("orig_sender", 14),
    ("orig_sender_sid", 4),
    ("orig_receiver", 14),
    ("orig_receiver_sid", 4),
    ("send_date", 8),
    ("send_time", 6),
    ("struct_type", 3),
    ("mesg_type", 20),
    ("mesg_id", 20),
    ("mesg_ref_id", 20),
    ("priority", 1),
    ("direction", 1),
    ("reserve", 9),
)
assert 3 + sum(w for _, w in HEADER_FIELDS) + 1 == HEADER_LEN

_FIELD_RULES: dict[str, tuple[str, str]] = {
    "version": (r"[0-9]{2}", "two digits, e.g. 02"),
    "orig_sender": (r"[0-9]{4}|[0-9]{12}", "a 12-digit bank code or 0000 (NPC)"),
    "orig_receiver": (r"[0-9]{4}|[0-9]{12}", "a 12-digit bank code or 0000 (NPC)"),
    "orig_sender_sid": (r"[A-Z]{4}", "a system code such as HVPS or BEPS"),
    "orig_receiver_sid": (r"[A-Z]{4}", "a system code such as HVPS or BEPS"),
    "send_date": (r"[0-9]{8}", "yyyyMMdd"),
    "send_time": (r"[0-9]{6}", "HHmmss"),
    "struct_type": (r"XML", "XML"),
    "mesg_type": (r"[a-z]{4}\.[0-9]{3}\.[0-9]{3}\.[0-9]{2}", "a type such as hvps.111.001.01"),
    "mesg_id": (r"[0-9A-Za-z]{1,20}", "1 to 20 letters or digits"),
    "mesg_ref_id": (r"[0-9A-Za-z]{1,20}", "1 to 20 letters or digits"),
    "priority": (r"[123]", "1, 2 or 3"),
    "direction": (r"[UD]", "U (to the NPC) or D (from the NPC)"),
}
_FIELD_RE = {name: re.compile(pattern) for name, (pattern, _) in _FIELD_RULES.items()}
_SPACE = re.compile(rb"\s+")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Header:
    orig_sender: str
    orig_sender_sid: str
    orig_receiver: str
    orig_receiver_sid: str
    send_date: str
    send_time: str
    mesg_type: str
    mesg_id: str
    mesg_ref_id: str
    priority: str = "3"
    direction: str = "U"
    reserve: str = ""
    version: str = "02"
    struct_type: str = "XML"

    def encode(self) -> bytes:
        parts = ["{H:"]
        for name, width in HEADER_FIELDS:
            value = getattr(self, name)
            assert len(value) <= width, f"header field {name} is wider than {width}: {value!r}"
            parts.append(value.ljust(width))
        parts.append("}")
        text = "".join(parts)
        assert len(text) == HEADER_LEN
        return text.encode("ascii")

    def reply_to(self, **changes: str) -> "Header":
        return replace(self, **changes)


@dataclass(frozen=True)
class Envelope:
    header: Header
    signature: str | None  # base64 with any line breaks removed
    body: bytes
    # What was between the blocks on the wire, so that encode() gives the same bytes.
    header_raw: bytes = b""
    after_header: bytes = b"\r\n"
    signature_raw: bytes | None = None
    after_signature: bytes = b"\r\n"

    def encode(self) -> bytes:
        head = self.header_raw or self.header.encode()
        out = [head, self.after_header]
        if self.signature is not None:
            sig = self.signature_raw if self.signature_raw is not None else self.signature.encode()
            out += [b"{S:", sig, b"}", self.after_signature]
        out.append(self.body)
        return b"".join(out)


def _fail(code: str, path: str, value: object, expected: str) -> PaygateError:
    return PaygateError(Problem(code, path, value, expected), status=400)


# Where each field stands in the header text.
_FIELD_SPANS: tuple[tuple[str, int, int], ...] = tuple(
    (name, 3 + sum(w for _, w in HEADER_FIELDS[:i]), 3 + sum(w for _, w in HEADER_FIELDS[:i + 1]))
    for i, (name, _) in enumerate(HEADER_FIELDS))


def _whole_header_pattern() -> re.Pattern[str]:
    """One pattern for the 130 characters of a well-formed header, which captures every
    field's value: the field's rule (any characters for the reserve) and then spaces,
    ending exactly where the field ends (the look-behind counts from the start). The
    rules allow no space, so the value captured is the slot without its trailing spaces,
    as the field by field reading takes it; and without the fixed end a short value
    followed by a slot that starts with spaces could shift every field after it."""
    parts = [r"\{H:"]
    for name, _, end in _FIELD_SPANS:
        rule = _FIELD_RULES[name][0] if name in _FIELD_RULES else ".*?"
        parts.append(f"(?P<{name}>{rule}) *(?<=^.{{{end}}})")
    parts.append(r"\}")
    return re.compile("".join(parts), re.DOTALL)


_WHOLE_HEADER_RE = _whole_header_pattern()


def _frozen(cls: type[_T], fields: dict[str, object]) -> _T:
    """`cls(**fields)` for a frozen dataclass given every one of its fields: the same
    object (equal, same hash, still frozen), without the generated `__init__`, which
    sets each field through `object.__setattr__` (14 calls for a header, about 2 µs).
    Only for values this module has checked or made, each of its field's type."""
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    return obj


def decode_header(raw: bytes) -> Header:
    """Decode the 130 header bytes, reporting every malformed field at once.

    A well-formed header is read by one match of the whole header; anything that match
    does not take (a malformed field, another length, a byte outside ASCII) is read
    again field by field, which refuses it with what is wrong where."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return _decode_header_checked(raw)
    found = _WHOLE_HEADER_RE.fullmatch(text)
    if found is None:
        return _decode_header_checked(raw)
    return _frozen(Header, found.groupdict())


def _decode_header_checked(raw: bytes) -> Header:
    """The header read field by field: every check and every refusal by name."""
    if len(raw) != HEADER_LEN or not raw.startswith(b"{H:") or raw[-1:] != b"}":
        raise _fail("header_must_be_130_characters", "{H:", raw[:140].decode("latin-1"),
                    "{H: ... } of exactly 130 ASCII characters")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _fail("header_must_be_ascii", "{H:", raw.decode("latin-1"), "ASCII characters")
    problems = _header_problems(text)
    if problems:
        raise PaygateError(problems, status=400)
    return Header(**{name: text[start:end].rstrip(" ") for name, start, end in _FIELD_SPANS})


def _header_problems(text: str) -> list[Problem]:
    """Every field of a header that breaks its rule."""
    problems: list[Problem] = []
    for name, start, end in _FIELD_SPANS:
        field_text = text[start:end]
        rule = _FIELD_RE.get(name)
        if rule is not None and not rule.fullmatch(field_text.rstrip(" ")):
            problems.append(Problem(
                "header_field_malformed", f"{{H:/{name}", field_text,
                _FIELD_RULES[name][1] + f" in {end - start} characters, left-aligned"))
    return problems


def decode(raw: bytes) -> Envelope:
    """Split an envelope into header, signature and body, tolerating what CNAPS tolerates.

    A UTF-8 BOM before `{H:` is dropped. Line ends between blocks may be CR LF, LF or
    nothing; a `{S:` value may be wrapped. A bare XML document (no `{H:`) is refused here:
    callers that accept bare XML check for it first.

    The blocks are found by their offsets in `raw`, and only the body is copied out of it
    once (a BEPS package's body is up to about 2 MiB).
    """
    if len(raw) > ENVELOPE_LEN_MAX:
        raise _fail("message_too_large", "", len(raw), f"at most {ENVELOPE_LEN_MAX} bytes")
    at = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    if not raw.startswith(b"{H:", at):
        raise _fail("envelope_must_start_with_header", "", raw[at:at + 20].decode("latin-1"),
                    "a message starting with {H:")
    header_raw = raw[at:at + HEADER_LEN]
    header = decode_header(header_raw)
    after_header, at = _take_line_end(raw, at + HEADER_LEN)
    signature = signature_raw = None
    after_signature = b"\r\n"
    if raw.startswith(b"{S:", at):
        end = raw.find(b"}", at)
        if end < 0:
            raise _fail("signature_block_unterminated", "{S:", raw[at:at + 40].decode("latin-1"),
                        "{S:<base64>}")
        signature_raw = raw[at + 3:end]
        signature = _SPACE.sub(b"", signature_raw).decode("latin-1")
        if len(signature) > SIGNATURE_LEN_MAX or not _BASE64.fullmatch(signature):
            raise _fail("signature_block_malformed", "{S:", signature[:80],
                        f"base64 of at most {SIGNATURE_LEN_MAX} characters")
        after_signature, at = _take_line_end(raw, end + 1)
    body = raw[at:]
    # Nothing or only ASCII white space (what bytes.strip would leave empty), without
    # the copy strip makes.
    if not body or body.isspace():
        raise _fail("body_missing", "", "", "an XML document after the header")
    return _frozen(Envelope, {
        "header": header, "signature": signature, "body": body, "header_raw": header_raw,
        "after_header": after_header, "signature_raw": signature_raw,
        "after_signature": after_signature})


def _take_line_end(data: bytes, at: int) -> tuple[bytes, int]:
    """The line end (CR LF, LF or none) at `at` in `data`, and where what follows starts."""
    if data.startswith(b"\r\n", at):
        return b"\r\n", at + 2
    if data.startswith(b"\n", at):
        return b"\n", at + 1
    return b"", at


def pad_code(code: str) -> str:
    """Bank codes travel left-aligned in 14 characters."""
    return code.ljust(14)
