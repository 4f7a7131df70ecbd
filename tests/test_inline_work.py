"""Work carried on in the process instead of through a stream: inbound messages processed
in the work that receives them, ccms.990 and webhook sends started after commit, and
small outbox updates of concurrent sends merged into one piece of store work."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from gateway import direct, keys
from gateway.batcher import Batcher
from gateway.clock import ManualClock
from gateway.webhook import Hook
from tests.e2e_support import YUAN, open_account, started, transfer, until, wait_state

RESULT_TYPE = "ccms.900.001.02"


class _CountingStore:
    """A store that runs each piece of work at once and counts them."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, work):
        self.runs += 1
        return work(None)


def test_batcher_runs_the_calls_of_one_loop_turn_as_one_piece_of_work():
    """Concurrent calls share one piece of work; each caller gets its own result."""
    store = _CountingStore()
    doubled = Batcher(store, lambda tx, keys: [k * 2 for k in keys])

    async def scenario():
        return await asyncio.gather(*(doubled(k) for k in (1, 2, 3)))

    results = asyncio.run(scenario())

    assert results == [2, 4, 6]
    assert store.runs == 1


def test_batcher_gives_the_error_of_the_work_to_every_caller():
    """When the merged work fails, no caller is told its call was done."""
    def refuse(tx, keys):
        raise RuntimeError("disk full")
    failing = Batcher(_CountingStore(), refuse)

    async def scenario():
        return await asyncio.gather(*(failing(k) for k in (1, 2)), return_exceptions=True)

    results = asyncio.run(scenario())

    assert [type(r) for r in results] == [RuntimeError, RuntimeError]


@pytest.mark.e2e
def test_inbound_messages_are_processed_in_the_work_that_receives_them(tmp_path):
    """The 990 and the 900 of a payment are processed on receipt and the 990 we owe is
    sent at once: the inbound and link streams carry nothing."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            _, answer = await gw.submit_transfer("core", "inline-1", transfer(payer, "500.00"))
            await wait_state(h, answer["id"], "settled")
            await until(lambda: gw.direct.sent >= 1, "the 990 for the result sent")

            async def acks_sent() -> bool:  # the 990s of other notices may still be going
                return await gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM outbox WHERE mesg_type = 'ccms.990.001.02' AND "
                    "state != 'sent'", ())[0]) == 0
            await until(acks_sent, "every 990 sent")
            inbox = await gw.store.run(lambda tx: tx.query(
                "SELECT mesg_type, state FROM inbox WHERE mesg_type IN (?, ?)",
                (RESULT_TYPE, "ccms.990.001.02")))
            acks = await gw.store.run(lambda tx: tx.query(
                "SELECT state FROM outbox WHERE mesg_type = 'ccms.990.001.02'", ()))
            workers = {w.name: w.processed for w in gw.workers}
            return inbox, acks, workers, gw.direct.handed_to_streams

    inbox, acks, workers, handed_to_streams = asyncio.run(scenario())

    assert {t for t, _ in inbox} == {RESULT_TYPE, "ccms.990.001.02"}
    assert all(state == "processed" for _, state in inbox)
    assert acks and all(state == "sent" for (state,) in acks)
    assert workers["inbound"] == 0
    assert handed_to_streams == 0


@pytest.mark.e2e
def test_a_processing_that_fails_on_receipt_is_left_to_the_inbound_stream(tmp_path):
    """A handler that fails undoes only the processing: the receipt commits and the
    inbound stream's worker processes the message on its retry."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            table = gw.handler_table()
            on_result = table[RESULT_TYPE]
            # The handler fails whenever the result is processed as it is received (on
            # its own, or with the other envelopes of its POST and then again alone),
            # and works when the inbound stream's worker processes it.
            failures = {"on_receipt": 0}
            receiving = {"now": False}
            receive_tx = gw._receive_tx

            def received(*args, **kwargs):
                receiving["now"] = True
                try:
                    return receive_tx(*args, **kwargs)
                finally:
                    receiving["now"] = False
            gw._receive_tx = received

            def flaky(tx, decoded, now):
                if receiving["now"]:
                    failures["on_receipt"] += 1
                    raise RuntimeError("handler failed on receipt")
                return on_result(tx, decoded, now)
            table[RESULT_TYPE] = flaky
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            _, answer = await gw.submit_transfer("core", "inline-2", transfer(payer, "500.00"))
            await wait_state(h, answer["id"], "settled")
            # The worker counts an entry once it is acknowledged, just after the commit
            # that settled the payment.
            inbound = next(w for w in gw.workers if w.name == "inbound")
            await until(lambda: inbound.processed >= 1, "the inbound worker's count")
            return failures["on_receipt"], {w.name: w.processed for w in gw.workers}

    failed_on_receipt, workers = asyncio.run(scenario())

    assert failed_on_receipt >= 1
    assert workers["inbound"] == 1


