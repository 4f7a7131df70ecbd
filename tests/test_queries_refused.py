"""The NPC refuses a query or free text of ours (a ccms.900 PR09 or a ccms.911), without
processes: the query ends `refused` with the NPC's code and reason, is neither overdue
nor chased, counts as refused in the summary, is told in the reply feed and the webhook,
and shows on the payment and the console's list; free text is marked refused where it
is listed. A database made before refusals were kept gets their columns at start-up."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

import ledger
from gateway import payments
from gateway import dialect
from gateway import store as gateway_store
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI
from gateway.errors import Conflict
from gateway.messages import ccms303, ccms314, ccms900, ccms911, codec
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.messages.envelope import Header
from gateway.ops import views
from gateway.queries import QueryDesk, deadlines, outgoing, records, refusals, schema
from gateway.queries.policy import QueryPolicy
from ledger.fixtures import postgres_schema_or_skip
from tests.beps_support import credit_row
from tests.e2e_support import BANK, PEER

ASKED = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)      # a Monday
REFUSED = datetime(2026, 12, 7, 9, 0, 2, tzinfo=SHANGHAI)
PAST_DUE = datetime(2026, 12, 9, 9, 0, tzinfo=SHANGHAI)    # due Tuesday 12:00
QUERY_MSG_ID, QUERY_MESG_ID = "2026120700000009", "20261207000000000009"
FREE_MSG_ID, FREE_MESG_ID = "2026120700000011", "20261207000000000011"
PAYMENT_ID = "P2026120700000001"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test on SQLite and, when the test server answers, on PostgreSQL."""
    if request.param == "sqlite":
        yield "sqlite:///:memory:"
        return
    with postgres_schema_or_skip("queries_refused") as found:
        yield found


@contextlib.contextmanager
def database(url: str, *, before_refusals: bool = False) -> Iterator[Any]:
    """The gateway's and the query desk's tables in one open transaction; with
    `before_refusals` the desk's tables as they were before refusals were kept."""
    db = ledger.connect(url)
    try:
        with db.transaction() as tx:  # committed: PostgreSQL numbers ids apart from it
            dialect.install(tx, gateway_store.SCHEMA)
            if before_refusals:
                dialect.install(tx, BEFORE_REFUSALS)
            else:
                schema.install(tx)
        with db.transaction() as tx:
            yield tx
    finally:
        db.close()


class Desk:
    """What the refusal handlers use of the query desk and its gateway."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.gw = SimpleNamespace(alert=lambda _tx, code, **d: self.alerts.append((code, d)),
                                  notifier=payments.Notifier(webhook=True),
                                  settings=SimpleNamespace(bank_code=BANK))


def our_query(tx: Any) -> dict[str, Any]:
    """Our query about payment PAYMENT_ID, sent at ASKED, its ccms.314 acknowledged."""
    payments.insert(tx, dict(credit_row(1, ASKED, "hvps.111.001.01", "settled"),
                             id=PAYMENT_ID, channel="hvps"))
    due = deadlines.reply_due(BusinessCalendar(), ASKED, QueryPolicy())
    row = records.insert(tx, {
        "id": f"Q{QUERY_MSG_ID}", "direction": "out", "state": "open", "system": "HVPS",
        "counterparty": PEER, "our_party": BANK, "their_party": PEER,
        "msg_id": QUERY_MSG_ID, "mesg_id": QUERY_MESG_ID, "query_type": "QT00",
        "content": "请查询是否入账", "amount_fen": 101, "currency": "CNY",
        "orig_msg_id": "2026120700000001", "orig_instg_party": BANK,
        "orig_mt": "hvps.111.001.01", "payment_id": PAYMENT_ID, "source": "core",
        "requested_by": "core", "asked_at": ASKED.isoformat(),
        "reply_due_at": due.isoformat(), "created_at": ASKED.isoformat(),
        "updated_at": ASKED.isoformat()})
    _outbox(tx, ccms314.MESSAGE_TYPE, QUERY_MESG_ID)
    return row


@contextlib.contextmanager
def asked(url: str) -> Iterator[tuple[Desk, Any]]:
    """The desk, and an open transaction in which our query has been sent."""
    with database(url) as tx:
        our_query(tx)
        yield Desk(), tx


def our_free_text(tx: Any) -> dict[str, Any]:
    item = records.add_free_format(tx, {
        "id": f"F{FREE_MSG_ID}", "feed_seq": payments.next_seq(tx, "free_format_feed"),
        "direction": "out", "sender": BANK, "receiver": PEER, "system": "HVPS",
        "msg_id": FREE_MSG_ID, "mesg_id": FREE_MESG_ID, "content": "贵行报文延迟，请核查。",
        "requested_by": "core", "at": ASKED.isoformat()})
    _outbox(tx, ccms303.MESSAGE_TYPE, FREE_MESG_ID)
    return item


def _outbox(tx: Any, mesg_type: str, mesg_id: str) -> None:
    tx.execute("INSERT INTO outbox (payment_id, kind, stream, state, mesg_type, mesg_id, "
               "receiver, envelope, attempts, created_at, updated_at) VALUES "
               "(NULL, 'message', 'link', 'acked', ?, ?, ?, ?, 1, ?, ?)",
               (mesg_type, mesg_id, PEER, b"{H:...}", ASKED.isoformat(), ASKED.isoformat()))


def from_npc(mesg_type: str, body: bytes, n: int = 1) -> codec.Decoded:
    """The NPC's notice as the gateway decodes it off the link (unsigned, sender 0000)."""
    mesg_id = f"HVPD20261207{n:08d}"
    header = Header("0000", "HVPS", BANK, "HVPS", "20261207", "090002", mesg_type, mesg_id,
                    mesg_id, direction="D")
    return codec.decode(codec.encode(header, body, None, sign=False))


