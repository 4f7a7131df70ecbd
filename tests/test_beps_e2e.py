"""BEPS end to end: core system → gateway → simulated NPC (its own process) → peer bank
and back, across a night, a weekend and a morning, on real CNAPS2 packages over
loopback HTTP; the ledger is checked at every step and every BEPS message on the wire
against the published schemas."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from lxml import etree

from gateway.beps import extension_of
from gateway.clock import SHANGHAI, ScaledClock
from gateway.errors import PaygateError
from gateway.harness import Harness
from gateway.messages import envelope as env_mod
from message_schemas import catalogue
from tests.e2e_support import (BANK, BRANCH, PEER, PEER_BRANCH, SHARED, YUAN, open_account,
                               until)

pytestmark = pytest.mark.e2e

SATURDAY_NIGHT = datetime(2026, 12, 12, 23, 0, tzinfo=SHANGHAI)
SATURDAY, MONDAY = date(2026, 12, 12), date(2026, 12, 14)
MONDAY_MORNING = datetime(2026, 12, 14, 9, 0, tzinfo=SHANGHAI)
CLEARING_FEN = 10_000_000 * YUAN
ROUND_S = 1.0  # business seconds between the simulator's netting rounds in these tests


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def beps_started(tmp_path: Path, start: datetime, phase: str,
                       work_date: date) -> AsyncIterator[Harness]:
    """Gateway and NPC on a clock from `start`, HVPS in `phase` for `work_date`."""
    clock = ScaledClock(start=start, anchor_epoch_s=time.time(), rate=1.0)
    h = Harness(tmp_path, clock_spec=clock.to_spec(),
                balances_fen={BANK: CLEARING_FEN, PEER: 10**14},
                sim_args=["--beps-netting-interval", str(ROUND_S), "--phase", phase,
                          "--date", work_date.isoformat()])
    await h.start()
    try:
        gw = h.gateway
        extension_of(gw).configure(package_age_max_s=0.2)
        await gw.store.run(lambda tx: gw.ledger.fund_clearing(tx, "test:opening",
                                                             CLEARING_FEN, work_date))
        await h.sim("POST", "/sim/phase", {"status": phase, "date": work_date.isoformat()})
        await until(lambda: gw.hvps_status == phase, f"HVPS status {phase}")
        yield h
    finally:
        await h.stop()


def credit(account: str, amount: str, payee: str = "6222000000000001") -> dict[str, Any]:
    return {"payer_account": account, "payer_name": "示例客户", "payer_bank": BRANCH,
            "payee_account": payee, "payee_name": "对手客户", "payee_bank": PEER_BRANCH,
            "amount": amount, "business_type": "A100", "business_kind": "02102"}


async def books(h: Harness, *accounts: str) -> dict[str, Any]:
    """Balances that show a BEPS payment's steps, and whether the books balance."""
    gw = h.gateway
    internal = gw.ledger.internal_accounts

    def work(tx: Any) -> dict[str, Any]:
        out = {name: gw.ledger.balance(tx, internal[code]) for name, code in
               (("holds", "4001"), ("netted_out", "4002"), ("netted_in", "4003"))}
        out["clearing"] = gw.ledger.clearing_balance(tx)
        out["balanced"] = gw.ledger.trial_balance(tx).balanced
        for account in accounts:
            out[account] = gw.ledger.balance(tx, account)
        return out
    return await gw.store.run(work)


async def wait_state(h: Harness, payment_id: str, state: str, timeout_s: float = 20) -> dict:
    async def reached() -> bool:
        return (await h.gateway.get_transfer(payment_id))["state"] == state
    await until(reached, f"{payment_id} {state}", timeout_s)
    return await h.gateway.get_transfer(payment_id)


async def npc_balance(h: Harness) -> int:
    return (await h.sim("GET", "/sim/stats"))["balances"][BANK]


def events(view: dict[str, Any]) -> list[str]:
    return [e["event"] for e in view["history"]]


