"""A database made before returns kept their approver gets the column `approved_by` of
exc_returns at start-up, and a return recorded before then still lists who approved it,
read from the history of the payment it returns (its `return_requested`)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway import dialect
from gateway.exceptions import schema
from ledger.db import connect

AT = "2026-12-07T10:00:00+08:00"
# exc_returns as it was made before it kept who approved a return.
BEFORE_APPROVER = [next(s for s in schema.SCHEMA if "TABLE IF NOT EXISTS exc_returns" in s)
                   .replace(",\n        approved_by TEXT", "")
                   .replace("  -- dual control's second person; null: none", "")]
PAYMENT_EVENTS = ("CREATE TABLE payment_events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                  "payment_id TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL, "
                  "event TEXT NOT NULL, detail TEXT NOT NULL)")


def _old_return(tx: Any, return_id: str, original_id: str, by: str,
                approved_by: str | None) -> None:
    tx.execute("INSERT INTO exc_returns (return_id, original_id, direction, via, state, "
               "reason, requested_by, created_at, updated_at) VALUES (?, ?, 'out', "
               "'suspense', 'pending', '查无此人', ?, ?, ?)",
               (return_id, original_id, by, AT, AT))
    detail = {"return_id": return_id, "by": by,
              **({} if approved_by is None else {"approved_by": approved_by})}
    tx.execute("INSERT INTO payment_events (payment_id, at, state, event, detail) VALUES "
               "(?, ?, 'suspense', 'return_requested', ?)",
               (original_id, AT, json.dumps(detail)))


def test_an_old_database_gets_the_approver_and_its_old_returns_name_theirs(
        tmp_path: Path) -> None:
    """The column is added once; an operators' return recorded before it lists its
    approver from the history, the automatic return none, a new one its own."""
    db = connect(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with db.transaction() as tx:
            dialect.install(tx, [*BEFORE_APPROVER, PAYMENT_EVENTS])
            before = dialect.table_columns(tx, "exc_returns")
            _old_return(tx, "R1", "P1", "operator:op1", "operator:sup1")
            _old_return(tx, "R2", "P2", "auto_return", None)
            schema.create_tables(tx)
            schema.create_tables(tx)  # a second start finds it there
            after = dialect.table_columns(tx, "exc_returns")
            schema.add_return(tx, "R3", "P3", "out", "account", "pending", "退回", "op1",
                              datetime.fromisoformat(AT), "sup1")
            listed = {r["return_id"]: (r["requested_by"], r["approved_by"])
                      for pid in ("P1", "P2", "P3") for r in schema.returns_of(tx, pid)}
    finally:
        db.close()

    assert "approved_by" not in before and after == [*before, "approved_by"]
    assert listed == {"R1": ("op1", "sup1"), "R2": ("auto_return", None),
                      "R3": ("op1", "sup1")}

