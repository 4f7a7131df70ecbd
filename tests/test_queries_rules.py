"""Query desk rules without processes: deadlines on the business calendar, the deadline
timer on a manual clock, the auto-answer policy, answers and request checks."""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

import ledger
from gateway import payments
from gateway import store as gateway_store
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI, ManualClock
from gateway.beps import packer
from gateway.beps.settings import BepsSettings
from gateway.errors import Conflict, PaygateError
from gateway.messages.common import OriginalRef
from gateway.queries import (QueryDesk, answers, deadlines, outgoing, policy, records,
                             requests, schema)
from tests.beps_support import NOW as BEPS_NOW, credit_row, held_items
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH
from tests.test_beps_debit_overdue import debits_sent

CALENDAR = BusinessCalendar()
POLICY = policy.QueryPolicy()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize("arrived, cutoff, due", [
    ("2026-09-30T15:00", "12:00", "2026-10-08T12:00"),   # before National Day
    ("2026-12-11T16:30", "12:00", "2026-12-14T12:00"),   # Friday afternoon
    ("2026-12-12T10:00", "12:00", "2026-12-14T12:00"),   # Saturday (BEPS runs)
    ("2026-12-07T08:00", "10:30", "2026-12-08T10:30"),   # a configured cut-off
    ("2026-02-14T16:00", "12:00", "2026-02-24T12:00"),   # make-up Saturday, Spring Festival
    ("2026-02-16T09:00", "12:00", "2026-02-24T12:00"),   # inside the holiday
])
def test_reply_is_due_on_the_morning_of_the_next_working_day(arrived, cutoff, due):
    """The reply is due at the cut-off of the first working day after the arrival date."""
    rules = replace(POLICY, morning_cutoff_at=cutoff)

    reply_due = deadlines.reply_due(CALENDAR, at(arrived), rules)
    ask_due = deadlines.ask_due(CALENDAR, at(arrived), rules)

    assert reply_due == at(due) and ask_due == at(due)


@contextlib.contextmanager
def database() -> Iterator[Any]:
    db = ledger.connect("sqlite:///:memory:")
    with db.transaction() as tx:
        for statement in gateway_store.SCHEMA:
            tx.execute(statement, ())
        schema.install(tx)
        yield tx
    db.close()


def query_row(qid: str, direction: str, asked_at: datetime) -> dict[str, Any]:
    due = deadlines.reply_due(CALENDAR, asked_at, POLICY)
    return {"id": qid, "direction": direction, "state": "open", "system": "HVPS",
            "counterparty": "888200000015", "our_party": "999100000027",
            "their_party": "888200000023", "msg_id": qid[-16:], "mesg_id": qid[-16:],
            "query_type": "QT00", "content": "请查询", "amount_fen": 100,
            "currency": "CNY", "orig_msg_id": "2026120700000001",
            "orig_instg_party": "888200000015", "orig_mt": "hvps.111.001.01",
            "source": "counterparty", "asked_at": asked_at.isoformat(),
            "reply_due_at": due.isoformat(), "created_at": asked_at.isoformat(),
            "updated_at": asked_at.isoformat()}


# (clock, alerts raised by that pass) for a query in and one out, asked Monday 09:00 and
# due Tuesday 12:00, warned two hours before.
TIMELINE = [
    ("2026-12-07T18:00", []),
    ("2026-12-08T09:59", []),
    ("2026-12-08T10:00", [("query_reply_due_soon", "QI1")]),
    ("2026-12-08T11:00", []),
    ("2026-12-08T12:00", []),
    ("2026-12-08T12:01", [("query_reply_overdue", "QI1"),
                          ("query_counterparty_reply_overdue", "Q2")]),
    ("2026-12-09T09:00", []),
]


