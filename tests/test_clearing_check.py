"""`serve --simulate` compares our clearing account in the books with the simulated NPC's
balance for us only once nothing is in flight between the two (gateway.clearing_check):
a difference that lasts while messages are on their way raises nothing, a real one
alerts once and stays open, and the gateway closes it when the two agree again."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import clearing_check, critical, payments
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.redisproc import free_port
from ledger.testing import customer_account
from tests.beps_support import credit_row
from tests.e2e_support import until

MORNING = datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)
OPENING_FEN = 1_000_000_00


class FakeNpc:
    """What /sim/stats says: our balance at the NPC and how many messages wait to go."""

    def __init__(self, gw: Gateway, balance_fen: int, pending: int) -> None:
        self.gateway = gw
        self.balance_fen = balance_fen
        self.pending = pending
        self.looks = 0

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        assert (method, path) == ("GET", "/sim/stats")
        self.looks += 1
        return {"balances": {self.gateway.settings.bank_code: self.balance_fen},
                "outbox": {"pending": self.pending} if self.pending else {"sent": 3}}


def alerts(gw: Gateway) -> Any:
    return gw.store.run(lambda tx: tx.query(
        "SELECT a.id, a.detail, k.by FROM alerts a LEFT JOIN alert_acks k "
        "ON k.alert_id = a.id WHERE a.code = ? ORDER BY a.id", (clearing_check.CODE,)))


async def with_gateway(tmp_path: Path, scenario: Any) -> Any:
    gw = Gateway(Settings(data_dir=str(tmp_path / "gateway"), port=0,
                          npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                 clock=ManualClock(MORNING))
    await gw.start(serve_http=False)
    try:
        await gw.store.run(lambda tx: gw.ledger.fund_clearing(
            tx, "test:opening", OPENING_FEN, gw.work_date))
        return await scenario(gw)
    finally:
        await gw.stop()


@pytest.fixture(autouse=True)
def quick_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clearing_check, "LOOK_EVERY_S", 0.01)
    monkeypatch.setattr(clearing_check, "OPEN_LOOK_EVERY_S", 0.02)


def test_a_difference_while_notices_are_on_their_way_raises_nothing(tmp_path: Path) -> None:
    """The NPC settled 500.00 yuan for us and its notice waits for delivery: the books
    are behind for that while, and no comparison is made until the notice is taken."""
    async def scenario(gw: Gateway) -> dict[str, Any]:
        npc = FakeNpc(gw, OPENING_FEN + 500_00, pending=1)
        watch = asyncio.create_task(clearing_check.watch(npc))
        await until(lambda: npc.looks >= 5, "several looks while in flight")
        during = await alerts(gw)
        await gw.store.run(lambda tx: gw.ledger.fund_clearing(
            tx, "test:notice-taken", 500_00, gw.work_date))
        npc.pending = 0
        await asyncio.wait_for(watch, 5)
        return {"during": during, "after": await alerts(gw)}

    seen = asyncio.run(with_gateway(tmp_path, scenario))

    assert seen == {"during": [], "after": []}


def test_an_alert_of_an_earlier_start_is_closed_when_the_two_agree(tmp_path: Path) -> None:
    async def scenario(gw: Gateway) -> tuple[int, Any]:
        earlier = await gw.store.run(lambda tx: gw.alert(
            tx, clearing_check.CODE, ledger_fen=1, npc_fen=2))
        await asyncio.wait_for(clearing_check.watch(FakeNpc(gw, OPENING_FEN, 0)), 5)
        return earlier, await alerts(gw)

    earlier, after = asyncio.run(with_gateway(tmp_path, scenario))

    assert [(i, by) for i, _, by in after] == [(earlier, critical.GATEWAY)]


def test_a_real_difference_alerts_once_and_stays_until_the_two_agree(tmp_path: Path) -> None:
    """Nothing in flight and the NPC holds 700.00 yuan more than the books: one alert with
    both figures, open on every later look; funded to agree, the gateway closes it."""
    async def scenario(gw: Gateway) -> dict[str, Any]:
        npc = FakeNpc(gw, OPENING_FEN + 700_00, pending=0)
        watch = asyncio.create_task(clearing_check.watch(npc))
        await until(lambda: alerts(gw), "the alert")
        raised_at = npc.looks
        await until(lambda: npc.looks >= raised_at + 6, "more looks with the alert open")
        during = await alerts(gw)
        running = not watch.done()
        npc.balance_fen = OPENING_FEN
        await asyncio.wait_for(watch, 5)
        return {"during": during, "running": running, "after": await alerts(gw)}

    seen = asyncio.run(with_gateway(tmp_path, scenario))

    assert len(seen["during"]) == 1 and seen["running"]
    alert_id, detail, by = seen["during"][0]
    assert by is None
    assert '"ledger_fen": 100000000' in detail and '"npc_fen": 100070000' in detail
    assert [(i, by) for i, _, by in seen["after"]] == [(alert_id, critical.GATEWAY)]


def sent_hvps_payment(gw: Gateway, amount_fen: int) -> Any:
    """An outgoing HVPS payment of `amount_fen`, its payer's money held, `sent`: its
    result not taken yet."""
    account = customer_account(5)

    def work(tx: Any) -> dict[str, Any]:
        gw.ledger.open_customer_account(tx, account, "付款客户", "personal", gw.work_date)
        gw.ledger.deposit(tx, "test:deposit", account, amount_fen, gw.work_date)
        row = dict(credit_row(1, MORNING, "hvps.111.001.01", "sent"), channel="hvps",
                   amount_fen=amount_fen, payer_account=account, payer_name="付款客户",
                   urgency="urgent", priority=2, work_date=gw.work_date.isoformat())
        row["hold_id"] = gw.ledger.hold(tx, "test:hold", account, amount_fen, gw.work_date,
                                        row["id"])
        payments.insert(tx, row)
        return row
    return gw.store.run(work)


def result_taken(gw: Gateway, payment: dict[str, Any]) -> Any:
    """The NPC's PR04 for the payment, taken at last (a status query's answer): the
    books settle it from the payer's hold, lowering our clearing account."""
    def work(tx: Any) -> None:
        gw.ledger.settle(tx, "test:settled", payment["hold_id"], gw.work_date)
        payments.transition(tx, payments.get(tx, payment["id"]), "settled", "hvps_settled",
                            gw.clock.now())
    return gw.store.run(work)


