"""HVPS sending held while the gateway and the NPC disagree on HVPS's status.

A ccms.801 the gateway refuses (gateway.windows: an illegal change, an unknown status, a
stale notice) leaves the gateway on the status it had and the NPC on the one it
announced. Payments sent meanwhile go to an NPC whose day is elsewhere, and it rejects
them. So from the refusal on:

- the alert `hvps_status_notice_refused` is critical (gateway.critical): /health says
  `attention`, `ops status` and the page show it, until a person acknowledges it or the
  gateway finds the two in step again and closes it itself;
- every gateway process holds HVPS sending: payments are still accepted, or answered, as
  the window in force says, but none leaves its lane for the NPC (gateway.app:
  `_send_outbox`, `_may_send_now`, `release_waiting`; gateway.recovery.sweep leaves the
  lanes alone). They stay `accepted` or `held`, their outbox rows `pending` or
  `waiting`: nothing is rejected, nothing lost. /health and `ops status` show the hold.
  A return (gateway.exceptions.returns) is a payment on a lane and is held the same
  way; messages that are not settlement (queries, replies, status and cancellation
  requests, reconciliation, receipts) go. A payment's message claimed before the hold
  and still waiting at the link for a POST is kept back there and given back to its
  lane (gateway.linkpost: the link's last look, `Gateway.hvps_sending_stopped`).

The hold is a row of `hvps_status_hold` (one while it lasts, restarts included) and each
process's copy of it (`Gateway.hvps_hold`), told over the cluster channel
(`hvps_status_hold`: a process told reads the row again rather than take the word,
which can be older than the row by the time it arrives) and read again at start and on
every window tick by a process of several, which a lost message cannot then leave
sending (nor sending with the status it had: the status operators confirmed is kept
with the end of the hold, `hvps_status_confirmed`, and taken first). It ends, and sending resumes by itself
(every pending row put back on its lane, those waiting for the window released when
HVPS is open), when either

- a later ccms.801 the gateway accepts (applied, confirmed, corrected, a gap, or the
  state in force restated) shows the two in step again (`end`, from the handler), or
- operators confirm, with the NPC, the status to use: console action
  `hvps_status_confirm` (target the work date, `params.status` the status, a note
  saying how it was confirmed; a supervisor or director approves, nobody their own
  request). The work date is the gateway's or the refused notice's, never after the
  business date nor before the gateway's work date, and never one the gateway would
  move to: a confirmation closes no ledger day and runs no day end
  (`check_confirmable`). The window takes that status
  whatever the transition rules say (`WindowState.set_by_operator`), in every process,
  and the NPC's later notices are judged from it. With HVPS closed under it, the
  payments held on the lanes follow the window's rules instead of going
  (`follow_closed_window`), as lane payments do whenever HVPS closes (gateway.app:
  `follow_closed_hvps`, `_send_outbox`; the ccms.801 handler).

While the hold lasts a payment it keeps on a lane shows the reason `hvps_sending_held`.

Either way the open `hvps_status_notice_refused` alerts are closed by the gateway, the
note saying how the two came back in step.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from datetime import date, datetime
from typing import Any

from gateway import critical, keys
from gateway.clock import SHANGHAI
from gateway.errors import Conflict, Problem, ValidationFailed, not_text
from gateway.states import HVPS_SENDING_HELD
from gateway.windows import CUTOVER, HVPS_TRANSITIONS, SOURCE_OPERATOR, Phase

log = logging.getLogger("paygate.status_hold")

ALERT = "hvps_status_notice_refused"
# A payment left on an HVPS lane that could not follow the closed window (its row stays
# `pending`, the others follow): once per outbox row while the alert is open.
ALERT_LANE_ROW_FAILED = "hvps_closed_lane_row_failed"
# The work after a committed confirmation (the lanes followed) failed; sending resumed.
ALERT_CONFIRM_AFTER_COMMIT = "hvps_status_confirm_after_commit_failed"
ACTION = "hvps_status_confirm"
ACTION_LABEL = {"en": "Confirm the HVPS status", "zh": "确认大额系统状态"}
# The cluster channel's kind for the hold starting or ending.
CLUSTER_KIND = "hvps_status_hold"
# Why an HVPS delivery is put off while the hold lasts (the worker's retry note).
HELD = "hvps_sending_held_status_disagreement"
# The reason a payment held on its lane shows while the hold lasts (still `accepted`).
HELD_REASON = HVPS_SENDING_HELD
# The payment held on its lane, refused when the confirmed status keeps HVPS closed and
# its `when_closed` is `refuse` (its history's event; the reason is the window's code).
CLOSED_REFUSED = "hvps_closed_after_status_confirmed"
# The same when HVPS closed by the NPC's notice or the timetable while it was on its lane.
CLOSED_ON_LANE = "hvps_closed_while_on_lane"
_LANES = ", ".join(f"'{s}'" for s in keys.HVPS_LANES)
# Payments on an HVPS lane, never sent: the hold keeps them there.
_ON_LANES = (f"SELECT payment_id FROM outbox WHERE state = 'pending' AND stream IN ({_LANES}) "
             "AND payment_id IS NOT NULL")
NOTE_EXPECTED = ("how the status was confirmed with the NPC (who was called, what it "
                 "said): a note is required")

TABLES = [
    """CREATE TABLE IF NOT EXISTS hvps_status_hold (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        since TEXT NOT NULL,              -- the first refused notice of the episode
        orig TEXT NOT NULL, cur TEXT NOT NULL, notice_date TEXT NOT NULL,
        outcome TEXT NOT NULL,            -- of the last refused notice
        status TEXT NOT NULL, work_date TEXT NOT NULL,  -- the gateway's then
        notices INTEGER NOT NULL DEFAULT 1  -- refused during the episode
    )""",
    # The last status operators confirmed, written with the end of the hold it ended: a
    # process that missed the word reads it on its tick (`read_confirmed`).
    """CREATE TABLE IF NOT EXISTS hvps_status_confirmed (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,             -- 1, 2, ...: one per confirmation
        status TEXT NOT NULL, work_date TEXT NOT NULL,
        at TEXT NOT NULL,                 -- when it was approved
        since TEXT NOT NULL               -- the `since` of the hold it ended
    )""",
]

_COLUMNS = ("since", "orig", "cur", "notice_date", "outcome", "status", "work_date",
            "notices")
_CONFIRMED = ("seq", "status", "work_date", "at", "since")


def read(tx: Any) -> dict[str, Any] | None:
    """The hold going on, None when the gateway and the NPC are in step."""
    row = tx.query_one(f"SELECT {', '.join(_COLUMNS)} FROM hvps_status_hold WHERE id = 1",
                       ())
    return dict(zip(_COLUMNS, row)) if row else None


def begin(tx: Any, orig: str, cur: str, notice_date: Any, outcome: str, status: str,
          work_date: date, now: datetime) -> dict[str, Any]:
    """A notice refused: the hold starts, or goes on (counting the notice, its `since`
    kept); the hold as it stands."""
    tx.execute("INSERT INTO hvps_status_hold (id, since, orig, cur, notice_date, outcome, "
               "status, work_date) VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO "
               "UPDATE SET orig = excluded.orig, cur = excluded.cur, notice_date = "
               "excluded.notice_date, outcome = excluded.outcome, status = excluded.status, "
               "work_date = excluded.work_date, "
               "notices = hvps_status_hold.notices + 1",
               (now.isoformat(), orig, cur, str(notice_date), outcome, status,
                work_date.isoformat()))
    mark_held(tx)
    hold = read(tx)
    assert hold is not None
    return hold


def mark_held(tx: Any) -> None:
    """Give each payment the hold keeps on its lane (accepted, its outbox row pending)
    the reason `hvps_sending_held`, shown while it is accepted."""
    tx.execute(f"UPDATE payments SET reason = ? WHERE state = 'accepted' AND reason IS NULL "
               f"AND id IN ({_ON_LANES})", (HELD_REASON,))


def end(tx: Any, how: str, now: datetime) -> dict[str, Any] | None:
    """The two in step again (`how` says by what): the hold ends and its open alerts are
    closed by the gateway; the hold that ended, None when there was none."""
    hold = read(tx)
    if hold is None:
        return None
    tx.execute("DELETE FROM hvps_status_hold WHERE id = 1", ())
    tx.execute("UPDATE payments SET reason = NULL WHERE state = 'accepted' AND reason = ?",
               (HELD_REASON,))
    ids = [int(i) for (i,) in tx.query(
        "SELECT a.id FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
        "WHERE a.code = ? AND k.alert_id IS NULL", (ALERT,))]
    critical.close_by_gateway(tx, ids, f"HVPS back in step with the NPC: {how}", now)
    return hold


def record_confirmed(tx: Any, status: str, work_date: date, at: datetime,
                     since: str) -> dict[str, Any]:
    """Keep the status operators confirmed (in the transaction that ends the hold); the
    record, its `seq` one more than the last one's."""
    tx.execute("INSERT INTO hvps_status_confirmed (id, seq, status, work_date, at, since) "
               "VALUES (1, 1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
               "seq = hvps_status_confirmed.seq + 1, status = excluded.status, "
               "work_date = excluded.work_date, at = excluded.at, since = excluded.since",
               (status, work_date.isoformat(), at.isoformat(), since))
    confirmed = read_confirmed(tx)
    assert confirmed is not None
    return confirmed


