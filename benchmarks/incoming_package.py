"""How long the gateway takes over one incoming beps.121 of many credits (netted, PR03),
and over the NPC's refusal (ccms.900 PR09) of one of our packages of as many credits,
each in one transaction on a SQLite file (or, with --postgresql, in a schema of its own
on the test server of ledger.fixtures, dropped afterwards), commit included.

    .venv/bin/python -m benchmarks.incoming_package [--items 1000] [--repeat 5] [--postgresql]

Each repetition builds new databases. The incoming package credits payees with open
accounts, one in twenty of them to an account we do not have (to suspense, 待销账); the
refused package is sealed and sent as the packer does it, its payer's funds held
(tests/beps_support.py). Each is timed (wall clock and this process's CPU). No webhook
is configured: the status changes are not queued for the core system.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks import runs
from gateway.beps import incoming
from ledger.testing import customer_account
from tests.beps_incoming_support import credit, package, payee_books
from tests.beps_support import NOW, answer, held_package


def credited(folder: Path, url: str, count: int) -> tuple[float, float]:
    db, gw = payee_books(folder, count, url=url)
    transfers = [credit(n, account=customer_account(90_000 + n)) if n % 20 == 19
                 else credit(n) for n in range(count)]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        with db.transaction() as tx:
            out = incoming.on_credit_package(tx, gw, package("2026121200000001", transfers),
                                             NOW).outcome
        spent = (time.perf_counter() - wall, time.process_time() - cpu)
        with db.transaction() as tx:
            balanced = gw.ledger.trial_balance(tx).balanced
    finally:
        db.close()
    assert balanced and out["suspense"] == count // 20, (balanced, out)
    assert out["credited"] == count - count // 20, out
    return spent


def rejected(folder: Path, url: str, count: int) -> tuple[float, float]:
    db, gw, package_id = held_package(folder, [100 + n for n in range(count)], url=url)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        answer(db, gw, package_id, "PR09")
        spent = (time.perf_counter() - wall, time.process_time() - cpu)
        with db.transaction() as tx:
            states = dict(tx.query("SELECT state, COUNT(*) FROM payments GROUP BY state", ()))
            balanced = gw.ledger.trial_balance(tx).balanced
            held = gw.ledger.balance(tx, gw.ledger.internal_accounts["4001"])
    finally:
        db.close()
    assert states == {"rejected": count} and balanced and held == 0, (states, balanced)
    return spent


def once(folder: Path, url: str, count: int, rejected_url: str) -> dict[str, float]:
    (folder / "in").mkdir()
    (folder / "out").mkdir()
    credit_wall, credit_cpu = credited(folder / "in", url, count)
    reject_wall, reject_cpu = rejected(folder / "out", rejected_url, count)
    return {"credit_package_wall_ms": credit_wall * 1000,
            "credit_package_cpu_ms": credit_cpu * 1000,
            "rejected_wall_ms": reject_wall * 1000, "rejected_cpu_ms": reject_cpu * 1000}


def main() -> None:
    args = runs.arguments(__doc__)
    measured = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder, \
                runs.database(args, folder, "incoming_package") as url, \
                runs.database(args, folder, "rejected_package") as rejected_url:
            measured.append(once(Path(folder), url, args.items, rejected_url))
    runs.report(args, measured)


if __name__ == "__main__":
    main()
