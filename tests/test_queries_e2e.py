"""Query and reply (查询查复) and free text end to end: core system → gateway → simulated
NPC (its own process) → peer bank, and back, on real ccms.314/315/303 over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from lxml import etree

from gateway.clock import SHANGHAI, ScaledClock
from gateway.errors import NotFound
from gateway.harness import Harness
from gateway.messages import envelope as env_mod
from gateway.queries import desk_of
from ledger.testing import customer_account
from tests.e2e_support import (BANK, BRANCH, PEER, SHARED, YUAN, transfer, until,
                               wait_state, webhook_receiver)

pytestmark = pytest.mark.e2e

MONDAY_0900 = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)
BEFORE_NATIONAL_DAY = datetime(2026, 9, 30, 15, 0, tzinfo=SHANGHAI)  # a Wednesday
# Fast virtual time: one real second is almost fourteen business hours, so a deadline
# on the next working day's morning passes within a few real seconds.
FAST_RATE = 50_000.0
QUERY_TYPES = ("ccms.314.001.01", "ccms.315.001.01", "ccms.303.001.02")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, start: datetime = MONDAY_0900, rate: float = 1.0,
                  sim_args: tuple[str, ...] = (), **settings: Any) -> AsyncIterator[Harness]:
    """Gateway, simulated NPC (given `sim_args`) and Redis on a virtual clock, HVPS open
    on `start`'s date."""
    clock = ScaledClock(start=start, anchor_epoch_s=time.time(), rate=rate)
    day = start.date()
    # The NPC starts in preparation of `start`'s date and opens it: 00 -> 10, a change
    # the gateway takes whatever its timetable says of `start`.
    h = Harness(tmp_path, clock_spec=clock.to_spec(),
                balances_fen={BANK: 10_000_000 * YUAN, PEER: 10**14},
                settings_overrides=settings,
                sim_args=["--phase", "00", "--date", day.isoformat(), *sim_args])
    await h.start()
    try:
        gw = h.gateway
        await gw.store.run(lambda tx: gw.ledger.fund_clearing(
            tx, "test:opening", 10_000_000 * YUAN, day))
        await h.sim("POST", "/sim/phase", {"status": "10", "date": day.isoformat()})
        await until(lambda: gw.hvps_open, "HVPS open")
        desk_of(gw).tune(check_interval_s=0.05)
        yield h
    finally:
        await h.stop()


async def account(h: Harness, sequence: int, balance_fen: int, day: date) -> str:
    gw = h.gateway
    number = customer_account(sequence, "corporate")

    def work(tx: Any) -> None:
        gw.ledger.open_customer_account(tx, number, "示例客户", "corporate", day)
        if balance_fen:
            gw.ledger.deposit(tx, f"test:deposit:{number}", number, balance_fen, day)
    await gw.store.run(work)
    return number


async def settled_payment(h: Harness, day: date, key: str) -> dict[str, Any]:
    payer = await account(h, 1, 1_000_000 * YUAN, day)
    _, answer = await h.gateway.submit_transfer("core", key, transfer(payer, "150000.00"))
    await wait_state(h, answer["id"], "settled")
    return answer


async def incoming_payment(h: Harness, day: date, amount_fen: int = 12_345_67) -> str:
    """A peer's hvps.111 to one of our customers, credited; returns its XML MsgId."""
    payee = await account(h, 2, 0, day)
    created = await h.sim("POST", "/sim/peer/send", {
        "sender": PEER, "receiver": BANK, "payee_account": payee, "payee_name": "示例客户",
        "payee_bank": BRANCH, "amount_fen": amount_fen, "priority": "NORM"})
    msg_id = created["created"][0]["msg_id"]

    async def credited() -> bool:
        return await h.gateway.store.run(lambda tx: tx.query_one(
            "SELECT COUNT(*) FROM payments WHERE msg_id = ? AND state = 'credited'",
            (msg_id,))[0]) == 1
    await until(credited, "the incoming payment credited")
    return msg_id


