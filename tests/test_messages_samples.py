"""Every shared sample decodes cleanly, maps to its family's object and survives the
round trips a gateway puts it through."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.messages import codec, envelope, xml
from gateway.messages.signing import KeyRing
from message_schemas import catalogue

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cnaps" / "samples"
SAMPLES = sorted(SHARED.glob("*.xml")) if SHARED.is_dir() else []
# The samples carry placeholder signatures (CONTRACT.md §1): their senders are unverified.
SAMPLE_SENDERS = frozenset({"999100000019", "888200000015", "0000"})

pytestmark = pytest.mark.skipif(not SAMPLES, reason="../shared is not present")


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_decodes_without_problems(path: Path) -> None:
    """Envelope, signature policy, schema and business rules all accept the sample."""
    ring = KeyRing(unverified_senders=SAMPLE_SENDERS)

    decoded = codec.decode(path.read_bytes(), ring)

    assert decoded.problems == []
    assert decoded.mtype.code == decoded.header.mesg_type
    assert decoded.signature in ("unverified", "unsigned_allowed")
    assert decoded.obj is not None


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_envelope_round_trip_is_byte_exact(path: Path) -> None:
    """Decoding and encoding the envelope gives back the very same bytes."""
    raw = path.read_bytes()

    assert envelope.decode(raw).encode() == raw


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_rebuilt_body_maps_to_the_same_object(path: Path) -> None:
    """Building the sample's object again and parsing it gives the same object."""
    decoded = codec.decode(path.read_bytes(), bare_ok=True)

    rebuilt = codec.build_body(decoded.mtype.code, decoded.obj)
    again = codec.decode(rebuilt, bare_ok=True)

    assert again.problems == []
    assert again.obj == decoded.obj
    assert catalogue.schema(decoded.mtype.code).validate(xml.parse(rebuilt))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_header_fields_survive_re_encoding(path: Path) -> None:
    """A header decoded from the wire encodes to the same 130 characters."""
    raw = path.read_bytes()
    env = envelope.decode(raw)

    assert env.header.encode() == raw[:envelope.HEADER_LEN]
