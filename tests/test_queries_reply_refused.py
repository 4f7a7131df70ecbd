"""The NPC refuses our reply to a bank's query (a ccms.900 PR09 about our ccms.315, or a
ccms.911 discarding it), without processes: the bank never had the answer, so the query
is open again, owed an answer by its due time, with the NPC's refusal shown on it and on
the refused reply; the payment's history, the operators' alert, the console and the
webhook tell it, and the query can be answered again. A refusal that comes after the
query was answered again stays with the reply it is about."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any, Iterator

from gateway import payments
from gateway.clock import SHANGHAI
from gateway.messages import ccms314, ccms900, ccms911
from gateway.ops import views
from gateway.queries import QueryDesk, deadlines, records, refusals, schema
from gateway.queries.policy import QueryPolicy
from gateway.calendar import BusinessCalendar
from tests.beps_support import credit_row
from tests.e2e_support import BANK, PEER
from tests.test_queries_refused import (ASKED, PAST_DUE, PAYMENT_ID, REFUSED, Desk, _outbox,
                                        database, discarded, refused_result, url,
                                        webhook_events)

__all__ = ["url"]  # the fixture: each test on SQLite and, when it answers, PostgreSQL

THEIR_MSG_ID, THEIR_MESG_ID = "2026120700000021", "20261207000000000021"
QUERY_ID = f"QI{PEER}{THEIR_MSG_ID}"
REPLY_MSG_ID, REPLY_MESG_ID = "2026120700000013", "20261207000000000013"
AGAIN_MSG_ID, AGAIN_MESG_ID = "2026120700000015", "20261207000000000015"
ANSWERED = datetime(2026, 12, 7, 9, 0, 1, tzinfo=SHANGHAI)
ANSWERED_AGAIN = datetime(2026, 12, 7, 9, 0, 3, tzinfo=SHANGHAI)


def their_query(tx: Any) -> dict[str, Any]:
    """The peer's query about payment PAYMENT_ID, received at ASKED and open."""
    payments.insert(tx, dict(credit_row(1, ASKED, "hvps.111.001.01", "settled"),
                             id=PAYMENT_ID, channel="hvps"))
    due = deadlines.reply_due(BusinessCalendar(), ASKED, QueryPolicy())
    return records.insert(tx, {
        "id": QUERY_ID, "direction": "in", "state": "open", "system": "HVPS",
        "counterparty": PEER, "our_party": BANK, "their_party": PEER,
        "msg_id": THEIR_MSG_ID, "mesg_id": THEIR_MESG_ID, "query_type": "QT00",
        "content": "请查询是否入账", "amount_fen": 101, "currency": "CNY",
        "orig_msg_id": "2026120700000001", "orig_instg_party": BANK,
        "orig_mt": "hvps.111.001.01", "payment_id": PAYMENT_ID, "source": "counterparty",
        "handling": "auto", "asked_at": ASKED.isoformat(), "reply_due_at": due.isoformat(),
        "created_at": ASKED.isoformat(), "updated_at": ASKED.isoformat()})


def answer(tx: Any, query: dict[str, Any], msg_id: str, mesg_id: str, content: str,
           at: datetime, by: str = "auto") -> dict[str, Any]:
    """Our ccms.315 to the query, recorded and acknowledged as the desk records one."""
    records.add_reply(tx, {
        "id": f"A{BANK}{msg_id}", "feed_seq": payments.next_seq(tx, "query_feed"),
        "query_id": query["id"], "direction": "out", "sender": BANK, "msg_id": msg_id,
        "mesg_id": mesg_id, "answered_msg_id": query["msg_id"], "content": content,
        "replied_by": by, "at": at.isoformat(), "late": 0})
    _outbox(tx, ccms314.RESPONSE_TYPE, mesg_id)
    return records.answer(tx, query, at, msg_id, content, by)


@contextlib.contextmanager
def answered(url: str) -> Iterator[tuple[Desk, Any]]:
    """The desk, and an open transaction in which we have answered the peer's query."""
    with database(url) as tx:
        answer(tx, their_query(tx), REPLY_MSG_ID, REPLY_MESG_ID, "已于2026-12-07入账",
               ANSWERED)
        yield Desk(), tx