async def peer_asks_for_a_return(h: Harness) -> str:
    """A peer's query about its credit to us asking for it back (an operator must
    answer); the query's id."""
    msg_id = await incoming_payment(h, MONDAY_0900.date())
    asked = await h.sim("POST", "/sim/peer/query", {
        "sender": PEER, "orig_msg_id": msg_id, "amount_fen": 12_345_67,
        "content": "该笔款项汇错账户，请协助退汇"})
    return f"QI{PEER}{asked['msg_id']}"


async def http(h: Harness, method: str, path: str, body: Any = None,
               key: str | None = None) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{h.gateway.url}{path}", json=body,
                                   headers=headers) as r:
            return r.status, await r.json()


async def query_state(h: Harness, query_id: str) -> dict[str, Any]:
    return await desk_of(h.gateway).get(query_id)


async def query_field(h: Harness, query_id: str, name: str) -> Any:
    """A field of a query, or None while the query has not arrived yet."""
    try:
        return (await query_state(h, query_id))[name]
    except NotFound:
        return None


async def wait_answered(h: Harness, query_id: str, timeout_s: float = 20.0) -> None:
    async def answered() -> bool:
        return await query_field(h, query_id, "state") == "answered"
    await until(answered, f"query {query_id} answered", timeout_s)


async def alert_codes(h: Harness) -> list[str]:
    rows = await h.gateway.store.run(lambda tx: tx.query(
        "SELECT code FROM alerts ORDER BY id", ()))
    return [code for (code,) in rows]


def test_query_sent_before_national_day_is_due_after_the_holiday(tmp_path):
    """A query sent on 2026-09-30 afternoon is due by 12:00 on 2026-10-08 (National Day
    off), is answered by the peer, and shows on the payment; its key replays."""
    async def scenario() -> None:
        async with running(tmp_path, start=BEFORE_NATIONAL_DAY) as h:
            payment = await settled_payment(h, BEFORE_NATIONAL_DAY.date(), "pay-1")
            body = {"payment_id": payment["id"], "content": "收款人称款项未入账，请查复",
                    "doubt_at": "2026-09-29T16:00:00"}
            status, query = await http(h, "POST", "/v1/queries", body, key="q-1")
            again = await http(h, "POST", "/v1/queries", body, key="q-1")
            other = await http(h, "POST", "/v1/queries", dict(body, content="另一个问题"),
                               key="q-1")
            await wait_answered(h, query["id"])
            _, view = await http(h, "GET", f"/v1/transfers/{payment['id']}")
            _, feed = await http(h, "GET", "/v1/query-replies?after=0")

            assert status == 201 and again == (201, query) and other[0] == 409
            assert query["reply_due_at"] == "2026-10-08T12:00:00+08:00"
            assert query["ask_due_at"] == "2026-09-30T12:00:00+08:00"
            assert query["counterparty"] == PEER
            assert "query_sent_after_deadline" in await alert_codes(h)
            assert [q["id"] for q in view["queries"]] == [query["id"]]
            assert view["queries"][0]["reply"]["content"].startswith("该笔款项已于")
            assert [r["query_id"] for r in feed["replies"]] == [query["id"]]
            assert "query_sent" in [e["event"] for e in view["history"]]
    run(scenario())


def test_reply_is_pushed_to_the_core_systems_webhook(tmp_path):
    """With a webhook configured, the peer's reply is POSTed to the core system, signed."""
    async def scenario() -> None:
        async with webhook_receiver() as (url, got):
            async with running(tmp_path, webhook_url=url, webhook_secret="s3") as h:
                payment = await settled_payment(h, MONDAY_0900.date(), "pay-4")
                _, query = await desk_of(h.gateway).open_query(
                    "core", "q-4", {"payment_id": payment["id"], "content": "请查询是否入账"})

                def replied() -> list[dict[str, Any]]:
                    events = [e for body, _ in got for e in json.loads(body)["events"]]
                    return [e for e in events if e.get("event") == "query_replied"]
                await until(replied, "the reply pushed to the webhook")
                pushed = replied()[0]
                body, signature = next((b, s) for b, s in got if b"query_replied" in b)

                assert pushed["kind"] == "query" and pushed["query"]["id"] == query["id"]
                assert pushed["reply"]["query_id"] == query["id"]
                assert signature == "sha256=" + hmac.new(b"s3", body, "sha256").hexdigest()
    run(scenario())


