"""Which SQL statements the gateway runs for an HVPS payment, in which piece of work, and
how many bytes of SQLite's write-ahead log they cost.

    .venv/bin/python -m benchmarks.hvps_statements [--payments 50] [--show]

Starts the gateway beside the simulated NPC (tests/e2e_support.py, a SQLite file) with a
core system's webhook on loopback, then sends urgent JSON transfers through
`submit_transfer` one after another, each waited for until it is settled and the core
system was told of it, so that each transaction holds the work of one step of one
payment. Every statement the gateway's database connection runs is seen through
sqlite3's trace callback and counted under the piece of work that ran it (the qualified
name of the function given to `Store.run`; statements outside any work are the group
commit's own: BEGIN, the work's savepoint, COMMIT; the ledger's balance changes written
just before COMMIT are counted apart). The log is not checkpointed while
payments run, so its growth is the bytes each transaction wrote.

`--lanes` sends every hvps.111 and ccms.990 by its stream (the path a payment takes when
the link's slots are all taken). `--no-trace` leaves the statements uncounted, for the database thread's CPU per payment
without the tracing's own. `--concurrency N` keeps N payments under way at once instead (their work then shares
transactions, as under load: fewer log bytes per payment). `--show` prints every statement shape with its count per payment, and the statements of
the last payment in the order they ran.
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import json
import re
import sqlite3
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


FRAME = "(group commit)"
DEFERRED = "(written at commit)"  # the ledger's balance changes, flushed before COMMIT
# The group commit's own statements (a savepoint a work opens itself is named sp2 and up).
_FRAME_SQL = frozenset({"BEGIN IMMEDIATE", "COMMIT", "SAVEPOINT sp1", "RELEASE SAVEPOINT sp1",
                        "ROLLBACK TO SAVEPOINT sp1"})
# Work not done for the payments: the BEPS packer's timer.
IGNORED = ("Packer.",)
_NUMBERS = re.compile(r"\b\d+\b|'[^']*'|X'[0-9A-Fa-f]*'")


def shape(sql: str) -> str:
    """A statement with its literal values taken out (the trace gives them expanded)."""
    return " ".join(_NUMBERS.sub("?", sql).split())[:160]


class Tracer:
    """Counts the statements and log bytes of every transaction, by piece of work."""

    def __init__(self, store: Any, wal: Path, trace: bool = True) -> None:
        self.store, self.wal, self.trace = store, wal, trace
        self.db_cpu_s = 0.0  # the database thread's CPU in the transactions counted
        self.local = threading.local()
        self.statements: Counter[tuple[str, str]] = Counter()
        self.wal_bytes: Counter[str] = Counter()
        self.transactions = 0
        self.log: list[str] = []  # every statement counted, in order
        self.on = False

    def install(self) -> None:
        conn = self.store._db._conn
        conn.execute("PRAGMA wal_autocheckpoint=0")
        if self.trace:
            conn.set_trace_callback(self._trace)
        run, run_batch = self.store.run, self.store._run_batch_once

        def labelled(work: Any) -> Any:
            label = getattr(work, "__qualname__", repr(work)).replace(".<locals>", "")

            def run_labelled(tx: Any) -> Any:
                # Kept after the work returns: what it gathered is written next, before
                # the group commit's RELEASE (gateway.store._write_gathered).
                self.local.label = label
                return work(tx)
            run_labelled.label = label
            return run_labelled

        async def traced_run(work: Any) -> Any:
            return await run(labelled(work))

        def traced_batch(works: list) -> Any:
            before, cpu = self._wal_size(), time.thread_time()
            try:
                return run_batch(works)
            finally:
                if self.on:
                    self.db_cpu_s += time.thread_time() - cpu
                    self.transactions += 1
                    grown = self._wal_size() - before
                    labels = sorted({getattr(w, "label", "?") for w, _ in works})
                    self.wal_bytes[" + ".join(labels)] += grown

        self.store.run = traced_run
        self.store._run_batch_once = traced_batch

    def _wal_size(self) -> int:
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def _trace(self, sql: str) -> None:
        if sql in _FRAME_SQL:
            label = FRAME
            if sql != "COMMIT":
                self.local.label = None
        else:
            label = getattr(self.local, "label", None) or DEFERRED
        if self.on and not label.startswith(IGNORED):
            self.statements[(label, shape(sql))] += 1
            self.log.append(f"{label} | {shape(sql)}")


async def measure(folder: Path, payments: int, concurrency: int = 1, lanes: bool = False,
                  trace: bool = True) -> dict[str, Any]:
    """Run `payments` HVPS payments, `concurrency` at a time (one: each waited for before
    the next); the counts per payment (`trace` false: the database thread's CPU and the
    log's bytes only, without the cost of tracing every statement)."""
    from tests.e2e_support import open_account, started, transfer, until, webhook_receiver

    async with webhook_receiver() as (url, posts), \
            started(folder, webhook_url=url, log_level="WARNING") as h:
        gw = h.gateway
        payer = await open_account(h, 1, 10_000_000 * 100)
        if lanes:  # no slot to send from the work itself: everything by its stream
            gw.direct.link_limit = gw.direct.ack_limit = 0
        tracer = Tracer(gw.store, folder / "gateway" / "gateway.db-wal", trace)
        tracer.install()
        told = Told(posts)

        async def one(key: str) -> None:
            status, answer = await gw.submit_transfer("core", key, transfer(payer, "100.00"))
            assert status == 201, (status, answer)
            await until(lambda: told.settled(answer["id"]) and _finished(gw.store.url),
                        f"{answer['id']} settled and told")

        # One payment first, outside the count: caches and prepared statements warm.
        await one("warm")
        # And the link quiet: a message the NPC made at start and retries on its own
        # schedule (the answer to our login, refused while our key was not yet read) is
        # not a payment's work.
        await until(lambda: _npc_idle(h), "the NPC with nothing left to deliver")
        tracer.on = True
        if concurrency == 1:
            for n in range(payments):
                tracer.log.clear()
                await one(f"p{n}")
        else:
            keys = iter(range(payments))

            async def client() -> None:
                for n in keys:
                    await one(f"p{n}")
            await asyncio.gather(*(client() for _ in range(concurrency)))
        tracer.on = False
        pages = wal_pages(folder / "gateway" / "gateway.db", tracer.wal)
    result = report(tracer, payments)
    result["wal_pages_per_payment_by_table"] = {
        name: round(count / payments, 2) for name, count in pages.most_common()}
    return result


async def _npc_idle(h: Any) -> bool:
    """Whether the simulated NPC has delivered everything it made (nothing pending)."""
    return not (await h.sim("GET", "/sim/stats"))["outbox"].get("pending", 0)


class Told:
    """The states the core system's webhook was told of, by payment."""

    def __init__(self, posts: list[tuple[bytes, str]]) -> None:
        self.posts, self.read = posts, 0
        self.states: dict[str, set[str]] = defaultdict(set)

    def settled(self, payment_id: str) -> bool:
        for body, _ in self.posts[self.read:]:
            for event in json.loads(body)["events"]:
                self.states[event["id"]].add(event["state"])
        self.read = len(self.posts)
        return "settled" in self.states[payment_id]


def _finished(url: str) -> bool:
    """Every outbox row finished: nothing left to send, push or answer. Read on a
    connection of its own, so that the look is not counted."""
    with contextlib.closing(sqlite3.connect(f"file:{url[len('sqlite:///'):]}?mode=ro",
                                            uri=True)) as db:
        return db.execute("SELECT COUNT(*) FROM outbox WHERE state NOT IN "
                          "('done', 'acked', 'sent')").fetchone()[0] == 0


def wal_pages(db_path: Path, wal_path: Path) -> Counter[str]:
    """Pages written to the log, by the table or index they belong to (read from the
    log's frame headers and SQLite's dbstat table), before it is checkpointed."""
    data = wal_path.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    frames = Counter(int.from_bytes(data[at:at + 4], "big")
                     for at in range(32, len(data) - page_size, page_size + 24))
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        owner = dict((page, name) for name, page in db.execute(
            "SELECT name, pageno FROM dbstat"))
    written: Counter[str] = Counter()
    for page, count in frames.items():
        written[owner.get(page, "(free)")] += count
    return written


def report(tracer: Tracer, payments: int) -> dict[str, Any]:
    by_work: Counter[str] = Counter()
    by_verb: Counter[str] = Counter()
    for (label, sql), count in tracer.statements.items():
        by_work[label] += count
        by_verb[sql.split(" ", 1)[0].upper()] += count
    total = sum(by_work.values())
    in_work = total - by_work[FRAME]
    wal = sum(tracer.wal_bytes.values())
    return {
        "payments": payments,
        "statements_per_payment": round(total / payments, 2),
        # Without BEGIN, COMMIT and the savepoint of each work, which depend on how the
        # work fell into transactions: the figure that does not vary from run to run.
        "statements_per_payment_in_work": round(in_work / payments, 2),
        "wal_bytes_per_payment": round(wal / payments),
        "db_thread_cpu_us_per_payment": round(tracer.db_cpu_s / payments * 1e6),
        "transactions_per_payment": round(tracer.transactions / payments, 2),
        "statements_per_payment_by_work": {
            k: round(v / payments, 2) for k, v in by_work.most_common()},
        "statements_per_payment_by_verb": {
            k: round(v / payments, 2) for k, v in by_verb.most_common()},
        "wal_bytes_per_payment_by_work": {
            k: round(v / payments) for k, v in tracer.wal_bytes.most_common()},
        "last_payment": tracer.log,
        "statements": {f"{label} | {sql}": round(count / payments, 2)
                       for (label, sql), count in sorted(tracer.statements.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="payments under way at once (the log's bytes under load)")
    parser.add_argument("--lanes", action="store_true",
                        help="payments and 990s sent by the stream workers, not at once")
    parser.add_argument("--no-trace", action="store_true",
                        help="no statement counts: the database thread's CPU undisturbed")
    parser.add_argument("--show", action="store_true", help="every statement shape too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(measure(Path(folder), args.payments, args.concurrency,
                                     args.lanes, not args.no_trace))
    if not args.show:
        del result["statements"], result["last_payment"]
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
