"""The BEPS tables in the gateway's database (portable SQL: SQLite and PostgreSQL).

- `beps_items`: one row per BEPS transaction in either direction, with the package that
  carries it, the netting round the NPC put it in and the day its round settled. Packing
  state lives here, not in Redis: an item with no package is waiting to be packed, so a
  restart leaves nothing behind and an item can never join two packages.
- `beps_packages`: every package we sealed or received, with its state and round.
- `beps_rounds`: netting rounds whose settlement the NPC announced (saps.606).
- `beps_mandates`: debit authorisations our customers gave (account, agreement), and
  `beps_debit_stops` the stop-payments (止付) in force; `beps_mandate_events` every change
  of either, with the client that asked (mandates.py).
- `beps_cancel_waits`: our credits the NPC was asked to take out of their package
  (ccms.307) and has not answered about yet; a netting notice leaves them alone until
  the answer says whether they were netted (cancels.py).
- `beps_netting_dates`: each netting date and where its reconciliation with the NPC
  stands (netting_dates.py).
- `beps_debit_reviews`: debits other banks sent us that the screening holds, with the
  package they came in and when they are refused if operators have not decided
  (debit_review.py).
- `beps_receipt_lines`: each line of a payer bank's beps.128 answering our debits, as
  it came and what it did to the debit it names (debits_out.py).
"""

from __future__ import annotations

from typing import Any

from gateway import dialect
from gateway.store import SCHEMA_LOCK

