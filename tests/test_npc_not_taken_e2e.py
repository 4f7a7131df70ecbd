"""Payments whose message the NPC has not taken yet (the NPC offline, their hvps.111s
waiting in the outbox), end to end against the simulated NPC in its own process: a
status query about one cannot turn it into a rejection the NPC then settles, and a
settlement of a payment the gateway had already ended is booked so that our clearing
account agrees with the NPC's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway import payments
from gateway.errors import PaygateError
from gateway.exceptions import outcomes
from gateway.ops.web import OPS_KEY
from tests.e2e_support import (PEER, YUAN, ask, balance, open_account, started, transfer,
                                until)
from tests.test_exceptions_e2e import api, books_agree, events_of, fast_sweep

pytestmark = pytest.mark.e2e


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def outbox_state(h: Any, payment_id: str) -> str | None:
    row = await h.gateway.store.run(lambda tx: tx.query_one(
        "SELECT state FROM outbox WHERE payment_id = ? AND kind = 'hvps_credit'",
        (payment_id,)))
    return row[0] if row else None


async def waiting_in_outbox(h: Any, payment_id: str) -> bool:
    """Sent as far as the gateway goes, its message not taken: the row gave its failed
    attempt back and waits for the link."""
    state = (await h.gateway.get_transfer(payment_id))["state"]
    return state == "sent" and await outbox_state(h, payment_id) == "pending"


async def sent_while_offline(h: Any, sequence: int, key: str) -> tuple[Any, str, str]:
    """The NPC offline, a payment of 20,000 yuan from a new payer `sent` with its message
    waiting in the outbox; (the operators' console, the payer, the payment)."""
    gw = h.gateway
    payer = await open_account(h, sequence, 1_000_000 * YUAN)
    await h.sim("POST", "/sim/faults", {"offline": True})
    _, sent = await gw.submit_transfer("core", key, transfer(payer, "20000.00"))
    await until(lambda: waiting_in_outbox(h, sent["id"]), "the payment waiting in the outbox")
    return gw.runner.app[OPS_KEY], payer, sent["id"]


async def all_final(h: Any, ids: list[str]) -> bool:
    states = [(await h.gateway.get_transfer(i))["state"] for i in ids]
    return all(s in ("settled", "rejected", "cancelled") for s in states)


async def alerts(h: Any, code: str) -> list[str]:
    rows = await h.gateway.store.run(lambda tx: tx.query(
        "SELECT detail FROM alerts WHERE code = ? ORDER BY id", (code,)))
    return [r[0] for r in rows]


def test_status_queries_about_payments_the_npc_has_not_taken_cannot_reject_them(tmp_path):
    """The user's case: the NPC offline, four HVPS payments `sent` with their hvps.111s
    in the outbox, a status query asked about each by the core system. The queries are
    refused (the NPC could only say it never heard of them); when the NPC is back the
    four are delivered and settle, each payer debited once, and our clearing account
    agrees with the NPC's."""
    async def scenario():
        async with started(tmp_path, result_timeout_s=2.0) as h:
            fast_sweep(h)
            payer = await open_account(h, 31, 1_000_000 * YUAN)
            await h.sim("POST", "/sim/faults", {"offline": True})
            ids = []
            for i in range(4):
                _, sent = await h.gateway.submit_transfer("core", f"off{i}",
                                                          transfer(payer, "10000.00"))
                ids.append(sent["id"])
            for pid in ids:
                await until(lambda: waiting_in_outbox(h, pid), f"{pid} waiting in the outbox")

            answers = [await api(h, "POST", f"/v1/transfers/{pid}/status-query")
                       for pid in ids]
            await h.sim("POST", "/sim/faults", {"offline": False})
            await until(lambda: all_final(h, ids), "the four payments final", 40.0)
            states = [(await h.gateway.get_transfer(pid))["state"] for pid in ids]
            stats = await h.sim("GET", "/sim/stats")
            return answers, states, stats, await balance(h, payer), await books_agree(h)

    answers, states, stats, payer_fen, agreed = run(scenario())

    assert [status for status, _ in answers] == [409] * 4
    assert {body["errors"][0]["code"] for _, body in answers} == {
        "payment_not_yet_taken_by_npc"}
    assert "not taken" in answers[0][1]["errors"][0]["message"]
    assert states == ["settled"] * 4
    assert stats["settled"] == 4 and stats["settled_twice"] == []
    assert payer_fen == 960_000 * YUAN
    assert agreed[0] and agreed[1] == agreed[2]


def test_operators_hold_and_cancel_a_payment_the_npc_never_took(tmp_path):
    """NPC offline: a payment `sent` whose every delivery was answered 503 cannot be
    cancelled at the NPC (it has nothing to cancel: the refusal says to hold it first),
    but an operator holds it out of sending and, a supervisor approving, cancels it: the
    payer has the money back, the NPC never receives it once back, and the books agree."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            ops, payer, pid = await sent_while_offline(h, 32, "off-hold")
            op1, sup1 = ops.directory.get("op1"), ops.directory.get("sup1")
            with pytest.raises(PaygateError) as npc_cancel:
                await ops.console.request(op1, "npc_cancel", pid)
            held = await ask(ops, op1, "hold", pid)
            asked = await ask(ops, op1, "cancel", pid)
            decided = await ops.console.decide(sup1, asked["id"], True)
            await h.sim("POST", "/sim/faults", {"offline": False})
            await asyncio.sleep(3)  # sweeps and resumed deliveries, had anything waited
            stats = await h.sim("GET", "/sim/stats")
            return (npc_cancel.value, held, decided, await gw.get_transfer(pid),
                    await outbox_state(h, pid), await balance(h, payer), stats,
                    await events_of(h, pid), await books_agree(h))

    refused, held, decided, view, outbox, payer_fen, stats, events, agreed = run(scenario())

    assert refused.code == "payment_not_cancellable"
    assert "hold" in refused.problems[0].message
    assert held["state"] == "executed" and held["outcome"]["taken_back_from_sending"]
    assert decided["state"] == "executed"
    assert view["state"] == "cancelled" and outbox == "done"
    assert events[-2:] == ["ops_held", "ops_cancelled"]
    assert payer_fen == 1_000_000 * YUAN
    assert stats["settled"] == 0 and stats["peers"][PEER].get("hvps.111.001.01", 0) == 0
    assert agreed[0] and agreed[1] == agreed[2]


async def taken_then_ended(h: Any, payer: str, key: str, amount: str) -> str:
    """A payment whose hvps.111 the NPC has taken (its result held back by the NPC's
    delivery delay) and that the gateway then ends: rejected on a status answer that the
    NPC has no such message (PR24), its hold released, as happened to the user's
    payments."""
    gw = h.gateway
    _, sent = await gw.submit_transfer("core", key, transfer(payer, amount))
    pid = sent["id"]
    await until(lambda: outbox_taken(h, pid), f"the NPC took {pid}")

    def end(tx: Any) -> str:
        return outcomes.apply(gw, tx, payments.get(tx, pid), "PR24", None, gw.clock.now(),
                              "npc_status", "HV0E0013 no such message")
    assert await gw.store.run(end) == "rejected"
    return pid


async def outbox_taken(h: Any, payment_id: str) -> bool:
    return await outbox_state(h, payment_id) in ("sent", "acked")


def test_a_settlement_of_a_payment_the_gateway_rejected_is_booked_from_the_payer(tmp_path):
    """The NPC settles a payment the gateway had rejected (hold released): the late PR04
    is not only logged. The payment is `settled`, its history says what happened, the
    payer is debited again, a critical alert names it and its amount, and our clearing
    account agrees with the NPC's."""
    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 33, 1_000_000 * YUAN)
            await h.sim("POST", "/sim/faults", {"delay_ms": 2_000})
            pid = await taken_then_ended(h, payer, "late-1", "30000.00")
            released_fen = await balance(h, payer)
            await until(lambda: settled_here(h, pid), "the late settlement booked")
            view = await h.gateway.get_transfer(pid)
            return (released_fen, view, await balance(h, payer),
                    await alerts(h, "npc_settled_payment_we_ended"), await books_agree(h))

    released_fen, view, payer_fen, raised, agreed = run(scenario())

    assert released_fen == 1_000_000 * YUAN
    assert view["state"] == "settled"
    assert [e["event"] for e in view["history"]][-2:] == ["npc_status_rejected",
                                                          "npc_settled_after_end"]
    assert view["history"][-1]["detail"]["booked"] == "payer"
    assert payer_fen == 970_000 * YUAN
    assert len(raised) == 1 and json.loads(raised[0])["amount_fen"] == 30_000 * YUAN
    assert json.loads(raised[0])["severity"] == "critical"
    assert agreed[0] and agreed[1] == agreed[2]


