"""One picture of the gateway for the operators' page, rebuilt at most once per push.

Open pages share the snapshot: it is built again only when it is older than
`FRESH_S` or when an action changed something since, so ten open pages cost the
database what one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import critical, recon, status_hold
from gateway.errors import PaygateError
from gateway.money import format_yuan_grouped
from gateway.ops import attention, control, queues, views
from gateway.ops.console import Console
from gateway.ops.schema import table_exists
from gateway.windows import HVPS_TRANSITIONS, Phase, next_change_not_reached

FRESH_S = 0.9            # a little under the page's push interval of one second
SNAPSHOT_LIST_MAX = 50   # rows per list on the page; the JSON routes page further


def window(gw: Any) -> dict[str, Any]:
    """HVPS window state now and the next change the timetable forecasts that the status
    in force has not already reached (an NPC ahead of the clock is not shown a change to
    the status it is in); `overdue` when its time has passed and the NPC has not
    announced it (offline, or late), rather than a change of a day not begun."""
    now = gw.clock.now()
    out: dict[str, Any] = {"now": now.isoformat(), "status": gw.hvps_status,
                           "open": gw.hvps_open, "work_date": gw.work_date.isoformat(),
                           "sending": status_hold.view(getattr(gw, "hvps_hold", None))}
    if gw.hvps_status in HVPS_TRANSITIONS:
        phase = Phase.from_code(gw.hvps_status, gw.work_date)
        out.update(name_en=phase.name_en, name_zh=phase.name_zh)
    try:
        at, nxt = next_change_not_reached(now, gw.hvps_status, gw.work_date, gw.calendar,
                                          getattr(gw, "timetable", None))
    except PaygateError as exc:
        out["next"] = {"error": exc.code}
        return out
    out["next"] = {"at": at.isoformat(), "status": nxt.code, "name_en": nxt.name_en,
                   "name_zh": nxt.name_zh, "work_date": nxt.work_date.isoformat(),
                   "overdue": at <= now}
    return out


def beps_position(gw: Any, tx: Any) -> dict[str, Any] | None:
    """Our BEPS net position in rounds netted but not yet settled; None without BEPS.

    Positive: we receive; negative: we pay. The NPC's net debit cap is not known to the
    gateway unless the setting `beps_net_debit_cap_fen` gives it; the page shows n/a.
    """
    if not table_exists(tx, "beps_items"):
        return None
    pay_fen, receive_fen = tx.query_one(
        "SELECT COALESCE(SUM(CASE WHEN side = 'D' THEN amount_fen END), 0), "
        "COALESCE(SUM(CASE WHEN side = 'C' THEN amount_fen END), 0) FROM beps_items "
        "WHERE netting_round IS NOT NULL AND settled_on IS NULL", ())
    cap_fen = getattr(gw.settings, "beps_net_debit_cap_fen", None)
    return {"net_fen": receive_fen - pay_fen, "net": format_yuan_grouped(receive_fen - pay_fen),
            "pay_fen": pay_fen, "receive_fen": receive_fen, "cap_fen": cap_fen,
            "cap": format_yuan_grouped(cap_fen) if cap_fen else None}


def books(gw: Any, tx: Any) -> dict[str, Any]:
    """The money: the clearing account, what waits at the NPC, the BEPS position, the
    critical alerts still open (gateway.critical: money moved at the NPC against us), and
    the last HVPS reconciliation (gateway.recon.last_hvps) and the reconciliations the NPC
    has not answered in time (gateway.recon.overdue), and the closed dates still owed
    their HVPS reconciliation (gateway.recon.owed_listing)."""
    balance_fen = gw.ledger.clearing_balance(tx)
    count, sum_fen = tx.query_one(
        "SELECT COUNT(*), COALESCE(SUM(amount_fen), 0) FROM payments "
        "WHERE direction = 'out' AND channel = 'hvps' AND state = 'queued'", ())
    return {"clearing_balance_fen": balance_fen,
            "clearing_balance": format_yuan_grouped(balance_fen),
            "queued_at_npc": {"count": count, "amount_fen": sum_fen,
                              "amount": format_yuan_grouped(sum_fen)},
            "beps": beps_position(gw, tx), "critical_alerts": critical.open_alerts(tx),
            "hvps_reconciliation": recon.last_hvps(tx),
            "reconciliation_overdue": recon.overdue(tx),
            "hvps_reconciliation_owed": recon.owed_listing(tx)}


async def status(gw: Any) -> dict[str, Any]:
    out = {"bank": gw.settings.bank_code, "window": window(gw),
           "link": dict(await gw.link_share.view(), session=getattr(gw, "link_state", None))}
    out.update(await gw.store.run(lambda tx: books(gw, tx)))
    watch = getattr(gw, "screening_watch", None)
    if watch is not None:
        out["screening"] = watch.view()
    # What the extensions add (BEPS: which netting dates are reconciled with the NPC).
    for ext in gw.extensions:
        if hasattr(ext, "ops_status"):
            out.update(await gw.store.run(ext.ops_status))
    return out


class Snapshots:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.gw = console.gw
        self.rates = queues.Rates()
        self._cached: dict[str, Any] | None = None
        self._cached_version = -1
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        async with self._lock:
            fresh = loop.time() - self._cached_at < FRESH_S
            if self._cached is None or not fresh or \
                    self._cached_version != self.console.hub.version:
                self._cached_version = self.console.hub.version
                self._cached = await self.build()
                self._cached_at = loop.time()
            return self._cached

    async def build(self) -> dict[str, Any]:
        await self.console.ready()
        gw, r = self.gw, self.gw.redis
        now = gw.clock.now()
        snap = await status(gw)
        snap["queues"] = await queues.stream_stats(r)
        snap["stages"] = self.rates.stages(gw.workers, asyncio.get_running_loop().time())
        snap["dead"] = await queues.dead_letters(r, SNAPSHOT_LIST_MAX, gw.store)

        link_view = snap["link"]

        def work(tx: Any) -> dict[str, Any]:
            control.expire_due(tx, now)
            ongoing = attention.ongoing_ids(tx, link_view)
            lists = {"recent": views.recent_payments(tx, 20),
                     "stuck": views.stuck(tx, now, hvps_open=gw.hvps_open,
                                          limit=SNAPSHOT_LIST_MAX),
                     "review": views.held_for_review(tx)[:SNAPSHOT_LIST_MAX]}
            # Each row's buttons, as a request of each would be checked now: the three
            # lists together, a payment in more than one checked once.
            control.add_row_actions(gw, tx, [row for rows in lists.values() for row in rows],
                                    now)
            return {
                "counts": views.counts(tx),
                **lists,
                # The page lists the oldest SNAPSHOT_LIST_MAX held for review and stuck:
                # how many there are in all, so that a cut list says so.
                "review_total": views.held_for_review_total(tx),
                "stuck_total": views.stuck_total(tx, now, hvps_open=gw.hvps_open)[0],
                # Open alerts and the history apart, counted (ops.attention).
                "alerts": attention.listing(tx, ongoing, SNAPSHOT_LIST_MAX, True),
                "alert_history": attention.listing(tx, ongoing, SNAPSHOT_LIST_MAX, False),
                "alert_count": attention.counts(tx, ongoing),
                "webhooks_failed": views.failed_webhooks(tx, SNAPSHOT_LIST_MAX),
                "audit": views.audit_rows(tx, SNAPSHOT_LIST_MAX),
                "pending": views.requests(tx, now, state="pending", limit=SNAPSHOT_LIST_MAX),
                "requests": views.requests(tx, now, limit=SNAPSHOT_LIST_MAX),
                "queries": views.overdue_queries(tx, now),
                "data_version": views.data_version(tx),
            }
        snap.update(await gw.store.run(work))
        snap["version"] = self.console.hub.version
        return snap
