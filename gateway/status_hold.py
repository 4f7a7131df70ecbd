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

The hold is a row of `hvps_status_hold` (one while it lasts, restarts included) and each
process's copy of it (`Gateway.hvps_hold`), spread over the cluster channel
(`hvps_status_hold`) and read again at start and on every window tick by a process of
several, which a lost message cannot then leave sending. It ends, and sending resumes
by itself (every pending row put back on its lane, those waiting for the window
released when HVPS is open), when either

- a later ccms.801 the gateway accepts (applied, confirmed, corrected, a gap, or the
  state in force restated) shows the two in step again (`end`, from the handler), or
- operators confirm, with the NPC, the status to use: console action
  `hvps_status_confirm` (target the work date, `params.status` the status, a note
  saying how it was confirmed; a supervisor or director approves, nobody their own
  request). The window takes that status whatever the transition rules say
  (`WindowState.set_by_operator`), in every process, and the NPC's later notices are
  judged from it.

Either way the open `hvps_status_notice_refused` alerts are closed by the gateway, the
note saying how the two came back in step.
"""

from __future__ import annotations

import importlib.util
from datetime import date, datetime
from typing import Any

from gateway import critical
from gateway.errors import Conflict, Problem, ValidationFailed
from gateway.windows import HVPS_TRANSITIONS

ALERT = "hvps_status_notice_refused"
ACTION = "hvps_status_confirm"
ACTION_LABEL = {"en": "Confirm the HVPS status", "zh": "确认大额系统状态"}
# The cluster channel's kind for the hold starting or ending.
CLUSTER_KIND = "hvps_status_hold"
# Why an HVPS delivery is put off while the hold lasts (the worker's retry note).
HELD = "hvps_sending_held_status_disagreement"
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
]

_COLUMNS = ("since", "orig", "cur", "notice_date", "outcome", "status", "work_date",
            "notices")


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
    hold = read(tx)
    assert hold is not None
    return hold


def end(tx: Any, how: str, now: datetime) -> dict[str, Any] | None:
    """The two in step again (`how` says by what): the hold ends and its open alerts are
    closed by the gateway; the hold that ended, None when there was none."""
    hold = read(tx)
    if hold is None:
        return None
    tx.execute("DELETE FROM hvps_status_hold WHERE id = 1", ())
    ids = [int(i) for (i,) in tx.query(
        "SELECT a.id FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
        "WHERE a.code = ? AND k.alert_id IS NULL", (ALERT,))]
    critical.close_by_gateway(tx, ids, f"HVPS back in step with the NPC: {how}", now)
    return hold


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


def status_param(params: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    status = params.get("status")
    if not isinstance(status, str) or status not in HVPS_TRANSITIONS:
        return params, [Problem("hvps_status_malformed", "/params/status", status,
                                "the status the NPC is in: one of "
                                + ", ".join(sorted(HVPS_TRANSITIONS)))]
    return {"status": status}, []


def note_problems(note: str) -> list[Problem]:
    return [] if note.strip() else [Problem("note_required", "/note", note, NOTE_EXPECTED)]


def confirm(gw: Any, tx: Any, target: str, params: dict[str, Any], request_id: int,
            by: str, now: datetime) -> tuple[dict[str, Any], str, date]:
    """The status operators confirmed, checked again (a notice may have ended the hold
    since the request): the hold ended and its alerts closed, the change of the window
    recorded; the answer, the status and the work date to take once committed."""
    status, params_bad = status_param(params)
    if params_bad:
        raise ValidationFailed(params_bad)
    hold = check_held(tx)
    day = date.fromisoformat(target)
    requested_by, note = tx.query_one("SELECT requested_by, note FROM ops_requests "
                                      "WHERE id = ?", (request_id,))
    end(tx, f"status {status['status']} on {target} confirmed by {requested_by} and {by} "
        f"(request {request_id}): {note.strip()}", now)
    before = (gw.window.code, gw.window.work_date)
    if before != (status["status"], day):
        gw.windows_record(tx, "HVPS", before[0], status["status"], target, now)
    return ({"status": status["status"], "work_date": target, "held_since": hold["since"],
             "gateway_status_before": before[0], "requested_by": requested_by,
             "approved_by": by}, status["status"], day)


def register() -> bool:
    """Add `hvps_status_confirm` to the console's tables (a work date as target, the
    status as its one parameter, a second person approving, a note required); False
    when the product has no console."""
    if importlib.util.find_spec("gateway.ops.control") is None:
        return False
    from gateway.ops import actions, control

    def execute(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        detail, status, day = confirm(c.gw, tx, target, params, c.request_id, c.actor,
                                      c.now)

        async def take() -> None:
            c.gw.confirm_hvps_status(status, day, c.now)
        return actions.Outcome(detail, [take])

    control.RULES.setdefault(ACTION, control.Rule("work_date", needs_approval=True))
    control.LABELS.setdefault(ACTION, ACTION_LABEL)
    control.NOTE_RULES.setdefault(ACTION, note_problems)
    control.PARAMS.setdefault(ACTION, ("status",))
    control.PARAM_RULES.setdefault(ACTION, status_param)
    actions.EXECUTORS.setdefault(ACTION, execute)
    actions.PRECONDITIONS.setdefault(ACTION, lambda tx, target, params: check_held(tx))
    return True