def test_saturday_night_is_netted_at_once_and_settled_when_hvps_opens(tmp_path):
    """At 23:00 on a Saturday a BEPS credit is accepted and netted in the next round;
    its round settles only when HVPS opens on Monday, and the ledger shows each step."""
    async def scenario() -> None:
        # Friday's end of day cut over to Monday: HVPS prepares Monday all weekend.
        async with beps_started(tmp_path, SATURDAY_NIGHT, "00", MONDAY) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000 * YUAN)
            payee = await open_account(h, 2, 0, name="收款客户")
            start = await books(h)
            status, answer = await gw.submit_transfer("core", "sat-1", dict(
                credit(payer, "20000.00"), remittance_info=["货款", "/F61/合同 A-7"]))
            accepted = await books(h, payer)

            assert (status, answer["state"], answer["channel"]) == (201, "accepted", "beps")
            assert answer["message"]["type"] == "beps.121.001.01"
            assert accepted[payer] == 80_000 * YUAN and accepted["holds"] == 20_000 * YUAN
            assert accepted["balanced"]

            view = await wait_state(h, answer["id"], "netted")
            netted = await books(h, payer)
            netting = view["history"][-1]["detail"]

            assert events(view)[:4] == ["created", "beps_packed", "beps_sent", "beps_netted"]
            assert netting["netting_date"] == SATURDAY.isoformat()
            assert netting["netting_round"] == "01" and netting["package"].startswith(BANK)
            assert netted["holds"] == 0 and netted["netted_out"] == 20_000 * YUAN
            assert netted["clearing"] == start["clearing"] and netted["balanced"]
            # The package's one remark (AddtlInf): the lines untagged, joined.
            assert view["remittance_info"] == ["货款; 合同 A-7"]

            await h.sim("POST", "/sim/beps/peer/send", {
                "sender": PEER, "receiver": BANK, "account": payee, "name": "收款客户",
                "bank": BRANCH, "amount_fen": 300 * YUAN, "count": 2})
            await until(lambda: _balance_is(h, payee, 600 * YUAN), "incoming credits")
            await asyncio.sleep(3 * ROUND_S)
            night = await books(h, payee)

            assert (await gw.get_transfer(answer["id"]))["state"] == "netted"
            assert night["netted_in"] == 600 * YUAN and night["balanced"]
            assert night["clearing"] == start["clearing"] == await npc_balance(h)

            await h.sim("POST", "/sim/phase", {"status": "10", "date": MONDAY.isoformat()})
            view = await wait_state(h, answer["id"], "settled")
            await until(lambda: _settled_in(h), "the incoming round settled")
            morning = await books(h, payer, payee)

            assert view["history"][-1]["detail"]["settled_on"] == MONDAY.isoformat()
            assert view["beps"] == {"kind": "credit_out", "package_type": "beps.121.001.01",
                                    "package": netting["package"], "taken_out_of": None,
                                    "netting_date": SATURDAY.isoformat(),
                                    "netting_round": "01", "settled_on": MONDAY.isoformat()}
            assert morning["netted_out"] == 0 and morning["netted_in"] == 0
            assert morning["clearing"] == start["clearing"] - 20_000 * YUAN + 600 * YUAN
            assert morning["clearing"] == await npc_balance(h)
            assert morning[payer] == 80_000 * YUAN and morning[payee] == 600 * YUAN
            assert morning["balanced"]
            await assert_wire_valid(h, 5)
    run(scenario())


async def _balance_is(h: Harness, account: str, fen: int) -> bool:
    return (await books(h, account))[account] == fen


async def _settled_in(h: Harness) -> bool:
    return (await books(h))["netted_in"] == 0


