"""`paygate bench e2e`: the whole path under load, beside the machine's baselines.

The gateway, the simulated NPC and Redis each run as their own process on loopback, as
a deployment would (schema validation, signatures, durable SQLite commits and Redis with
its append-only file all on; nothing switched off for the benchmark). This process is
the core system: it drives HVPS transfers through the public API, first as fast as the
gateway takes them, then paced, and receives the webhook of every status change, which
is how completion (settled and posted) is timed. In the same run it measures the bare
baselines: an aiohttp endpoint taking the same body, Redis stream appends from Python,
lxml schema validation of the same hvps.111, SQLite group commits.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from lxml import etree

import ledger
from gateway import keys as stream_keys
from gateway.bench import machine
from gateway.messages.signing import write_keypair
from gateway.redisproc import free_port, redis_binary, wait_port
from gateway.store import SCHEMA
from ledger.testing import customer_account
from message_schemas import catalogue

BANK, BRANCH, PEER_BRANCH = "999100000019", "999100000027", "888200000023"
CONCURRENCY = 32
PACED_RATE = 500
SETTLE_WAIT_S = 120.0
EXAMPLE = Path(__file__).parent / "examples" / "hvps.111_urgent-goods-payment.xml"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_peak_mib(pid: int, field_name: str = "VmHWM") -> float:
    """A process's peak resident memory (or, with "VmRSS", its current one) in MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def transfer_body(i: int) -> dict[str, Any]:
    return {"payer_account": customer_account(1 + i % 20, "corporate"), "payer_name": "客户",
            "payer_bank": BRANCH, "payee_account": f"62{i:014d}", "payee_name": "收款人",
            "payee_bank": PEER_BRANCH, "amount": "100000.00", "urgency": "urgent",
            "remittance_info": "货款"}


# Baselines


async def bare_aiohttp(duration_s: float) -> float:
    """Requests per second of a bare aiohttp endpoint that parses the same JSON body."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _BARE_SERVER, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        count, _ = await drive(f"http://127.0.0.1:{port}/v1/transfers", duration_s, "bare")
        return count / duration_s
    finally:
        server.terminate()
        server.wait()


_BARE_SERVER = """
import json, sys
from aiohttp import web
async def take(request):
    body = json.loads(await request.read())
    return web.json_response({"id": "x", "state": "accepted", "n": len(body)}, status=201)
app = web.Application()
app.router.add_post("/v1/transfers", take)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def bare_redis(url: str, count: int) -> float:
    r = aioredis.from_url(url)
    start = time.perf_counter()
    for i in range(count):
        await r.xadd("bench:bare", {"outbox": str(i)})
    elapsed = time.perf_counter() - start
    await r.delete("bench:bare")
    await r.aclose()
    return count / elapsed


def bare_lxml(count: int) -> float:
    body = EXAMPLE.read_bytes()
    schema = catalogue.schema("hvps.111.001.01")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    start = time.perf_counter()
    for _ in range(count):
        assert schema.validate(etree.fromstring(body, parser))
    return count / (time.perf_counter() - start)


def bare_sqlite(folder: Path, rows: int, batch: int = 64) -> float:
    conn = sqlite3.connect(folder / "bare.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    payload = json.dumps(transfer_body(0))
    start = time.perf_counter()
    for first in range(0, rows, batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(payload,)] * batch)
        conn.execute("COMMIT")
    conn.close()
    return rows / (time.perf_counter() - start)


# The product


@dataclass
class Load:
    accepted_at: dict[str, float] = field(default_factory=dict)
    settled_at: dict[str, float] = field(default_factory=dict)
    accept_ms: list[float] = field(default_factory=list)
    refused: int = 0


async def drive(url: str | list[str], duration_s: float, tag: str, load: Load | None = None,
                rate: float | None = None, first: int = 0) -> tuple[int, int]:
    """POST transfers for `duration_s`: as fast as CONCURRENCY clients can, or paced.
    Given several URLs (gateway processes), the clients are spread over them evenly."""
    urls = [url] if isinstance(url, str) else url
    counter = {"next": first, "done": 0}
    deadline = time.perf_counter() + duration_s
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)

    async def client(http: aiohttp.ClientSession, url: str) -> None:
        while time.perf_counter() < deadline:
            i = counter["next"]
            counter["next"] += 1
            if rate is not None:
                due = start + (i - first) / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            sent = time.perf_counter()
            async with http.post(url, json=transfer_body(i),
                                 headers={"Idempotency-Key": f"{tag}-{i}"}) as r:
                answer = await r.json(content_type=None)
            took = time.perf_counter() - sent
            if r.status == 201:
                counter["done"] += 1
                if load is not None:
                    load.accept_ms.append(took * 1000)
                    load.accepted_at[answer["id"]] = sent
            elif load is not None:
                load.refused += 1
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(client(http, urls[k % len(urls)])
                               for k in range(CONCURRENCY)))
    return counter["done"], counter["next"] - first


