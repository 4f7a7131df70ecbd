"""Property tests: the envelope's reading (a well-formed header by one match, the blocks
found by their offsets) gives, for any bytes, the header and envelope the field by field
reading gives, or the same refusal, problem for problem.

The field by field reading is kept below as it was, as the reference."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass, fields
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.errors import PaygateError, Problem
from gateway.messages import envelope
from gateway.messages.envelope import (
    _FIELD_RULES,
    ENVELOPE_LEN_MAX,
    HEADER_FIELDS,
    HEADER_LEN,
    SIGNATURE_LEN_MAX,
    Envelope,
    Header,
)

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# --- The reference: the reading field by field, as the module had it. ---

_SPANS = tuple(
    (name, 3 + sum(w for _, w in HEADER_FIELDS[:i]), 3 + sum(w for _, w in HEADER_FIELDS[:i + 1]))
    for i, (name, _) in enumerate(HEADER_FIELDS))
_RULE_RE = {name: re.compile(pattern) for name, (pattern, _) in _FIELD_RULES.items()}
_SPACE = re.compile(rb"\s+")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")


def _fail(code: str, path: str, value: object, expected: str) -> PaygateError:
    return PaygateError(Problem(code, path, value, expected), status=400)


def reference_header(raw: bytes) -> Header:
    if len(raw) != HEADER_LEN or not raw.startswith(b"{H:") or raw[-1:] != b"}":
        raise _fail("header_must_be_130_characters", "{H:", raw[:140].decode("latin-1"),
                    "{H: ... } of exactly 130 ASCII characters")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _fail("header_must_be_ascii", "{H:", raw.decode("latin-1"), "ASCII characters")
    values = {name: text[start:end].rstrip(" ") for name, start, end in _SPANS}
    problems = []
    for name, start, end in _SPANS:
        rule = _RULE_RE.get(name)
        if rule is not None and not rule.fullmatch(values[name]):
            problems.append(Problem(
                "header_field_malformed", f"{{H:/{name}", text[start:end],
                _FIELD_RULES[name][1] + f" in {end - start} characters, left-aligned"))
    if problems:
        raise PaygateError(problems, status=400)
    return Header(**values)


def _line_end(data: bytes) -> tuple[bytes, bytes]:
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    if data.startswith(b"\n"):
        return b"\n", data[1:]
    return b"", data


def reference_decode(raw: bytes) -> Envelope:
    if len(raw) > ENVELOPE_LEN_MAX:
        raise _fail("message_too_large", "", len(raw), f"at most {ENVELOPE_LEN_MAX} bytes")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.startswith(b"{H:"):
        raise _fail("envelope_must_start_with_header", "", raw[:20].decode("latin-1"),
                    "a message starting with {H:")
    header_raw = raw[:HEADER_LEN]
    header = reference_header(header_raw)
    after_header, rest = _line_end(raw[HEADER_LEN:])
    signature = signature_raw = None
    after_signature = b"\r\n"
    if rest.startswith(b"{S:"):
        end = rest.find(b"}")
        if end < 0:
            raise _fail("signature_block_unterminated", "{S:", rest[:40].decode("latin-1"),
                        "{S:<base64>}")
        signature_raw = rest[3:end]
        signature = _SPACE.sub(b"", signature_raw).decode("latin-1")
        if len(signature) > SIGNATURE_LEN_MAX or not _BASE64.fullmatch(signature):
            raise _fail("signature_block_malformed", "{S:", signature[:80],
                        f"base64 of at most {SIGNATURE_LEN_MAX} characters")
        after_signature, rest = _line_end(rest[end + 1:])
    if not rest.strip():
        raise _fail("body_missing", "", "", "an XML document after the header")
    return Envelope(header, signature, rest, header_raw, after_header, signature_raw,
                    after_signature)


# --- What is compared: the value made, or the refusal in full. ---

@dataclass(frozen=True)
class Refused:
    status: int
    problems: tuple[Problem, ...]


def outcome(read: Callable[[bytes], Any], raw: bytes) -> Any:
    try:
        made = read(raw)
    except PaygateError as exc:
        return Refused(exc.status, tuple(exc.problems))
    return made, {f.name: type(getattr(made, f.name)) for f in fields(made)}


# --- Headers: well formed, then broken in every way the strategies can think of. ---

def _slot(name: str, width: int) -> st.SearchStrategy[str]:
    if name in _FIELD_RULES:
        value = st.from_regex(_FIELD_RULES[name][0], fullmatch=True).filter(
            lambda v: len(v) <= width)
    else:
        value = st.text(st.characters(max_codepoint=0x7F), max_size=width)
    return value.map(lambda v: v.ljust(width))


WELL_FORMED = st.tuples(*[_slot(name, width) for name, width in HEADER_FIELDS]).map(
    lambda slots: ("{H:" + "".join(slots) + "}").encode("ascii"))

# Bytes that sit at the edges of the rules: the padding, a NUL (the old single pattern's
# separator), the braces, a dot, digits and letters of both cases, line ends, non-ASCII.
_EDGE_BYTES = st.sampled_from([b" ", b"  ", b"\x00", b"{", b"}", b".", b"0", b"9", b"A",
                               b"Z", b"a", b"z", b"\n", b"\r\n", b"\t", b"\x7f", b"\x80",
                               b"\xff", "报".encode(), b"X", b"M", b"L", b"1", b"3", b"U",
                               b"D"])
PIECE = st.lists(_EDGE_BYTES | st.binary(max_size=3), max_size=4).map(b"".join)


@st.composite
def broken(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A header with some of its bytes overwritten, put in, or taken out."""
    raw = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        piece = draw(PIECE)
        how = draw(st.sampled_from(["overwrite", "insert", "delete"]))
        if how == "overwrite":
            raw[at:at + len(piece)] = piece
        elif how == "insert":
            raw[at:at] = piece
        else:
            del raw[at:at + draw(st.integers(1, 3))]
    return bytes(raw)


