"""Returns, cancellations and unknown outcomes end to end: core system → gateway →
simulated NPC (its own process) → peer bank and back, over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date
from typing import Any

import aiohttp
import pytest
from lxml import etree

from gateway.api import sign_request
from gateway.exceptions.extension import Exceptions
from gateway.messages import envelope as env_mod
from message_schemas import catalogue
from tests.e2e_support import (BANK, BRANCH, PEER, SHARED, YUAN, balance, open_account,
                               phase, started, transfer, until, wait_state)

pytestmark = pytest.mark.e2e

RETURN_TYPES = {"ccms.307.001.02", "ccms.308.001.02", "ccms.316.001.01", "ccms.317.001.01"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def ext_of(h: Any) -> Exceptions:
    return next(e for e in h.gateway.extensions if isinstance(e, Exceptions))


def fast_sweep(h: Any) -> Exceptions:
    """The extension, sweeping every 0.2 s from now on (tests cannot wait half a minute)."""
    ext = ext_of(h)
    ext.sweep_interval_s = 0.2
    ext.nudge()
    return ext


async def api(h: Any, method: str, path: str, body: Any = None,
              client: str = "core") -> tuple[int, Any]:
    """Call the gateway's API, signed as `client` when client credentials are set."""
    data = b"" if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    secret = h.gateway.settings.api_keys.get(client)
    if secret is not None:
        stamp = f"{time.time():.6f}"
        headers.update({"X-Client-Id": client, "X-Timestamp": stamp,
                        "X-Signature": sign_request(secret, stamp, method, path, data, None)})
    async with aiohttp.ClientSession() as session:
        async with session.request(method, h.gateway.url + path, data=data,
                                   headers=headers) as r:
            return r.status, await r.json(content_type=None)


async def peer_credit(h: Any, account: str, name: str, amount_fen: int) -> None:
    await h.sim("POST", "/sim/peer/send", {
        "sender": PEER, "receiver": BANK, "payee_account": account, "payee_name": name,
        "payee_bank": BRANCH, "amount_fen": amount_fen, "business_type": "A100",
        "business_kind": "02102", "priority": "NORM"})


async def incoming(h: Any, state: str, amount_fen: int) -> str:
    """The id of the incoming payment of this amount, once it is in `state`."""
    def find(tx: Any) -> Any:
        return tx.query_one("SELECT id FROM payments WHERE direction = 'in' AND state = ? "
                            "AND amount_fen = ?", (state, amount_fen))
    await until(lambda: h.gateway.store.run(find), f"an incoming payment in {state}")
    return (await h.gateway.store.run(find))[0]


async def books_agree(h: Any) -> tuple[bool, int, int]:
    """(books balanced, our clearing account in the ledger, our balance at the NPC)."""
    gw = h.gateway
    trial = await gw.store.run(gw.ledger.trial_balance)
    clearing = await gw.store.run(gw.ledger.clearing_balance)
    stats = await h.sim("GET", "/sim/stats")
    return trial.balanced, clearing, stats["balances"][BANK]


async def events_of(h: Any, payment_id: str) -> list[str]:
    return [e["event"] for e in (await h.gateway.get_transfer(payment_id))["history"]]


def test_return_of_a_payment_in_suspense_and_no_return_of_that_return(tmp_path):
    """An unknown account's money in suspense goes back as an A105 hvps.111; when it
    settles the suspense item is posted out and the payment is `returned`; the peer may
    not return our return."""
    async def scenario():
        async with started(tmp_path) as h:
            await peer_credit(h, "6299000000000000001", "无此人", 500 * YUAN)
            original = await incoming(h, "suspense", 500 * YUAN)

            status, answer = await api(h, "POST", f"/v1/transfers/{original}/return",
                                       {"reason": "收款人账号不存在"})
            await wait_state(h, answer["return"]["id"], "settled")
            await wait_state(h, original, "returned")
            again, refused = await api(h, "POST", f"/v1/transfers/{original}/return",
                                       {"reason": "again"})
            with pytest.raises(RuntimeError) as peer_refused:
                await h.sim("POST", "/sim/peer/return", {
                    "sender": PEER, "msg_id": answer["return"]["message"]["msg_id"]})
            await until(lambda: _peer_received(h, "hvps.111.001.01"), "the peer got the return")
            stats = await h.sim("GET", "/sim/stats")
            open_items = await h.gateway.store.run(
                lambda tx: h.gateway.ledger.open_suspense(tx, "2026-12-07"))
            agreed = await books_agree(h)

            assert status == 202 and answer["return"]["business_type"] == "A105"
            assert (again, refused["errors"][0]["code"]) == (409, "payment_not_returnable")
            assert "return_of_a_return_not_allowed" in str(peer_refused.value)
            assert stats["peers"][PEER]["hvps.111.001.01"] == 1
            assert open_items == []
            assert agreed[0] and agreed[1] == agreed[2]
    run(scenario())


