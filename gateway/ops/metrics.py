"""`/metrics` in the Prometheus text exposition format (version 0.0.4), written by hand:
a few gauges and counters need no client library.

| metric | type | labels | meaning |
|---|---|---|---|
| paygate_payments | gauge | direction, channel, state | payments in each state |
| paygate_payments_amount_fen | gauge | direction, channel, state | their sum in fen |
| paygate_queue_length | gauge | stream | XLEN: entries kept (acknowledged ones trimmed) |
| paygate_queue_pending | gauge | stream | delivered, not yet acknowledged |
| paygate_queue_lag | gauge | stream | not yet delivered |
| paygate_queue_oldest_age_seconds | gauge | stream | oldest pending or undelivered entry |
| paygate_dead_letters | gauge | | dead letters still to act on (as `ops dead` counts them) |
| paygate_stage_processed_total | counter | stage | entries handled since start |
| paygate_stage_failed_total | counter | stage | handler failures since start |
| paygate_hvps_open | gauge | | 1 while HVPS accepts customer payments |
| paygate_hvps_status | gauge | status, work_date | 1 for the current ccms.801 status |
| paygate_clearing_balance_fen | gauge | | our clearing account at the central bank |
| paygate_hvps_queued_at_npc | gauge | | our HVPS payments queued at the NPC |
| paygate_hvps_queued_at_npc_amount_fen | gauge | | their sum in fen |
| paygate_alerts | gauge | | alerts recorded |
| paygate_ops_requests_pending | gauge | | operators' requests waiting for approval |
"""

from __future__ import annotations

from typing import Any

from gateway.ops import queues, snapshot, views

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float | int | None, **labels: Any) -> None:
        if value is None:
            return
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


async def render(gw: Any, console: Any) -> str:
    await console.ready()
    w = Writer()
    now = gw.clock.now()

    def work(tx: Any) -> dict[str, Any]:
        return {"counts": views.counts(tx), "books": snapshot.books(gw, tx),
                "alerts": views.alert_count(tx),
                "pending": views.pending_count(tx, now)}
    db = await gw.store.run(work)
    _payments(w, db["counts"])
    # The letters an operator still has to act on, counted as the console's list counts
    # them: one whose outbox row has completed since (retried, its payment cancelled)
    # is history, and an alert on this gauge clears once the last is dealt with.
    dead = (await queues.dead_letters(gw.redis, 1, gw.store))["total"]
    _queues(w, await queues.stream_stats(gw.redis), dead)
    _stages(w, gw.workers)
    _window(w, gw, db)
    return w.text()


def _payments(w: Writer, counts: list[dict[str, Any]]) -> None:
    w.family("paygate_payments", "gauge", "Payments by direction, channel and state.")
    for c in counts:
        w.sample("paygate_payments", c["count"], direction=c["direction"],
                 channel=c["channel"], state=c["state"])
    w.family("paygate_payments_amount_fen", "gauge", "Sum of those payments in fen.")
    for c in counts:
        w.sample("paygate_payments_amount_fen", c["amount_fen"] or 0,
                 direction=c["direction"], channel=c["channel"], state=c["state"])


def _queues(w: Writer, stats: list[dict[str, Any]], dead: int) -> None:
    for name, key, help_text in (
            ("paygate_queue_length", "length", "Entries kept in the stream (XLEN)."),
            ("paygate_queue_pending", "pending", "Entries delivered, not yet acknowledged."),
            ("paygate_queue_lag", "lag", "Entries not yet delivered to a consumer."),
            ("paygate_queue_oldest_age_seconds", "oldest_age_s",
             "Age of the oldest pending or undelivered entry.")):
        w.family(name, "gauge", help_text)
        for s in stats:
            w.sample(name, s[key], stream=s["stream"])
    w.family("paygate_dead_letters", "gauge",
             "Dead letters still to act on (completed ones left out, as ops dead).")
    w.sample("paygate_dead_letters", dead)


def _stages(w: Writer, workers: list[Any]) -> None:
    w.family("paygate_stage_processed_total", "counter", "Entries a stage handled.")
    for worker in workers:
        w.sample("paygate_stage_processed_total", worker.processed, stage=worker.name)
    w.family("paygate_stage_failed_total", "counter", "Handler failures of a stage.")
    for worker in workers:
        w.sample("paygate_stage_failed_total", worker.failed, stage=worker.name)


def _window(w: Writer, gw: Any, db: dict[str, Any]) -> None:
    w.family("paygate_hvps_open", "gauge", "1 while HVPS accepts customer payments.")
    w.sample("paygate_hvps_open", int(gw.hvps_open))
    w.family("paygate_hvps_status", "gauge", "1 for the current ccms.801 status.")
    w.sample("paygate_hvps_status", 1, status=gw.hvps_status,
             work_date=gw.work_date.isoformat())
    books = db["books"]
    w.family("paygate_clearing_balance_fen", "gauge", "Clearing account balance in fen.")
    w.sample("paygate_clearing_balance_fen", books["clearing_balance_fen"])
    w.family("paygate_hvps_queued_at_npc", "gauge", "Our HVPS payments queued at the NPC.")
    w.sample("paygate_hvps_queued_at_npc", books["queued_at_npc"]["count"])
    w.family("paygate_hvps_queued_at_npc_amount_fen", "gauge", "Their sum in fen.")
    w.sample("paygate_hvps_queued_at_npc_amount_fen", books["queued_at_npc"]["amount_fen"])
    w.family("paygate_alerts", "gauge", "Alerts recorded.")
    w.sample("paygate_alerts", db["alerts"])
    w.family("paygate_critical_alerts_open", "gauge",
             "Critical alerts no supervisor has acknowledged yet.")
    w.sample("paygate_critical_alerts_open", books["critical_alerts"]["open"])
    w.family("paygate_ops_requests_pending", "gauge",
             "Operators' requests waiting for approval.")
    w.sample("paygate_ops_requests_pending", db["pending"])
