"""Our BEPS packages the NPC has not netted in the time its rounds allow.

The NPC nets every `beps_netting_interval_min` from midnight (docs/calendar.md), so a
package it has nets within one interval, or is answered PR11 (waiting for the net debit
cap) in that round. A package of ours still `sent` (no answer at all) or `waiting`
(PR11) longer than two intervals and `not_netted_margin_s` since it was sealed for
sending is overdue: the NPC is down, its rounds do not run, our answers are lost, or
our cap at the NPC is too low. Operators hear of it once per episode (the alert
`beps_items_not_netted`), however many checks and restarts come while it lasts; once
no package is overdue the episode is over (logged) and the next one is alerted again.
The episode is kept in `beps_not_netted` (one row while it lasts), so a restart neither
repeats nor forgets it. `status` is what `paygate ops status` and the console show next
to the netting dates waiting.

Only what the NPC nets counts: our credit packages and our debit receipts (beps.128);
our beps.127 debits are answered by the payer bank, by a deadline of their own
(debits_out.expire_overdue). A package the link refused (its items `held`) or one an
operator holds is not `sent` and is listed by `paygate ops stuck` instead.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from gateway import money
from gateway.beps.settings import BepsSettings

log = logging.getLogger("paygate.beps")

ALERT = "beps_items_not_netted"
# Package states in which the NPC owes us a netting: no answer yet, or PR11.
UNNETTED_STATES = ("sent", "waiting")
_UNNETTED = (
    "FROM beps_packages b JOIN outbox o ON o.id = b.outbox_id WHERE b.direction = 'out' "
    "AND b.state IN ('sent', 'waiting') AND b.msg_type <> 'beps.127.001.01'")


def overdue_after_s(s: BepsSettings) -> float:
    """How long a package may wait for netting before it is overdue."""
    return 2 * s.netting_interval_min * 60 + s.not_netted_margin_s


def oldest_unanswered(tx: Any) -> str | None:
    """When the oldest package of ours the NPC has not answered at all (still `sent`)
    was sealed for sending (ISO), or None: netting_dates holds back the netting dates
    from its day on, since it may be in their rounds."""
    return tx.query_one(f"SELECT MIN(o.created_at) {_UNNETTED} AND b.state = 'sent'", ())[0]


def status(tx: Any, s: BepsSettings, now: datetime) -> dict[str, Any]:
    """Our packages not netted yet, those overdue among them, and the episode."""
    after_s = overdue_after_s(s)
    cutoff = (now - timedelta(seconds=after_s)).isoformat()
    every = tx.query_one(f"SELECT COUNT(*), COALESCE(SUM(b.count), 0), MIN(o.created_at) "
                         f"{_UNNETTED}", ())
    late = tx.query_one(f"SELECT COUNT(*), COALESCE(SUM(b.count), 0), "
                        f"COALESCE(SUM(b.total_fen), 0), MIN(o.created_at), "
                        f"SUM(CASE WHEN b.state = 'waiting' THEN b.count ELSE 0 END) "
                        f"{_UNNETTED} AND o.created_at <= ?", (cutoff,))
    episode = tx.query_one("SELECT since, alerted_at FROM beps_not_netted WHERE id = 1", ())
    return {"packages": int(every[0]), "items": int(every[1]), "oldest_sent_at": every[2],
            "overdue_after_s": after_s,
            "overdue": {"packages": int(late[0]), "items": int(late[1]),
                        "amount": money.format_yuan(int(late[2])),
                        "queued_items": int(late[4] or 0), "oldest_sent_at": late[3]},
            "alerted_at": episode[1] if episode else None}


def check(tx: Any, gw: Any, s: BepsSettings, now: datetime) -> bool:
    """Raise the alert when an episode begins, end the episode when nothing is overdue
    any more; True when an alert was raised now."""
    seen = status(tx, s, now)
    late = seen["overdue"]
    episode = tx.query_one("SELECT since FROM beps_not_netted WHERE id = 1", ())
    if not late["packages"]:
        if episode is not None:
            tx.execute("DELETE FROM beps_not_netted WHERE id = 1", ())
            log.warning("event=beps_not_netted_over since=%s", episode[0])
        return False
    if episode is not None:
        return False
    # Conditional on no row: two processes checking at once raise one alert.
    if tx.execute("INSERT INTO beps_not_netted (id, since, alerted_at) VALUES (1, ?, ?) "
                  "ON CONFLICT (id) DO NOTHING", (late["oldest_sent_at"], now.isoformat())) != 1:
        return False
    minutes = round(seen["overdue_after_s"] / 60)
    gw.alert(tx, ALERT, items=late["items"], packages=late["packages"],
             amount=late["amount"], queued_items=late["queued_items"],
             oldest_sent_at=late["oldest_sent_at"], overdue_after_s=seen["overdue_after_s"],
             message=f"{late['items']} BEPS items of ours ({late['packages']} packages, "
                     f"{late['amount']} yuan) sent since {late['oldest_sent_at']} are not "
                     f"netted after {minutes} minutes ({late['queued_items']} of them queued "
                     "for our net debit cap, PR11): check the link and the NPC's rounds "
                     "(`paygate ops status`), our cap at the NPC, and `paygate ops stuck`")
    return True