def test_a_difference_while_results_are_awaited_raises_nothing(tmp_path: Path) -> None:
    """After a restart the NPC has settled a 300.00 yuan HVPS payment whose result was lost:
    nothing is in flight on the link, the payment is `sent` in our books, and the NPC's
    figure is below the books by its amount. That is money on its way: no alert until the
    status query's answer settles it, after which the two agree and the check ends."""
    async def scenario(gw: Gateway) -> dict[str, Any]:
        payment = await sent_hvps_payment(gw, 300_00)
        npc = FakeNpc(gw, OPENING_FEN - 300_00, pending=0)
        watch = asyncio.create_task(clearing_check.watch(npc))
        await until(lambda: npc.looks >= 6, "several quiet looks with the result awaited")
        during = await alerts(gw)
        await result_taken(gw, payment)
        await asyncio.wait_for(watch, 5)
        return {"during": during, "after": await alerts(gw)}

    seen = asyncio.run(with_gateway(tmp_path, scenario))

    assert seen == {"during": [], "after": []}


@pytest.mark.parametrize("npc_fen", [OPENING_FEN - 300_01, OPENING_FEN + 1])
def test_a_difference_results_awaited_cannot_explain_alerts(tmp_path: Path,
                                                             npc_fen: int) -> None:
    """A 300.00 yuan HVPS payment awaits its result, but the NPC's figure is 300.01 yuan
    below the books, or above them (an outgoing payment only lowers it): a real
    difference, alerted as ever."""
    async def scenario(gw: Gateway) -> Any:
        await sent_hvps_payment(gw, 300_00)
        npc = FakeNpc(gw, npc_fen, pending=0)
        watch = asyncio.create_task(clearing_check.watch(npc))
        try:
            await until(lambda: alerts(gw), "the alert")
        finally:
            watch.cancel()
        return await alerts(gw)

    raised = asyncio.run(with_gateway(tmp_path, scenario))

    assert len(raised) == 1 and f'"npc_fen": {npc_fen}' in raised[0][1]


def beps_item(gw: Gateway, side: str, netted: bool) -> Any:
    """A BEPS item of 200.00 yuan not settled in our books: netted into a round (in the
    books: what we pay moved from its hold to the netted obligations, what we receive
    credited to the payee against the netted receivables), or in a package of ours sent
    and waiting for its netting result."""
    account = customer_account(6)

    def work(tx: Any) -> None:
        gw.ledger.open_customer_account(tx, account, "收款客户", "personal", gw.work_date)
        if netted and side == "C":
            gw.ledger.credit_incoming_netted(tx, "test:netted-in", account, "收款客户",
                                             200_00, gw.work_date, "test")
            return
        gw.ledger.deposit(tx, "test:deposit", account, 200_00, gw.work_date)
        hold_id = gw.ledger.hold(tx, "test:hold", account, 200_00, gw.work_date, "P1")
        if netted:
            gw.ledger.net(tx, "test:netted-out", hold_id, gw.work_date)
            return
        tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, "
                   "receiver, count, total_fen, state, created_at, updated_at) VALUES "
                   "('K1', 'out', 'beps.121.001.01', 'k1', 'a', 'b', 1, 20000, 'sent', ?, ?)",
                   (MORNING.isoformat(), MORNING.isoformat()))
        tx.execute("INSERT INTO beps_items (payment_id, kind, side, counterparty, msg_type, "
                   "amount_fen, package_id, created_at) VALUES "
                   "('P1', 'credit_out', 'D', 'b', 'beps.121.001.01', 20000, 'K1', ?)",
                   (MORNING.isoformat(),))
    return gw.store.run(work)


@pytest.mark.parametrize(("side", "netted", "npc_fen"), [
    ("D", True, OPENING_FEN - 200_00), ("C", True, OPENING_FEN + 200_00),
    ("D", False, OPENING_FEN - 200_00)])
def test_a_difference_beps_items_not_settled_explain_raises_nothing(
        tmp_path: Path, side: str, netted: bool, npc_fen: int) -> None:
    """The NPC settled a round (or netted and settled a package whose result is lost)
    with an item of 200.00 yuan our books have not settled yet: its amount, down for what
    we pay and up for what we receive, is on its way and raises nothing."""
    async def scenario(gw: Gateway) -> Any:
        await beps_item(gw, side, netted)
        npc = FakeNpc(gw, npc_fen, pending=0)
        watch = asyncio.create_task(clearing_check.watch(npc))
        try:
            await until(lambda: npc.looks >= 6, "several quiet looks")
        finally:
            watch.cancel()
        return await alerts(gw)

    assert asyncio.run(with_gateway(tmp_path, scenario)) == []
