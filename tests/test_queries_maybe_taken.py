"""Our query, reply or free text dead-lettered after the NPC answered its POST with a 4xx
(QueryDesk._dead, as gateway.app.Gateway.outbox_dead calls it): refused only when every
attempt was provably untaken. After an earlier attempt that may have reached the NPC (a
timeout), the message is kept as sent, its letter outstanding for a retry of the same
bytes, and a reply's query is not opened for a second answer."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import store
from gateway.queries import QueryDesk, records
from tests.test_queries_refused import (FREE_MESG_ID, QUERY_MESG_ID, QUERY_MSG_ID, REFUSED,
                                        Desk, asked, database, our_free_text, url)
from tests.test_queries_reply_refused import QUERY_ID, REPLY_MESG_ID, answered

__all__ = ["url"]  # the fixture: each test on SQLite and, when it answers, PostgreSQL

ALERT_MAYBE_TAKEN = "query_message_maybe_taken_by_npc"
WHY = "refused_at_link: the NPC answered 400"


@pytest.fixture(autouse=True)
def pushed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """What the hook would push after commit, kept instead."""
    got: list[tuple[str, dict[str, str]]] = []
    monkeypatch.setattr(store, "after_commit", lambda _tx, s, f: got.append((s, f)))
    return got


def dead_after(tx: Any, desk: Desk, mesg_id: str, attempts: int,
               untaken: int) -> tuple[dict[str, str], tuple[Any, ...]]:
    """The row of `mesg_id` as Gateway.outbox_dead leaves it before calling the hook
    (dead, its counts, the refused attempt among the untaken), then the hook: what it
    names, and the row after."""
    tx.execute("UPDATE outbox SET state = 'dead', attempts = ?, untaken = ? WHERE mesg_id = ?",
               (attempts, untaken, mesg_id))
    outbox_id = tx.query_one("SELECT id FROM outbox WHERE mesg_id = ?", (mesg_id,))[0]
    named = QueryDesk._dead(desk, tx, outbox_id, WHY, 400, REFUSED)
    row = tx.query_one("SELECT state, attempts, untaken FROM outbox WHERE id = ?",
                       (outbox_id,))
    return named, tuple(row)


def test_a_query_refused_after_a_timeout_is_kept_with_its_letter(url):
    with asked(url) as (desk, tx):
        named, row = dead_after(tx, desk, QUERY_MESG_ID, attempts=2, untaken=1)
        query = records.get(tx, f"Q{QUERY_MSG_ID}")
    assert named == {"query": f"Q{QUERY_MSG_ID}"}
    assert query["state"] == "open" and query["refused_at"] is None
    assert row == ("dead", 2, 1)  # outstanding: an operator retries the same bytes
    assert [code for code, _ in desk.alerts] == [ALERT_MAYBE_TAKEN]
    detail = desk.alerts[0][1]
    assert (detail["maybe_taken"], detail["status"], detail["mesg_id"]) == (
        1, 400, QUERY_MESG_ID)


def test_a_query_refused_on_every_attempt_is_refused(url):
    with asked(url) as (desk, tx):
        named, row = dead_after(tx, desk, QUERY_MESG_ID, attempts=2, untaken=2)
        query = records.get(tx, f"Q{QUERY_MSG_ID}")
    assert named == {"query": f"Q{QUERY_MSG_ID}"}
    assert query["state"] == "refused" and row[0] == "done"
    assert [code for code, _ in desk.alerts] == ["query_refused_by_npc"]


def test_a_reply_refused_after_a_timeout_leaves_its_query_answered(url, pushed):
    with answered(url) as (desk, tx):
        named, row = dead_after(tx, desk, REPLY_MESG_ID, attempts=3, untaken=2)
        query = records.get(tx, QUERY_ID)
        reply = records.find_our_reply(tx, mesg_id=REPLY_MESG_ID)
    assert named == {"query": QUERY_ID}
    assert query["state"] == "answered" and reply["refused_at"] is None
    assert row == ("dead", 3, 2) and pushed == []
    assert [code for code, _ in desk.alerts] == [ALERT_MAYBE_TAKEN]


def test_free_text_refused_after_a_timeout_is_not_listed_refused(url):
    desk = Desk()
    with database(url) as tx:
        item = our_free_text(tx)
        named, row = dead_after(tx, desk, FREE_MESG_ID, attempts=2, untaken=0)
        again = records.find_free_format_ours(tx, mesg_id=FREE_MESG_ID)
    assert named == {"free_format": item["id"]}
    assert again["refused_at"] is None and row[0] == "dead"
    assert [code for code, _ in desk.alerts] == [ALERT_MAYBE_TAKEN]