def test_timer_warns_once_then_raises_overdue_once():
    """Each open query is warned once before its due time (only replies we owe) and
    raised once after it; later passes raise nothing again."""
    clock = ManualClock(at("2026-12-07T09:00"))
    raised: list[tuple[str, str]] = []
    with database() as tx:
        records.insert(tx, query_row("QI1", "in", clock.now()))
        records.insert(tx, query_row("Q2", "out", clock.now()))
        for when, expected in TIMELINE:
            clock.set(at(when))
            raised.clear()
            deadlines.scan(tx, clock.now(), POLICY,
                           lambda _tx, code, **d: raised.append((code, d["query"])))

            assert raised == expected, when
        kept = records.get(tx, "QI1")
    assert kept["warned_at"] == at("2026-12-08T10:00").isoformat()
    assert kept["overdue_at"] == at("2026-12-08T12:01").isoformat()


def test_a_late_answer_is_recorded_as_overdue_without_the_timer():
    """Answering after the due time marks the query overdue even if no pass ran."""
    with database() as tx:
        records.insert(tx, query_row("QI1", "in", at("2026-12-07T09:00")))
        late = records.answer(tx, records.get(tx, "QI1"), at("2026-12-09T09:00"), "1",
                              "已处理", "operator:李四")
        records.insert(tx, query_row("QI2", "in", at("2026-12-07T09:00")))
        on_time = records.answer(tx, records.get(tx, "QI2"), at("2026-12-07T10:00"), "2",
                                 "已处理", "auto")

    assert late["overdue_at"] == at("2026-12-09T09:00").isoformat()
    assert on_time["overdue_at"] is None


# Queries asked Monday 7 December 09:00, due Tuesday 12:00: (id, how it ended and when,
# whether the deadline timer ran at 12:01, shown at) -> overdue, answered_late.
LATENESS = [
    ("QI1", None, False, "2026-12-08T11:59", False, None),
    ("QI2", None, False, "2026-12-08T12:00:30", True, None),   # the timer not yet run
    ("QI3", None, True, "2026-12-08T13:00", True, None),
    ("QI4", ("answered", "2026-12-08T11:00"), False, "2026-12-08T13:00", False, False),
    ("QI5", ("answered", "2026-12-08T13:32"), False, "2026-12-08T14:00", True, True),
    ("QI6", ("answered", "2026-12-08T13:32"), True, "2026-12-09T09:00", True, True),
    # Ours, refused by the NPC after the timer had marked it: no reply was ever due.
    ("Q7", ("refused", "2026-12-08T12:30"), True, "2026-12-09T09:00", False, None),
]


def end_query(tx: Any, qid: str, how: str, when: str) -> None:
    query = records.get(tx, qid)
    if how == "answered":
        records.answer(tx, query, at(when), f"A{qid}", "已处理", "operator:李四")
    else:
        records.refuse(tx, query, at(when), "ccms.900.001.02", "PR09", "收款行不是参与者")


def test_a_query_answered_late_stays_overdue_and_says_so():
    """The view's `overdue` is true for a reply that came late, not only for one still
    missing, and `answered_late` tells the two apart (null while there is no reply); the
    views that say overdue are the ones the closing summary counts once the timer has
    passed."""
    shown, marked = {}, []
    by_timer = [row for row in LATENESS if row[2]]
    with database() as tx:
        for qid, *_rest in by_timer:
            records.insert(tx, query_row(qid, "out" if qid[1] != "I" else "in",
                                         at("2026-12-07T09:00")))
        deadlines.scan(tx, at("2026-12-08T12:01"), POLICY,
                       lambda _tx, code, **d: marked.append(d["query"]))
        for qid, *_rest in (row for row in LATENESS if not row[2]):
            records.insert(tx, query_row(qid, "in", at("2026-12-07T09:00")))
        for qid, ending, *_rest in LATENESS:
            if ending is not None:
                end_query(tx, qid, *ending)
        for qid, _ending, _timer, shown_at, *_expected in LATENESS:
            shown[qid] = records.view(records.get(tx, qid), at(shown_at))
        deadlines.scan(tx, at("2026-12-09T09:00"), POLICY, lambda _tx, code, **d: None)
        after_timer = [records.view(records.get(tx, qid), at("2026-12-09T09:00"))
                       for qid, *_rest in LATENESS]
        summary = QueryDesk.summary(SimpleNamespace(), tx)

    assert [(shown[qid]["overdue"], shown[qid]["answered_late"])
            for qid, *_rest in LATENESS] == [tuple(row[4:]) for row in LATENESS]
    assert sorted(marked) == sorted(qid for qid, *_rest in by_timer)
    assert summary["queries"]["overdue"] == sum(v["overdue"] for v in after_timer) == 5


