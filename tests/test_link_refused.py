"""A message the NPC refuses (4xx) is not sent again for ever while its payment says
"sent": its outbox row is dead-lettered once and left by the sweeper, the payment is
`held` with the reason (refused at the link, with the status) and listed by `ops stuck`;
an operator's retry of the letter sends it and the payment goes on, a cancel releases
the hold; a letter whose row completed is no longer outstanding."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway import keys, recovery
from gateway.errors import PaygateError
from gateway.ops import control, queues, views
from gateway.ops.web import OPS_KEY
from tests.e2e_support import YUAN, open_account, started, transfer, until, wait_state

pytestmark = pytest.mark.e2e


async def refused_payment(h: Any, payer: str, key: str) -> str:
    _, answer = await h.gateway.submit_transfer("core", key, transfer(payer, "100.00"))
    await wait_state(h, answer["id"], "held", timeout_s=30)
    return answer["id"]


async def held_after_refusal(h: Any, sequence: int, key: str) -> tuple[str, str]:
    """(payer, payment): a payer's account with money, and its payment held after the NPC
    answered its message 400 (the fault left on), its dead letter written."""
    payer = await open_account(h, sequence, 1_000 * YUAN)
    await h.sim("POST", "/sim/faults", {"error_status": 400})
    pid = await refused_payment(h, payer, key)
    await until(lambda: letters_of(h.gateway, pid), "the dead letter")
    return payer, pid


async def letters_of(gw: Any, payment_id: str) -> list[tuple[str, dict[str, str]]]:
    return [(eid, f) for eid, f in await gw.redis.xrange(keys.DEAD)
            if f.get("payment") == payment_id]


async def outbox_of(gw: Any, payment_id: str) -> tuple[int, str]:
    return tuple(await gw.store.run(lambda tx: tx.query_one(
        "SELECT id, state FROM outbox WHERE payment_id = ? AND kind = 'hvps_credit'",
        (payment_id,))))


def test_a_refused_message_is_held_once_and_sent_again_by_an_operators_retry(
        tmp_path, monkeypatch, caplog):
    """NPC answers 400: one dead letter, however many sweeps; the payment held with the
    status, in `ops stuck`; the fault cleared and the letter retried, it settles, and a
    stale letter of that row is not listed as outstanding."""
    monkeypatch.setattr(recovery, "SWEEP_AGE_S", 0.0)

    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            ops = gw.runner.app[OPS_KEY]
            _, pid = await held_after_refusal(h, 1, "refused-1")
            for _ in range(3):
                await recovery.sweep(gw)
                await asyncio.sleep(0.3)
            seen: dict[str, Any] = {
                "view": await gw.get_transfer(pid), "letters": await letters_of(gw, pid),
                "outbox": await outbox_of(gw, pid),
                "stuck": await gw.store.run(lambda tx: [
                    p["id"] for p in views.stuck(tx, gw.clock.now(), 60)])}
            await h.sim("POST", "/sim/faults", {"error_status": None})
            letter = seen["letters"][0][0]
            seen["retry"] = await ops.console.request(ops.directory.get("op1"), "retry",
                                                      letter)
            await wait_state(h, pid, "settled", timeout_s=30)
            outbox_id = seen["outbox"][0]
            await gw.redis.xadd(keys.DEAD, {"outbox": str(outbox_id), "stream": "x",
                                            "entry": "1-1", "reason": "stale",
                                            "deliveries": "6", "payment": pid})
            seen["listed"] = await queues.dead_letters(gw.redis, 50, gw.store)
            return seen

    with caplog.at_level(logging.INFO):
        seen = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    pid = seen["view"]["id"]

    assert seen["view"]["state"] == "held"
    assert seen["view"]["reason"] == "refused_at_link: the NPC answered 400"
    assert len(seen["letters"]) == 1 and seen["outbox"][1] == "dead"
    assert pid in seen["stuck"]
    assert seen["retry"]["state"] == "executed"
    assert [e for e in seen["listed"]["entries"] if e.get("payment") == pid] == []
    assert seen["listed"]["completed"] == 1
    assert any(line.startswith("event=dead_lettered") and f"payment={pid}" in line
               for line in lines)
    assert any(line.startswith("event=dead_letter_retried") and f"payment={pid}" in line
               for line in lines)


def test_a_cancel_of_a_refused_payment_releases_its_hold(tmp_path):
    """The payment held after a 400 is cancelled (an operator asks, a supervisor
    approves): the money held for it is available again and the letter is history."""
    async def scenario() -> tuple[int, int, int, str, dict[str, Any]]:
        async with started(tmp_path) as h:
            gw = h.gateway

            async def available() -> int:
                return (await gw.store.run(lambda tx: gw.ledger.customer_balance(
                    tx, payer, gw.work_date))).available_fen
            ops = gw.runner.app[OPS_KEY]
            payer = await open_account(h, 2, 1_000 * YUAN)
            opening = await available()
            await h.sim("POST", "/sim/faults", {"error_status": 400})
            pid = await refused_payment(h, payer, "refused-2")
            await until(lambda: letters_of(gw, pid), "the dead letter")
            while_held = await available()
            asked = await ops.console.request(ops.directory.get("op1"), "cancel", pid)
            await ops.console.decide(ops.directory.get("sup1"), asked["id"], True)
            await wait_state(h, pid, "cancelled")
            return (opening, while_held, await available(), pid,
                    await queues.dead_letters(gw.redis, 50, gw.store))

    opening, while_held, after, pid, listed = asyncio.run(scenario())

    assert while_held == opening - 100 * YUAN
    assert after == opening
    assert [e for e in listed["entries"] if e.get("payment") == pid] == []
    assert listed["completed"] >= 1


def test_a_release_of_a_refused_payment_says_what_to_do_instead(tmp_path):
    """A release (or a hold, or a new priority) of a payment held because the NPC refused
    its message is refused saying so, not as a payment handed to the sender: the message
    names the refusal and the two ways on, a retry of its dead letter or a cancel."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            ops = gw.runner.app[OPS_KEY]
            _, pid = await held_after_refusal(h, 3, "refused-3")
            refused = {}
            for action, params in (("release", None), ("hold", None),
                                   ("priority", {"priority": 1})):
                try:
                    await ops.console.request(ops.directory.get("op1"), action, pid, params)
                except PaygateError as exc:
                    refused[action] = exc.to_dict()["errors"][0]
            return {"pid": pid, "refused": refused,
                    "offered": await gw.store.run(lambda tx: control.offered(
                        gw, tx, ops.directory.get("op1"), pid, gw.clock.now()))}

    seen = asyncio.run(scenario())
    release = seen["refused"]["release"]

    assert {a: e["code"] for a, e in seen["refused"].items()} == dict.fromkeys(
        ("release", "hold", "priority"), "payment_message_dead_lettered")
    assert release["path"] == "/target"
    assert release["value"] == "refused_at_link: the NPC answered 400"
    assert "the NPC refused" in release["message"]
    assert "retry" in release["message"] and f"cancel {seen['pid']}" in release["message"]
    assert seen["offered"] == ["cancel"]


def test_each_refusal_of_a_refused_payment_expects_what_its_action_takes(tmp_path):
    """The refusal's `expected` is the precondition of the action asked for: a hold
    expects a payment whose message waits to be sent, not the held payment a release
    expects; each message gives the two ways on."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            ops = h.gateway.runner.app[OPS_KEY]
            _, pid = await held_after_refusal(h, 4, "refused-4")
            refused = {}
            for action, params in (("release", None), ("hold", None),
                                   ("priority", {"priority": 1})):
                with pytest.raises(PaygateError) as exc:
                    await ops.console.request(ops.directory.get("op1"), action, pid, params)
                refused[action] = exc.value.to_dict()["errors"][0]
            return refused

    refused = asyncio.run(scenario())

    assert refused["release"]["expected"].startswith("a payment held by an operator")
    assert "waits to be sent" in refused["hold"]["expected"]
    assert "held by an operator" not in refused["hold"]["expected"]
    assert "waits to be sent" in refused["priority"]["expected"]
    assert all("retry its dead letter" in e["message"] and "cancel" in e["message"]
               for e in refused.values())
