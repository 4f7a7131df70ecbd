"""The simulator's key ring remembers good signatures: the same answers as computing
each one, with the arithmetic done once per (signature, key, signed bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.errors import PaygateError
from gateway.messages import envelope as envelope_mod
from gateway.messages.signing import EcdsaP256, KeyRing
from simulators.keys import VERIFIED_MAX, Keys, _Remembering
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
    keys.reload_public()
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
