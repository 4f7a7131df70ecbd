"""`paygate bench {messages,beps,ledger,e2e} [--quick]`: benchmarks with baselines.

Each benchmark returns the object of CONTRACT.md §8 (every figure beside a baseline
measured in the same run, as a ratio). This command prints it as the last line, stores
it in `benchmarks/results.json` (by benchmark name) and rewrites the performance table
of README.md between its markers from that file.

A run that cannot be made (a process it starts does not listen: `process_start_failed`)
is told in the error shape on standard error, exit status 2, every process it started
stopped and its folder kept for the logs (`run_folder`); a run interrupted (Ctrl-C)
stops them too, removes its folder and ends with status 130, and one told to stop
(SIGTERM, as a supervisor or `kill` stops a command) does the same and ends with 143.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.errors import PaygateError
from gateway.runfolder import print_errors

RUNNERS = {
    "messages": "gateway.messages.bench",
    "ledger": "ledger.bench",
    "beps": "gateway.beps.bench",
    "e2e": "gateway.bench_e2e",
}
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def machine() -> str:
    memory = ""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}{memory}, Python {platform.python_version()}"


# What --help says at its end, so that nobody runs a benchmark without knowing it.
WRITES = """\
Writes files: without --no-write, a full run whose checks pass stores its result in
benchmarks/results.json and rewrites the Performance table of README.md (between its
bench markers) from that file; this is how the project records its figures. Give
--no-write to measure without changing either; a --quick run and a run whose checks
failed never write."""


def bench_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="paygate bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a benchmark and print its JSON result (each figure beside a "
                    "baseline measured in the same run).",
        epilog=WRITES)
    parser.add_argument("name", choices=sorted(RUNNERS),
                        help="messages: parsing and checking; beps: batch acceptance and "
                             "netting; ledger: durable postings; e2e: the gateway, the "
                             "simulated NPC and Redis end to end")
    parser.add_argument("--quick", action="store_true",
                        help="a short run, for a smoke test; prints only, writes nothing")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; leave benchmarks/results.json and README.md "
                             "alone (without it a full, clean run rewrites both)")
    parser.add_argument("--gateways", type=int, default=1,
                        help="e2e: gateway processes sharing one Redis and one database")
    parser.add_argument("--database-url", default="",
                        help="e2e: the PostgreSQL database the gateways share (a schema of "
                             "the run's own is made in it and dropped)")
    parser.add_argument("--soak-minutes", type=float, default=0.0,
                        help="e2e: HVPS load at a steady rate for this long, with the "
                             "memory of every process sampled (recorded as e2e_soak)")
    args = parser.parse_args(argv)
    terminated: list[int] = []
    try:
        with _sigterm_as_interrupt(terminated):
            result = _run(parser, args)
    except PaygateError as exc:  # the run could not be made; its processes are stopped
        print_errors(exc.to_dict())
        return 2
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"paygate bench: {how}; every process it started is stopped",
              file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM if terminated else 130
    result.setdefault("quick", args.quick)
    # A run whose checks failed (something lost or doubled) is shown, never recorded; a
    # quick run is a smoke test and never replaces the recorded figures.
    if not args.no_write and not args.quick and result.get("clean", True):
        store(result)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result.get("clean", True) else 1


@contextmanager
def _sigterm_as_interrupt(terminated: list[int]) -> Iterator[None]:
    """While the run lasts, SIGTERM stops it as Ctrl-C does, instead of ending this
    process at once and leaving the processes it started running: it is handed to the
    SIGINT handler in force when it comes (asyncio's while a runner's loop runs, which
    cancels the run so that it stops its processes; else Python's, which raises
    KeyboardInterrupt). `terminated` is given the signal, for the exit status."""
    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored or left to the system: stop anyway
            raise KeyboardInterrupt
    before = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    runner = importlib.import_module(RUNNERS[args.name])
    if args.soak_minutes:
        if args.name != "e2e" or args.soak_minutes <= 0:
            parser.error("--soak-minutes is for e2e, a positive number of minutes")
        return runner.run(soak_minutes=args.soak_minutes)
    if args.gateways != 1 or args.database_url:
        if args.name != "e2e" or args.gateways < 1 or \
                not args.database_url.startswith(("postgresql://", "postgres://")):
            parser.error("--gateways and --database-url are for e2e, with a postgresql:// "
                         "URL (gateway processes share PostgreSQL, never a SQLite file)")
        return runner.run(quick=args.quick, gateways=args.gateways,
                          database_url=args.database_url)
    return runner.run(quick=args.quick)


@contextmanager
def run_folder(prefix: str) -> Iterator[Path]:
    """A new folder for a benchmark's processes, their data and logs, under the system's
    temporary directory (or PAYGATE_BENCH_KEEP). Removed when the run is done, or is
    interrupted (Ctrl-C, a cancelled task); kept when the run fails, so that the logs its
    error names can be read, which is said on standard error with how to remove it. The
    run stops its processes before it ends, so that none writes to the folder after."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("PAYGATE_BENCH_KEEP")))
    try:
        yield path
    except Exception:
        print(f"data in {path} (kept, since the run failed); remove it with: rm -r {path}",
              file=sys.stderr, flush=True)
        raise
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    shutil.rmtree(path)


def store(result: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[result["bench"]] = result
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    if README.exists():
        text = README.read_text(encoding="utf-8")
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            README.write_text(head + START + "\n" + table(results) + END + tail,
                              encoding="utf-8")


def table(results: dict[str, Any]) -> str:
    lines = ["| bench | figure | per s | p50 ms | p99 ms | baseline | baseline per s | ratio "
             "| rounds: middle half of the ratios |",
             "|---|---|---|---|---|---|---|---|---|"]
    machines = set()
    for name in sorted(results):
        r = results[name]
        machines.add(r.get("machine", "?"))
        for row in r["results"]:
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                name + (" (quick)" if r.get("quick") else ""), row["name"],
                _n(row.get("per_s", row.get("value"))), _n(row.get("p50_ms")),
                _n(row.get("p99_ms")), row.get("baseline", ""),
                _n(row.get("baseline_per_s", row.get("baseline_value"))),
                _n(row.get("ratio")), _spread(row)))
    lines.append("")
    lines.append("Measured on: " + "; ".join(sorted(machines)) + ".")
    return "\n".join(lines) + "\n"


def _spread(row: dict[str, Any]) -> str:
    """For figures measured in rounds: how many, and the quartiles of their ratios."""
    if "ratio_low" not in row:
        return ""
    return f"{row['rounds']}: {_n(row['ratio_low'])}–{_n(row['ratio_high'])}"


def _n(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
