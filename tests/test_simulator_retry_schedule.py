"""The simulated NPC keeps a retry schedule for each message: a message a bank did not
take waits for its own next try while the bank's later messages go on, except those
that must reach the bank in the order they were made (a chain: the system status
notices, ccms.801, and the results about one message), which wait behind the earlier
one of their chain."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from simulators.settings import OUR_BANK, Delivery
from simulators.store import PENDING, Store
from simulators.testing import PEER, WORK_DATE, World, call, field, post_envelope, simulated
from tests.e2e_support import until

TO_US = {"sender": PEER, "receiver": OUR_BANK, "payee_account": "6222000000000001",
         "payee_name": "测试丁", "amount_fen": 100}
# A message not taken waits 30 s before its next try: far longer than any test here.
SLOW_RETRIES = Delivery(attempts_max=0, backoff_s=30.0, backoff_max_s=30.0, retry_for_s=600)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def peer_credit(w: World) -> str:
    """A peer's credit to us, made without waiting for its delivery."""
    status, answer = await call(w.sim.url, "POST", "/sim/peer/send", {**TO_US, "count": 1})
    assert status == 200, answer
    return answer["created"][0]["mesg_id"]


def credits_to_us(w: World) -> list[str]:
    return [e.header.mesg_id for e in w.bank.envelopes("hvps.111.001.01")]


def statuses_to_us(w: World) -> list[str | None]:
    return [field(b, "SysStsNtfctn/SysStsInf/CurSysSts") for b in w.bank.bodies(
        "ccms.801.001.02")]


def test_a_message_waiting_for_its_next_try_does_not_hold_the_banks_later_ones(
        tmp_path: Path) -> None:
    """The bank answers one POST 503: that message waits 30 s for its next try, and a
    credit made after it is delivered meanwhile; a redelivery sends the first at once."""
    async def scenario() -> dict[str, Any]:
        async with simulated(tmp_path, delivery=SLOW_RETRIES) as w:
            await w.sim.drain()
            w.bank.answers = [503]
            posts = len(w.bank.posts)
            first = await peer_credit(w)
            await until(lambda: len(w.bank.posts) > posts, "the first POST")
            second = await peer_credit(w)
            await until(lambda: second in credits_to_us(w), "the second credit", timeout_s=5.0)
            seen: dict[str, Any] = {"while_waiting": credits_to_us(w),
                                    "outbox": w.sim.stats()["outbox"]}
            await w.control("POST", "/sim/redeliver", {})
            seen.update(first=first, second=second, after=credits_to_us(w))
            return seen

    seen = run(scenario())

    assert seen["while_waiting"] == [seen["second"]]
    assert seen["outbox"].get(PENDING) == 1
    assert seen["after"] == [seen["second"], seen["first"]]


def test_a_status_notice_waits_behind_an_earlier_one_of_its_chain(tmp_path: Path) -> None:
    """The ccms.801 announcing cut-off (20) is not taken: the one announcing the clearing
    window (30) waits behind it, while the answers to a reconciliation request asked
    after both are delivered; on redelivery both notices arrive in the order made."""
    async def scenario() -> dict[str, Any]:
        async with simulated(tmp_path, delivery=SLOW_RETRIES) as w:
            await w.sim.drain()
            before = statuses_to_us(w)
            w.bank.answers = [503]
            posts = len(w.bank.posts)
            await call(w.sim.url, "POST", "/sim/phase", {"status": "20"})
            await until(lambda: len(w.bank.posts) > posts, "the first notice's POST")
            await call(w.sim.url, "POST", "/sim/phase", {"status": "30"})
            assert await post_envelope(w.sim.url, w.sender.recon_request(WORK_DATE)) == 200
            await until(lambda: w.bank.envelopes("hvps.711.001.01"), "the 711", timeout_s=5.0)
            seen: dict[str, Any] = {"while_waiting": statuses_to_us(w)[len(before):]}
            await w.control("POST", "/sim/redeliver", {})
            seen["after"] = statuses_to_us(w)[len(before):]
            return seen

    seen = run(scenario())

    assert seen["while_waiting"] == []
    assert seen["after"] == ["20", "30"]


def test_a_chained_message_is_due_only_once_the_earlier_one_of_its_chain_has_ended(
        tmp_path: Path) -> None:
    """Of two pending messages of one chain to a bank only the earlier is due; one of
    another chain, or of none, and one of the same chain to another bank, are due too;
    once the earlier has ended (sent, refused, given up) the later is due."""
    store = Store(tmp_path / "npc.sqlite3")
    at = "2026-12-07T09:00:00+08:00"
    with store.transaction():
        a = store.enqueue(OUR_BANK, "ccms.801.001.02", "A", b"a", at, chain="status")
        b = store.enqueue(OUR_BANK, "ccms.801.001.02", "B", b"b", at, chain="status")
        c = store.enqueue(OUR_BANK, "ccms.900.001.02", "C", b"c", at, chain="x")
        d = store.enqueue(OUR_BANK, "hvps.111.001.01", "D", b"d", at)
        e = store.enqueue(PEER, "ccms.801.001.02", "E", b"e", at, chain="status")

    due = [row.seq for row in store.due(OUR_BANK, 10, now_s=0.0)]
    other_bank = [row.seq for row in store.due(PEER, 10, now_s=0.0)]
    with store.transaction():
        store.mark(a, "sent", 1, at)
    after = [row.seq for row in store.due(OUR_BANK, 10, now_s=0.0)]
    store.close()

    assert due == [a, c, d]
    assert other_bank == [e]
    assert after == [b, c, d]


def test_a_database_made_before_the_retry_schedule_gets_its_columns(tmp_path: Path) -> None:
    """An outbox written before messages had chains and schedules is read as messages
    of no chain, due now."""
    path = tmp_path / "npc.sqlite3"
    old = sqlite3.connect(str(path))
    old.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, dest TEXT NOT NULL, mesg_type TEXT "
        "NOT NULL, mesg_id TEXT NOT NULL, raw BLOB NOT NULL, state TEXT NOT NULL, attempts "
        "INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
        "INSERT INTO outbox VALUES (1, '999100000019', 'ccms.801.001.02', 'A', x'61', "
        "'pending', 2, 't', 't');")
    old.commit()
    old.close()

    store = Store(path)
    rows = store.due(OUR_BANK, 10, now_s=0.0)
    store.close()

    assert [(r.seq, r.attempts, r.tries, r.retry_since) for r in rows] == [(1, 2, 0, None)]
