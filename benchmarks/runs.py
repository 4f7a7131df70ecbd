"""What the small per-path measurements of benchmarks/ share: their options (items,
repeats, SQLite or PostgreSQL), a database per run, and the printed medians."""

from __future__ import annotations

import argparse
import json
import statistics
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from ledger.fixtures import postgres_schema


def arguments(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgresql", action="store_true")
    return parser.parse_args()


def database(args: argparse.Namespace, folder: str | Path, name: str
             ) -> AbstractContextManager[str]:
    """A fresh database for one run: a PostgreSQL schema of its own (dropped after), or
    a SQLite file named `name` in the run's folder."""
    if args.postgresql:
        return postgres_schema(name)
    return nullcontext(f"sqlite:///{folder}/{name}.db")


def report(args: argparse.Namespace, runs: list[dict[str, float]]) -> None:
    """Every run's figures and the median of each, as one JSON line."""
    print(json.dumps({
        "items": args.items, "repeat": args.repeat,
        "database": "postgresql" if args.postgresql else "sqlite",
        **{f"{name}_median": round(statistics.median(r[name] for r in runs), 1)
           for name in runs[0]},
        "runs": [{k: round(v, 1) for k, v in r.items()} for r in runs]}))
