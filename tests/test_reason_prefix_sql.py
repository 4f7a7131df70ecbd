"""The operators' lists pick payments by the beginning of their reason (held for review,
held since their message died on the way): compared exactly in SQL, never as a LIKE
pattern whose `_` would match any character, and the same in SQL as in Python. On
SQLite, and on PostgreSQL too when the suite runs on it (PAYGATE_TEST_DATABASE, a
schema of the test's own: tests/conftest.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from gateway import states
from gateway.ops import views
from ledger.db import connect

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=timezone(timedelta(hours=8)))
# (direction, state, reason) rows, real and deliberately near-miss reasons.
ROWS = [
    ("out", "held", "review_amount_above_threshold"),
    ("out", "held", "reviewXamount_above_threshold"),    # `_` read as a wildcard
    ("out", "held", "REVIEW_amount_above_threshold"),    # SQLite's LIKE ignores case
    ("out", "held", "screening_match_payee_name"),
    ("out", "held", "screeningXmatch_payee_name"),
    ("in", "received", "screening_match_payer_name"),
    ("out", "held", None),
    ("out", "held", "refused_at_link, the NPC answered 400"),
    ("out", "held", "refusedXatXlink, the NPC answered 400"),
    ("out", "held", "dead_lettered after 5 attempts"),
    ("out", "held", "deadXlettered after 5 attempts"),
    ("out", "held", "DEAD_LETTERED after 5 attempts"),
    ("in", "suspense", "screening_match_payer_name"),
    ("in", "suspense", "account_not_found"),
]


@pytest.fixture
def database(gateway_schemas: Any) -> str:
    """The URL of an empty database of the suite's kind: a schema of this test's own on
    PostgreSQL, dropped when it ends; an SQLite one in memory."""
    return gateway_schemas.new_url() if gateway_schemas is not None else "sqlite:///:memory:"


def _selected(url: str, where: str, params: tuple = ()) -> set[tuple]:
    """The rows of ROWS (all updated now) that `where` selects, in the database at `url`."""
    db = connect(url)
    try:
        with db.transaction() as tx:
            tx.execute("CREATE TABLE payments (id TEXT, direction TEXT, state TEXT, "
                       "reason TEXT, updated_at TEXT)", ())
            tx.executemany("INSERT INTO payments VALUES (?, ?, ?, ?, ?)",
                           [(str(i), *row, NOW.isoformat()) for i, row in enumerate(ROWS)])
            return {tuple(r) for r in tx.query(
                f"SELECT direction, state, reason FROM payments WHERE {where}", params)}
    finally:
        db.close()


def test_held_for_review_takes_the_review_prefixes_literally(database: str) -> None:
    """Only the reasons that begin with `review_` or `screening_` as written (and the
    credits the screening parked) are held for review, as states.held_for_review says."""
    in_sql = _selected(database, views._review_where())
    in_python = {r for r in ROWS if states.held_for_review(
        dict(zip(("direction", "state", "reason"), r)))}

    assert in_sql == in_python == {
        ("out", "held", "review_amount_above_threshold"),
        ("out", "held", "screening_match_payee_name"),
        ("in", "received", "screening_match_payer_name"),
        ("in", "suspense", "screening_match_payer_name")}


def test_stuck_lists_only_payments_whose_message_died_by_their_reasons_prefix(
        database: str) -> None:
    """A payment held since its message died (`refused_at_link...`, `dead_lettered...`)
    is stuck at any age; a reason that only looks like one when `_` is a wildcard, or
    in other case, is not."""
    where, params = views._stuck_where(NOW, views.STUCK_AFTER_MIN, hvps_open=False)

    assert {r[2] for r in _selected(database, where, params)} == {
        "refused_at_link, the NPC answered 400", "dead_lettered after 5 attempts"}