async def webhook_server(load: Load) -> tuple[web.AppRunner, int]:
    async def hook(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        if event["state"] == "settled":
            load.settled_at.setdefault(event["id"], time.perf_counter())
        return web.Response(status=204)
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def prepare(root: Path, accounts: int) -> None:
    (root / "gateway").mkdir(parents=True, exist_ok=True)
    write_keypair(root / "keys", BANK)
    db = ledger.connect(f"sqlite:///{root / 'gateway' / 'gateway.db'}")
    led = ledger.Ledger()
    with db.transaction() as tx:
        for statement in SCHEMA:
            tx.execute(statement, ())
        led.install(tx)
        led.fund_clearing(tx, "bench:opening", 10**15, "2026-12-07")
        for i in range(1, accounts + 1):
            account = customer_account(i, "corporate")
            led.open_customer_account(tx, account, f"客户{i}", "corporate", "2026-12-07")
            led.deposit(tx, f"bench:deposit:{i}", account, 10**14, "2026-12-07")
    db.close()


async def sample_queues(url: str, samples: list[dict[str, int]], stop: asyncio.Event) -> None:
    r = aioredis.from_url(url)
    streams = (*stream_keys.HVPS_LANES, stream_keys.OUT_LINK, stream_keys.INBOUND,
               stream_keys.WEBHOOK)
    try:
        while not stop.is_set():
            row = {"t": round(time.perf_counter(), 1)}
            for s in streams:
                info = await r.xpending(s, stream_keys.GROUP) if await r.exists(s) else None
                row[s.split(":", 1)[1]] = info["pending"] if info else 0
            samples.append(row)
            await asyncio.sleep(1.0)
    finally:
        await r.aclose()


async def start_processes(root: Path, hook_port: int
                          ) -> tuple[dict[str, subprocess.Popen], int, int]:
    """Redis (append-only), the simulated NPC and the gateway, each its own process, as
    a deployment runs them; (processes, gateway port, Redis port)."""
    redis_port, sim_port, gw_port = free_port(), free_port(), free_port()
    prepare(root, 20)
    (root / "redis").mkdir()
    procs = {
        "redis": subprocess.Popen([redis_binary(), "--bind", "127.0.0.1", "--port",
                                   str(redis_port), "--dir", str(root / "redis"),
                                   "--appendonly", "yes", "--appendfsync", "everysec",
                                   "--save", ""], stdout=subprocess.DEVNULL),
    }
    wait_port(redis_port)
    procs["npc"] = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "npc", "--port", str(sim_port),
         "--data", str(root / "npc"), "--keys", str(root / "keys"), "--phase", "10",
         "--bank", f"{BANK}=http://127.0.0.1:{gw_port}/link/inbound",
         "--balance", f"{BANK}={10**15}"], stdout=subprocess.DEVNULL,
        stderr=open(root / "npc.log", "wb"))
    wait_port(sim_port)
    config = root / "gateway.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in {
        "data_dir": str(root / "gateway"), "port": gw_port,
        "npc_url": f"http://127.0.0.1:{sim_port}/link/inbound",
        "redis_url": f"redis://127.0.0.1:{redis_port}/0", "keys_dir": str(root / "keys"),
        "webhook_url": f"http://127.0.0.1:{hook_port}/hook", "log_level": "WARNING",
        "clock": "2026-12-07T09:00:00"}.items()))
    procs["gateway"] = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=open(root / "gateway.log", "wb"))
    wait_port(gw_port)
    await asyncio.sleep(1.0)  # login and the first probe settle
    return procs, gw_port, redis_port


