"""HVPS end to end: core system → gateway → simulated NPC (its own process) → peer bank,
and back, on real CNAPS2 messages over loopback HTTP with an embedded Redis."""

from __future__ import annotations

import asyncio

import pytest
from lxml import etree

from gateway import keys, recovery, summary
from gateway.errors import PaygateError
from gateway.messages import envelope as env_mod
from tests.e2e_support import (BANK, BRANCH, PEER, SHARED, YUAN, balance, open_account,
                               peer_payment_lost, phase, started, transfer, until,
                               wait_state)

pytestmark = pytest.mark.e2e


def run(coro):
    return asyncio.run(coro)


def test_settled_payment_moves_money_once(tmp_path):
    """An urgent transfer is held, sent as hvps.111, settled (PR04) and posted once."""
    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            status, answer = await h.gateway.submit_transfer(
                "core", "k-1", transfer(payer, "150000.00"))
            assert status == 201 and answer["state"] == "accepted"
            assert await balance(h, payer) == 850_000 * YUAN

            await wait_state(h, answer["id"], "settled")
            stats = await h.sim("GET", "/sim/stats")
            view = await h.gateway.get_transfer(answer["id"])

            assert stats["settled_twice"] == []
            assert stats["balances"][BANK] == (10_000_000 - 150_000) * YUAN
            assert [e["state"] for e in view["history"]][:3] == ["accepted", "sent", "settled"]
            clearing = await h.gateway.store.run(h.gateway.ledger.clearing_balance)
            assert clearing == stats["balances"][BANK]

            # Nothing waited: the payment went out from the work that accepted it.
            assert sum([await h.gateway.redis.xlen(lane) for lane in keys.HVPS_LANES]) == 0

            # With no slot free to send at once, payments go by their lanes; once every
            # stage has acknowledged them, their stream entries are trimmed: a lane
            # keeps at most its last delivered entry.
            h.gateway.direct.link_limit = 0
            for n in range(4):
                _, more = await h.gateway.submit_transfer(
                    "core", f"k-more-{n}", transfer(payer, "100.00"))
                await wait_state(h, more["id"], "settled")
            assert sum([await h.gateway.redis.xlen(lane) for lane in keys.HVPS_LANES]) >= 4
            await until_true(lambda: _lanes_trimmed(h), "the HVPS lanes trimmed")
    run(scenario())


async def _lanes_trimmed(h) -> bool:
    await recovery.trim(h.gateway)
    lengths = [await h.gateway.redis.xlen(lane) for lane in keys.HVPS_LANES]
    return max(lengths) <= 1


async def until_true(check, what: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.1)


def test_short_of_funds_is_refused_and_nothing_is_held(tmp_path):
    """A payer without the money is refused at once; the bank never advances funds."""
    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 2, 1_000 * YUAN)
            with pytest.raises(PaygateError) as refused:
                await h.gateway.submit_transfer("core", "k-2", transfer(payer, "60000.00"))

            problem = refused.value.problems[0]
            assert refused.value.code == "payer_funds_insufficient"
            assert (problem.path, problem.value) == ("/amount", "60000.00")
            assert problem.expected == ("at most the available balance of 1000.00 yuan (the "
                                        "account's balance less its funds on hold)")
            assert await balance(h, payer) == 1_000 * YUAN
    run(scenario())


def test_idempotency_key_replays_and_refuses_another_body(tmp_path):
    """The same key and body returns the stored answer; another body is a 409."""
    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 3, 1_000_000 * YUAN)
            first = await h.gateway.submit_transfer("core", "same", transfer(payer, "70000.00"))
            again = await h.gateway.submit_transfer("core", "same", transfer(payer, "70000.00"))
            with pytest.raises(PaygateError) as other:
                await h.gateway.submit_transfer("core", "same", transfer(payer, "70000.01"))

            assert again[1]["id"] == first[1]["id"]
            assert other.value.status == 409
            assert await balance(h, payer) == 930_000 * YUAN
    run(scenario())


def test_queued_for_liquidity_then_released_by_funding(tmp_path):
    """Short clearing balance: PR12 queued, funding the account releases it (PR04)."""
    async def scenario():
        async with started(tmp_path, clearing_fen=100_000 * YUAN) as h:
            payer = await open_account(h, 4, 1_000_000 * YUAN)
            _, answer = await h.gateway.submit_transfer("core", "q", transfer(payer, "300000.00"))
            await wait_state(h, answer["id"], "queued")

            await h.sim("POST", "/sim/fund", {"participant": BANK, "amount_fen": 500_000 * YUAN})
            await h.gateway.store.run(lambda tx: h.gateway.ledger.fund_clearing(
                tx, "test:topup", 500_000 * YUAN, "2026-12-07"))
            await wait_state(h, answer["id"], "settled")

            stats = await h.sim("GET", "/sim/stats")
            assert stats["balances"][BANK] == 300_000 * YUAN
    run(scenario())