async def _peer_received(h: Any, mesg_type: str) -> bool:
    """Whether the peer has been handed a message of this type (delivery runs apart)."""
    return (await h.sim("GET", "/sim/stats"))["peers"][PEER].get(mesg_type, 0) > 0


def test_cancel_of_a_queued_payment_is_granted_and_the_hold_released(tmp_path):
    """A payment queued at the NPC is withdrawn by ccms.307; the ccms.308 grants it, the
    payment is cancelled and the payer's money is free again. Only the client that made
    the payment may cancel it."""
    keys = {"core": "core-client-secret", "other": "other-client-secret"}
    async def scenario():
        async with started(tmp_path, clearing_fen=100_000 * YUAN, api_keys=keys) as h:
            payer = await open_account(h, 11, 1_000_000 * YUAN)
            _, sent = await h.gateway.submit_transfer("core", "q1", transfer(payer, "300000.00"))
            await wait_state(h, sent["id"], "queued")
            held_fen = await balance(h, payer)

            foreign, _ = await api(h, "POST", f"/v1/transfers/{sent['id']}/cancel", {},
                                   client="other")
            status, answer = await api(h, "POST", f"/v1/transfers/{sent['id']}/cancel",
                                       {"reason": "客户撤销"})
            await wait_state(h, sent["id"], "cancelled")
            _, record = await api(h, "GET", f"/v1/transfers/{sent['id']}/exceptions")
            stats = await h.sim("GET", "/sim/stats")

            assert foreign == 404
            assert (status, answer["cancelled"]) == (202, "requested")
            assert held_fen == 700_000 * YUAN
            assert await balance(h, payer) == 1_000_000 * YUAN
            assert [r["state"] for r in record["requests"]] == ["granted"]
            assert stats["cancelled"] == 1 and stats["queued"] == 0
            assert "cancel_requested" in await events_of(h, sent["id"])
    run(scenario())


async def settled_with_result_lost(h: Any, sequence: int, key: str,
                                   lost: int) -> tuple[str, dict[str, Any]]:
    """A payment of 300,000 yuan queued at the NPC for liquidity (PR12), then settled
    there once both clearing accounts are funded, its result lost (the next `lost`
    results to us); (the payer's account, the accepted payment)."""
    payer = await open_account(h, sequence, 1_000_000 * YUAN)
    _, sent = await h.gateway.submit_transfer("core", key, transfer(payer, "300000.00"))
    await wait_state(h, sent["id"], "queued")
    await h.sim("POST", "/sim/faults", {"lose_result": lost})
    await h.sim("POST", "/sim/fund", {"participant": BANK, "amount_fen": 500_000 * YUAN})
    await h.gateway.store.run(lambda tx: h.gateway.ledger.fund_clearing(
        tx, "test:topup", 500_000 * YUAN, "2026-12-07"))
    await until(lambda: _sim_settled(h, 1), "the NPC settled the payment")
    return payer, sent


def test_cancel_after_settlement_is_refused_and_a_status_query_settles_it(tmp_path):
    """The NPC settled a queued payment but its result was lost: the cancellation is
    refused, the gateway asks (ccms.316) instead of guessing and posts the settlement."""
    async def scenario():
        async with started(tmp_path, clearing_fen=100_000 * YUAN) as h:
            payer, sent = await settled_with_result_lost(h, 12, "q2", lost=1)

            status, _ = await api(h, "POST", f"/v1/transfers/{sent['id']}/cancel", {})
            await wait_state(h, sent["id"], "settled")
            _, record = await api(h, "GET", f"/v1/transfers/{sent['id']}/exceptions")
            stats = await h.sim("GET", "/sim/stats")
            agreed = await books_agree(h)

            assert status == 202
            assert [(r["kind"], r["state"]) for r in record["requests"]] == [
                ("cancel", "refused"), ("status", "answered")]
            assert record["requests"][1]["answer"]["status"] == "PR04"
            assert stats["settled_twice"] == [] and stats["faults"]["lose_result"] == 0
            assert await balance(h, payer) == 700_000 * YUAN
            assert agreed[0] and agreed[1] == agreed[2]
    run(scenario())


async def _sim_settled(h: Any, count: int) -> bool:
    return (await h.sim("GET", "/sim/stats"))["settled"] >= count


