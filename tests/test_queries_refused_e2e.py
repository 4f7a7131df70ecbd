"""The NPC refuses our query or free text, end to end: gateway, simulated NPC (its own
process) and core system's webhook on loopback.

- The simulated NPC refuses with ccms.900 PR09 what it cannot forward: here it runs
  without the third bank as a participant, while the gateway's directory still has it,
  so a query or free text to that bank is refused as a real NPC refuses one to a bank
  that left CNAPS.
- A ccms.911 is the NPC's answer to a message whose signature or format failed, which
  our gateway does not send; it is crafted here as the NPC sends one (unsigned, from
  "0000") and given to the link."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.messages import ccms911, codec
from gateway.messages.envelope import Header
from gateway.ops import queues, views
from gateway.queries import desk_of
from tests.e2e_support import BANK, PEER, PEER_BRANCH, until, webhook_receiver
from tests.test_queries_e2e import (MONDAY_0900, alert_codes, http, peer_asks_for_a_return,
                                    query_field, running, settled_payment)

pytestmark = pytest.mark.e2e

THIRD_BANK, THIRD_BRANCH = "777300000011", "777300000029"
# One real second is about five and a half business hours: our query's reply, due on
# Tuesday at noon, falls due within seconds.
FAST_RATE = 20_000.0


def without_third_bank(tmp_path: Path) -> tuple[str, ...]:
    """The simulator's arguments for an NPC whose only peer is the first bank."""
    config = tmp_path / "npc.toml"
    config.write_text(f'[simulator]\npeers = [{{code = "{PEER}", branch = "{PEER_BRANCH}", '
                      'name = "对手银行测试支行"}]\n', encoding="utf-8")
    return ("--config", str(config))


async def discarded_by_npc(gw: Any, mesg_type: str, mesg_id: str, n: int) -> None:
    """Once the NPC has acknowledged our message `mesg_id`, a ccms.911 discarding it
    (its signature check failed), as the NPC sends one (unsigned, from "0000"), given
    to the link; `n` numbers the notice."""
    async def acknowledged() -> bool:
        return await gw.store.run(lambda tx: tx.query_one(
            "SELECT state FROM outbox WHERE mesg_id = ?", (mesg_id,))[0]) == "acked"
    await until(acknowledged, f"{mesg_type} {mesg_id} acknowledged by the NPC")
    now = gw.clock.now()
    notice_id = f"HVPD{now:%Y%m%d}{90000000 + n}"
    header = Header("0000", "HVPS", BANK, "HVPS", now.strftime("%Y%m%d"),
                    now.strftime("%H%M%S"), ccms911.MESSAGE_TYPE, notice_id, notice_id,
                    direction="D")
    body = ccms911.build(ccms911.Discarded(BANK, now.strftime("%Y%m%d"), mesg_type,
                                           mesg_id, "CC9S0001",
                                           reject_info="signature check failed"))
    answer = await gw.receive_link(codec.encode(header, body, None, sign=False))
    assert answer["taken"] is True, answer


def pushed(got: list[tuple[bytes, str]], event: str) -> list[dict[str, Any]]:
    events = [e for body, _ in got for e in json.loads(body)["events"]]
    return [e for e in events if e.get("event") == event]


