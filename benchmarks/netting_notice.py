"""How long the gateway takes over one netting notice (ccms.900 PR03) for a package of
many credits, and over the settlement of their round (items.settle, what a saps.606
does), each in one transaction on a SQLite file (or, with --postgresql, in a schema of
its own on the test server of ledger.fixtures, dropped afterwards), commit included.

    .venv/bin/python -m benchmarks.netting_notice [--items 1000] [--repeat 5] [--postgresql]

Each repetition builds a new database: the items accepted with their payer's funds held,
sealed in one package and sent, as the packer does it (tests/beps_support.py). Then the
notice is handled and the round settled, each timed (wall clock and this process's CPU).
No webhook is configured: the status changes are not queued for the core system.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks import runs
from gateway.beps import items, packer
from gateway.beps.settings import BepsSettings
from tests.beps_support import NOW, answer, held_items


def once(folder: Path, url: str, count: int) -> dict[str, float]:
    db, gw = held_items(folder, [100 + n for n in range(count)], url=url)
    try:
        with db.transaction() as tx:
            (outbox_id,) = packer.seal_due(tx, gw, BepsSettings(), "stream", NOW, force=True)
            packer.claim(tx, gw, outbox_id, NOW)
            tx.execute("UPDATE outbox SET state = 'sent' WHERE id = ?", (outbox_id,))
            package_id, size = tx.query_one("SELECT id, count FROM beps_packages", ())
        assert size == count, f"one package of {count} items, not {size}"
        wall, cpu = time.perf_counter(), time.process_time()
        answer(db, gw, package_id, "PR03")
        netted = (time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        with db.transaction() as tx:
            debit_fen, _ = items.settle(tx, gw, "2026-12-12", "03", "2026-12-12", NOW)
        settled = (time.perf_counter() - wall, time.process_time() - cpu)
        with db.transaction() as tx:
            states = dict(tx.query("SELECT state, COUNT(*) FROM payments GROUP BY state", ()))
            balanced = gw.ledger.trial_balance(tx).balanced
    finally:
        db.close()
    assert states == {"settled": count} and balanced, (states, balanced)
    assert debit_fen == sum(100 + n for n in range(count))
    return {"notice_wall_ms": netted[0] * 1000, "notice_cpu_ms": netted[1] * 1000,
            "settle_wall_ms": settled[0] * 1000, "settle_cpu_ms": settled[1] * 1000}


def main() -> None:
    args = runs.arguments(__doc__)
    measured = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder, \
                runs.database(args, folder, "netting_notice") as url:
            measured.append(once(Path(folder), url, args.items))
    runs.report(args, measured)


if __name__ == "__main__":
    main()
