"""How `paygate ops` shows each answer of the gateway as text tables."""

from __future__ import annotations

import json
from typing import Any, Callable

from gateway.errors import Problem
from gateway.ops.tables import pairs, table, text_of

PAYMENT_COLUMNS = (("id", "payment"), ("state", "state"), ("channel", "ch"),
                   ("amount", "amount"), ("priority", "pri"), ("payer_account", "payer"),
                   ("payee_name", "payee"), ("reason", "reason"), ("updated_at", "updated"))
# A request's parameters are shown beside its target: the approver decides on what was
# asked (the priority a priority change sets, the account suspense goes to), not only on
# which payment.
REQUEST_COLUMNS = (("id", "req"), ("action_name", "action"), ("target", "target"),
                   ("params_text", "params"), ("amount", "amount"), ("state", "state"),
                   ("requested_by", "by"), ("decided_by", "decided by"),
                   ("requested_at", "at"), ("note", "note"))


def action_name(request: dict[str, Any]) -> str:
    """A request's action by its human name, as the page shows it (the gateway's one
    table of names, control.LABELS); its code when the gateway sends no name."""
    return (request.get("action_label") or {}).get("en") or request["action"]


def params_text(params: Any) -> str | None:
    """A request's parameters in a table cell: `name=value` each, a value that is not a
    plain one as compact JSON; None (shown "-") when it has none."""
    if not isinstance(params, dict) or not params:
        return None
    return " ".join(f"{name}={text_of(value)}" for name, value in params.items())


def _named(reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r, action_name=action_name(r), params_text=params_text(r.get("params")))
            for r in reqs]


def command_word(action: str) -> str:
    """An action's code as `paygate ops request` takes it (npc_cancel: npc-cancel)."""
    return action.replace("_", "-")


def next_change(nxt: dict[str, Any]) -> str:
    """The window's next change in a line: when, to what, and whether it is overdue (its
    time passed and the NPC has not announced it)."""
    line = (f"{nxt.get('at', nxt.get('error'))} -> {nxt.get('status', '')} "
            f"{nxt.get('name_en', '')}").strip()
    return line + (" (overdue: not announced by the NPC)" if nxt.get("overdue") else "")


def status(a: dict[str, Any]) -> str:
    w = a["window"]
    nxt = w.get("next", {})
    beps = a.get("beps")
    head = pairs([
        ("bank", a["bank"]),
        ("HVPS status", f"{w['status']} {w.get('name_en', '')} {w.get('name_zh', '')}".strip()),
        ("HVPS open", "yes" if w["open"] else "no"),
        *_hvps_sending(w.get("sending")),
        ("work date", w["work_date"]),
        ("next change", next_change(nxt)),
        *link_rows(a.get("link") or {}),
        # The ledger's figure: the gateway cannot see the NPC's own balance.
        ("clearing balance", f"{a['clearing_balance']} (our books, not the NPC's)"),
        ("queued at NPC", f"{a['queued_at_npc']['count']} payments, "
                          f"{a['queued_at_npc']['amount']}"),
        ("BEPS net / cap", f"{beps['net']} / {beps['cap'] or 'n/a'}" if beps else "n/a"),
        *_hvps_reconciliation(a.get("hvps_reconciliation")),
        *_recon_overdue(a.get("reconciliation_overdue")),
        *_recon_owed(a.get("hvps_reconciliation_owed")),
        *_beps_reconciliation(a.get("beps_reconciliation")),
        *_beps_not_netted(a.get("beps_not_netted")),
        *_critical_alerts(a.get("critical_alerts")),
        *_screening(a.get("screening")),
        ("pending requests", a.get("pending_requests", "-")),
    ])
    counts = table(a.get("counts", []), (("direction", "dir"), ("channel", "channel"),
                                         ("state", "state"), ("count", "count")))
    return f"{head}\n\n{counts}"


# The login session's states (gateway.session) in words.
SESSION_WORDS = {"logged_in": "logged in", "logging_in": "logging in",
                 "logged_out": "logged out", "logging_out": "logging out",
                 "login_refused": "login refused", "forced_out": "logged out by the NPC"}