def test_net_debit_cap_makes_packages_wait_until_more_collateral(tmp_path):
    """Over its net debit cap our package waits (PR11, queued) round after round; more
    collateral lets the next round net it, once: nothing lost, nothing netted twice."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            payer = await open_account(h, 3, 100_000 * YUAN)
            await h.sim("POST", "/sim/beps/cap", {"participant": BANK, "cap_fen": 50 * YUAN})
            ids = []
            for n, amount in enumerate(("100.00", "80.00")):
                _, answer = await gw.submit_transfer("core", f"cap-{n}", credit(payer, amount))
                ids.append(answer["id"])
            for pid in ids:
                await wait_state(h, pid, "queued")
            await asyncio.sleep(3 * ROUND_S)
            waiting = await h.sim("GET", "/sim/beps/stats")

            assert all([(await gw.get_transfer(pid))["state"] == "queued" for pid in ids])
            assert waiting["rounds"] == [] and waiting["packages"].get("waiting", 0) >= 1

            await h.sim("POST", "/sim/beps/cap", {"participant": BANK,
                                                  "add_fen": 1_000 * YUAN})
            views = [await wait_state(h, pid, "settled") for pid in ids]
            after = await books(h, payer)
            stats = await h.sim("GET", "/sim/beps/stats")

            for view in views:
                assert events(view).count("beps_netted") == 1
                assert "beps_waiting_for_netting" in events(view)
            assert stats["packages"] == {"PR03": len(set(_packages(views)))}
            assert after["holds"] == 0 and after["netted_out"] == 0 and after["balanced"]
            assert after["clearing"] == CLEARING_FEN - 180 * YUAN == await npc_balance(h)
            await assert_wire_valid(h, 4)
    run(scenario())


def _packages(views: list[dict[str, Any]]) -> list[str]:
    return [e["detail"]["package"] for v in views for e in v["history"]
            if e["event"] == "beps_packed"]


def test_debits_both_ways_and_a_periodic_credit(tmp_path):
    """Our debit collects once the payer bank's receipt is netted (a refused line is
    rejected); a peer's debit is paid only with a mandate and the funds; a periodic
    credit travels as beps.125; the day reconciles over the link."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ext = extension_of(gw)
            creditor = await open_account(h, 4, 0, name="示例燃气公司")
            payer = await open_account(h, 5, 10_000 * YUAN)
            poor = await open_account(h, 6, 10 * YUAN)
            stranger = await open_account(h, 7, 10_000 * YUAN)
            collected = []
            for n, debtor in enumerate(("6222000000001234", "6222000000009999")):
                _, view = await ext.submit_debit("core", f"debit-{n}", {
                    "creditor_account": creditor, "creditor_name": "示例燃气公司",
                    "creditor_bank": BRANCH, "debtor_account": debtor,
                    "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH,
                    "amount": "120.00", "agreement": f"XY-{n}"})
                collected.append(view["id"])
            for account in (payer, poor):
                await ext.add_mandate({"account": account, "agreement": "XY-SIM-0001"})
            for account, count in ((payer, 2), (poor, 1), (stranger, 1)):
                await h.sim("POST", "/sim/beps/peer/debit", {
                    "sender": PEER, "receiver": BANK, "account": account, "name": "示例客户",
                    "bank": BRANCH, "amount_fen": 95 * YUAN, "count": count})

            paid = await wait_state(h, collected[0], "settled")
            refused = await wait_state(h, collected[1], "rejected")

            assert "beps_debit_paid" in events(paid)
            assert refused["reason"].startswith("RJ02")
            assert (await books(h, creditor))[creditor] == 120 * YUAN

            inbound = await _inbound_debits(h)
            for pid, state in inbound.items():
                if state not in ("rejected",):
                    await wait_state(h, pid, "settled")
            reasons = await gw.store.run(lambda tx: dict(tx.query(
                "SELECT payer_account, reason FROM payments WHERE msg_type = "
                "'beps.127.001.01' AND direction = 'in' AND state = 'rejected'", ())))
            end = await books(h, payer, poor, stranger)

            assert sorted(inbound.values()).count("rejected") == 2
            assert reasons[poor].startswith("RJ02") and reasons[stranger].startswith("RJ01")
            assert end[payer] == 10_000 * YUAN - 190 * YUAN
            assert end[poor] == 10 * YUAN and end[stranger] == 10_000 * YUAN
            assert end["holds"] == 0 and end["netted_out"] == 0 and end["netted_in"] == 0
            assert end["clearing"] == CLEARING_FEN + 120 * YUAN - 190 * YUAN
            assert end["clearing"] == await npc_balance(h) and end["balanced"]

            _, salary = await ext.submit_periodic("core", "periodic-1", {
                **credit(payer, "1000.00"), "business_type": "E100", "business_kind": "01200",
                "agreement": "PAYROLL-2026"})
            salary = await wait_state(h, salary["id"], "settled")
            peers = (await h.sim("GET", "/sim/stats"))["peers"][PEER]
            recon = await ext.reconcile(MONDAY)

            assert salary["message"]["type"] == "beps.125.001.01"
            assert peers.get("beps.125.001.01") == 1
            assert (await books(h, payer))[payer] == 10_000 * YUAN - 190 * YUAN - 1000 * YUAN
            assert recon["reconciled"], recon
            await assert_wire_valid(h, 10)
    run(scenario())


