"""`paygate bench e2e`: the whole path under load, beside the machine's baselines.

The gateway, the simulated NPC and Redis each run as their own process on loopback, as
a deployment would (schema validation, signatures, durable SQLite commits and Redis with
its append-only file all on; nothing switched off for the benchmark), on one business
clock starting on a Monday morning with HVPS open. This process is the core system: it
drives HVPS transfers through the public API, first as fast as the gateway takes them,
then paced, and receives the webhook of every status change, which is how HVPS
completion (settled and posted) is timed. In the same run it measures the bare
baselines: an aiohttp endpoint taking the same body, Redis stream appends from Python,
lxml schema validation of the same hvps.111, SQLite group commits, and the bare SQLite
inserts of `bench beps` (a BEPS transfer's rows; the NPC's transaction rows).

The phases run one after the other, never at once: HVPS as fast as taken, until those
payments have settled; HVPS paced, until those have settled; then BEPS. One after the
other, each phase's CPU belongs to its own kind of payment (a process's CPU cannot be
split between HVPS and BEPS work done at the same moment), and the HVPS figures stay
comparable with runs that had no BEPS phase. What a mixed load costs is left to a later
run.

The BEPS phase: a load generator in its own process (`python -m gateway.bench_load`,
which imports nothing of the gateway's own stack) posts batches (POST
/v1/transfers/batch, `bench beps`'s batch size and clients in flight) of new credits
for a fixed time. The gateway packs them, the NPC
nets a round every BEPS_ROUND_S business seconds (the simulator's own setting for its
round timer; the gateway is configured as shipped) and, HVPS being open, settles each
round at once. The run then waits, at most BEPS_SETTLE_WAIT_S, until the gateway's
database shows every accepted transaction settled, and until the webhook has told the
core system of every change. Reported: accepted per second and each batch request's
latency; completed (settled) per second from the first batch to the last settlement,
and each transaction's acceptance-to-settlement time (both instants from the gateway's
records, on its clock); gateway CPU per transaction, counted from the first batch until
the last webhook row was delivered.

The run verifies rather than assumes: every accepted BEPS transaction is in the
gateway's database exactly once, settled, with one settlement in its history, and no
BEPS transaction is there that the core system was not told of; the webhook delivered
each accepted transaction's change to sent, netted and settled (webhook_events names the
outbox row that told of each, or of its whole package, and that row is done); every
HVPS payment settled; the NPC settled nothing twice, took no message twice and has nothing of ours
left unsettled; no ledger posting is doubled; the books balance and the clearing
account equals the NPC's position for us. A run failing any of these is `clean: false`:
printed, never recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from lxml import etree

import ledger
from gateway import keys as stream_keys
from gateway.bench import machine, run_folder
from gateway.bench_load import LOAD_FAILED, payer_name
from gateway.beps import bench as beps_bench
from gateway.beps import items
from gateway.clock import SHANGHAI, ScaledClock
from gateway.collector import tune_collector
from gateway.errors import PaygateError, Problem
from gateway.fleet import Proc, setting_variables
from gateway.messages.signing import write_keypair
from gateway.redisproc import (
    LOG_TAIL_BYTES,
    LOG_TAIL_CHARS,
    free_port,
    last_line,
    redis_binary,
)
from gateway.store import SCHEMA
from ledger.testing import customer_account
from message_schemas import catalogue

BANK, BRANCH, PEER_BRANCH = "999100000019", "999100000027", "888200000023"
CONCURRENCY = 32
PAYERS = 20               # customer accounts the load pays from
PACED_RATE = 500
SETTLE_WAIT_S = 120.0
START = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)  # a Monday: HVPS open (phase 10)
BEPS_ROUND_S = 2.0        # business seconds between the simulated NPC's netting rounds
BEPS_SETTLE_WAIT_S = 300.0
# The changes of an accepted BEPS transaction on its straight path, each of which the
# webhook must have told the core system of (packing keeps the state: nothing to tell).
BEPS_STRAIGHT = ("sent", "netted", "settled")
EXAMPLE = Path(__file__).parent / "examples" / "hvps.111_urgent-goods-payment.xml"
# The secret the gateway signs its webhook POSTs with (the load generator does not check
# them); a gateway with a webhook refuses to start without one (gateway.config_values).
WEBHOOK_SECRET = "bench-webhook-secret-0123456789"


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
    n = 1 + i % PAYERS
    return {"payer_account": customer_account(n, "corporate"), "payer_name": payer_name(n),
            "payer_bank": BRANCH, "payee_account": f"62{i:014d}", "payee_name": "收款人",
            "payee_bank": PEER_BRANCH, "amount": "100000.00", "urgency": "urgent",
            "remittance_info": "货款"}


_PAYEE_MARK = "PAYEE-ACCOUNT-MARK"


def transfer_texts() -> Callable[[int], bytes]:
    """transfer_body(i) as aiohttp's `json=` sends it (json.dumps, ASCII escapes), by `i`:
    each payer's text is cut around the payee account from that very dump once, so that
    the load generator, which shares the box with what it measures, spends no dict and
    no encoder on each request."""
    cuts = []
    for k in range(PAYERS):
        text = json.dumps(dict(transfer_body(k), payee_account=_PAYEE_MARK))
        head, tail = text.encode("ascii").split(_PAYEE_MARK.encode("ascii"))
        cuts.append((head, tail))

    def text_of(i: int) -> bytes:
        head, tail = cuts[i % PAYERS]
        return b"%s62%014d%s" % (head, i, tail)
    return text_of


# Baselines


async def bare_aiohttp(root: Path, duration_s: float) -> float:
    """Requests per second of a bare aiohttp endpoint that parses the same JSON body."""
    port = free_port()
    server = Proc("bare aiohttp", [sys.executable, "-c", _BARE_SERVER, str(port)], port,
                  root / "bare-aiohttp.log")
    await server.start_async()
    try:
        count, _ = await drive(f"http://127.0.0.1:{port}/v1/transfers", duration_s, "bare")
        return count / duration_s
    finally:
        server.stop()


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
    hook_posts: int = 0  # POSTs the webhook received, and the events they carried
    hook_events: int = 0


async def drive(url: str | list[str], duration_s: float, tag: str, load: Load | None = None,
                rate: float | None = None, first: int = 0) -> tuple[int, int]:
    """POST transfers for `duration_s`: as fast as CONCURRENCY clients can, or paced.
    Given several URLs (gateway processes), the clients are spread over them evenly."""
    # The load generator's own collector pauses would otherwise be timed as the
    # gateway's acceptance latency: tune it as the gateway tunes its own.
    tune_collector()
    urls = [url] if isinstance(url, str) else url
    counter = {"next": first, "done": 0}
    deadline = time.perf_counter() + duration_s
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    body_of = transfer_texts()

    async def client(http: aiohttp.ClientSession, url: str) -> None:
        while time.perf_counter() < deadline:
            i = counter["next"]
            counter["next"] += 1
            if rate is not None:
                due = start + (i - first) / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            sent = time.perf_counter()
            async with http.post(url, data=body_of(i), headers={
                    "Idempotency-Key": f"{tag}-{i}", "Content-Type": "application/json"}) as r:
                raw = await r.read()
            answer = orjson.loads(raw) if r.status == 201 else None
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
    """The core system's webhook: each payment's settlement is noted when the POST that
    tells of it arrives (one POST carries many payments' changes)."""
    async def hook(request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        events = orjson.loads(await request.read())["events"]
        load.hook_posts += 1
        load.hook_events += len(events)
        for event in events:
            if event["state"] == "settled":
                load.settled_at.setdefault(event["id"], arrived)
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
            led.open_customer_account(tx, account, payer_name(i), "corporate", "2026-12-07")
            led.deposit(tx, f"bench:deposit:{i}", account, 10**14, "2026-12-07")
    db.close()


async def sample_queues(url: str, samples: list[dict[str, int]], stop: asyncio.Event) -> None:
    r = aioredis.from_url(url)
    streams = (*stream_keys.HVPS_LANES, stream_keys.BEPS_TX, stream_keys.BEPS_PACKAGES,
               stream_keys.OUT_LINK, stream_keys.INBOUND, stream_keys.WEBHOOK)
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


@dataclass
class Running:
    procs: dict[str, Proc]  # in the order started
    gw_port: int
    redis_port: int
    npc_port: int
    root: Path
    clock_anchor_epoch: float  # the real time at which business time was START

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gw_port}"

    @property
    def npc_url(self) -> str:
        return f"http://127.0.0.1:{self.npc_port}"

    @property
    def database_url(self) -> str:
        return _database_url(self.root)

    def stop(self) -> None:
        """Stop every process, the last started first (a process never started, or
        already ended, is passed over)."""
        for proc in reversed(self.procs.values()):
            proc.stop()


def _database_url(root: Path) -> str:
    """The gateway's SQLite file: this bench is one gateway on SQLite (`--gateways` or
    `--database-url` run gateway.bench_scaleout)."""
    return f"sqlite:///{root / 'gateway' / 'gateway.db'}"


async def start_processes(root: Path, hook_port: int) -> Running:
    """Redis (append-only), the simulated NPC and the gateway, each its own process with
    its log in `root` (redis.log, npc.log, gateway.log), as a deployment runs them, on
    one business clock (START, at real speed). A process that exits before it listens,
    or does not listen in time, is raised as `process_start_failed` naming its log
    (gateway.fleet.Proc), those started before it stopped; so are they when the start is
    cancelled (Ctrl-C)."""
    redis_port, sim_port, gw_port = free_port(), free_port(), free_port()
    prepare(root, PAYERS)
    anchor = time.time()
    clock = ScaledClock(start=START, anchor_epoch_s=anchor, rate=1.0).to_spec()
    (root / "redis").mkdir()
    config = root / "gateway.toml"
    values = {
        "data_dir": str(root / "gateway"), "database_url": _database_url(root),
        "port": gw_port, "npc_url": f"http://127.0.0.1:{sim_port}/link/inbound",
        "redis_url": f"redis://127.0.0.1:{redis_port}/0", "keys_dir": str(root / "keys"),
        "webhook_url": f"http://127.0.0.1:{hook_port}/hook",
        "webhook_secret": WEBHOOK_SECRET, "log_level": "WARNING", "clock": clock}
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    procs = {
        "redis": Proc("redis", [redis_binary(), "--bind", "127.0.0.1", "--port",
                                str(redis_port), "--dir", str(root / "redis"),
                                "--appendonly", "yes", "--appendfsync", "everysec",
                                "--save", ""], redis_port, root / "redis.log"),
        "npc": Proc("npc", [
            sys.executable, "-m", "gateway.cli", "simulate", "npc", "--port", str(sim_port),
            "--data", str(root / "npc"), "--keys", str(root / "keys"), "--phase", "10",
            "--clock", clock, "--beps-netting-interval", str(BEPS_ROUND_S),
            "--bank", f"{BANK}=http://127.0.0.1:{gw_port}/link/inbound",
            "--balance", f"{BANK}={10**15}"], sim_port, root / "npc.log"),
        # The checks read the database and Redis laid out here: a PAYGATE_ variable of
        # the environment (PAYGATE_DATABASE_URL, say) must not take the gateway elsewhere.
        "gateway": Proc("gateway", [
            sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            gw_port, root / "gateway.log", hidden=setting_variables(values)),
    }
    running = Running(procs, gw_port, redis_port, sim_port, root, anchor)
    try:
        for proc in procs.values():
            await proc.start_async()
        await asyncio.sleep(1.0)  # login and the first probe settle
    except BaseException:
        running.stop()
        raise
    return running


@asynccontextmanager
async def processes(root: Path, load: Load) -> AsyncIterator[Running]:
    """The core system's webhook (noting into `load`) and the processes of
    start_processes, for the body of an `async with`: every process is stopped and the
    webhook closed however the body, or the start, ends (done, failed, Ctrl-C)."""
    runner, hook_port = await webhook_server(load)
    try:
        running = await start_processes(root, hook_port)
        try:
            yield running
        finally:
            running.stop()
    finally:
        await runner.cleanup()


async def product(root: Path, duration_s: float, paced_s: float,
                  beps_s: float) -> dict[str, Any]:
    load = Load()
    async with processes(root, load) as running:
        return await _phases(running, load, duration_s, paced_s, beps_s)


async def _phases(running: Running, load: Load, duration_s: float, paced_s: float,
                  beps_s: float) -> dict[str, Any]:
    """HVPS as fast as it is taken, HVPS paced, then BEPS: one after the other, each
    phase's payments settled (or its wait over) before the next begins."""
    procs = running.procs
    url = f"{running.gateway_url}/v1/transfers"
    samples: list[dict[str, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_queues(
        f"redis://127.0.0.1:{running.redis_port}/0", samples, stop))
    cpu_before = {name: proc_cpu_s(p.pid) for name, p in procs.items()}
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    accepted, tried = await drive(url, duration_s, "max", load)
    accept_end = time.perf_counter()
    await _settled(load, list(load.accepted_at))
    hooks = {"posts": load.hook_posts, "events": load.hook_events}
    complete_end = max(load.settled_at.values(), default=start)
    cpu_after = {name: proc_cpu_s(p.pid) for name, p in procs.items()}
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    max_accept_ms = list(load.accept_ms)
    completion_ms = [(load.settled_at[i] - t) * 1000 for i, t in load.accepted_at.items()
                     if i in load.settled_at]

    paced = Load()
    paced_rate = PACED_RATE
    await drive(url, paced_s, "paced", paced, rate=paced_rate)
    await _settled(load, list(paced.accepted_at))  # the webhook notes every settlement

    beps = await beps_phase(running.root, procs, running.database_url,
                            running.clock_anchor_epoch, [running.gateway_url], beps_s)
    checks = await npc_and_ledger_checks(running.npc_url, running.database_url)
    stop.set()
    await sampler
    peaks = {name: round(proc_peak_mib(p.pid), 1) for name, p in procs.items()}
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
        "peak_mib": peaks, "queue_samples": samples, "beps": beps, "webhook": hooks,
        "checks": with_loads(checks, completed == accepted, beps),
    }


async def _settled(load: Load, ids: list[str]) -> None:
    """Wait until the webhook has told of every payment's settlement, or SETTLE_WAIT_S."""
    deadline = time.perf_counter() + SETTLE_WAIT_S
    while any(i not in load.settled_at for i in ids) and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)

# BEPS: batches through the API, then netting and settlement at the NPC


def load_failed(status: int, log_path: Path) -> PaygateError:
    """The refusal of a run whose BEPS load generator ended with `status`: the error
    shape it wrote as its last line (gateway.bench_load), or, when it wrote none (killed,
    or dead before it could), `load_generator_failed` naming its log and that line."""
    line = last_line(log_path, LOG_TAIL_BYTES)  # the whole line: JSON to read
    try:
        problems = [Problem(**{k: e[k] for k in ("code", "path", "value", "expected",
                                                  "message")})
                    for e in json.loads(line)["errors"]]
    except (ValueError, TypeError, KeyError):
        problems = [Problem(
            LOAD_FAILED, str(log_path), status, "a load generator ending with status 0",
            f"the BEPS load generator exited with status {status}; its log {log_path} "
            f"ends with: {line[-LOG_TAIL_CHARS:]}")]
    return PaygateError(problems)


async def beps_phase(root: Path, procs: dict[str, Any], database_url: str,
                     clock_anchor_epoch: float, urls: list[str],
                     duration_s: float) -> dict[str, Any]:
    """Post BEPS batches to `urls` for `duration_s` from the load generator's own process,
    then wait until every accepted transaction is settled (or BEPS_SETTLE_WAIT_S has
    passed), as the gateway's database says, and until the webhook has told the core
    system of every change. The CPU of each of `procs` (by name, each with a `pid`) is
    counted from the first batch until then; business time ran at real speed from START
    at `clock_anchor_epoch`."""
    spec, out = root / "beps-load.json", root / "beps-accepted.json"
    spec.write_text(json.dumps({
        "urls": urls, "duration_s": duration_s, "clients": beps_bench.CLIENTS,
        "batch_items": beps_bench.BATCH_ITEMS, "out": str(out),
        "payers": [customer_account(n, "corporate") for n in range(1, PAYERS + 1)]}))
    cpu_before = {n: proc_cpu_s(p.pid) for n, p in procs.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_epoch, started = time.time(), time.perf_counter()
    log_path = root / "beps-load.log"
    with open(log_path, "ab") as log:
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.bench_load", str(spec), stderr=log)
    try:
        status = await load.wait()
    except BaseException:  # the run cancelled (Ctrl-C): the generator goes with it
        if load.returncode is None:
            load.kill()
            await load.wait()
        raise
    if status != 0:
        raise load_failed(status, log_path)
    # The only child reaped meanwhile is the load generator: its whole CPU, which shares
    # the box with the gateway's.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_cpu_s = (children.ru_utime + children.ru_stime
                  - children_before.ru_utime - children_before.ru_stime)
    sent = json.loads(out.read_text())
    accepted = set(sent["ids"])
    db = ledger.connect(database_url)
    try:
        deadline = time.perf_counter() + BEPS_SETTLE_WAIT_S
        await _until(db, deadline, lambda tx: tx.query_one(
            "SELECT COUNT(*) FROM payments WHERE state = 'settled' AND channel = 'beps' "
            "AND direction = 'out'", ())[0] >= len(accepted))
        waited_s = time.perf_counter() - started
        # The gateway's work for the phase ends when the core system has been told of
        # every change (the webhook rows delivered): its CPU is counted until then.
        await _until(db, deadline, lambda tx: tx.query_one(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'webhook' AND state IN "
            "('pending', 'sending')", ())[0] == 0)
        quiet_s = time.perf_counter() - started
        cpu = {n: round(proc_cpu_s(p.pid) - cpu_before[n], 2) for n, p in procs.items()}
        cpu["load_generator"] = round(load_cpu_s, 2)
        counting_started = time.perf_counter()
        with db.transaction() as tx:
            webhooks, told, rows = beps_outcomes(tx)
        counting_s = time.perf_counter() - counting_started
    finally:
        db.close()
    settled_at: dict[str, float] = {}
    completion_ms: list[float] = []
    states: dict[str, int] = {}
    settled_events = 0
    ids_in_db: set[str] = set()
    for pid, state, created_at, at in rows:
        if pid not in ids_in_db:
            states[state] = states.get(state, 0) + 1
        ids_in_db.add(pid)
        if at is None:
            continue
        settled_events += 1
        done = datetime.fromisoformat(at)
        settled_at[pid] = (done - START).total_seconds()
        completion_ms.append((done - datetime.fromisoformat(created_at)).total_seconds()
                             * 1000)
    # Business time runs at real speed from the run's anchor: the last settlement, in
    # seconds after the first batch was sent.
    last_s = max(settled_at.values(), default=0.0) + clock_anchor_epoch - started_epoch
    settled_accepted = sum(1 for pid in accepted if pid in settled_at)
    return {
        "accepted": len(accepted), "tried": sent["tried"], "refused": sent["refused"],
        "batches": len(sent["durations_s"]),
        "accepted_per_s": len(accepted) / sent["wall_s"],
        "batch_ms": [d * 1000 for d in sent["durations_s"]],
        "completed": settled_accepted,
        "completed_per_s": settled_accepted / max(last_s, 1e-9),
        "completion_ms": completion_ms, "waited_s": round(waited_s, 1),
        "webhooks_delivered_s": round(quiet_s, 1), "webhooks": webhooks, "cpu_s": cpu,
        "counting_s": round(counting_s, 2),
        "gateway_cpu_us_per_transaction":
            sum(v for k, v in cpu.items() if k.startswith("gateway")) /
            max(settled_accepted, 1) * 1e6,
        "checks": {"all_settled": settled_accepted == len(accepted),
                   "answered_twice": len(sent["ids"]) - len(accepted),
                   "beps_in_database": len(ids_in_db),
                   "unknown_to_the_core_system": len(ids_in_db - accepted),
                   "settled_twice": settled_events - len(settled_at),
                   "untold_changes": sum(1 for pid in accepted for state in BEPS_STRAIGHT
                                         if (pid, state) not in told),
                   "states": states}}


def beps_outcomes(tx: Any) -> tuple[dict[str, int], set[tuple[str, str]],
                                    list[tuple[str, str, str, str | None]]]:
    """What the gateway's database says of the BEPS transactions after a run: the BEPS
    changes told to the core system, counted by the state of the webhook row carrying
    each (one row carries many payments' changes; a whole package's change is filed under
    the package, and its payments are read from the row's events); the (payment, state)
    changes whose row was delivered; and a row (id, state, created_at, settled at) per
    settlement of each outgoing BEPS transaction, or one with None for one not settled.

    A transaction's settlement is its own history row, or its package's when the package
    settled whole (payments.GROUP_SUBJECT_SQL). Each question is a scan of one table,
    joined here by id: a join on "its own id or its package's subject" was a nested loop
    on PostgreSQL, whose statistics of tables filled in the last minute said they were
    nearly empty (each of the 45,000 transactions against every settlement row, with a
    subquery each time: over 7 minutes), and the joins of webhook_events to outbox, on a
    column with no index of its own, risked the same. One scan each stays linear on
    SQLite and PostgreSQL whatever the planner believes."""
    beps = {pid: (direction, state, created_at) for pid, direction, state, created_at in
            tx.query("SELECT id, direction, state, created_at FROM payments "
                     "WHERE channel = 'beps'", ())}
    outbox_state = dict(tx.query("SELECT id, state FROM outbox WHERE kind = 'webhook'", ()))
    subject = {pid: items.package_subject(package) for pid, package in tx.query(
        "SELECT payment_id, package_id FROM beps_items WHERE package_id <> '-'", ())}
    webhooks: dict[str, int] = {}
    told: set[tuple[str, str]] = set()
    for outbox_id, filed, state in tx.query(
            "SELECT outbox_id, payment_id, state FROM webhook_events", ()):
        row_state = outbox_state.get(outbox_id)
        pids = [filed]
        if filed.startswith(items.PACKAGE_SUBJECT_PREFIX):
            # A whole package's change (payments._write_webhooks): the events of the row
            # that name its payments with that state.
            body = tx.query_one("SELECT envelope FROM outbox WHERE id = ?", (outbox_id,))[0]
            pids = [e["id"] for e in orjson.loads(body)
                    if e["state"] == state and subject.get(e["id"]) == filed]
        for pid in pids:
            if pid in beps and row_state is not None:
                webhooks[row_state] = webhooks.get(row_state, 0) + 1
            if row_state == "done":
                told.add((pid, state))
    settled: dict[str, list[str]] = {}
    for filed, at in tx.query("SELECT payment_id, at FROM payment_events "
                              "WHERE state = 'settled'", ()):
        settled.setdefault(filed, []).append(at)
    rows: list[tuple[str, str, str, str | None]] = []
    for pid, (direction, state, created_at) in beps.items():
        if direction != "out":
            continue
        ats = settled.get(pid, []) + settled.get(subject.get(pid, ""), [])
        rows += [(pid, state, created_at, at) for at in ats] or [(pid, state, created_at,
                                                                    None)]
    return webhooks, told, rows


async def _until(db: Any, deadline: float, done: Any) -> bool:
    """Poll `done(tx)` every half second until it holds or `deadline` (perf_counter)."""
    while True:
        with db.transaction() as tx:
            if done(tx):
                return True
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.5)


