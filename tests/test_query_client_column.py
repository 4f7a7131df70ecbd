"""A database made before queries and free text kept their client gets the column when
the query desk starts, on SQLite and on PostgreSQL, and each query and free text a client
made gets that client: the one its answer was stored under with its Idempotency-Key,
whether or not it named an operator; a chase, the client of the query it chases. A
bank's and the gateway's own keep none (gateway.scope.sees_unattached judges them)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import ledger
from gateway import dialect
from gateway.queries import schema

AT = "2026-12-07T09:00:00+08:00"

# (id, direction, source, requested_by, chase_of)
QUERIES = [
    ("Q1", "out", "core", "core", None),
    ("Q2", "out", "operator", "op7", None),
    ("Q3", "out", "core", "op7", "Q2"),  # a chase of Q2, in the operator's name
    ("QI4", "in", "counterparty", "888200000015", None),
    ("Q5", "out", "gateway", "gateway", None),
]
FREE_TEXT = [("F1", "out"), ("FI2", "in")]
# (client, key, the id its stored answer names)
KEPT = [("core", "queries:k1", "Q1"), ("branch-app", "queries:k1", "Q2"),
        ("teller", "free_format:k1", "F1"), ("teller", "transfers:k9", "Q5")]


def _query(tx: Any, query_id: str, direction: str, source: str, by: str,
           chase_of: str | None) -> None:
    tx.execute("INSERT INTO queries (id, direction, state, system, counterparty, our_party, "
               "their_party, msg_id, mesg_id, content, amount_fen, currency, orig_msg_id, "
               "orig_instg_party, orig_mt, source, requested_by, chase_of, asked_at, "
               "reply_due_at, created_at, updated_at) VALUES (?, ?, 'open', 'HVPS', "
               "'888200000015', '999100000019', '888200000015', ?, ?, '款项未到', 1234, "
               "'CNY', '2026120700000001', '888200000015', 'hvps.111.001.01', ?, ?, ?, "
               "?, ?, ?, ?)", (query_id, direction, query_id, query_id, source, by, chase_of,
                               AT, AT, AT, AT))


def _free_text(tx: Any, item_id: str, direction: str, seq: int) -> None:
    tx.execute("INSERT INTO free_format (id, feed_seq, direction, sender, receiver, system, "
               "msg_id, mesg_id, content, at) VALUES (?, ?, ?, '999100000019', "
               "'888200000015', 'HVPS', ?, ?, '请协查', ?)",
               (item_id, seq, direction, item_id, item_id, AT))


def _old_database(url: str) -> None:
    """The desk's tables as they were before the client column, with rows of each kind."""
    db = ledger.connect(url)
    with db.transaction() as tx:
        dialect.install(tx, schema.SCHEMA)
        for table in ("queries", "free_format"):
            tx.execute(f"ALTER TABLE {table} DROP COLUMN client", ())
        for row in QUERIES:
            _query(tx, *row)
        for seq, (item_id, direction) in enumerate(FREE_TEXT, 1):
            _free_text(tx, item_id, direction, seq)
        for client, key, item_id in KEPT:
            tx.execute("INSERT INTO query_requests (client, key, body_sha256, status, "
                       "response, created_at) VALUES (?, ?, 'x', 201, ?, ?)",
                       (client, key, json.dumps({"id": item_id, "state": "open"}), AT))
    db.close()


def _installed(url: str) -> dict[str, str | None]:
    """The desk's schema installed on `url`; each query's and free text's client."""
    db = ledger.connect(url)
    with db.transaction() as tx:
        schema.install(tx)
        rows = [*tx.query("SELECT id, client FROM queries", ()),
                *tx.query("SELECT id, client FROM free_format", ())]
    db.close()
    return dict(rows)


def test_a_database_made_before_the_column_gets_each_items_client(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "_KEPT_PAGE", 2)  # the stored answers read over pages
    _old_database(database_url)

    clients = _installed(database_url)

    assert clients == {"Q1": "core", "Q2": "branch-app", "Q3": "branch-app", "QI4": None,
                       "Q5": None, "F1": "teller", "FI2": None}


def test_a_second_start_changes_nothing(database_url: str) -> None:
    _old_database(database_url)
    first = _installed(database_url)

    assert _installed(database_url) == first