def test_a_refused_reply_opens_its_query_again_with_the_refusal_shown(url):
    with answered(url) as (desk, tx):
        processed, pushes = refusals.on_result(tx, desk, refused_result(
            REPLY_MSG_ID, ccms314.RESPONSE_TYPE), REFUSED)
        query = records.get(tx, QUERY_ID)
        shown = records.view(query, REFUSED, records.replies_of(tx, QUERY_ID))
        work_list = [q["id"] for q in records.search(tx, state="open", direction="in")]
        summary = QueryDesk.summary(None, tx)
        history = [e["event"] for e in payments.history(tx, PAYMENT_ID)]
        outbox = tx.query_one("SELECT state FROM outbox WHERE mesg_id = ?",
                              (REPLY_MESG_ID,))[0]
        events = webhook_events(tx)
        console = views.overdue_queries(tx, PAST_DUE)
        again = answer(tx, query, AGAIN_MSG_ID, AGAIN_MESG_ID, "已于2026-12-07入账，请核对",
                       ANSWERED_AGAIN, "operator:张三")

    refusal = {"message_type": ccms900.MESSAGE_TYPE, "code": "HV0E0002",
               "reason": "the receiving clearing bank is not a participant: 777300000011",
               "at": REFUSED.isoformat()}
    assert processed.outcome == {"query": QUERY_ID, "reopened": "HV0E0002"}
    assert pushes and outbox == "done"
    assert shown["state"] == "open" and shown["handling"] == "reply_refused_by_npc"
    assert shown["refusal"] == refusal
    assert shown["reply"] is None and shown["replied_at"] is None
    assert shown["answered_late"] is None and shown["overdue"] is False
    assert [(r["msg_id"], r["refusal"]) for r in shown["replies"]] == [
        (REPLY_MSG_ID, refusal)]
    assert work_list == [QUERY_ID]
    assert summary["queries"] == {"sent": 0, "received": 1, "replied": 0, "overdue": 0}
    assert "query_reply_refused" in history
    assert [code for code, _ in desk.alerts] == ["query_reply_refused_by_npc"]
    assert desk.alerts[0][1]["reply"] == REPLY_MSG_ID
    assert desk.alerts[0][1]["due"] == query["reply_due_at"]
    assert [(e["event"], e["query"]["state"], e["reply"]["refusal"]["code"])
            for e in events] == [("query_reply_refused", "open", "HV0E0002")]
    assert [r["id"] for r in console["rows"]] == [QUERY_ID]
    assert [(r["kind"], r["id"]) for r in console["refused"]["rows"]] == [
        ("reply", QUERY_ID)]
    assert again["state"] == "answered" and again["reply_msg_id"] == AGAIN_MSG_ID


def test_a_discarded_reply_opens_its_query_again(url):
    with answered(url) as (desk, tx):
        processed, _ = refusals.on_discarded(tx, desk, discarded(
            REPLY_MESG_ID, ccms314.RESPONSE_TYPE), REFUSED)
        query = records.get(tx, QUERY_ID)

    assert processed.outcome == {"query": QUERY_ID, "reopened": "CC9S0001"}
    assert query["state"] == "open"
    assert (query["refused_with"], query["refusal_code"]) == (ccms911.MESSAGE_TYPE,
                                                             "CC9S0001")


def test_a_second_notice_about_a_refused_reply_changes_nothing(url):
    with answered(url) as (desk, tx):
        refusals.on_result(tx, desk, refused_result(REPLY_MSG_ID, ccms314.RESPONSE_TYPE),
                           REFUSED)
        again, pushes = refusals.on_discarded(tx, desk, discarded(
            REPLY_MESG_ID, ccms314.RESPONSE_TYPE), PAST_DUE)
        query = records.get(tx, QUERY_ID)

    assert again.outcome == {"reply": f"A{BANK}{REPLY_MSG_ID}", "ignored": "refused"}
    assert pushes == []
    assert query["refused_with"] == ccms900.MESSAGE_TYPE
    assert [code for code, _ in desk.alerts] == ["query_reply_refused_by_npc"]


def test_a_refusal_of_a_reply_that_is_not_the_querys_answer_stays_with_that_reply(url):
    """A reply of ours to the query that is not the answer it holds (one sent before
    the answer that stands, say) is refused: the refusal is kept on that reply, and the
    query stays answered as it is."""
    with answered(url) as (desk, tx):
        records.add_reply(tx, {
            "id": f"A{BANK}{AGAIN_MSG_ID}", "feed_seq": payments.next_seq(tx, "query_feed"),
            "query_id": QUERY_ID, "direction": "out", "sender": BANK,
            "msg_id": AGAIN_MSG_ID, "mesg_id": AGAIN_MESG_ID,
            "answered_msg_id": THEIR_MSG_ID, "content": "补充：已入账",
            "replied_by": "auto", "at": ANSWERED.isoformat(), "late": 0})
        processed, pushes = refusals.on_discarded(tx, desk, discarded(
            AGAIN_MESG_ID, ccms314.RESPONSE_TYPE), PAST_DUE)
        query = records.get(tx, QUERY_ID)
        other = records.find_our_reply(tx, msg_id=AGAIN_MSG_ID)

    assert processed.outcome["left"] == "answered" and pushes == []
    assert query["state"] == "answered" and query["reply_msg_id"] == REPLY_MSG_ID
    assert query["refused_at"] is None
    assert other["refused_with"] == ccms911.MESSAGE_TYPE
    assert desk.alerts == []


def test_a_result_other_than_a_refusal_about_our_reply_changes_nothing(url):
    with answered(url) as (desk, tx):
        processed, _ = refusals.on_result(tx, desk, refused_result(
            REPLY_MSG_ID, ccms314.RESPONSE_TYPE, status=ccms900.SETTLED), REFUSED)
        query = records.get(tx, QUERY_ID)

    assert processed.outcome["ignored"] == ccms900.SETTLED and query["state"] == "answered"
    assert [code for code, _ in desk.alerts] == ["result_status_not_handled"]