def _hvps_summary(h):
    gw = h.gateway
    return gw.store.run(lambda tx: summary.build(tx, gw.ledger, "2026-12-07", False)["hvps"])


def test_queued_payment_is_cancelled_at_day_end_and_hold_released(tmp_path):
    """A payment still queued when the clearing window ends is cancelled (PR08). The
    summary counts it queued while the NPC holds it; once cancelled, no longer queued,
    but queued at some point of the day."""
    async def scenario():
        async with started(tmp_path, clearing_fen=100_000 * YUAN) as h:
            payer = await open_account(h, 5, 1_000_000 * YUAN)
            _, answer = await h.gateway.submit_transfer("core", "c", transfer(payer, "300000.00"))
            await wait_state(h, answer["id"], "queued")
            while_queued = await _hvps_summary(h)
            for status in ("20", "30", "40"):
                await phase(h, status)
            await wait_state(h, answer["id"], "cancelled")
            at_day_end = await _hvps_summary(h)

            assert await balance(h, payer) == 1_000_000 * YUAN
            assert (while_queued["queued"], while_queued["queued_at_some_point"]) == (1, 1)
            assert (at_day_end["queued"], at_day_end["queued_at_some_point"],
                    at_day_end["cancelled"]) == (0, 1, 1)
    run(scenario())


def test_inbound_credit_duplicate_and_unknown_account(tmp_path):
    """A peer's hvps.111 credits the payee once even when delivered twice; an unknown
    account goes to suspense under a pending write-off number."""
    async def scenario():
        async with started(tmp_path) as h:
            payee = await open_account(h, 6, 0, name="收款客户")
            await h.sim("POST", "/sim/faults", {"duplicate": 1.0})
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": payee,
                "payee_name": "收款客户", "payee_bank": BRANCH, "amount_fen": 12_345_67,
                "count": 1, "business_type": "A100", "business_kind": "02102",
                "priority": "NORM"})
            await h.sim("POST", "/sim/faults", {"duplicate": 0.0})
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": "6299000000000000001",
                "payee_name": "无此人", "payee_bank": BRANCH, "amount_fen": 500_00,
                "count": 1, "business_type": "A100", "business_kind": "02102",
                "priority": "NORM"})

            async def both_in() -> bool:
                return await h.gateway.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM payments WHERE direction = 'in' AND state IN "
                    "('credited', 'suspense')", ())[0]) == 2
            await until(both_in, "two incoming payments processed")
            await asyncio.sleep(0.5)  # let the duplicate delivery arrive and be refused

            rows = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT state, pending_no FROM payments WHERE direction = 'in' ORDER BY "
                "amount_fen DESC", ()))
            dupes = await h.gateway.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM archive WHERE direction = 'in' AND "
                "mesg_type = 'hvps.111.001.01'", ())[0])
            assert await balance(h, payee) == 12_345_67
            assert rows[0][0] == "credited"
            assert rows[1][0] == "suspense" and len(rows[1][1]) == 9
            assert dupes == 2  # two distinct messages archived; the duplicate was not
    run(scenario())


def test_reconciliation_lists_an_injected_difference(tmp_path):
    """hvps.710/711 over the link: clean books reconcile; an injected skew is listed."""
    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 7, 1_000_000 * YUAN)
            _, answer = await h.gateway.submit_transfer("core", "r", transfer(payer, "80000.00"))
            await wait_state(h, answer["id"], "settled")
            clean = await h.gateway.reconcile_hvps(h.gateway.work_date)

            await h.sim("POST", "/sim/recon-skew", {"participant": BANK, "count": 1,
                                                    "amount_fen": 1_00})
            skewed = await h.gateway.reconcile_hvps(h.gateway.work_date)

            assert clean["reconciled"] is True, clean
            assert skewed["reconciled"] is False
            assert skewed["differences"], skewed
    run(scenario())


