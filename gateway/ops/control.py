"""Dual control (双人控制): who may request an action, who must approve it, and its record.

| action | target | who may request | second person |
|---|---|---|---|
| retry | dead letter | any level but 10 | none (an operator may retry) |
| hold | payment | any level but 10 | none (holding stops money, it never moves it) |
| release | payment | any level but 10 | a supervisor or director (20, 30) |
| cancel | payment | any level but 10 | a supervisor or director (20, 30) |
| priority | payment | any level but 10 | a supervisor or director (20, 30) |
| review_approve | payment | a supervisor or director | none: the reviewer is the second person |
| review_reject | payment | a supervisor or director | none: the reviewer is the second person |
| day_end | work date | any level but 10 | a supervisor or director (20, 30) |
| webhook_resend | failed webhook row, or `failed` | any level but 10 | none (it tells, never pays) |
| receivable_collect | receivable (1221) | any level but 10 | a supervisor or director (20, 30) |
| receivable_reverse | receivable (1221) | any level but 10 | a supervisor or director (20, 30) |
| beps_reconcile | BEPS netting date | any level but 10 | none (it only asks the NPC) |
| hvps_reconcile | closed work date | any level but 10 | none (it only asks the NPC) |
| alert_acknowledge | critical alert | a supervisor or director | none (the second person) |
| alert_close | ordinary alert, open | any level but 10 | none (it moves a record to the history) |

`receivable_collect` and `receivable_reverse` settle a receivable (其他应收款-待销账)
by its pending write-off number: collected from the account it names, or its last
posting reversed (gateway.ops.receivables).

`day_end` runs a day end the gateway missed (gateway.dayend: it was down when the work
date moved): it closes that date's ledger day, which cannot be undone, and reconciles
the date with the NPC. `beps_reconcile` (added by gateway.beps) asks the NPC again for the
totals of a complete BEPS netting date, one reconciled already too; `hvps_reconcile`
the HVPS totals (hvps.710) of a work date whose ledger day is closed, which it owes its
reconciliation again until the answer is compared (gateway.recon.owe).

Nobody approves or rejects their own request; the requester may withdraw it. A
request not decided within `REQUEST_LIFE_S` expires. Every step (request, approve,
reject, withdraw, expire, execute, execute_failed) is written to `ops_audit` in the
same transaction as the change it records.
"""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Callable

from gateway import jsontext, outbound, payments
from gateway.digits import whole_number
from gateway.errors import (Conflict, Forbidden, NotFound, PaygateError, Problem,
                            ProblemList, ValidationFailed, field_required, not_text,
                            with_paths)
from gateway.intake import text_problem
from gateway.ops import actions, receivables
from gateway.ops.operators import APPROVER_LEVEL_MIN, Operator
from gateway.ops.schema import audit, table_exists
from gateway.states import FINAL, FINAL_IN
from gateway.store import Contended

REQUEST_LIFE_S = 4 * 60 * 60  # half a working day: an older request no longer fits the facts
NOTE_LEN_MAX = 500
TARGET_LEN_MAX = 64
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Rule:
    # payment | dead_letter | work_date | netting_date | webhook_row | alert |
    # package | receivable
    target: str
    needs_approval: bool
    request_level_min: int = 0


RULES: dict[str, Rule] = {
    "retry": Rule("dead_letter", needs_approval=False),
    "hold": Rule("payment", needs_approval=False),
    "release": Rule("payment", needs_approval=True),
    "cancel": Rule("payment", needs_approval=True),
    "priority": Rule("payment", needs_approval=True),
    "review_approve": Rule("payment", needs_approval=False,
                           request_level_min=APPROVER_LEVEL_MIN),
    "review_reject": Rule("payment", needs_approval=False,
                          request_level_min=APPROVER_LEVEL_MIN),
    "day_end": Rule("work_date", needs_approval=True),
    "hvps_reconcile": Rule("work_date", needs_approval=False),
    "webhook_resend": Rule("webhook_row", needs_approval=False),
    "alert_acknowledge": Rule("alert", needs_approval=False,
                              request_level_min=APPROVER_LEVEL_MIN),
    "alert_close": Rule("alert", needs_approval=False),
    receivables.COLLECT: Rule("receivable", needs_approval=True),
    receivables.REVERSE: Rule("receivable", needs_approval=True),
}

