"""The end-of-run counting of `bench e2e` (gateway.bench_e2e.beps_outcomes) reads each
BEPS transaction's settlement from its own history row or its package's, and which
changes the webhook told, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import ledger
from gateway import dialect
from gateway.beps import schema as beps_schema
from gateway.bench_e2e import beps_outcomes
from gateway.store import SCHEMA

AT = "2026-12-07T09:00:00+08:00"
# payment id, channel, direction, package (None: none), settled under its own id
PAYMENTS = [
    ("whole-1", "beps", "out", "P1", False),     # its package settled whole
    ("whole-2", "beps", "out", "P1", False),
    ("own", "beps", "out", "P2", True),          # settled member by member
    ("open", "beps", "out", "P3", False),        # its package not settled yet
    ("twice", "beps", "out", "P1", True),        # both: counted twice, as it must be
    ("unpacked", "beps", "out", None, False),
    ("incoming", "beps", "in", None, True),      # not ours to count
    ("hvps", "hvps", "out", None, True),
]
# outbox id, its state, the (payment, state) changes it carries
WEBHOOK_ROWS = [(1, "done", [("whole-1", "settled"), ("hvps", "settled")]),
                (2, "pending", [("own", "settled"), ("incoming", "credited")])]


def _fill(tx) -> None:
    dialect.install(tx, SCHEMA)
    beps_schema.install(tx)
    for pid, channel, direction, package, own in PAYMENTS:
        tx.execute(
            "INSERT INTO payments (id, direction, channel, state, msg_type, msg_id, tx_id, "
            "end_to_end_id, sender_direct, receiver_direct, amount_fen, currency, "
            "payer_account, payer_name, payer_bank, payee_account, payee_name, payee_bank, "
            "business_type, business_kind, urgency, priority, work_date, created_at, "
            "updated_at) VALUES (?, ?, ?, 'settled', 't', ?, 'x', 'x', 'x', 'x', 1, 'CNY', "
            "'a', 'n', 'b', 'a', 'n', 'b', 'A100', '02102', 'normal', 3, '2026-12-07', ?, ?)",
            (pid, direction, channel, pid, AT, AT))
        if package is not None:
            tx.execute("INSERT INTO beps_items (payment_id, kind, side, counterparty, "
                       "msg_type, amount_fen, package_id, created_at) VALUES (?, "
                       "'credit_out', 'D', '888200000015', 'beps.121', 1, ?, ?)",
                       (pid, package, AT))
        if own:
            tx.execute("INSERT INTO payment_events (payment_id, at, state, event) VALUES "
                       "(?, ?, 'settled', 'e')", (pid, f"own:{pid}"))
    for subject, state in (("package:P1", "settled"), ("package:P3", "netted")):
        tx.execute("INSERT INTO payment_events (payment_id, at, state, event) VALUES "
                   "(?, ?, ?, 'e')", (subject, f"at:{subject}", state))
    for outbox_id, state, changes in WEBHOOK_ROWS:
        tx.execute("INSERT INTO outbox (id, kind, stream, state, created_at, updated_at) "
                   "VALUES (?, 'webhook', 's', ?, ?, ?)", (outbox_id, state, AT, AT))
        for pid, change in changes:
            tx.execute("INSERT INTO webhook_events (outbox_id, payment_id, state) VALUES "
                       "(?, ?, ?)", (outbox_id, pid, change))
    # A whole package's change, filed under the package (gateway.payments._write_webhooks):
    # its payments are the events of the row that name them with that state.
    tx.execute("INSERT INTO outbox (id, kind, stream, state, envelope, created_at, "
               "updated_at) VALUES (3, 'webhook', 's', 'done', ?, ?, ?)",
               (PACKAGE_ROW_BODY, AT, AT))
    tx.execute("INSERT INTO webhook_events (outbox_id, payment_id, state) VALUES "
               "(3, 'package:P1', 'netted')")


PACKAGE_ROW_BODY = (b'[{"id":"whole-1","state":"netted"},{"id":"whole-2","state":"netted"},'
                    b'{"id":"own","state":"netted"},{"id":"twice","state":"sent"}]')


def test_settlements_and_told_changes_are_counted_from_their_own_rows(database_url):
    """A transaction settles by its own row or its package's (both: two rows), one
    without either has a row with no time, and only BEPS changes are counted as told."""
    db = ledger.connect(database_url)
    try:
        with db.transaction() as tx:
            _fill(tx)
        with db.transaction() as tx:
            webhooks, told, rows = beps_outcomes(tx)
    finally:
        db.close()

    assert sorted((pid, at) for pid, _, _, at in rows) == sorted([
        ("whole-1", "at:package:P1"), ("whole-2", "at:package:P1"), ("own", "own:own"),
        ("open", None), ("twice", "own:twice"), ("twice", "at:package:P1"),
        ("unpacked", None)], key=repr)
    assert webhooks == {"done": 3, "pending": 2}
    assert told == {("whole-1", "settled"), ("hvps", "settled"), ("whole-1", "netted"),
                    ("whole-2", "netted")}