def refused_result(original_msg_id: str, mt: str, status: str = ccms900.REJECTED,
                   n: int = 1) -> codec.Decoded:
    """A ccms.900 as the simulated NPC refuses a message it will not forward."""
    return from_npc(ccms900.MESSAGE_TYPE, ccms900.build(ccms900.CommonConf(
        header=GroupHeader(f"2026120790{n:06d}", "2026-12-07T09:00:02", "0000", "0000",
                           BANK, BANK, "HVPS"),
        original=OriginalRef(original_msg_id, BANK, mt), status=status, code="HV0E0002",
        reject_info="the receiving clearing bank is not a participant: 777300000011",
        processed_on="2026-12-07")), n)


def discarded(mesg_id: str, mt: str, n: int = 2) -> codec.Decoded:
    return from_npc(ccms911.MESSAGE_TYPE, ccms911.build(ccms911.Discarded(
        BANK, "20261207", mt, mesg_id, "CC9S0001",
        reject_info="signature check failed")), n)


def webhook_events(tx: Any) -> list[dict[str, Any]]:
    rows = tx.query("SELECT envelope FROM outbox WHERE kind = 'webhook' ORDER BY id", ())
    return [e for (body,) in rows for e in json.loads(bytes(body))]


def test_a_refused_query_ends_refused_and_is_neither_overdue_nor_chased(url):
    with asked(url) as (desk, tx):
        processed, pushes = refusals.on_result(tx, desk, refused_result(
            QUERY_MSG_ID, ccms314.MESSAGE_TYPE), REFUSED)
        query = records.get(tx, f"Q{QUERY_MSG_ID}")
        shown = records.view(query, PAST_DUE)
        raised = deadlines.scan(tx, PAST_DUE, QueryPolicy(),
                                lambda _tx, code, **d: desk.alerts.append((code, d)))
        with pytest.raises(Conflict) as chased:
            outgoing.chase(tx, desk, query["id"], None, None, PAST_DUE)
        summary = QueryDesk.summary(None, tx)
        feed = records.reply_feed(tx, 0, 10)
        history = [e["event"] for e in payments.history(tx, PAYMENT_ID)]
        outbox = tx.query_one("SELECT state FROM outbox WHERE mesg_id = ?",
                              (QUERY_MESG_ID,))[0]
        events = webhook_events(tx)

    assert processed.outcome == {"query": query["id"], "refused": "HV0E0002"}
    assert pushes and outbox == "done"
    assert shown["state"] == "refused" and shown["overdue"] is False
    assert shown["refusal"] == {
        "message_type": ccms900.MESSAGE_TYPE, "code": "HV0E0002",
        "reason": "the receiving clearing bank is not a participant: 777300000011",
        "at": REFUSED.isoformat()}
    assert shown["reply"] is None and shown["replied_at"] is None
    assert raised == {"due_soon": 0, "overdue": 0} and query["overdue_at"] is None
    assert chased.value.problems[0].code == "query_not_open"
    assert summary["queries"] == {"sent": 1, "received": 0, "replied": 0, "overdue": 0}
    assert [(r["kind"], r["query_id"], r["code"], r["sender"]) for r in feed] == [
        ("refusal", query["id"], "HV0E0002", "0000")]
    assert "query_refused" in history
    assert [code for code, _ in desk.alerts] == ["query_refused_by_npc"]
    assert [(e["event"], e["query"]["state"], e["refusal"]["code"]) for e in events] == [
        ("query_refused", "refused", "HV0E0002")]