async def npc_and_ledger_checks(npc_url: str, database_url: str) -> dict[str, Any]:
    """What must hold after a run for its figures to count: the NPC settled nothing twice
    and took no message twice, no ledger posting is doubled, the books balance and the
    clearing account agrees with the NPC's position for us."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{npc_url}/sim/stats") as r:
            npc = await r.json()
        async with http.get(f"{npc_url}/sim/beps/stats") as r:
            npc_beps = await r.json()
    db = ledger.connect(database_url)
    led = ledger.Ledger()
    try:
        with db.transaction() as tx:
            balanced = led.trial_balance(tx).balanced
            clearing_fen = led.clearing_balance(tx)
            doubled = tx.query_one(
                "SELECT COUNT(*) FROM (SELECT op, ref FROM ledger_entry WHERE op NOT IN "
                "('deposit', 'fund_clearing', 'settle_net') GROUP BY op, ref "
                "HAVING COUNT(*) > 1) d",
                ())[0]
    finally:
        db.close()
    return {"settled_twice": len(npc["settled_twice"]), "npc_duplicates": npc["duplicates"],
            "postings_doubled": doubled, "books_balanced": balanced,
            "clearing_agrees_with_npc": clearing_fen == npc["balances"][BANK],
            "npc_beps_packages": npc_beps["packages"],
            "npc_beps_outstanding_fen": npc_beps["outstanding_fen"].get(BANK, 0)}


def with_loads(checks: dict[str, Any], hvps_all_completed: bool,
               beps: dict[str, Any]) -> dict[str, Any]:
    """The run's checks with those of its HVPS and BEPS loads."""
    return dict(checks, all_completed=hvps_all_completed,
                beps_all_settled=beps["checks"]["all_settled"],
                beps_settled_twice=beps["checks"]["settled_twice"],
                beps_answered_twice=beps["checks"]["answered_twice"],
                beps_unknown_to_the_core_system=beps["checks"]["unknown_to_the_core_system"],
                beps_untold_changes=beps["checks"]["untold_changes"])