def test_inbound_query_is_answered_automatically_from_our_records(tmp_path):
    """A peer asks whether its payment was credited; the gateway answers with ccms.315
    at once and keeps the query on the payment."""
    async def scenario() -> None:
        # Two business minutes a real second: the query comes minutes after the credit.
        async with running(tmp_path, rate=120.0) as h:
            msg_id = await incoming_payment(h, MONDAY_0900.date())
            await asyncio.sleep(1.5)
            asked = await h.sim("POST", "/sim/peer/query", {
                "sender": PEER, "orig_msg_id": msg_id, "amount_fen": 12_345_67,
                "content": "我行客户称该笔款项对方未收到，请查询是否已入账"})
            query_id = f"QI{PEER}{asked['msg_id']}"
            await wait_answered(h, query_id)

            async def peer_got_reply() -> bool:
                stats = await h.sim("GET", "/sim/queries")
                return stats["replies_received"] == 1
            await until(peer_got_reply, "the peer to receive the reply")
            query = await query_state(h, query_id)
            view = await h.gateway.get_transfer(query["payment_id"])

            credited_at = next(e["at"] for e in view["history"]
                               if e["event"] == "hvps_credited")
            asked_at = next(e["at"] for e in view["history"]
                            if e["event"] == "query_received")
            assert query["handling"] == "auto" and query["reply"]["replied_by"] == "auto"
            assert credited_at[:16] != asked_at[:16]
            said = credited_at[:16].replace("T", " ")
            assert f"已于{said}入收款人账户" in query["reply"]["content"]
            assert query["reply_due_at"] == "2026-12-08T12:00:00+08:00"
            assert view["queries"][0]["id"] == query_id
            assert {"query_received", "query_answered"} <= {e["event"]
                                                            for e in view["history"]}
    run(scenario())


def test_inbound_query_for_an_operator_is_warned_then_overdue(tmp_path):
    """A query asking for a return waits for an operator: it is listed with its due time,
    warned before it, raised as overdue after it, and answered late by the operator."""
    async def scenario() -> None:
        async with running(tmp_path, rate=FAST_RATE) as h:
            desk_of(h.gateway).tune(warn_before_min=1200)
            query_id = await peer_asks_for_a_return(h)

            async def overdue() -> bool:
                return await query_field(h, query_id, "overdue_at") is not None
            await until(overdue, "the query to be overdue")
            _, listed = await http(h, "GET", "/v1/queries?state=open&direction=in")
            status, answered = await http(h, "POST", f"/v1/queries/{query_id}/reply", {
                "content": "已联系收款人，同意退汇，款项将于今日退回。", "operator": "张三"},
                key="reply-1")
            twice = await http(h, "POST", f"/v1/queries/{query_id}/reply",
                               {"content": "再答一次", "operator": "张三"}, key="reply-2")
            summary = await h.gateway.store.run(desk_of(h.gateway).summary)
            codes = await alert_codes(h)
            closed = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT k.by FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
                "WHERE a.code = 'query_needs_operator'", ()))

            shown = listed["queries"][0]
            asked_at = datetime.fromisoformat(shown["asked_at"])
            assert [q["id"] for q in listed["queries"]] == [query_id]
            assert shown["reply_due_at"] == \
                h.gateway.calendar.deadline_morning(asked_at).isoformat()
            assert shown["overdue"] is True
            assert shown["handling"] == "question_needs_judgement"
            assert codes.index("query_needs_operator") < codes.index("query_reply_due_soon")
            assert codes.index("query_reply_due_soon") < codes.index("query_reply_overdue")
            assert status == 200 and answered["state"] == "answered"
            assert answered["reply"]["replied_by"] == "operator:张三"
            assert answered["replied_at"] > answered["reply_due_at"]
            assert answered["overdue"] is True and answered["answered_late"] is True
            assert shown["answered_late"] is None
            assert twice[0] == 409 and twice[1]["errors"][0]["code"] == "query_not_open"
            assert closed == [("gateway",)]  # answered: the gateway closed the alert
            assert summary["queries"] == {"sent": 0, "received": 1, "replied": 1,
                                          "overdue": 1}
    run(scenario())