def test_a_query_and_free_text_the_npc_refuses_end_refused(tmp_path):
    """Our query about a payment of the third bank and our free text to it are refused by
    the NPC (PR09): the query is refused with the NPC's code, never overdue (its due time
    passes) nor chased; both are told to the core system and listed for operators, and
    no `result_for_unknown_payment` is raised."""
    async def scenario() -> None:
        async with webhook_receiver() as (url, got):
            async with running(tmp_path, rate=FAST_RATE,
                               sim_args=without_third_bank(tmp_path),
                               webhook_url=url, webhook_secret="s3") as h:
                gw = h.gateway
                status, query = await http(h, "POST", "/v1/queries", {
                    "original": {"msg_id": "2026120700000077", "sending_bank": THIRD_BRANCH,
                                 "message_type": "hvps.111.001.01"},
                    "amount": "1500.00", "content": "客户称对方已汇款，我行未收到，请查复"},
                    key="q-third")
                assert status == 201, query
                status, free = await http(h, "POST", "/v1/free-format", {
                    "receiver": THIRD_BANK, "content": "贵行今日报文延迟，请核查线路。"},
                    key="f-third")
                assert status == 201, free

                async def told() -> bool:
                    return bool(pushed(got, "query_refused")
                                and pushed(got, "free_format_refused"))
                await until(told, "both refusals pushed to the webhook")
                due = datetime.fromisoformat(query["reply_due_at"])
                await until(lambda: gw.clock.now() > due, "the query's due time to pass")
                await desk_of(gw).check_deadlines()
                _, shown = await http(h, "GET", f"/v1/queries/{query['id']}")
                _, refused_list = await http(h, "GET", "/v1/queries?state=refused")
                chase = await http(h, "POST", f"/v1/queries/{query['id']}/chase", {},
                                   key="chase-refused")
                _, feed = await http(h, "GET", "/v1/query-replies?after=0")
                _, free_list = await http(h, "GET", "/v1/free-format?direction=out")
                summary = await gw.store.run(desk_of(gw).summary)
                console = await gw.store.run(lambda tx: views.overdue_queries(
                    tx, gw.clock.now()))
                codes = await alert_codes(h)

        assert shown["state"] == "refused" and shown["overdue"] is False
        assert shown["refusal"]["message_type"] == "ccms.900.001.02"
        assert shown["refusal"]["code"] == "HV0E0002"
        assert THIRD_BANK in shown["refusal"]["reason"]
        assert shown["overdue_at"] is None and shown["replies"] == []
        assert [q["id"] for q in refused_list["queries"]] == [query["id"]]
        assert chase[0] == 409 and chase[1]["errors"][0]["code"] == "query_not_open"
        assert [(r["kind"], r["query_id"], r["code"]) for r in feed["replies"]] == [
            ("refusal", query["id"], "HV0E0002")]
        assert [(m["id"], m["refusal"]["code"]) for m in free_list["messages"]] == [
            (free["id"], "HV0E0002")]
        assert summary["queries"] == {"sent": 1, "received": 0, "replied": 0, "overdue": 0}
        assert console["rows"] == []
        assert {(r["kind"], r["id"]) for r in console["refused"]["rows"]} == {
            ("query", query["id"]), ("free_format", free["id"])}
        assert {"query_refused_by_npc", "free_format_refused_by_npc"} <= set(codes)
        assert "result_for_unknown_payment" not in codes
        assert "query_counterparty_reply_overdue" not in codes
        [event] = pushed(got, "query_refused")
        assert event["kind"] == "query" and event["query"]["state"] == "refused"
        assert event["refusal"]["code"] == "HV0E0002"
        [event] = pushed(got, "free_format_refused")
        assert event["message"]["id"] == free["id"]
    asyncio.run(scenario())


def test_a_query_the_npc_discards_is_refused_and_shows_on_its_payment(tmp_path):
    """A ccms.911 naming the header MesgID of our query about a settled payment: the
    query is refused with the discard code, and the payment shows it and its history."""
    async def scenario() -> None:
        async with running(tmp_path) as h:
            gw = h.gateway
            await h.sim("POST", "/sim/queries", {"never_reply": 1.0})
            payment = await settled_payment(h, MONDAY_0900.date(), "pay-1")
            _, query = await desk_of(gw).open_query(
                "core", "q-1", {"payment_id": payment["id"], "content": "请查询是否入账"})
            await discarded_by_npc(gw, "ccms.314.001.01", query["message"]["mesg_id"], 1)

            async def refused() -> bool:
                return (await desk_of(gw).get(query["id"]))["state"] == "refused"
            await until(refused, "the query refused")
            view = await gw.get_transfer(payment["id"])
            codes = await alert_codes(h)

        [shown] = view["queries"]
        assert shown["id"] == query["id"] and shown["state"] == "refused"
        assert (shown["refusal"]["message_type"], shown["refusal"]["code"]) == (
            "ccms.911.001.02", "CC9S0001")
        assert view["state"] == "settled"
        assert {"query_sent", "query_refused"} <= {e["event"] for e in view["history"]}
        assert "query_refused_by_npc" in codes
    asyncio.run(scenario())


def query_open(h: Any, query_id: str) -> Any:
    """Whether the query is open now (a predicate for `until`)."""
    async def is_open() -> bool:
        return await query_field(h, query_id, "state") == "open"
    return is_open


async def peer_query_answered(h: Any, refused_with: int | None = None) -> str:
    """The peer's query, arrived and answered by an operator; with `refused_with`, the
    simulated NPC answers every POST with that status from just before the answer."""
    query_id = await peer_asks_for_a_return(h)
    await until(query_open(h, query_id), "the peer's query")
    if refused_with is not None:
        await h.sim("POST", "/sim/faults", {"error_status": refused_with})
    status, first = await http(h, "POST", f"/v1/queries/{query_id}/reply", {
        "content": "已联系收款人，同意退汇。", "operator": "张三"}, key="reply-first")
    assert status == 200, first
    return query_id


