"""A ccms.911 about one of our BEPS packages: the NPC threw the package away unprocessed,
so no netting notice will come. The package is rejected with the NPC's code, each open
item rejected and its hold released once; a second notice changes nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from gateway import payments
from gateway.beps import extension_of, items, results
from gateway.clock import SHANGHAI, ScaledClock
from gateway.harness import Harness
from gateway.messages import ccms911, codec
from gateway.messages.ccms911 import Discarded
from gateway.messages.envelope import Header
from tests.beps_support import NOW, held_package
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH, YUAN, open_account, until


def _notice(db, package_id: str, code: str = "CS03") -> Discarded:
    with db.transaction() as tx:
        mesg_id, mt = tx.query_one("SELECT mesg_id, msg_type FROM beps_packages WHERE id = ?",
                                   (package_id,))
    return Discarded(BANK, NOW.strftime("%Y%m%d"), mt, mesg_id, code,
                     reject_info="signature check failed")


def test_a_discarded_package_is_rejected_and_its_holds_released_once(tmp_path):
    db, gw, package_id = held_package(tmp_path, [100, 250, 400])
    notice = _notice(db, package_id)
    with db.transaction() as tx:
        held = {p["id"]: p["hold_id"] for p in items.package_states(tx, package_id)}
        outcome = results.on_discarded(tx, gw, notice, NOW)
    assert outcome == {"package": package_id, "discarded": notice.msg_id}
    with db.transaction() as tx:
        state, reason = tx.query_one("SELECT state, reason FROM beps_packages WHERE id = ?",
                                     (package_id,))
        rows = items.package_states(tx, package_id)
        ended = {hold: tx.query_one("SELECT state FROM ledger_hold_end WHERE hold_id = ?",
                                    (int(hold),)) for hold in held.values()}
        outbox = tx.query_one("SELECT o.state FROM outbox o JOIN beps_packages p "
                              "ON p.outbox_id = o.id WHERE p.id = ?", (package_id,))[0]
        first = [payments.get(tx, p["id"]) for p in rows]
    assert state == "rejected" and "CS03" in reason
    assert {p["state"] for p in first} == {"rejected"}
    assert all(p["reason"].startswith("discarded by the NPC: CS03") for p in first)
    assert all(e is not None for e in ended.values()), ended
    assert outbox == "done"
    assert "beps_package_rejected" in gw.alerts

    with db.transaction() as tx:  # the same notice again
        again = results.on_discarded(tx, gw, notice, NOW)
        entries = tx.query_one("SELECT COUNT(*) FROM ledger_hold_end", ())[0]
    assert again == {"package": package_id, "ignored": "discarded"}
    assert entries == len(held)


def test_a_notice_about_something_else_is_left_to_the_handler_before(tmp_path):
    db, gw, package_id = held_package(tmp_path, [100])
    with db.transaction() as tx:
        assert results.on_discarded(tx, gw, Discarded(
            BANK, "20261212", "hvps.111.001.01", "x", "CS03"), NOW) is None
        assert results.on_discarded(tx, gw, Discarded(
            BANK, "20261212", "beps.121.001.01", "no-such", "CS03"), NOW) is None


def test_the_gateway_rejects_a_package_the_npc_discards(tmp_path):
    """End to end: a BEPS credit is packed and sent; the NPC's ccms.911 about its package
    (unsigned, as the NPC sends them) comes over the link; the payment ends rejected with
    the NPC's code and the payer has the money back."""
    async def scenario() -> None:
        start = datetime(2026, 12, 7, 10, 0, tzinfo=SHANGHAI)
        clock = ScaledClock(start=start, anchor_epoch_s=time.time(), rate=1.0)
        h = Harness(tmp_path, clock_spec=clock.to_spec(),
                    balances_fen={BANK: 10**12, PEER: 10**14},
                    sim_args=["--beps-netting-interval", "3600", "--phase", "10",
                              "--date", "2026-12-07"])
        await h.start()
        try:
            gw = h.gateway
            extension_of(gw).configure(package_age_max_s=0.2)
            await gw.store.run(lambda tx: gw.ledger.fund_clearing(
                tx, "test:opening", 10**12, start.date()))
            payer = await open_account(h, 1, 1000 * YUAN)
            answer = await gw.submit_transfer("core", "discard-1", {
                "payer_account": payer, "payer_name": "示例客户", "payer_bank": BRANCH,
                "payee_account": "6222000000000001", "payee_name": "对手客户",
                "payee_bank": PEER_BRANCH, "amount": "12.34", "business_type": "A100",
                "business_kind": "02102"})
            status, body_out = answer
            assert status == 201, body_out
            payment_id = body_out["id"]

            async def sent() -> bool:
                return (await gw.get_transfer(payment_id))["state"] == "sent"
            await until(sent, "the package sent")

            def package_of(tx):
                return tx.query_one(
                    "SELECT p.mesg_id, p.msg_type FROM beps_packages p JOIN beps_items i "
                    "ON i.package_id = p.id WHERE i.payment_id = ?", (payment_id,))
            mesg_id, mt = await gw.store.run(package_of)
            now = gw.clock.now()
            header = Header("0000", "BEPS", BANK, "BEPS", now.strftime("%Y%m%d"),
                            now.strftime("%H%M%S"), ccms911.MESSAGE_TYPE,
                            f"{now:%Y%m%d}900000000001", f"{now:%Y%m%d}900000000001")
            body = ccms911.build(ccms911.Discarded(BANK, now.strftime("%Y%m%d"), mt,
                                                   mesg_id, "CS03", reject_info="bad"))
            await gw.receive_link(codec.encode(header, body, None, sign=False))
            view = await gw.get_transfer(payment_id)
            assert view["state"] == "rejected", view
            assert "CS03" in (view.get("reason") or "")

            def available(tx):
                return gw.ledger.balance(tx, payer)
            assert await gw.store.run(available) == 1000 * YUAN
        finally:
            await h.stop()
    asyncio.run(scenario())