def clean(checks: dict[str, Any]) -> bool:
    """Whether the checks of a run (npc_and_ledger_checks, and those of each load) hold."""
    return (checks.get("all_completed", True) and checks.get("beps_all_settled", True)
            and checks["books_balanced"] and checks["clearing_agrees_with_npc"]
            and checks["settled_twice"] == 0 and checks["npc_duplicates"] == 0
            and checks["postings_doubled"] == 0
            and checks.get("beps_settled_twice", 0) == 0
            and checks.get("beps_answered_twice", 0) == 0
            and checks.get("beps_unknown_to_the_core_system", 0) == 0
            and checks.get("beps_untold_changes", 0) == 0
            and checks.get("npc_beps_outstanding_fen", 0) == 0)


async def baselines(root: Path, duration_s: float) -> dict[str, float]:
    """The bare baselines of this machine, measured in the same run as the product."""
    redis_port = free_port()
    (root / "bare-redis").mkdir()
    bare_redis_proc = Proc("bare redis", [
        redis_binary(), "--bind", "127.0.0.1", "--port", str(redis_port), "--dir",
        str(root / "bare-redis"), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", ""], redis_port, root / "bare-redis.log")
    await bare_redis_proc.start_async()
    try:
        base_http = await bare_aiohttp(root, min(duration_s, 5.0))
        base_redis = await bare_redis(f"redis://127.0.0.1:{redis_port}/0", 20_000)
    finally:
        bare_redis_proc.stop()
    return {"http": base_http, "redis": base_redis, "lxml": bare_lxml(5_000),
            "sqlite": bare_sqlite(root, 20_000),
            "beps_sqlite": beps_bench._bare_acceptance(root / "bare-beps.db", 20_000),
            "beps_npc_sqlite": beps_bench._bare_transactions(root / "bare-npc.db", 100_000)}


async def _run(quick: bool) -> dict[str, Any]:
    duration_s, paced_s, beps_s = (8.0, 4.0, 3.0) if quick else (60.0, 20.0, 20.0)
    with run_folder("paygate-bench-e2e-") as root:
        base = await baselines(root, duration_s)
        base_http, base_redis = base["http"], base["redis"]
        base_lxml, base_sqlite = base["lxml"], base["sqlite"]
        p = await product(root / "product", duration_s, paced_s, beps_s)
    config = {"duration_s": duration_s, "paced_s": paced_s, "concurrency": CONCURRENCY,
              "paced_rate": PACED_RATE, "beps_s": beps_s,
              "beps_batch_items": beps_bench.BATCH_ITEMS, "beps_clients": beps_bench.CLIENTS,
              "beps_netting_interval_s": BEPS_ROUND_S}
    beps = p["beps"]
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
        *beps_rows(beps, base),
    ]
    return {"bench": "e2e", "machine": machine(),
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode())
            .hexdigest(), "config": config, "clean": clean(p["checks"]),
            "detail": {"accepted": p["accepted"], "completed": p["completed"],
                       "gateway_cpu_us_per_hvps_payment":
                           round(p["gateway_cpu_us_per_payment"]),
                       "refused": p["refused"], "cpu_s": p["cpu_s"],
                       "hvps_webhook": p["webhook"], "peak_mib": p["peak_mib"],
                       "queue_depth_max": _max_depths(p["queue_samples"]),
                       "acceptance_p95_ms": round(percentile(p["accept_ms"], 95), 2),
                       "completion_p95_ms": round(percentile(p["completion_ms"], 95), 2),
                       "checks": p["checks"], "beps": beps_detail(beps)},
            "results": results}