def test_a_reply_the_npc_discards_opens_the_query_again_for_a_new_answer(tmp_path):
    """An operator answers a peer's query; the NPC discards our ccms.315 (a ccms.911
    naming its header MesgID): the query is open again, on the work list with the NPC's
    reason, and the operator's second answer is taken and reaches the peer."""
    async def scenario() -> None:
        async with running(tmp_path) as h:
            gw = h.gateway
            query_id = await peer_query_answered(h)
            arrived = query_open(h, query_id)
            sent_as = await gw.store.run(lambda tx: tx.query_one(
                "SELECT mesg_id FROM query_replies WHERE query_id = ? AND direction = 'out'",
                (query_id,))[0])
            await discarded_by_npc(gw, "ccms.315.001.01", sent_as, 2)
            await until(arrived, "the query open again")
            _, work_list = await http(h, "GET", "/v1/queries?state=open&direction=in")
            _, shown = await http(h, "GET", f"/v1/queries/{query_id}")
            status, second = await http(h, "POST", f"/v1/queries/{query_id}/reply", {
                "content": "已联系收款人，同意退汇，款项今日退回。", "operator": "张三"},
                key="reply-second")

            async def peer_got_two() -> bool:
                return (await h.sim("GET", "/sim/queries"))["replies_received"] == 2
            await until(peer_got_two, "the peer to receive both replies")
            view = await gw.get_transfer(shown["payment_id"])
            codes = await alert_codes(h)
            _, after = await http(h, "GET", f"/v1/queries/{query_id}")
            closed = await gw.store.run(lambda tx: tx.query(
                "SELECT a.code, k.by, k.note FROM alerts a LEFT JOIN alert_acks k "
                "ON k.alert_id = a.id WHERE a.code IN ('query_needs_operator', "
                "'query_reply_refused_by_npc') ORDER BY a.id", ()))

        assert [q["id"] for q in work_list["queries"]] == [query_id]
        assert shown["handling"] == "reply_refused_by_npc" and shown["reply"] is None
        assert (shown["refusal"]["message_type"], shown["refusal"]["code"]) == (
            "ccms.911.001.02", "CC9S0001")
        assert [r["refusal"]["code"] if r["refusal"] else None
                for r in shown["replies"]] == ["CC9S0001"]
        assert status == 200 and second["state"] == "answered"
        assert second["reply"]["content"] == "已联系收款人，同意退汇，款项今日退回。"
        assert "query_reply_refused" in {e["event"] for e in view["history"]}
        assert "query_reply_refused_by_npc" in codes
        # Answered anew: the refusal is over for the query (kept on the refused reply),
        # its handling is the first one again, and both alerts that asked operators to
        # answer are closed by the gateway, the note naming who answered.
        assert after["handling"] == "question_needs_judgement" and after["refusal"] is None
        assert [r["refusal"]["code"] if r["refusal"] else None
                for r in after["replies"]] == ["CC9S0001", None]
        assert [(code, by) for code, by, _ in closed] == [
            ("query_needs_operator", "gateway"), ("query_reply_refused_by_npc", "gateway")]
        assert all("operator:张三" in note for *_, note in closed)
    asyncio.run(scenario())


def test_a_reply_refused_at_the_link_opens_the_query_again_for_a_new_answer(tmp_path):
    """The NPC answers the POST of our ccms.315 with a 400: the reply never went, so the
    query is not left `answered` behind a dead letter. It is open again, on the work
    list, the refusal (`link`, HTTP400) shown on it and on the reply, operators told;
    the letter is history, and the second answer, once the link takes messages again,
    is the one the peer receives."""
    async def scenario() -> None:
        async with running(tmp_path) as h:
            gw = h.gateway
            query_id = await peer_query_answered(h, refused_with=400)
            await until(query_open(h, query_id), "the query open again")
            await h.sim("POST", "/sim/faults", {"error_status": None})
            _, work_list = await http(h, "GET", "/v1/queries?state=open&direction=in")
            _, shown = await http(h, "GET", f"/v1/queries/{query_id}")
            letters = await queues.dead_letters(gw.redis, 50, gw.store)
            status, second = await http(h, "POST", f"/v1/queries/{query_id}/reply", {
                "content": "已联系收款人，同意退汇，款项今日退回。", "operator": "张三"},
                key="reply-second")

            async def peer_got_one() -> bool:
                return (await h.sim("GET", "/sim/queries"))["replies_received"] == 1
            await until(peer_got_one, "the peer to receive the second reply")
            await asyncio.sleep(0.5)
            received = (await h.sim("GET", "/sim/queries"))["replies_received"]
            codes = await alert_codes(h)

        assert [q["id"] for q in work_list["queries"]] == [query_id]
        assert shown["handling"] == "reply_refused_by_npc" and shown["reply"] is None
        assert (shown["refusal"]["message_type"], shown["refusal"]["code"]) == (
            "link", "HTTP400")
        assert "400" in shown["refusal"]["reason"]
        assert [r["refusal"]["code"] if r["refusal"] else None
                for r in shown["replies"]] == ["HTTP400"]
        assert [e for e in letters["entries"] if e["fields"].get("query") == query_id] == []
        assert status == 200 and second["state"] == "answered"
        assert received == 1
        assert "query_reply_refused_by_npc" in codes
    asyncio.run(scenario())