PAYMENT = {"id": "I1", "direction": "in", "state": "credited", "amount_fen": 12_345_67}


@pytest.mark.parametrize("changes, query_type, content, amount_fen, payment, expected", [
    ({}, "QT00", "请查询是否已入账", 12_345_67, PAYMENT, "auto"),
    ({}, None, "款项到账了吗", 12_345_67, PAYMENT, "auto"),
    ({"auto_answer": False}, "QT00", "请查询是否已入账", 12_345_67, PAYMENT,
     "auto_answer_off"),
    ({}, "QT00", "请查询是否已入账", 12_345_67, None, "payment_not_found"),
    ({}, "QT01", "请查询是否已入账", 12_345_67, PAYMENT, "query_type_not_auto_answered"),
    ({}, "QT00", "未入账，请退汇", 12_345_67, PAYMENT, "question_needs_judgement"),
    ({}, "QT00", "请提供付款人电话", 12_345_67, PAYMENT, "question_not_recognised"),
    ({}, "QT00", "请查询是否已入账", 100, PAYMENT, "amount_differs"),
    ({}, "QT00", "请查询是否已入账", 12_345_67, dict(PAYMENT, state="received"),
     "payment_not_final"),
    ({"auto_answer_types": ("QT00", "QT01")}, "QT01", "状态如何", 12_345_67, PAYMENT,
     "auto"),
])
def test_policy_decides_who_answers(changes, query_type, content, amount_fen, payment,
                                    expected):
    """The gateway answers only what policy and records settle; otherwise it says why."""
    rules = replace(POLICY, **changes)

    assert answers.decide(rules, query_type, content, amount_fen, payment) == expected


