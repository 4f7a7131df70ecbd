"""Redis failing under a running gateway: the embedded server is started again on its
own file, committed payments are answered as accepted and swept onto their streams,
requests that need Redis get 503 redis_unavailable with Retry-After (a repeated key is
answered from the database), /health shows Redis, and stream workers outlive it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import recovery, redisstate
from gateway.worker import StreamWorker
from tests.e2e_support import open_account, started, transfer, until, wait_state

pytestmark = pytest.mark.e2e


async def _get(url: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, s.get(url, **kwargs) as r:
        return r.status, dict(r.headers), await r.json()


async def _post(url: str, body: Any, key: str) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, \
            s.post(url, json=body, headers={"Idempotency-Key": key}) as r:
        return r.status, dict(r.headers), await r.json()


async def _sent_count(gw: Any, payment_id: str) -> int:
    """How many times the payment's message went to the NPC (its `hvps_sent` history
    rows)."""
    return await gw.store.run(lambda tx: tx.query_one(
        "SELECT COUNT(*) FROM payment_events WHERE payment_id = ? AND event = 'hvps_sent'",
        (payment_id,))[0])


def test_a_killed_embedded_redis_is_started_again_and_work_goes_on(tmp_path):
    """kill -9 the embedded redis-server: within seconds it runs again on the same port
    (one `redis_died` alert, a warning line), payments taken before and after settle,
    and /health shows Redis up with one restart."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000_000 * 100)
            _, first = await gw.submit_transfer("core", "before", transfer(payer, "100.00"))
            old_pid, port = gw.embedded_redis.process.pid, gw.embedded_redis.port

            gw.embedded_redis.process.kill()
            await until(lambda: gw.redis_watch.restarts == 1, "redis restarted", 15)
            _, second = await gw.submit_transfer("core", "after", transfer(payer, "200.00"))
            for answer in (first, second):
                await wait_state(h, answer["id"], "settled", timeout_s=30)
            alerts = await gw.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM alerts WHERE code = 'redis_died'", ())[0])
            _, _, health = await _get(gw.url + "/health")
            return (old_pid, port, gw.embedded_redis.process.pid, gw.embedded_redis.port,
                    alerts, health)

    old_pid, port, new_pid, new_port, alerts, health = asyncio.run(scenario())

    assert new_pid != old_pid and new_port == port
    assert alerts == 1
    assert health["redis"]["state"] == "up" and health["redis"]["restarts"] == 1
    assert health["ok"] is True


def test_while_redis_is_down_new_payments_get_503_and_a_repeat_its_stored_answer(
        tmp_path, monkeypatch):
    """With Redis dead (and not yet started again): a new transfer, a new batch and the
    operators' status get 503 redis_unavailable with Retry-After; a transfer repeated
    under its key gets its first 201 from the database; /health says Redis is down.
    Started again, the new transfer is taken."""
    monkeypatch.setattr(redisstate, "SUPERVISE_EVERY_S", 3600.0)  # restarted by hand below

    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000_000 * 100)
            url = gw.url
            first = await _post(f"{url}/v1/transfers", transfer(payer, "100.00"), "k1")
            gw.embedded_redis.process.kill()
            await until(lambda: gw.embedded_redis.died() is not None, "redis dead", 5)
            await asyncio.sleep(0.3)  # past the depth check's last reading (0.1 s)

            repeat = await _post(f"{url}/v1/transfers", transfer(payer, "100.00"), "k1")
            new = await _post(f"{url}/v1/transfers", transfer(payer, "300.00"), "k2")
            batch = await _post(f"{url}/v1/transfers/batch",
                                [transfer(payer, "1.00", business_type="A100",
                                          business_kind="02102", urgency="normal")], "b1")
            ops = await _get(f"{url}/ops/api/status",
                             auth=aiohttp.BasicAuth("op1", "op1-demo"))
            _, _, health = await _get(f"{url}/health")

            await gw.redis_watch._revive(gw.embedded_redis, gw.embedded_redis.died())
            await until(lambda: gw.redis_watch.restarts == 1, "redis restarted", 15)
            await asyncio.sleep(0.5)
            again = await _post(f"{url}/v1/transfers", transfer(payer, "300.00"), "k2")
            await wait_state(h, first[2]["id"], "settled", timeout_s=30)
            return first, repeat, new, batch, ops, health, again

    first, repeat, new, batch, ops, health, again = asyncio.run(scenario())

    assert first[0] == 201
    assert repeat[0] == 201 and repeat[2] == first[2]
    for status, headers, body in (new, batch, ops):
        assert status == 503, body
        assert body["errors"][0]["code"] == "redis_unavailable"
        assert int(headers["Retry-After"]) >= 1
    assert health["ok"] is False and health["redis"]["state"] == "down"
    assert again[0] == 201


def test_a_payment_saved_when_the_hand_over_fails_is_accepted_and_sent_once(
        tmp_path, monkeypatch, caplog):
    """Redis refuses the XADD after the payment committed: the answer is still 201 with
    the stored view, the sweeper puts the payment on its lane, it settles, and its
    message went out exactly once."""
    monkeypatch.setattr(recovery, "SWEEP_AGE_S", 1.0)

    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000_000 * 100)
            real = gw.streams.xadd_many
            failing = {"left": 1}

            async def refuse_once(entries):
                if entries and failing["left"]:
                    failing["left"] -= 1
                    raise RedisConnectionError("Connection refused (test)")
                return await real(entries)
            gw.streams.xadd_many = refuse_once
            # By its lane: a payment sent from the work that accepts it needs no hand-over.
            gw._may_send_now = lambda: False
            with caplog.at_level(logging.WARNING, logger="paygate.gateway"):
                status, answer = await gw.submit_transfer("core", "k1",
                                                          transfer(payer, "100.00"))
            again = await gw.submit_transfer("core", "k1", transfer(payer, "100.00"))
            await wait_state(h, answer["id"], "settled", timeout_s=30)
            await asyncio.sleep(3)  # sweeps more: a second send would show now
            return status, answer, again, await _sent_count(gw, answer["id"])

    status, answer, again, sent = asyncio.run(scenario())

    assert status == 201 and answer["state"] == "accepted"
    assert again == (201, answer)
    assert sent == 1
    assert any("event=hand_over_postponed" in r.getMessage() for r in caplog.records)


class _DeadAcks:
    async def xack(self, *args: Any) -> int:
        raise RedisConnectionError("Connection refused (test)")


def test_a_worker_outlives_redis_failing_under_its_acknowledgement(caplog):
    """The handler did its work, then the XACK fails: the entry's task ends quietly
    (the entry stays pending for its reclaim), with one warning line per cause."""
    async def handler(stream: str, entry_id: str, fields: dict[str, str]) -> None:
        return None

    async def scenario():
        worker = StreamWorker(None, "test", ("s",), handler, acks=_DeadAcks())
        with caplog.at_level(logging.WARNING, logger="paygate.worker"):
            for n in range(5):
                await worker._handle("s", f"1-{n}", {"outbox": "1"})
        return worker

    worker = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("event=redis_unavailable")]

    assert worker.processed == 0
    assert len(lines) == 1 and "stage=test" in lines[0]
