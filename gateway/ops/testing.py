"""A gateway with the console on loopback, for the console's tests and for trying the
page by hand.

`OpsRig` starts a bare gateway (embedded Redis, no simulator, the NPC URL pointing at
a closed loopback port) on a manual clock at 07:00 of a working day, so HVPS is not
open yet and new payments wait in `held` for the window: nothing leaves by itself,
and every change a test sees is one the test made. The gateway runs on its own event
loop in a background thread (`LoopThread`), so that synchronous code (pytest, the
command line, a browser driver) can use it between calls.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Coroutine, Iterator

import aiohttp
from aiohttp import web

from gateway import payments, screening
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.ops.web import OPS_KEY, Ops, add_routes
from gateway.redisproc import free_port
from ledger.testing import customer_account

START = datetime(2026, 12, 7, 7, 0, tzinfo=SHANGHAI)  # a Monday, before HVPS opens
PAYER_NAME = "示例客户甲"
PAYER_BRANCH = "999100000027"
PAYEE_BANK = "888200000023"
PEER_DIRECT, PEER_BANK_BRANCH = "888200000015", "888200000023"  # the bank paying us
OPENING_FEN = 100_000_000_00
CALL_TIMEOUT_S = 30.0


class LoopThread:
    """An event loop running in a daemon thread; `run` waits for one coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ops-loop",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CALL_TIMEOUT_S)
        self.loop.close()


async def console_call(url: str, method: str, path: str, user: str = "op1", body: Any = None,
                       raw: bytes | None = None) -> tuple[int, Any]:
    """One request to the console at `url` as the demo operator `user` (Basic
    credentials, the demo password USER-demo): its status and decoded JSON answer. The
    body is `body` as JSON, or `raw` as given (a body the console must refuse)."""
    token = base64.b64encode(f"{user}:{user}-demo".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, data=data, headers=headers) as r:
            return r.status, json.loads(await r.text())


@dataclass
class OpsRig:
    data_dir: Path
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    clock: ManualClock = field(default_factory=lambda: ManualClock(START))
    gw: Gateway | None = None
    ops: Ops | None = None
    runner: web.AppRunner | None = None
    url: str = ""
    payer_account: str = field(default_factory=lambda: customer_account(1, "corporate"))

    async def start(self) -> "OpsRig":
        values = dict(data_dir=str(self.data_dir), port=0,
                      npc_url=f"http://127.0.0.1:{free_port()}/link/inbound")
        values.update(self.settings_overrides)
        self.gw = Gateway(Settings(**values), clock=self.clock)
        await self.gw.start(serve_http=False)
        await self._stop_workers()
        await self.gw.store.run(self._open_payer)
        app = web.Application()
        add_routes(app, self.gw)
        self.ops = app[OPS_KEY]
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def _stop_workers(self) -> None:
        # Stream consumers would pick up released payments and try to send them; the
        # console's tests look at the streams themselves, so nothing consumes them.
        names = {w.name for w in self.gw.workers}
        for worker in self.gw.workers:
            worker.stop()
        tasks = [t for t in asyncio.all_tasks() if t.get_name() in names]
        await asyncio.gather(*tasks)

    def _open_payer(self, tx: Any) -> None:
        day = self.gw.work_date
        self.gw.ledger.open_customer_account(tx, self.payer_account, PAYER_NAME,
                                             "corporate", day)
        self.gw.ledger.deposit(tx, "ops-rig:opening", self.payer_account, OPENING_FEN, day)

    async def submit(self, key: str, amount: str = "1234.56", urgency: str = "urgent",
                     **fields: Any) -> dict[str, Any]:
        """A new outgoing HVPS payment from the rig's payer; the API's answer."""
        body = {"payer_account": self.payer_account, "payer_name": PAYER_NAME,
                "payer_bank": PAYER_BRANCH, "payee_account": "6222000011112222",
                "payee_name": "收款单位乙", "payee_bank": PAYEE_BANK, "amount": amount,
                "urgency": urgency}
        body.update(fields)
        status, answer = await self.gw.submit_transfer("ops-tests", key, body)
        assert status == 201, answer
        return answer

    async def receive(self, key: int, amount_fen: int, payee_account: str = "",
                      payee_name: str = "查无此人", payer_name: str = "对手客户") -> str:
        """An incoming HVPS credit from a peer bank, booked as the inbound handler books
        it: to `payee_account` when it is one of ours (credited), else into suspense
        (an account of no customer), or there with the screening's reason when it
        matches a party (a listed `payer_name`: gateway.screening.parked). `key` (1 to
        9999) makes its ids."""
        assert self.gw is not None
        gw, day, now = self.gw, self.gw.work_date, self.clock.now()
        msg_id = f"{day:%Y%m%d}{key:08d}"
        pid = f"I{PEER_DIRECT}{msg_id}"
        row = {"id": pid, "direction": "in", "channel": "hvps", "state": "received",
               "msg_type": "hvps.111.001.01", "msg_id": msg_id, "tx_id": msg_id,
               "end_to_end_id": f"ops-rig-{key}", "sender_direct": PEER_DIRECT,
               "receiver_direct": gw.settings.bank_code, "amount_fen": amount_fen,
               "currency": "CNY", "payer_account": "6222000000000009",
               "payer_name": payer_name, "payer_bank": PEER_BANK_BRANCH,
               "payee_account": payee_account or f"62990000{key:08d}",
               "payee_name": payee_name, "payee_bank": PAYER_BRANCH,
               "business_type": "A100", "business_kind": "02102", "urgency": "normal",
               "priority": 3, "remittance": [], "route": {}, "work_date": day.isoformat(),
               "created_at": now.isoformat(), "updated_at": now.isoformat()}

        def book(tx: Any) -> None:
            payments.insert(tx, row)
            held_for = screening.parked(gw, [row]).get(pid)
            credit = gw.ledger.credit_incoming(tx, f"{pid}:credit", row["payee_account"],
                                               payee_name, amount_fen, day, pid,
                                               parked=held_for)
            state = "credited" if credit.kind == "credited" else "suspense"
            payments.transition(tx, row, state, "credit", now,
                                pending_no=credit.pending_no, reason=held_for)
        await gw.store.run(book)
        return pid

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.gw is not None:
            await self.gw.stop()


