"""The BEPS phase of `paygate bench e2e` on its own: Redis, the simulated NPC and the
gateway started as that benchmark starts them (gateway.bench_e2e.start_processes, its
webhook_server as the core system), then its `beps_phase` as it is (batches of
`bench beps`'s size from its own load generator process, the NPC netting every
BEPS_ROUND_S, every transaction waited for until settled and told). Nothing of what it
measures is changed; it only leaves the HVPS phases out, so that a change to the BEPS
path can be measured in pairs in a few minutes.

    .venv/bin/python -m benchmarks.beps_phase [--seconds 15] [--profile RAW]

One line: accepted and their rate, settled and their rate, the CPU a transaction of the
gateway, the NPC, Redis and the load generator, the batches' median latency, whether
the run's checks hold (every accepted transaction settled once and told, none unknown),
the load average; then the CPU of each of the gateway's threads since it started (the
event loop's and the store's). With --profile, py-spy (`--gil`, 200 Hz, raw stacks)
records the gateway into RAW from the first batch until the run's end; py-spy is looked
for beside the interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway import bench_e2e as e2e
from gateway.bench import run_folder

CHECKS_ZERO = ("answered_twice", "unknown_to_the_core_system", "settled_twice",
               "untold_changes")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of a process, by `tid:name`, most first."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "stat").read_text()
        name = text.split("(", 1)[1].rsplit(")", 1)[0]
        fields = text.rsplit(")", 1)[1].split()
        out[f"{task.name}:{name}"] = (int(fields[11]) + int(fields[12])) / ticks
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def print_threads(pid: int) -> None:
    """The CPU seconds of each of a process's threads that used any, most first."""
    print("gateway threads, CPU s:",
          {k: round(v, 2) for k, v in thread_cpu_s(pid).items() if v}, flush=True)


def summary(r: dict[str, Any]) -> str:
    n = max(r["completed"], 1)
    cpu = r["cpu_s"]
    clean = r["checks"]["all_settled"] and all(r["checks"][k] == 0 for k in CHECKS_ZERO)
    return (f"accepted {r['accepted']}/{r['tried']} {r['accepted_per_s']:.0f}/s "
            f"settled {r['completed']} {r['completed_per_s']:.0f}/s "
            f"gw {cpu['gateway'] / n * 1e6:.0f}us npc {cpu['npc'] / n * 1e6:.0f}us "
            f"redis {cpu['redis'] / n * 1e6:.0f}us "
            f"loadgen {cpu['load_generator'] / n * 1e6:.0f}us "
            f"batch_p50 {e2e.percentile(r['batch_ms'], 50):.0f}ms "
            f"clean {clean} load {os.getloadavg()[0]:.1f}")


async def main(seconds: float, profile: str | None) -> None:
    load = e2e.Load()
    with run_folder("paygate-beps-phase-") as root:
        async with e2e.processes(root, load) as running:
            await _phase(root, running, seconds, profile)


async def _phase(root: Path, running: e2e.Running, seconds: float,
                 profile: str | None) -> None:
    procs = running.procs
    spy = None
    try:
        if profile:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                 "-r", "200", "--gil", "-o", profile, "-p", str(procs["gateway"].pid),
                 "-d", str(int(seconds + 15))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = await e2e.beps_phase(root, procs, running.database_url,
                                 running.clock_anchor_epoch, [running.gateway_url],
                                 seconds)
        print(summary(r), flush=True)
        print_threads(procs["gateway"].pid)
    finally:
        if spy is not None:
            spy.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.profile))