def read_confirmed(tx: Any) -> dict[str, Any] | None:
    """The last status operators confirmed, None when none ever was."""
    row = tx.query_one(f"SELECT {', '.join(_CONFIRMED)} FROM hvps_status_confirmed "
                       "WHERE id = 1", ())
    return dict(zip(_CONFIRMED, row)) | {"seq": int(row[0])} if row else None


def confirmed_at_start(tx: Any, work_date: date
                       ) -> tuple[dict[str, Any] | None, bool]:
    """The last confirmation, and whether a starting process (its window forecast by the
    timetable, on `work_date`) takes it: when no HVPS notice changed the window after
    it (`window_changed`, recorded by whichever process applied the notice) and it is
    not of a day before `work_date` (the day has moved on since)."""
    confirmed = read_confirmed(tx)
    if confirmed is None or confirmed["work_date"] < work_date.isoformat():
        return confirmed, False
    row = tx.query_one("SELECT at FROM alerts WHERE code = 'window_changed' AND detail "
                       "LIKE ? ORDER BY id DESC LIMIT 1", ('%"system": "HVPS"%',))
    later = row is not None and datetime.fromisoformat(row[0]) > datetime.fromisoformat(
        confirmed["at"])
    return confirmed, not later


def view(hold: dict[str, Any] | None) -> dict[str, Any]:
    """The hold for /health and `ops status`."""
    if hold is None:
        return {"held": False}
    return {"held": True, "since": hold["since"],
            "refused_notice": {"orig": hold["orig"], "cur": hold["cur"],
                               "date": hold["notice_date"], "outcome": hold["outcome"]},
            "notices_refused": hold["notices"],
            "gateway_status": hold["status"], "gateway_work_date": hold["work_date"]}


