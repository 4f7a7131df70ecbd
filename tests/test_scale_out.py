"""Two gateway processes on one Redis and one PostgreSQL database share the load, and one
of them dies mid-run: nothing is sent twice, posted twice or lost.

One embedded Redis, one PostgreSQL schema of its own, the simulated NPC (delivering to
both gateways in turn) and two `paygate serve` processes. The core system drives HVPS
and BEPS transfers at both through the API (failing over to the other gateway with the
same idempotency key when one does not answer), peer banks send HVPS credits and BEPS
packages in, and the first gateway (the leader) is killed with SIGKILL once and started
again. Afterwards, from the NPC's own records and the shared database: every accepted
payment is settled (or rejected or cancelled, each counted), the NPC took no message of
ours twice except those the dead gateway had in flight, settled nothing twice, no ledger
posting is doubled, every incoming payment was credited once, the books balance, and
the ledger's clearing account equals the NPC's position for us.

Budget: about a minute (at most two).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import sqlite3
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

import ledger
from gateway.clock import SHANGHAI
from gateway.fleet import BANK, PEER, Fleet, prepare_books
from ledger.fixtures import postgres_schema, postgres_unreachable

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

BRANCH, PEER_BRANCH = "999100000027", "888200000023"
YUAN = 100
CLEARING_FEN = 10**13
TRAFFIC_S = 14.0
KILL_AT_S, RESTART_AFTER_S = 5.0, 3.0
SETTLE_WAIT_S = 60.0
FINAL = {"settled", "rejected", "cancelled"}
START = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)  # a Monday, HVPS open


class Core:
    """The core system: transfers at both gateways in turn; on no answer, the same
    request (same idempotency key) goes to the other one."""

    def __init__(self, fleet: Fleet, accounts: list[str], rng: random.Random) -> None:
        self.fleet = fleet
        self.accounts = accounts
        self.rng = rng
        self.turn = itertools.cycle(fleet.gateway_names)
        self.pending: dict[str, dict[str, Any]] = {}
        self.acked: dict[str, str] = {}  # idempotency key -> payment id
        self.channel: dict[str, str] = {}  # payment id -> hvps | beps
        self.taken_by: dict[str, int] = {name: 0 for name in fleet.gateway_names}
        self.refused: dict[str, int] = {}
        self.count = 0

    def new(self) -> None:
        self.count += 1
        beps = self.count % 2 == 0
        payer = self.rng.choice(self.accounts)
        self.pending[f"scale-{self.count}"] = {
            "payer_account": payer, "payer_name": f"客户{self.accounts.index(payer) + 1}",
            "payer_bank": BRANCH, "payee_account": f"62{self.count:014d}",
            "payee_name": "收款人", "payee_bank": PEER_BRANCH,
            "amount": f"{self.rng.randint(100, 20_000)}.00" if beps else
                      f"{self.rng.randint(60_000, 500_000)}.00",
            "urgency": "normal" if beps else "urgent"}

    async def flush(self, http: aiohttp.ClientSession) -> None:
        for key, body in list(self.pending.items()):
            for _ in self.fleet.gateway_names:
                name = next(self.turn)
                try:
                    async with http.post(f"{self.fleet.url(name)}/v1/transfers", json=body,
                                         headers={"Idempotency-Key": key}) as r:
                        answer = await r.json(content_type=None)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    continue  # that gateway is down: the other one, same key
                if r.status == 201:
                    self.acked[key] = answer["id"]
                    self.channel[answer["id"]] = answer["channel"]
                    self.taken_by[name] += 1
                    del self.pending[key]
                elif r.status < 500 and r.status != 429:
                    self.refused[key] = r.status
                    del self.pending[key]
                break


async def traffic(fleet: Fleet, core: Core, report: dict[str, Any]) -> None:
    deadline = time.monotonic() + TRAFFIC_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        tick = 0
        while time.monotonic() < deadline:
            core.new()
            await core.flush(http)
            if tick % 6 == 0:
                report["incoming"] += await peer_credit(fleet, http, core)
            if tick % 15 == 0:
                report["incoming"] += await peer_package(fleet, http, core)
            tick += 1
            await asyncio.sleep(0.05)
        while core.pending:
            await core.flush(http)
            await asyncio.sleep(0.2)


async def peer_credit(fleet: Fleet, http: aiohttp.ClientSession, core: Core) -> int:
    async with http.post(f"{fleet.url('npc')}/sim/peer/send", json={
            "sender": PEER, "receiver": BANK, "payee_account": core.rng.choice(core.accounts),
            "payee_name": "客户1", "payee_bank": BRANCH, "amount_fen": 1_000 * YUAN,
            "count": 1, "business_type": "A100", "business_kind": "02102",
            "priority": "NORM"}) as r:
        assert r.status == 200, await r.text()
    return 1


async def peer_package(fleet: Fleet, http: aiohttp.ClientSession, core: Core) -> int:
    async with http.post(f"{fleet.url('npc')}/sim/beps/peer/send", json={
            "sender": PEER, "receiver": BANK, "account": core.rng.choice(core.accounts),
            "name": "客户1", "bank": BRANCH, "amount_fen": 300 * YUAN, "count": 2}) as r:
        assert r.status == 200, await r.text()
    return 2


async def kill_once(fleet: Fleet, report: dict[str, Any]) -> None:
    """SIGKILL the first gateway (the leader) mid-run; note what it had in flight; start
    it again."""
    await asyncio.sleep(KILL_AT_S)
    fleet.procs["gateway0"].kill()
    db = ledger.connect(fleet.database_url)
    try:
        with db.transaction() as tx:
            report["in_flight_at_kill"] = sorted(r[0] for r in tx.query(
                "SELECT mesg_id FROM outbox WHERE state = 'sending' AND mesg_id IS NOT NULL",
                ()))
    finally:
        db.close()
    await asyncio.sleep(RESTART_AFTER_S)
    await asyncio.get_running_loop().run_in_executor(None, fleet.procs["gateway0"].start)


async def settle(fleet: Fleet, core: Core) -> dict[str, str]:
    """Wait until every acknowledged payment is final, the NPC has delivered everything
    and both BEPS positions are settled; the payments' states."""
    deadline = time.monotonic() + SETTLE_WAIT_S
    states: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            for pid in core.acked.values():
                if states.get(pid) not in FINAL:
                    async with http.get(f"{fleet.url('gateway1')}/v1/transfers/{pid}") as r:
                        states[pid] = (await r.json())["state"]
            async with http.get(f"{fleet.url('npc')}/sim/stats") as r:
                npc = await r.json()
            if all(s in FINAL for s in states.values()) and \
                    npc["outbox"].get("pending", 0) == 0 and quiet(fleet):
                return states
            await asyncio.sleep(0.5)
    return states


