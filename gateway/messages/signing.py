"""Signatures on the link.

CNAPS2 signs a per-type "signature element string" whose exact field lists are not
public (SPEC.md a.2). This product signs, for every message type, the same thing:

    "<orig sender>|<orig receiver>|<message type>|<message id>|" + the XML body bytes

so that the signature binds who sent it, to whom, which message it is (a replay under a
new id fails) and every byte of the business content. The NPC forwards a bank's message
with the original sender's signature intact, as the captured incoming samples show.

The algorithm is pluggable and named in configuration; the default is ECDSA on P-256
over SHA-256 (DER, base64), which has the same shape as the captured values (`MEQCI...`).
Keys are PEM files, one per participant: `<code>.key.pem` (private, only for the
participants this process speaks for) and `<code>.pub.pem` (public, for everyone).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import PaygateError, Problem
from gateway.messages.envelope import Envelope, Header

log = logging.getLogger("paygate.signing")

# Messages a receiver accepts without a {S: block. A ccms.990 is a link-level ack and
# travels unsigned from anyone (both captured 990s carry none). The NPC's own notices
# and reports travel unsigned too (the captured ccms.801, ccms.900, beps.721 and
# saps.606 carry none), so those types are accepted unsigned from the NPC only.
UNSIGNED_ALLOWED = frozenset({"ccms.990.001.02"})
UNSIGNED_FROM_NPC = frozenset({
    "ccms.801.001.02", "ccms.806.001.02", "ccms.807.001.02", "ccms.900.001.02",
    "ccms.911.001.02", "ccms.992.001.01", "hvps.711.001.01", "hvps.713.001.01",
    "beps.721.001.01", "beps.723.001.01", "nets.618.001.01", "saps.606.001.01",
})
NPC_SENDER = "0000"


def unsigned_allowed(header: Header) -> bool:
    """True when a message of this type from this sender may come without a signature."""
    if header.mesg_type in UNSIGNED_ALLOWED:
        return True
    return header.orig_sender == NPC_SENDER and header.mesg_type in UNSIGNED_FROM_NPC


def signed_bytes(header: Header, body: bytes) -> bytes:
    prefix = f"{header.orig_sender}|{header.orig_receiver}|{header.mesg_type}|{header.mesg_id}|"
    return prefix.encode("ascii") + body


class EcdsaP256:
    name = "ecdsa-p256-sha256"

    @staticmethod
    def generate() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    @staticmethod
    def verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
        try:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


ALGORITHMS = {EcdsaP256.name: EcdsaP256}


@dataclass
class KeyRing:
    """Private keys of the participants we speak for, public keys of everyone."""

    algorithm: str = EcdsaP256.name
    private: dict[str, object] = field(default_factory=dict)
    public: dict[str, object] = field(default_factory=dict)
    # Senders whose signatures are not checked (only for replaying the shared samples,
    # which carry placeholder signatures; production configuration leaves this empty).
    unverified_senders: frozenset[str] = frozenset()

    @property
    def algo(self):
        return ALGORITHMS[self.algorithm]

    @classmethod
    def load(cls, directory: Path, own: list[str], algorithm: str = EcdsaP256.name,
             unverified_senders: frozenset[str] = frozenset()) -> "KeyRing":
        ring = cls(algorithm=algorithm, unverified_senders=unverified_senders)
        for pub in sorted(Path(directory).glob("*.pub.pem")):
            code = pub.name.split(".")[0]
            ring.public[code] = serialization.load_pem_public_key(pub.read_bytes())
        for code in own:
            path = Path(directory) / f"{code}.key.pem"
            ring.private[code] = serialization.load_pem_private_key(path.read_bytes(), None)
        return ring

    def sign(self, header: Header, body: bytes) -> str:
        key = self.private.get(header.orig_sender)
        assert key is not None, f"no private key for {header.orig_sender}"
        raw = self.algo.sign(key, signed_bytes(header, body))
        return base64.b64encode(raw).decode("ascii")

    def verify(self, env: Envelope, own_codes: frozenset[str] | None = None) -> str:
        """Check an inbound envelope; return "verified", "unsigned_allowed" or "unverified".

        Raises PaygateError (status 401) with `signature_*` codes on a missing, bad or
        foreign signature, and `message_wrongly_addressed` when `own_codes` is given and
        the header's receiver is not one of them.
        """
        header = env.header
        if own_codes is not None and header.orig_receiver not in own_codes:
            raise PaygateError(Problem(
                "message_wrongly_addressed", "{H:/orig_receiver", header.orig_receiver,
                "one of " + ", ".join(sorted(own_codes))), status=401)
        if env.signature is None:
            if unsigned_allowed(header):
                return "unsigned_allowed"
            raise PaygateError(Problem("signature_required", "{S:", None,
                                       f"a signature on {header.mesg_type}"), status=401)
        if header.orig_sender in self.unverified_senders:
            return "unverified"
        key = self.public.get(header.orig_sender)
        if key is None:
            raise PaygateError(Problem("signature_key_unknown", "{H:/orig_sender",
                                       header.orig_sender, "a sender whose key we hold"),
                               status=401)
        try:
            raw = base64.b64decode(env.signature, validate=True)
        except ValueError:
            raw = b""
        if not raw or not self.algo.verify(key, raw, signed_bytes(header, env.body)):
            raise PaygateError(Problem("signature_invalid", "{S:", env.signature[:24] + "...",
                                       f"a {self.algorithm} signature by {header.orig_sender}"),
                               status=401)
        return "verified"


def write_keypair(directory: Path, code: str) -> None:
    """Create `<code>.key.pem` and `<code>.pub.pem` unless they exist."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / f"{code}.key.pem"
    if key_path.exists():
        return
    key = EcdsaP256.generate()
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_path.chmod(0o600)
    (directory / f"{code}.pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
