"""The simulator's signing keys: the NPC ("0000") and every simulated peer bank.

Keys are PEM files in the directory shared with the gateway (gateway.messages.signing).
Missing key pairs of the NPC and the peers are created at start; the gateway creates its
own. Because the gateway may create its key after the simulator started, a message from a
participant whose public key is not loaded yet makes the ring re-read the directory once
before the signature is judged.
"""

from __future__ import annotations

from pathlib import Path

from gateway.errors import PaygateError
from gateway.messages import codec
from gateway.messages.signing import KeyRing, write_keypair


class Keys:
    def __init__(self, directory: Path, own: list[str]) -> None:
        self.directory = directory
        for code in own:
            write_keypair(directory, code)
        self.ring = KeyRing.load(directory, own)

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
