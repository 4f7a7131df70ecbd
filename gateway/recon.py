"""Reconciliation with the central bank's records (对账), over the link.

At day end the gateway asks the NPC for its totals (hvps.710) and compares the answer
(hvps.711) with its own records of the same date: outgoing payments the NPC settled
(PR04), and incoming payments it forwarded to us, per message type and business type,
by count and by sum. Every difference is listed; reconciled means there is none. For
each differing total the gateway then asks for the items (hvps.712) and lists, from the
NPC's answer (hvps.713), each payment that only one side has.

Each comparison is kept (table `recon`: the date, whether it agreed, the differences,
and for the totals our counts and sums by kind), and `last_hvps` shows the newest to
the operators (`paygate ops status`, the page, GET /ops/api/status) beside BEPS's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from gateway import critical
from gateway.messages.hvps710 import ReconSummary
from gateway.money import format_yuan_grouped
from gateway.messages.hvps712 import DetailResponse, DetailSelector

SETTLED = "PR04"
# The differences a reconciliation_differences alert lists at most; its `count` says how
# many there are.
DIFFERENCES_LISTED_MAX = 50


def our_hvps_totals(tx: Any, check_date: str) -> dict[tuple[str, str], list[int]]:
    """(mt, business type) -> [sent count, sent fen, received count, received fen]."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    rows = tx.query("SELECT msg_type, business_type, COUNT(*), SUM(amount_fen) FROM payments "
                    "WHERE direction = 'out' AND channel = 'hvps' AND settled_on = ? "
                    "GROUP BY msg_type, business_type", (check_date,))
    for mt, kind, count, total in rows:
        totals[(mt, kind)][0:2] = [count, total]
    rows = tx.query("SELECT msg_type, business_type, COUNT(*), SUM(amount_fen) FROM payments "
                    "WHERE direction = 'in' AND channel = 'hvps' AND work_date = ? "
                    "GROUP BY msg_type, business_type", (check_date,))
    for mt, kind, count, total in rows:
        totals[(mt, kind)][2:4] = [count, total]
    return totals


def compare_hvps(tx: Any, summary: ReconSummary, now: datetime) -> dict[str, Any]:
    ours = our_hvps_totals(tx, summary.check_date)
    theirs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in summary.payments:
        if row.status == SETTLED:
            theirs[(row.mt, row.tx_type)] = [row.sent_count, row.sent_fen, row.received_count,
                                             row.received_fen]
    differences = []
    labels = ("sent_count", "sent_fen", "received_count", "received_fen")
    for key in sorted(set(ours) | set(theirs)):
        for i, label in enumerate(labels):
            if ours[key][i] != theirs[key][i]:
                differences.append({"mt": key[0], "business_type": key[1], "field": label,
                                    "ours": ours[key][i], "npc": theirs[key][i]})
    result = {"work_date": summary.check_date, "system": "HVPS",
              "reconciled": not differences, "differences": differences,
              "rows": {f"{k[0]}/{k[1]}": ours[k] for k in sorted(ours)}}
    tx.execute("INSERT INTO recon (work_date, system, at, reconciled, differences, totals) "
               "VALUES (?, ?, ?, ?, ?, ?)", (summary.check_date, "HVPS", now.isoformat(),
                                             int(not differences), json.dumps(differences),
                                             json.dumps(result["rows"])))
    answered(tx, "HVPS", summary.check_date, now)
    return result


TOTALS = ("sent_count", "sent_fen", "received_count", "received_fen")


def last_hvps(tx: Any) -> dict[str, Any] | None:
    """The newest HVPS reconciliation (hvps.710/711), for the operators: its work date,
    when it ran, whether the NPC's totals agreed with ours, each differing total, our
    totals by message type and business type (counts and fen), and, when it differed,
    the item comparison that followed (hvps.712/713: the payments only one side has).
    None before the first."""
    row = tx.query_one("SELECT id, work_date, at, reconciled, differences, totals FROM recon "
                       "WHERE system = 'HVPS' ORDER BY id DESC LIMIT 1", ())
    if row is None:
        return None
    recon_id, work_date, at, reconciled, differences, totals = row
    out: dict[str, Any] = {
        "work_date": work_date, "at": at, "reconciled": bool(reconciled),
        "differences": [_in_yuan(d) for d in json.loads(differences)],
        "totals": [_in_yuan({"kind": kind, **dict(zip(TOTALS, values))})
                   for kind, values in json.loads(totals or "{}").items()],
        "items": None}
    detail = tx.query_one("SELECT at, reconciled, differences FROM recon WHERE "
                          "system = 'HVPS-detail' AND work_date = ? AND id > ? "
                          "ORDER BY id DESC LIMIT 1", (work_date, recon_id))
    if detail is not None:
        out["items"] = {"at": detail[0], "reconciled": bool(detail[1]),
                        "differences": json.loads(detail[2])}
    return out


