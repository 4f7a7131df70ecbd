"""The simulator's key ring remembers good signatures: the same answers as computing
each one, with the arithmetic done once per (signature, key, signed bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.errors import PaygateError
from gateway.messages import ccms900, ccms990, codec
from gateway.messages import envelope as envelope_mod
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.messages.signing import EcdsaP256, KeyRing
from simulators import templates
from simulators.keys import VERIFIED_MAX, Keys, _Remembering
from simulators.settings import OUR_BANK
from simulators.testing import MONDAY_0900, PEER, BankSender


class Counting:
    """EcdsaP256, counting the verifications it computes."""

    name = EcdsaP256.name
    computed = 0

    @classmethod
    def sign(cls, key: object, data: bytes) -> bytes:
        return EcdsaP256.sign(key, data)  # type: ignore[arg-type]

    @classmethod
    def verify(cls, key: object, signature: bytes, data: bytes) -> bool:
        cls.computed += 1
        return EcdsaP256.verify(key, signature, data)  # type: ignore[arg-type]


def test_a_signature_checked_again_gets_the_same_answer_without_arithmetic(
        tmp_path: Path) -> None:
    """Good twice: computed once. Tampered bytes or another sender under the same
    signature: computed, and refused as a plain ring refuses them."""
    keys = Keys(tmp_path, [PEER])
    raw = BankSender(tmp_path, ManualClock(MONDAY_0900)).credit(100)
    plain = KeyRing.load(tmp_path, [])
    keys.ring.reread_public()
    env = envelope_mod.decode(raw)
    tampered = envelope_mod.Envelope(env.header, env.signature, env.body.replace(b"1.00",
                                                                                 b"9.00"))
    other = envelope_mod.Envelope(env.header.reply_to(orig_sender=PEER), env.signature,
                                  env.body)
    keys.ring.__dict__["_remembering"] = _Remembering(Counting)

    answers = [keys.ring.verify(env), keys.ring.verify(env)]
    for forged in (tampered, other):
        with pytest.raises(PaygateError, match="signature") as mine:
            keys.ring.verify(forged)
        with pytest.raises(PaygateError) as theirs:
            plain.verify(forged)
        assert mine.value.to_dict() == theirs.value.to_dict()

    assert answers == ["verified", "verified"] == [plain.verify(env)] * 2
    assert Counting.computed == 3  # the good one once, each forgery once


def test_what_is_remembered_is_bounded() -> None:
    """Past VERIFIED_MAX good signatures the oldest are forgotten."""
    class Always:
        name = "always"

        @staticmethod
        def verify(key: object, signature: bytes, data: bytes) -> bool:
            return True

    remembering = _Remembering(Always)
    for i in range(VERIFIED_MAX + 10):
        remembering.verify("key", i.to_bytes(4, "big"), b"data")

    assert len(remembering._good) == VERIFIED_MAX
    assert (0).to_bytes(4, "big") not in remembering._good


def test_a_signature_made_here_verifies_without_arithmetic(tmp_path: Path) -> None:
    """A simulated peer's message, signed in this process, is taken by the NPC: its
    signature is known good. The same signature on other bytes is still computed and
    refused."""
    keys = Keys(tmp_path, [PEER])
    Counting.computed = 0
    keys.ring.__dict__["_remembering"] = _Remembering(Counting)
    sender = BankSender(tmp_path, ManualClock(MONDAY_0900), code=PEER)
    sender.ring = keys.ring  # the peer signs with the simulator's ring
    env = envelope_mod.decode(sender.credit(100, receiver="999100000019"))
    tampered = envelope_mod.Envelope(env.header, env.signature, env.body.replace(b"1.00",
                                                                                 b"9.00"))

    assert keys.ring.verify(env) == "verified"
    assert Counting.computed == 0
    with pytest.raises(PaygateError, match="signature invalid"):
        keys.ring.verify(tampered)
    assert Counting.computed == 1
    assert KeyRing.load(tmp_path, []).verify(env) == "verified"


def test_a_body_read_again_is_not_parsed_again_yet_its_envelope_is_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The payee bank reads the hvps.111 the NPC read moments before: the same reading,
    without parsing it again; the header, the signature and the addressee are still
    checked on every envelope, and a header naming another type is read afresh."""
    keys = Keys(tmp_path, [PEER])
    raw = BankSender(tmp_path, ManualClock(MONDAY_0900)).credit(100)
    keys.ring.reread_public()
    reads = []
    real = codec.decode_envelope
    monkeypatch.setattr(codec, "decode_envelope",
                        lambda *args: reads.append(1) or real(*args))
    env = envelope_mod.decode(raw)
    forwarded = envelope_mod.Envelope(env.header.reply_to(direction="D"), env.signature,
                                      env.body).encode()
    sig = env.signature
    bad = envelope_mod.Envelope(env.header, sig[:20] + ("B" if sig[20] == "A" else "A")
                                + sig[21:], env.body).encode()
    other_type = envelope_mod.Envelope(env.header.reply_to(mesg_type="hvps.112.001.01"),
                                       env.signature, env.body).encode()

    first = keys.decode(raw)
    again = keys.decode(forwarded, frozenset({PEER}))
    assert len(reads) == 1
    assert (again.obj, again.problems, again.mtype, again.signature) == (
        first.obj, first.problems, first.mtype, "verified")
    assert again.header.direction == "D"
    with pytest.raises(PaygateError, match="signature invalid"):
        keys.decode(bad)
    with pytest.raises(PaygateError, match="message wrongly addressed"):
        keys.decode(raw, frozenset({"888200000023"}))
    with pytest.raises(PaygateError, match="signature invalid"):
        keys.decode(other_type)  # the type is signed: another type breaks the signature
    assert len(reads) == 1


