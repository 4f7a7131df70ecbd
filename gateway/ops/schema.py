"""The console's own tables: operators' requests under dual control, and the audit trail.

`ops_requests` holds one row per requested action, from request to outcome:
pending → executed | failed | rejected | withdrawn | expired (control.REQUEST_STATES;
actions that need no second person go straight from request to executed or failed).
`ops_audit` holds one row per thing an operator did (sign-in, request, approve, reject,
execute, review), never updated or deleted, so that who did what and when can always be
told.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from gateway import dialect, logs
from gateway.store import log_after_commit

log = logging.getLogger("paygate.ops")

TABLES = [
    """CREATE TABLE IF NOT EXISTS ops_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL,             -- retry | hold | release | cancel | priority | ...
        target TEXT NOT NULL,             -- payment id, or dead-letter entry id
        params TEXT NOT NULL DEFAULT '{}',
        note TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,              -- pending | executed | failed | rejected | expired
        requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        decided_by TEXT, decided_at TEXT, decision_note TEXT,
        executed_at TEXT, outcome TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS ops_requests_state ON ops_requests (state)",
    "CREATE INDEX IF NOT EXISTS ops_requests_target ON ops_requests (target)",
    """CREATE TABLE IF NOT EXISTS ops_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL, actor TEXT NOT NULL, level TEXT NOT NULL,
        what TEXT NOT NULL,               -- sign_in | sign_out | request | approve | execute ...
        request_id INTEGER, target TEXT, detail TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS ops_audit_request ON ops_audit (request_id)",
]


def create_tables(tx: Any) -> None:
    dialect.install(tx, TABLES)


async def install(gw: Any) -> None:
    """Create the console's tables if they do not exist yet (safe to run every start)."""
    await gw.store.run(create_tables)


def audit(tx: Any, at: datetime, actor: str, level: str, what: str, *,
          request_id: int | None = None, target: str | None = None,
          **detail: Any) -> None:
    """Record one operator's act; one structured log line with the same facts."""
    tx.execute("INSERT INTO ops_audit (at, actor, level, what, request_id, target, detail) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
               (at.isoformat(), actor, level, what, request_id, target,
                json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True)))
    log_after_commit(log, logging.INFO, [
        f"event=ops_{what} actor={logs.value(actor)} operator_level={logs.value(level)} "
        f"request={request_id} target={logs.value(target)} "
        + " ".join(f"{k}={logs.value(v)}" for k, v in sorted(detail.items()))])


def table_exists(tx: Any, name: str) -> bool:
    if getattr(tx, "dialect", "sqlite") == "postgresql":
        row = tx.query_one("SELECT 1 FROM information_schema.tables WHERE table_name = ? "
                           "AND table_schema = current_schema()", (name,))
    else:
        row = tx.query_one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (name,))
    return row is not None