# Operators confirm the status to use

def check_held(tx: Any) -> dict[str, Any]:
    hold = read(tx)
    if hold is None:
        raise Conflict(Problem(
            "hvps_status_not_held", "/action", ACTION,
            "a hold of HVPS sending going on (a refused ccms.801)",
            "the gateway and the NPC are in step: HVPS sending is not held"))
    return hold


# The statuses a confirmation can take: the cut-over (15) moves the gateway to the next
# work date, which a confirmation never does (`check_confirmable`).
CONFIRMABLE = tuple(sorted(code for code in HVPS_TRANSITIONS
                           if Phase.from_code(code, date.min).key != CUTOVER))
_STATUS_EXPECTED = "the status the NPC is in: one of " + ", ".join(CONFIRMABLE)


def status_param(params: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    status = params.get("status")
    if status is None:
        return params, [Problem("hvps_status_required", "/params/status", None,
                                _STATUS_EXPECTED,
                                "the HVPS status is required (--status on `paygate ops "
                                "request hvps-status-confirm`, params.status in the "
                                "API): " + _STATUS_EXPECTED)]
    wrong_type = not_text("/params/status", status, _STATUS_EXPECTED)
    if wrong_type is not None:
        return params, [wrong_type]
    if status not in HVPS_TRANSITIONS:
        return params, [Problem("hvps_status_malformed", "/params/status", status,
                                _STATUS_EXPECTED)]
    return {"status": status}, []


def note_problems(note: str) -> list[Problem]:
    return [] if note.strip() else [Problem("note_required", "/note", note, NOTE_EXPECTED)]


def allowed_dates(gw: Any, hold: dict[str, Any], now: datetime) -> list[str]:
    """The work dates a confirmation may name: the gateway's current work date, always
    (naming it moves nothing, even when a cut-over notice took the gateway to a working
    day after the business clock's date, over a weekend say), and the date the refused
    notice named when it is neither after the business clock's own date nor before the
    gateway's work date (the window never goes back to an earlier day)."""
    today = now.astimezone(SHANGHAI).date().isoformat()
    work_date = gw.work_date.isoformat()
    notice = hold["notice_date"]
    later = [notice] if _is_date(notice) and work_date < notice <= today else []
    return [work_date, *later]


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _date_refusal(work_date: str, notice_date: str, target: str, today: str) -> str:
    """Which rule refuses `target` as a confirmation's work date, said plainly."""
    if not _is_date(target):
        return f"{target} is not a date (YYYY-MM-DD)"
    if target < work_date:
        return (f"work date {target} is before the gateway's work date {work_date}: a "
                "confirmation never takes the gateway back to an earlier day")
    if target not in (work_date, notice_date):
        return (f"work date {target} is neither the gateway's work date ({work_date}) "
                f"nor the date the refused notice named ({notice_date})")
    return (f"work date {target} is after the business date {today}: a status cannot "
            "be confirmed for a day that has not begun")


def check_confirmable(gw: Any, tx: Any, target: str, status: str, now: datetime
                      ) -> dict[str, Any]:
    """Refuse a confirmation the gateway must not take (when asked and again when
    approved): nothing held; a work date other than those `allowed_dates` names (one
    before the gateway's work date said so); a status and date that would move the
    gateway to another work date, which closes a ledger day and runs a day end (those
    come by their own way: the NPC's cut-over notice, or a late day end). The hold
    going on."""
    hold = check_held(tx)
    allowed = allowed_dates(gw, hold, now)
    if target not in allowed:
        why = _date_refusal(gw.work_date.isoformat(), hold["notice_date"], target,
                            now.astimezone(SHANGHAI).date().isoformat())
        raise Conflict(Problem(
            "hvps_status_date_not_allowed", "/target", target,
            "the gateway's work date, or the date of the refused notice when it is "
            "neither before the gateway's work date nor after the business date: "
            + (" or ".join(allowed) or "none now"), why))
    if target > gw.work_date.isoformat() \
            or Phase.from_code(status, gw.work_date).key == CUTOVER:
        raise Conflict(Problem(
            "hvps_status_confirm_changes_day", "/params/status", status,
            f"a status on the gateway's work date {gw.work_date.isoformat()} other than "
            "the cut-over (15)",
            f"status {status} on {target} would move the gateway off work date "
            f"{gw.work_date.isoformat()}, closing its ledger day and running its day end: "
            "a confirmation never does; the day end runs its own way (the NPC's "
            "cut-over notice, or a late day end: docs/operations.md)"))
    return hold


def confirm(gw: Any, tx: Any, target: str, params: dict[str, Any], request_id: int,
            by: str, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The status operators confirmed, checked again (a notice may have ended the hold
    since the request, or moved the work date): the hold ended and its alerts closed,
    the status kept with its end (`record_confirmed`), the change of the window
    recorded, and with HVPS closed under that status the payments held on the lanes
    treated as the window says (`follow_closed_window`); the answer, and the record of
    the status to take once committed."""
    status, params_bad = status_param(params)
    if params_bad:
        raise ValidationFailed(params_bad)
    hold = check_confirmable(gw, tx, target, status["status"], now)
    day = date.fromisoformat(target)
    requested_by, note = tx.query_one("SELECT requested_by, note FROM ops_requests "
                                      "WHERE id = ?", (request_id,))
    end(tx, f"status {status['status']} on {target} confirmed by {requested_by} and {by} "
        f"(request {request_id}): {note.strip()}", now)
    confirmed = record_confirmed(tx, status["status"], day, now, hold["since"])
    before = (gw.window.code, gw.window.work_date)
    if before != (status["status"], day):
        gw.windows_record(tx, "HVPS", before[0], status["status"], target, now,
                          SOURCE_OPERATOR)
    answer = {"status": status["status"], "work_date": target, "held_since": hold["since"],
              "gateway_status_before": before[0], "requested_by": requested_by,
              "approved_by": by}
    if not Phase.from_code(status["status"], day).accepts_customer_payments:
        answer["held_payments"] = follow_closed_window(gw, tx, now, event=CLOSED_REFUSED)
    return answer, confirmed


def follow_closed_window(gw: Any, tx: Any, now: datetime, outbox_id: int | None = None,
                         event: str = CLOSED_ON_LANE) -> dict[str, int]:
    """HVPS is closed (operators confirmed a closed status, the NPC's notice or the
    timetable closed it): each payment left on an HVPS lane, its outbox row `pending`
    (all of them, or the row `outbox_id`), is treated as one arriving now, by its
    `when_closed` (else the setting `when_closed_default`), instead of going to an NPC
    that would reject it:

    - `refuse`, for a customer's payment holding money of its own (`refusable`) when no
      delivery attempt may have given the NPC its message (every one provably
      untaken, gateway.outbound.Delivery): rejected with `hvps_closed` (its history's
      `event`), the payer's money released, its row `failed`;
    - otherwise, when no attempt may have reached the NPC: `held` with
      `waiting_for_hvps_window` until the next opening, its row `waiting` (`beps`
      included, its HVPS message being made already; a return, or another payment
      operators made, whatever the setting says);
    - a payment an attempt may have given the NPC keeps its state (the NPC may settle
      it, and a held payment could not take that result) and its row waits for the
      next opening; it is never rejected here (`payment_maybe_taken_by_npc`).

    Each row is taken only while still `pending` with the attempts read, so processes
    doing this at once, or a sender claiming (and giving back) the row meanwhile,
    change each payment once, as it then stands. Each payment in a savepoint of its
    own: one that fails stays on its lane, logged and alerted
    (`hvps_closed_lane_row_failed`), and the others follow. Counts of each."""
    from gateway import store  # gateway.store imports this module

    only = " AND o.id = ?" if outbox_id is not None else ""
    rows = tx.query(f"SELECT o.id, o.payment_id, o.attempts, o.untaken FROM outbox o "
                    f"JOIN payments p ON p.id = o.payment_id WHERE o.state = 'pending' "
                    f"AND o.stream IN ({_LANES}) AND p.state IN ('accepted', 'sent')"
                    f"{only} ORDER BY o.id", () if outbox_id is None else (outbox_id,))
    counts = {"waiting": 0, "refused": 0}
    for row_id, payment_id, attempts, untaken in rows:
        try:
            with store.scope(tx):
                moved = _follow_row(gw, tx, now, event, row_id, payment_id, int(attempts),
                                    int(untaken))
        except Exception as exc:
            if store.lost_race(exc):
                raise  # the whole work runs again
            _row_failed(gw, tx, row_id, payment_id, exc)
            continue
        if moved is not None:
            counts[moved] += 1
    return counts


def refusable(gw: Any, payment: dict[str, Any]) -> bool:
    """Whether the payment is refused, not kept waiting, when HVPS closes while it waits
    to go: a customer's payment (its route keeps what intake was asked) holding money
    of its own, asking `refuse` (or the setting `when_closed_default` saying so). A
    return or another payment operators made waits for the next opening."""
    inputs = payment["route"].get("inputs")
    if inputs is None or payment.get("hold_id") is None:
        return False
    return (inputs.get("when_closed") or gw.router.when_closed_default) == "refuse"


def _follow_row(gw: Any, tx: Any, now: datetime, event: str, row_id: int, payment_id: str,
                attempts: int, untaken: int) -> str | None:
    """One payment of `follow_closed_window`: what it did (`waiting`, `refused`), None
    when the row was claimed, given back or followed by another process meanwhile."""
    from gateway import payments  # gateway.store imports this module

    payment = payments.get(tx, payment_id)
    untouched = attempts == untaken
    refuse = untouched and refusable(gw, payment)
    if not tx.execute("UPDATE outbox SET state = ?, updated_at = ? WHERE id = ? "
                      "AND state = 'pending' AND attempts = ? AND untaken = ?",
                      ("failed" if refuse else "waiting", now.isoformat(), row_id,
                       attempts, untaken)):
        return None  # left to wait: a sender or a process took it meanwhile
    if refuse:
        gw.ledger.release(tx, f"{payment_id}:hvps_closed:release",
                          int(payment["hold_id"]), gw.work_date.isoformat())
        payments.transition(tx, payment, "rejected", event, now, gw.notifier,
                            reason="hvps_closed")
        return "refused"
    if untouched:
        payments.transition(tx, payment, "held", "held", now, gw.notifier,
                            reason="waiting_for_hvps_window")
    else:
        log.warning("event=hvps_closed_delivery_waits payment=%s outbox=%s state=%s "
                    "attempts=%s untaken=%s", payment_id, row_id, payment["state"],
                    attempts, untaken)
    return "waiting"


def _row_failed(gw: Any, tx: Any, row_id: int, payment_id: str, exc: Exception) -> None:
    """A payment that could not follow the closed window stays on its lane (its row
    `pending`; the next look at the lanes tries it again): logged each time, alerted
    once while an alert naming its row is open."""
    log.error("event=hvps_closed_lane_row_failed payment=%s outbox=%s error=%r",
              payment_id, row_id, exc, exc_info=exc)
    for (detail,) in tx.query("SELECT a.detail FROM alerts a LEFT JOIN alert_acks k ON "
                              "k.alert_id = a.id WHERE a.code = ? AND k.alert_id IS NULL",
                              (ALERT_LANE_ROW_FAILED,)):
        if json.loads(detail).get("outbox") == row_id:
            return
    gw.alert(tx, ALERT_LANE_ROW_FAILED, payment=payment_id, outbox=row_id,
             error=f"{type(exc).__name__}: {exc}")


def _precondition(gw: Any, tx: Any, target: str, params: dict[str, Any]) -> None:
    status, params_bad = status_param(params)
    if params_bad:
        raise ValidationFailed(params_bad)
    check_confirmable(gw, tx, target, status["status"], gw.clock.now())


def register() -> bool:
    """Add `hvps_status_confirm` to the console's tables (a work date as target, the
    status as its one parameter, a second person approving, a note required); False
    when the product has no console."""
    if importlib.util.find_spec("gateway.ops.control") is None:
        return False
    from gateway.ops import actions, control

    def execute(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        detail, confirmed = confirm(c.gw, tx, target, params, c.request_id, c.actor, c.now)

        async def take() -> None:
            await c.gw.confirm_hvps_status(confirmed)
        return actions.Outcome(detail, [take])

    control.RULES.setdefault(ACTION, control.Rule("work_date", needs_approval=True))
    control.LABELS.setdefault(ACTION, ACTION_LABEL)
    control.NOTE_RULES.setdefault(ACTION, note_problems)
    control.PARAMS.setdefault(ACTION, ("status",))
    control.PARAM_RULES.setdefault(ACTION, status_param)
    actions.EXECUTORS.setdefault(ACTION, execute)
    actions.GATEWAY_PRECONDITIONS.setdefault(ACTION, _precondition)
    return True