def quiet(fleet: Fleet) -> bool:
    """Nothing left to process or post: no inbox row waiting, no BEPS position open."""
    db = ledger.connect(fleet.database_url)
    led = ledger.Ledger()
    internal = led.internal_accounts
    try:
        with db.transaction() as tx:
            waiting = tx.query_one("SELECT COUNT(*) FROM inbox WHERE state = 'received'",
                                   ())[0]
            netted = [led.balance(tx, internal[code]) for code in ("4001", "4002", "4003")]
    finally:
        db.close()
    return waiting == 0 and netted == [0, 0, 0]


def books(fleet: Fleet) -> dict[str, Any]:
    db = ledger.connect(fleet.database_url)
    led = ledger.Ledger()
    try:
        with db.transaction() as tx:
            return {
                "balanced": led.trial_balance(tx).balanced,
                "clearing_fen": led.clearing_balance(tx),
                # Each payment's hold, settlement, netting, release and credit is posted
                # once. (A round may settle in several entries, the items whose result
                # came after its booking later; the clearing account's agreement with
                # the NPC below shows that no round was settled twice.)
                "doubled_postings": tx.query(
                    "SELECT op, ref, COUNT(*) FROM ledger_entry WHERE op NOT IN "
                    "('deposit', 'fund_clearing', 'settle_net') GROUP BY op, ref "
                    "HAVING COUNT(*) > 1", ()),
                "incoming": tx.query_one("SELECT COUNT(*) FROM payments WHERE "
                                         "direction = 'in'", ())[0],
                "incoming_doubled": tx.query(
                    "SELECT sender_direct, end_to_end_id FROM payments WHERE direction = "
                    "'in' GROUP BY sender_direct, end_to_end_id HAVING COUNT(*) > 1", ()),
                "senders": tx.query_one(
                    "SELECT COUNT(DISTINCT claimed_by) FROM outbox WHERE kind IN "
                    "('hvps_credit', 'beps_package') AND state <> 'pending'", ())[0],
                "ops": dict(tx.query("SELECT op, COUNT(*) FROM ledger_entry GROUP BY op",
                                     ())),
            }
    finally:
        db.close()


