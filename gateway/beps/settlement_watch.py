"""BEPS rounds netted but not settled through a whole HVPS day.

Net positions settle only while HVPS settles (DOMAIN.md §1 and §7): a round netted at
night, over a weekend or a holiday settles when HVPS next opens, one netted in the day
right after it is netted or in the clearing window, and each settlement reaches us as a
saps.606 booking notice (incoming.on_booking), which settles the round's items in our
books. A round of a netting date before work date D that is still unsettled in our books
when D's HVPS day ends (ccms.801 status 40) was netted before D began and had a whole
settling day: either the NPC could not settle it (a participant, we included, could not
cover its position, which holds every later round too), or its booking notice was lost
on the way, and our books no longer follow our clearing account at the central bank.
Both need a person that day, not at the netting date's reconciliation (beps.720/721),
which compares what was netted, not whether it settled.

`check_at_day_end` runs in the BEPS part of each HVPS day end (the leading process) and
raises `beps_round_not_settled` once per work date, naming each such round with what we
pay and receive in it. A round netted on D itself is looked at by the next day end: it
may have been netted after the clearing window closed.
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Any

from gateway.money import format_yuan_grouped

if TYPE_CHECKING:
    from gateway.app import Gateway

ALERT = "beps_round_not_settled"
ROUNDS_LISTED_MAX = 50  # rounds an alert names; `count` says how many there are


def unsettled_before(tx: Any, day: str) -> list[dict[str, Any]]:
    """Rounds of netting dates before `day` with items netted and not settled, oldest
    first: each round's date, number, items and what we pay and receive in it."""
    rows = tx.query(
        "SELECT netting_date, netting_round, COUNT(*), "
        "COALESCE(SUM(CASE WHEN side = 'D' THEN amount_fen END), 0), "
        "COALESCE(SUM(CASE WHEN side = 'C' THEN amount_fen END), 0) FROM beps_items "
        "WHERE netting_date IS NOT NULL AND netting_date < ? AND settled_on IS NULL "
        "AND netting_round IS NOT NULL GROUP BY netting_date, netting_round "
        "ORDER BY netting_date, netting_round", (day,))
    return [{"netting_date": d, "netting_round": r, "items": int(n), "pay_fen": int(pay),
             "receive_fen": int(receive), "net": format_yuan_grouped(int(receive) - int(pay))}
            for d, r, n, pay, receive in rows]


def check_at_day_end(tx: Any, gw: Gateway, day: date) -> list[dict[str, Any]]:
    """At the end of work date `day`'s HVPS day: the rounds that stayed unsettled through
    it, raised to operators once for the date (a day end run again after a restart
    raises nothing more)."""
    rounds = unsettled_before(tx, day.isoformat())
    if not rounds or _raised_for(tx, day.isoformat()):
        return rounds
    gw.alert(tx, ALERT, work_date=day.isoformat(), count=len(rounds),
             pay_fen=sum(r["pay_fen"] for r in rounds),
             receive_fen=sum(r["receive_fen"] for r in rounds),
             rounds=rounds[:ROUNDS_LISTED_MAX])
    return rounds


def _raised_for(tx: Any, day: str) -> bool:
    """Whether the alert was raised for this work date already (few rows: once a day at
    most, and only when a round stayed unsettled)."""
    return any(json.loads(detail).get("work_date") == day for (detail,) in tx.query(
        "SELECT detail FROM alerts WHERE code = ?", (ALERT,)))
