"""Which BEPS netting dates are reconciled with the NPC, and which are due.

BEPS nets around the clock, weekends and holidays included, in rounds numbered within
their netting date: the natural Shanghai day the round ran on. A netting date is
complete once its last round has netted, at the next midnight, and `recon_delay_s` has
passed for that round's notices to reach us (windows.netting_date_complete_at). Each
complete netting date is then reconciled once (beps.720/721, recon.py), whatever the
HVPS calendar does meanwhile. The table `beps_netting_dates` says where each date is:

| state | meaning |
|---|---|
| open | not complete yet: rounds of it may still come, or a package of ours sent before
  its end has no answer from the NPC yet (shown as `not_netted`) |
| due | complete, not asked for yet |
| asked | a beps.720 went out for it; no beps.721 compared yet |
| unanswered | asked ASKS_MAX times without an answer; an operator may ask again |
| reconciled | the NPC's totals agree with ours |
| differences | they differ: listed in the `recon` table and raised as an alert |

A pass (`claim`, run at each day end and by the periodic check) adds the dates since
the last one the table holds, marks those complete as due and asks for the oldest due
ones, at most `recon_dates_per_pass`; each is taken with one conditional UPDATE, so two
passes at once (a day end and the periodic check, two gateway processes) never ask for
one date twice. A date asked whose beps.720 the NPC took `recon_retry_s` ago without
answering is asked again. A date reconciled is never asked again by a pass; an operator may
ask again (`ask_again`, the console's action `beps_reconcile`), and the answer replaces
the date's state. A beps.721 about a date not complete yet (an early look asked through
`BepsExtension.reconcile`) is compared and stored as always, but is not the date's
reconciliation: the date is reconciled when it is complete.

A date is complete by the clock, and also only once every package of ours sent before
its end has an answer (netted, or PR11 waiting, or refused). A package the NPC has not
answered may be in one of the date's rounds (its PR03 late or lost) or in none (the
NPC's rounds did not run): either way the date's totals cannot be called reconciled, so
the dates from the day the oldest such package was sent stay open, shown as
`not_netted` (`not_netted.oldest_unanswered`). A package the NPC answered PR11 is not in
the date's rounds, so it holds nothing back; the alert `beps_items_not_netted`
(not_netted.py) tells of it when it waits too long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from gateway import outbound
from gateway.beps import not_netted, recon
from gateway.errors import Conflict, Problem
from gateway.recon import ALERT_DIFFERENCES, DIFFERENCES_LISTED_MAX, close_differences
from gateway.windows import beps_work_date, last_complete_netting_date, \
    netting_date_complete_at

log = logging.getLogger("paygate.beps.recon")

OPEN, DUE, ASKED, UNANSWERED = "open", "due", "asked", "unanswered"
NOT_NETTED = "not_netted"  # how status() shows an open date held back by our packages
RECONCILED, DIFFERENCES = "reconciled", "differences"
ANSWERED = (RECONCILED, DIFFERENCES)
ASKS_MAX = 3
# A beps.720 the NPC took (outbound.TAKEN) and left unanswered may be asked again; one
# still waiting to go (the link down) or refused (a dead letter, for an operator) not.
_TAKEN = "o.state IN (" + ", ".join(f"'{s}'" for s in outbound.TAKEN) + ")"
ALERT_UNANSWERED = "beps_reconciliation_unanswered"
STATUS_LIST_MAX = 20


@dataclass(frozen=True)
class Claimed:
    dates: list[tuple[str, int]]   # (netting date, outbox id of its beps.720)
    next_check: datetime           # when a pass may find more to do


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def held_from(tx: Any) -> date | None:
    """The first netting date held back by a package of ours the NPC has not answered
    (the day it was sealed for sending), or None."""
    oldest = not_netted.oldest_unanswered(tx)
    return beps_work_date(datetime.fromisoformat(oldest)) if oldest else None


def extend(tx: Any, today: date, complete_through: date) -> None:
    """Add the netting dates after the last one the table holds, up to `today` (the
    first time: from our first netted item's date, or today), and mark those complete
    by `complete_through` as due, except those a package of ours not answered yet holds
    back (`held_from`)."""
    last = tx.query_one("SELECT MAX(netting_date) FROM beps_netting_dates", ())[0]
    if last is None:
        first_netted = tx.query_one("SELECT MIN(netting_date) FROM beps_items WHERE "
                                    "netting_date IS NOT NULL", ())[0]
        start = min(date.fromisoformat(first_netted), today) if first_netted else today
    else:
        start = date.fromisoformat(last) + timedelta(days=1)
    if start <= today:
        tx.executemany("INSERT INTO beps_netting_dates (netting_date, state) VALUES (?, ?) "
                       "ON CONFLICT (netting_date) DO NOTHING",
                       [(day, OPEN) for day in _days(start, today)])
    held = held_from(tx)
    if held is not None and held <= complete_through:
        complete_through = held - timedelta(days=1)
    tx.execute("UPDATE beps_netting_dates SET state = ? WHERE state = ? AND netting_date <= ?",
               (DUE, OPEN, complete_through.isoformat()))


def claim(tx: Any, gw: Any, settings: Any, now: datetime) -> Claimed:
    """One pass: the complete dates not reconciled yet, the oldest first, at most
    `recon_dates_per_pass`, each asked for (beps.720 queued; the caller pushes it)."""
    complete = last_complete_netting_date(now, settings.recon_delay_s)
    extend(tx, beps_work_date(now), complete)
    retry_before = (now - timedelta(seconds=settings.recon_retry_s)).isoformat()
    for day, asks in tx.query(
            "SELECT d.netting_date, d.asks FROM beps_netting_dates d JOIN outbox o ON "
            f"o.id = d.outbox_id WHERE d.state = ? AND d.asks >= ? AND d.asked_at <= ? AND "
            f"{_TAKEN} ORDER BY d.netting_date", (ASKED, ASKS_MAX, retry_before)):
        if tx.execute("UPDATE beps_netting_dates SET state = ? WHERE netting_date = ? AND "
                      "state = ? AND asks = ?", (UNANSWERED, day, ASKED, asks)) == 1:
            gw.alert(tx, ALERT_UNANSWERED, netting_date=day, asks=asks,
                     message=f"the NPC answered none of {asks} beps.720 for netting date "
                             f"{day}: `paygate ops request beps-reconcile {day}` asks "
                             "again")
    wanted = tx.query(
        "SELECT d.netting_date, d.state, d.asks FROM beps_netting_dates d LEFT JOIN outbox o "
        "ON o.id = d.outbox_id WHERE d.state = ? OR (d.state = ? AND d.asks < ? AND "
        f"d.asked_at <= ? AND {_TAKEN}) ORDER BY d.netting_date LIMIT ?",
        (DUE, ASKED, ASKS_MAX, retry_before, settings.recon_dates_per_pass + 1))
    dates = []
    for day, state, asks in wanted[:settings.recon_dates_per_pass]:
        # Conditional on the row as read: another pass that took the date first wins.
        if tx.execute("UPDATE beps_netting_dates SET state = ?, asks = asks + 1, asked_at = ? "
                      "WHERE netting_date = ? AND state = ? AND asks = ?",
                      (ASKED, now.isoformat(), day, state, asks)) == 1:
            dates.append((day, _ask(tx, gw, day, now)))
    more = len(wanted) > settings.recon_dates_per_pass
    next_check = now if more else min(
        netting_date_complete_at(complete + timedelta(days=1), settings.recon_delay_s),
        now + timedelta(seconds=settings.recon_retry_s))
    if dates:
        log.info("event=beps_netting_dates_asked dates=%s more=%s",
                 ",".join(d for d, _ in dates), more)
    return Claimed(dates, next_check)


def _ask(tx: Any, gw: Any, day: str, now: datetime) -> int:
    outbox_id = recon.request(tx, gw, day, now)
    tx.execute("UPDATE beps_netting_dates SET outbox_id = ? WHERE netting_date = ?",
               (outbox_id, day))
    return outbox_id


def check_complete(tx: Any, day: str) -> None:
    """An operator may ask for a netting date a pass found complete (or one before the
    first the gateway tracks); not for one whose rounds may still come."""
    row = tx.query_one("SELECT state FROM beps_netting_dates WHERE netting_date = ?", (day,))
    if row is not None and row[0] != OPEN:
        return
    if row is None:
        first = tx.query_one("SELECT MIN(netting_date) FROM beps_netting_dates", ())[0]
        if first is not None and day < first:
            return
    last = tx.query_one("SELECT MAX(netting_date) FROM beps_netting_dates WHERE state <> ?",
                        (OPEN,))[0]
    oldest = not_netted.oldest_unanswered(tx)
    held = oldest is not None and beps_work_date(datetime.fromisoformat(oldest)).isoformat() <= day
    raise Conflict(Problem(
        "beps_netting_date_not_complete", "/target", day,
        f"a netting date whose rounds have all netted ({last} or earlier)" if last else
        "a netting date whose rounds have all netted (none is yet)",
        f"netting date {day} waits for packages of ours the NPC has not answered (the "
        f"oldest sent at {oldest}): it is reconciled once they are answered" if held else
        f"netting date {day} may still have rounds to net: it is reconciled once it is "
        "complete, after its midnight"))


def ask_again(tx: Any, gw: Any, day: str, now: datetime) -> dict[str, Any]:
    """An operator's ask: the date asked for (again), whatever its state."""
    check_complete(tx, day)
    row = tx.query_one("SELECT state FROM beps_netting_dates WHERE netting_date = ?", (day,))
    before = row[0] if row else None
    if row is None:
        tx.execute("INSERT INTO beps_netting_dates (netting_date, state) VALUES (?, ?)",
                   (day, DUE))
    tx.execute("UPDATE beps_netting_dates SET state = ?, asks = asks + 1, asked_at = ? WHERE "
               "netting_date = ?", (ASKED, now.isoformat(), day))
    outbox_id = _ask(tx, gw, day, now)
    log.info("event=beps_netting_date_asked_again netting_date=%s state_before=%s", day,
             before)
    return {"netting_date": day, "state_before": before, "outbox_id": outbox_id}


def record_answer(tx: Any, gw: Any, outcome: dict[str, Any], now: datetime) -> bool:
    """After a beps.721 was compared (`outcome`, recon.compare): the netting date's state,
    and an alert for its differences. False when the date is not complete (an early
    look), which leaves it as it was. An answer without differences about a date that a
    package of ours not answered yet now holds back (it was asked before that package
    went) leaves the date open: the next pass asks again once the package is answered."""
    day = outcome["work_date"]
    row = tx.query_one("SELECT state FROM beps_netting_dates WHERE netting_date = ?", (day,))
    if row is None or row[0] == OPEN:
        return False
    differences = outcome["differences"]
    held = held_from(tx)
    if not differences and held is not None and held.isoformat() <= day:
        tx.execute("UPDATE beps_netting_dates SET state = ?, answers = answers + 1, "
                   "answered_at = ?, recon_id = ? WHERE netting_date = ?",
                   (OPEN, now.isoformat(), outcome.get("recon_id"), day))
        log.warning("event=beps_netting_date_held netting_date=%s held_from=%s", day, held)
        return True
    tx.execute("UPDATE beps_netting_dates SET state = ?, answers = answers + 1, answered_at = ?, "
               "differences = ?, recon_id = ? WHERE netting_date = ?",
               (DIFFERENCES if differences else RECONCILED, now.isoformat(), len(differences),
                outcome.get("recon_id"), day))
    if differences:
        gw.alert(tx, ALERT_DIFFERENCES, system="BEPS", netting_date=day,
                 count=len(differences),
                 differences=differences[:DIFFERENCES_LISTED_MAX])
    else:
        close_differences(tx, "BEPS", "netting_date", day, now)
    log.info("event=beps_netting_date_reconciled netting_date=%s differences=%s", day,
             len(differences))
    return True


def status(tx: Any, now: datetime, delay_s: float) -> dict[str, Any]:
    """What the operators see: the last complete netting date, how far every date is
    reconciled, the complete dates not reconciled yet and those with differences."""
    complete = last_complete_netting_date(now, delay_s).isoformat()
    held = held_from(tx)
    held_on = held.isoformat() if held else None

    def shown(day: str, state: str) -> str:
        if state != OPEN:
            return state
        return NOT_NETTED if held_on is not None and day >= held_on else DUE
    waiting = [{"netting_date": d, "state": shown(d, s), "asks": a, "asked_at": at}
               for d, s, a, at in tx.query(
                   "SELECT netting_date, state, asks, asked_at FROM beps_netting_dates WHERE "
                   "state IN (?, ?, ?, ?) AND netting_date <= ? ORDER BY netting_date",
                   (OPEN, DUE, ASKED, UNANSWERED, complete))]
    differing = [{"netting_date": d, "differences": n, "answered_at": at}
                 for d, n, at in tx.query(
                     "SELECT netting_date, differences, answered_at FROM beps_netting_dates "
                     "WHERE state = ? ORDER BY netting_date DESC LIMIT ?",
                     (DIFFERENCES, STATUS_LIST_MAX))]
    if waiting:
        through = (date.fromisoformat(waiting[0]["netting_date"]) - timedelta(days=1))
        reconciled_through: str | None = through.isoformat()
        first = tx.query_one("SELECT MIN(netting_date) FROM beps_netting_dates", ())[0]
        if reconciled_through < first:
            reconciled_through = None
    else:
        reconciled_through = tx.query_one(
            "SELECT MAX(netting_date) FROM beps_netting_dates WHERE state IN (?, ?)",
            ANSWERED)[0]
    counts = {state: int(n) for state, n in tx.query(
        "SELECT state, COUNT(*) FROM beps_netting_dates WHERE state IN (?, ?) GROUP BY state",
        ANSWERED)}
    return {"complete_through": complete, "reconciled_through": reconciled_through,
            "reconciled": counts.get(RECONCILED, 0),
            "with_differences": counts.get(DIFFERENCES, 0),
            "not_reconciled": len(waiting),
            "waiting": waiting[:STATUS_LIST_MAX], "differing": differing}
