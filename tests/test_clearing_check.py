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

from gateway import clearing_check, critical
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.redisproc import free_port
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
