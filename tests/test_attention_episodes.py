"""Which link alerts stay open (gateway.ops.attention.ongoing_ids): a process's outage
that goes on keeps its `link_down` alert open however many alerts another process's
flapping link raised since, and an episode over leaves its alert to the history."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

import ledger
from gateway import critical, dialect
from gateway import store as gateway_store
from gateway.ops import attention
from ledger.fixtures import postgres_schema_or_skip

LONG_DOWN = "2026-12-07T09:00:00+08:00"   # process a's outage, going on
FLAPS = 12                                 # process b's outages, each over at once


@pytest.fixture(params=["sqlite", "postgresql"])
def tx(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The gateway's tables in an open transaction, on SQLite and, when the test server
    answers, on PostgreSQL."""
    if request.param == "sqlite":
        url = "sqlite:///:memory:"
        db = ledger.connect(url)
    else:
        with postgres_schema_or_skip("attention_episodes") as url:
            db = ledger.connect(url)
            yield from _open(db)
            return
    yield from _open(db)


def _open(db: Any) -> Iterator[Any]:
    try:
        with db.transaction() as tx:
            dialect.install(tx, gateway_store.SCHEMA + critical.TABLES)
            yield tx
    finally:
        db.close()


def raised(tx: Any, code: str, since: str) -> int:
    return tx.query_one("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?) RETURNING id",
                        (since, code, json.dumps({"since": since, "cause": "timeout"})))[0]


def test_a_long_outage_keeps_its_alert_open_while_another_process_flaps(tx):
    long_down = raised(tx, "link_down", LONG_DOWN)
    flaps = [f"2026-12-07T09:{m:02d}:30+08:00" for m in range(1, FLAPS + 1)]
    for since in flaps:
        raised(tx, "link_down", since)
    latest = raised(tx, "link_down", "2026-12-07T09:30:00+08:00")
    view = {"state": "down", "since": LONG_DOWN,
            "processes": {"a": {"state": "down", "since": LONG_DOWN},
                          "b": {"state": "down", "since": "2026-12-07T09:30:00+08:00"}}}

    ongoing = attention.ongoing_ids(tx, view)
    listed = {r["id"]: r["attention"] for r in attention.listing(tx, ongoing, 50)}

    assert sorted(ongoing) == sorted([long_down, latest])
    assert listed[long_down] is True and listed[latest] is True
    assert [listed[i] for i in listed if i not in (long_down, latest)] == [False] * FLAPS


def test_an_episode_over_is_history_and_a_since_never_alerted_finds_nothing(tx):
    over = raised(tx, "link_refusing", "2026-12-07T08:00:00+08:00")
    view = {"state": "degraded", "since": "2026-12-07T10:00:00+08:00",
            "refusing_since": "2026-12-07T10:00:00+08:00"}
    assert attention.ongoing_ids(tx, view) == []
    assert attention.counts(tx, [])["history"] == 1 and over
