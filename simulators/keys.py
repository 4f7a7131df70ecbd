"""The simulator's signing keys: the NPC ("0000") and every simulated peer bank.

Keys are PEM files in the directory shared with the gateway (gateway.messages.signing).
Missing key pairs of the NPC and the peers are created at start; the gateway creates its
own. Because the gateway may create its key after the simulator started, a message from a
participant whose public key is not loaded yet makes the ring re-read the directory once
before the signature is judged.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from gateway.errors import PaygateError
from gateway.messages import codec
from gateway.messages.signing import KeyRing, write_keypair

# Good signatures remembered. A payment's hvps.111 is checked by the NPC and, moments
# later, forwarded unchanged, by the simulated payee bank in the same process; this many
# covers the messages between the two under any load the simulator keeps up with.
VERIFIED_MAX = 1024


class _Remembering:
    """A signature algorithm that remembers the signatures it found good, by signature,
    key and signed bytes. Verifying is a pure function of those three, so a signature
    checked again (a forwarded message at its receiver, a resent message) gets the same
    answer without the elliptic-curve arithmetic; anything else is computed."""

    def __init__(self, algorithm: Any) -> None:
        self.algorithm = algorithm
        self.name = algorithm.name
        self._good: OrderedDict[bytes, tuple[object, bytes]] = OrderedDict()

    def sign(self, key: Any, data: bytes) -> bytes:
        return self.algorithm.sign(key, data)

    def verify(self, key: Any, signature: bytes, data: bytes) -> bool:
        known = self._good.get(signature)
        if known is not None and known[0] is key and known[1] == data:
            return True
        if not self.algorithm.verify(key, signature, data):
            return False
        self._good[signature] = (key, data)
        if len(self._good) > VERIFIED_MAX:
            self._good.popitem(last=False)
        return True


class _Ring(KeyRing):
    """The shared key ring, with its algorithm remembering good signatures."""

    @property
    def algo(self) -> _Remembering:
        remembering = self.__dict__.get("_remembering")
        if remembering is None or remembering.name != self.algorithm:
            remembering = _Remembering(super().algo)
            self.__dict__["_remembering"] = remembering
        return remembering


class Keys:
    def __init__(self, directory: Path, own: list[str]) -> None:
        self.directory = directory
        for code in own:
            write_keypair(directory, code)
        self.ring = _Ring.load(directory, own)

    def reload_public(self) -> None:
        fresh = KeyRing.load(self.directory, [])
        self.ring.public.update(fresh.public)
        self.ring.public_all.update(fresh.public_all)

    def decode(self, raw: bytes, own_codes: frozenset[str] | None = None) -> codec.Decoded:
        """codec.decode with this ring, re-reading public keys once for a new sender."""
        try:
            return codec.decode(raw, self.ring, own_codes)
        except PaygateError as exc:
            if exc.code != "signature_key_unknown":
                raise
        self.reload_public()
        return codec.decode(raw, self.ring, own_codes)