def beps_rows(beps: dict[str, Any], base: dict[str, float]) -> list[dict[str, Any]]:
    """The BEPS figures of a run, each beside its baseline."""
    per_cpu_s = 1e6 / max(beps["gateway_cpu_us_per_transaction"], 1e-9)
    return [
        _row("beps_accepted", beps["accepted_per_s"], beps["batch_ms"],
             f"bare SQLite inserts of the same rows per transfer (bench beps), groups of "
             f"{beps_bench.STORE_GROUP}", base["beps_sqlite"]),
        _row("beps_completed", beps["completed_per_s"], beps["completion_ms"],
             "bare SQLite inserts of the transactions, one commit per package of "
             f"{beps_bench.PACKAGE_TXS_MAX} (the NPC's pragmas)", base["beps_npc_sqlite"]),
        {"name": "beps_transactions_per_gateway_cpu_second", "per_s": round(per_cpu_s, 1),
         "value": round(beps["gateway_cpu_us_per_transaction"]),
         "baseline": "bare SQLite inserts of the same rows per transfer (bench beps)",
         "baseline_per_s": round(base["beps_sqlite"]),
         "ratio": round(per_cpu_s / base["beps_sqlite"], 4)},
    ]


def beps_detail(beps: dict[str, Any]) -> dict[str, Any]:
    return {"accepted": beps["accepted"], "tried": beps["tried"], "refused": beps["refused"],
            "batches": beps["batches"], "completed": beps["completed"],
            "waited_s": beps["waited_s"], "webhooks_delivered_s": beps["webhooks_delivered_s"],
            "counting_s": beps["counting_s"],
            "webhooks": beps["webhooks"], "cpu_s": beps["cpu_s"],
            "gateway_cpu_us_per_transaction": round(beps["gateway_cpu_us_per_transaction"]),
            "batch_p95_ms": round(percentile(beps["batch_ms"], 95), 2),
            "completion_p95_ms": round(percentile(beps["completion_ms"], 95), 2),
            "checks": beps["checks"]}


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