def _session_words(state: str, session: str | None) -> str:
    """The session beside the link's state; while the link is down the NPC cannot be
    asked, so it is the session the NPC last answered, said as such ("DOWN (session
    logged_in)" read as if both were true now)."""
    if not session:
        return ""
    words = SESSION_WORDS.get(session, session)
    if state == "down":
        return f" (session when the NPC last answered: {words})"
    return f" (session {words})"


def link_rows(link: dict[str, Any]) -> list[tuple[str, Any]]:
    """The NPC link as the page's card shows it: its state (and login session), and
    while it is down, refusing our messages (4xx) or discarding them (ccms.911), since
    when, how many deliveries failed or messages were refused or discarded, and why."""
    state = link.get("state") or "unknown"
    refused, discarded = link.get("refused_deliveries", 0), link.get("discarded_messages", 0)
    degraded = "DEGRADED: the NPC " + " and ".join(
        what for what, count in (("refuses our messages", refused),
                                 ("discards our messages", discarded)) if count)
    words = {"unknown": "not used yet", "up": "up", "down": "DOWN",
             "degraded": degraded}.get(state, state)
    session = _session_words(state, link.get("session"))
    rows: list[tuple[str, Any]] = [("NPC link", f"{words}{session}")]
    if state == "down":
        rows += [("  down since", link.get("since")),
                 ("  failed", f"{link.get('failed_deliveries', 0)} deliveries"),
                 ("  cause", link.get("cause"))]
    elif state == "degraded":
        if refused:
            rows += [("  refusing since", link.get("refusing_since")),
                     ("  refused", f"{refused} messages"),
                     ("  last refusal", link.get("last_refusal"))]
        if discarded:
            rows += [("  discarding since", link.get("discarding_since")),
                     ("  discarded", f"{discarded} messages (ccms.911)"),
                     ("  last discard", link.get("last_discard"))]
    return rows


def _hvps_sending(h: dict[str, Any] | None) -> list[tuple[str, str]]:
    """HVPS sending held while the gateway and the NPC disagree on HVPS's status
    (gateway.status_hold): since when, the notice refused, and what ends it."""
    if not h or not h.get("held"):
        return []
    n = h["refused_notice"]
    return [("HVPS sending", f"HELD since {h['since']}: the NPC announced {n['orig']} -> "
                             f"{n['cur']} on {n['date']} ({n['outcome']}), the gateway is "
                             f"on {h['gateway_status']} of {h['gateway_work_date']}; "
                             "payments wait until a notice agrees or operators confirm "
                             "the status (request hvps-status-confirm DATE --status S)")]