@pytest.mark.parametrize("direction, state, words, timed", [
    ("in", "credited", "入收款人账户", True),
    ("in", "suspense", "待销账序号900070001", True),
    ("in", "returned", "退回贵行", True),
    ("out", "settled", "清算成功", True),
    ("out", "rejected", "未成功（被拒绝），款项未划出", False),
    ("out", "netted", "轧差", True),
])
def test_answers_say_what_the_records_say(direction, state, words, timed):
    """The automatic answer names the state, the amount and when it was reached."""
    with database() as tx:
        tx.execute("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                   "VALUES ('P1', '2026-12-07T10:15:00+08:00', ?, 'x', '{}')", (state,))
        text = answers.answer_text(tx, {
            "id": "P1", "direction": direction, "state": state, "amount_fen": 12_345_67,
            "reason": "account_not_found", "pending_no": "900070001",
            "updated_at": "2026-12-07T11:00:00+08:00"})

    assert words in text and "人民币12,345.67元" in text
    assert len(text) <= answers.CONTENT_LEN_MAX
    assert ("2026-12-07 10:15" in text) is timed


@pytest.mark.parametrize("direction, state, reason, words", [
    ("in", "suspense", "name_mismatch", "因收款人户名与账号不符于"),
    ("in", "suspense", "account_not_found", "因收款人账号不存在于"),
    ("in", "suspense", "account_closed", "因收款人账户已销户于"),
    ("in", "suspense", "branch_mismatch", "因收款人开户行与收款行不符于"),
    ("in", "suspense", "not_a_reason_we_know", "因收款人账户信息不符于"),
    ("out", "rejected", "beps_item_refused_before_packing: name_too_long_for_beps",
     "未成功（被拒绝），"),
    ("out", "rejected", "收款行不是参与者", "未成功（被拒绝：收款行不是参与者），"),
    ("in", "netted", None, "当前状态：已轧差。"),
])
def test_an_answer_to_another_bank_carries_no_code_of_ours(direction, state, reason, words):
    """The reason our records keep is said in words (a suspense reason), or left out
    when it is one of the gateway's codes; a reason in words (the NPC's) is given."""
    with database() as tx:
        text = answers.answer_text(tx, {
            "id": "P1", "direction": direction, "state": state, "amount_fen": 100,
            "reason": reason, "pending_no": "900070001",
            "updated_at": "2026-12-07T11:00:00+08:00"})

    assert words in text
    assert not re.search(r"[A-Za-z_]{3,}", text), text


def test_answer_gives_the_time_of_the_credit_not_of_the_query_about_it():
    """The rows a query writes while the payment stays credited (query received, a
    reply sent) do not move when it was credited: the answer names the credit's time."""
    with database() as tx:
        for when, state, event in (("09:12:20", "received", "created"),
                                   ("09:12:22", "credited", "hvps_credited"),
                                   ("09:13:37", "credited", "query_received"),
                                   ("09:13:38", "credited", "query_answered")):
            tx.execute("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                       "VALUES ('P1', ?, ?, ?, '{}')", (f"2026-12-07T{when}+08:00", state,
                                                        event))
        text = answers.answer_text(tx, {
            "id": "P1", "direction": "in", "state": "credited", "amount_fen": 424_242,
            "updated_at": "2026-12-07T09:13:38+08:00"})

    assert "已于2026-12-07 09:12入收款人账户" in text