def test_every_message_on_the_wire_validates_against_the_published_schemas(tmp_path):
    """Messages built by the gateway and the simulator pass the reference XSDs."""
    reference = SHARED / "cnaps" / "reference-xsd"
    if not reference.exists():
        pytest.skip("../shared/cnaps/reference-xsd is not beside the checkout")
    schemas = {}

    def schema_for(mesg_type: str):
        name = {"hvps.111.001.01": "pacs.008.001.02", "hvps.112.001.01": "pacs.009.001.02"}
        path = reference / f"{name.get(mesg_type, mesg_type)}.xsd"
        if not path.exists():
            return None
        if path not in schemas:
            schemas[path] = etree.XMLSchema(etree.parse(str(path)))
        return schemas[path]

    async def scenario():
        async with started(tmp_path) as h:
            payer = await open_account(h, 8, 1_000_000 * YUAN)
            _, answer = await h.gateway.submit_transfer("core", "w", transfer(payer, "90000.00"))
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": payer,
                "payee_name": "示例客户", "payee_bank": BRANCH, "amount_fen": 1_00, "count": 1,
                "business_type": "A100", "business_kind": "02102", "priority": "NORM"})
            await wait_state(h, answer["id"], "settled")
            await h.gateway.reconcile_hvps(h.gateway.work_date)
            return await h.gateway.store.run(lambda tx: tx.query(
                "SELECT mesg_type, envelope FROM archive", ()))

    rows = run(scenario())
    checked = 0
    for mesg_type, raw in rows:
        schema = schema_for(mesg_type)
        if schema is None:
            continue
        body = etree.fromstring(env_mod.decode(bytes(raw)).body)
        assert schema.validate(body), (mesg_type, schema.error_log)
        checked += 1
    assert checked >= 6


def test_reconciliation_details_name_the_payment_we_never_received(tmp_path):
    """A peer's payment the NPC settled but never delivered to us (the link dropped it)
    shows as a received-total difference, and hvps.712/713 name that very payment."""
    async def scenario():
        async with started(tmp_path) as h:
            payee = await open_account(h, 9, 0, name="收款客户")
            sent = await peer_payment_lost(h, payee, 4_321_00)
            summary = await h.gateway.reconcile_hvps(h.gateway.work_date)
            day = h.gateway.work_date.isoformat()
            await until(lambda: day in h.gateway.recon_details, "hvps.713 compared")
            return sent, summary, h.gateway.recon_details[day]

    sent, summary, details = run(scenario())
    lost = sent["created"][0]
    assert summary["reconciled"] is False
    assert {d["field"] for d in summary["differences"]} == {"received_count", "received_fen"}
    assert details["reconciled"] is False
    item = details["differences"][0]
    assert item["only_at"] == "npc" and item["side"] == "SR01"
    assert item["amount_fen"] == 4_321_00 and item["msg_id"] in lost.values()


def _four_payments_with_slots(tmp_path, **slots: int) -> tuple[int, int, int]:
    """Four payments sent together and settled with gateway.direct's slot bounds set as
    `slots` says; (entries added to the HVPS lanes, entries added to the link stream,
    sends made after commit)."""
    async def scenario():
        async with started(tmp_path, webhook_url="http://127.0.0.1:9/hook") as h:
            gw = h.gateway
            for name, bound in slots.items():
                setattr(gw.direct, name, bound)
            payer = await open_account(h, 1, 1_000_000 * YUAN)
            link_stream_before = await gw.redis.xlen(keys.OUT_LINK)
            answers = await asyncio.gather(*(
                gw.submit_transfer("core", f"k-slots-{n}", transfer(payer, "100.00"))
                for n in range(4)))
            for _, answer in answers:
                await wait_state(h, answer["id"], "settled")
            await until(lambda: gw.direct.link_taken == gw.direct.acks_taken == 0,
                        "the 990s sent")
            lanes = sum([await gw.redis.xlen(lane) for lane in keys.HVPS_LANES])
            link_stream = await gw.redis.xlen(keys.OUT_LINK) - link_stream_before
            return lanes, link_stream, gw.direct.sent
    return run(scenario())


def test_payments_go_straight_out_while_every_webhook_slot_is_taken(tmp_path):
    """The webhook's pushes and the link's sends take slots of their own: with no slot
    free for the webhook, payments still go out from the work that accepts them and the
    ccms.990s from the work that receives their results (nothing on the lanes, nothing
    more on the link stream)."""
    lanes, link_stream, sent_at_once = _four_payments_with_slots(tmp_path, limit=0)

    assert lanes == 0
    assert link_stream == 0
    assert sent_at_once >= 8  # four hvps.111 and four 990s


def test_990s_go_at_once_while_every_payment_slot_of_the_link_is_taken(tmp_path):
    """The ccms.990s answering the NPC's results have link slots of their own: with none
    free for hvps.111s, payments go by their lanes, yet each 990 still goes from the work
    that receives its result (nothing more on the link stream)."""
    _, link_stream, sent_at_once = _four_payments_with_slots(tmp_path, link_limit=0)

    assert link_stream == 0
    assert sent_at_once >= 4  # the four 990s; the hvps.111s went by their lanes