async def _inbound_debits(h: Harness) -> dict[str, str]:
    async def all_answered() -> bool:
        return await h.gateway.store.run(lambda tx: tx.query_one(
            "SELECT COUNT(*) FROM payments WHERE msg_type = 'beps.127.001.01' AND "
            "direction = 'in'", ())[0]) == 4
    await until(all_answered, "four inbound debits")
    rows = await h.gateway.store.run(lambda tx: tx.query(
        "SELECT id, state FROM payments WHERE msg_type = 'beps.127.001.01' AND "
        "direction = 'in'", ()))
    return dict(rows)


def test_batch_endpoint_packages_and_restart(tmp_path):
    """A batch is accepted item by item over HTTP and replays by key with the same
    answer once its transfers are packed; packages are sealed at the size limit; items left unpacked by a stopped gateway are packed
    after its restart, each in exactly one package."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            ext = extension_of(h.gateway)
            ext.configure(package_size_max=3, package_age_max_s=3600)
            payer = await open_account(h, 8, 100_000 * YUAN)
            batch = [credit(payer, f"{10 + n}.00") for n in range(7)]
            batch.insert(2, credit(payer, "10.001"))
            async with aiohttp.ClientSession() as http:
                first = await _post(http, h, batch)
                await until(lambda: _sealed(h, 2), "two full packages")
                again = await _post(http, h, batch)
                statuses = [r["status"] for r in first["results"]]
                pkg_id = await h.gateway.store.run(lambda tx: tx.query_one(
                    "SELECT id FROM beps_packages ORDER BY id", ())[0])
                package = await _get(http, h, f"/v1/packages/{pkg_id}")
                missing = await _get(http, h, "/v1/packages/nothing", 404)

            assert statuses == [201, 201, 422, 201, 201, 201, 201, 201]
            assert first["results"][2]["errors"][0]["code"] == \
                "amount_must_have_at_most_two_decimals"
            # A replay answers as the first time, to the byte, though the transfers have
            # been packed since (their answers are stored as a reference to each row).
            assert again == first
            assert package["count"] == 3 and len(package["transactions"]) == 3
            assert missing["errors"][0]["code"] == "package_not_found"

            await h.gateway.stop()
            h.gateway = None
            h.gateway = await _restarted(h)
            ids = [r["transfer"]["id"] for r in first["results"] if r["status"] == 201]
            for pid in ids:
                await wait_state(h, pid, "settled")
            packed = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT package_id, COUNT(*) FROM beps_items GROUP BY package_id", ()))

            assert sorted(n for _, n in packed) == [1, 3, 3]
            assert (await books(h))["clearing"] == await npc_balance(h)
    run(scenario())


async def _post(http: aiohttp.ClientSession, h: Harness, batch: list) -> dict[str, Any]:
    async with http.post(f"{h.gateway.url}/v1/transfers/batch", json=batch,
                         headers={"Idempotency-Key": "batch-1"}) as r:
        assert r.status == 200
        return await r.json()


async def _get(http: aiohttp.ClientSession, h: Harness, path: str,
               status: int = 200) -> dict[str, Any]:
    async with http.get(f"{h.gateway.url}{path}") as r:
        assert r.status == status
        return await r.json()


async def _sealed(h: Harness, count: int) -> bool:
    return await h.gateway.store.run(lambda tx: tx.query_one(
        "SELECT COUNT(*) FROM beps_packages", ())[0]) == count


async def _restarted(h: Harness) -> Any:
    from gateway.app import Gateway
    gw = Gateway(h.settings(), clock=h.clock())
    await gw.start()
    extension_of(gw).configure(package_size_max=3, package_age_max_s=0.2)
    return gw


REFERENCE_NAMES = {"beps.128.001.01": None, "beps.125.001.01": None}


async def assert_wire_valid(h: Harness, at_least: int) -> None:
    """Every message on the wire (the gateway's archive, both ways) passes our XSD and,
    where one is published, the reference XSD; `at_least` of them are BEPS traffic."""
    rows = await h.gateway.store.run(lambda tx: tx.query(
        "SELECT mesg_type, envelope FROM archive", ()))
    reference = SHARED / "cnaps" / "reference-xsd"
    checked = 0
    for mesg_type, raw in rows:
        body = etree.fromstring(env_mod.decode(bytes(raw)).body)
        assert catalogue.schema(mesg_type).validate(body), mesg_type
        path = reference / f"{mesg_type}.xsd"
        if reference.exists() and path.exists():
            schema = _reference(path)
            assert schema.validate(body), (mesg_type, schema.error_log)
            checked += mesg_type.startswith(("beps.", "saps.", "ccms.900"))
    if reference.exists():  # without ../shared only our own XSDs can be checked
        assert checked >= at_least, checked


_SCHEMAS: dict[Path, etree.XMLSchema] = {}


def _reference(path: Path) -> etree.XMLSchema:
    if path not in _SCHEMAS:
        _SCHEMAS[path] = etree.XMLSchema(etree.parse(str(path)))
    return _SCHEMAS[path]


def test_stop_payment_refuses_the_debit_with_the_payers_reason(tmp_path):
    """A payer's stop-payment (止付) makes the receipt refuse the debit (RJ06) with the
    payer's reason; the money stays; a debit under another agreement is still paid."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ext = extension_of(gw)
            payer = await open_account(h, 8, 10_000 * YUAN)
            await ext.add_mandate({"account": payer, "agreement": "XY-SIM-0001"})
            stop = await ext.stop_debit({"account": payer, "agreement": "XY-SIM-0001",
                                         "reason": "客户申请止付"})
            await h.sim("POST", "/sim/beps/peer/debit", {
                "sender": PEER, "receiver": BANK, "account": payer, "name": "示例客户",
                "bank": BRANCH, "amount_fen": 95 * YUAN, "count": 1})

            async def answered() -> bool:
                return await gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM payments WHERE msg_type = 'beps.127.001.01' AND "
                    "direction = 'in' AND state = 'rejected'", ())[0]) == 1
            await until(answered, "the stopped debit refused")
            reason = await gw.store.run(lambda tx: tx.query_one(
                "SELECT reason FROM payments WHERE msg_type = 'beps.127.001.01' AND "
                "direction = 'in'", ())[0])

            assert stop["new"] is True
            assert reason.startswith("RJ06") and "客户申请止付" in reason
            assert (await books(h, payer))[payer] == 10_000 * YUAN
            await assert_wire_valid(h, 1)
    run(scenario())


