"""What the console's row actions cost: `control.add_row_actions` over the rows of one
list of payments (a search of up to 200, the snapshot's lists of up to 120), the store
transaction it runs in timed on its own.

    .venv/bin/python -m benchmarks.ops_rows [--items 200] [--repeat 5] [--postgresql]

A console gateway (gateway.ops.testing.OpsRig: HVPS closed, nothing sent) gets
`--items` payments in the mix a busy day's console shows: a sixth outgoing HVPS payments
waiting for the window (every other one held for review instead), a sixth BEPS items
waiting to be packed, a third incoming credits booked into suspense (not final, no
action of a row applies to them), the rest credited (final); every tenth outgoing
payment has a cancel pending. Each repetition
reads them as the console's search does (`views.search_payments`) and times, in the
store's thread, `add_row_actions` on them 20 times over (the median is taken), while
counting its SQL statements once. Printed: the milliseconds for the rows and the
statements, one JSON line (benchmarks.runs).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import runs
from gateway.ops import control, views
from gateway.ops.operators import Operator
from gateway.ops.testing import OpsRig

TIMED_PER_REPEAT = 20
REQUESTER = Operator("op1", "甲", "00", "")


async def _fill(rig: OpsRig, items: int) -> None:
    """`items` payments in the mix the module's description gives."""
    gw, outgoing = rig.gw, []
    for n in range(items):
        kind = n % 6
        if kind == 0:
            outgoing.append((await rig.submit(f"rows-{n}"))["id"])
        elif kind == 1:  # no urgency: a BEPS item, waiting to be packed
            outgoing.append((await rig.submit(f"rows-{n}", urgency=None))["id"])
        elif kind in (2, 3):
            await rig.receive(n + 1, 100_00)  # to suspense: no account of ours
        else:
            await rig.receive(n + 1, 100_00, payee_account=rig.payer_account,
                              payee_name="示例客户甲")
        if kind == 0 and n % 12 == 0:
            await gw.store.run(lambda tx, pid=outgoing[-1]: (
                tx.execute("UPDATE payments SET state = 'held', reason = 'review_amount' "
                           "WHERE id = ?", (pid,)),
                tx.execute("UPDATE outbox SET state = 'review' WHERE payment_id = ?",
                           (pid,))))
    for pid in outgoing[::10]:
        await gw.store.run(lambda tx, pid=pid: control.create(
            tx, REQUESTER, "cancel", pid, {}, "", rig.clock.now()))


class _Counting:
    """A transaction that counts the statements run through it."""

    def __init__(self, tx: Any) -> None:
        self._tx, self.statements = tx, 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._tx, name)
        if name in ("query", "query_one", "execute"):
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.statements += 1
                return value(*args, **kwargs)
            return counted
        return value


async def _measure(rig: OpsRig, items: int) -> dict[str, float]:
    gw, now = rig.gw, rig.clock.now()

    def work(tx: Any) -> dict[str, float]:
        rows = views.search_payments(tx, {"limit": items})
        counting = _Counting(tx)
        control.add_row_actions(gw, counting, [dict(r) for r in rows], now)
        times = []
        for _ in range(TIMED_PER_REPEAT):
            copies = [dict(r) for r in rows]
            start = time.perf_counter()
            control.add_row_actions(gw, tx, copies, now)
            times.append(time.perf_counter() - start)
        return {"rows": len(rows), "ms": statistics.median(times) * 1000,
                "statements": counting.statements}
    return await gw.store.run(work)


async def _run(args: Any, folder: str, number: int) -> dict[str, float]:
    with runs.database(args, folder, f"ops_rows_{number}") as url:
        rig = OpsRig(Path(folder) / f"data{number}",
                     {"database_url": url} if args.postgresql else {})
        await rig.start()
        try:
            await rig.ops.console.ready()  # the console's tables
            await _fill(rig, args.items)
            return await _measure(rig, args.items)
        finally:
            await rig.stop()


def main() -> None:
    args = runs.arguments(__doc__)
    with tempfile.TemporaryDirectory() as folder:
        results = [asyncio.run(_run(args, folder, n)) for n in range(args.repeat)]
    runs.report(args, results)


if __name__ == "__main__":
    main()
