"""`paygate bench beps`: BEPS intake through the API, and the simulated NPC's netting.

1. `beps_accepted_durable`: small credits posted to POST /v1/transfers/batch of a
   running gateway (with the simulated NPC as its own process and an embedded Redis,
   the shipped default configuration), each routed, its payer's funds held in the
   ledger and its payment, BEPS item and idempotency record committed (SQLite, WAL,
   synchronous=FULL) before the batch is answered. The core system is a load generator
   in its own process (CLIENTS batch requests in flight). Latencies are per batch request;
   `gateway_cpu_us_per_transfer` is the gateway's CPU time (all its threads) per transfer,
   steadier than the rate on a machine that other work shares.
   Baseline: plain INSERTs of the same rows per transfer (payment, its history event,
   its idempotency record, its BEPS item, a ledger entry and its two lines) into bare
   tables with the same pragmas, committed in groups of the store's size.
2. `netting_1m_transactions`: a netting round over 1,000,000 stored transactions in
   packages of up to 1,000 among 30 participants, with net debit caps holding some
   packages back, then a second round after the caps are raised; round results
   written. Per second counts transactions netted; latencies are per round. Baseline:
   plain INSERTs of the same transaction rows into a bare table with the simulator's
   pragmas, one commit per package, which netting must beat by reading running totals
   instead of transactions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway import logs
from gateway.bench import machine
from gateway.bench_load import credit as _credit
from gateway.clock import SHANGHAI, ScaledClock
from gateway.harness import Harness
from ledger.testing import customer_account
from simulators import beps_store, netting
from simulators.store import Store

BANK, PEER = "999100000019", "888200000015"
BATCH_ITEMS = 500
CLIENTS = 4                  # batch requests in flight at once
PAYERS = 20
STORE_GROUP = 512            # gateway.store.BATCH_MAX
TRANSFERS = {True: 5_000, False: 50_000}
NETTED_TXS = {True: 100_000, False: 1_000_000}
PACKAGE_TXS_MAX = 1_000
PARTICIPANTS = 30
NETTING_SEED = 20261207


def run(quick: bool = False) -> dict[str, Any]:
    config = {"transfers": TRANSFERS[quick], "batch_items": BATCH_ITEMS, "clients": CLIENTS,
              "netted_transactions": NETTED_TXS[quick], "participants": PARTICIPANTS,
              "package_transactions_max": PACKAGE_TXS_MAX}
    with tempfile.TemporaryDirectory(prefix="paygate-bench-beps-") as folder:
        accepted = asyncio.run(_acceptance(Path(folder) / "api", config["transfers"]))
        accepted_base = _bare_acceptance(Path(folder) / "bare.db", config["transfers"])
        netted = _netting(Path(folder) / "npc", config["netted_transactions"])
        netted_base = _bare_transactions(Path(folder) / "bare-npc.db",
                                         config["netted_transactions"])
    return {"bench": "beps", "machine": machine(),
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode())
            .hexdigest(),
            "results": [
                dict(_result("beps_accepted_durable", accepted[:3], accepted_base,
                             "bare sqlite inserts of the same rows, same pragmas and group "
                             "size"),
                     gateway_cpu_us_per_transfer=round(accepted[3] / accepted[0] * 1e6, 1)),
                _result("netting_1m_transactions" if not quick else "netting_transactions",
                        netted, netted_base, "bare sqlite inserts of the same transaction "
                        "rows, simulator pragmas, one commit per package")]}


def _result(name: str, measured: tuple[int, list[float], float], baseline_per_s: float,
            baseline: str) -> dict[str, Any]:
    count, durations_s, wall_s = measured
    per_s = count / wall_s
    return {"name": name, "per_s": round(per_s), "p50_ms": _ms(durations_s, 50),
            "p99_ms": _ms(durations_s, 99), "baseline": baseline,
            "baseline_per_s": round(baseline_per_s), "ratio": round(per_s / baseline_per_s, 3),
            "count": count, "total_s": round(wall_s, 3)}


def _ms(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000, 2)


# 1. Acceptance through the API


async def _acceptance(folder: Path, transfers: int
                      ) -> tuple[int, list[float], float, float]:
    """(transfers, seconds of each batch request, seconds of the run, CPU seconds of the
    gateway during the run). The gateway runs in this process and nothing else of the
    run does (the NPC, Redis and the load generator are processes of their own): this
    process's CPU time is the gateway's."""
    start = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)
    clock = ScaledClock(start=start, anchor_epoch_s=time.time(), rate=1.0)
    h = Harness(folder, clock_spec=clock.to_spec())
    # Logged as a deployment logs (`paygate serve`: INFO, one line per event), to a file.
    folder.mkdir(parents=True, exist_ok=True)
    log_file = open(folder / "gateway.log", "w", encoding="utf-8")
    logs.configure("INFO", log_file)
    await h.start()
    try:
        payers = await _open_payers(h.gateway)
        bodies = [_credit(payers[n % PAYERS], n) for n in range(transfers)]
        batches = [json.dumps(bodies[i:i + BATCH_ITEMS], ensure_ascii=False).encode()
                   for i in range(0, transfers, BATCH_ITEMS)]
        # The core system is its own process, as in a deployment: its JSON work does
        # not share this process (and its interpreter lock) with the gateway.
        spec = folder / "load.json"
        spec.write_text(json.dumps({"url": h.gateway.url, "clients": CLIENTS,
                                    "batches": [b.decode() for b in batches]}))
        cpu_before_s = time.process_time()
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.beps.bench", "load", str(spec),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await load.communicate()
        cpu_s = time.process_time() - cpu_before_s
        if load.returncode != 0:
            raise RuntimeError(f"the load generator failed ({load.returncode})")
        measured = json.loads(out)
        return transfers, measured["durations_s"], measured["wall_s"], cpu_s
    finally:
        await h.stop()
        logs.configure("WARNING")
        log_file.close()


async def _open_payers(gw: Any) -> list[str]:
    payers = [customer_account(n, "corporate") for n in range(1, PAYERS + 1)]

    def work(tx: Any) -> None:
        for account in payers:
            gw.ledger.open_customer_account(tx, account, "示例客户", "corporate", gw.work_date)
            gw.ledger.deposit(tx, f"bench:{account}", account, 10**13, gw.work_date)
    await gw.store.run(work)
    return payers


async def _load(spec_path: str) -> dict[str, Any]:
    """The load generator's process: post every batch (CLIENTS at a time), check that
    each was accepted whole, and time each request and the whole run."""
    spec = json.loads(Path(spec_path).read_text())
    queue = [(n, body.encode()) for n, body in enumerate(spec["batches"])]
    durations: list[float] = []
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(_client(http, spec["url"], queue, durations)
                               for _ in range(spec["clients"])))
    return {"durations_s": durations, "wall_s": time.perf_counter() - started}


async def _client(http: aiohttp.ClientSession, url: str, queue: list,
                  durations: list[float]) -> None:
    while queue:
        number, batch = queue.pop(0)
        started = time.perf_counter()
        async with http.post(f"{url}/v1/transfers/batch", data=batch,
                             headers={"Idempotency-Key": f"bench-{number}",
                                      "Content-Type": "application/json"}) as r:
            answer = await r.json()
        durations.append(time.perf_counter() - started)
        assert answer.get("refused") == 0, str(answer)[:500]


_BARE = """
CREATE TABLE payments (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, payment_id TEXT, state TEXT, detail TEXT);
CREATE TABLE idempotency (client TEXT, key TEXT, response TEXT, PRIMARY KEY (client, key));
CREATE TABLE items (payment_id TEXT PRIMARY KEY, receiver TEXT, amount_fen INTEGER,
                    created_at TEXT);