def test_a_queued_payment_whose_settlement_was_lost_is_asked_about_and_settles(tmp_path):
    """Queued at the NPC (PR12), then settled there with its PR04 lost: once queued longer
    than `queued_query_after_s` the gateway asks (ccms.316, the payment still `queued`),
    never resends, and posts the settlement; books and the NPC agree again."""
    async def scenario():
        async with started(tmp_path, clearing_fen=100_000 * YUAN,
                           queued_query_after_s=2.0) as h:
            _, sent = await settled_with_result_lost(h, 14, "q3", lost=2)
            fast_sweep(h)
            await wait_state(h, sent["id"], "settled")
            _, record = await api(h, "GET", f"/v1/transfers/{sent['id']}/exceptions")
            history = (await h.gateway.get_transfer(sent["id"]))["history"]
            stats = await h.sim("GET", "/sim/stats")
            return record, history, stats, await books_agree(h)

    record, history, stats, agreed = run(scenario())

    assert [(r["kind"], r["state"], r["answer"]["status"]) for r in record["requests"]] == \
        [("status", "answered", "PR04")]
    assert [e["state"] for e in history if e["event"] == "status_query_sent"] == ["queued"]
    assert "unknown" not in [e["state"] for e in history]
    assert stats["settled_twice"] == []
    assert agreed[0] and agreed[1] == agreed[2]


def test_lost_result_is_listed_as_unknown_then_resolved_by_a_status_query(tmp_path):
    """With its ccms.900 lost the payment goes `unknown` (listed with how long), is asked
    about, and settles once: one hvps.111 on the wire, nothing settled twice."""
    async def scenario():
        async with started(tmp_path, result_timeout_s=2.0) as h:
            fast_sweep(h)
            payer = await open_account(h, 13, 1_000_000 * YUAN)
            await h.sim("POST", "/sim/faults", {"lose_result": 1})
            _, sent = await h.gateway.submit_transfer("core", "u1", transfer(payer, "80000.00"))
            await until(lambda: _outbox_sent(h, sent["id"]), "the NPC took the payment")
            await h.sim("POST", "/sim/faults", {"offline": True})
            await wait_state(h, sent["id"], "unknown")
            status, listed = await api(h, "GET", "/v1/transfers?state=unknown")
            await h.sim("POST", "/sim/faults", {"offline": False})
            await wait_state(h, sent["id"], "settled", timeout_s=30.0)

            stats = await h.sim("GET", "/sim/stats")
            wire = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT DISTINCT mesg_id FROM archive WHERE direction = 'out' AND "
                "mesg_type = 'hvps.111.001.01' AND payment_id = ?", (sent["id"],)))
            agreed = await books_agree(h)

            assert status == 200 and [t["id"] for t in listed["transfers"]] == [sent["id"]]
            assert listed["transfers"][0]["unknown_for_s"] >= 0
            assert listed["transfers"][0]["status_queries"] >= 1
            assert len(wire) == 1
            assert stats["settled"] == 1 and stats["settled_twice"] == []
            assert await balance(h, payer) == 920_000 * YUAN
            assert agreed[0] and agreed[1] == agreed[2]
    run(scenario())


async def _outbox_sent(h: Any, payment_id: str) -> bool:
    row = await h.gateway.store.run(lambda tx: tx.query_one(
        "SELECT state FROM outbox WHERE payment_id = ? AND kind = 'hvps_credit'",
        (payment_id,)))
    return row is not None and row[0] in ("sent", "acked")


def test_incoming_return_marks_our_payment_returned_and_credits_the_payer(tmp_path):
    """A peer returns a payment we sent: ours moves to `returned`, the payer has the money
    back, and the return itself can be neither returned by us nor returned twice."""
    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 14, 1_000_000 * YUAN, name="示例客户")
            _, sent = await h.gateway.submit_transfer("core", "r1", transfer(payer, "150000.00"))
            await wait_state(h, sent["id"], "settled")

            created = await h.sim("POST", "/sim/peer/return", {
                "sender": PEER, "msg_id": sent["message"]["msg_id"], "reason": "户名不符"})
            await wait_state(h, sent["id"], "returned")
            back = await incoming(h, "credited", 150_000 * YUAN)
            status, refused = await api(h, "POST", f"/v1/transfers/{back}/return",
                                        {"reason": "不要"})
            with pytest.raises(RuntimeError) as twice:
                await h.sim("POST", "/sim/peer/return", {"sender": PEER,
                                                         "msg_id": sent["message"]["msg_id"]})
            view = await h.gateway.get_transfer(sent["id"])
            agreed = await books_agree(h)

            assert created["created"]["outcome"] == "PR04"
            assert await balance(h, payer) == 1_000_000 * YUAN
            assert back in view["reason"] and "户名不符" in view["reason"]
            assert (status, refused["errors"][0]["code"]) == (
                422, "return_of_a_return_not_allowed")
            assert "payment_already_returned" in str(twice.value)
            assert agreed[0] and agreed[1] == agreed[2]
    run(scenario())


