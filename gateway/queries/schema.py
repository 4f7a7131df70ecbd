"""The query desk's tables, created at start-up in the gateway's database.

Times are ISO datetimes in business time (Asia/Shanghai). SQL is portable between
SQLite and PostgreSQL: text keys made from message ids, and feed positions taken from
the gateway's sequences instead of autoincrement columns.
"""

from __future__ import annotations

from typing import Any

from gateway import dialect

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS queries (
        id TEXT PRIMARY KEY,              -- Q<msg id> ours, QI<sender><msg id> theirs
        direction TEXT NOT NULL,          -- out: we ask | in: we are asked
        state TEXT NOT NULL,              -- open | answered
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
        source TEXT NOT NULL,             -- core | operator | counterparty
        requested_by TEXT,
        doubt_at TEXT,                    -- out: when the doubt arose
        ask_due_at TEXT,                  -- out: by when the query had to be sent
        asked_at TEXT NOT NULL,           -- sent (out) or received (in)
        reply_due_at TEXT NOT NULL,
        replied_at TEXT, reply_msg_id TEXT, reply_content TEXT, replied_by TEXT,
        handling TEXT,                    -- in: auto, or why an operator must answer
        warned_at TEXT, overdue_at TEXT,  -- when operators were told
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        UNIQUE (direction, counterparty, msg_id)
    )""",
    "CREATE INDEX IF NOT EXISTS queries_state ON queries (state, reply_due_at)",
    "CREATE INDEX IF NOT EXISTS queries_payment ON queries (payment_id)",
    "CREATE INDEX IF NOT EXISTS queries_msg ON queries (msg_id)",
    """CREATE TABLE IF NOT EXISTS query_replies (
        id TEXT PRIMARY KEY,              -- A<sender><msg id> of the ccms.315
        feed_seq INTEGER NOT NULL UNIQUE, -- position in the polling feed
        query_id TEXT,                    -- null: no query of ours matches it
        direction TEXT NOT NULL,          -- in: from the counterparty | out: ours
        sender TEXT NOT NULL, msg_id TEXT NOT NULL, mesg_id TEXT NOT NULL,
        answered_msg_id TEXT NOT NULL,    -- OrgnlGrpHdr/OrgnlMsgId of the reply
        content TEXT NOT NULL, replied_by TEXT NOT NULL,
        at TEXT NOT NULL, late INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS query_replies_query ON query_replies (query_id)",
    """CREATE TABLE IF NOT EXISTS free_format (
        id TEXT PRIMARY KEY,              -- F<msg id> ours, FI<sender><msg id> theirs
        feed_seq INTEGER NOT NULL UNIQUE,
        direction TEXT NOT NULL,
        sender TEXT NOT NULL, receiver TEXT NOT NULL, system TEXT NOT NULL,
        msg_id TEXT NOT NULL, mesg_id TEXT NOT NULL,
        content TEXT NOT NULL, requested_by TEXT, at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS query_requests (
        client TEXT NOT NULL, key TEXT NOT NULL, body_sha256 TEXT NOT NULL,
        status INTEGER NOT NULL, response TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (client, key)
    )""",
]


def install(tx: Any) -> None:
    dialect.install(tx, SCHEMA)