CREATE TABLE entries (id INTEGER PRIMARY KEY, event_id TEXT UNIQUE, work_date TEXT);
CREATE TABLE lines (entry_id INTEGER, n INTEGER, account TEXT, side TEXT, fen INTEGER);
"""


def _bare_acceptance(path: Path, transfers: int) -> float:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_BARE)
    body = json.dumps(_credit(customer_account(1, "corporate"), 0), ensure_ascii=False)
    started = time.perf_counter()
    for first in range(0, transfers, STORE_GROUP):
        conn.execute("BEGIN")
        for n in range(first, min(first + STORE_GROUP, transfers)):
            pid = f"P{n:016d}"
            conn.execute("INSERT INTO payments VALUES (?, ?)", (pid, body))
            conn.execute("INSERT INTO events (payment_id, state, detail) VALUES (?, ?, ?)",
                         (pid, "accepted", "{}"))
            conn.execute("INSERT INTO idempotency VALUES (?, ?, ?)", ("bench", pid, body))
            conn.execute("INSERT INTO items VALUES (?, ?, ?, ?)", (pid, PEER, n, "now"))
            entry = conn.execute("INSERT INTO entries (event_id, work_date) VALUES (?, ?) "
                                 "RETURNING id", (f"{pid}:hold", "2026-12-07")).fetchone()[0]
            conn.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?)",
                             [(entry, 1, "payer", "D", n), (entry, 2, "holds", "C", n)])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return transfers / elapsed


# 2. Netting in the simulated NPC


def _netting(folder: Path, transactions: int) -> tuple[int, list[float], float]:
    store = Store(folder / "npc.sqlite3")
    beps_store.install(store.conn)
    rng = random.Random(NETTING_SEED)
    members = [f"{700000000000 + 1000 * n + 19}" for n in range(PARTICIPANTS)]
    with store.transaction():
        for code in members:
            store.seed_balance(code, 10**14)
        for code in members[:3]:
            beps_store.set_cap(store.conn, code, 10**8)  # a million yuan: some packages wait
    _fill(store, rng, members, transactions)
    now = datetime(2026, 12, 7, 10, 0, tzinfo=SHANGHAI)
    durations, netted = [], 0
    for attempt in range(2):
        started = time.perf_counter()
        with store.transaction():
            result = netting.net_round(store, now)
        durations.append(time.perf_counter() - started)
        netted += _count(store, result.netted)
        with store.transaction():
            for code in members[:3]:
                beps_store.set_cap(store.conn, code, 10**15)
    assert netted == transactions, f"netted {netted} of {transactions}"
    store.close()
    return netted, durations, sum(durations)


def _fill(store: Store, rng: random.Random, members: list[str], transactions: int) -> None:
    made = 0
    while made < transactions:
        size = min(rng.randint(1, PACKAGE_TXS_MAX), transactions - made)
        payer, payee = rng.sample(members, 2)
        txs = [(f"{made + i:016d}", rng.randint(1, 5_000_000)) for i in range(size)]
        with store.transaction():
            beps_store.add_package(store.conn, {
                "sender": payer, "receiver": payee, "payer": payer, "payee": payee,
                "mesg_type": "beps.121.001.01", "mesg_id": f"{made:020d}",
                "msg_id": f"{made:016d}", "count": size,
                "amount_fen": sum(fen for _, fen in txs), "status": beps_store.WAITING,
                "received_on": "2026-12-07", "received_at": "2026-12-07T10:00:00+08:00",
                "raw": b""}, txs)
        made += size


def _count(store: Store, package_ids: list[int]) -> int:
    total = 0
    for first in range(0, len(package_ids), 500):
        chunk = package_ids[first:first + 500]
        marks = ", ".join("?" for _ in chunk)
        total += store.conn.execute(f"SELECT COALESCE(SUM(count), 0) FROM beps_packages "
                                    f"WHERE id IN ({marks})", chunk).fetchone()[0]
    return total


def _bare_transactions(path: Path, transactions: int) -> float:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE txs (package_id INTEGER, tx_id TEXT, amount_fen INTEGER)")
    rows = [(0, f"{n:016d}", n) for n in range(PACKAGE_TXS_MAX)]
    started = time.perf_counter()
    for first in range(0, transactions, PACKAGE_TXS_MAX):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO txs VALUES (?, ?, ?)",
                         rows[:min(PACKAGE_TXS_MAX, transactions - first)])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return transactions / elapsed


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        print(json.dumps(asyncio.run(_load(sys.argv[2]))))
