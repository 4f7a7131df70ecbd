"""Which alerts need an operator's attention now, and which are history.

The alerts table records everything the gateway told the operators, and most records
stay true only for a while:

- `window_changed` records each HVPS phase change: history from the start;
- `link_down`, `link_refusing` and `link_discarding` are raised once per episode
  (gateway.link): open while that episode goes on (the alert whose `since` is the
  episode's, as the link's view sees it: with several gateway processes, the cluster's
  discard episode and each process's outage or refusals, gateway.linkshare), history
  once it is over;
- a critical alert (gateway.critical) is open until a supervisor acknowledges it;
- every other alert records a finding someone has to look at: open until an operator
  closes it (console action `alert_close`, any level but 10, no second person; `close`
  below), or until the gateway itself finds its cause gone (critical.close_by_gateway:
  the answer to a reconciliation that was overdue, gateway.recon; a bank's query
  answered, gateway.queries.outgoing; every missed day end an alert names run late,
  gateway.dayend; every debit of an overdue package resolved, gateway.beps.debits_out;
  a probe answered again, gateway.session; the clearing balances of `serve
  --simulate` agreeing again, gateway.clearing_check).

Both acknowledgements are rows of `alert_acks` (who, when, the note), and the request's
steps are in the audit trail like any other action's.

The page's Alerts card counts the open ones and lists them apart from the history;
`paygate ops alerts` and GET /ops/api/alerts mark each row `attention` true or false.
"""

from __future__ import annotations

import json
from typing import Any

from datetime import datetime

from gateway import critical
from gateway.errors import Conflict, Problem
from gateway.link import ALERT_LINK_DISCARDING, ALERT_LINK_DOWN, ALERT_LINK_REFUSING

HISTORY_CODES = ("window_changed",)
EPISODE_CODES = (ALERT_LINK_DOWN, ALERT_LINK_REFUSING, ALERT_LINK_DISCARDING)
_NEVER_OPEN = ", ".join(f"'{c}'" for c in HISTORY_CODES + EPISODE_CODES)
# An alert is open when this holds (`a` the alert, `k` its acknowledgement or closing);
# `{ongoing}` is filled with the ids of the link alerts whose episode goes on.
_OPEN_BY_ITSELF = f"(a.code NOT IN ({_NEVER_OPEN}) AND k.by IS NULL)"
_FROM = "FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id"


def ongoing_episodes(link_view: dict[str, Any]) -> dict[str, set[str]]:
    """The link's episodes going on now, by alert code, each with the `since`s they
    began at: the view's own and, with several gateway processes, each process's
    (`processes`, gateway.linkshare), since each raises its own alert for an outage or
    a refusal episode its deliveries meet."""
    out: dict[str, set[str]] = {}
    for view in [link_view, *(link_view.get("processes") or {}).values()]:
        if view.get("state") == "down" and view.get("since"):
            out.setdefault(ALERT_LINK_DOWN, set()).add(view["since"])
        if view.get("refusing_since"):
            out.setdefault(ALERT_LINK_REFUSING, set()).add(view["refusing_since"])
        if view.get("discarding_since"):
            out.setdefault(ALERT_LINK_DISCARDING, set()).add(view["discarding_since"])
    return out


def ongoing_ids(tx: Any, link_view: dict[str, Any]) -> list[int]:
    """The ids of the alerts that raised the episodes going on: of each code, the latest
    alert raised at each episode's `since`, however many alerts of that code other
    episodes (another process's link flapping) raised since."""
    ids = []
    for code, sinces in ongoing_episodes(link_view).items():
        for since in sorted(sinces):
            # The detail holds `since` as written (JSON, no escapes in an ISO instant):
            # the rows that may name it, then the exact one among them.
            rows = tx.query("SELECT id, detail FROM alerts WHERE code = ? AND detail LIKE ? "
                            "ORDER BY id DESC", (code, f"%{since}%"))
            found = next((int(i) for i, detail in rows
                          if json.loads(detail).get("since") == since), None)
            if found is not None:
                ids.append(found)
    return ids


def _open_sql(ids: list[int]) -> str:
    """The condition of an alert being open, given the ongoing episodes' alert `ids`.
    With none it names no id at all: `a.id IN (NULL)` is unknown, not false, and NOT of
    it would keep no row, emptying the history."""
    if not ids:
        return _OPEN_BY_ITSELF
    return f"({_OPEN_BY_ITSELF} OR a.id IN ({', '.join(str(int(i)) for i in ids)}))"


