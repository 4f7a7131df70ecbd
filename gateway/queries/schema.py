"""The query desk's tables, created at start-up in the gateway's database.

Times are ISO datetimes in business time (Asia/Shanghai). SQL is portable between
SQLite and PostgreSQL: text keys made from message ids, and feed positions taken from
the gateway's sequences instead of autoincrement columns.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gateway import dialect
from gateway.queries import records

log = logging.getLogger("paygate.queries")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS queries (
        id TEXT PRIMARY KEY,              -- Q<msg id> ours, QI<sender><msg id> theirs
        direction TEXT NOT NULL,          -- out: we ask | in: we are asked
        state TEXT NOT NULL,              -- open | answered | refused
        system TEXT NOT NULL,             -- HVPS | BEPS: the system of the payment
        counterparty TEXT NOT NULL,       -- the other bank's direct participant
        our_party TEXT NOT NULL,          -- the banks the GrpHdr names on each side
        their_party TEXT NOT NULL,
        msg_id TEXT NOT NULL,             -- XML MsgId of the ccms.314
        mesg_id TEXT NOT NULL,            -- header MesgID of the ccms.314
        query_type TEXT,                  -- QT00 | QT01 | null
        content TEXT NOT NULL,
        amount_fen INTEGER NOT NULL,
        currency TEXT NOT NULL,
        orig_msg_id TEXT NOT NULL,        -- the payment asked about (OrgnlGrpHdr)
        orig_instg_party TEXT NOT NULL,
        orig_mt TEXT NOT NULL,
        orig_tx_id TEXT,                  -- OrgnlTx, when given
        orig_instg_indirect TEXT, orig_instd_indirect TEXT, orig_tx_type TEXT,
        payment_id TEXT,                  -- our payment, when we have it
        chase_of TEXT,                    -- the earlier query this one chases
        source TEXT NOT NULL,             -- core | operator | counterparty | gateway
        requested_by TEXT,
        doubt_at TEXT,                    -- out: when the doubt arose
        ask_due_at TEXT,                  -- out: by when the query had to be sent
        asked_at TEXT NOT NULL,           -- sent (out) or received (in)
        reply_due_at TEXT NOT NULL,
        replied_at TEXT, reply_msg_id TEXT, reply_content TEXT, replied_by TEXT,
        handling TEXT,                    -- in: auto, or why an operator must answer
        warned_at TEXT, overdue_at TEXT,  -- when operators were told
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        refused_at TEXT, refused_with TEXT,  -- out: the NPC refused it, by this message type;
        refusal_code TEXT, refusal_reason TEXT,  -- in: the NPC refused our latest reply
        handling_before_refusal TEXT,     -- in: its handling before our reply was refused
        client TEXT,                      -- out: the core-system client that asked; null:
                                          -- no client (a bank's, the gateway's own)
        UNIQUE (direction, counterparty, msg_id)
    )""",
    "CREATE INDEX IF NOT EXISTS queries_state ON queries (state, reply_due_at)",
    "CREATE INDEX IF NOT EXISTS queries_payment ON queries (payment_id)",
    "CREATE INDEX IF NOT EXISTS queries_msg ON queries (msg_id)",
    # Ours by their header's MesgID: a ccms.911 names a discarded one so.
    "CREATE INDEX IF NOT EXISTS queries_out_mesg ON queries (mesg_id) "
    "WHERE direction = 'out'",
    """CREATE TABLE IF NOT EXISTS query_replies (
        id TEXT PRIMARY KEY,              -- A<sender><msg id> of the ccms.315
        feed_seq INTEGER NOT NULL UNIQUE, -- position in the polling feed
        query_id TEXT,                    -- null: no query of ours matches it
        direction TEXT NOT NULL,          -- in: from the counterparty | out: ours
        sender TEXT NOT NULL, msg_id TEXT NOT NULL, mesg_id TEXT NOT NULL,
        answered_msg_id TEXT NOT NULL,    -- OrgnlGrpHdr/OrgnlMsgId of the reply
        content TEXT NOT NULL, replied_by TEXT NOT NULL,
        at TEXT NOT NULL, late INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'reply',  -- reply | refusal: the NPC refused our query
        code TEXT,                        -- a refusal's processing code
        refused_at TEXT, refused_with TEXT,  -- out: the NPC refused our reply, as a query
        refusal_code TEXT, refusal_reason TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS query_replies_query ON query_replies (query_id)",
    # Our replies by their XML MsgId and header MesgID: the NPC names a refused one so.
    "CREATE INDEX IF NOT EXISTS query_replies_out_msg ON query_replies (msg_id) "
    "WHERE direction = 'out'",
    "CREATE INDEX IF NOT EXISTS query_replies_out_mesg ON query_replies (mesg_id) "
    "WHERE direction = 'out'",
    """CREATE TABLE IF NOT EXISTS free_format (
        id TEXT PRIMARY KEY,              -- F<msg id> ours, FI<sender><msg id> theirs
        feed_seq INTEGER NOT NULL UNIQUE,
        direction TEXT NOT NULL,
        sender TEXT NOT NULL, receiver TEXT NOT NULL, system TEXT NOT NULL,
        msg_id TEXT NOT NULL, mesg_id TEXT NOT NULL,
        content TEXT NOT NULL, requested_by TEXT, at TEXT NOT NULL,
        refused_at TEXT, refused_with TEXT,  -- out: the NPC refused it, as for a query
        refusal_code TEXT, refusal_reason TEXT,
        client TEXT                       -- out: the client that sent it; null: no client
    )""",
    "CREATE INDEX IF NOT EXISTS free_format_out_msg ON free_format (msg_id) "
    "WHERE direction = 'out'",
    "CREATE INDEX IF NOT EXISTS free_format_out_mesg ON free_format (mesg_id) "
    "WHERE direction = 'out'",
    """CREATE TABLE IF NOT EXISTS query_requests (
        client TEXT NOT NULL, key TEXT NOT NULL, body_sha256 TEXT NOT NULL,
        status INTEGER NOT NULL, response TEXT NOT NULL, created_at TEXT NOT NULL,
        request TEXT,                     -- the first body (gateway.key_reuse)
        PRIMARY KEY (client, key)
    )""",
]


# Columns added after the tables' first release: a database made before them gets them
# at start-up (they are in the CREATE statements above for a new one).
_REFUSAL = [("refused_at", "TEXT"), ("refused_with", "TEXT"), ("refusal_code", "TEXT"),
            ("refusal_reason", "TEXT")]
ADDED_COLUMNS = {
    "queries": [*_REFUSAL, ("handling_before_refusal", "TEXT"), ("client", "TEXT")],
    "free_format": [*_REFUSAL, ("client", "TEXT")],
    "query_replies": [("kind", "TEXT NOT NULL DEFAULT 'reply'"), ("code", "TEXT"),
                      *_REFUSAL],
    "query_requests": [("request", "TEXT")],
}
# What a client may have made and has no client recorded (`fill_clients`): a query
# asked by the core system or an operator it named (both ours: a bank's is
# `counterparty`, the gateway's own `gateway`), free text of ours. Kept in the indexes'
# conditions and in the queries that read them, word for word.
_QUERY_UNFILLED = "client IS NULL AND source IN ('core', 'operator')"
_FREE_UNFILLED = "client IS NULL AND direction = 'out'"
# Indexes on those columns, made once they are there: the operators' list of refusals;
# the rows still without their client, and the stored answers by when they were made
# (`fill_clients`, at each start: the first holds next to nothing once they are filled).
ADDED_INDEXES = [
    "CREATE INDEX IF NOT EXISTS queries_refused ON queries (refused_at) "
    "WHERE refused_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS free_format_refused ON free_format (refused_at) "
    "WHERE refused_at IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS queries_client_unfilled ON queries (id) "
    f"WHERE {_QUERY_UNFILLED}",
    f"CREATE INDEX IF NOT EXISTS free_format_client_unfilled ON free_format (id) "
    f"WHERE {_FREE_UNFILLED}",
    "CREATE INDEX IF NOT EXISTS query_requests_created ON query_requests (created_at)",
]


# What a client made is kept under its Idempotency-Key: the key's kind, the table.
_KEPT_KINDS = {"queries": "queries", "chase": "queries", "free_format": "free_format"}
_KEPT_PAGE = 500  # answers or rows read at a time while the clients are filled in


def install(tx: Any) -> None:
    dialect.install(tx, SCHEMA)
    added = []
    for table, columns in ADDED_COLUMNS.items():
        if "client" in dialect.add_columns(tx, table, columns):
            added.append(table)
    dialect.install(tx, ADDED_INDEXES)
    fill_clients(tx, added)
    records.restore_handling(tx)


def fill_clients(tx: Any, added: list[str]) -> int:
    """Give the queries and free text a client made and that have no client recorded the
    client that made them: the one whose answer the gateway stored under its
    Idempotency-Key (query_requests; every query, chase and free text a client made has
    one, whether or not it named an operator), and for a chase with none, the client of
    the query it chases. What no client made (a bank's, the gateway's own) keeps none.
    The rows filled.

    Run at each start. In the transaction that adds the column (`added`, the tables that
    just got it) every stored answer is read. At any other start only the rows still
    without their client that a client may have made are read (an index holds them),
    each matched with the answers stored at the time it was made (the same clock
    reading): rows an older gateway process wrote after the column existed, as during a
    rolling upgrade on PostgreSQL, where it keeps no client; once every process is
    upgraded, there are none."""
    filled = _fill_from_every_answer(tx, added) if added else 0
    filled += _fill_unfilled(tx)
    if added or filled:
        log.info("event=query_clients_filled tables=%s rows=%s", ",".join(added) or "-",
                 filled)
    return filled


def _fill_from_every_answer(tx: Any, tables: list[str]) -> int:
    filled = 0
    last = ("", "")
    while True:
        page = tx.query("SELECT client, key, response FROM query_requests "
                        "WHERE status = 201 AND (client > ? OR (client = ? AND key > ?)) "
                        "ORDER BY client, key LIMIT ?",
                        (last[0], last[0], last[1], _KEPT_PAGE))
        for client, key, response in page:
            table = _KEPT_KINDS.get(key.split(":", 1)[0])
            item_id = json.loads(response).get("id")
            if table in tables and isinstance(item_id, str):
                filled += tx.execute(f"UPDATE {table} SET client = ? WHERE id = ? "
                                     "AND client IS NULL", (client, item_id))
        if len(page) < _KEPT_PAGE:
            break
        last = (page[-1][0], page[-1][1])
    return filled


# A page of the rows without their client (after an id), with when each was made; the
# answers stored at one time.
UNFILLED = {"queries": f"SELECT id, created_at FROM queries WHERE {_QUERY_UNFILLED} "
                       "AND id > ? ORDER BY id LIMIT ?",
            "free_format": f"SELECT id, at FROM free_format WHERE {_FREE_UNFILLED} "
                           "AND id > ? ORDER BY id LIMIT ?"}
STORED_AT = ("SELECT client, key, response FROM query_requests WHERE created_at = ? "
             "AND status = 201")


def _fill_unfilled(tx: Any) -> int:
    """The rows still without their client (`_QUERY_UNFILLED`, `_FREE_UNFILLED`), each
    given the client of the answer stored for it when it was made; then chases with
    none, their query's."""
    filled = 0
    for table, select in UNFILLED.items():
        last = ""
        while True:
            page = tx.query(select, (last, _KEPT_PAGE))
            for item_id, at in page:
                client = _stored_client(tx, table, item_id, at)
                if client is not None:
                    filled += tx.execute(f"UPDATE {table} SET client = ? WHERE id = ? "
                                         "AND client IS NULL", (client, item_id))
            if len(page) < _KEPT_PAGE:
                break
            last = page[-1][0]
    for chase_id, chase_of in tx.query(f"SELECT id, chase_of FROM queries WHERE "
                                       f"{_QUERY_UNFILLED} AND chase_of IS NOT NULL", ()):
        filled += tx.execute("UPDATE queries SET client = (SELECT f.client FROM queries f "
                             "WHERE f.id = ?) WHERE id = ? AND client IS NULL AND EXISTS "
                             "(SELECT 1 FROM queries f WHERE f.id = ? AND f.client IS NOT "
                             "NULL)", (chase_of, chase_id, chase_of))
    return filled


def _stored_client(tx: Any, table: str, item_id: str, at: str) -> str | None:
    """The client whose answer stored at `at` names the item `item_id` of `table`."""
    for client, key, response in tx.query(STORED_AT, (at,)):
        if _KEPT_KINDS.get(key.split(":", 1)[0]) == table \
                and json.loads(response).get("id") == item_id:
            return client
    return None