@st.composite
def shifted(draw: st.DrawFn) -> bytes:
    """A well-formed header with one field's value moved right by spaces (so the field
    starts with a space) or left into the padding of the field before it: the slots stay
    130 characters, only where one field ends and the next begins changes."""
    text = draw(WELL_FORMED).decode("ascii")
    _, start, end = draw(st.sampled_from(_SPANS))
    slot = text[start:end]
    by = draw(st.integers(1, 12))
    moved = (" " * by + slot)[:end - start] if draw(st.booleans()) else (slot + " " * by)[by:]
    return (text[:start] + moved + text[end:]).encode("ascii")


HEADERS = WELL_FORMED | broken(WELL_FORMED) | shifted() | st.binary(max_size=140) | \
    st.binary(min_size=HEADER_LEN, max_size=HEADER_LEN)

# Headers of the kind the link carries, as the gateway and the simulated NPC write them.
_CAPTURED = [
    (b"{H:02999100000019  HVPS0000          HVPS20261207090003XMLhvps.111.001.01     "
     b"20261207000000000003202612070000000000031U         }"),
    (b"{H:020000          HVPS999100000019  HVPS20261207090003XMLccms.990.001.02     "
     b"HVPD2026120700000003HVPD20261207000000033D         }"),
    (b"{H:02999100000019  HVPS888200000015  HVPS20240520101530XMLhvps.111.001.01     "
     b"00000000000000000101202405200000000001011U       X }"),
]


@SETTINGS
@given(HEADERS)
@example(_CAPTURED[0]).via("a bank's hvps.111")
@example(_CAPTURED[1]).via("the NPC's ccms.990")
@example(_CAPTURED[2]).via("the shared sample, a reserve in use")
# A NUL in the reserve, which the old single pattern never saw.
@example(_CAPTURED[0][:-3] + b"\x00 }").via("NUL in the reserve")
# A short MesgID whose slot takes the next field's first character: 130 characters still.
@example(_CAPTURED[0][:78] + b"2026 " + _CAPTURED[0][83:98] + b" " + _CAPTURED[0][98:117]
         + b"1U         }").via("a field moved across its end")
