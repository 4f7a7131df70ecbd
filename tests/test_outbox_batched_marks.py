"""The batched marks of outbox rows (a link POST's messages marked sent, a webhook POST's
rows marked delivered) change what one UPDATE a row changed, each row with its own
time, in one statement for the batch, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import ledger
from gateway import dialect, outbound, webhook
from gateway.store import SCHEMA

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone(timedelta(hours=8)))
CREATED = "2026-12-07T08:00:00+08:00"


def _outbox(database_url: str, states: list[str]):
    db = ledger.connect(database_url)
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        for n, state in enumerate(states, start=1):
            tx.execute("INSERT INTO outbox (id, kind, stream, state, attempts, created_at, "
                       "updated_at) VALUES (?, 'message', 's', ?, 2, ?, ?)",
                       (n, state, CREATED, CREATED))
    return db


def _rows(db) -> dict[int, tuple[str, int, str]]:
    with db.transaction() as tx:
        return {row[0]: (row[1], row[2], row[3]) for row in tx.query(
            "SELECT id, state, attempts, updated_at FROM outbox ORDER BY id", ())}


class _Counting:
    """A transaction whose statements are counted, by their first word."""

    def __init__(self, tx) -> None:
        self.tx, self.statements = tx, []

    def __getattr__(self, name):
        method = getattr(self.tx, name)
        if name not in ("execute", "executemany", "update_rows", "insert_rows"):
            return method

        def counted(sql, rows, *rest):
            self.statements.append((name, sql.split()[0]))
            return method(sql, rows, *rest)
        return counted


def test_rows_marked_sent_each_take_their_own_time_in_one_statement(database_url):
    # Rows 1 to 300 are being sent; 301 was sent already (its mark is not made again)
    # and 302 is pending (a row no longer being sent is left as it is).
    db = _outbox(database_url, ["sending"] * 300 + ["sent", "pending"])
    marks = [(n, T0 + timedelta(milliseconds=n)) for n in range(1, 303)]
    marks.append((5, T0 + timedelta(hours=1)))  # named twice: marked at its first time
    try:
        with db.transaction() as tx:
            counting = _Counting(tx)
            assert outbound.mark_sent_many(counting, marks) == [None] * len(marks)
        rows = _rows(db)
    finally:
        db.close()
    # One call for the batch (its 302 rows go in two statements of at most 200 rows).
    assert counting.statements == [("update_rows", "UPDATE")]
    for n in range(1, 301):
        assert rows[n] == ("sent", 2, (T0 + timedelta(milliseconds=n)).isoformat()), n
    assert rows[301] == ("sent", 2, CREATED)
    assert rows[302] == ("pending", 2, CREATED)


def test_rows_delivered_count_an_attempt_each_with_their_own_time(database_url):
    db = _outbox(database_url, ["sending"] * 5 + ["pending"])
    calls = [((1, 2), T0), ((3,), T0 + timedelta(seconds=1)),
             ((4, 5), T0 + timedelta(seconds=2))]
    try:
        with db.transaction() as tx:
            counting = _Counting(tx)
            assert webhook._delivered_many(counting, calls) == [None] * 3
        rows = _rows(db)
    finally:
        db.close()
    assert counting.statements == [("update_rows", "UPDATE")]
    assert rows == {1: ("done", 3, T0.isoformat()), 2: ("done", 3, T0.isoformat()),
                    3: ("done", 3, (T0 + timedelta(seconds=1)).isoformat()),
                    4: ("done", 3, (T0 + timedelta(seconds=2)).isoformat()),
                    5: ("done", 3, (T0 + timedelta(seconds=2)).isoformat()),
                    6: ("pending", 2, CREATED)}


def test_a_row_delivered_twice_in_one_batch_counts_both_attempts(database_url):
    db = _outbox(database_url, ["sending", "sending"])
    calls = [((1,), T0), ((1, 2), T0 + timedelta(seconds=1))]
    try:
        with db.transaction() as tx:
            webhook._delivered_many(tx, calls)
        rows = _rows(db)
    finally:
        db.close()
    later = (T0 + timedelta(seconds=1)).isoformat()
    assert rows == {1: ("done", 4, later), 2: ("done", 3, later)}