TABLES = [
    """CREATE TABLE IF NOT EXISTS beps_items (
        payment_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,               -- credit_out | credit_in | debit_out | debit_in
        side TEXT NOT NULL,               -- D: we pay in netting | C: we receive
        counterparty TEXT NOT NULL,       -- the other direct participant
        msg_type TEXT NOT NULL,           -- the package type that carries the item
        amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
        agreement TEXT,                   -- AgrmtNb of a debit
        package_id TEXT,                  -- null: waiting to be packed
        taken_out_of TEXT,                -- the package it was last taken out of
        debtor_address TEXT,              -- the payer's and payee's address lines
        creditor_address TEXT,            -- (PstlAdr/AdrLine) of a ready hvps.111's credit
        netting_date TEXT, netting_round TEXT, settled_on TEXT,
        created_at TEXT NOT NULL
    )""",
    # Items waiting to be packed, in packing order (packer._WAITING reads a package's
    # worth in this order, without sorting them). It replaces an index without the
    # payment id, after which a package's items were sorted again by it.
    "DROP INDEX IF EXISTS beps_items_unpacked",
    "CREATE INDEX IF NOT EXISTS beps_items_waiting ON beps_items "
    "(counterparty, msg_type, created_at, payment_id) WHERE package_id IS NULL",
    # Items by package and by netting round, once they have one: an item waiting to be
    # packed has neither and is in neither index (these replace indexes of every item,
    # into which each one accepted wrote an empty entry, moved again at packing).
    "DROP INDEX IF EXISTS beps_items_package",
    "CREATE INDEX IF NOT EXISTS beps_items_packed ON beps_items (package_id) "
    "WHERE package_id IS NOT NULL",
    "DROP INDEX IF EXISTS beps_items_round",
    "CREATE INDEX IF NOT EXISTS beps_items_netted ON beps_items (netting_date, netting_round) "
    "WHERE netting_date IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS beps_packages (
        id TEXT PRIMARY KEY,              -- sending direct participant + XML MsgId
        direction TEXT NOT NULL,          -- out | in
        msg_type TEXT NOT NULL, msg_id TEXT NOT NULL,
        sender TEXT NOT NULL, receiver TEXT NOT NULL,
        count INTEGER NOT NULL, total_fen INTEGER NOT NULL,
        state TEXT NOT NULL,              -- see docs/beps.md, package states
        outbox_id INTEGER, mesg_id TEXT,
        netting_date TEXT, netting_round TEXT, reason TEXT,
        deadline_at TEXT,                 -- our beps.127: the receipt is due by then
        answers TEXT,                     -- a beps.128: the beps.127 package it answers
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS beps_packages_state ON beps_packages (state)",
    # Our packages by their header's MesgID: a ccms.911 names a discarded one so.
    "CREATE INDEX IF NOT EXISTS beps_packages_out_mesg ON beps_packages (mesg_id) "
    "WHERE direction = 'out'",
    # Packages by their XML MsgId: a query (ccms.314) names a BEPS payment by the
    # package that carried it, whose sender it may name by a branch (gateway.queries).
    "CREATE INDEX IF NOT EXISTS beps_packages_msg ON beps_packages (msg_id)",
    """CREATE TABLE IF NOT EXISTS beps_debit_reviews (
        payment_id TEXT PRIMARY KEY,      -- a debit received (beps.127 in), held
        package_id TEXT NOT NULL,         -- the beps.127 package it came in
        agreement TEXT NOT NULL,          -- its AgrmtNb ('' when none): a stop names it
        due_at TEXT NOT NULL,             -- refused (RJ08) from then on, undecided
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS beps_debit_reviews_due ON beps_debit_reviews (due_at)",
    # Whether a package still has debits waiting (its state: gateway.beps.debit_review).
    "CREATE INDEX IF NOT EXISTS beps_debit_reviews_package ON beps_debit_reviews (package_id)",
    """CREATE TABLE IF NOT EXISTS beps_rounds (
        netting_date TEXT NOT NULL, netting_round TEXT NOT NULL,
        settled_on TEXT NOT NULL,
        npc_net_fen INTEGER NOT NULL,     -- the NPC's net for us: + we receive, - we pay
        at TEXT NOT NULL,
        PRIMARY KEY (netting_date, netting_round)
    )""",
    """CREATE TABLE IF NOT EXISTS beps_mandates (
        account_no TEXT NOT NULL, agreement_no TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (account_no, agreement_no)
    )""",
    """CREATE TABLE IF NOT EXISTS beps_cancel_waits (
        payment_id TEXT PRIMARY KEY,
        package_id TEXT NOT NULL,
        request_msg_id TEXT NOT NULL,     -- XML MsgId of our ccms.307
        asked_at TEXT NOT NULL
    )""",
    # Stop-payments (止付) a payer asked for: every debit under an agreement, or one debit
    # (its TxId); the receipt of a stopped debit refuses it with the payer's reason.
    """CREATE TABLE IF NOT EXISTS beps_debit_stops (
        account_no TEXT NOT NULL, agreement_no TEXT NOT NULL, tx_id TEXT NOT NULL,
        reason TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (account_no, agreement_no, tx_id)
    )""",
    # Every mandate registered or revoked, and every stop-payment made or lifted, with the
    # core-system client that asked (null: the gateway's own): which authorisation stood
    # when, after its row in beps_mandates or beps_debit_stops is gone (mandates.py).
    """CREATE TABLE IF NOT EXISTS beps_mandate_events (
        account_no TEXT NOT NULL, agreement_no TEXT NOT NULL,
        tx_id TEXT,                       -- a stop's debit ('' every debit); null: a mandate
        event TEXT NOT NULL,              -- mandate_registered | mandate_revoked
                                          -- | stop_registered | stop_lifted
        client TEXT,
        at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS beps_mandate_events_account ON beps_mandate_events "
    "(account_no, at)",
    # Each netting date since the first one the gateway saw, and where its reconciliation
    # with the NPC (beps.720/721) stands (netting_dates.py).
    """CREATE TABLE IF NOT EXISTS beps_netting_dates (
        netting_date TEXT PRIMARY KEY,
        state TEXT NOT NULL,              -- open | due | asked | unanswered | reconciled
                                          -- | differences
        asks INTEGER NOT NULL DEFAULT 0,  -- beps.720 sent for it
        asked_at TEXT, outbox_id INTEGER, -- the last of them
        answers INTEGER NOT NULL DEFAULT 0,  -- beps.721 compared for it
        answered_at TEXT,
        differences INTEGER NOT NULL DEFAULT 0,  -- found by the last comparison
        recon_id INTEGER                  -- the recon row of the last comparison
    )""",
    # An episode of our packages not netted in time (not_netted.py): one row while it
    # lasts, so that its alert is raised once, restarts included.
    """CREATE TABLE IF NOT EXISTS beps_not_netted (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        since TEXT NOT NULL,              -- the oldest overdue package, sealed then
        alerted_at TEXT NOT NULL
    )""",
    # Each line of a beps.128 we received (a payer bank's answer to our debits), kept as it
    # came with what it did: a refusal of a debit operators had given up changes nothing,
    # and its code is what shows the give-up was right.
    """CREATE TABLE IF NOT EXISTS beps_receipt_lines (
        receipt_id TEXT NOT NULL,         -- the beps.128 package (beps_packages.id)
        line_no INTEGER NOT NULL,         -- 1.. in the receipt's order
        tx_id TEXT NOT NULL,              -- OrgnlTxId
        payment_id TEXT,                  -- our debit it names; null: none of ours
        status TEXT NOT NULL,             -- RctSts: PR02 paid, else refused
        reject_code TEXT, reject_info TEXT,
        amount_fen INTEGER NOT NULL,
        outcome TEXT NOT NULL,            -- see debits_out.OUTCOMES
        PRIMARY KEY (receipt_id, line_no)
    )""",
    "CREATE INDEX IF NOT EXISTS beps_receipt_lines_payment ON beps_receipt_lines "
    "(payment_id) WHERE payment_id IS NOT NULL",
    # The dates a pass looks at: those not reconciled yet.
    "CREATE INDEX IF NOT EXISTS beps_netting_dates_waiting ON beps_netting_dates "
    "(netting_date) WHERE state IN ('open', 'due', 'asked', 'unanswered')",
]

# Columns a database made before them gets at start-up.
ADDED_COLUMNS = [("taken_out_of", "TEXT"), ("debtor_address", "TEXT"),
                 ("creditor_address", "TEXT")]


def install(tx: Any) -> None:
    if getattr(tx, "dialect", "sqlite") == "postgresql":
        # Gateway processes starting together change the tables one at a time (two
        # dropping the same replaced index at once would fail); the lock ends with
        # this transaction.
        tx.query_one(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})", ())
    dialect.install(tx, TABLES)
    dialect.add_columns(tx, "beps_items", ADDED_COLUMNS)

