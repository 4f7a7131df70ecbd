"""What the console reads from the database: payments, stuck work, alerts, requests,
audit, overdue queries. Every function runs inside a store transaction and returns
plain JSON-ready data; every list is bounded by `LIST_MAX`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from gateway import outbound, payments, states, webhook
from gateway.outbound import NPC
from gateway.digits import whole_number
from gateway.errors import Problem, ProblemList
from gateway.money import format_yuan_grouped, parse_yuan
from gateway.states import HELD_DEAD_LETTERED, HELD_REFUSED_AT_LINK, IN_STATES, OUT_STATES
from gateway.ops import control
from gateway.ops.archive import ARCHIVE_COLUMNS
from gateway.dialect import table_columns
from gateway.ops.schema import table_exists
from ledger import LedgerError
from ledger import receivables as ledger_receivables

LIST_MAX = 200
STUCK_STATES = ("accepted", "sent", "unknown")
WINDOW_WAIT = "waiting_for_hvps_window"  # a held payment's reason
STUCK_AFTER_MIN = 10  # default: a payment this long in one of STUCK_STATES needs a look
# What GET /ops/api/payments takes: the fields it searches by and how many to list.
SEARCH_PARAMS = ("id", "account", "amount", "state", "date", "direction", "channel", "limit")

# The query table belongs to the query/reply component; these are the column names it
# may use for the reply deadline and for its state, and the states that need no reply.
QUERY_DEADLINE_COLUMNS = ("reply_due_at", "due_at", "deadline_at", "deadline", "reply_by")
QUERY_STATE_COLUMNS = ("state", "status")
QUERY_DONE_STATES = ("replied", "answered", "closed", "done", "cancelled", "refused")
# Columns the page shows when the table has them (all columns otherwise).
QUERY_SHOWN_COLUMNS = ("id", "direction", "state", "system", "counterparty", "query_type",
                       "payment_id", "orig_msg_id", "amount_fen", "asked_at",
                       "reply_due_at", "overdue_at", "content")
# Our queries, replies and free text the NPC refused (ccms.900 PR09 or ccms.911), when the
# query component keeps refusals (the column `refused_at`): what the page shows of each. A
# refused reply is shown by the query it answered (a bank's, open again), kind `reply`.
REFUSED_COLUMNS = ("kind", "id", "counterparty", "payment_id", "refused_at", "refused_with",
                   "refusal_code", "refusal_reason", "content")


def payment_view(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"], "direction": p["direction"], "channel": p["channel"],
        "state": p["state"], "reason": payments.shown_reason(p),
        "held_for_review": states.held_for_review(p), "amount_fen": p["amount_fen"],
        "amount": format_yuan_grouped(p["amount_fen"]), "urgency": p["urgency"],
        "priority": p["priority"], "payer_account": p["payer_account"],
        "payer_name": p["payer_name"], "payer_bank": p["payer_bank"],
        "payee_account": p["payee_account"], "payee_name": p["payee_name"],
        "payee_bank": p["payee_bank"], "msg_type": p["msg_type"], "msg_id": p["msg_id"],
        "work_date": p["work_date"], "created_at": p["created_at"],
        "updated_at": p["updated_at"],
    }


def parse_search(query: dict[str, str], problems: list[Problem] | None = None
                 ) -> dict[str, Any]:
    """Search fields from a query string (its names already checked against
    SEARCH_PARAMS, their `problems` given); all problems at once."""
    p = ProblemList(list(problems or ()))
    out: dict[str, Any] = {}
    for name in ("id", "account", "state", "direction", "channel"):
        if query.get(name):
            out[name] = query[name].strip()[:64]
    if query.get("amount"):
        fen = parse_yuan(query["amount"].replace(",", ""), "/amount")
        if isinstance(fen, Problem):
            p.items.append(fen)
        else:
            out["amount_fen"] = fen
    if query.get("date"):
        if not control.is_real_date(query["date"]):
            p.add("search_date_malformed", "/date", query["date"], "a real date, YYYY-MM-DD")
        out["date"] = query["date"]
    for name, allowed in (("state", STATES), ("direction", ("in", "out")),
                          ("channel", ("hvps", "beps", "internal"))):
        if name in out and out[name] not in allowed:
            p.add(f"{name}_unknown", f"/{name}", out[name], "one of " + ", ".join(allowed))
    out["limit"] = _limit(query.get("limit"), p)
    p.raise_if_any()
    return out


STATES = tuple(sorted(set(OUT_STATES) | set(IN_STATES)))


def _limit(text: str | None, p: ProblemList) -> int:
    if not text:
        return 50
    limit = whole_number(text, LIST_MAX, low=1)
    if limit is None:
        p.add("limit_out_of_range", "/limit", text, f"1 to {LIST_MAX}")
        return 50
    return limit


def search_payments(tx: Any, f: dict[str, Any]) -> list[dict[str, Any]]:
    where, params = [], []
    if "id" in f:
        where.append("(id = ? OR msg_id = ? OR end_to_end_id = ?)")
        params += [f["id"]] * 3
    if "account" in f:
        where.append("(payer_account = ? OR payee_account = ?)")
        params += [f["account"]] * 2
    for name, column in (("amount_fen", "amount_fen"), ("state", "state"),
                         ("date", "work_date"), ("direction", "direction"),
                         ("channel", "channel")):
        if name in f:
            where.append(f"{column} = ?")
            params.append(f[name])
    sql = "SELECT " + ", ".join(payments.COLUMNS) + " FROM payments"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = tx.query(sql + " ORDER BY created_at DESC, id DESC LIMIT ?",
                    (*params, f.get("limit", 50)))
    return [payment_view(dict(zip(payments.COLUMNS, r))) for r in rows]


def payment_detail(tx: Any, payment_id: str, now: datetime) -> dict[str, Any]:
    view = payment_view(payments.get(tx, payment_id))
    view["history"] = payments.history(tx, payment_id)
    outbound.show_delivery(tx, view)
    view["outbox"] = [dict(zip(("id", "kind", "stream", "state", "mesg_id", "attempts",
                                "updated_at"), r))
                      for r in tx.query("SELECT id, kind, stream, state, mesg_id, attempts, "
                                        "updated_at FROM outbox WHERE payment_id = ? "
                                        "ORDER BY id", (payment_id,))]
    # Its status changes pushed to the core system: the webhook row of each (a row may
    # carry a whole package's), and whether it was delivered.
    view["told"] = payments.told(tx, payment_id)
    view["messages"] = payment_messages(tx, payment_id, view["channel"])
    view["package"] = package_of(tx, payment_id) if view["channel"] == "beps" else None
    # Requests on the payment, and those on its messages' dead letters (a retry names
    # the letter, not the payment; a BEPS item's message is its package's), newest first.
    retried = [control.as_of(control.view(r), now) for r in control.retries_of_letters(
        tx, [row["id"] for row in view["outbox"]] + package_outbox(tx, view["package"]))]
    view["requests"] = sorted(requests(tx, now, target=payment_id) + retried,
                              key=lambda r: r["id"], reverse=True)
    return view


def package_outbox(tx: Any, package_id: str | None) -> list[int]:
    """The outbox row that carries a package of ours (none without a package)."""
    if package_id is None:
        return []
    row = tx.query_one("SELECT outbox_id FROM beps_packages WHERE id = ?", (package_id,))
    return [int(row[0])] if row is not None and row[0] is not None else []


def package_of(tx: Any, payment_id: str) -> str | None:
    """The package of ours that carries a BEPS item (None: not packed, or set aside)."""
    if not table_exists(tx, "beps_items"):
        return None
    row = tx.query_one("SELECT i.package_id FROM beps_items i JOIN beps_packages p ON "
                       "p.id = i.package_id AND p.direction = 'out' WHERE i.payment_id = ?",
                       (payment_id,))
    return row[0] if row else None


def payment_messages(tx: Any, payment_id: str, channel: str) -> list[dict[str, Any]]:
    """A payment's archived messages: those of its own (an HVPS payment, its results,
    returns, answers, in or out) and, for a BEPS item, the package that carried it.

    A package's message is found by its message id together with its sender and
    direction: a message id is unique per sender only. The envelope of a package we
    send is sent by the package's sender (our participant); one we receive is forwarded
    by the NPC, which numbers it (or, should a link deliver it as the peer sent it, by
    the package's sender). So neither a message the NPC sent us nor a peer's under the
    id of one of ours is taken for our package, nor ours for theirs."""
    package = ("OR id IN (SELECT a.id FROM beps_items i JOIN beps_packages p "
               "ON p.id = i.package_id JOIN archive a ON a.mesg_id = p.mesg_id "
               "AND a.direction = p.direction AND a.sender IN (p.sender, ?) "
               "WHERE i.payment_id = ?) "
               if channel == "beps" and table_exists(tx, "beps_items") else "")
    return [dict(zip(ARCHIVE_COLUMNS, r)) for r in tx.query(
        f"SELECT {', '.join(ARCHIVE_COLUMNS)} FROM archive WHERE payment_id = ? {package}"
        "ORDER BY id", (payment_id, NPC, payment_id) if package else (payment_id,))]


def recent_payments(tx: Any, limit: int = 20) -> list[dict[str, Any]]:
    return search_payments(tx, {"limit": limit})


def stuck(tx: Any, now: datetime, after_min: int = STUCK_AFTER_MIN, hvps_open: bool = False,
          limit: int | None = None) -> list[dict[str, Any]]:
    """Payments in flight for longer than `after_min` minutes, oldest first, at most
    `limit` of them (LIST_MAX unless given; `stuck_total` counts them all); while HVPS
    is open, also those still held waiting for its window (the opening should have sent
    them): their outbox row still `waiting`, not one the opening has put on its lane
    (the payment stays `held` until its sender claims it)."""
    where, params = _stuck_where(now, after_min, hvps_open)
    rows = tx.query("SELECT " + ", ".join(payments.COLUMNS) + " FROM payments "
                    f"WHERE {where} ORDER BY updated_at LIMIT ?",
                    (*params, LIST_MAX if limit is None else limit))
    return [payment_view(dict(zip(payments.COLUMNS, r))) for r in rows]


def stuck_total(tx: Any, now: datetime, after_min: int = STUCK_AFTER_MIN,
                hvps_open: bool = False) -> tuple[int, int]:
    """How many payments `stuck` finds, those past its limit included, and how many of
    them it lists whatever their age: held since their message died on the way to the
    NPC (a heading that gave only the age would say those were older than it)."""
    where, params = _stuck_where(now, after_min, hvps_open)
    total, died = tx.query_one(
        f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {_DIED} THEN 1 ELSE 0 END), 0) "
        f"FROM payments WHERE {where}", params)
    return int(total), int(died)


def _stuck_where(now: datetime, after_min: int, hvps_open: bool) -> tuple[str, tuple]:
    before = (now - timedelta(minutes=after_min)).isoformat()
    waiting = (" OR (state = 'held' AND reason = ? AND EXISTS (SELECT 1 FROM outbox o "
               "WHERE o.payment_id = payments.id AND o.kind = 'hvps_credit' "
               "AND o.state = 'waiting'))") if hvps_open else ""
    return (f"((state IN ({', '.join('?' for _ in STUCK_STATES)}){waiting}) "
            f"AND updated_at < ?) OR {_DIED}",
            (*STUCK_STATES, *((WINDOW_WAIT,) if hvps_open else ()), before))


# A payment held because its message died on the way to the NPC waits for an operator
# whatever its age (gateway.app.Gateway.outbox_dead): `stuck` lists it at any age.
_DIED = (f"(state = 'held' AND ({states.starts_with_sql('reason', HELD_REFUSED_AT_LINK)} "
         f"OR {states.starts_with_sql('reason', HELD_DEAD_LETTERED)}))")


def held_for_review(tx: Any) -> list[dict[str, Any]]:
    """Payments the review or the screening holds (states.held_for_review): outgoing
    ones `held`, debits another bank sent us `received`, unpaid until operators decide
    (gateway.beps.debit_review), and credits another bank sent us whose money the
    screening parked in `suspense` until operators apply or return it
    (gateway.screening.parked). The oldest first, at most LIST_MAX of them
    (`held_for_review_total` counts them all)."""
    rows = tx.query("SELECT " + ", ".join(payments.COLUMNS) + " FROM payments "
                    f"WHERE {_review_where()} ORDER BY created_at LIMIT ?", (LIST_MAX,))
    return [with_matched_party(payment_view(dict(zip(payments.COLUMNS, r)))) for r in rows]


def held_for_review_total(tx: Any) -> int:
    """How many payments `held_for_review` finds, those past its LIST_MAX included: a
    screening run that parks a thousand credits must not read as a list of 200."""
    return int(tx.query_one(f"SELECT COUNT(*) FROM payments WHERE {_review_where()}", ())[0])


def _review_where() -> str:
    # The prefixes compared exactly: a bare LIKE 'review_%' would take `_` for any one
    # character, and list a reason such as `reviewed...` as held for review.
    prefixed = " OR ".join(states.starts_with_sql("reason", prefix)
                           for prefix in states.REVIEW_REASON_PREFIXES)
    return f"(state IN ('held', 'received') AND ({prefixed})) OR {states.parked_sql()}"


# The party a screening reason names (screening_match_payer_name, ..._payee_account),
# by the word after `screening_match_`.
_SCREENED_PARTIES = ("payer", "payee")


def with_matched_party(view: dict[str, Any]) -> dict[str, Any]:
    """A listed payment's view with the party its screening reason refers to
    (`matched_party`, payer or payee) and that party's name (`matched_name`), so that an
    operator sees the name a list matched without opening the payment; both None for
    the amount review, whose reason names no party. Read from the row already read."""
    reason = view.get("reason") or ""
    party = next((p for p in _SCREENED_PARTIES
                  if reason.startswith(f"screening_match_{p}_")), None)
    return dict(view, matched_party=party,
                matched_name=view[f"{party}_name"] if party is not None else None)


def counts(tx: Any) -> list[dict[str, Any]]:
    rows = tx.query("SELECT direction, channel, state, COUNT(*), SUM(amount_fen) "
                    "FROM payments GROUP BY direction, channel, state "
                    "ORDER BY direction, channel, state", ())
    return [{"direction": d, "channel": c, "state": s, "count": n, "amount_fen": a}
            for d, c, s, n, a in rows]


def alert_count(tx: Any) -> int:
    """Every alert recorded (/metrics); the page counts the open ones (ops.attention)."""
    return tx.query_one("SELECT COUNT(*) FROM alerts", ())[0]


def failed_webhooks(tx: Any, limit: int = 50) -> dict[str, Any]:
    """Webhook rows failed past their attempts (alert webhook_delivery_failed), oldest
    first, each with its number of status changes and the payments they are about: what
    `webhook_resend` pushes again."""
    total = tx.query_one("SELECT COUNT(*) FROM outbox WHERE kind = 'webhook' AND "
                         "state = 'failed'", ())[0]
    rows = tx.query("SELECT id, envelope, attempts, updated_at FROM outbox WHERE "
                    "kind = 'webhook' AND state = 'failed' ORDER BY id LIMIT ?", (limit,))
    out = []
    for outbox_id, envelope, attempts, updated_at in rows:
        events, count = webhook.stored_events(envelope)
        ids = list(dict.fromkeys(str(e.get("id")) for e in json.loads(events)))
        out.append({"id": outbox_id, "events": count, "payments": ids[:WEBHOOK_IDS_SHOWN],
                    "attempts": attempts, "failed_at": updated_at})
    return {"total": total, "rows": out}


WEBHOOK_IDS_SHOWN = 5  # payments named per failed webhook row on the page


def audit_rows(tx: Any, limit: int = 50) -> list[dict[str, Any]]:
    rows = tx.query("SELECT id, at, actor, level, what, request_id, target, detail "
                    "FROM ops_audit ORDER BY id DESC LIMIT ?", (limit,))
    names = ("id", "at", "actor", "level", "what", "request_id", "target", "detail")
    return [dict(zip(names, r), detail=json.loads(r[7])) for r in rows]


def requests(tx: Any, now: datetime, state: str | None = None, target: str | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
    """Requests newest first, each as it stands at `now` (control.as_of): one still
    `pending` in its row whose time has passed is listed, and sought, as expired."""
    where, params = [], []
    if state == "pending":
        where.append("state = 'pending' AND expires_at >= ?")
        params.append(now.isoformat())
    elif state == "expired":
        where.append("(state = 'expired' OR (state = 'pending' AND expires_at < ?))")
        params.append(now.isoformat())
    elif state:
        where.append("state = ?")
        params.append(state)
    if target:
        where.append("target = ?")
        params.append(target)
    sql = control.SELECT + (" WHERE " + " AND ".join(where) if where else "")
    rows = tx.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
    return with_amounts(tx, [control.as_of(control.view(r), now) for r in rows])


def with_amounts(tx: Any, reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request on a payment with that payment's amount (`amount`, in yuan), and each
    on a BEPS package with the package's (what it holds now), which a second person is
    shown before approving or rejecting it; one query for each kind in the list. A
    request on a receivable (1221) shows the receivable's amount the same way."""
    for r in reqs:
        if _on("receivable", r["action"]):
            r["amount"] = _receivable_amount(tx, r["target"])
    for kind, sql in (("payment", "SELECT id, amount_fen FROM payments"),
                      ("package", "SELECT id, total_fen FROM beps_packages")):
        ids = sorted({r["target"] for r in reqs if _on(kind, r["action"])})
        if not ids or (kind == "package" and not table_exists(tx, "beps_packages")):
            continue
        marks = ", ".join("?" * len(ids))
        amounts = dict(tx.query(f"{sql} WHERE id IN ({marks})", tuple(ids)))
        for r in reqs:
            if _on(kind, r["action"]) and r["target"] in amounts:
                r["amount"] = format_yuan_grouped(amounts[r["target"]])
    return reqs


def _on(kind: str, action: str) -> bool:
    rule = control.RULES.get(action)
    return rule is not None and rule.target == kind


def _receivable_amount(tx: Any, pending_no: str) -> str | None:
    """A receivable's amount in yuan; None for a number no receivable has."""
    try:
        return format_yuan_grouped(ledger_receivables.find_receivable(tx, pending_no)
                                   .amount_fen)
    except LedgerError:
        return None


def pending_count(tx: Any, now: datetime) -> int:
    """Requests waiting for a decision at `now`: not those whose time has passed."""
    return tx.query_one("SELECT COUNT(*) FROM ops_requests WHERE state = 'pending' AND "
                        "expires_at >= ?", (now.isoformat(),))[0]


def overdue_queries(tx: Any, now: datetime) -> dict[str, Any] | None:
    """Queries past their reply deadline, and under `refused` our queries and free text
    the NPC refused (latest first); None when there is no query table."""
    if not table_exists(tx, "queries"):
        return None
    columns = table_columns(tx, "queries")
    deadline = next((c for c in QUERY_DEADLINE_COLUMNS if c in columns), None)
    state = next((c for c in QUERY_STATE_COLUMNS if c in columns), None)
    refused = refused_messages(tx, columns)
    if deadline is None:
        return {"columns": columns, "deadline": None, "rows": [], "refused": refused}
    sql = f"SELECT {', '.join(columns)} FROM queries WHERE {deadline} < ?"
    params: list[Any] = [now.isoformat()]
    if state is not None:
        sql += f" AND {state} NOT IN ({', '.join('?' for _ in QUERY_DONE_STATES)})"
        params += QUERY_DONE_STATES
    rows = tx.query(sql + f" ORDER BY {deadline} LIMIT ?", (*params, LIST_MAX))
    shown = [c for c in QUERY_SHOWN_COLUMNS if c in columns] or columns
    return {"columns": shown, "deadline": deadline,
            "rows": [dict(zip(columns, _plain(r))) for r in rows], "refused": refused}


def refused_messages(tx: Any, query_columns: list[str]) -> dict[str, Any] | None:
    """Our queries, replies and free-format messages the NPC refused, the latest first;
    None when the query table keeps no refusals."""
    if "refused_at" not in query_columns:
        return None
    refusal = "refused_at, refused_with, refusal_code, refusal_reason, content"
    kind = ("CASE WHEN direction = 'in' THEN 'reply' ELSE 'query' END"
            if "direction" in query_columns else "'query'")
    sql = (f"SELECT {kind} AS kind, id, counterparty, payment_id, {refusal} FROM queries "
           "WHERE refused_at IS NOT NULL")
    if "refused_at" in table_columns(tx, "free_format"):
        sql += (f" UNION ALL SELECT 'free_format', id, receiver, NULL, {refusal} "
                "FROM free_format WHERE refused_at IS NOT NULL")
    rows = tx.query(f"SELECT * FROM ({sql}) AS refused ORDER BY refused_at DESC, id LIMIT ?",
                    (LIST_MAX,))
    return {"columns": list(REFUSED_COLUMNS),
            "rows": [dict(zip(REFUSED_COLUMNS, _plain(r))) for r in rows]}


def _plain(values: tuple) -> list[Any]:
    return [bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, memoryview)) else v
            for v in values]


def data_version(tx: Any) -> list[int]:
    """Grows whenever a payment, request or audit row changes: pages refresh searches."""
    out = []
    for table in ("payment_events", "ops_audit", "alerts"):
        out.append(tx.query_one(f"SELECT COALESCE(MAX(id), 0) FROM {table}", ())[0])
    return out

