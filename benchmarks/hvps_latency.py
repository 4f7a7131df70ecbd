"""Where an HVPS acceptance's time goes: the paced HVPS phase of `benchmarks.hvps_phase`
with time stamps on each accepted request, in the gateway and in the load generator,
and the time split into its parts for the median and the slowest requests.

    .venv/bin/python -m benchmarks.hvps_latency [--seconds 20] [--rate 500] [--keep DIR]

The gateway runs as the benchmark starts it, its process entered through this module
(`gateway` below), which wraps, in that process only, the transfer handler, the store's
`run` and its transactions, and the SQLite COMMIT with clocks; nothing of the product
is changed. Every clock is `time.perf_counter` (CLOCK_MONOTONIC, shared by the two
processes); requests are joined by payment id. Printed: the phase's line as
hvps_phase prints it, then the means of each part for p40-p60, p90-p99 and the slowest
1% (the first second left out), the share of each group whose payment was handed to its
lane's stream and that hand-over's time, the checkpoints (COMMITs whose thread wrote over
5 MB), and the kinds of store work in the transactions the slowest 1% waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextvars
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

TRACE_ENV = "HVPS_LATENCY_TRACE"  # the file the gateway's stamps are written to
CHECKPOINT_BYTES = 5_000_000  # a COMMIT whose thread wrote more copied the log back
PARTS = (
    ("sent -> handler", lambda r: r["h0"] - r["sent"]),
    ("checks before the store", lambda r: r["q"] - r["h0"]),
    ("queued, until its transaction", lambda r: r["bs"] - r["q"]),
    ("works ahead in its transaction", lambda r: r["ws"] - r["bs"]),
    ("its own work", lambda r: r["we"] - r["ws"]),
    ("works after it, gathered rows", lambda r: r["cs"] - r["we"]),
    ("COMMIT", lambda r: r["ce"] - r["cs"]),
    ("back on the loop, handler's end", lambda r: r["h1"] - r["ce"]),
    ("handler's end -> client", lambda r: r["sent"] + r["ms"] / 1000 - r["h1"]),
)


def _thread_written() -> int:
    with open("/proc/thread-self/io") as fh:
        for line in fh:
            if line.startswith("wchar"):
                return int(line.split()[1])
    return 0


def gateway(argv: list[str]) -> int:
    """The gateway's process: `gateway.cli` with the clocks wrapped around it."""
    from gateway import api, app, cli, store
    from ledger import db

    out = open(os.environ[TRACE_ENV], "a", buffering=1)  # noqa: SIM115 (the process's life)
    request: contextvars.ContextVar[dict | None] = contextvars.ContextVar("request",
                                                                          default=None)
    # The request being handled, for its hand-over (`request` is emptied at its store work).
    handling: contextvars.ContextVar[dict | None] = contextvars.ContextVar("handling",
                                                                           default=None)
    local = threading.local()
    handler, run, run_batch_once, commit = (api.post_transfer, store.Store.run,
                                            store.Store._run_batch_once,
                                            db.Database._commit)
    hand_over = app.Gateway.hand_over

    async def post_transfer(web_request: Any) -> Any:
        stamps = {"h0": time.perf_counter()}
        request.set(stamps)
        handling.set(stamps)
        response = await handler(web_request)
        stamps["h1"] = time.perf_counter()
        if response.status == 201 and "ce" in stamps:
            stamps["id"] = json.loads(response.body)["id"]
            out.write("R " + json.dumps(stamps) + "\n")
        return response

    async def traced_run(self: Any, work: Any, *args: Any, **kwargs: Any) -> Any:
        stamps = request.get()
        if stamps is not None:
            request.set(None)  # one store work a request is timed: its acceptance
            stamps["q"] = time.perf_counter()

        def timed(tx: Any) -> Any:
            start = time.perf_counter()
            try:
                return work(tx)
            finally:
                end = time.perf_counter()
                local.works.append((getattr(work, "__qualname__", "?"),
                                    round((end - start) * 1e6)))
                if stamps is not None:
                    stamps["ws"], stamps["we"] = start, end
                    local.stamped.append(stamps)
        return await run(self, timed, *args, **kwargs)

    async def traced_hand_over(self: Any, entries: list) -> None:
        stamps = handling.get()
        start = time.perf_counter()
        await hand_over(self, entries)
        if stamps is not None and "ce" in stamps and entries:
            stamps["ho"] = time.perf_counter() - start

    def traced_batch(self: Any, *args: Any, **kwargs: Any) -> Any:
        local.works, local.stamped, local.commit = [], [], None
        start = time.perf_counter()
        result = run_batch_once(self, *args, **kwargs)
        commit_start, commit_end, written = local.commit or (start, start, 0)
        for stamps in local.stamped:
            stamps.update(bs=start, cs=commit_start, ce=commit_end)
        out.write(json.dumps({"bs": start, "cs": commit_start, "ce": commit_end,
                              "written": written, "works": local.works}) + "\n")
        return result

    def traced_commit(self: Any, *args: Any) -> Any:
        start, before = time.perf_counter(), _thread_written()
        try:
            return commit(self, *args)
        finally:
            local.commit = (start, time.perf_counter(), _thread_written() - before)

    api.post_transfer = post_transfer
    app.Gateway.hand_over = traced_hand_over
    store.Store.run = traced_run
    store.Store._run_batch_once = traced_batch
    db.Database._commit = traced_commit
    return cli.main(argv)


