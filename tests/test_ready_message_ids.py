"""A ready hvps.111's MsgId is taken by one core-system client in the database
(`ready_message_ids`): a database kept from before the table existed, where two clients
took one MsgId, keeps both messages as they were and refuses a third client's."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest

import ledger
from gateway import dialect, ready
from gateway.errors import Conflict
from gateway.messages import codec
from gateway.store import SCHEMA, Contended

# ready_messages as the gateway wrote it before a MsgId was taken by one client alone.
FORMER_TABLE = """CREATE TABLE ready_messages (
    client TEXT NOT NULL, key TEXT NOT NULL, fields TEXT NOT NULL,
    PRIMARY KEY (client, key))"""


def _message():
    raw = resources.files("gateway").joinpath(
        "examples", "hvps.111_urgent-goods-payment.xml").read_bytes()
    return codec.decode(raw, bare_ok=True).obj


@pytest.fixture
def db(tmp_path):
    """A database with two clients' messages under one MsgId, and one under another,
    then the gateway's tables installed over it (twice, as two start-ups would)."""
    ct = _message()
    database = ledger.connect(f"sqlite:///{tmp_path / 'gateway.db'}")
    with database.transaction() as tx:
        tx.execute(FORMER_TABLE, ())
        for client, key in (("core-b", ready.key(ct)), ("core-a", ready.key(ct)),
                            ("core-a", "msg:999100000019:2026120790000002")):
            tx.execute("INSERT INTO ready_messages (client, key, fields) VALUES (?, ?, '{}')",
                       (client, key))
    for _ in range(2):
        with database.transaction() as tx:
            dialect.install(tx, SCHEMA)
    yield database, ct
    database.close()


def test_msg_ids_taken_before_are_each_held_by_one_client(db):
    """Each MsgId already taken is held once, by one of the clients that took it; both
    messages of the MsgId two clients took are kept."""
    database, ct = db
    with database.transaction() as tx:
        held = tx.query("SELECT key, client FROM ready_message_ids ORDER BY key", ())
        kept = tx.query("SELECT client FROM ready_messages WHERE key = ? ORDER BY client",
                        (ready.key(ct),))

    assert held == [("msg:999100000019:2026120790000001", "core-a"),
                    ("msg:999100000019:2026120790000002", "core-a")]
    assert kept == [("core-a",), ("core-b",)]


def test_a_third_client_is_refused_a_msg_id_two_clients_took(db):
    """A third client's message under that MsgId is refused (409), and could not be
    recorded if it got past the check."""
    database, ct = db
    with pytest.raises(Conflict) as refused:
        with database.transaction() as tx:
            ready.stored_answer(tx, "core-c", ct, "sha256:third")
    with pytest.raises(Contended):
        with database.transaction() as tx:
            ready.record(tx, "core-c", ct, "P3")

    assert refused.value.problems[0].code == "idempotency_key_reused_with_other_body"


def test_a_new_msg_id_is_taken_once(db):
    """A MsgId never taken is recorded for its client; another client's record of it
    after that is refused."""
    database, ct = db
    new = dataclasses.replace(ct, msg_id="2026120790000099")
    with database.transaction() as tx:
        ready.record(tx, "core-b", new, "P4")
    with pytest.raises(Contended):
        with database.transaction() as tx:
            ready.record(tx, "core-a", new, "P5")
    with database.transaction() as tx:
        held = tx.query_one("SELECT client FROM ready_message_ids WHERE key = ?",
                            (ready.key(new),))

    assert held == ("core-b",)