def _screening(s: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The screening list in force (its counts, since when it is, its file's digest
    shortened) and, when a change of its file is refused (gateway.ops.screening_watch):
    which file, since when, its problems and the list screening meanwhile."""
    if not s:
        return []
    taken = s.get("list")
    rows = [] if taken is None else [("screening list", (
        f"{taken['names']} names, {taken['accounts']} accounts in force since "
        f"{taken['since']} (sha256 {taken['sha256'][:12]}, {s['file']})"
        + ("; EMPTY: no payment is screened" if not taken["names"] + taken["accounts"]
           else "")))]
    if s.get("state") != "degraded":
        return rows
    problems = "; ".join(p["message"] for p in s["problems"])
    return [*rows, ("screening file", (f"CHANGE REFUSED since {s['since']}: {problems}; "
                                       f"in force: {s['in_force']}"))]


def _critical_alerts(c: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The critical alerts no supervisor has acknowledged yet (gateway.critical)."""
    if c is None:
        return []
    if not c["open"]:
        return [("critical alerts", "none open")]
    codes = ", ".join(f"{code} ({n})" for code, n in c["codes"].items())
    return [("critical alerts", f"{c['open']} OPEN since {c['since']}: {codes} "
                                "(paygate ops alerts; request alert-acknowledge ID)")]


def _hvps_reconciliation(r: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The last HVPS reconciliation (hvps.710/711) as status lines: its work date and
    result, our totals by kind, and each difference when the NPC's totals differed."""
    if r is None:
        return [("HVPS reconciled", "not yet (no hvps.711 answered)")]
    result = "agreed with the NPC" if r["reconciled"] else \
        f"DIFFERS from the NPC in {len(r['differences'])} totals"
    totals = "; ".join(f"{t['kind']} sent {t['sent_count']} {t['sent']}, received "
                       f"{t['received_count']} {t['received']}" for t in r["totals"])
    rows = [("HVPS reconciled", f"work date {r['work_date']} {result} (at {r['at']})"),
            ("HVPS totals", totals or "no HVPS payment on the date")]
    for d in r["differences"]:
        ours, npc = d.get("ours_yuan", d["ours"]), d.get("npc_yuan", d["npc"])
        rows.append(("  differs", f"{d['mt']}/{d['business_type']} {d['field']}: "
                                  f"ours {ours}, NPC {npc}"))
    items = r.get("items")
    if items is not None:
        only = ", ".join(f"{d['msg_id']} only at {d['only_at']}"
                         for d in items["differences"])
        rows.append(("  items", only or "every item agrees"))
    return rows


def _recon_overdue(rows: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    """The reconciliations the NPC has not answered in time (gateway.recon.overdue)."""
    return [("reconciliation", f"OVERDUE: {r['system']} {r['work_date']} asked at "
                               f"{r['asked_at']}, no answer (alert {r['alert']})")
            for r in rows or []]


def _recon_owed(rows: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    """The closed dates still owed their HVPS reconciliation (gateway.recon.owe)."""
    return [("reconciliation", f"OWED: HVPS {r['work_date']} (ledger day closed) since "
                               f"{r['owed_since']}"
                               + (f" (alert {r['alert']})" if r["alert"] else ""))
            for r in rows or []]


def _beps_reconciliation(r: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The netting dates reconciled with the NPC and those not (yet), as status lines."""
    if r is None:
        return []
    waiting = ", ".join(f"{w['netting_date']} {w['state']}" for w in r["waiting"])
    if r["not_reconciled"] > len(r["waiting"]):
        waiting += f" (of {r['not_reconciled']})"
    differing = ", ".join(f"{d['netting_date']} ({d['differences']})" for d in r["differing"])
    return [("BEPS reconciled", f"netting dates to {r['reconciled_through'] or '-'} "
                                f"(complete to {r['complete_through']})"),
            ("BEPS waiting", waiting or "none"),
            ("BEPS differences", differing or "none")]


def _beps_not_netted(n: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Our packages the NPC has not netted yet, and those overdue (beps/not_netted.py)."""
    if n is None:
        return []
    if not n["packages"]:
        return [("BEPS not netted", "none")]
    packages = f"{n['packages']} package" + ("s" if n["packages"] != 1 else "")
    text = f"{n['items']} items in {packages} since {n['oldest_sent_at']}"
    late = n["overdue"]
    if late["packages"]:
        text = (f"OVERDUE: {late['items']} items ({late['amount']} yuan) sent since "
                f"{late['oldest_sent_at']}, more than {round(n['overdue_after_s'] / 60)} min"
                f" (alert beps_items_not_netted); {text}")
    return [("BEPS not netted", text)]


def queues(a: dict[str, Any]) -> str:
    streams = table(a["streams"], (("stream", "stream"), ("length", "length"),
                                   ("pending", "pending"), ("lag", "lag"),
                                   ("oldest_age_s", "oldest s")))
    stages = table(a["stages"], (("stage", "stage"), ("processed", "processed"),
                                 ("failed", "failed"), ("per_s", "per s")))
    return f"{streams}\n\n{stages}\n\ndead letters: {a['dead_total']}"


def payments(a: dict[str, Any]) -> str:
    return table(a["payments"], PAYMENT_COLUMNS, "(no payment matches)")


def review(a: dict[str, Any]) -> str:
    """The payments held for review, each with the requests that decide it (its row's
    actions, as `paygate ops request` names them)."""
    rows = [dict(p, decide=", ".join(command_word(n) for n in p.get("actions", ())),
                 matched=matched_party(p)) for p in a["payments"]]
    listed = table(rows, PAYMENT_COLUMNS + (("matched", "matched"), ("decide", "decide by")),
                   "(no payment is held for review)")
    return f"held for review: {shown_of(a)}\n{listed}" if a["payments"] else listed


def shown_of(a: dict[str, Any], end: str = "oldest") -> str:
    """How much of a list cut at the gateway's maximum (or the limit asked) is shown:
    "the oldest 200 of 1,203 shown" (the latest, for a list newest first), or "3 in
    all" when nothing is cut."""
    if a["truncated"]:
        return f"the {end} {a['shown']:,} of {a['total']:,} shown"
    return f"{a['total']:,} in all"


def matched_party(p: dict[str, Any]) -> str:
    """The party a screening reason refers to and its name ("payer: 示例丙"), as the
    gateway's review list gives them; empty for the amount review."""
    if not p.get("matched_party"):
        return ""
    return f"{p['matched_party']}: {p.get('matched_name') or ''}"


def payment(a: dict[str, Any]) -> str:
    head = pairs([(k, a.get(k)) for k in ("id", "direction", "channel", "state", "reason")]
        # A debit another bank sent us that the screening holds is `received`: said here.
        + [("held for review", "yes" if a.get("held_for_review") else "no")]
        + [(k, a.get(k)) for k in (
            "amount", "urgency", "priority", "payer_account", "payer_name", "payer_bank",
            "payee_account", "payee_name", "payee_bank", "msg_type", "msg_id", "work_date",
            "created_at", "updated_at")]
        + [("delivery", delivery(a.get("delivery")))])
    history = table(a["history"], (("at", "at"), ("state", "state"), ("event", "event"),
                                   ("detail", "detail")))
    reqs = table(_named(a["requests"]), REQUEST_COLUMNS)
    offered = ", ".join(command_word(name) for name in a.get("actions", ())) or "(none)"
    on_package = ""
    if a.get("package"):
        names = ", ".join(command_word(n) for n in a.get("package_actions", ())) or "(none)"
        on_package = f"\non its package {a['package']}: {names}"
    return (f"{head}\n\nhistory\n{history}\n\nrequests\n{reqs}\n\n"
            f"you may request: {offered}{on_package}")


def delivery(d: dict[str, Any] | None) -> str | None:
    """An HVPS payment's message as it stands with the NPC, said plainly (None: the
    payment has no message of its own to the NPC)."""
    if d is None:
        return None
    attempts, untaken = d["attempts"], d["attempts_not_taken"]
    if d["taken_by_npc"]:
        taken = "taken by the NPC"
    elif attempts == untaken:
        taken = "never taken by the NPC"
    else:
        # No proof either way: what an operator may still do with it differs (a hold or
        # a priority change is refused), so it is not said to be "not taken".
        taken = ("not acknowledged by the NPC, which may have it "
                 f"({attempts - untaken} attempt{'' if attempts - untaken == 1 else 's'} "
                 "ended without proof either way)")
    if not attempts:  # waiting for its lane, or ended before it was ever sent
        return f"{taken}; no link attempt"
    plural = "" if attempts == 1 else "s"
    return f"{taken}; {attempts} link attempt{plural}, {untaken} provably not taken"


def stuck(a: dict[str, Any]) -> str:
    """The list under a heading that says why each is in it: the age applied, and apart
    those listed whatever their age (held since their message died on the way)."""
    shown = shown_of(a)
    died = a.get("message_died") or 0
    head = f"older than {a['minutes']} min"
    if died:
        head = (f"{head}: {a['total'] - died}; held since their message died on the way to "
                f"the NPC, at any age: {died};")
    else:
        head += ":"
    return f"{head} {shown}\n" + table(a["payments"], PAYMENT_COLUMNS)


def books(a: dict[str, Any]) -> str:
    head = pairs([("balanced", a["balanced"]), ("accounts agree", a["accounts_agree"]),
                  ("debits", a["debit_total"]), ("credits", a["credit_total"])])
    rows = table(a["subjects"], (("code", "subject"), ("name", "name"),
                                 ("balance", "balance")))
    return f"{head}\n\n{rows}"


def dead(a: dict[str, Any]) -> str:
    rows = table(a["entries"], (("id", "id"), ("stream", "stream"), ("fields", "fields"),
                                ("deliveries", "tries"), ("age_s", "age s"),
                                ("reason", "reason")))
    return f"{rows}\n\ntotal: {a['total']}"


def alerts(a: dict[str, Any]) -> str:
    """The latest alerts, each open (needing attention) or history (ops.attention): its
    kind (critical or not), and who ended it: a critical one's acknowledging supervisor,
    an ordinary one's closing operator (`gateway` when the gateway found its cause gone),
    nobody while it is open or for an alert that ends by itself. A critical alert not
    yet acknowledged is OPEN."""
    rows = [dict(r, kind="critical" if r.get("critical") else "",
                 now=("OPEN" if r.get("open") else "open") if r.get("attention", True)
                 else "history",
                 ended_by=r.get("acknowledged_by") or "")
            for r in a["alerts"]]
    listed = table(rows, (("id", "id"), ("at", "at"), ("code", "code"), ("kind", "kind"),
                          ("now", "now"), ("ended_by", "closed by"), ("detail", "detail")))
    return f"{listed}\n\n{shown_of(a, 'latest')}"


def day_reports(a: dict[str, Any]) -> str:
    """A closed date's reports: where they were written (--out), else their text."""
    if "written" in a:
        return "\n".join(["written:", *a["written"]])
    return "\n".join(f"== {f['name']}\n{f['text']}" for f in a["files"])


def audit(a: dict[str, Any]) -> str:
    return table(a["audit"], (("id", "id"), ("at", "at"), ("actor", "who"),
                              ("level", "lvl"), ("what", "what"), ("request_id", "req"),
                              ("target", "target"), ("detail", "detail")))


def requests(a: dict[str, Any]) -> str:
    return table(_named(a["requests"]), REQUEST_COLUMNS)


def receivables(a: dict[str, Any]) -> str:
    rows = table(a["receivables"], (("pending_no", "pending no"), ("state", "state"),
                                    ("amount", "amount"), ("account", "account"),
                                    ("payment", "payment"), ("work_date", "booked"),
                                    ("age_days", "days"), ("reason", "reason")))
    return f"{rows}\n\n{len(a['receivables'])} {a['state']}"


def one_request(a: dict[str, Any]) -> str:
    return pairs([("id", a.get("id")), ("action", action_name(a))] + [(k, a.get(k)) for k in (
        "target", "params", "state", "requested_by", "requested_at", "note", "decided_by",
        "decided_at", "decision_note", "executed_at", "outcome", "expires_at")])


def actions(a: dict[str, Any]) -> str:
    rows = [dict(r, command=command_word(r["action"]), name=r["label"]["en"],
                 name_zh=r["label"]["zh"],
                 second=("level 20 or 30" if r["needs_approval"] else "none"))
            for r in a["actions"]]
    return table(rows, (("command", "request"), ("name", "action"), ("name_zh", "操作"),
                        ("target", "target"), ("request_level_min", "from level"),
                        ("second", "second person")))


def messages(a: dict[str, Any]) -> str:
    return table(a["messages"], (("id", "id"), ("direction", "dir"), ("mesg_type", "type"),
                                 ("mesg_id", "message id"), ("sender", "sender"),
                                 ("receiver", "receiver"), ("at", "at"),
                                 ("payment_id", "payment")))


def message(a: dict[str, Any]) -> str:
    head = pairs([(k, a.get(k)) for k in ("id", "direction", "mesg_type", "mesg_id", "sender",
                                          "receiver", "at", "payment_id")])
    parsed = json.dumps(a["parsed"], ensure_ascii=False, indent=2)
    return f"{head}\n\nraw\n{a['raw']}\n\nparsed\n{parsed}"


def refusal(body: dict[str, Any]) -> str:
    """A refusal in the product's error shape as lines for people: each problem's code
    and where (the field, the value seen), what was expected, the message, and any
    other fact it carries."""
    lines = []
    for p in body.get("errors") or []:
        where = f" at {p['path']}" if p.get("path") else ""
        if p.get("value") is not None:
            where += f" (got {_text(p['value'])})"
        lines.append(f"refused: {p.get('code', '')}{where}")
        if p.get("expected"):
            lines.append(f"  expected: {_text(p['expected'])}")
        # A refusal the command made itself may carry no message: the problem in words.
        lines.append(f"  message: {_text(p.get('message') or said(p))}")
        lines += [f"  {name}: {_text(value)}" for name, value in p.items()
                  if name not in ("code", "path", "value", "expected", "message")]
    return "\n".join(lines)


def said(p: dict[str, Any]) -> str:
    return Problem(str(p.get("code", "")), str(p.get("path") or ""), p.get("value"),
                   str(p.get("expected") or "")).describe()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "status": status, "queues": queues, "payments": payments, "payment": payment,
    "review": review,
    "stuck": stuck, "books": books, "dead": dead, "alerts": alerts, "audit": audit, "requests": requests,
    "receivables": receivables,
    "one_request": one_request, "messages": messages, "message": message,
    "actions": actions, "day_reports": day_reports,
}
