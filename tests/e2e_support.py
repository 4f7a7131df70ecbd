"""Helpers for end-to-end tests: a gateway, the simulated NPC (its own process) and an
embedded Redis on loopback, on a virtual clock set inside the HVPS day."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

from gateway.clock import SHANGHAI, ScaledClock
from gateway.errors import PaygateError
from gateway.harness import Harness
from ledger.testing import customer_account

BANK, BRANCH = "999100000019", "999100000027"
PEER, PEER_BRANCH = "888200000015", "888200000023"
WORK_DATE = date(2026, 12, 7)  # a Monday, a statutory working day
YUAN = 100
SHARED = Path(__file__).resolve().parents[2] / "shared"


@contextlib.asynccontextmanager
async def started(tmp_path: Path, clearing_fen: int = 10_000_000 * YUAN,
                  start: datetime | None = None, **settings: Any) -> AsyncIterator[Harness]:
    at = start or datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)
    clock = ScaledClock(start=at, anchor_epoch_s=time.time(), rate=1.0)
    h = Harness(tmp_path, clock_spec=clock.to_spec(),
                balances_fen={BANK: clearing_fen, PEER: 10**14}, settings_overrides=settings,
                sim_args=["--phase", "00", "--date", WORK_DATE.isoformat()])
    await h.start()
    try:
        gw = h.gateway
        await gw.store.run(lambda tx: gw.ledger.fund_clearing(tx, "test:opening", clearing_fen,
                                                             WORK_DATE))
        await phase(h, "10")
        await until(lambda: gw.hvps_open, "HVPS open")
        yield h
    finally:
        await h.stop()


async def phase(h: Harness, status: str, day: date = WORK_DATE) -> None:
    await h.sim("POST", "/sim/phase", {"status": status, "date": day.isoformat()})


async def until(predicate: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def open_account(h: Harness, sequence: int, balance_fen: int, name: str = "示例客户"
                       ) -> str:
    gw = h.gateway
    account = customer_account(sequence, "corporate")

    def work(tx: Any) -> None:
        gw.ledger.open_customer_account(tx, account, name, "corporate", WORK_DATE)
        if balance_fen:
            gw.ledger.deposit(tx, f"test:deposit:{account}", account, balance_fen, WORK_DATE)
    await gw.store.run(work)
    return account


def transfer(account: str, amount: str, **extra: Any) -> dict[str, Any]:
    body = {"payer_account": account, "payer_name": "示例客户", "payer_bank": BRANCH,
            "payee_account": "6222000000000001", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH, "amount": amount, "urgency": "urgent"}
    body.update(extra)
    return body


async def state_of(h: Harness, payment_id: str) -> str:
    return (await h.gateway.get_transfer(payment_id))["state"]


async def wait_state(h: Harness, payment_id: str, state: str, timeout_s: float = 20.0) -> None:
    async def check() -> bool:
        return await state_of(h, payment_id) == state
    await until(check, f"{payment_id} in state {state}", timeout_s)


async def payer_after_one_settled(h: Harness) -> str:
    """A payer's account with 1,000 yuan whose first payment (1.00) settled: the link
    is up and has taken a message."""
    payer = await open_account(h, 1, 1_000 * YUAN)
    _, first = await h.gateway.submit_transfer("core", "ok-1", transfer(payer, "1.00"))
    await wait_state(h, first["id"], "settled")
    return payer


async def balance(h: Harness, account: str) -> int:
    gw = h.gateway
    return await gw.store.run(lambda tx: gw.ledger.balance(tx, account))


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[tuple[bytes, str]]]]:
    """A core system's webhook URL on 127.0.0.1 that records (body, signature)."""
    got: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.read(), request.headers.get("X-Paygate-Signature", "")))
        return web.Response(status=204)
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", got
    finally:
        await runner.cleanup()


async def peer_payment_lost(h: Harness, payee: str, amount_fen: int) -> dict[str, Any]:
    """A peer's payment to `payee` (held by 收款客户) that the NPC settles but whose
    message to us the link drops (fault `drop`); the simulator's answer naming it."""
    await h.sim("POST", "/sim/faults", {"drop": 1.0})
    sent = await h.sim("POST", "/sim/peer/send", {
        "sender": PEER, "receiver": BANK, "payee_account": payee,
        "payee_name": "收款客户", "payee_bank": BRANCH, "amount_fen": amount_fen,
        "count": 1, "business_type": "A100", "business_kind": "02102",
        "priority": "NORM"})
    await asyncio.sleep(0.5)
    await h.sim("POST", "/sim/faults", {"drop": 0.0})
    return sent


# The link tries a message the NPC did not take again after a pause; a request that
# lands while an attempt is on its way is refused, to be asked again once it has ended
# (payment_delivery_under_way, package_delivery_under_way), as an operator would.
DELIVERY_UNDER_WAY = ("payment_delivery_under_way", "package_delivery_under_way")


async def ask(ops: Any, who: Any, action: str, target: str, *args: Any, **kwargs: Any
              ) -> Any:
    for _ in range(100):
        try:
            return await ops.console.request(who, action, target, *args, **kwargs)
        except PaygateError as e:
            if e.code not in DELIVERY_UNDER_WAY:
                raise
        await asyncio.sleep(0.05)
    return await ops.console.request(who, action, target, *args, **kwargs)
