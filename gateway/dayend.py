"""The gateway's day end: reconcile when the NPC ends the day, close the ledger day at
the cut-over.

When HVPS enters end-of-day processing (ccms.801 status 40) the gateway reconciles that
work date over the link: hvps.710/711, and whatever the extensions reconcile (BEPS
beps.720/721), and lists every difference as an operator alert. When the work date
moves on (the ccms.801 that starts the next day's preparation), the ledger day of the
old date is closed: trial balance checked, detail ledgers agreeing with the general
ledger, no more postings on that date (DOMAIN.md §6). Results are kept per work date
for the operators, the demo and `simulate-day`, which wait for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date
from typing import Any

from gateway.errors import PaygateError

log = logging.getLogger("paygate.dayend")

RECON_TIMEOUT_S = 60.0


class DayEnd:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.results: dict[str, dict[str, Any]] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task] = set()

    def on_hvps_status(self, status: str, old_date: date, new_date: date) -> None:
        """Called after a ccms.801 has been applied."""
        if status == "40":
            self._spawn(self.reconcile(old_date))
        if new_date > old_date:
            self._spawn(self.close(old_date))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=day_end_step_failed error=%r", task.exception())

    def _event(self, day: date) -> asyncio.Event:
        return self._done.setdefault(day.isoformat(), asyncio.Event())

    async def reconcile(self, day: date) -> dict[str, Any]:
        key = day.isoformat()
        if key in self.results:
            return self.results[key]
        parts = {"hvps": await self.gw.reconcile_hvps(day, timeout_s=RECON_TIMEOUT_S)}
        for ext in self.gw.extensions:
            if hasattr(ext, "reconcile"):
                parts[ext.__class__.__name__] = await ext.reconcile(day)
        reconciled = all(bool(p.get("reconciled")) for p in parts.values())
        result = {"work_date": key, "reconciled": reconciled, "parts": parts}
        self.results[key] = result
        await self.gw.store.run(lambda tx: self._record(tx, result))
        self._event(day).set()
        log.info("event=day_reconciled work_date=%s reconciled=%s", key, reconciled)
        return result

    def _record(self, tx: Any, result: dict[str, Any]) -> None:
        for name, part in result["parts"].items():
            if not part.get("reconciled"):
                self.gw.alert(tx, "reconciliation_differences", work_date=result["work_date"],
                              system=name, differences=json.dumps(
                                  part.get("differences", []), ensure_ascii=False)[:1000])

    async def close(self, day: date) -> None:
        def work(tx: Any) -> Any:
            closed = tx.query_one("SELECT 1 FROM ledger_day WHERE work_date = ?",
                                  (day.isoformat(),))
            return None if closed else self.gw.ledger.close_day(tx, day)
        try:
            closed = await self.gw.store.run(work)
        except PaygateError as exc:
            reason = exc.code
            await self.gw.store.run(lambda tx: self.gw.alert(
                tx, "ledger_day_not_closed", work_date=day.isoformat(), reason=reason))
            return
        if closed is not None:
            log.info("event=ledger_day_closed work_date=%s entries=%s", day, closed.entries)

    async def wait_reconciled(self, day: date, timeout_s: float = RECON_TIMEOUT_S
                              ) -> dict[str, Any]:
        await asyncio.wait_for(self._event(day).wait(), timeout_s)
        return self.results[day.isoformat()]
