"""A date's `reconciliation_differences` is closed by the gateway when a later
reconciliation of the same date agrees (an operator's hvps-reconcile after the cause was
put right); another date's stays open."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.critical import unclosed


def result(day: str, reconciled: bool) -> dict[str, Any]:
    differences = [] if reconciled else [{"field": "sent_count", "ours": 2, "npc": 3}]
    return {"work_date": day, "reconciled": reconciled,
            "parts": {"hvps": {"reconciled": reconciled, "differences": differences}}}


def test_a_later_agreeing_reconciliation_closes_the_date_s_differences(
        tmp_path: Path) -> None:
    async def scenario() -> tuple[list, list, list]:
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0), clock=ManualClock(
            datetime(2026, 12, 8, 9, 0, tzinfo=SHANGHAI)))
        await gw.store.open()
        try:
            for day in ("2026-12-04", "2026-12-07"):
                await gw.store.run(lambda tx, day=day: gw.day_end._record(
                    tx, result(day, False)))
            raised = await gw.store.run(lambda tx: unclosed(
                tx, ("reconciliation_differences",)))
            await gw.store.run(lambda tx: gw.day_end._record(tx, result("2026-12-07", True)))
            left = await gw.store.run(lambda tx: unclosed(
                tx, ("reconciliation_differences",)))
            notes = await gw.store.run(lambda tx: tx.query(
                "SELECT by, note FROM alert_acks", ()))
            return raised, left, notes
        finally:
            await gw.store.close()
    raised, left, notes = asyncio.run(scenario())

    assert [d["work_date"] for _, d in raised] == ["2026-12-04", "2026-12-07"]
    assert [d["work_date"] for _, d in left] == ["2026-12-04"]
    ((by, note),) = notes
    assert by == "gateway" and "2026-12-07" in note and "agreed" in note
