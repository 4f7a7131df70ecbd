"""The simulator's signing keys: the NPC ("0000") and every simulated peer bank.

Keys are PEM files in the directory shared with the gateway (gateway.messages.signing).
Missing key pairs of the NPC and the peers are created at start; the gateway creates its
own. Because the gateway may create its key after the simulator started, a message from a
participant whose public key is not loaded yet makes the ring re-read the directory once
before the signature is judged (at once here, not paced as the gateway's ring is: the
simulator's peers are the gateways under test).

One process plays the NPC and the peer banks, so the same bytes are often checked twice:
a payment's hvps.111 by the NPC and, once settled, by the payee bank it is forwarded to;
a peer's credit or answer, signed here, by the NPC that takes it. Both checks are pure functions
of the bytes, and their answers are remembered (a bounded number of the latest ones):
the signatures found good or made here, and the reading of a body (XML, schema, domain
object, rules). Anything not remembered is computed.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.errors import PaygateError, Problem
from gateway.messages import codec, xml
from gateway.messages import envelope as envelope_mod
from gateway.messages.envelope import Envelope
from gateway.messages.signing import KeyRing, write_keypair
from message_schemas import catalogue
from simulators.settings import NPC_CODE

# Good signatures remembered. A payment's hvps.111 is checked by the NPC and, moments
# later, forwarded unchanged, by the simulated payee bank in the same process; this many
# covers the messages between the two under any load the simulator keeps up with.
VERIFIED_MAX = 1024
# Readings of bodies remembered, and the largest body remembered: only messages addressed
# past the NPC (which it forwards) are remembered; a payment is forwarded within a few
# hundred messages of its arrival, while a BEPS package of a thousand transactions would
# hold megabytes of parsed tree for little gain.
READ_MAX = 512
READ_BODY_LEN_MAX = 64 * 1024


class _Remembering:
    """A signature algorithm that remembers the signatures it found good, by signature,
    key and signed bytes. Verifying is a pure function of those three, so a signature
    checked again (a forwarded message at its receiver, a resent message) gets the same
    answer without the elliptic-curve arithmetic; anything else is computed."""

    def __init__(self, algorithm: Any) -> None:
        self.algorithm = algorithm
        self.name = algorithm.name
        self._good: OrderedDict[bytes, tuple[object, bytes]] = OrderedDict()
        # Each private key used here with its public key, by the private key's id (key
        # objects are not hashable); the key itself is kept so that the id stays its own.
        self._public_of: dict[int, tuple[Any, Any]] = {}

    def sign(self, key: Any, data: bytes) -> bytes:
        """Sign, and remember the signature as good for the key's public half: a
        signature made over these bytes with this key verifies, so a check of it here
        (a simulated peer's message taken by the NPC) needs no arithmetic."""
        signature = self.algorithm.sign(key, data)
        known = self._public_of.get(id(key))
        if known is None or known[0] is not key:
            known = self._public_of[id(key)] = (key, key.public_key())
        self._remember(signature, known[1], data)
        return signature

    def verify(self, key: Any, signature: bytes, data: bytes) -> bool:
        known = self._good.get(signature)
        if known is not None and (known[0] is key or known[0] == key) and known[1] == data:
            return True
        if not self.algorithm.verify(key, signature, data):
            return False
        self._remember(signature, key, data)
        return True

    def _remember(self, signature: bytes, key: Any, data: bytes) -> None:
        self._good[signature] = (key, data)
        if len(self._good) > VERIFIED_MAX:
            self._good.popitem(last=False)


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
        # body bytes -> how they read: (message type, tree, object, problems), of bodies
        # whose header type agreed with them
        self._read: OrderedDict[bytes, tuple[Any, Any, Any, tuple[Problem, ...]]] = (
            OrderedDict())

    def decode(self, raw: bytes, own_codes: frozenset[str] | None = None,
               unmapped: frozenset[str] = frozenset()) -> codec.Decoded:
        """codec.decode with this ring, re-reading public keys once for a new sender; a
        body read lately is not read again. A body of one of the `unmapped` types, whose
        domain object the caller never looks at, is checked as codec.decode checks it
        (XML, type agreement, schema) but not mapped: its `obj` is None."""
        envelope = envelope_mod.decode(raw)
        try:
            signature = self.ring.verify(envelope, own_codes)
        except PaygateError as exc:
            if exc.code != "signature_key_unknown":
                raise
            self.ring.reread_public()
            signature = self.ring.verify(envelope, own_codes)
        if envelope.header.mesg_type in unmapped:
            return self._read_unmapped(envelope, signature)
        return self._read_body(envelope, signature)

    def _read_unmapped(self, envelope: Envelope, signature: str) -> codec.Decoded:
        """The body's XML and schema checks without its mapping, when it is the document
        its header names; anything else is read in full by the codec, which names what is
        wrong with it."""
        root = xml.parse(envelope.body)
        if etree.QName(root).localname != "Document":
            return codec.decode_envelope(envelope, signature)
        mtype = catalogue.by_namespace(xml.namespace_of(root))
        if mtype.code != envelope.header.mesg_type:
            return codec.decode_envelope(envelope, signature)
        return codec.Decoded(envelope, mtype, root, None,
                             codec.schema_problems(mtype.code, root), signature)

    def _read_body(self, envelope: Envelope, signature: str) -> codec.Decoded:
        known = self._read.get(envelope.body)
        if known is not None and known[0].code == envelope.header.mesg_type:
            mtype, root, obj, problems = known
            return codec.Decoded(envelope, mtype, root, obj, list(problems), signature)
        decoded = codec.decode_envelope(envelope, signature)
        if (envelope.header.orig_receiver != NPC_CODE
                and decoded.mtype.code == envelope.header.mesg_type
                and len(envelope.body) <= READ_BODY_LEN_MAX):
            self._read[envelope.body] = (decoded.mtype, decoded.root, decoded.obj,
                                         tuple(decoded.problems))
            if len(self._read) > READ_MAX:
                self._read.popitem(last=False)
        return decoded