async def product(root: Path, duration_s: float, paced_s: float) -> dict[str, Any]:
    load = Load()
    runner, hook_port = await webhook_server(load)
    procs, gw_port, redis_port = await start_processes(root, hook_port)
    url = f"http://127.0.0.1:{gw_port}/v1/transfers"
    samples: list[dict[str, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_queues(f"redis://127.0.0.1:{redis_port}/0",
                                                samples, stop))
    cpu_before = {name: proc_cpu_s(p.pid) for name, p in procs.items()}
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    accepted, tried = await drive(url, duration_s, "max", load)
    accept_end = time.perf_counter()
    deadline = time.perf_counter() + SETTLE_WAIT_S
    while len(load.settled_at) < len(load.accepted_at) and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
    complete_end = max(load.settled_at.values(), default=start)
    cpu_after = {name: proc_cpu_s(p.pid) for name, p in procs.items()}
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    max_accept_ms = list(load.accept_ms)
    completion_ms = [(load.settled_at[i] - t) * 1000 for i, t in load.accepted_at.items()
                     if i in load.settled_at]

    paced = Load()
    paced_rate = PACED_RATE
    await drive(url, paced_s, "paced", paced, rate=paced_rate)
    stop.set()
    await sampler
    peaks = {name: round(proc_peak_mib(p.pid), 1) for name, p in procs.items()}
    for name in ("gateway", "npc", "redis"):
        procs[name].terminate()
        procs[name].wait()
    await runner.cleanup()
    completed = len(completion_ms)
    cpu = {name: round(cpu_after[name] - cpu_before[name], 2) for name in procs}
    cpu["load_generator"] = round(own_after.ru_utime + own_after.ru_stime
                                  - own_before.ru_utime - own_before.ru_stime, 2)
    return {
        "accepted": accepted, "tried": tried, "refused": load.refused,
        "accepted_per_s": accepted / (accept_end - start),
        "completed": completed,
        "completed_per_s": completed / max(complete_end - start, 1e-9),
        "accept_ms": max_accept_ms, "completion_ms": completion_ms,
        "paced_rate": paced_rate, "paced_accept_ms": paced.accept_ms,
        "paced_accepted_per_s": len(paced.accept_ms) / paced_s,
        "cpu_s": cpu, "gateway_cpu_us_per_payment":
            cpu["gateway"] / max(completed, 1) * 1e6,
        "peak_mib": peaks, "queue_samples": samples,
    }


async def baselines(root: Path, duration_s: float) -> dict[str, float]:
    """The bare baselines of this machine, measured in the same run as the product."""
    redis_port = free_port()
    (root / "bare-redis").mkdir()
    bare_redis_proc = subprocess.Popen(
        [redis_binary(), "--bind", "127.0.0.1", "--port", str(redis_port), "--dir",
         str(root / "bare-redis"), "--appendonly", "yes", "--appendfsync", "everysec",
         "--save", ""], stdout=subprocess.DEVNULL)
    wait_port(redis_port)
    try:
        base_http = await bare_aiohttp(min(duration_s, 5.0))
        base_redis = await bare_redis(f"redis://127.0.0.1:{redis_port}/0", 20_000)
    finally:
        bare_redis_proc.terminate()
        bare_redis_proc.wait()
    return {"http": base_http, "redis": base_redis, "lxml": bare_lxml(5_000),
            "sqlite": bare_sqlite(root, 20_000)}


async def _run(quick: bool) -> dict[str, Any]:
    duration_s, paced_s = (8.0, 4.0) if quick else (60.0, 20.0)
    with tempfile.TemporaryDirectory(prefix="paygate-bench-e2e-",
                                     dir=os.environ.get("PAYGATE_BENCH_KEEP")) as folder:
        root = Path(folder)
        base = await baselines(root, duration_s)
        base_http, base_redis = base["http"], base["redis"]
        base_lxml, base_sqlite = base["lxml"], base["sqlite"]
        p = await product(root / "product", duration_s, paced_s)
    config = {"duration_s": duration_s, "paced_s": paced_s, "concurrency": CONCURRENCY,
              "paced_rate": PACED_RATE}
    results = [
        _row("hvps_accepted", p["accepted_per_s"], p["accept_ms"],
             "bare aiohttp endpoint, same body and clients", base_http),
        _row("hvps_completed", p["completed_per_s"], p["completion_ms"],
             "bare Redis stream appends from Python (one per payment stage)", base_redis),
        _row(f"hvps_accepted_at_{PACED_RATE}_per_s", p["paced_accepted_per_s"],
             p["paced_accept_ms"], "bare lxml parse + schema validation of hvps.111",
             base_lxml),
        {"name": "hvps_payments_per_gateway_cpu_second",
         "per_s": round(1e6 / max(p["gateway_cpu_us_per_payment"], 1e-9), 1),
         "value": round(p["gateway_cpu_us_per_payment"]),
         "baseline": "bare SQLite group commits (64 rows, WAL, synchronous=FULL)",
         "baseline_per_s": round(base_sqlite),
         "ratio": round(1e6 / max(p["gateway_cpu_us_per_payment"], 1e-9) / base_sqlite, 4)},
    ]
    return {"bench": "e2e", "machine": machine(),
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode())
            .hexdigest(), "config": config,
            "detail": {"accepted": p["accepted"], "completed": p["completed"],
                       "gateway_cpu_us_per_hvps_payment":
                           round(p["gateway_cpu_us_per_payment"]),
                       "refused": p["refused"], "cpu_s": p["cpu_s"],
                       "peak_mib": p["peak_mib"],
                       "queue_depth_max": _max_depths(p["queue_samples"]),
                       "acceptance_p95_ms": round(percentile(p["accept_ms"], 95), 2),
                       "completion_p95_ms": round(percentile(p["completion_ms"], 95), 2)},
            "results": results}