def test_a_late_settlement_the_payer_can_no_longer_cover_goes_to_receivables(tmp_path):
    """Rejected here and its hold released, the payer spends the money on another
    payment; the NPC then settles the first: the payer is not overdrawn, the amount is
    booked to other receivables (1221) as an open item naming the payer, and the
    clearing account still agrees with the NPC's after both settle."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 34, 100_000 * YUAN)
            await h.sim("POST", "/sim/faults", {"delay_ms": 2_000})
            first = await taken_then_ended(h, payer, "late-2", "80000.00")
            _, second = await gw.submit_transfer("core", "late-3",
                                                 transfer(payer, "50000.00"))
            await until(lambda: settled_here(h, first), "the late settlement booked")
            await until(lambda: all_final(h, [second["id"]]), "the second payment final")
            items = await gw.store.run(lambda tx: gw.ledger.open_receivables(
                tx, gw.work_date))
            view = await gw.get_transfer(first)
            return payer, items, view, await balance(h, payer), await books_agree(h)

    payer, items, view, payer_fen, agreed = run(scenario())

    assert [(i.amount_fen, i.account_no, i.ref) for i in items] == [
        (80_000 * YUAN, payer, view["id"])]
    assert view["state"] == "settled"
    detail = view["history"][-1]["detail"]
    assert (detail["booked"], detail["receivable"]) == ("receivables", items[0].pending_no)
    assert detail["payer_refused"] == "payer_funds_insufficient"
    assert payer_fen == 50_000 * YUAN
    assert agreed[0] and agreed[1] == agreed[2]


async def settled_here(h: Any, payment_id: str) -> bool:
    return "npc_settled_after_end" in await events_of(h, payment_id)