def test_a_second_notice_about_a_refused_query_changes_nothing(url):
    with asked(url) as (desk, tx):
        refusals.on_result(tx, desk, refused_result(QUERY_MSG_ID, ccms314.MESSAGE_TYPE),
                           REFUSED)
        again, pushes = refusals.on_discarded(tx, desk, discarded(
            QUERY_MESG_ID, ccms314.MESSAGE_TYPE), PAST_DUE)
        query = records.get(tx, f"Q{QUERY_MSG_ID}")
        feed = records.reply_feed(tx, 0, 10)

    assert again.outcome == {"query": query["id"], "ignored": "refused"} and pushes == []
    assert query["refused_with"] == ccms900.MESSAGE_TYPE
    assert query["refused_at"] == REFUSED.isoformat()
    assert len(feed) == 1 and len(desk.alerts) == 1


def test_a_refusal_after_the_due_time_takes_the_query_out_of_the_overdue_count(url):
    """The gateway learns of the refusal late (its link was down): the query was raised
    overdue meanwhile, but no reply was ever due from the bank."""
    with asked(url) as (desk, tx):
        deadlines.scan(tx, PAST_DUE, QueryPolicy(),
                       lambda _tx, code, **d: desk.alerts.append((code, d)))
        before = QueryDesk.summary(None, tx)["queries"]["overdue"]
        refusals.on_result(tx, desk, refused_result(QUERY_MSG_ID, ccms314.MESSAGE_TYPE),
                           PAST_DUE)
        after = QueryDesk.summary(None, tx)["queries"]
        shown = records.view(records.get(tx, f"Q{QUERY_MSG_ID}"), PAST_DUE)

    assert before == 1
    assert after == {"sent": 1, "received": 0, "replied": 0, "overdue": 0}
    assert shown["state"] == "refused" and shown["overdue"] is False
    assert [code for code, _ in desk.alerts] == ["query_counterparty_reply_overdue",
                                                 "query_refused_by_npc"]


def test_a_discarded_query_is_refused_with_the_discard_code(url):
    with asked(url) as (desk, tx):
        refusals.on_discarded(tx, desk, discarded(QUERY_MESG_ID, ccms314.MESSAGE_TYPE),
                              REFUSED)
        query = records.view(records.get(tx, f"Q{QUERY_MSG_ID}"), REFUSED,
                             records.replies_of(tx, f"Q{QUERY_MSG_ID}"))

    assert query["state"] == "refused" and query["replies"] == []
    assert query["refusal"]["message_type"] == ccms911.MESSAGE_TYPE
    assert (query["refusal"]["code"], query["refusal"]["reason"]) == (
        "CC9S0001", "signature check failed")


def test_a_query_refused_at_the_link_is_refused_and_waits_for_no_reply(url):
    """A 4xx answer to the POST of our ccms.314: the NPC forwarded nothing, so the query
    is refused (`link`, HTTP400) rather than open for a reply that cannot come; its
    outbox row is done; a message that is none of ours is left alone."""
    with asked(url) as (desk, tx):
        processed, _ = refusals.on_link_refused(tx, desk, ccms314.MESSAGE_TYPE,
                                                QUERY_MESG_ID, 400, REFUSED)
        other = refusals.on_link_refused(tx, desk, ccms314.MESSAGE_TYPE,
                                         "20261207000000000077", 400, REFUSED)
        query = records.view(records.get(tx, f"Q{QUERY_MSG_ID}"), REFUSED)
        outbox = tx.query_one("SELECT state FROM outbox WHERE mesg_id = ?",
                              (QUERY_MESG_ID,))[0]

    assert processed.outcome == {"query": f"Q{QUERY_MSG_ID}", "refused": "HTTP400"}
    assert other is None
    assert query["state"] == "refused" and query["overdue"] is False
    assert (query["refusal"]["message_type"], query["refusal"]["code"]) == ("link", "HTTP400")
    assert outbox == "done"
    assert [code for code, _ in desk.alerts] == ["query_refused_by_npc"]


def test_free_text_refused_is_listed_again_at_the_end_of_the_feed_marked_refused(url):
    desk = Desk()
    with database(url) as tx:
        item = our_free_text(tx)
        later = records.add_free_format(tx, dict(
            item, id="FI8882000000152026120700000001",
            feed_seq=payments.next_seq(tx, "free_format_feed"), direction="in",
            sender=PEER, receiver=BANK, msg_id="2026120700000001"))
        processed, _ = refusals.on_discarded(tx, desk, discarded(
            FREE_MESG_ID, ccms303.MESSAGE_TYPE), REFUSED)
        again, _ = refusals.on_result(tx, desk, refused_result(
            FREE_MSG_ID, ccms303.MESSAGE_TYPE), REFUSED)
        listed = records.free_format_list(tx, None, 0, 10)
        after_first_page = records.free_format_list(tx, None, item["feed_seq"], 10)
        events = webhook_events(tx)

    assert processed.outcome == {"free_format": item["id"], "refused": "CC9S0001"}
    assert again.outcome == {"free_format": item["id"], "ignored": "refused"}
    assert [m["id"] for m in listed] == [later["id"], item["id"]]
    assert listed[0]["refusal"] is None
    assert listed[1]["refusal"]["code"] == "CC9S0001" and listed[1]["seq"] > later["feed_seq"]
    assert [m["id"] for m in after_first_page] == [later["id"], item["id"]]
    assert [code for code, _ in desk.alerts] == ["free_format_refused_by_npc"]
    assert [(e["event"], e["message"]["refusal"]["code"]) for e in events] == [
        ("free_format_refused", "CC9S0001")]