def _row(name: str, per_s: float, latencies_ms: list[float], baseline: str,
         baseline_per_s: float) -> dict[str, Any]:
    return {"name": name, "per_s": round(per_s, 1),
            "p50_ms": round(percentile(latencies_ms, 50), 2),
            "p95_ms": round(percentile(latencies_ms, 95), 2),
            "p99_ms": round(percentile(latencies_ms, 99), 2),
            "baseline": baseline, "baseline_per_s": round(baseline_per_s),
            "ratio": round(per_s / baseline_per_s, 4) if baseline_per_s else None}


def _max_depths(samples: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in samples:
        for k, v in row.items():
            if k != "t":
                out[k] = max(out.get(k, 0), v)
    return out


SOAK_RATE = 100        # payments per second offered during a soak (well inside capacity)
SOAK_SAMPLE_S = 5.0


async def soak(minutes: float) -> dict[str, Any]:
    """Memory over a long run: HVPS payments at SOAK_RATE for `minutes`, the resident
    memory of each process sampled every SOAK_SAMPLE_S. Flat means the last minute's
    average is within a few per cent of the first minute's (the baseline)."""
    duration_s = minutes * 60
    with tempfile.TemporaryDirectory(prefix="paygate-bench-soak-") as folder:
        root = Path(folder)
        load = Load()
        runner, hook_port = await webhook_server(load)
        procs, gw_port, _ = await start_processes(root, hook_port)
        rss: list[dict[str, float]] = []

        async def sample() -> None:
            started = time.perf_counter()
            while True:
                rss.append({"t": round(time.perf_counter() - started, 1)} | {
                    name: round(proc_peak_mib(p.pid, "VmRSS"), 1)
                    for name, p in procs.items()})
                await asyncio.sleep(SOAK_SAMPLE_S)
        sampler = asyncio.create_task(sample())
        try:
            accepted, tried = await drive(f"http://127.0.0.1:{gw_port}/v1/transfers",
                                          duration_s, "soak", load, rate=SOAK_RATE)
            deadline = time.perf_counter() + SETTLE_WAIT_S
            while len(load.settled_at) < len(load.accepted_at) and \
                    time.perf_counter() < deadline:
                await asyncio.sleep(0.5)
        finally:
            sampler.cancel()
            for p in procs.values():
                p.terminate()
                p.wait()
            await runner.cleanup()
    minute = 60 / SOAK_SAMPLE_S
    first = [row for row in rss[1:1 + int(minute)]]  # the first sample is start-up
    last = [row for row in rss if row["t"] <= duration_s][-int(minute):]
    results = []
    for name in ("gateway", "npc", "redis"):
        early = sum(r[name] for r in first) / len(first)
        late = sum(r[name] for r in last) / len(last)
        results.append({"name": f"{name}_rss_mib_last_minute", "value": round(late, 1),
                        "baseline": f"the {name}'s average RSS in the first minute of the "
                                    "same run", "baseline_value": round(early, 1),
                        "ratio": round(late / early, 3)})
    config = {"minutes": minutes, "rate": SOAK_RATE, "sample_s": SOAK_SAMPLE_S}
    return {"bench": "e2e_soak", "machine": machine(),
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode())
            .hexdigest(), "config": config,
            "detail": {"accepted": accepted, "tried": tried, "completed":
                       len(load.settled_at), "rss_mib": rss},
            "clean": len(load.settled_at) == accepted,
            "results": results}


def run(quick: bool = False, gateways: int = 1, database_url: str = "",
        soak_minutes: float = 0.0) -> dict[str, Any]:
    """The benchmark; with several gateways (or a PostgreSQL database) the scale-out
    mode of gateway.bench_scaleout, recorded under its own name; with `soak_minutes` the
    memory soak, recorded as e2e_soak."""
    if soak_minutes:
        return asyncio.run(soak(soak_minutes))
    if gateways > 1 or database_url:
        from gateway import bench_scaleout
        return asyncio.run(bench_scaleout.run(quick, gateways, database_url))
    return asyncio.run(_run(quick))