def test_beps_item_cancelled_before_packing_but_final_once_netted(tmp_path):
    """Cancelled while it waits to be packed: hold released, never packed. Once netted a
    BEPS item is final and a cancel is refused."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            returns = next(e for e in gw.extensions if hasattr(e, "request_cancel"))
            extension_of(gw).configure(package_age_max_s=3600.0)  # nothing seals by age
            payer = await open_account(h, 9, 10_000 * YUAN)
            _, waiting = await gw.submit_transfer("core", "c-1", credit(payer, "300.00"))
            cancelled = await returns.request_cancel(waiting["id"], "客户撤销", "test")
            after_cancel = (await books(h, payer))[payer]
            extension_of(gw).configure(package_age_max_s=0.5)
            _, sent = await gw.submit_transfer("core", "c-2", credit(payer, "400.00"))

            async def netted() -> bool:  # settles right after netting while HVPS is open
                state = (await gw.get_transfer(sent["id"]))["state"]
                return state in ("netted", "settled")
            await until(netted, "the second item netted")
            with pytest.raises(PaygateError) as refused:
                await returns.request_cancel(sent["id"], "太晚了", "test")
            state = (await gw.get_transfer(waiting["id"]))["state"]

            assert cancelled["state"] == "cancelled" and state == "cancelled"
            assert after_cancel == 10_000 * YUAN
            assert refused.value.code == "beps_item_final_after_netting"
    run(scenario())


def test_reconciliation_details_name_the_package_we_never_received(tmp_path):
    """A peer's package netted at the NPC but lost on its way to us shows as a received
    total that differs, and beps.722/723 name that very package."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            ext = extension_of(h.gateway)
            payee = await open_account(h, 10, 0, name="收款客户")
            await h.sim("POST", "/sim/faults", {"drop": 1.0})
            await h.sim("POST", "/sim/beps/peer/send", {
                "sender": PEER, "receiver": BANK, "account": payee, "name": "收款客户",
                "bank": BRANCH, "amount_fen": 250 * YUAN, "count": 3})
            await h.sim("POST", "/sim/beps/net", {})
            await asyncio.sleep(3 * ROUND_S)
            await h.sim("POST", "/sim/faults", {"drop": 0.0})
            totals = await ext.reconcile(MONDAY)
            await until(lambda: MONDAY.isoformat() in ext.details, "beps.723 compared")
            details = ext.details[MONDAY.isoformat()]

            assert totals["reconciled"] is False
            assert details["reconciled"] is False
            lost = details["differences"][0]
            assert lost["only_at"] == "npc" and lost["side"] == "SR01"
            assert lost["count"] == 3 and lost["total_fen"] == 750 * YUAN
    run(scenario())