def rss_slope_mib_per_min(rss: list[dict[str, float]], name: str, from_s: float,
                          to_s: float) -> float:
    """The least-squares slope of one process's sampled RSS (MiB a minute) between two
    instants of the run. The first minute, the ratio's baseline, holds the warm-up (the
    SQLite page caches filling to their cap, the interpreter's pools, the bounded caches):
    a process that grew there and then stayed flat has a ratio above 1 and a slope of 0,
    while one that leaks with every payment keeps its slope to the end."""
    points = [(row["t"], row[name]) for row in rss if from_s <= row["t"] <= to_s]
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return 0.0
    return sum((t - mean_t) * (m - mean_m) for t, m in points) / spread * 60


async def soak(minutes: float) -> dict[str, Any]:
    """Memory over a long run: HVPS payments at SOAK_RATE for `minutes`, the resident
    memory of each process sampled every SOAK_SAMPLE_S. Flat means the last minute's
    average is within a few per cent of the first minute's (the baseline). That ratio
    includes the warm-up; the detail also gives each process's slope over the run's
    second half (rss_slope_mib_per_min_second_half), which tells a growth that stopped
    from one that goes on with the payments."""
    duration_s = minutes * 60
    load = Load()
    rss: list[dict[str, float]] = []
    with run_folder("paygate-bench-soak-") as root:
        async with processes(root, load) as running:
            accepted, tried = await _soak_load(running, load, duration_s, rss)
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
                       len(load.settled_at), "rss_mib": rss,
                       "rss_slope_mib_per_min_second_half": {
                           name: round(rss_slope_mib_per_min(rss, name, duration_s / 2,
                                                             duration_s), 3)
                           for name in ("gateway", "npc", "redis")}},
            "clean": len(load.settled_at) == accepted,
            "results": results}


async def _soak_load(running: Running, load: Load, duration_s: float,
                     rss: list[dict[str, float]]) -> tuple[int, int]:
    """The soak's payments at SOAK_RATE, each process's memory noted in `rss` meanwhile;
    accepted and tried."""
    async def sample() -> None:
        started = time.perf_counter()
        while True:
            rss.append({"t": round(time.perf_counter() - started, 1)} | {
                name: round(proc_peak_mib(p.pid, "VmRSS"), 1)
                for name, p in running.procs.items()})
            await asyncio.sleep(SOAK_SAMPLE_S)
    sampler = asyncio.create_task(sample())
    try:
        accepted, tried = await drive(f"{running.gateway_url}/v1/transfers", duration_s,
                                      "soak", load, rate=SOAK_RATE)
        deadline = time.perf_counter() + SETTLE_WAIT_S
        while len(load.settled_at) < len(load.accepted_at) and \
                time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
    finally:
        sampler.cancel()
    return accepted, tried


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
