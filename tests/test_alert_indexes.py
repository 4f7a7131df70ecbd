"""The alerts are read by code from an index, and the critical ones from an index of the
critical codes in force: a database made before either gets them when the store opens,
on SQLite and on PostgreSQL, and the index made with the shorter list of critical codes
is dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import ledger
from gateway import critical, dialect
from gateway.store import SCHEMA, Store
from ledger import Ledger

# The critical alerts' index as the gateway made it before `hvps_status_notice_refused`
# was critical, and the schema of that time, without the index of every alert's code.
OLD_CODES = ("npc_settled_payment_we_ended", "npc_did_not_settle_payment_we_settled",
             "debit_paid_after_end")
OLD_CRITICAL = ("CREATE INDEX IF NOT EXISTS alerts_critical ON alerts (id) WHERE code IN ("
                + ", ".join(f"'{code}'" for code in OLD_CODES) + ")")
OLD_SCHEMA = [s for s in SCHEMA if "alerts_code" not in s]


def _plan(tx: Any, sql: str, params: tuple) -> str:
    """How the database reads `sql`, as one text (an index over a scan of the table)."""
    if tx.dialect == "postgresql":
        # Tables of a few rows are read whole whatever their indexes: ask which index
        # the planner would take for a table of many.
        tx.execute("SET LOCAL enable_seqscan = off", ())
        return "\n".join(row[0] for row in tx.query("EXPLAIN " + sql, params))
    return "\n".join(row[3] for row in tx.query("EXPLAIN QUERY PLAN " + sql, params))


def _opened(url: str) -> tuple[dict[str, str], str, str]:
    """The alerts' indexes once the store has opened `url`, and how the open critical
    alerts and the unclosed ones of a code are read."""
    async def scenario() -> tuple[dict[str, str], str, str]:
        store = Store(url, Ledger())
        await store.open()
        try:
            return await store.run(lambda tx: (
                dialect.table_indexes(tx, "alerts"),
                _plan(tx, critical._OPEN, ()),
                _plan(tx, "SELECT id, detail FROM alerts WHERE code = ? AND detail LIKE ? "
                      "ORDER BY id DESC", ("link_down", "%x%"))))
        finally:
            await store.close()
    return asyncio.run(scenario())


def test_a_database_made_with_the_old_critical_codes_gets_the_indexes_in_force(
        database_url: str) -> None:
    """The old partial index (three critical codes) is dropped and one of all four made,
    which the count of open critical alerts reads; alerts of one code are read from the
    index of codes."""
    db = ledger.connect(database_url)
    with db.transaction() as tx:
        dialect.install(tx, [*OLD_SCHEMA, OLD_CRITICAL, *critical.TABLES[1:]])
        before = set(dialect.table_indexes(tx, "alerts"))
        tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, ?, '{}')",
                   ("2026-12-07T09:00:00+08:00", "hvps_status_notice_refused"))
    db.close()

    indexes, critical_plan, by_code_plan = _opened(database_url)

    assert "alerts_critical" in before and "alerts_code" not in before
    assert "alerts_critical" not in indexes
    assert critical.INDEX in indexes and "alerts_code" in indexes
    assert all(f"'{code}'" in indexes[critical.INDEX] for code in critical.CODES)
    assert critical.INDEX in critical_plan, critical_plan
    assert "alerts_code" in by_code_plan, by_code_plan


def test_a_new_database_gets_the_same_indexes_and_a_second_opening_keeps_them(
        database_url: str) -> None:
    """Made once: opening the store again changes nothing."""
    first, _, _ = _opened(database_url)
    second, critical_plan, _ = _opened(database_url)

    assert first == second
    assert sorted(name for name in first if name.startswith("alerts_critical")) == [
        critical.INDEX]
    assert critical.INDEX in critical_plan, critical_plan

