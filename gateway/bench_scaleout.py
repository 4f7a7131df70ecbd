"""`paygate bench e2e --gateways N --database-url postgresql://...`: the whole path with
several gateway processes sharing one Redis and one PostgreSQL database.

The processes are those of gateway.fleet (each gateway its own process, the NPC
delivering to all of them in turn); the core system's clients are spread evenly over
the gateways, and completion is timed by the webhook of each settlement, as in the
single-gateway benchmark. After the HVPS payments have settled comes the single-gateway
benchmark's BEPS phase, its load generator's clients spread over the gateways in the
same way (no paced HVPS phase here). The run is checked before it is recorded: every
accepted payment and BEPS transaction settled, nothing settled twice at the NPC or in
the shared database, no message taken twice, no posting doubled, the books balance and
agree with the NPC (gateway.bench_e2e). A run that fails a check is printed but not recorded
(`clean: false`). Its figures are kept under their own name, `e2e_scaleout`, beside the
single gateway's. On a machine with two cores, two gateways, PostgreSQL, the NPC and
the load generator share the same two cores: expect no gain over one gateway; what the
run shows is that the work is shared correctly, the path to more machines.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.bench import machine, run_folder
from gateway.bench_e2e import (BEPS_ROUND_S, CONCURRENCY, SETTLE_WAIT_S, START,
                               WEBHOOK_SECRET, Load, _row, baselines, beps_detail,
                               beps_phase, beps_rows, clean, drive, npc_and_ledger_checks,
                               payer_name, percentile, proc_cpu_s, webhook_server,
                               with_loads)
from gateway.fleet import Fleet, prepare_books


@contextmanager
def scratch_schema(url: str) -> Iterator[str]:
    """A URL whose connections work in a new schema of `url`'s database, dropped after."""
    import psycopg

    schema = f"paygate_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in url else "?"
            yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def product(root: Path, url: str, gateways: int, duration_s: float,
                  beps_s: float) -> dict[str, Any]:
    load = Load()
    runner, hook_port = await webhook_server(load)
    fleet = Fleet(root, url, gateways=gateways, start=START, settings={
        "webhook_url": f"http://127.0.0.1:{hook_port}/hook", "webhook_secret": WEBHOOK_SECRET,
        "log_level": os.environ.get("PAYGATE_BENCH_LOG_LEVEL", "WARNING")},
        npc_args=["--beps-netting-interval", str(BEPS_ROUND_S)])
    try:
        fleet.build(clearing_fen=10**15, peer_fen=10**15)
        # The load generator's payers are named as the SQLite run names them (bench_e2e).
        prepare_books(url, 20, 10**15, 10**14, "2026-12-07", holder=payer_name)
        await fleet.start_all_async()
        await asyncio.sleep(1.0)  # login and the first probe settle
        names = fleet.gateway_names
        cpu_before = {n: proc_cpu_s(fleet.procs[n].pid) for n in fleet.procs}
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        accepted, tried = await drive([f"{fleet.url(n)}/v1/transfers" for n in names],
                                      duration_s, "scale", load)
        accept_end = time.perf_counter()
        deadline = time.perf_counter() + SETTLE_WAIT_S
        while len(load.settled_at) < len(load.accepted_at) and time.perf_counter() < deadline:
            await asyncio.sleep(0.2)
        complete_end = max(load.settled_at.values(), default=start)
        cpu = {n: round(proc_cpu_s(fleet.procs[n].pid) - cpu_before[n], 2)
               for n in fleet.procs}
        own_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu["load_generator"] = round(own_after.ru_utime + own_after.ru_stime
                                      - own_before.ru_utime - own_before.ru_stime, 2)
        assert fleet.clock_anchor_epoch is not None
        beps = await beps_phase(root, fleet.procs, url, fleet.clock_anchor_epoch,
                                [fleet.url(n) for n in names], beps_s)
        checks_started = time.perf_counter()
        checks = await npc_and_ledger_checks(fleet.url("npc"), url)
        checks_s = time.perf_counter() - checks_started
    finally:
        fleet.stop_all()
        await runner.cleanup()
    completion_ms = [(load.settled_at[i] - t) * 1000 for i, t in load.accepted_at.items()
                     if i in load.settled_at]
    gateway_cpu_s = sum(cpu[n] for n in names)
    return {"accepted": accepted, "tried": tried, "refused": load.refused,
            "accepted_per_s": accepted / (accept_end - start),
            "completed": len(completion_ms),
            "completed_per_s": len(completion_ms) / max(complete_end - start, 1e-9),
            "accept_ms": load.accept_ms, "completion_ms": completion_ms, "cpu_s": cpu,
            "gateway_cpu_us_per_payment": gateway_cpu_s / max(len(completion_ms), 1) * 1e6,
            "beps": beps, "checks": with_loads(checks, len(completion_ms) == accepted, beps),
            "checks_s": checks_s}


async def run(quick: bool, gateways: int, database_url: str) -> dict[str, Any]:
    duration_s, beps_s = (8.0, 3.0) if quick else (60.0, 20.0)
    with run_folder("paygate-bench-scaleout-") as root:
        base = await baselines(root, duration_s)
        with scratch_schema(database_url) as url:
            p = await product(root / "product", url, gateways, duration_s, beps_s)
    config = {"duration_s": duration_s, "concurrency": CONCURRENCY, "gateways": gateways,
              "database": "postgresql", "beps_s": beps_s, "beps_netting_interval_s":
              BEPS_ROUND_S}
    per_cpu_s = 1e6 / max(p["gateway_cpu_us_per_payment"], 1e-9)
    results = [
        _row("hvps_accepted", p["accepted_per_s"], p["accept_ms"],
             "bare aiohttp endpoint, same body and clients", base["http"]),
        _row("hvps_completed", p["completed_per_s"], p["completion_ms"],
             "bare Redis stream appends from Python (one per payment stage)", base["redis"]),
        {"name": "hvps_payments_per_gateway_cpu_second", "per_s": round(per_cpu_s, 1),
         "value": round(p["gateway_cpu_us_per_payment"]),
         "baseline": "bare SQLite group commits (64 rows, WAL, synchronous=FULL)",
         "baseline_per_s": round(base["sqlite"]),
         "ratio": round(per_cpu_s / base["sqlite"], 4)},
        *beps_rows(p["beps"], base),
    ]
    return {"bench": "e2e_scaleout", "machine": machine(),
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode())
            .hexdigest(), "config": config, "clean": clean(p["checks"]),
            "detail": {"accepted": p["accepted"], "completed": p["completed"],
                       "refused": p["refused"], "cpu_s": p["cpu_s"], "checks": p["checks"],
                       "gateway_cpu_us_per_hvps_payment":
                           round(p["gateway_cpu_us_per_payment"]),
                       "acceptance_p95_ms": round(percentile(p["accept_ms"], 95), 2),
                       "completion_p95_ms": round(percentile(p["completion_ms"], 95), 2),
                       "checks_s": round(p["checks_s"], 2), "beps": beps_detail(p["beps"])},
            "results": results}
