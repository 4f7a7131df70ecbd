"""Simulated peers and query and reply: answers now, later or never; peers' own queries and
free text; driven over the simulator's real HTTP link by a fake bank on 127.0.0.1."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.messages import ccms314, codec
from gateway.messages.common import GroupHeader, OriginalRef, iso_datetime
from gateway.messages.envelope import decode as decode_envelope
from simulators.settings import OUR_BANK
from simulators.testing import OUR_BRANCH, PEER, PEER_BRANCH, World, call, field, simulated

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "cnaps" / "reference-xsd"
HOUR_S = 3600


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@cache
def reference(mesg_type: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(REFERENCE / f"{mesg_type}.xsd")))


def valid(raw: bytes) -> bool:
    if not REFERENCE.exists():
        pytest.skip("../shared/cnaps/reference-xsd is not beside the checkout")
    envelope = decode_envelope(raw)
    return reference(envelope.header.mesg_type).validate(etree.fromstring(envelope.body))


def our_query(w: World, msg_id: str, about: str, amount_fen: int) -> bytes:
    """A signed ccms.314 from our bank to the peer about the payment `about`."""
    now = w.clock.now()
    query = ccms314.Query(
        header=GroupHeader(msg_id, iso_datetime(now), OUR_BANK, OUR_BRANCH, PEER,
                           PEER_BRANCH, "HVPS"),
        subject=OriginalRef(about, OUR_BANK, "hvps.111.001.01"), amount_fen=amount_fen,
        content="请查询该笔款项是否已入账", query_type="QT00")
    header = w.sender.header(ccms314.MESSAGE_TYPE, receiver=PEER)
    return codec.encode(header, ccms314.build(query), w.sender.ring)


def replies(w: World) -> list[etree._Element]:
    return w.bank.bodies(ccms314.RESPONSE_TYPE)


def test_peer_answers_at_once_from_the_npc_records(tmp_path: Path) -> None:
    """With no delay the peer answers our query at once, saying the payment settled."""
    async def scenario() -> World:
        async with simulated(tmp_path) as w:
            await w.send(w.sender.credit(150_000_00, tx_id="2026120700000101"))
            await w.send(our_query(w, "2026120700000201", "2026120700000101", 150_000_00))
            await w.send(our_query(w, "2026120700000202", "2026120799999999", 1_00))
            return w

    w = run(scenario())
    first, second = replies(w)

    assert field(first, "BizRspn/OrgnlGrpHdr/OrgnlMsgId") == "2026120700000201"
    assert field(first, "BizRspn/BizRspnInf/OrgnlInf/OrgnlGrpHdr/OrgnlMsgId") == \
        "2026120700000101"
    assert "2026-12-07" in field(first, "BizRspn/BizRspnInf/Cntt")
    assert "未发现" in field(second, "BizRspn/BizRspnInf/Cntt")
    assert all(valid(raw) for raw in w.bank.received
               if decode_envelope(raw).header.mesg_type == ccms314.RESPONSE_TYPE)


def test_delayed_answer_waits_for_simulated_time_and_survives_a_restart(
        tmp_path: Path) -> None:
    """A delayed answer is sent only once its simulated time has come, even across a
    restart of the simulator."""
    async def scenario() -> tuple[World, list[int]]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/queries", {"reply_delay_s": 30 * HOUR_S})
            await w.send(our_query(w, "2026120700000201", "2026120700000101", 1_00))
            await w.restart()
            counts = [len(replies(w))]
            w.clock.advance(30 * HOUR_S - 1)
            counts.append(w.sim.queries.send_due())
            w.clock.advance(1)
            counts.append(w.sim.queries.send_due())
            await w.sim.drain()
            counts.append(len(replies(w)))
            return w, counts

    w, counts = run(scenario())

    assert counts == [0, 0, 1, 1]


def test_peer_that_never_answers_leaves_the_query_unanswered(tmp_path: Path) -> None:
    """With never_reply 1 the query is recorded as ignored and no answer ever comes."""
    async def scenario() -> tuple[World, dict[str, Any]]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/queries", {"never_reply": 1.0})
            await w.send(our_query(w, "2026120700000201", "2026120700000101", 1_00))
            w.clock.advance(72 * HOUR_S)
            w.sim.queries.send_due()
            await w.sim.drain()
            return w, await w.control("GET", "/sim/queries")

    w, stats = run(scenario())

    assert replies(w) == []
    assert stats["ignored"] == 1 and stats["replied"] == 0


def test_peer_query_and_free_text_reach_us_and_validate(tmp_path: Path) -> None:
    """A peer's ccms.314 about a payment it sent us, and its ccms.303, arrive as sent."""
    async def scenario() -> World:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/peer/query", {
                "sender": PEER, "orig_msg_id": "2026120700000009", "orig_tx_id": "9",
                "amount_fen": 5_00, "content": "请查询该笔款项是否已入账"})
            await w.control("POST", "/sim/peer/free-format", {
                "sender": PEER, "content": "我行系统将于今晚升级。"})
            return w

    w = run(scenario())
    query = w.bank.bodies(ccms314.MESSAGE_TYPE)[0]
    text = w.bank.bodies("ccms.303.001.02")[0]

    assert field(query, "BizQry/BizQryInf/OrgnlInf/OrgnlGrpHdr/OrgnlInstgPty") == PEER
    assert field(query, "BizQry/BizQryInf/OrgnlInf/OrgnlTx/OrgnlTxId") == "9"
    assert field(query, "BizQry/GrpHdr/InstdPty/InstdPty") == OUR_BRANCH
    assert field(text, "FreeFrmt/FreeFrmtInf/MsgCntt") == "我行系统将于今晚升级。"
    assert all(valid(raw) for raw in w.bank.received
               if decode_envelope(raw).header.mesg_type.startswith(("ccms.314", "ccms.303")))


@pytest.mark.parametrize("path, body, code", [
    ("/sim/peer/query", {"sender": "123456789012", "orig_msg_id": "1", "amount_fen": 1,
                         "content": "x"}, "sender_must_be_a_simulated_peer"),
    ("/sim/peer/query", {"sender": PEER, "orig_msg_id": "1", "amount_fen": 0,
                         "content": "x"}, "field_malformed"),
    ("/sim/peer/query", {"sender": PEER, "amount_fen": 1, "content": "x"},
     "field_required"),
    ("/sim/peer/free-format", {"sender": PEER, "content": "x" * 501}, "field_malformed"),
    ("/sim/queries", {"never_reply": 2}, "field_malformed"),
    ("/sim/queries", {"reply_delay_s": -1}, "field_malformed"),
    ("/sim/queries", {"answer": "yes"}, "field_unknown"),
])
def test_control_calls_refuse_bad_bodies(tmp_path: Path, path: str, body: Any,
                                         code: str) -> None:
    """Control calls about queries answer 422 naming the broken rule."""
    async def scenario() -> tuple[int, Any]:
        async with simulated(tmp_path) as w:
            return await call(w.sim.url, "POST", path, body)

    status, answer = run(scenario())

    assert status == 422 and answer["errors"][0]["code"] == code