def test_notices_about_other_messages_are_left_to_the_gateway(url):
    with asked(url) as (desk, tx):
        assert refusals.on_result(tx, desk, refused_result(
            QUERY_MSG_ID, "hvps.111.001.01"), REFUSED) is None
        assert refusals.on_result(tx, desk, refused_result(
            "2026120799999999", ccms314.MESSAGE_TYPE), REFUSED) is None
        assert refusals.on_discarded(tx, desk, discarded(
            "20261207999999999999", ccms303.MESSAGE_TYPE), REFUSED) is None
        assert records.get(tx, f"Q{QUERY_MSG_ID}")["state"] == "open"
    assert desk.alerts == []


def test_a_result_other_than_a_refusal_is_claimed_and_told_not_acted_on(url):
    with asked(url) as (desk, tx):
        processed, _ = refusals.on_result(tx, desk, refused_result(
            QUERY_MSG_ID, ccms314.MESSAGE_TYPE, status=ccms900.SETTLED), REFUSED)
        state = records.get(tx, f"Q{QUERY_MSG_ID}")["state"]

    assert processed.outcome["ignored"] == ccms900.SETTLED and state == "open"
    assert [code for code, _ in desk.alerts] == ["result_status_not_handled"]


def test_the_console_lists_refusals_and_leaves_them_out_of_the_overdue_list(url):
    with asked(url) as (desk, tx):
        our_free_text(tx)
        refusals.on_result(tx, desk, refused_result(QUERY_MSG_ID, ccms314.MESSAGE_TYPE),
                           REFUSED)
        refusals.on_result(tx, desk, refused_result(FREE_MSG_ID, ccms303.MESSAGE_TYPE, n=2),
                           REFUSED)
        shown = views.overdue_queries(tx, PAST_DUE)

    assert shown["rows"] == []
    assert [(r["kind"], r["id"], r["refusal_code"]) for r in shown["refused"]["rows"]] == [
        ("free_format", f"F{FREE_MSG_ID}", "HV0E0002"),
        ("query", f"Q{QUERY_MSG_ID}", "HV0E0002")]
    assert shown["refused"]["rows"][1]["payment_id"] == PAYMENT_ID


def _table(name: str) -> str:
    return next(s for s in schema.SCHEMA if f"CREATE TABLE IF NOT EXISTS {name} (" in s)


# The query desk's tables as they were made before refusals were kept.
BEFORE_REFUSALS = [
    _table("queries").split("        refused_at TEXT, refused_with")[0]
    + "        UNIQUE (direction, counterparty, msg_id)\n    )",
    _table("query_replies").split(",\n        kind TEXT")[0] + "\n    )",
    _table("free_format").split(",\n        refused_at TEXT")[0] + "\n    )",
]


def test_a_database_made_before_refusals_gets_their_columns_at_start_up(url):
    with database(url, before_refusals=True) as tx:
        old = {t: set(dialect.table_columns(tx, t))
               for t in ("queries", "query_replies", "free_format")}
        tx.execute("INSERT INTO query_replies (id, feed_seq, query_id, direction, sender, "
                   "msg_id, mesg_id, answered_msg_id, content, replied_by, at, late) VALUES "
                   "('A1', 1, 'Q1', 'in', ?, '1', '1', '1', '已入账', ?, ?, 0)",
                   (PEER, PEER, ASKED.isoformat()))
        schema.install(tx)
        schema.install(tx)  # a second start finds them there
        new = {t: set(dialect.table_columns(tx, t)) for t in old}
        kept = records.reply_feed(tx, 0, 10)

    assert "refused_at" not in old["queries"] and "kind" not in old["query_replies"]
    assert new["queries"] - old["queries"] == {*records.REFUSAL_COLUMNS,
                                               "handling_before_refusal", "client"}
    assert new["free_format"] - old["free_format"] == {*records.REFUSAL_COLUMNS, "client"}
    assert new["query_replies"] - old["query_replies"] == {
        "kind", "code", *records.REFUSAL_COLUMNS}
    assert [(r["id"], r["kind"]) for r in kept] == [("A1", "reply")]