def detail_selectors(result: dict[str, Any]) -> list[DetailSelector]:
    """What to ask hvps.712 for: each (type, business type, side) whose totals differ."""
    wanted = set()
    for d in result["differences"]:
        side = "SR00" if d["field"].startswith("sent") else "SR01"
        wanted.add((d["mt"], d["business_type"], side))
    return [DetailSelector(mt, tx_type, side, SETTLED) for mt, tx_type, side in sorted(wanted)]


def compare_details(tx: Any, response: DetailResponse, now: datetime) -> dict[str, Any]:
    """Item by item: the payments behind a differing total that only one side has."""
    differences = []
    for row in response.rows:
        s = row.selector
        if s.side == "SR00":
            ours = {m for (m,) in tx.query(
                "SELECT msg_id FROM payments WHERE direction = 'out' AND channel = 'hvps' AND "
                "settled_on = ? AND msg_type = ? AND business_type = ?",
                (response.check_date, s.mt, s.tx_type))}
        else:
            ours = {m for (m,) in tx.query(
                "SELECT msg_id FROM payments WHERE direction = 'in' AND channel = 'hvps' AND "
                "work_date = ? AND msg_type = ? AND business_type = ?",
                (response.check_date, s.mt, s.tx_type))}
        theirs = {m.original.msg_id: m for m in row.messages}
        for msg_id in sorted(set(theirs) - ours):
            m = theirs[msg_id]
            differences.append({"side": s.side, "mt": s.mt, "msg_id": msg_id,
                                "sender": m.original.instg_party, "amount_fen": m.amount_fen,
                                "only_at": "npc"})
        for msg_id in sorted(ours - set(theirs)):
            differences.append({"side": s.side, "mt": s.mt, "msg_id": msg_id,
                                "only_at": "gateway"})
    result = {"work_date": response.check_date, "system": "HVPS-detail",
              "reconciled": not differences, "differences": differences}
    tx.execute("INSERT INTO recon (work_date, system, at, reconciled, differences) "
               "VALUES (?, ?, ?, ?, ?)", (response.check_date, "HVPS-detail",
                                          now.isoformat(), int(not differences),
                                          json.dumps(differences, ensure_ascii=False)))
    return result


def _in_yuan(row: dict[str, Any]) -> dict[str, Any]:
    """A totals or difference row with its sums also in yuan (sent_fen: sent, ours and npc
    of a `_fen` field: ours_yuan, npc_yuan), as the operators read them."""
    out = dict(row)
    for name in ("sent_fen", "received_fen"):
        if name in row:
            out[name.removesuffix("_fen")] = format_yuan_grouped(row[name])
    if str(row.get("field", "")).endswith("_fen"):
        out["ours_yuan"] = format_yuan_grouped(row["ours"])
        out["npc_yuan"] = format_yuan_grouped(row["npc"])
    return out


# How many work dates' results a process keeps in memory (its maps of results by date,
# for those who wait for one and the demo): the newest, enough for a week of day ends run
# late; the books and recon_runs keep every date, and a process running for months must
# not keep one entry a day.
DAYS_KEPT = 31


def keep_day(by_day: dict[str, Any], day: str, value: Any, kept: int = DAYS_KEPT) -> None:
    """Set `by_day[day]` (an ISO date) and drop the oldest dates beyond `kept`."""
    by_day[day] = value
    forget_old_days(by_day, kept)


def forget_old_days(by_day: dict[str, Any], kept: int = DAYS_KEPT) -> None:
    """Drop from `by_day` (keyed by ISO date) all but the newest `kept` dates."""
    if len(by_day) > kept:
        for day in sorted(by_day)[:len(by_day) - kept]:
            del by_day[day]


ALERT_OVERDUE = "reconciliation_overdue"
_ASKED_MESSAGE = {"HVPS": ("hvps.710", "hvps.711"), "BEPS": ("beps.720", "beps.721")}