def report(requests: list[dict[str, Any]], batches: list[dict[str, Any]]) -> None:
    first = min(r["sent"] for r in requests) + 1.0
    requests = sorted((r for r in requests if r["sent"] >= first), key=lambda r: r["ms"])
    n = len(requests)
    groups = {"p40-p60": requests[int(n * .4):int(n * .6)],
              "p90-p99": requests[int(n * .9):int(n * .99)],
              "slowest 1%": requests[int(n * .99):]}
    print(f"{n} requests; ms, means of each group")
    print(f"{'':34}" + "".join(f"{name:>12}" for name in groups))
    for part, of in PARTS:
        print(f"{part:34}" + "".join(f"{statistics.mean(of(r) for r in g) * 1000:12.1f}"
                                     for g in groups.values()))
    print(f"{'total':34}" + "".join(f"{statistics.mean(r['ms'] for r in g):12.1f}"
                                    for g in groups.values()))
    for name, group in groups.items():
        handed = [r["ho"] for r in group if "ho" in r]
        print(f"  {name}: {100 * len(handed) / len(group):.0f}% handed to a lane's stream, "
              f"{statistics.mean(handed or [0]) * 1000:.1f} ms in that hand-over")
    checkpoints = [b for b in batches if b["written"] > CHECKPOINT_BYTES]
    print(f"checkpoints {len(checkpoints)}: COMMIT ms "
          f"{[round((b['ce'] - b['cs']) * 1000) for b in checkpoints]}, MB written "
          f"{[round(b['written'] / 1e6, 1) for b in checkpoints]}")
    for name, group in groups.items():
        waited = sum(any(b["cs"] < r["ce"] and b["ce"] > r["q"] for b in checkpoints)
                     for r in group)
        print(f"  {name} waiting on one: {100 * waited / len(group):.0f}%")
    starts = [b["bs"] for b in batches]
    kinds: Counter[str] = Counter()
    for r in groups["slowest 1%"]:
        at = bisect.bisect_right(starts, r["q"]) - 1
        for b in batches[max(at, 0):at + 2]:  # the one running when it came, and its own
            for kind, us in b["works"]:
                kinds[kind] += us
    print("the slowest 1%: store work in the transaction running when each came and in "
          "its own, ms a request")
    for kind, us in kinds.most_common(6):
        print(f"  {kind[:70]:70} {us / len(groups['slowest 1%']) / 1000:8.1f}")


async def main(seconds: float, rate: float, keep: Path | None) -> None:
    from benchmarks import hvps_phase
    from gateway import bench_e2e as e2e
    from gateway.bench import run_folder

    def proc(name: str, args: list[str], *more: Any, **named: Any) -> Any:
        if name == "gateway":
            at = args.index("gateway.cli")
            args = [*args[:at], "benchmarks.hvps_latency", "gateway", *args[at + 1:]]
        return e2e_proc(name, args, *more, **named)
    e2e_proc, e2e.Proc = e2e.Proc, proc
    load = e2e.Load()
    with run_folder("paygate-hvps-latency-") as root:
        trace = (keep or root) / "gateway-stamps.jsonl"
        os.environ[TRACE_ENV] = str(trace)
        async with e2e.processes(root, load) as running:
            await hvps_phase._phase(running, load, seconds, rate, None)
        requests, batches = [], []
        sent = dict(zip(load.accepted_at.items(), load.accept_ms))
        client = {pid: (at, ms) for (pid, at), ms in sent.items()}
        for line in trace.read_text().splitlines():
            if line.startswith("R "):
                stamps = json.loads(line[2:])
                if stamps["id"] in client:
                    stamps["sent"], stamps["ms"] = client[stamps["id"]]
                    requests.append(stamps)
            else:
                batches.append(json.loads(line))
    report(requests, batches)


if __name__ == "__main__":
    if sys.argv[1:2] == ["gateway"]:
        sys.exit(gateway(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--keep", type=Path, default=None,
                        help="a folder to keep the gateway's stamps in")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rate, args.keep))