async def package_of(h: Harness, payment_id: str) -> tuple[str, str]:
    """(MsgId of the package that carried a BEPS payment, the payment's TxId)."""
    return await h.gateway.store.run(lambda tx: tx.query_one(
        "SELECT k.msg_id, p.tx_id FROM beps_items i JOIN beps_packages k ON k.id = "
        "i.package_id JOIN payments p ON p.id = i.payment_id WHERE i.payment_id = ?",
        (payment_id,)))


def test_beps_credits_returned_both_ways(tmp_path):
    """A BEPS credit to an unknown account is returned from suspense (hvps.111 A105
    naming the beps.121); a peer's return of our settled BEPS payment moves it to
    returned and credits our payer back."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            returns = next(e for e in gw.extensions if hasattr(e, "request_return"))
            payer = await open_account(h, 11, 10_000 * YUAN)
            _, ours = await gw.submit_transfer("core", "r-1", credit(payer, "800.00"))
            await wait_state(h, ours["id"], "settled")
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": payer,
                "payee_name": "示例客户", "payee_bank": BRANCH, "amount_fen": 800 * YUAN,
                "count": 1, "business_type": "A105", "business_kind": "02108",
                "priority": "NORM", "remittance": [
                    "/F40/beps.121.001.01", f"/E50/{ours['message']['msg_id']}",
                    f"/A70/{BANK}", "/H20/收款人账户已销户"]})
            returned = await wait_state(h, ours["id"], "returned")

            await h.sim("POST", "/sim/beps/peer/send", {
                "sender": PEER, "receiver": BANK, "account": "6299000000000077",
                "name": "无此户", "bank": BRANCH, "amount_fen": 120 * YUAN, "count": 1})
            await h.sim("POST", "/sim/beps/net", {})

            async def parked() -> bool:
                return await gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM payments WHERE channel = 'beps' AND direction = "
                    "'in' AND state = 'suspense'", ())[0]) == 1
            await until(parked, "the BEPS credit in suspense")
            incoming, tx_id = await gw.store.run(lambda tx: tx.query_one(
                "SELECT id, tx_id FROM payments WHERE channel = 'beps' AND direction = "
                "'in' AND state = 'suspense'", ()))
            back = await returns.request_return(incoming, "账户不存在", "test")
            # It names the package that brought the credit and the transaction in it.
            their_package, _ = await package_of(h, incoming)
            lines = (await gw.get_transfer(back["return"]["id"]))["remittance_info"]
            assert f"/E50/{their_package}" in lines and f"/E51/{tx_id}" in lines
            await wait_state(h, incoming, "returned", timeout_s=30)
            end = await books(h, payer)

            assert "returned_by_payee_bank" in events(returned)
            assert back["return"]["business_type"] == "A105"
            assert end[payer] == 10_000 * YUAN
            assert end["balanced"] and end["clearing"] == await npc_balance(h)
    run(scenario())


def test_returns_naming_our_package_and_its_transaction_find_the_payment(tmp_path):
    """A peer returns our BEPS credits naming the package that carried each (its MsgId)
    and the transaction in it: once in a beps.121 A105 whose RtrInf names them, once in
    an hvps.111 A105 with /E50/ the package and /E51/ the TxId. Each original moves to
    returned and its payer is paid back once."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            payer = await open_account(h, 12, 10_000 * YUAN)
            _, first = await gw.submit_transfer("core", "rp-1", credit(payer, "300.00"))
            await wait_state(h, first["id"], "settled")
            _, second = await gw.submit_transfer("core", "rp-2", credit(payer, "200.00"))
            await wait_state(h, second["id"], "settled")
            assert (await books(h, payer))[payer] == 9_500 * YUAN

            package, tx_id = await package_of(h, first["id"])
            assert package != first["message"]["msg_id"]  # named by the package, not by us
            await h.sim("POST", "/sim/beps/peer/send", {
                "sender": PEER, "receiver": BANK, "account": payer, "name": "示例客户",
                "bank": BRANCH, "amount_fen": 300 * YUAN,
                "returns": {"msg_id": package, "tx_id": tx_id, "reason": "收款人账户已销户"}})
            await h.sim("POST", "/sim/beps/net", {})
            returned = await wait_state(h, first["id"], "returned", timeout_s=30)
            assert "returned_by_payee_bank" in events(returned)

            package, tx_id = await package_of(h, second["id"])
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": payer,
                "payee_name": "示例客户", "payee_bank": BRANCH, "amount_fen": 200 * YUAN,
                "count": 1, "business_type": "A105", "business_kind": "02108",
                "priority": "NORM", "remittance": [
                    "/F40/beps.121.001.01", f"/E50/{package}", f"/E51/{tx_id}",
                    f"/A70/{BANK}", "/H20/收款人账户已销户"]})
            await wait_state(h, second["id"], "returned", timeout_s=30)
            end = await books(h, payer)
            assert end[payer] == 10_000 * YUAN
            assert end["balanced"] and end["clearing"] == await npc_balance(h)
            unmatched = await gw.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM alerts WHERE code = 'incoming_return_not_matched'",
                ())[0])
            assert unmatched == 0
    run(scenario())