@pytest.mark.e2e
def test_a_payment_with_nothing_waiting_is_sent_from_the_work_that_accepts_it(tmp_path):
    """With its lane sender idle, an HVPS payment is built, signed and claimed in the
    transaction that accepts it and posted after commit: its lane carries nothing, its
    bytes are kept once (in the archive) and it is sent once."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            status, answer = await gw.submit_transfer("core", "inline-3",
                                                      transfer(payer, "500.00"))
            await wait_state(h, answer["id"], "settled")
            lanes = [await gw.redis.xlen(lane) for lane in keys.HVPS_LANES]
            rows = await gw.store.run(lambda tx: tx.query(
                "SELECT o.state, o.attempts, o.envelope IS NULL, length(a.envelope) > 0 FROM outbox o "
                "JOIN archive a ON a.mesg_id = o.mesg_id AND a.direction = 'out' "
                "WHERE o.payment_id = ? AND o.kind = 'hvps_credit'", (answer["id"],)))
            view = await gw.get_transfer(answer["id"])
            stats = await h.sim("GET", "/sim/stats")
            return status, answer, lanes, rows, view, stats

    status, answer, lanes, rows, view, stats = asyncio.run(scenario())

    assert status == 201 and answer["state"] == "accepted"
    assert lanes == [0, 0, 0]
    # sent once; its bytes kept once, in the archive, not copied into the outbox row
    assert rows == [("done", 1, 1, 1)]
    assert [e["state"] for e in view["history"]][:3] == ["accepted", "sent", "settled"]
    assert stats["settled_twice"] == []


def _hook(outbox_id: int, count: int = 1) -> Hook:
    return Hook(outbox_id, b"[" + b",".join([b"{}"] * count) + b"]", count)


def test_claimed_webhooks_wait_their_turn_within_bounds(monkeypatch):
    """Claimed webhook rows with no slot free wait in turn; past WAITING_MAX, or after
    waiting WAITING_S, a row gives its claim back and goes by the webhook stream, and is
    never pushed from here too."""
    clock = ManualClock(datetime(2026, 12, 7, 9, tzinfo=timezone.utc))
    delivered: list[int] = []
    given_back: list[int] = []
    streamed: list[tuple[str, dict[str, str]]] = []

    async def deliver(hooks):
        delivered.extend(hook.outbox_id for hook in hooks)

    class Tx:
        def execute(self, sql, params):
            given_back.append(params[1])
            return 1

    async def run(work):
        return work(Tx())

    async def xadd_many(entries):
        streamed.extend(entries)
    gw = SimpleNamespace(clock=clock, webhooks=SimpleNamespace(deliver=deliver),
                         store=SimpleNamespace(run=run),
                         streams=SimpleNamespace(xadd_many=xadd_many),
                         settings=SimpleNamespace(webhook_events_max=500))
    monkeypatch.setattr(direct, "WAITING_MAX", 2)

    async def scenario():
        sends = direct.Direct(gw, limit=1)
        assert sends.reserve()  # the one slot is taken
        sends.push_claimed_webhooks([_hook(1), _hook(2), _hook(3)])
        await asyncio.sleep(0.01)
        at_once = sends.webhooks_to_stream
        clock.advance(direct.WAITING_S + 1)
        sends.release()  # the slot comes free: the rows that waited too long go by stream
        sends.push_claimed_webhooks([_hook(4)])
        await sends.drain()
        return at_once, sends.webhooks_to_stream

    at_once, to_stream = asyncio.run(scenario())

    assert at_once == 1
    assert to_stream == 3
    assert sorted(given_back) == [1, 2, 3]
    assert sorted(int(f["outbox"]) for _, f in streamed) == [1, 2, 3]
    assert delivered == [4]
