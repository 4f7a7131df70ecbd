"""Settlements the NPC made on a work date whose ledger day had closed before they came.

The day end closes a work date's ledger day at the NPC's cut-over, whether every BEPS
package of the date has been settled or not (docs/operations.md, "A settlement booked
after the day closed", says why it does not wait). A saps.606 for a round the NPC settled
on that date, arriving after the gateway's cut-over (an NPC or link outage over it), is
booked on the current work date, since no posting goes on a closed day. The same holds
when the date's ledger day is not closed yet (its day end missed, the gateway down over
the cut-over, and run late; or the cut-over's close still running): it closes without
the entry. The closed day's daily statement then shows a clearing balance below the
NPC's position for that date by the round's net we receive (above it when we pay), and
only this record says why.

Each such entry is kept (table `late_entries`, in the posting's transaction) with the
alert `settlement_booked_after_close`, which stays open until an operator closes it,
naming the closed date, the entry, its amounts and the difference. Beside the closed
day's reports the gateway writes `late-entries-DATE.csv` listing them
(`write_notes`, run at each tick of the timetable and at start: a file is written after
the commit, never inside it), and `paygate ops day-reports DATE` gives the same file.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.money import format_yuan

log = logging.getLogger("paygate.late_entries")

ALERT = "settlement_booked_after_close"


def note_name(day: str) -> str:
    return f"late-entries-{day}.csv"


def booked_after_close(tx: Any, gw: Any, settled_on: str, entry_id: int, source: str,
                       debit_fen: int, credit_fen: int, now: datetime) -> int | None:
    """After a settlement the NPC made on `settled_on` was posted (entry `entry_id`, on
    the current work date): when `settled_on` is an earlier date, keep the entry as late
    and raise the alert. Its ledger day is closed, or closes later without the entry: a
    day end missed (the gateway down over the cut-over, the date closed late) or the
    cut-over's close still running; that date's statement lacks it either way. The
    alert's id, or None when the posting is on its own date."""
    booked_on = gw.work_date.isoformat()
    if not entry_id or settled_on >= booked_on:
        return None
    net_fen = credit_fen - debit_fen
    # The closed day's statement lacks the entry the NPC's position for that day holds:
    # its clearing balance is the NPC's less the net we receive.
    statement_minus_npc_fen = -net_fen
    statement = f"daily-statement-{settled_on}.csv"
    alert_id = gw.alert(
        tx, ALERT, closed_date=settled_on, entry_id=entry_id, booked_on=booked_on,
        source=source, debit_fen=debit_fen, credit_fen=credit_fen, net_fen=net_fen,
        statement_minus_npc_fen=statement_minus_npc_fen,
        message=f"the NPC settled {source} on {settled_on}, after that day's cut-over "
                f"here: booked on {booked_on} as entry {entry_id} (we pay "
                f"{format_yuan(debit_fen)}, we receive {format_yuan(credit_fen)} yuan); "
                f"the clearing balance of {statement} is "
                f"{_above_or_below(statement_minus_npc_fen)} the NPC's position for "
                f"{settled_on}; the entry is listed in {note_name(settled_on)} beside "
                "it; close this alert once the difference is explained to whoever holds "
                "that statement")
    tx.execute("INSERT INTO late_entries (entry_id, closed_date, booked_on, source, "
               "debit_fen, credit_fen, at, alert_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (entry_id, settled_on, booked_on, source, debit_fen, credit_fen,
                now.isoformat(), alert_id))
    return alert_id


def _above_or_below(statement_minus_npc_fen: int) -> str:
    """How the closed day's statement stands to the NPC's position, in words."""
    if statement_minus_npc_fen == 0:
        return "equal to"
    side = "above" if statement_minus_npc_fen > 0 else "below"
    return f"{format_yuan(abs(statement_minus_npc_fen))} yuan {side}"


def note_text(tx: Any, day: str) -> str | None:
    """The closed date's late entries as CSV, None when it has none."""
    return _note(tx, day)[0]


def _note(tx: Any, day: str) -> tuple[str | None, list[int]]:
    """The closed date's late entries as CSV (None when it has none), and the ids of the
    entries it lists."""
    rows = tx.query("SELECT entry_id, booked_on, source, debit_fen, credit_fen, at, alert_id "
                    "FROM late_entries WHERE closed_date = ? ORDER BY entry_id", (day,))
    if not rows:
        return None, []
    out = io.StringIO()
    write = csv.writer(out).writerow
    write(["late entries of closed work date", day])
    write([("settled by the NPC on this date, booked on a later ledger day: the clearing "
            "balance of this date's daily statement is below the NPC's position for it by "
            "the net total (above it when the net total is negative)")])
    write(["entry", "booked_on", "source", "we_pay", "we_receive", "net", "recorded_at",
           "alert"])
    net_total = 0
    for entry_id, booked_on, source, debit_fen, credit_fen, at, alert_id in rows:
        net = int(credit_fen) - int(debit_fen)
        net_total += net
        write([entry_id, booked_on, source, format_yuan(int(debit_fen)),
               format_yuan(int(credit_fen)), format_yuan(net), at, alert_id])
    write(["net total", "", "", "", "", format_yuan(net_total), "", ""])
    return out.getvalue(), [int(row[0]) for row in rows]


# Entries marked written by one statement: a closed date has a few late entries (one a
# BEPS round settled after its cut-over), far below any limit on a statement's values.
MARKED_PER_STATEMENT = 500


def _mark_noted(tx: Any, ids: list[int], now: str) -> None:
    for start in range(0, len(ids), MARKED_PER_STATEMENT):
        chunk = ids[start:start + MARKED_PER_STATEMENT]
        tx.execute(f"UPDATE late_entries SET noted_at = ? WHERE entry_id IN "
                   f"({', '.join('?' * len(chunk))}) AND noted_at IS NULL", (now, *chunk))


async def write_notes(gw: Any, folder: Path) -> list[str]:
    """Write `late-entries-DATE.csv` into `folder` for each closed date with a late entry
    not written yet, and mark written exactly the entries the file lists; the paths. A
    write that fails is logged and tried again at the next call.

    Entries are marked by id, not up to the highest id read: on PostgreSQL an entry
    whose id was drawn before another's can commit after the file was read, below that
    highest id, and would be marked without being in the file. Left unmarked, it brings
    its date's file to be written again at the next call."""
    def unwritten(tx: Any) -> list[tuple[str, str, list[int]]]:
        days = tx.query("SELECT DISTINCT closed_date FROM late_entries WHERE "
                        "noted_at IS NULL ORDER BY closed_date", ())
        notes = []
        for (day,) in days:
            text, ids = _note(tx, day)
            notes.append((day, text or "", ids))
        return notes
    written = []
    for day, text, ids in await gw.store.run(unwritten):
        path = folder / note_name(day)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            log.error("event=late_entries_not_written closed_date=%s path=%s error=%r",
                      day, path, exc)
            continue
        now = gw.clock.now().isoformat()
        await gw.store.run(lambda tx, ids=ids, now=now: _mark_noted(tx, ids, now))
        log.info("event=late_entries_written closed_date=%s path=%s", day, path)
        written.append(str(path))
    return written