def asked(tx: Any, system: str, day: str, now: datetime) -> None:
    """A reconciliation of `day` was asked of the NPC (its message queued). An ask while
    one waits for its answer keeps the first's time; one after an answer starts again."""
    tx.execute("INSERT INTO recon_asks (system, work_date, asked_at) VALUES (?, ?, ?) "
               "ON CONFLICT (system, work_date) DO UPDATE SET asked_at = excluded.asked_at, "
               "answered_at = NULL, alert_id = NULL WHERE recon_asks.answered_at IS NOT NULL",
               (system, day, now.isoformat()))


def answered(tx: Any, system: str, day: str, now: datetime) -> None:
    """The NPC's answer about `day` was compared: the ask is answered, and the
    `reconciliation_overdue` it raised, if any, is closed by the gateway."""
    rows = tx.query("UPDATE recon_asks SET answered_at = ? WHERE system = ? AND "
                    "work_date = ? AND answered_at IS NULL RETURNING alert_id",
                    (now.isoformat(), system, day))
    alerts = [int(alert_id) for (alert_id,) in rows if alert_id is not None]
    if alerts:
        critical.close_by_gateway(tx, alerts, f"the NPC answered at {now.isoformat()}", now)
    if system == "HVPS":
        owed_done(tx, day, now)


ALERT_OWED = "day_end_reconciliation_owed"
HVPS_RECONCILE_COMMAND = "paygate ops request hvps-reconcile {day}"


def owe(tx: Any, day: str, now: datetime) -> None:
    """The closed work date `day` is owed its HVPS reconciliation: recorded in the
    transaction that closes its ledger day (or asks again), so that a stop before the
    hvps.711 is compared leaves it to the next start (gateway.dayend). Owed again after
    it was done, it waits for a new answer."""
    tx.execute("INSERT INTO recon_owed (work_date, owed_at) VALUES (?, ?) "
               "ON CONFLICT (work_date) DO UPDATE SET owed_at = excluded.owed_at, "
               "done_at = NULL, alert_id = NULL WHERE recon_owed.done_at IS NOT NULL",
               (day, now.isoformat()))


def owed_done(tx: Any, day: str, now: datetime) -> None:
    """The NPC's hvps.711 for `day` was compared: the date owes nothing more, and the
    `day_end_reconciliation_owed` raised for it, if any, is closed by the gateway."""
    rows = tx.query("UPDATE recon_owed SET done_at = ? WHERE work_date = ? AND "
                    "done_at IS NULL RETURNING alert_id", (now.isoformat(), day))
    alerts = [int(alert_id) for (alert_id,) in rows if alert_id is not None]
    if alerts:
        critical.close_by_gateway(tx, alerts, f"the NPC's hvps.711 for {day} was compared "
                                              f"at {now.isoformat()}", now)


def owed(tx: Any) -> list[tuple[str, str]]:
    """The closed work dates still owed their HVPS reconciliation, with since when,
    oldest first."""
    return [(day, at) for day, at in tx.query(
        "SELECT work_date, owed_at FROM recon_owed WHERE done_at IS NULL "
        "ORDER BY work_date", ())]


def owed_listing(tx: Any) -> list[dict[str, Any]]:
    """The closed dates owed their HVPS reconciliation, for the operators' status: each
    date, since when, and its `day_end_reconciliation_owed` alert once raised."""
    return [{"work_date": day, "owed_since": at, "alert": alert_id}
            for day, at, alert_id in tx.query(
                "SELECT work_date, owed_at, alert_id FROM recon_owed WHERE done_at IS NULL "
                "ORDER BY work_date", ())]


def raise_owed(tx: Any, gw: Any, now: datetime, after_s: float) -> list[str]:
    """Raise `day_end_reconciliation_owed` once for each closed date owed its HVPS
    reconciliation for longer than `after_s` (business seconds): whatever held it up (a
    stop before the hvps.710 went, an NPC that does not answer, a link down), its
    closed day's books stand unconfirmed by the NPC. The dates raised now."""
    limit = (now - timedelta(seconds=after_s)).isoformat()
    raised = []
    for day, at in tx.query("SELECT work_date, owed_at FROM recon_owed WHERE done_at IS "
                            "NULL AND alert_id IS NULL AND owed_at <= ? ORDER BY work_date",
                            (limit,)):
        command = HVPS_RECONCILE_COMMAND.format(day=day)
        alert_id = gw.alert(tx, ALERT_OWED, work_date=day, owed_since=at,
                            message=f"the ledger day of {day} is closed but the NPC's "
                                    f"hvps.711 for it has not been compared (owed since "
                                    f"{at}, {after_s:g} s allowed); the gateway keeps "
                                    f"asking, and `{command}` asks again at once; the "
                                    "alert closes by itself when the answer is compared")
        tx.execute("UPDATE recon_owed SET alert_id = ? WHERE work_date = ?", (alert_id, day))
        _supersede_overdue(tx, day, alert_id, now)
        raised.append(day)
    return raised