def npc_records(fleet: Fleet) -> dict[str, Any]:
    """From the NPC's own database and log: what it took from us more than once."""
    conn = sqlite3.connect(fleet.root / "npc" / "npc.sqlite3")
    try:
        hvps_twice = conn.execute(
            "SELECT tx_id FROM payments WHERE sender = ? GROUP BY tx_id HAVING COUNT(*) > 1",
            (BANK,)).fetchall()
        beps_twice = conn.execute(
            "SELECT t.tx_id FROM beps_txs t JOIN beps_packages p ON p.id = t.package_id "
            "WHERE p.sender = ? GROUP BY t.tx_id HAVING COUNT(*) > 1", (BANK,)).fetchall()
    finally:
        conn.close()
    log = (fleet.root / "npc.log").read_text(encoding="utf-8", errors="replace")
    duplicates = sorted(re.search(r"mesg_id=(\S+)", line).group(1)
                        for line in log.splitlines()
                        if "event=duplicate_acknowledged" in line and f"sender={BANK}" in line)
    return {"hvps_twice": hvps_twice, "beps_twice": beps_twice, "duplicates": duplicates}


def test_two_gateways_share_the_work_and_survive_a_kill(tmp_path):
    """Two gateways on one Redis and one PostgreSQL database, one killed mid-run: every
    payment completes once, nothing is sent, settled or posted twice, books agree."""
    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with postgres_schema("scaleout") as url:
        fleet = Fleet(tmp_path, url, gateways=2, start=START,
                      settings={"beps_package_age_max_s": 0.3, "beps_seal_check_s": 0.2},
                      npc_args=["--beps-netting-interval", "1.0"])
        fleet.build(clearing_fen=CLEARING_FEN, peer_fen=10**14)
        accounts = prepare_books(url, 6, CLEARING_FEN, 10**12, "2026-12-07",
                                 holder=lambda i: f"客户{i}")
        report: dict[str, Any] = {"incoming": 0}
        try:
            fleet.start_all()
            core = Core(fleet, accounts, random.Random(20261207))

            async def scenario() -> tuple[dict[str, str], dict[str, Any]]:
                await asyncio.gather(traffic(fleet, core, report), kill_once(fleet, report))
                states = await settle(fleet, core)
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{fleet.url('npc')}/sim/stats") as r:
                        return states, await r.json()
            states, npc = asyncio.run(scenario())
            ours = books(fleet)
            records = npc_records(fleet)
        finally:
            fleet.stop_all()
    outcomes: dict[str, int] = {}
    for pid, state in states.items():
        key = f"{core.channel[pid]}:{state}"
        outcomes[key] = outcomes.get(key, 0) + 1
    report.update(accepted=len(core.acked), taken_by=core.taken_by, refused=core.refused,
                  outcomes=outcomes, duplicates=records["duplicates"],
                  incoming_recorded=ours["incoming"], senders=ours["senders"],
                  ops=ours["ops"])
    print("scale-out report:", json.dumps(report, ensure_ascii=False))

    assert all(n > 10 for n in core.taken_by.values()), core.taken_by
    assert "event=leader_taken_over" in (fleet.root / "gateway1.log").read_text()
    assert {core.channel[p] for p in core.acked.values()} == {"hvps", "beps"}
    assert all(states.get(pid) in FINAL for pid in core.acked.values()), outcomes
    assert ours["senders"] >= 2  # both processes sent payments to the NPC
    assert npc["settled_twice"] == []
    assert records["hvps_twice"] == [] and records["beps_twice"] == []
    assert set(records["duplicates"]) <= set(report["in_flight_at_kill"]), report
    assert ours["doubled_postings"] == []
    assert ours["incoming"] == report["incoming"] and ours["incoming_doubled"] == []
    assert ours["balanced"]
    assert ours["clearing_fen"] == npc["balances"][BANK]
