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


LATER = "2026-12-07T10:00:00+08:00"
# Rows an older gateway process wrote after the column existed (as during a rolling
# upgrade on PostgreSQL): (id, direction, source, requested_by, chase_of), each client's
# answer stored when its row was made, under the key of its kind.
LATER_QUERIES = [
    ("Q11", "out", "core", "core", None),
    ("Q12", "out", "operator", "op7", None),
    ("Q13", "out", "core", "op7", "Q12"),  # a chase with no answer of its own stored
    ("Q14", "out", "core", "core", "Q11"),  # a chase asked under a key of its own
    ("QI15", "in", "counterparty", "888200000015", None),
    ("Q16", "out", "gateway", "gateway", None),
]
LATER_KEPT = [("core", "queries:k11", "Q11"), ("branch-app", "queries:k12", "Q12"),
              ("teller", "chase:k14", "Q14"), ("teller", "free_format:k13", "F13")]


def _written_by_an_older_process(url: str) -> None:
    """The desk's tables as this gateway makes them, then rows written without their
    client, with the answers stored for them."""
    db = ledger.connect(url)
    with db.transaction() as tx:
        schema.install(tx)
        for query_id, direction, source, by, chase_of in LATER_QUERIES:
            _query(tx, query_id, direction, source, by, chase_of)
            tx.execute("UPDATE queries SET created_at = ? WHERE id = ?", (LATER, query_id))
        _free_text(tx, "F13", "out", 13)
        tx.execute("UPDATE free_format SET at = ? WHERE id = 'F13'", (LATER,))
        for client, key, item_id in LATER_KEPT:
            tx.execute("INSERT INTO query_requests (client, key, body_sha256, status, "
                       "response, created_at) VALUES (?, ?, 'x', 201, ?, ?)",
                       (client, key, json.dumps({"id": item_id, "state": "open"}), LATER))
    db.close()


def test_rows_an_older_process_wrote_after_the_column_get_their_client_at_the_next_start(
        database_url: str) -> None:
    """Each gets the client whose answer was stored for it when it was made (a chase with
    none, its query's); a bank's and the gateway's own keep none."""
    _written_by_an_older_process(database_url)

    clients = _installed(database_url)

    assert clients == {"Q11": "core", "Q12": "branch-app", "Q13": "branch-app",
                       "Q14": "teller", "QI15": None, "Q16": None, "F13": "teller"}


def _plan(tx: Any, sql: str, params: tuple) -> str:
    """How the database reads `sql`, as one text (an index over a scan of the table)."""
    if tx.dialect == "postgresql":
        tx.execute("SET LOCAL enable_seqscan = off", ())  # as for a table of many rows
        return "\n".join(row[0] for row in tx.query("EXPLAIN " + sql, params))
    return "\n".join(row[3] for row in tx.query("EXPLAIN QUERY PLAN " + sql, params))


def test_each_start_reads_only_the_rows_without_a_client_from_indexes(
        database_url: str) -> None:
    """What the start reads when no column is added: the rows without their client from
    partial indexes that hold only them, and the answers stored at one time from an
    index of when they were made, never the whole tables."""
    db = ledger.connect(database_url)
    with db.transaction() as tx:
        schema.install(tx)
        plans = {name: _plan(tx, sql, ("", 500)) for name, sql in schema.UNFILLED.items()}
        plans["stored"] = _plan(tx, schema.STORED_AT, (LATER,))
    db.close()

    assert "queries_client_unfilled" in plans["queries"], plans["queries"]
    assert "free_format_client_unfilled" in plans["free_format"], plans["free_format"]
    assert "query_requests_created" in plans["stored"], plans["stored"]