def test_a_query_answered_anew_takes_back_its_handling(url):
    """Answered again after the NPC refused our reply, the query no longer carries the
    refusal's mark: its handling is the one it had before, in the database as on view;
    refused and answered once more, the same."""
    with answered(url) as (desk, tx):
        tx.execute("UPDATE queries SET handling = 'question_needs_judgement' WHERE id = ?",
                   (QUERY_ID,))
        refusals.on_result(tx, desk, refused_result(REPLY_MSG_ID, ccms314.RESPONSE_TYPE),
                           REFUSED)
        reopened = records.get(tx, QUERY_ID)
        again = answer(tx, reopened, AGAIN_MSG_ID, AGAIN_MESG_ID, "已于2026-12-07入账，请核对",
                       ANSWERED_AGAIN, "operator:张三")
        stored = records.get(tx, QUERY_ID)
        refusals.on_result(tx, desk, refused_result(AGAIN_MSG_ID, ccms314.RESPONSE_TYPE),
                           PAST_DUE)
        twice = records.get(tx, QUERY_ID)
        answer(tx, twice, "2026120700000017", "20261207000000000017", "已入账", PAST_DUE,
               "operator:张三")
        last = records.get(tx, QUERY_ID)

    assert reopened["handling"] == "reply_refused_by_npc"
    assert again["handling"] == stored["handling"] == "question_needs_judgement"
    assert records.view(stored)["handling"] == "question_needs_judgement"
    assert (twice["state"], twice["handling"]) == ("open", "reply_refused_by_npc")
    assert twice["handling_before_refusal"] == "question_needs_judgement"
    assert (last["state"], last["handling"]) == ("answered", "question_needs_judgement")


def _reopened_by_older_code(tx: Any, query_id: str, state: str) -> None:
    """The query as the gateway left it when the NPC refused our reply before the
    handling it had was kept beside the refusal's mark."""
    tx.execute("UPDATE queries SET state = ?, handling = 'reply_refused_by_npc', "
               "handling_before_refusal = NULL, refused_at = ?, refused_with = ?, "
               "refusal_code = 'HV0E0002' WHERE id = ?",
               (state, REFUSED.isoformat(), ccms900.MESSAGE_TYPE, query_id))


def _needs_operator(tx: Any, query_id: str, reason: str) -> None:
    tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, 'query_needs_operator', ?)",
               (ASKED.isoformat(), json.dumps({"query": query_id, "reason": reason})))


def test_queries_reopened_by_older_code_get_their_handling_back_at_start(url):
    """A query answered anew while older code kept no handling beside the refusal's mark
    shows the handling it had (`auto`: no operator was asked for it); one still open gets
    it kept beside the mark (the reason operators were asked for it, from that alert, not
    from another query's whose id begins with its own) and takes it back once answered;
    one answered anew by code that kept the handling but left the mark takes it back.
    The next start finds nothing to do."""
    with answered(url) as (_, tx):
        other = dict(records.get(tx, QUERY_ID), id=QUERY_ID + "1", msg_id=THEIR_MSG_ID + "1")
        records.insert(tx, other)
        records.insert(tx, dict(other, id=QUERY_ID + "2", msg_id=THEIR_MSG_ID + "2"))
        records.insert(tx, dict(other, id=QUERY_ID + "3", msg_id=THEIR_MSG_ID + "3"))
        _reopened_by_older_code(tx, QUERY_ID, "answered")
        _reopened_by_older_code(tx, other["id"], "open")
        _reopened_by_older_code(tx, QUERY_ID + "3", "answered")
        tx.execute("UPDATE queries SET handling_before_refusal = 'payment_not_final' "
                   "WHERE id = ?", (QUERY_ID + "3",))
        _needs_operator(tx, QUERY_ID + "10", "amount_differs")
        _needs_operator(tx, other["id"], "question_needs_judgement")
        schema.install(tx)
        answered_anew, still_open = records.get(tx, QUERY_ID), records.get(tx, other["id"])
        untouched = records.get(tx, QUERY_ID + "2")
        kept_before = records.get(tx, QUERY_ID + "3")
        done = answer(tx, still_open, AGAIN_MSG_ID, AGAIN_MESG_ID, "已入账", ANSWERED_AGAIN,
                      "operator:张三")
        second_start = records.restore_handling(tx)

    assert answered_anew["handling"] == "auto"
    assert records.view(answered_anew)["handling"] == "auto"
    assert (still_open["handling"], still_open["handling_before_refusal"]) == (
        "reply_refused_by_npc", "question_needs_judgement")
    assert done["handling"] == "question_needs_judgement"
    assert untouched["handling"] == "auto" and untouched["handling_before_refusal"] is None
    assert kept_before["handling"] == "payment_not_final"
    assert second_start == []