# Each action's human name, in English and in Chinese: what the page (its buttons, its
# tables of requests) and `paygate ops` show instead of the action's code. One table for
# both, served with every request (`action_label`) and whole by GET /ops/api/actions;
# parts of the gateway that add actions to RULES add their names here.
LABELS: dict[str, dict[str, str]] = {
    "retry": {"en": "Retry", "zh": "重发"},
    "hold": {"en": "Hold", "zh": "暂停"},
    "release": {"en": "Release", "zh": "放行"},
    "cancel": {"en": "Cancel", "zh": "撤销"},
    "priority": {"en": "Change priority", "zh": "调整优先级"},
    "review_approve": {"en": "Pass review", "zh": "复核通过"},
    "review_reject": {"en": "Fail review", "zh": "复核拒绝"},
    "day_end": {"en": "Late day end", "zh": "补做日终"},
    "hvps_reconcile": {"en": "Reconcile an HVPS work date", "zh": "大额工作日对账"},
    "webhook_resend": {"en": "Resend webhook", "zh": "重新推送"},
    "alert_acknowledge": {"en": "Acknowledge a critical alert", "zh": "确认重要告警"},
    "alert_close": {"en": "Close an alert", "zh": "关闭告警"},
    receivables.COLLECT: {"en": "Collect receivable", "zh": "收回应收款"},
    receivables.REVERSE: {"en": "Reverse receivable", "zh": "冲正应收款"},
}


def label(action: str) -> dict[str, str]:
    """An action's human names; its code in both languages when it has none."""
    return LABELS.get(action) or {"en": action, "zh": action}


def catalogue() -> list[dict[str, Any]]:
    """Every action with its names, target kind and approval rule (GET /ops/api/actions)."""
    return [{"action": name, "label": label(name), "target": rule.target,
             "needs_approval": rule.needs_approval,
             "request_level_min": f"{rule.request_level_min:02d}"}
            for name, rule in RULES.items()]


# The largest row id a database holds (SQLite INTEGER, PostgreSQL BIGINT): a webhook row
# named past it is malformed, never looked up.
ROW_ID_MAX = 2**63 - 1

# Every state an operator's request can be in (gateway.ops.schema): GET
# /ops/api/requests?state= takes one of these and refuses anything else.
REQUEST_STATES = ("pending", "executed", "failed", "rejected", "withdrawn", "expired")

_COLUMNS = ("id", "action", "target", "params", "note", "state", "requested_by",
            "requested_at", "expires_at", "decided_by", "decided_at", "decision_note",
            "executed_at", "outcome")
SELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM ops_requests"


def is_expired(req: dict[str, Any], now: datetime) -> bool:
    """A pending request whose time has passed by the gateway's clock: read as expired
    wherever it is shown or counted, before anything (a decision, the console's
    snapshot) marks it so in its row."""
    return req["state"] == "pending" and now.isoformat() > req["expires_at"]