def _supersede_overdue(tx: Any, day: str, owed_alert: int, now: datetime) -> None:
    """One alert per cause: an hvps.710 for `day` unanswered while the date is owed is
    the owed date's `day_end_reconciliation_owed` (it covers a stop before the ask too,
    and names the command that asks again). A `reconciliation_overdue` raised for the
    ask before the date became owed (asked at its end of day, closed at the cut-over
    since) is closed by the gateway, its note naming the alert that stands; the ask
    keeps no alert, so the answer closes only the owed one."""
    where = ("system = 'HVPS' AND work_date = ? AND answered_at IS NULL AND "
             "alert_id IS NOT NULL")
    alerts = [int(alert_id) for (alert_id,) in tx.query(
        f"SELECT alert_id FROM recon_asks WHERE {where}", (day,))]
    if alerts:
        tx.execute(f"UPDATE recon_asks SET alert_id = NULL WHERE {where}", (day,))
        critical.close_by_gateway(tx, alerts, f"{day}'s ledger day is closed and the "
                                              f"reconciliation owed: {ALERT_OWED} (alert "
                                              f"{owed_alert}) stands for it", now)


# An ask that is not the owed date's own: a BEPS ask, or an hvps.710 of a date not owed
# (its ledger day open, or reconciled). An hvps.710 of an owed date is alerted as owed.
_NOT_OWED = ("NOT (system = 'HVPS' AND EXISTS (SELECT 1 FROM recon_owed o WHERE "
             "o.work_date = recon_asks.work_date AND o.done_at IS NULL))")


def raise_overdue(tx: Any, gw: Any, now: datetime, after_s: float) -> datetime | None:
    """Raise `reconciliation_overdue` for each ask left unanswered `after_s` (business
    seconds) and not raised yet, but an hvps.710 of a date owed its reconciliation
    (`raise_owed` alerts that one); when the next such ask falls due (None: none
    waits)."""
    limit = (now - timedelta(seconds=after_s)).isoformat()
    for system, day, at in tx.query("SELECT system, work_date, asked_at FROM recon_asks "
                                    "WHERE answered_at IS NULL AND alert_id IS NULL AND "
                                    f"asked_at <= ? AND {_NOT_OWED} ORDER BY asked_at",
                                    (limit,)):
        ask, answer = _ASKED_MESSAGE.get(system, ("the request", "the answer"))
        alert_id = gw.alert(tx, ALERT_OVERDUE, system=system, work_date=day, asked_at=at,
                            message=f"the NPC has not answered our {ask} for {day} (asked at "
                                    f"{at}, {after_s:g} s allowed): no {answer} yet; the "
                                    "alert closes by itself when it comes")
        tx.execute("UPDATE recon_asks SET alert_id = ? WHERE system = ? AND work_date = ?",
                   (alert_id, system, day))
    row = tx.query_one("SELECT MIN(asked_at) FROM recon_asks WHERE answered_at IS NULL "
                       f"AND alert_id IS NULL AND {_NOT_OWED}", ())
    if row is None or row[0] is None:
        return None
    return datetime.fromisoformat(row[0]) + timedelta(seconds=after_s)


def overdue(tx: Any) -> list[dict[str, Any]]:
    """The reconciliations overdue now (alert raised, no answer yet), oldest first."""
    return [{"system": system, "work_date": day, "asked_at": at, "alert": alert_id}
            for system, day, at, alert_id in tx.query(
                "SELECT system, work_date, asked_at, alert_id FROM recon_asks WHERE "
                "answered_at IS NULL AND alert_id IS NOT NULL ORDER BY asked_at", ())]


ALERT_DIFFERENCES = "reconciliation_differences"


def close_differences(tx: Any, system: str, key: str, value: str, now: datetime) -> list[int]:
    """A later reconciliation of the same date agreed: close, as the gateway, the open
    `reconciliation_differences` of `system` whose `key` (work_date, or netting_date for
    BEPS) is `value`; the differences they listed are gone. Their ids."""
    ids = [alert_id for alert_id, detail in critical.unclosed(tx, (ALERT_DIFFERENCES,), value)
           if detail.get(key) == value and detail.get("system") == system]
    if ids:
        critical.close_by_gateway(tx, ids, f"a later reconciliation of {value} with the NPC "
                                           f"agreed ({system}, {now.isoformat()})", now)
    return ids