def counts(tx: Any, ids: list[int]) -> dict[str, int]:
    """How many alerts are open (`attention`) and how many are history."""
    total, open_ = tx.query_one(f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {_open_sql(ids)} "
                                f"THEN 1 ELSE 0 END), 0) {_FROM}", ())
    return {"attention": int(open_), "history": int(total) - int(open_)}


def listing(tx: Any, ids: list[int], limit: int, attention: bool | None = None,
            code: str | None = None) -> list[dict[str, Any]]:
    """The latest alerts (open ones only, history only, or both when `attention` is
    None; of one `code` only when given), newest first, each marked `attention` and
    `critical`; `acknowledged_by` is who ended it (a critical one's supervisor, an
    ordinary one's operator or `gateway`), and a critical one says whether it is still
    `open`."""
    where, params = _where(ids, attention, code)
    rows = tx.query(f"SELECT a.id, a.at, a.code, a.detail, k.by, {_open_sql(ids)} {_FROM} "
                    f"{where} ORDER BY a.id DESC LIMIT ?", (*params, limit))
    return [{"id": i, "at": at, "code": code, "detail": json.loads(detail),
             "critical": code in critical.CODES,
             "open": code in critical.CODES and by is None, "acknowledged_by": by,
             "attention": bool(is_open), "closable": by is None and closes_by_hand(code)}
            for i, at, code, detail, by, is_open in rows]


def listed_total(tx: Any, ids: list[int], attention: bool | None = None,
          code: str | None = None) -> int:
    """How many alerts `listing` finds with the same filters, those past its limit
    included: a burst of one code (a screening run raises one alert per parked credit)
    must not read as the latest 50 and nothing more."""
    where, params = _where(ids, attention, code)
    return int(tx.query_one(f"SELECT COUNT(*) {_FROM} {where}", params)[0])


def _where(ids: list[int], attention: bool | None, code: str | None
           ) -> tuple[str, tuple[Any, ...]]:
    conditions, params = [], []
    if attention is not None:
        conditions.append(f"{'' if attention else 'NOT '}{_open_sql(ids)}")
    if code is not None:
        conditions.append("a.code = ?")
        params.append(code)
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), tuple(params)


def closes_by_hand(code: str) -> bool:
    """Whether an alert of `code` stays open until an operator closes it (`alert_close`):
    not a critical one (a supervisor acknowledges it), nor one whose place the gateway
    decides (a phase change, a link episode)."""
    return code not in critical.CODES and code not in HISTORY_CODES + EPISODE_CODES


def check_closable(tx: Any, target: str) -> tuple[int, str]:
    """The alert `target` names (its id and code), when it is an ordinary alert not yet
    closed; refused saying why otherwise."""
    row = tx.query_one("SELECT a.code, k.by, k.at FROM alerts a LEFT JOIN alert_acks k "
                       "ON k.alert_id = a.id WHERE a.id = ?", (int(target),))
    if row is None:
        raise critical.not_found(target)
    code, by, at = row
    if code in critical.CODES:
        raise Conflict(Problem("alert_is_critical", "/target", code,
                               "an alert that is not critical",
                               f"alert {target} ({code}) is critical: a supervisor "
                               "acknowledges it (alert_acknowledge)"))
    if not closes_by_hand(code):
        raise Conflict(Problem("alert_closes_by_itself", "/target", code,
                               "an alert an operator closes (not window_changed nor a "
                               "link episode's)",
                               f"alert {target} ({code}) goes to the history by itself: "
                               "a phase change at once, a link episode's when it ends"))
    if by is not None:
        raise critical.already_acknowledged(target, by, at)
    return int(target), code


def close(tx: Any, target: str, by: str, note: str, now: datetime) -> dict[str, Any]:
    """An operator closes the ordinary alert `target`: it moves to the history."""
    alert_id, code = check_closable(tx, target)
    tx.execute("INSERT INTO alert_acks (alert_id, by, at, note) VALUES (?, ?, ?, ?)",
               (alert_id, by, now.isoformat(), note))
    return {"alert": alert_id, "code": code, "closed_by": by}

