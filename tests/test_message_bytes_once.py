"""A message's bytes are kept once, in the archive: an outgoing message's outbox row names
it and carries no copy, an incoming message processed on receipt leaves none in the
inbox. Whatever reads the bytes back (the link sender's claim, reprocessing a message
whose processing failed) gets that message's own bytes, also when several are read in
one transaction."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

import ledger
from gateway import outbound
from gateway.clock import SHANGHAI
from gateway.inbound import Processed, process_tx, receive_and_process_tx
from gateway.messages import ccms900, codec
from gateway.messages import envelope as env_mod
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.store import Store

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=SHANGHAI)
BANK, NPC = "999100000019", outbound.NPC


class _Db:
    """The gateway's store, each `transaction` one piece of work run as the gateway runs
    it (its own transaction here: one at a time)."""

    def __init__(self, path) -> None:
        self.store = Store(f"sqlite:///{path}", ledger.Ledger())
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.store.open())

    def run(self, work):
        return self.loop.run_until_complete(self.store.run(work))

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


@pytest.fixture()
def db(tmp_path):
    database = _Db(tmp_path / "gw.db")
    yield database
    database.close()


def _result(tx, sender: str, receiver: str, about: str) -> bytes:
    """An unsigned ccms.900 from `sender` about our message `about`."""
    header = outbound.new_header(tx, NOW, sender, receiver, ccms900.MESSAGE_TYPE, "HVPS")
    body = ccms900.build(ccms900.CommonConf(
        header=GroupHeader(msg_id=header.mesg_id, created_at="2026-12-07T10:00:00",
                           instg_direct=sender, instg_party=sender, instd_direct=receiver,
                           instd_party=receiver, system="HVPS"),
        original=OriginalRef(msg_id=about, instg_party=receiver, mt="hvps.111.001.01"),
        status="PR04", processed_on="2026-12-07"))
    return codec.encode(header, body, None, sign=False)


def test_messages_put_in_one_transaction_are_claimed_with_their_own_bytes(db):
    def put(tx):
        sent = {}
        for about in ("A1", "A2", "A3"):
            raw = _result(tx, BANK, NPC, about)
            header = env_mod.decode(raw).header
            sent[outbound.put_message(tx, header, raw, NOW)] = raw
        return sent, tx.query("SELECT COUNT(*) FROM outbox WHERE envelope IS NOT NULL", ())
    sent, copies = db.run(put)
    assert copies == [(0,)]  # named, not copied
    # claimed in one transaction, as the link sender's works are under load
    claimed = db.run(lambda tx: {i: outbound.claim(tx, i, None, NOW, None)
                                 for i in sorted(sent)})
    assert claimed == sent
    assert db.run(lambda tx: outbound.claim(tx, min(sent), None, NOW, None)) is None
    archived = db.run(lambda tx: tx.query(
        "SELECT envelope FROM archive WHERE direction = 'out' ORDER BY id", ()))
    assert [bytes(e) for (e,) in archived] == list(sent.values())


def test_a_message_processed_on_receipt_leaves_no_copy_in_the_inbox(db):
    def receive(tx):
        raw = _result(tx, NPC, BANK, "B1")
        received = receive_and_process_tx(
            tx, env_mod.decode(raw), raw, codec.decode(raw), NOW, BANK,
            {ccms900.MESSAGE_TYPE: lambda tx, d, now: Processed({"status": d.obj.status})},
            lambda *a, **k: None, ack_claimed=False)
        row = tx.query_one("SELECT state, length(envelope) FROM inbox WHERE id = ?",
                           (received.inbox_id,))
        return raw, row
    raw, row = db.run(receive)
    # Archived with the transaction's other messages once its works have run.
    archived = db.run(lambda tx: tx.query_one(
        "SELECT envelope FROM archive WHERE direction = 'in'", ()))
    assert row == ("processed", 0)
    assert bytes(archived[0]) == raw


def test_a_message_whose_processing_failed_is_processed_again_from_the_archive(db):
    """Processing on receipt fails (undone alone): the row is left received without bytes
    of its own, and the later pass reads the archived ones, each message its own."""
    def failing(tx, d, now):
        raise RuntimeError("handler fault")

    seen = []

    def recording(tx, d, now):
        seen.append(d.obj.original.msg_id)
        return Processed({"status": d.obj.status})

    def receive(tx):
        ids = []
        for about in ("C1", "C2"):
            raw = _result(tx, NPC, BANK, about)
            ids.append(receive_and_process_tx(
                tx, env_mod.decode(raw), raw, codec.decode(raw), NOW, BANK,
                {ccms900.MESSAGE_TYPE: failing}, lambda *a, **k: None,
                ack_claimed=False).inbox_id)
        return ids, tx.query("SELECT state, length(envelope) FROM inbox ORDER BY id", ())
    ids, states = db.run(receive)
    assert states == [("received", 0), ("received", 0)]

    def process(tx):
        for inbox_id in ids:
            process_tx(tx, inbox_id, NOW, {ccms900.MESSAGE_TYPE: recording},
                       lambda *a, **k: None)
        return tx.query("SELECT state FROM inbox ORDER BY id", ())
    states = db.run(process)
    assert seen == ["C1", "C2"]
    assert states == [("processed",), ("processed",)]
