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

Public keys may be added to the directory while the process runs (a participant that
starts later writes its own, an operator installs a peer's): a message from a sender
whose key is not loaded makes the ring read the directory's public keys again, at most
once per `KEYS_REREAD_EVERY_S`, before the message is refused. A sender whose key is still
unknown is answered "not taken now" (503, `signature_key_unknown`), which the sender
retries, rather than refused for good: its key may simply not have been distributed yet.
A known key that does not verify the signature stays a final refusal (401).
"""

from __future__ import annotations

import base64
import logging
import time
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

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
# The signature scheme's parameters: the same for every call, so made once (building
# them was a tenth of the cost of a signature).
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# The directory's public keys are read again for an unknown sender at most this often:
# a sender without a key sends again and again (every retry of every message), and
# reading the directory per message would let anyone make the gateway read files as
# fast as it can POST. Keys distributed by hand take longer than this to matter.
KEYS_REREAD_EVERY_S = 5.0


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
        return key.sign(data, _ECDSA_SHA256)

    @staticmethod
    def verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
        try:
            key.verify(signature, data, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True


ALGORITHMS = {EcdsaP256.name: EcdsaP256}


@dataclass(frozen=True)
class KeyPeriod:
    """When a key may be used; from the optional `keys.toml` in the keys directory:

        [[key]]
        file = "888200000015.2027.pub.pem"
        not_before = 2026-12-20
        not_after = 2027-12-31

    A key file without an entry is valid indefinitely. During a rotation the old and the
    new key of a participant are both valid for an overlap period; a signature verifies if
    any key of the sender valid at that moment accepts it, and we sign with the newest of
    our valid keys.
    """

    file: str
    not_before: date | None = None
    not_after: date | None = None

    def valid_on(self, day: date | None) -> bool:
        if day is None:
            return True
        return ((self.not_before is None or self.not_before <= day)
                and (self.not_after is None or day <= self.not_after))


def _periods(directory: Path) -> dict[str, KeyPeriod]:
    path = Path(directory) / "keys.toml"
    if not path.exists():
        return {}
    with open(path, "rb") as fh:
        entries = tomllib.load(fh).get("key", [])
    return {e["file"]: KeyPeriod(e["file"], e.get("not_before"), e.get("not_after"))
            for e in entries}


@dataclass
class KeyRing:
    """Private keys of the participants we speak for, public keys of everyone."""

    algorithm: str = EcdsaP256.name
    private: dict[str, object] = field(default_factory=dict)
    public: dict[str, object] = field(default_factory=dict)
    # Every key with its period, by participant: (period, key); used for rotation.
    public_all: dict[str, list[tuple[KeyPeriod, object]]] = field(default_factory=dict)
    private_all: dict[str, list[tuple[KeyPeriod, object]]] = field(default_factory=dict)
    today: Callable[[], date] | None = None
    # Senders whose signatures are not checked (only for replaying the shared samples,
    # which carry placeholder signatures; production configuration leaves this empty).
    unverified_senders: frozenset[str] = frozenset()
    # Where the keys came from, read again for an unknown sender (see the module's text);
    # `monotonic` paces those reads (a pace of file reads, not business time).
    directory: Path | None = None
    reread_every_s: float = KEYS_REREAD_EVERY_S
    monotonic: Callable[[], float] = time.monotonic
    reread_at: float | None = None

    @property
    def algo(self):
        return ALGORITHMS[self.algorithm]

    @classmethod
    def load(cls, directory: Path, own: list[str], algorithm: str = EcdsaP256.name,
             unverified_senders: frozenset[str] = frozenset()) -> "KeyRing":
        ring = cls(algorithm=algorithm, unverified_senders=unverified_senders,
                   directory=Path(directory))
        periods = _periods(directory)
        ring.public, ring.public_all = _public_keys(Path(directory), periods)
        for code in own:
            for path in sorted(Path(directory).glob(f"{code}.*key.pem")):
                key = serialization.load_pem_private_key(path.read_bytes(), None)
                if path.name == f"{code}.key.pem":
                    ring.private[code] = key
                ring.private_all.setdefault(code, []).append(
                    (periods.get(path.name, KeyPeriod(path.name)), key))
        return ring

    def reread_public(self) -> list[str]:
        """Read the directory's public keys again; the participants whose keys were added
        or changed. Keys that went from the directory stay loaded until a restart."""
        assert self.directory is not None, "a ring read from a directory"
        self.reread_at = self.monotonic()
        public, public_all = _public_keys(self.directory, _periods(self.directory))
        changed = sorted(code for code, keys in public_all.items()
                         if [p for p, _ in keys] != [p for p, _ in self.public_all.get(code, [])])
        self.public.update(public)
        self.public_all.update(public_all)
        if changed:
            log.info("event=public_keys_reread added=%s", ",".join(changed))
        return changed

    def _reread_due(self) -> bool:
        if self.directory is None:
            return False
        return self.reread_at is None or \
            self.monotonic() - self.reread_at >= self.reread_every_s

    def _keys_of(self, sender: str) -> list[object]:
        keys = [k for p, k in self.public_all.get(sender, []) if p.valid_on(self._day())]
        if not keys and sender in self.public:
            keys = [self.public[sender]]
        return keys

    def _day(self) -> date | None:
        return self.today() if self.today is not None else None

    def signing_key(self, code: str) -> object | None:
        """Our newest key valid today (the one whose period starts last)."""
        valid = [(p.not_before or date.min, p.file, k)
                 for p, k in self.private_all.get(code, []) if p.valid_on(self._day())]
        if valid:
            return max(valid, key=lambda item: (item[0], item[1]))[2]
        return self.private.get(code)

    def expiring(self, code: str, within_days: int) -> list[KeyPeriod]:
        """Our keys whose validity ends within `within_days` of today."""
        day = self._day()
        if day is None:
            return []
        return [p for p, _ in self.private_all.get(code, [])
                if p.not_after is not None and 0 <= (p.not_after - day).days <= within_days]

    def sign(self, header: Header, body: bytes) -> str:
        key = self.signing_key(header.orig_sender)
        assert key is not None, f"no private key for {header.orig_sender}"
        raw = self.algo.sign(key, signed_bytes(header, body))
        return base64.b64encode(raw).decode("ascii")

    def verify(self, env: Envelope, own_codes: frozenset[str] | None = None) -> str:
        """Check an inbound envelope; return "verified", "unsigned_allowed" or "unverified".

        Raises PaygateError (status 401) with `signature_*` codes on a missing or bad
        signature, 503 `signature_key_unknown` when no key of the sender is known even
        after reading the directory again (when due), and `message_wrongly_addressed`
        when `own_codes` is given and the header's receiver is not one of them.
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
        keys = self._keys_of(header.orig_sender)
        if not keys and self._reread_due():
            self.reread_public()
            keys = self._keys_of(header.orig_sender)
        if not keys:
            # Not taken now, not refused: the sender's key may be on its way (503).
            raise PaygateError(Problem(
                "signature_key_unknown", "{H:/orig_sender", header.orig_sender,
                "a sender whose public key is in the keys directory",
                f"no public key of {header.orig_sender} is loaded or in the keys "
                "directory; send again once it is installed"), status=503)
        try:
            raw = base64.b64decode(env.signature, validate=True)
        except ValueError:
            raw = b""
        data = signed_bytes(header, env.body)
        if not raw or not any(self.algo.verify(key, raw, data) for key in keys):
            raise PaygateError(Problem("signature_invalid", "{S:", env.signature[:24] + "...",
                                       f"a {self.algorithm} signature by {header.orig_sender}"),
                               status=401)
        return "verified"


def _public_keys(directory: Path, periods: dict[str, KeyPeriod]
                 ) -> tuple[dict[str, object], dict[str, list[tuple[KeyPeriod, object]]]]:
    """The directory's public keys: the current one by participant, and every one of
    them with its period."""
    public: dict[str, object] = {}
    public_all: dict[str, list[tuple[KeyPeriod, object]]] = {}
    for pub in sorted(directory.glob("*.pub.pem")):
        code = pub.name.split(".")[0]
        key = serialization.load_pem_public_key(pub.read_bytes())
        if pub.name == f"{code}.pub.pem":
            public[code] = key
        public_all.setdefault(code, []).append((periods.get(pub.name, KeyPeriod(pub.name)), key))
    return public, public_all


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
