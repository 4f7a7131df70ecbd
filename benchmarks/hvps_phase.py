"""The HVPS phases of `paygate bench e2e` on their own: Redis, the simulated NPC and
the gateway started as that benchmark starts them (gateway.bench_e2e.start_processes,
its webhook_server as the core system), then transfers driven by its `drive` for a
fixed time, as fast as its clients can or paced (`--rate`), every accepted payment
waited for until the webhook tells of its settlement. Nothing of what it measures is
changed; it leaves the other phases out, so that a change to the HVPS path can be
measured in pairs in a minute or two.

    .venv/bin/python -m benchmarks.hvps_phase [--seconds 15] [--rate 500] [--profile RAW]

One line: accepted and their rate, settled and their rate, the CPU a payment of the
gateway, the NPC, Redis and the load generator, acceptance p50/p99, whether every
accepted payment settled, the load average; then the CPU of each of the gateway's
threads since it started. With --profile, py-spy (`--gil`, 200 Hz, raw stacks) records
the gateway (or, with --profiled npc, the simulated NPC) into RAW for the run; py-spy is looked for beside the interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.beps_phase import print_threads
from gateway import bench_e2e as e2e
from gateway.bench import run_folder


async def main(seconds: float, rate: float | None, profile: str | None,
               profiled: str = "gateway") -> None:
    load = e2e.Load()
    with run_folder("paygate-hvps-phase-") as root:
        async with e2e.processes(root, load) as running:
            await _phase(running, load, seconds, rate, profile, profiled)


async def _phase(running: e2e.Running, load: e2e.Load, seconds: float, rate: float | None,
                 profile: str | None, profiled: str = "gateway") -> None:
    procs = running.procs
    spy = None
    try:
        if profile:
            spy = subprocess.Popen(  # noqa: ASYNC220 (started once, before the load)
                [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                 "-r", "200", "--gil", "-o", profile, "-p", str(procs[profiled].pid),
                 "-d", str(int(seconds + 10))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_before = {name: e2e.proc_cpu_s(p.pid) for name, p in procs.items()}
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        accepted, tried = await e2e.drive(f"{running.gateway_url}/v1/transfers", seconds,
                                          "phase", load, rate=rate)
        accept_end = time.perf_counter()
        await e2e._settled(load, list(load.accepted_at))
        cpu = {name: e2e.proc_cpu_s(p.pid) - cpu_before[name] for name, p in procs.items()}
        own_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu["load_generator"] = (own_after.ru_utime + own_after.ru_stime
                                 - own_before.ru_utime - own_before.ru_stime)
        settled = [i for i in load.accepted_at if i in load.settled_at]
        end = max(load.settled_at.values(), default=start)
        n = max(len(settled), 1)
        print(f"accepted {accepted}/{tried} {accepted / (accept_end - start):.0f}/s "
              f"settled {len(settled)} {len(settled) / max(end - start, 1e-9):.0f}/s "
              f"gw {cpu['gateway'] / n * 1e6:.0f}us npc {cpu['npc'] / n * 1e6:.0f}us "
              f"redis {cpu['redis'] / n * 1e6:.0f}us "
              f"loadgen {cpu['load_generator'] / n * 1e6:.0f}us "
              f"p50 {e2e.percentile(load.accept_ms, 50):.1f}ms "
              f"p99 {e2e.percentile(load.accept_ms, 99):.1f}ms "
              f"all_settled {len(settled) == accepted} load {os.getloadavg()[0]:.1f}",
              flush=True)
        print_threads(procs["gateway"].pid)
    finally:
        if spy is not None:
            spy.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=None,
                        help="transfers a second (paced); as fast as taken if not given")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--profiled", default="gateway", choices=("gateway", "npc"),
                        help="the process --profile records")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rate, args.profile, args.profiled))
