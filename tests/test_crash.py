"""Crash anywhere, lose nothing, send nothing twice.

Steady traffic both ways while the gateway, the simulated NPC and Redis are killed with
SIGKILL at random moments and restarted. Afterwards every payment the core system got an
acknowledgement for has exactly one final state, the NPC settled none twice, the ledger
balances and agrees with the NPC's balance of our clearing account.

Budget: about 90 seconds. `PAYGATE_CRASH_SECONDS` and `PAYGATE_CRASH_SEED` make the
longer manual run described in the README.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

import aiohttp
import pytest

import ledger
from gateway import dialect
from gateway.messages.signing import write_keypair
from gateway.store import SCHEMA
from ledger.testing import customer_account
from tests.crash_support import System

pytestmark = pytest.mark.crash

BANK, BRANCH, PEER_BRANCH = "999100000019", "999100000027", "888200000023"
YUAN = 100
CLEARING_FEN = 10**13
TRAFFIC_S = float(os.environ.get("PAYGATE_CRASH_SECONDS", "25"))
SEED = int(os.environ.get("PAYGATE_CRASH_SEED", "20261207"))
FINAL = {"settled", "rejected", "cancelled"}
SETTLE_WAIT_S = 90.0


def prepare_books(system: System, accounts: list[str]) -> None:
    (system.root / "gateway").mkdir(parents=True, exist_ok=True)
    write_keypair(system.root / "keys", BANK)
    db = ledger.connect(system.db_url)
    led = ledger.Ledger()
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        led.install(tx)
        led.fund_clearing(tx, "crash:opening", CLEARING_FEN, "2026-12-07")
        for i, account in enumerate(accounts):
            led.open_customer_account(tx, account, f"客户{i}", "corporate", "2026-12-07")
            led.deposit(tx, f"crash:deposit:{i}", account, 10**12, "2026-12-07")
    db.close()


class Core:
    """The core system: submits transfers and retries with the same key until answered."""

    def __init__(self, system: System, accounts: list[str], rng: random.Random) -> None:
        self.system = system
        self.accounts = accounts
        self.rng = rng
        self.pending: dict[str, dict] = {}
        self.acked: dict[str, str] = {}   # idempotency key -> payment id
        self.refused: dict[str, int] = {}
        self.next = 0

    def new(self) -> None:
        key = f"crash-{self.next}"
        self.next += 1
        payer = self.rng.choice(self.accounts)
        self.pending[key] = {
            "payer_account": payer, "payer_name": f"客户{self.accounts.index(payer)}",
            "payer_bank": BRANCH, "payee_account": f"62{self.next:014d}",
            "payee_name": "收款人", "payee_bank": PEER_BRANCH,
            "amount": f"{self.rng.randint(60_000, 500_000)}.00", "urgency": "urgent"}

    async def flush(self, http: aiohttp.ClientSession) -> None:
        for key, body in list(self.pending.items()):
            try:
                async with http.post(f"{self.system.url('gateway')}/v1/transfers", json=body,
                                     headers={"Idempotency-Key": key}) as r:
                    answer = await r.json(content_type=None)
                    if r.status == 201:
                        self.acked[key] = answer["id"]
                        del self.pending[key]
                    elif r.status < 500 and r.status != 429:
                        self.refused[key] = r.status
                        del self.pending[key]
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return  # the gateway is down; try again later with the same keys


async def chaos(system: System, rng: random.Random, report: dict) -> None:
    deadline = time.monotonic() + TRAFFIC_S
    victims: list[str] = []
    while time.monotonic() < deadline:
        await asyncio.sleep(rng.uniform(1.5, 4.0))
        if not victims:  # each process dies once per round, in a random order
            victims = ["gateway", "npc", "redis"]
            rng.shuffle(victims)
        victim = victims.pop()
        proc = system.procs[victim]
        proc.kill()
        report["kills"].append(victim)
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        await asyncio.get_running_loop().run_in_executor(None, proc.start)


async def traffic(system: System, core: Core, report: dict) -> None:
    deadline = time.monotonic() + TRAFFIC_S
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        tick = 0
        while time.monotonic() < deadline:
            core.new()
            await core.flush(http)
            if tick % 5 == 0:
                try:
                    async with http.post(f"{system.url('npc')}/sim/peer/send", json={
                            "sender": "888200000015", "receiver": BANK,
                            "payee_account": core.rng.choice(core.accounts),
                            "payee_name": "客户0", "payee_bank": BRANCH,
                            "amount_fen": 1_000 * YUAN, "count": 1, "business_type": "A100",
                            "business_kind": "02102", "priority": "NORM"}) as r:
                        if r.status == 200:
                            report["peer_sent"] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
            tick += 1
            await asyncio.sleep(0.1)
        while core.pending:
            await core.flush(http)
            await asyncio.sleep(0.2)


async def settle(system: System, core: Core) -> dict[str, str]:
    deadline = time.monotonic() + SETTLE_WAIT_S
    states: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            for key, pid in core.acked.items():
                if states.get(pid) in FINAL:
                    continue
                async with http.get(f"{system.url('gateway')}/v1/transfers/{pid}") as r:
                    states[pid] = (await r.json())["state"]
            if all(states.get(pid) in FINAL for pid in core.acked.values()):
                return states
            await asyncio.sleep(0.5)
    return states


def test_kill_everything_lose_nothing(tmp_path, gateway_process_database_url):
    """SIGKILL of gateway, NPC and Redis under load loses and doubles nothing."""
    rng = random.Random(SEED)
    system = System(tmp_path, database_url=gateway_process_database_url or "")
    system.build(clearing_fen=CLEARING_FEN, peer_fen=10**13)
    accounts = [customer_account(i, "corporate") for i in range(1, 6)]
    prepare_books(system, accounts)
    report = {"kills": [], "peer_sent": 0}
    for name in ("redis", "npc", "gateway"):
        system.procs[name].start()
    try:
        core = Core(system, accounts, rng)

        async def scenario():
            await asyncio.gather(traffic(system, core, report), chaos(system, rng, report))
            return await settle(system, core)
        states = asyncio.run(scenario())

        stats, books = asyncio.run(final_figures(system))
    finally:
        system.stop_all()
    outcomes: dict[str, int] = {}
    for state in states.values():
        outcomes[state] = outcomes.get(state, 0) + 1
    report.update(payments=len(core.acked), refused=len(core.refused), outcomes=outcomes,
                  settled_twice=stats["settled_twice"], incoming=books["incoming"])
    print("crash report:", json.dumps(report, ensure_ascii=False))

    assert set(report["kills"]) == {"gateway", "npc", "redis"}, report["kills"]
    assert len(core.acked) > 20
    assert all(states.get(pid) in FINAL for pid in core.acked.values()), outcomes
    assert stats["settled_twice"] == []
    assert books["duplicate_incoming"] == 0
    assert books["balanced"]
    assert books["clearing_fen"] == stats["balances"][BANK]


async def drain_npc(system: System) -> None:
    """Let the NPC deliver everything it owes us: what it gave up on while the gateway was
    down is put back in line (as an MQ channel would), then delivered and processed."""
    deadline = time.monotonic() + SETTLE_WAIT_S
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{system.url('npc')}/sim/redeliver", json={}) as r:
            assert r.status == 200
        while time.monotonic() < deadline:
            async with http.get(f"{system.url('npc')}/sim/stats") as r:
                stats = await r.json()
            db = ledger.connect(system.db_url)
            with db.transaction() as tx:
                waiting = tx.query_one("SELECT COUNT(*) FROM inbox WHERE state = 'received'",
                                       ())[0]
            db.close()
            if stats["outbox"].get("pending", 0) == 0 and waiting == 0:
                return
            await asyncio.sleep(0.5)


async def final_figures(system: System) -> tuple[dict, dict]:
    await drain_npc(system)
    system.procs["gateway"].stop()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{system.url('npc')}/sim/stats") as r:
            stats = await r.json()
    db = ledger.connect(system.db_url)
    led = ledger.Ledger()
    with db.transaction() as tx:
        books = {
            "balanced": led.trial_balance(tx).balanced,
            "clearing_fen": led.clearing_balance(tx),
            "incoming": tx.query_one("SELECT COUNT(*) FROM payments WHERE direction = 'in'",
                                     ())[0],
            "duplicate_incoming": tx.query_one(
                "SELECT COUNT(*) FROM (SELECT end_to_end_id FROM payments WHERE direction = "
                "'in' GROUP BY end_to_end_id HAVING COUNT(*) > 1) AS doubled", ())[0],
        }
    db.close()
    return stats, books
