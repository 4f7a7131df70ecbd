"""Which alerts need an operator's attention now, and which are history.

The alerts table records everything the gateway told the operators, and most records
stay true only for a while:

- `window_changed` records each HVPS phase change: history from the start;
- `link_down`, `link_refusing` and `link_discarding` are raised once per episode
  (gateway.link): open while that episode goes on (the alert whose `since` is the
  episode's, as this process's link sees it), history once it is over;
- a critical alert (gateway.critical) is open until a supervisor acknowledges it;
- every other alert records a finding someone has to look at, and stays open.

The page's Alerts card counts the open ones and lists them apart from the history;
`paygate ops alerts` and GET /ops/api/alerts mark each row `attention` true or false.
"""

from __future__ import annotations

import json
from typing import Any

from gateway import critical
from gateway.link import ALERT_LINK_DISCARDING, ALERT_LINK_DOWN, ALERT_LINK_REFUSING

HISTORY_CODES = ("window_changed",)
EPISODE_CODES = (ALERT_LINK_DOWN, ALERT_LINK_REFUSING, ALERT_LINK_DISCARDING)
_NEVER_OPEN = ", ".join(f"'{c}'" for c in HISTORY_CODES + EPISODE_CODES)
_CRITICAL = ", ".join(f"'{c}'" for c in critical.CODES)
# An alert is open when this holds (`a` the alert, `k` its acknowledgement if any);
# `{ongoing}` is filled with the ids of the link alerts whose episode goes on.
_OPEN = (f"((a.code NOT IN ({_NEVER_OPEN}) AND NOT (a.code IN ({_CRITICAL}) "
         "AND k.by IS NOT NULL)) OR a.id IN ({ongoing}))")
_FROM = "FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id"


def ongoing_episodes(link_view: dict[str, Any]) -> dict[str, str]:
    """The link's episodes going on now, by alert code, each with its `since`."""
    out = {}
    if link_view.get("state") == "down" and link_view.get("since"):
        out[ALERT_LINK_DOWN] = link_view["since"]
    if link_view.get("refusing_since"):
        out[ALERT_LINK_REFUSING] = link_view["refusing_since"]
    if link_view.get("discarding_since"):
        out[ALERT_LINK_DISCARDING] = link_view["discarding_since"]
    return out


def ongoing_ids(tx: Any, link_view: dict[str, Any]) -> list[int]:
    """The ids of the alerts that raised the episodes going on: the latest of each code,
    when its `since` is the episode's."""
    ids = []
    for code, since in ongoing_episodes(link_view).items():
        row = tx.query_one("SELECT id, detail FROM alerts WHERE code = ? ORDER BY id DESC "
                           "LIMIT 1", (code,))
        if row is not None and json.loads(row[1]).get("since") == since:
            ids.append(int(row[0]))
    return ids


def _open_sql(ids: list[int]) -> str:
    return _OPEN.format(ongoing=", ".join(str(int(i)) for i in ids) or "NULL")


def counts(tx: Any, ids: list[int]) -> dict[str, int]:
    """How many alerts are open (`attention`) and how many are history."""
    total, open_ = tx.query_one(f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {_open_sql(ids)} "
                                f"THEN 1 ELSE 0 END), 0) {_FROM}", ())
    return {"attention": int(open_), "history": int(total) - int(open_)}


def listing(tx: Any, ids: list[int], limit: int, attention: bool | None = None
            ) -> list[dict[str, Any]]:
    """The latest alerts (open ones only, history only, or both when `attention` is
    None), newest first, each marked `attention`; a critical one also says whether it
    is still `open` and who acknowledged it."""
    where = "" if attention is None else \
        f"WHERE {'' if attention else 'NOT '}{_open_sql(ids)}"
    rows = tx.query(f"SELECT a.id, a.at, a.code, a.detail, k.by, {_open_sql(ids)} {_FROM} "
                    f"{where} ORDER BY a.id DESC LIMIT ?", (limit,))
    return [{"id": i, "at": at, "code": code, "detail": json.loads(detail),
             "open": code in critical.CODES and by is None, "acknowledged_by": by,
             "attention": bool(is_open)}
            for i, at, code, detail, by, is_open in rows]