def test_state_reached_again_counts_from_its_latest_entry():
    """A payment that left a state and came back to it reached it when it came back."""
    with database() as tx:
        for when, state in (("10:00", "unknown"), ("10:05", "unknown"), ("10:30", "sent"),
                            ("11:00", "unknown"), ("11:20", "unknown")):
            tx.execute("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                       "VALUES ('P1', ?, ?, 'x', '{}')", (f"2026-12-07T{when}+08:00", state))

        assert payments.reached_at(tx, "P1", "unknown") == "2026-12-07T11:00+08:00"
        assert payments.reached_at(tx, "P1", "settled") is None


NOW = at("2026-12-07T12:00")


@pytest.mark.parametrize("body, codes", [
    ({"payment_id": "P1", "content": "请查询"}, []),
    ({"original": {"msg_id": "2026120700000001", "sending_bank": "888200000015"},
      "amount": "100.00", "content": "请查询"}, []),
    ({"content": "请查询"}, ["payment_or_original_required"]),
    ({"payment_id": "P1", "original": {"msg_id": "1", "sending_bank": "888200000015"},
      "content": "请查询"}, ["payment_or_original_required"]),
    ({"payment_id": "P1", "content": "x" * 257}, ["text_too_long_or_not_printable"]),
    ({"payment_id": "P1", "content": "a\x07b"}, ["text_too_long_or_not_printable"]),
    ({"payment_id": "P1", "content": " "}, ["field_required"]),
    ({"payment_id": "P1", "content": "请查询", "query_type": "QT09"},
     ["query_type_unknown"]),
    ({"payment_id": "P1", "content": "请查询", "amount": "1.001"},
     ["amount_must_have_at_most_two_decimals"]),
    ({"payment_id": "P1", "content": "请查询", "doubt_at": "2026-12-08T09:00:00"},
     ["doubt_at_malformed"]),
    ({"payment_id": "P1", "content": "请查询", "colour": "red"}, ["field_unknown"]),
    ({"original": {"msg_id": "1", "sending_bank": "8882"}, "content": "请查询"},
     ["field_malformed"]),
])
def test_query_requests_report_every_problem(body, codes):
    """A query request is refused with the codes of every rule it breaks."""
    try:
        requests.parse_query(body, NOW)
        found: list[str] = []
    except PaygateError as exc:
        found = [p.code for p in exc.problems]

    assert found == codes


@pytest.mark.parametrize("values, code", [
    ({"queries_morning_cutoff_at": "10:30"}, None),
    ({"queries_auto_answer_keywords": ["入账"]}, None),
    ({"queries_morning_cutoff_at": "25:00"}, "setting_malformed"),
    ({"queries_check_interval_s": 0}, "setting_malformed"),
    ({"queries_auto_answer_types": ["QT07"]}, "setting_malformed"),
])
def test_policy_reads_its_settings(values, code):
    """Settings named queries_<field> change the policy; a bad one is refused at start."""
    try:
        rules = policy.from_settings(SimpleNamespace(**values))
        found = None
    except PaygateError as exc:
        found = exc.code

    assert found == code
    if code is None:
        assert rules.auto_answer_keywords == tuple(values.get(
            "queries_auto_answer_keywords", POLICY.auto_answer_keywords))


def test_due_times_compare_in_business_time():
    """A due time is kept with its offset, so a later instant compares as later."""
    row = query_row("QI9", "in", at("2026-12-07T09:00"))

    assert records.is_late(row, at("2026-12-08T12:00") + timedelta(seconds=1))
    assert not records.is_late(row, at("2026-12-08T12:00"))


BEPS_P0 = credit_row(0, BEPS_NOW)["id"]


def test_a_beps_payment_in_no_package_cannot_be_queried_yet(tmp_path):
    """Waiting to be packed, the payment was on no message a bank could look up: the
    query is refused, naming the payment; sealed in a package, the query names the
    package."""
    db, gw = held_items(tmp_path, [100])
    desk = SimpleNamespace(gw=SimpleNamespace(settings=gw.settings, own_banks={BRANCH}))
    with db.transaction() as tx:
        payment = payments.get(tx, BEPS_P0)
        with pytest.raises(Conflict) as refused:
            outgoing._from_payment(tx, desk, payment)
        packer.seal_due(tx, gw, BepsSettings(), "stream", BEPS_NOW, force=True)
        package_id, msg_id = tx.query_one("SELECT id, msg_id FROM beps_packages", ())
        resolved = outgoing._from_payment(tx, desk, payments.get(tx, BEPS_P0))

    assert [(p.code, p.path, p.value) for p in refused.value.problems] == [
        ("beps_item_not_in_a_package", "/payment_id", BEPS_P0)]
    assert package_id == BANK + msg_id != BANK + payment["msg_id"]
    assert resolved.subject == OriginalRef(msg_id, BANK, "beps.121.001.01")
    assert resolved.subject_tx.tx_id == payment["tx_id"]


def test_a_query_about_our_debit_names_the_payer_bank_as_the_other_party(tmp_path):
    """Our debit (beps.127) is sent by the creditor's bank, ours: a query opened about it
    names our branch as our party and the payer's bank as theirs, the package's receiver
    as their direct participant."""
    db, gw, package_id, (debit_id,) = debits_sent(tmp_path, [5_000])
    desk = SimpleNamespace(gw=SimpleNamespace(settings=gw.settings, own_banks={BRANCH}))
    with db.transaction() as tx:
        debit = payments.get(tx, debit_id)
        resolved = outgoing._from_payment(tx, desk, debit)

    assert (debit["payee_bank"], debit["payer_bank"]) == (BRANCH, PEER_BRANCH)
    assert resolved.parties.our_party == BRANCH
    assert resolved.parties.their_party == PEER_BRANCH
    assert resolved.parties.their_direct == PEER == debit["receiver_direct"]
    assert resolved.subject == OriginalRef(package_id[12:], BANK, "beps.127.001.01")