def as_of(req: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The request as it stands at `now`: `expired` once its time has passed."""
    if is_expired(req, now):
        req["state"] = "expired"
    return req


def view(values: tuple) -> dict[str, Any]:
    row = dict(zip(_COLUMNS, values))
    row["params"] = json.loads(row["params"])
    row["outcome"] = json.loads(row["outcome"]) if row["outcome"] else None
    row["needs_approval"] = RULES[row["action"]].needs_approval if row["action"] in RULES \
        else None
    row["action_label"] = label(row["action"])
    return row


# The members of a request's body (POST /ops/api/requests).
REQUEST_FIELDS = ("action", "target", "params", "note")


def check_request(operator: Operator, action: Any, target: Any, params: Any,
                  note: Any, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's own fields; every problem at once. Returns the clean params.

    Each is checked for its JSON type first, as the core system's API checks its text
    fields: an action, target or note given as a number, an array, an object or a
    boolean is `field_must_be_text`, and params given as other than an object is
    refused as such; an action or target left out, null or empty is `field_required`.
    `body`, when the request came as one (POST /ops/api/requests): its members tell a
    field left out from one given null, and one it does not take is refused
    (`field_unknown`), never dropped."""
    problems = unknown_members(body, REQUEST_FIELDS) if body is not None else []
    given = frozenset(body) if body is not None else frozenset(
        name for name, value in zip(REQUEST_FIELDS, (action, target, params, note))
        if value is not None)
    expected = "one of " + ", ".join(RULES)
    wrong_action = not_text("/action", action, expected)
    if wrong_action is not None:
        problems.append(wrong_action)
        action = None  # not a name: looked up nowhere (a list is no key of RULES)
    elif action is None or not action.strip():
        problems.append(field_required("/action", action, "action" in given, expected))
    elif action not in RULES:
        problems.append(Problem("action_unknown", "/action", action, expected))
    rule = RULES.get(action) if action is not None else None
    problems.extend(target_problems(rule, target, "target" in given))
    note_bad = note_problems(note)
    problems.extend(note_bad)
    if not note_bad and action in NOTE_RULES:
        problems.extend(NOTE_RULES[action](note))
    problems.extend(params_problems(action if rule is not None else None, params))
    clean: dict[str, Any] = {}
    if action in PARAM_RULES and isinstance(params, (dict, type(None))):
        taken, bad = PARAM_RULES[action](params or {})
        clean.update(taken)
        problems.extend(bad)
    if action == "priority":
        value = params.get("priority") if isinstance(params, dict) else None
        bad_priority = priority_problem(value)
        if bad_priority is not None:
            problems.append(bad_priority)
        else:
            clean["priority"] = value
    if problems:
        raise ValidationFailed(problems)
    if not may_request(operator, rule):
        raise Forbidden(Problem("operator_level_too_low", "/action", action,
                                f"an operator of level {rule.request_level_min:02d} or "
                                "above, not a vault teller (10)", f"{operator.user} is "
                                f"level {operator.level}"))
    return clean


# Actions whose note is more than a note (a return's is the reason sent with it) add
# their rule for it here: the note's problems, checked when the request is made.
NOTE_RULES: dict[str, Callable[[str], list[Problem]]] = {
    receivables.REVERSE: receivables.reverse_note_problems}

# The parameters each action takes in a request's `params`; an action not named here
# takes none. A parameter no action of the request reads is refused, never dropped.
PARAMS: dict[str, tuple[str, ...]] = {"priority": ("priority",)}

# Actions that check their own parameters (one that must be given, one of a given form)
# add their rule here: the request's params in, the clean params and every problem out.
PARAM_RULES: dict[str, Callable[[dict[str, Any]], tuple[dict[str, Any], list[Problem]]]] = {}

# Actions whose target may be named another way than the one their request records (a
# suspense item by its pending write-off number, recorded as its payment) add here how to
# read it: (gateway, transaction, target as given, clean params) in, (the target recorded,
# the params recorded) out; a target that names nothing is refused by name.
TARGET_READERS: dict[str, Callable[[Any, Any, str, dict[str, Any]],
                                   tuple[str, dict[str, Any]]]] = {}


def params_problems(action: str | None, params: Any) -> list[Problem]:
    """A request's `params`: an object (or null, or absent) holding only what its action
    takes, each other one refused at its own path (any while the action is unknown).
    Params of another JSON type are refused showing them as sent, their type named."""
    if params is None:
        return []
    if not isinstance(params, dict):
        expected = "a JSON object of the action's parameters (or no params)"
        return [Problem("field_malformed", "/params", params, expected,
                        f"params must be {expected}, not a JSON "
                        f"{jsontext.type_name(params)}")]
    if action is None:
        return []
    allowed = PARAMS.get(action, ())
    return [Problem("field_unknown", f"/params/{name}", value,
                    "only: " + (", ".join(allowed) if allowed else
                                f"no parameters (action {action} takes none)"))
            for name, value in params.items() if name not in allowed]


def unknown_members(body: dict[str, Any], allowed: tuple[str, ...]) -> list[Problem]:
    """`field_unknown` for each member of a console request's body that its route does
    not take, as the core system's API refuses one, never dropped."""
    return [Problem("field_unknown", f"/{name}", value, "only: " + ", ".join(allowed))
            for name, value in body.items() if name not in allowed]


def may_request(operator: Operator, rule: Rule) -> bool:
    """Whether the operator's level may ask for an action of this rule."""
    return operator.may_act and int(operator.level) >= rule.request_level_min


def offered(gw: Any, tx: Any, operator: Operator, payment_id: str, now: datetime,
            kind: str = "payment") -> list[str]:
    """The actions on a target of `kind` (a payment; a BEPS package) that `operator` may
    request on this one now, in the order of RULES: those the operator's level may ask
    for and that a request of would be taken (`requestable`: its precondition, and no
    pending request it clashes with). A payment's detail view offers them, and those on
    its BEPS package."""
    pending = pending_on(tx, [payment_id], now).get(payment_id, [])
    names = [name for name, rule in RULES.items()
             if rule.target == kind and may_request(operator, rule)
             and requestable(gw, tx, name, payment_id, pending)]
    # An npc_cancel of a payment not yet sent cancels it here, as `cancel` does: only
    # one of the two is offered for it.
    return [n for n in names if n != "npc_cancel" or "cancel" not in names]


# The actions a row of a list of payments offers (the console's latest payments, stuck,
# held for review and search results); the detail view offers every one. Parts of the
# gateway add theirs (gateway.exceptions.ops: applying or returning a credit the screening
# parked, actions.PARKED_ROW_ACTIONS).
ROW_ACTIONS = ["hold", "release", "cancel", "priority", "review_approve", "review_reject"]


def add_row_actions(gw: Any, tx: Any, rows: list[dict[str, Any]], now: datetime) -> None:
    """Give each payment row its `actions`: those of ROW_ACTIONS a request of would be
    taken now, whoever asks (the page shows those its operator's level may ask for), by
    the checks `requestable` makes. A payment in a final state takes none of them, and
    is not looked at further.

    The snapshot builds its lists about every second while a page is open, in the
    store's thread that carries payments, so the rows are checked together: their
    payments read in one statement and every precondition answered from that read
    (payments.read_once), so is what else the preconditions read of them (ROW_READERS),
    the requests pending on them read in one statement, and an action its payment's
    direction, channel or review hold rules out (actions.may_apply) answered no without
    running its precondition, as is an action only a credit the screening parked is
    offered (actions.may_offer_on_row). A payment in several rows (the snapshot's lists
    overlap) is checked once."""
    live = [row["id"] for row in rows
            if row["state"] not in (FINAL_IN if row["direction"] == "in" else FINAL)]
    found: dict[str, list[str]] = {}
    with ExitStack() as reads:
        read = reads.enter_context(payments.read_once(tx, live))
        for reader in ROW_READERS:
            reads.enter_context(reader(gw, tx, read))
        pending = pending_on(tx, live, now)
        for payment_id, payment in read.items():
            found[payment_id] = [
                name for name in ROW_ACTIONS if actions.may_offer_on_row(name, payment)
                and requestable(gw, tx, name, payment_id, pending.get(payment_id, []))]
    for row in rows:
        row["actions"] = list(found.get(row["id"], ()))


def _hvps_outboxes(gw: Any, tx: Any, read: dict[str, dict[str, Any]]
                   ) -> AbstractContextManager[Any]:
    return outbound.credit_outboxes_read_once(
        tx, [pid for pid, p in read.items() if (p["direction"], p["channel"]) == ("out", "hvps")])


# What the preconditions of the rows' actions read of a payment besides its row, read
# once for all the rows of a list (store.reading_once): (gateway, transaction, the
# payments by id) in, the block that answers from the read out. An HVPS payment's outbox
# row here; parts of the gateway whose checks read more (a BEPS item and its package; a
# parked credit's suspense item and returns) add theirs.
ROW_READERS: list[Callable[[Any, Any, dict[str, dict[str, Any]]],
                           AbstractContextManager[Any]]] = [_hvps_outboxes]


def requestable(gw: Any, tx: Any, action: str, target: str,
                pending: list[tuple[int, str]]) -> bool:
    """Whether a request of `action` on `target` would be taken now, by the checks
    `gateway.ops.console.Console.request` makes of it: no request `pending` on the
    target clashes with it (`pending_clash`, as `refuse_pending_clash` refuses), and its
    precondition holds (actions.offerable). Reads only."""
    return pending_clash(action, pending) is None \
        and actions.offerable(gw, tx, action, target)


# What each kind of target is, as a refusal of a malformed one says it.
TARGET_EXPECTED = {
    "payment": f"a payment id of 1 to {TARGET_LEN_MAX} characters",
    "dead_letter": "a dead-letter entry id such as 1765000000000-0 (`paygate ops "
                   "dead-letters`): two whole numbers below 2^64 joined by a hyphen",
    "work_date": "a work date such as 2026-12-07",
    "netting_date": "a BEPS netting date such as 2026-10-03",
    "webhook_row": "a webhook row's id as text of ASCII digits (such as \"6\"), or "
                   "`failed` for every failed row",
    "alert": "an alert's id as text of ASCII digits (such as \"12\", `paygate ops alerts`)",
    "receivable": receivables.TARGET_EXPECTED,
}


def target_problems(rule: Rule | None, target: Any, given: bool = True) -> list[Problem]:
    """One problem at most for a request's target, saying what the action's target is
    (any target of 1 to TARGET_LEN_MAX characters while the action is unknown): given
    as another JSON type than text, `field_must_be_text`; left out (`given` False),
    null or empty, `field_required`; else, not of its kind's form, `target_malformed`."""
    kind = rule.target if rule is not None else None
    expected = TARGET_EXPECTED.get(kind, f"a target of 1 to {TARGET_LEN_MAX} characters")
    wrong_type = not_text("/target", target, expected)
    if wrong_type is not None:
        return [wrong_type]
    if target is None or target == "":
        return [field_required("/target", target, given, expected)]
    if isinstance(target, str) and 0 < len(target) <= TARGET_LEN_MAX and (
            kind in ("work_date", "netting_date") and is_real_date(target)
            or kind == "webhook_row" and is_webhook_target(target)
            or kind == "alert" and is_row_id(target)
            or kind == "receivable" and receivables.is_receivable_no(target)
            or kind == "dead_letter" and is_stream_entry_id(target)
            or kind not in ("work_date", "netting_date", "webhook_row", "alert",
                            "receivable", "dead_letter")):
        return []
    return [Problem("target_malformed", "/target", target, expected)]


# A Redis stream entry's id: its milliseconds and its sequence number, each an unsigned
# 64-bit number (XADD's ids). Redis refuses anything else given to XRANGE with an error
# of its own, which the console would answer 500.
STREAM_ID_PART_MAX = 2**64 - 1


def is_stream_entry_id(text: str) -> bool:
    """`ms-seq`, both ASCII digits of numbers from 0 to STREAM_ID_PART_MAX."""
    ms, hyphen, seq = text.partition("-")
    return bool(hyphen) and whole_number(ms, STREAM_ID_PART_MAX) is not None \
        and whole_number(seq, STREAM_ID_PART_MAX) is not None


def is_webhook_target(text: str) -> bool:
    """`failed`, or a row id: ASCII digits of a number a database row id can be."""
    return text == actions.WEBHOOK_ALL_FAILED or is_row_id(text)


def is_row_id(text: str) -> bool:
    """ASCII digits of a number a database row id can be."""
    return whole_number(text, ROW_ID_MAX) is not None


def clean_target(action: str, target: str) -> str:
    """The target as the request records it: a webhook row's id as its number reads
    ("06" is row 6, as the console reads a request's or a message's id), a dead letter's
    entry id as Redis writes it ("01-1" is 1-1), so that one row or entry is one target
    whatever zeros it was written with."""
    kind = RULES[action].target
    if kind in ("webhook_row", "alert") and target != actions.WEBHOOK_ALL_FAILED:
        return str(int(target))
    if kind == "dead_letter":
        ms, _, seq = target.partition("-")
        return f"{int(ms)}-{int(seq)}"
    return target


def is_real_date(text: Any) -> bool:
    """A date written YYYY-MM-DD that exists (a request's work date, a search's date)."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


PRIORITY_EXPECTED = "the JSON number 1 (extra urgent), 2 (urgent) or 3 (normal)"


def priority_problem(value: Any) -> Problem | None:
    """priority_unknown unless `value` is the JSON number 1, 2 or 3. Only a number: true
    is 1 to Python and "1" is text, and either was once recorded as a lane nobody typed
    (bool is a subclass of int, hence `type`); a value of another JSON type is told so."""
    if type(value) is int and value in (1, 2, 3):
        return None
    problem = Problem("priority_unknown", "/params/priority", value, PRIORITY_EXPECTED)
    type_name = jsontext.type_name(value)
    if type_name in ("number", "null"):
        return problem
    return replace(problem, message=problem.describe(
        f"priority must be the JSON number 1, 2 or 3, not a JSON {type_name}"))


def note_problems(note: Any) -> list[Problem]:
    """A request's or a decision's note: text (`field_must_be_text` when given as
    another JSON type) of at most NOTE_LEN_MAX characters, without control or invisible
    characters (intake.text_problem, as a transfer's names): a return's note is the
    reason its message carries, and every note is shown to the approver and in the
    audit log as typed."""
    expected = f"text of at most {NOTE_LEN_MAX} characters"
    wrong_type = not_text("/note", note, expected)
    if wrong_type is not None:
        return [wrong_type]
    p = ProblemList()
    if not isinstance(note, str) or len(note) > NOTE_LEN_MAX:
        p.add("note_malformed", "/note", note, expected)
    text_problem(p, "/note", note)
    return p.items


def create(tx: Any, operator: Operator, action: str, target: str, params: dict[str, Any],
           note: str, now: datetime) -> int:
    if RULES[action].target == "payment":
        # An unknown payment is refused at once, not at approval. Locked: requests on one
        # payment made at once from two gateway processes are checked one after the other.
        payments.get(tx, target, lock=True)
    elif RULES[action].target == PACKAGE_TARGET:
        # The lock the core system's cancel of one of its items takes too
        # (refuse_core_overtaking): the cancel sees this request, or this request sees
        # the item already gone.
        lock_package(tx, target)
    # A request whose time has passed waits for nobody: marked expired, it is no clash.
    expire_due(tx, now)
    refuse_pending_clash(tx, action, target, params, now)
    expires = now + timedelta(seconds=REQUEST_LIFE_S)
    row = tx.query_one(
        "INSERT INTO ops_requests (action, target, params, note, state, requested_by, "
        "requested_at, expires_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING id",
        (action, target, json.dumps(params, ensure_ascii=False, sort_keys=True), note,
         operator.user, now.isoformat(), expires.isoformat()))
    audit(tx, now, operator.user, operator.level, "request", request_id=row[0],
          target=target, action=action, params=params, note=note)
    return row[0]


# Actions waiting for a second person that may stand beside any other on the same target:
# a new priority decides nothing about where the money goes.
COMPATIBLE = frozenset({"priority"})


def deciding(action: str) -> bool:
    """Whether the action, once approved, decides where its target's money goes (a
    release, a cancel, a return, an application of a suspense item, ...)."""
    rule = RULES[action]
    return rule.needs_approval and action not in COMPATIBLE


def refuse_pending_clash(tx: Any, action: str, target: str, params: dict[str, Any],
                        now: datetime) -> None:
    """Refuse a request of `action` on `target` that a pending request would make a
    second one: the same action pending on it (`request_already_pending`), or a request
    deciding its money pending while this one would decide it too (`pending_clash`), or
    send what it may stop (`request_contradicts_pending`). `create` checks a request so,
    and the console's offered actions (`requestable`) by `pending_clash` on the same
    rows, so that what is offered is what would be taken. A request past its time
    (`expires_at` before `now`) waits for nobody and is no clash, though nothing has
    marked it expired yet."""
    clash = pending_clash(action, pending_on(tx, [target], now).get(target, []))
    if clash is not None:
        other_id, other = clash
        if other == action:
            raise Conflict(Problem("request_already_pending", "/target", target,
                                   "no other pending request of the same action",
                                   f"request {other_id} waits for approval"))
        # One deciding request pending per target: two (a return and an application of
        # the same suspense item, a release and a cancel) would both be approved on the
        # facts each approver saw, and the second carried out on what the first did.
        raise Conflict(Problem(
            "request_contradicts_pending", "/target", target,
            "no pending request of another action that decides this target's money",
            f"request {other_id} ({other}) waits for approval; withdraw or reject it "
            f"first"))
    if action == "retry":
        _refuse_letter_contradiction(tx, target, letter_targets(tx, params.get("fields") or {}),
                                     now)


# Targets one statement of `pending_on` names (the console's lists have at most 200).
PENDING_TARGETS_MAX = 500


def pending_on(tx: Any, targets: list[str], now: datetime
               ) -> dict[str, list[tuple[int, str]]]:
    """The requests pending on each of `targets` and not past their time: (id, action)
    each, oldest first. Requests expire, so a target has few."""
    found: dict[str, list[tuple[int, str]]] = {}
    wanted = list(dict.fromkeys(targets))
    for start in range(0, len(wanted), PENDING_TARGETS_MAX):
        chunk = wanted[start:start + PENDING_TARGETS_MAX]
        for request_id, action, target in tx.query(
                "SELECT id, action, target FROM ops_requests WHERE state = 'pending' "
                f"AND expires_at >= ? AND target IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY id", (now.isoformat(), *chunk)):
            found.setdefault(target, []).append((request_id, action))
    return found


def pending_clash(action: str, pending: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The request (id, action) among those `pending` on a target (`pending_on`) that a
    request of `action` on it would clash with: the oldest of the same action, else,
    when `action` decides the target's money, the oldest other request deciding it too;
    None when none does."""
    same = next(((i, a) for i, a in pending if a == action), None)
    if same is not None or not deciding(action):
        return same
    kind = RULES[action].target
    return next(((i, a) for i, a in pending
                 if a in RULES and RULES[a].target == kind and deciding(a)), None)


# The target kind of the BEPS package actions (gateway.beps.stops registers them).
PACKAGE_TARGET = "package"


def lock_package(tx: Any, package_id: str) -> None:
    """Hold the row of the BEPS package `package_id` (PostgreSQL) until the transaction
    ends: an operators' request on the package and the core system's cancel of one of
    its items are checked one after the other. No row (no such package) locks nothing;
    the request's own checks refuse it."""
    if tx.dialect == "postgresql":
        tx.query_one("SELECT id FROM beps_packages WHERE id = ? FOR UPDATE", (package_id,))


def refuse_core_overtaking(tx: Any, payment_id: str, asked: str, now: datetime,
                           package_id: str | None = None) -> None:
    """Refuse the core system's `asked` (its return or cancel of `payment_id`; the
    automatic return of suspense asks the same, and waits for the next sweep) while an
    operators' request deciding the payment's money waits for its second person (an
    application of its suspense item, a return, a release, a cancel): carried out first,
    it would decide the money under the operators and leave their approval to fail on
    what it did. 409 `operator_request_pending`, naming the oldest such request (id,
    action, who asked) in its message and as `pending_request`; the operators withdraw
    or reject it, or approve it, and the core system asks again. A request past its time
    waits for nobody. Without the console's tables (no operators) nothing waits.
    `package_id`: the BEPS package that carries the payment, whose deciding requests (a
    package's cancel or release) decide the payment's money too, and are refused so."""
    if not table_exists(tx, "ops_requests"):
        return
    targets = {payment_id: "payment"}
    if package_id is not None:
        # Taken before the requests are read, as `create` takes it before a package's
        # request is written: a request made meanwhile by another gateway process is
        # either committed and seen here, or made after this transaction ends.
        lock_package(tx, package_id)
        targets[package_id] = PACKAGE_TARGET
    for request_id, action, target, requested_by in tx.query(
            "SELECT id, action, target, requested_by FROM ops_requests WHERE state = "
            f"'pending' AND expires_at >= ? AND target IN ({', '.join('?' * len(targets))}) "
            "ORDER BY id", (now.isoformat(), *targets)):
        if action in RULES and RULES[action].target == targets[target] and deciding(action):
            on_package = {} if target == payment_id else {"package": target}
            of = f" on its package {target}" if on_package else ""
            raise Conflict(Problem(
                "operator_request_pending", "/id", request_id,
                "no operators' request deciding this payment waiting for approval",
                f"the {asked} of payment {payment_id} waits on operators: their request "
                f"{request_id} ({action}{of}, asked by {requested_by}) waits for a second "
                "person's approval; they withdraw, reject or approve it first",
                detail=(("pending_request", {"id": request_id, "action": action,
                                             **on_package,
                                             "requested_by": requested_by}),)))


def _refuse_letter_contradiction(tx: Any, letter: str,
                                 decided: list[tuple[str, str]], now: datetime) -> None:
    """A retry needs nobody, yet it sends again the message of what its letter carries
    (a payment; a BEPS package and its items): refused while a deciding request on one
    of them waits, since it would send the money that request may stop. The pending
    requests are few (they expire), so all are read."""
    wanted = set(decided)
    if not wanted:
        return
    for other_id, other, on in tx.query("SELECT id, action, target FROM ops_requests "
                                        "WHERE state = 'pending' AND expires_at >= ? "
                                        "ORDER BY id", (now.isoformat(),)):
        if other in RULES and deciding(other) and (RULES[other].target, on) in wanted:
            raise Conflict(Problem(
                "request_contradicts_pending", "/target", letter,
                "no pending request that decides the money of what the letter carries",
                f"request {other_id} ({other}) on {RULES[other].target} {on} waits for "
                f"approval; withdraw or reject it first"))


# Kinds of outbox rows whose message carries more than one payment (a BEPS package)
# add here what a retry of its dead letter decides: (transaction, outbox id) in, the
# (target kind, target) of each (the package, its items) out.
LETTER_TARGETS: dict[str, Callable[[Any, int], list[tuple[str, str]]]] = {}


def letter_targets(tx: Any, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """What a dead letter's retry would send on, by its outbox row: the payment whose
    message it carries, or what LETTER_TARGETS says of its kind; nothing for a letter
    of other work (an incoming message, a query)."""
    outbox = whole_number(str(fields.get("outbox", "")), ROW_ID_MAX)
    if outbox is None:
        return []
    row = tx.query_one("SELECT kind, payment_id FROM outbox WHERE id = ?", (outbox,))
    if row is None:
        return []
    kind, payment_id = row
    if kind in LETTER_TARGETS:
        return LETTER_TARGETS[kind](tx, outbox)
    return [("payment", payment_id)] if payment_id is not None else []


def retries_of_letters(tx: Any, outbox_ids: list[int]) -> list[tuple]:
    """The requests to retry dead letters of these outbox rows (a payment's message
    refused and retried: the request names the letter, its params the row)."""
    rows: list[tuple] = []
    # `create` records params as json.dumps writes them: `"outbox": "12"` in the text.
    for outbox_id in outbox_ids:
        rows += tx.query(f"{SELECT} WHERE action = 'retry' AND params LIKE ?",
                         (f'%"outbox": "{int(outbox_id)}"%',))
    return rows


def load(tx: Any, request_id: int) -> dict[str, Any]:
    values = tx.query_one(f"{SELECT} WHERE id = ?", (request_id,))
    if values is None:
        raise NotFound(Problem("request_not_found", "/id", request_id,
                               "the id of an operator's request"))
    return view(values)


def expired_problem(req: dict[str, Any]) -> Problem:
    """request_expired for a decision on `req`, which waited past its time."""
    return Problem("request_expired", "/id", req["id"],
                   f"a decision within {REQUEST_LIFE_S // 3600} h of the request",
                   f"request {req['id']} ({req['action']} of {req['target']}) expired at "
                   f"{req['expires_at']} without a decision; ask for the action again")


def decide(tx: Any, operator: Operator, request_id: int, approve: bool, note: str,
           now: datetime) -> tuple[dict[str, Any], str]:
    """Record an approval, rejection or withdrawal; returns the request and what it was.
    A request already marked expired is refused `request_expired` here; one whose time
    passed unmarked is marked, and the console refuses it so once the mark is committed:
    either way the decision is answered request_expired, never request_not_pending."""
    req = load(tx, request_id)
    if req["state"] == "expired":
        raise Conflict(expired_problem(req))
    if req["state"] != "pending":
        raise Conflict(Problem("request_not_pending", "/id", req["state"],
                               "a request waiting for a decision"))
    own = req["requested_by"] == operator.user
    if own and approve:
        raise Forbidden(Problem("approver_is_requester", "/id", request_id,
                                "a second person: nobody approves their own request"))
    if not own and not operator.may_approve:
        raise Forbidden(Problem("approver_level_too_low", "/id", request_id,
                                f"a supervisor or director (level {APPROVER_LEVEL_MIN} or "
                                f"above)", f"{operator.user} is level {operator.level}"))
    if is_expired(req, now):
        expire_due(tx, now)
        return load(tx, request_id), "expired"
    what = "approve" if approve else ("withdraw" if own else "reject")
    state = "pending" if approve else ("withdrawn" if own else "rejected")
    # Conditional on the request still pending: a second person at another gateway
    # process may have approved (and executed), rejected or withdrawn it since it was
    # read; this decision is then undone and runs again on what they did.
    if tx.execute("UPDATE ops_requests SET state = ?, decided_by = ?, decided_at = ?, "
                  "decision_note = ? WHERE id = ? AND state = 'pending'",
                  (state, operator.user, now.isoformat(), note, request_id)) != 1:
        raise Contended(f"request {request_id} was decided meanwhile")
    audit(tx, now, operator.user, operator.level, what, request_id=request_id,
          target=req["target"], action=req["action"], note=note)
    return load(tx, request_id), what


def at_request_fields(exc: PaygateError) -> PaygateError:
    """A refusal of a request's action as the request names things: the payment an
    action acts on is its `target`, where the core system's routes name it `id` (the
    payment of /v1/transfers/{id}/...), and the checks they share say `/id`."""
    return with_paths(exc, lambda path: "/target" + path[len("/id"):] if _names_id(path)
                      else path)


def _names_id(path: str) -> bool:
    return path == "/id" or path.startswith("/id/")


def execute(tx: Any, gw: Any, operator: Operator, req: dict[str, Any],
            now: datetime) -> list[actions.AfterCommit]:
    """Run an allowed request's action; a refusal is recorded as the request's outcome."""
    context = actions.Context(gw, now, req["id"], operator.user, req["requested_by"])
    try:
        with tx.savepoint():
            outcome = actions.EXECUTORS[req["action"]](context, tx, req["target"],
                                                         req["params"])
    except PaygateError as refused:
        exc = at_request_fields(refused)
        tx.execute("UPDATE ops_requests SET state = 'failed', executed_at = ?, outcome = ? "
                   "WHERE id = ?", (now.isoformat(), json.dumps(exc.to_dict(),
                                    ensure_ascii=False, default=str), req["id"]))
        audit(tx, now, operator.user, operator.level, "execute_failed", request_id=req["id"],
              target=req["target"], action=req["action"], codes=[p.code for p in exc.problems])
        return []
    tx.execute("UPDATE ops_requests SET state = 'executed', executed_at = ?, outcome = ? "
               "WHERE id = ?", (now.isoformat(), json.dumps(outcome.detail, ensure_ascii=False,
                                default=str), req["id"]))
    audit(tx, now, operator.user, operator.level, "execute", request_id=req["id"],
          target=req["target"], action=req["action"], requested_by=req["requested_by"],
          **{f"outcome_{k}": v for k, v in outcome.detail.items() if k != "fields"})
    return outcome.after


def expire_due(tx: Any, now: datetime) -> int:
    """Mark pending requests past their time as expired; how many."""
    # One conditional statement: a request decided by another process meanwhile (and
    # executed) keeps its decision.
    rows = tx.query("UPDATE ops_requests SET state = 'expired', decided_at = ? "
                    "WHERE state = 'pending' AND expires_at < ? RETURNING id, target, action",
                    (now.isoformat(), now.isoformat()))
    for request_id, target, action in sorted(rows):
        audit(tx, now, "system", "", "expire", request_id=request_id, target=target,
              action=action)
    return len(rows)