def test_unanswered_query_is_chased_and_the_late_reply_closes_both(tmp_path):
    """A peer that never answers makes our query overdue; the chase is answered late,
    and that reply is matched to the chase and closes the first query too."""
    async def scenario() -> None:
        async with running(tmp_path, rate=FAST_RATE) as h:
            await h.sim("POST", "/sim/queries", {"never_reply": 1.0})
            payment = await settled_payment(h, MONDAY_0900.date(), "pay-2")
            _, query = await desk_of(h.gateway).open_query(
                "core", "q-2", {"payment_id": payment["id"], "content": "请查询款项是否入账"})

            async def overdue() -> bool:
                return (await query_state(h, query["id"]))["overdue_at"] is not None
            await until(overdue, "our query to be overdue")
            await h.sim("POST", "/sim/queries", {"never_reply": 0.0,
                                                 "reply_delay_s": 40 * 3600})
            status, chase = await http(h, "POST", f"/v1/queries/{query['id']}/chase", {},
                                      key="chase-1")
            await wait_answered(h, chase["id"])
            chased = await query_state(h, chase["id"])
            original = await query_state(h, query["id"])

            assert status == 201 and chase["chase_of"] == query["id"]
            assert chase["content"].startswith("催查：")
            assert chased["replies"][0]["late"] is True
            assert chased["replied_at"] > chased["reply_due_at"]
            assert original["state"] == "answered"
            assert original["reply"]["replied_by"] == f"bank:{PEER}"
            assert "query_counterparty_reply_overdue" in await alert_codes(h)
    run(scenario())


def test_free_format_both_ways_and_every_query_message_validates(tmp_path):
    """Free text goes out and comes in; every ccms.314, 315 and 303 on the wire passes
    the published schemas."""
    reference = SHARED / "cnaps" / "reference-xsd"
    if not reference.exists():
        pytest.skip("../shared/cnaps/reference-xsd is not beside the checkout")

    async def scenario() -> list[tuple[str, bytes]]:
        async with running(tmp_path) as h:
            payment = await settled_payment(h, MONDAY_0900.date(), "pay-3")
            _, query = await desk_of(h.gateway).open_query(
                "core", "q-3", {"payment_id": payment["id"], "content": "请查询是否入账"})
            msg_id = await incoming_payment(h, MONDAY_0900.date())
            asked = await h.sim("POST", "/sim/peer/query", {
                "sender": PEER, "orig_msg_id": msg_id, "amount_fen": 12_345_67,
                "content": "请查询该笔款项是否已入账", "orig_tx_id": msg_id})
            status, sent = await http(h, "POST", "/v1/free-format", {
                "receiver": PEER, "content": "贵行今日报文延迟，请核查线路。"}, key="f-1")
            await h.sim("POST", "/sim/peer/free-format", {"sender": PEER,
                                                          "content": "我行系统将于今晚升级。"})
            await wait_answered(h, query["id"])
            await wait_answered(h, f"QI{PEER}{asked['msg_id']}")

            async def free_text_both_ways() -> bool:
                _, page = await http(h, "GET", "/v1/free-format?direction=in")
                stats = await h.sim("GET", "/sim/stats")
                return (len(page["messages"]) == 1
                        and stats["peers"][PEER].get("ccms.303.001.02") == 1)
            await until(free_text_both_ways, "free text delivered both ways")
            assert status == 201 and sent["receiver"] == PEER
            return await h.gateway.store.run(lambda tx: tx.query(
                "SELECT mesg_type, envelope FROM archive WHERE mesg_type IN (?, ?, ?)",
                QUERY_TYPES))

    rows = run(scenario())
    seen = {}
    for mesg_type, raw in rows:
        schema = etree.XMLSchema(etree.parse(str(reference / f"{mesg_type}.xsd")))
        body = etree.fromstring(env_mod.decode(bytes(raw)).body)
        assert schema.validate(body), (mesg_type, schema.error_log)
        seen[mesg_type] = seen.get(mesg_type, 0) + 1
    assert seen == {"ccms.314.001.01": 2, "ccms.315.001.01": 2, "ccms.303.001.02": 2}
