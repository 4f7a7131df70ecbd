"""`late-entries-DATE.csv` (gateway.late_entries.write_notes) marks written exactly the
entries the file lists: on PostgreSQL an entry whose id was drawn earlier can commit
after the file was read, below the highest id read, and must stay to be written."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway import late_entries
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.redisproc import free_port

CLOSED = "2026-12-04"


def late_entry(entry_id: int) -> Any:
    def work(tx: Any) -> None:
        tx.execute("INSERT INTO late_entries (entry_id, closed_date, booked_on, source, "
                   "debit_fen, credit_fen, at) VALUES (?, ?, '2026-12-07', ?, 0, ?, ?)",
                   (entry_id, CLOSED, f"round {entry_id}", entry_id * 100,
                    "2026-12-07T09:00:00+08:00"))
    return work


def noted(gw: Gateway) -> Any:
    return gw.store.run(lambda tx: tx.query(
        "SELECT entry_id, noted_at IS NOT NULL FROM late_entries ORDER BY entry_id", ()))


def test_an_entry_committed_below_the_highest_read_is_left_to_the_next_note(
        tmp_path: Path) -> None:
    """Entry 5 is read and written to the file; entry 3, its id drawn earlier, commits
    before the file is marked written: it is not marked, and the next call writes the
    file again with both, marking it."""
    async def scenario() -> dict[str, Any]:
        gw = Gateway(Settings(data_dir=str(tmp_path / "gateway"), port=0,
                              npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                     clock=ManualClock(datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)))
        await gw.start(serve_http=False)
        try:
            await gw.store.run(late_entry(5))
            real_run, calls = gw.store.run, []

            async def run(work: Any) -> Any:
                calls.append(work)
                if len(calls) == 2:  # the file read and written, not marked yet
                    await real_run(late_entry(3))
                return await real_run(work)
            gw.store.run = run  # type: ignore[method-assign]
            first = await late_entries.write_notes(gw, tmp_path / "reports")
            gw.store.run = real_run  # type: ignore[method-assign]
            path = tmp_path / "reports" / late_entries.note_name(CLOSED)
            after_first = (await noted(gw), path.read_text(encoding="utf-8"))
            again = await late_entries.write_notes(gw, tmp_path / "reports")
            return {"first": first, "after_first": after_first, "again": again,
                    "after_again": (await noted(gw), path.read_text(encoding="utf-8"))}
        finally:
            await gw.stop()

    seen = asyncio.run(scenario())

    rows, text = seen["after_first"]
    assert rows == [(3, False), (5, True)]
    assert "round 5" in text and "round 3" not in text
    rows, text = seen["after_again"]
    assert seen["again"] == seen["first"]
    assert rows == [(3, True), (5, True)]
    assert "round 3" in text and "round 5" in text
