"""Public keys installed while the gateway runs are picked up, and a message from a sender
whose key is not there yet is "not taken now" (503, retried by the sender), never
refused for good; a known key that does not verify stays a final refusal (401)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from gateway.errors import PaygateError
from gateway.messages import envelope as env_mod
from gateway.messages.signing import KeyRing, write_keypair
from tests.e2e_support import BANK, BRANCH, PEER, YUAN, balance, open_account, started, until

HEADER = env_mod.Header(orig_sender=PEER, orig_sender_sid="HVPS", orig_receiver=BANK,
                        orig_receiver_sid="HVPS", send_date="20261207", send_time="090000",
                        mesg_type="hvps.111.001.01", mesg_id="20261207000000000077",
                        mesg_ref_id="20261207000000000077", direction="D")
BODY = b"<Document/>"


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def signed_by_peer(keys: Path) -> env_mod.Envelope:
    write_keypair(keys, PEER)
    signature = KeyRing.load(keys, [PEER]).sign(HEADER, BODY)
    return env_mod.Envelope(HEADER, signature, BODY)


def verify_error(ring: KeyRing, envelope: env_mod.Envelope) -> PaygateError:
    with pytest.raises(PaygateError) as caught:
        ring.verify(envelope)
    return caught.value


def test_a_key_written_after_start_is_picked_up(tmp_path):
    """The ring was read before the peer's key existed; the peer's first message makes it
    read the directory again, and the signature verifies."""
    write_keypair(tmp_path, BANK)
    ring = KeyRing.load(tmp_path, [BANK])
    envelope = signed_by_peer(tmp_path)

    assert PEER not in ring.public
    assert ring.verify(envelope) == "verified"


def test_the_directory_is_read_again_at_most_once_per_interval(tmp_path):
    """An unknown sender is answered 503 signature_key_unknown; a key installed moments
    later is read at the next due reading, not at every message."""
    write_keypair(tmp_path, BANK)
    ticks = Ticks()
    ring = KeyRing.load(tmp_path, [BANK])
    ring.monotonic, ring.reread_every_s = ticks, 5.0
    other = tmp_path / "elsewhere"
    envelope = signed_by_peer(other)

    first = verify_error(ring, envelope)
    shutil.copy(other / f"{PEER}.pub.pem", tmp_path / f"{PEER}.pub.pem")
    ticks.now_s += 4.0
    second = verify_error(ring, envelope)
    ticks.now_s += 1.0
    third = ring.verify(envelope)

    assert (first.code, first.status, first.problems[0].value) == (
        "signature_key_unknown", 503, PEER)
    assert (second.code, second.status) == ("signature_key_unknown", 503)
    assert third == "verified"


def test_a_bad_signature_with_a_known_key_stays_a_final_refusal(tmp_path):
    """A signature the sender's loaded key does not accept is 401 signature_invalid."""
    write_keypair(tmp_path, BANK)
    envelope = signed_by_peer(tmp_path)
    ring = KeyRing.load(tmp_path, [BANK])
    forged = env_mod.Envelope(HEADER, envelope.signature, b"<Document>x</Document>")

    error = verify_error(ring, forged)

    assert (error.code, error.status) == ("signature_invalid", 401)


@pytest.mark.e2e
def test_a_credit_from_a_sender_without_a_key_is_retried_and_credited_once_it_appears(
        tmp_path):
    """The peer's key is not in the gateway's ring nor its directory when the NPC forwards
    its settled credit: the gateway answers 503 and alerts naming the peer, the NPC sends
    it again, and once the key is back in the directory the payee is credited once."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payee = await open_account(h, 5, 0)
            key_file = h.keys_dir / f"{PEER}.pub.pem"
            aside = tmp_path / "aside.pub.pem"
            key_file.rename(aside)
            gw.keyring.public.pop(PEER)
            gw.keyring.public_all.pop(PEER)
            gw.keyring.reread_every_s = 0.5
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": payee,
                "payee_name": "示例客户", "payee_bank": BRANCH, "amount_fen": 250 * YUAN,
                "count": 1})

            async def alerted() -> list:
                return await gw.store.run(lambda tx: tx.query(
                    "SELECT detail FROM alerts WHERE code = 'sender_key_unknown'", ()))
            await until(alerted, "a sender_key_unknown alert", 20)
            before = await balance(h, payee)
            aside.rename(key_file)

            async def credited() -> bool:
                return await balance(h, payee) == 250 * YUAN
            await until(credited, "the payee credited", 30)
            await asyncio.sleep(1.0)
            return before, await balance(h, payee), await alerted()

    before, after, alerts = asyncio.run(scenario())

    assert before == 0
    assert after == 250 * YUAN
    assert len(alerts) == 1 and json.loads(alerts[0][0])["sender"] == PEER
