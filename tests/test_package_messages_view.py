"""A BEPS item's view (GET /ops/api/payments/{id}) shows the package message that
carried it, found by its message id with its sender: a message id is unique per sender
only, so a message under the same id from another sender is not shown as the item's."""

from __future__ import annotations

import ledger
from gateway import dialect
from gateway.beps import schema as beps_schema
from gateway.ops import views
from gateway.store import SCHEMA

OURS, PEER, NPC = "999100000019", "888200000015", "0000"
SHARED_ID = "20261207000000000001"  # the same header message id from both participants
AT = "2026-12-07T09:00:00+08:00"


def _archive(tx, direction: str, sender: str, receiver: str) -> None:
    tx.execute("INSERT INTO archive (direction, mesg_type, mesg_id, sender, receiver, at, "
               "payment_id, envelope) VALUES (?, 'beps.121.001.01', ?, ?, ?, ?, NULL, ?)",
               (direction, SHARED_ID, sender, receiver, AT, b"{H:...}"))


def _package(tx, package_id: str, direction: str, sender: str, receiver: str,
             payment_id: str) -> None:
    tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, receiver, "
               "count, total_fen, state, mesg_id, created_at, updated_at) VALUES "
               "(?, ?, 'beps.121.001.01', ?, ?, ?, 1, 100, 'netted', ?, ?, ?)",
               (package_id, direction, package_id, sender, receiver, SHARED_ID, AT, AT))
    tx.execute("INSERT INTO beps_items (payment_id, kind, side, counterparty, msg_type, "
               "amount_fen, package_id, created_at) VALUES (?, ?, ?, ?, "
               "'beps.121.001.01', 100, ?, ?)",
               (payment_id, "credit_out" if direction == "out" else "credit_in",
                "D" if direction == "out" else "C", receiver if direction == "out" else sender,
                package_id, AT))


def test_an_item_s_package_message_is_matched_by_its_sender_too(tmp_path):
    """Our package and the peer's package the NPC forwarded to us carry one message id
    (each numbered by its own sender): each item shows its own package's message, not
    the other's; a third message under that id, from another bank, is neither's."""
    db = ledger.connect(f"sqlite:///{tmp_path / 'gateway.db'}")
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        beps_schema.install(tx)
        _archive(tx, "out", OURS, PEER)
        _archive(tx, "in", NPC, OURS)
        _package(tx, "P-OUT", "out", OURS, PEER, "OUT1")
        _package(tx, "P-IN", "in", PEER, OURS, "IN1")
        ours = views.payment_messages(tx, "OUT1", "beps")
        theirs = views.payment_messages(tx, "IN1", "beps")
        _archive(tx, "in", "777300000011", OURS)
        still_theirs = views.payment_messages(tx, "IN1", "beps")
    db.close()

    assert [(m["direction"], m["sender"]) for m in ours] == [("out", OURS)]
    assert [(m["direction"], m["sender"]) for m in theirs] == [("in", NPC)]
    assert still_theirs == theirs