def test_a_batch_mixing_channels_keys_and_refusals_commits_each_exactly_once(tmp_path):
    """One batch: BEPS credits, an urgent one routed to HVPS, one the payer cannot cover
    any more, a key used twice (same body: the same answer; other body: a conflict).
    Each accepted one is held once and settles once; the refused hold leaves no trace."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            payer = await open_account(h, 12, 1_000 * YUAN)
            before = await books(h, payer)
            urgent = dict(credit(payer, "300.00"), urgency="urgent")
            batch = [dict(credit(payer, "200.00"), idempotency_key="k-a"),
                     dict(urgent, idempotency_key="k-u"),
                     dict(credit(payer, "400.00"), idempotency_key="k-b"),
                     dict(credit(payer, "200.01"), idempotency_key="k-poor"),
                     dict(credit(payer, "200.00"), idempotency_key="k-a"),
                     dict(credit(payer, "1.00"), idempotency_key="k-b"),
                     dict(credit(payer, "1.001"), idempotency_key="k-r"),
                     dict(credit(payer, "1.00"), idempotency_key="k-r"),
                     dict(credit(payer, "1.001"), idempotency_key="k-r")]
            async with aiohttp.ClientSession() as http:
                first = await _post(http, h, batch)
                again = await _post(http, h, batch)
            results = first["results"]
            assert [r["status"] for r in results] == [201, 201, 201, 422, 201, 409,
                                                      422, 409, 422]
            assert results[3]["errors"][0]["code"] == "payer_funds_insufficient"
            assert results[5]["errors"][0]["code"] == "idempotency_key_reused_with_other_body"
            assert results[4]["transfer"] == results[0]["transfer"]
            assert [r["transfer"]["channel"] for r in results[:3]] == ["beps", "hvps", "beps"]
            assert [r["status"] for r in again["results"]] == [201, 201, 201, 422, 201, 409,
                                                                422, 409, 422]
            assert [r.get("transfer", {}).get("id") for r in again["results"]] == \
                [r.get("transfer", {}).get("id") for r in results]
            for r in results[:3]:
                await wait_state(h, r["transfer"]["id"], "settled")
            after = await books(h, payer)
            holds = await h.gateway.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM ledger_entry WHERE op = 'hold'", ())[0])
            assert after["balanced"]
            assert after[payer] == before[payer] - 900 * YUAN
            assert holds == 3
            assert after["clearing"] == await npc_balance(h)
    run(scenario())