def test_header_reads_as_the_field_by_field_reading(raw: bytes) -> None:
    """Any bytes give the same Header, or the same refusal with the same problems."""
    assert outcome(envelope.decode_header, raw) == outcome(reference_header, raw)


# --- Whole envelopes: header, line ends, {S: block and body, each possibly broken. ---

_LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"", b"\r", b"\n\r", b" \r\n"])
_SIGNATURE_TEXT = st.lists(
    st.sampled_from([b"MEQCIKh8ihep", b"u+/=", b"\r\n", b" ", b"\t", b"\x0b", b"*", b"}",
                     b"{", b"\x00", "报".encode()]) | st.binary(max_size=4),
    max_size=8).map(b"".join)
_BODIES = st.sampled_from([b"", b" ", b"\r\n", b"\t\x0b\x0c\r\n ", b"\x1c", b"\xa0",
                           b"\x85", b"<Document/>", b' <?xml version="1.0"?><Document/>',
                           b"}<x/>"]) | st.binary(max_size=12)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    raw += draw(WELL_FORMED | broken(WELL_FORMED) | st.sampled_from(_CAPTURED))
    raw += draw(_LINE_ENDS)
    if draw(st.booleans()):
        raw += b"{S:" + draw(_SIGNATURE_TEXT)
        if draw(st.integers(0, 4)):
            raw += b"}" + draw(_LINE_ENDS)
    raw += draw(_BODIES)
    if draw(st.integers(0, 5)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


@SETTINGS
@given(envelopes())
@example(b"\xef\xbb\xbf{H:").via("a BOM and a header cut short")
@example(_CAPTURED[0] + b"\r\n{S:" + b"A" * (SIGNATURE_LEN_MAX + 1) + b"}\r\n<x/>")
@example(_CAPTURED[0] + b"\r\n{S:" + b"A" * SIGNATURE_LEN_MAX + b"\r\n}\r\n<x/>")
@example(_CAPTURED[1] + b"\n\x0c\x0b \t\r")
def test_envelope_splits_as_the_field_by_field_reading(raw: bytes) -> None:
    """Any bytes give an equal Envelope (each part of the same type), or the same
    refusal with the same problems."""
    assert outcome(envelope.decode, raw) == outcome(reference_decode, raw)


def test_oversized_envelope_is_refused_as_before() -> None:
    """The size bound comes first, whatever the bytes."""
    raw = _CAPTURED[0] + b"\r\n" + b"<x/>" * (ENVELOPE_LEN_MAX // 4)

    assert outcome(envelope.decode, raw) == outcome(reference_decode, raw)
    assert outcome(envelope.decode, raw).problems[0].code == "message_too_large"


# --- The header made without the dataclass's __init__ is the same object. ---

@pytest.mark.parametrize("raw", _CAPTURED)
def test_a_read_header_is_a_frozen_header_like_any_other(raw: bytes) -> None:
    """Equal to and hashed as the header built field by field, frozen, picklable, and
    its reply and its encoding are the same."""
    read, built = envelope.decode_header(raw), reference_header(raw)

    assert type(read) is Header and read == built and hash(read) == hash(built)
    assert vars(read) == vars(built) and repr(read) == repr(built)
    assert read.encode() == raw
    assert read.reply_to(direction="D") == built.reply_to(direction="D")
    assert pickle.loads(pickle.dumps(read)) == built
    with pytest.raises(FrozenInstanceError):
        read.mesg_id = "1"  # type: ignore[misc]


def test_a_split_envelope_is_a_frozen_envelope_like_any_other() -> None:
    """The envelope made from its parts at once is equal to one built by its __init__,
    and frozen."""
    raw = _CAPTURED[0] + b"\r\n{S:QUJD}\n<Document/>"
    read, built = envelope.decode(raw), reference_decode(raw)

    assert read == built and vars(read) == vars(built) and read.encode() == raw
    with pytest.raises(FrozenInstanceError):
        read.body = b""  # type: ignore[misc]
