"""The queries of `paygate demo` and `paygate simulate-day`: a few both ways, and free text.

The core system queries two of the day's settled payments and the peer answers; the peer
asks about two payments it sent us, which the gateway answers from its records, and
about one that went to suspense asking for a return, which an operator answers; one free
text message goes each way. Everything runs in order, so the wire digest of two runs
with the same seed stays the same.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, time as time_of_day
from typing import Any, Awaitable, Callable

from gateway.clock import SHANGHAI
from gateway.queries import desk_of

WAIT_S = 60.0
OPERATOR = "值班员"
PEER = "888200000015"
OUR_QUESTION = "收款人称款项未入账，请查复"
PEER_QUESTION = "我行客户查询该笔款项是否已入账，请查复"
RETURN_QUESTION = "我行客户称收款人账号填写有误，请协助退汇"
OPERATOR_ANSWER = "已核实收款人账号有误，款项暂挂我行，同意退汇，将于今日退回贵行。"


async def exchange(harness: Any, say: Callable[[str], None]) -> None:
    gw = harness.gateway
    desk = desk_of(gw)
    settled = await gw.store.run(lambda tx: tx.query(
        "SELECT id FROM payments WHERE direction = 'out' AND state = 'settled' "
        "ORDER BY id LIMIT 2", ()))
    for i, (payment_id,) in enumerate(settled):
        await desk.open_query("demo", f"demo-query-{i}", {
            "payment_id": payment_id, "content": OUR_QUESTION})
    asked = await _peer_queries(harness)
    await desk.send_free_format("demo", "demo-free-0", {
        "receiver": PEER, "content": "我行今日系统运行正常，请知悉。"})
    await harness.sim("POST", "/sim/peer/free-format", {
        "sender": PEER, "content": "我行今晚二十二时系统维护，请知悉。"})

    async def all_in() -> bool:
        return len(await desk.search(direction="in")) == asked
    await _until(all_in, "the peer's queries to arrive")
    for query in await desk.search(state="open", direction="in"):
        await desk.reply(query["id"], {"operator": OPERATOR, "content": OPERATOR_ANSWER})

    async def all_answered() -> bool:
        return not await desk.search(state="open")
    await _until(all_answered, "every query to be answered")
    say(f"queries: {len(settled)} sent and answered by the peer, {asked} received and "
        "answered (one by an operator); free text both ways")


async def _peer_queries(harness: Any) -> int:
    asks = await _peer_asks(harness.gateway)
    for body in asks:
        await harness.sim("POST", "/sim/peer/query", body)
    return len(asks)


async def _peer_asks(gw: Any) -> list[dict[str, Any]]:
    """The peer's queries: two credited payments it sent us, one parked in suspense."""
    incoming = await gw.store.run(lambda tx: tx.query(
        "SELECT msg_id, sender_direct, amount_fen, state FROM payments "
        "WHERE direction = 'in' AND state IN ('credited', 'suspense') ORDER BY id", ()))
    credited = [row for row in incoming if row[3] == "credited"][:2]
    suspense = [row for row in incoming if row[3] == "suspense"][:1]
    asks = [(row, PEER_QUESTION) for row in credited]
    asks += [(row, RETURN_QUESTION) for row in suspense]
    return [{"sender": sender, "orig_msg_id": msg_id, "amount_fen": amount_fen,
             "content": content} for (msg_id, sender, amount_fen, _), content in asks]


def day_events(run: Any) -> list[tuple[datetime, str, Callable[[], Awaitable[Any]]]]:
    """Events for `paygate simulate-day` (gateway/simday.py): queries in the afternoon,
    when the morning's payments have settled, and the operator's answer before 16:00."""
    desk = desk_of(run.gw)

    def at(hour: int, minute: int = 0) -> datetime:
        return datetime.combine(run.day, time_of_day(hour, minute), SHANGHAI)

    async def ours() -> None:
        settled = await run.gw.store.run(lambda tx: tx.query(
            "SELECT id FROM payments WHERE direction = 'out' AND state = 'settled' "
            "ORDER BY id LIMIT 2", ()))
        for i, (payment_id,) in enumerate(settled):
            await desk.open_query("simday", f"day-query-{i}", {
                "payment_id": payment_id, "content": OUR_QUESTION})

    async def theirs() -> None:
        for body in await _peer_asks(run.gw):
            run.sim.queries.peer_query(body)

    async def free_text() -> None:
        await desk.send_free_format("simday", "day-free-0", {
            "receiver": PEER, "content": "我行今日系统运行正常，请知悉。"})
        run.sim.queries.peer_free_format({"sender": PEER,
                                          "content": "我行今晚二十二时系统维护，请知悉。"})

    async def operator() -> None:
        for query in await desk.search(state="open", direction="in"):
            await desk.reply(query["id"], {"operator": OPERATOR, "content": OPERATOR_ANSWER})
    return [(at(14), "queries out", ours), (at(14, 10), "queries in", theirs),
            (at(14, 20), "free text", free_text), (at(15, 30), "operator answers", operator)]


async def _until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"waited {WAIT_S} s for {what}")