class ConsoleRig:
    """An OpsRig driven from a test's thread: the console as an operator, the store's
    work, and requests for a second person's approval."""

    def __init__(self, loop: LoopThread, rig: OpsRig) -> None:
        self.loop, self.rig, self.keys = loop, rig, iter(range(1, 10_000))
        self.gw = rig.gw

    def call(self, method: str, path: str, user: str = "op1", body: Any = None
             ) -> tuple[int, Any]:
        return self.loop.run(console_call(self.rig.url, method, path, user, body))

    def run(self, work: Any) -> Any:
        return self.loop.run(self.gw.store.run(work))

    def request(self, action: str, target: str, note: str = "", user: str = "op1"
                ) -> tuple[int, Any]:
        return self.call("POST", "/ops/api/requests", user,
                         {"action": action, "target": target, "params": {}, "note": note})

    def approve(self, request_id: int, user: str = "sup1") -> tuple[int, Any]:
        return self.call("POST", f"/ops/api/requests/{request_id}/approve", user, {})


@contextmanager
def serving(data_dir: Path, settings_overrides: dict[str, Any] | None = None
            ) -> Iterator[tuple[LoopThread, OpsRig]]:
    """An `OpsRig` started on its own loop thread, stopped on leaving (a test module's
    shared gateway)."""
    loop = LoopThread()
    rig = loop.run(OpsRig(data_dir, settings_overrides or {}).start())
    try:
        yield loop, rig
    finally:
        loop.run(rig.stop())
        loop.close()


# HVPS sending held as a refused ccms.801 leaves it (a row of gateway.status_hold): the
# NPC announced 00 (closed) while the gateway, open, judged the change illegal and kept 10.
HVPS_HOLD = {"since": "2026-12-07T07:00:00+08:00", "orig": "10", "cur": "00",
             "notice_date": "2026-12-07", "outcome": "illegal", "status": "10",
             "work_date": "2026-12-07", "notices": 1}


@contextmanager
def hvps_sending_held(loop: LoopThread, rig: OpsRig,
                      hold: dict[str, Any] = HVPS_HOLD) -> Iterator[dict[str, Any] | None]:
    """The rig's gateway holding HVPS sending as `hold` says while the block runs (what it
    shows; nothing leaves a lane meanwhile, none does before HVPS opens anyway); the hold
    it had, given to the block, is put back on leaving."""
    async def put(held: dict[str, Any] | None) -> dict[str, Any] | None:
        was, rig.gw.hvps_hold = rig.gw.hvps_hold, held
        return was

    was = loop.run(put(hold))
    try:
        yield was
    finally:
        loop.run(put(was))