def _reading(keys: Keys, raw: bytes, unmapped: frozenset[str]) -> object:
    """What a decode finds: (type, problems, signature, object), or the refusal."""
    try:
        d = keys.decode(raw, unmapped=unmapped)
    except PaygateError as exc:
        return ("refused", [(p.code, p.path) for p in exc.problems])
    return (d.mtype.code, [(p.code, p.path, p.value) for p in d.problems], d.signature,
            d.obj)


def test_an_acknowledgement_read_unmapped_is_judged_as_one_read_in_full(
        tmp_path: Path) -> None:
    """A ccms.990 the NPC only counts is read without its mapping: the same type, the same
    problems (schema, a header naming another type) and the same refusals (XML, root) as
    the full reading, only no domain object; other types are read in full."""
    sender = BankSender(tmp_path, ManualClock(MONDAY_0900))
    keys = Keys(tmp_path, [PEER])
    ack_type = ccms990.MESSAGE_TYPE
    good = templates.ack_body(ccms990.CommConf("0000", "20261207", "ccms.900.001.02",
                                               "HVPD2026120700000001", None))
    no_code = good.replace(b"<MsgPrcCd>PM1I0000</MsgPrcCd>", b"")
    not_document = good.replace(b"<Document ", b"<Documents ").replace(
        b"</Document>", b"</Documents>")
    result = templates.result_body(ccms900.CommonConf(
        GroupHeader("2026120700000001", "2026-12-07T09:00:00", "0000", "0000",
                    OUR_BANK, OUR_BANK, "HVPS"),
        OriginalRef("2026120700000101", OUR_BANK, "hvps.111.001.01"), "PR04", "HV0I0000",
        processed_on="2026-12-07"))
    bodies = [good, no_code, not_document, result, b"<Document", b"not xml"]
    unmapped = frozenset({ack_type})

    for body in bodies:
        raw = codec.encode(sender.header(ack_type), body, None, sign=False)
        full, quick = _reading(keys, raw, frozenset()), _reading(keys, raw, unmapped)

        if isinstance(full, tuple) and full[0] == ack_type and not full[1]:
            assert quick == full[:3] + (None,)
            assert isinstance(full[3], ccms990.CommConf)
        else:
            assert quick == full
    credit = sender.credit(100)
    keys.ring.reread_public()
    assert _reading(keys, credit, unmapped) == _reading(keys, credit, frozenset())