def test_suspense_is_returned_after_working_days_unless_an_operator_keeps_it(tmp_path):
    """After the configured working days a suspense item goes back by itself; one an
    operator keeps stays in suspense."""
    async def scenario():
        async with started(tmp_path) as h:
            ext = fast_sweep(h)
            ext.return_after_working_days = 1
            await peer_credit(h, "6299000000000000002", "查无此人", 301 * YUAN)
            await peer_credit(h, "6299000000000000003", "查无此户", 302 * YUAN)
            returned = await incoming(h, "suspense", 301 * YUAN)
            kept = await incoming(h, "suspense", 302 * YUAN)
            await ext.keep_suspense(kept, "operator:sup1", "tracing the customer")

            for status in ("20", "30", "40"):
                await phase(h, status)
            await ext.sweep_once()
            still_before = await _state(h, returned)
            await phase(h, "00", date(2026, 12, 8))
            await phase(h, "10", date(2026, 12, 8))
            await wait_state(h, returned, "returned")
            await ext.sweep_once()

            agreed = await books_agree(h)

            assert still_before == "suspense"
            assert await _state(h, kept) == "suspense"
            assert "automatic_return_kept" in await events_of(h, kept)
            assert agreed[0] and agreed[1] == agreed[2]
    run(scenario())


async def _state(h: Any, payment_id: str) -> str:
    return (await h.gateway.get_transfer(payment_id))["state"]


def test_every_exception_message_on_the_wire_validates(tmp_path):
    """Every ccms.307/308/316/317 and A105 hvps.111 sent or received passes our XSDs, and
    the A105 credits also the published pacs.008 schema."""
    reference = SHARED / "cnaps" / "reference-xsd" / "pacs.008.001.02.xsd"
    if not reference.exists():
        pytest.skip("../shared/cnaps/reference-xsd is not beside the checkout")
    pacs008 = etree.XMLSchema(etree.parse(str(reference)))

    async def scenario():
        async with started(tmp_path, clearing_fen=100_000 * YUAN, result_timeout_s=1.0) as h:
            fast_sweep(h)
            payer = await open_account(h, 15, 1_000_000 * YUAN)
            _, queued = await h.gateway.submit_transfer("core", "w1", transfer(payer, "300000.00"))
            await wait_state(h, queued["id"], "queued")
            await api(h, "POST", f"/v1/transfers/{queued['id']}/cancel", {})
            await wait_state(h, queued["id"], "cancelled")
            await h.sim("POST", "/sim/faults", {"lose_result": 1})
            _, small = await h.gateway.submit_transfer("core", "w2", transfer(payer, "100.00"))
            await wait_state(h, small["id"], "settled")
            await peer_credit(h, "6299000000000000004", "无此人", 7 * YUAN)
            lost = await incoming(h, "suspense", 7 * YUAN)
            await api(h, "POST", f"/v1/transfers/{lost}/return", {"reason": "账号不存在"})
            await wait_state(h, lost, "returned")
            await h.sim("POST", "/sim/peer/return", {"sender": PEER,
                                                     "msg_id": small["message"]["msg_id"]})
            await wait_state(h, small["id"], "returned")
            return await h.gateway.store.run(lambda tx: tx.query(
                "SELECT mesg_type, envelope FROM archive", ()))

    checked: dict[str, int] = {}
    for mesg_type, raw in run(scenario()):
        body = etree.fromstring(env_mod.decode(bytes(raw)).body)
        is_return = mesg_type == "hvps.111.001.01" and b"A105" in env_mod.decode(bytes(raw)).body
        if mesg_type not in RETURN_TYPES and not is_return:
            continue
        schema = catalogue.schema(mesg_type)
        assert schema.validate(body), (mesg_type, schema.error_log)
        if is_return:
            assert pacs008.validate(body), pacs008.error_log
        key = "A105" if is_return else mesg_type
        checked[key] = checked.get(key, 0) + 1

    assert set(checked) == RETURN_TYPES | {"A105"}
    assert checked["A105"] == 2  # one we sent, one a peer sent us
