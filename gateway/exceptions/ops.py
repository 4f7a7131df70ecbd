"""The exception flows as operators' actions in the console (gateway.ops), under its dual
control (DOMAIN.md §5: cancelling or moving money needs a supervisor's approval).

| action | target | second person | what it does |
|---|---|---|---|
| return | incoming payment | a supervisor or director | return it (A105), the note as reason |
| npc_cancel | queued payment | a supervisor or director | ask the NPC to cancel it (ccms.307) |
| status_query | outgoing payment | none: it only asks | ask the NPC its status (ccms.316) |
| suspense_keep | suspense item | none: it stops money moving | keep it from the auto-return |
| suspense_release | suspense item | a supervisor or director | let the auto-return take it |
| suspense_apply | suspense item (its pending number or payment), `account` | a supervisor or director | apply it to the account (销账), the note saying why |
| suspense_return | our BEPS debit's suspense item (its pending number or payment) | a supervisor or director | return it to the payer bank (beps.121 A105), the note as reason |

An incoming payment's item and our debit's are applied by the same action
(debit_suspense.apply_tx tells them apart).

A request that could not run now (a return of a payment not in suspense or credited, a
keep of an item kept already) is refused when it is made, with the error its execution
would give; the console checks it again when it runs.

The console keeps its actions in two tables (control.RULES, actions.EXECUTORS); these
are added to them when the console is part of the product. An executor runs inside the
console's transaction (with the console's context: gateway, time, request id, operator)
and hands back the Redis work to do after the commit.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from gateway import payments, screening
from gateway.errors import Problem, ValidationFailed
from gateway.exceptions import cancels, debit_suspense, returns, status, suspense, write_off
from gateway.exceptions.schema import open_returns_read_once
from gateway.exceptions.wire import Entry

OPERATOR_RETURN_REASON = "returned_by_operator"
# Each action and whether it needs a second person's approval.
ACTIONS = {
    "return": True, "npc_cancel": True, "status_query": False, "suspense_keep": False,
    "suspense_release": True, "suspense_apply": True, "suspense_return": True,
}


# Their human names on the page and in `paygate ops` (the console's LABELS).
LABELS = {
    "return": {"en": "Return to sender", "zh": "退汇"},
    "npc_cancel": {"en": "Ask the NPC to cancel", "zh": "申请 NPC 撤销"},
    "status_query": {"en": "Ask the NPC for its status", "zh": "查询支付状态"},
    "suspense_keep": {"en": "Keep from the automatic return", "zh": "暂不自动退汇"},
    "suspense_release": {"en": "Allow the automatic return", "zh": "恢复自动退汇"},
    "suspense_apply": {"en": "Apply to an account", "zh": "待销账入账"},
    "suspense_return": {"en": "Return to the payer bank", "zh": "待销账退回付款行"},
}


def console_present() -> bool:
    return importlib.util.find_spec("gateway.ops.control") is not None


def register() -> bool:
    """Add the actions to the console's tables; False when the product has no console."""
    if not console_present():
        return False
    from gateway.ops import actions, control

    for name, needs_approval in ACTIONS.items():
        control.RULES.setdefault(name, control.Rule("payment", needs_approval=needs_approval))
        control.LABELS.setdefault(name, LABELS[name])
        actions.EXECUTORS.setdefault(name, _executor(EXECUTORS[name], actions.Outcome))
        if name in PRECONDITIONS:
            actions.PRECONDITIONS.setdefault(name, _precondition(PRECONDITIONS[name]))
    control.NOTE_RULES.setdefault("return", return_note_problems)
    # A return from a credited account holds its amount there: the request is refused
    # when the account could not give it now, as the approval would find.
    actions.GATEWAY_PRECONDITIONS.setdefault("return", _returnable_now)
    # An application names its account, and may name its item by the pending number;
    # its checks read the ledger's accounts, so they are given the gateway.
    control.PARAMS.setdefault("suspense_apply", ("account", "pending_no"))
    control.PARAM_RULES.setdefault("suspense_apply", write_off.params_problems)
    control.NOTE_RULES.setdefault("suspense_apply", write_off.note_problems)
    control.TARGET_READERS.setdefault("suspense_apply", write_off.read_target)
    actions.GATEWAY_PRECONDITIONS.setdefault("suspense_apply", debit_suspense.check_appliable)
    # A return of our debit's item names it the same ways; its note is the reason.
    control.PARAMS.setdefault("suspense_return", ("pending_no",))
    control.PARAM_RULES.setdefault("suspense_return", debit_suspense.return_params_problems)
    control.NOTE_RULES.setdefault("suspense_return", debit_suspense.return_note_problems)
    control.TARGET_READERS.setdefault("suspense_return", write_off.read_target)
    actions.GATEWAY_PRECONDITIONS.setdefault("suspense_return",
                                             debit_suspense.check_returnable)
    # A credit the screening parked is decided on its row of the console's lists (the
    # held for review among them): applied to its payee or returned. Their checks read
    # its suspense item and its returns: once for a whole list.
    for name in PARKED_ROW_ACTIONS:
        if name not in control.ROW_ACTIONS:
            control.ROW_ACTIONS.append(name)
            actions.PARKED_ROW_ACTIONS.append(name)
    if parked_read_once not in control.ROW_READERS:
        control.ROW_READERS.append(parked_read_once)
    return True


# The actions deciding a credit the screening parked, which its row offers.
PARKED_ROW_ACTIONS = ("return", "suspense_apply")  # in the order of control.RULES


@contextmanager
def parked_read_once(gw: Any, tx: Any, read: dict[str, dict[str, Any]]) -> Iterator[None]:
    """The suspense items and the returns of the parked credits among `read`, read once
    for the checks of the console's rows (control.ROW_READERS); nothing for a list
    without any."""
    parked = [payment for payment in read.values() if screening.is_parked(payment)]
    if not parked:
        yield
        return
    with open_returns_read_once(tx, [payment["id"] for payment in parked]), \
            write_off.items_read_once(gw, tx, [payment["pending_no"] for payment in parked]):
        yield


def return_note_problems(note: str) -> list[Problem]:
    """A return's note is the reason it carries (/H20/ in its remittance), held to the
    limit POST /v1/transfers/{id}/return holds its `reason` to, with the same code:
    refused when longer, never cut. An empty note sends OPERATOR_RETURN_REASON."""
    if len(note.strip()) <= returns.REASON_LEN_MAX:
        return []
    return [Problem("return_reason_malformed", "/note", note,
                    f"text of at most {returns.REASON_LEN_MAX} characters, the reason sent "
                    f"with the return (none: {OPERATOR_RETURN_REASON})",
                    f"the note is {len(note.strip())} characters; a return's reason is "
                    f"at most {returns.REASON_LEN_MAX}")]


def _precondition(check: Callable[[Any, dict[str, Any]], None]) -> Callable[..., None]:
    """A request refused at once when its action could not run now, with the error the
    execution would give (the console's rule for every action; checked again when it
    runs, since the payment may move before a second person approves)."""
    def precondition(tx: Any, target: str, params: dict[str, Any]) -> None:
        check(tx, payments.get(tx, target))
    return precondition


def _returnable_now(gw: Any, tx: Any, target: str, params: dict[str, Any]) -> None:
    returns.check_requestable(gw, tx, payments.get(tx, target))


def _executor(run: Callable[..., tuple[dict[str, Any], list[Entry]]],
              outcome: Any) -> Callable[..., Any]:
    def execute(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        detail, entries = run(c, tx, target)

        async def push() -> None:
            for stream, fields in entries:
                await c.gw.redis.xadd(stream, fields)
        return outcome(detail, [push] if entries else [])
    return execute


def _who(c: Any) -> tuple[str, str | None]:
    """Who asked for the request being carried out and, when a second person approved
    it, who approved it (None otherwise), by their user names as the console names
    operators (gateway.operator_names): their `by` and `approved_by`
    (actions.Context.who), never the approver alone as if they had asked."""
    who = c.who()
    return who["by"], who.get("approved_by")


def _note(c: Any, tx: Any) -> str:
    """The note of the request being carried out."""
    row = tx.query_one("SELECT note FROM ops_requests WHERE id = ?", (c.request_id,))
    return (row[0] if row else "").strip()


def _params(c: Any, tx: Any) -> dict[str, Any]:
    """The params of the request being carried out, as it recorded them."""
    row = tx.query_one("SELECT params FROM ops_requests WHERE id = ?", (c.request_id,))
    return json.loads(row[0]) if row and row[0] else {}


def _checked_note(c: Any, tx: Any, rule: Callable[[str], list[Problem]]) -> str:
    """The note of the request being carried out, refused when `rule` finds problems
    with it (a request recorded before its note was checked so)."""
    note = _note(c, tx)
    problems = rule(note)
    if problems:
        raise ValidationFailed(problems)
    return note


def _return(c: Any, tx: Any, target: str) -> tuple[dict[str, Any], list[Entry]]:
    """The return asked for by the request's author and approved by the operator carrying
    it out: both recorded (the return's `requested_by` is who asked, the original's
    `return_requested` names both), never the approver alone as if they had asked."""
    note = _checked_note(c, tx, return_note_problems)
    by, approved_by = _who(c)
    ret, entries = returns.request_tx(c.gw, tx, target, note or OPERATOR_RETURN_REASON,
                                      by, c.now, approved_by=approved_by)
    return {"payment": target, "return_id": ret["id"]}, entries


def _npc_cancel(c: Any, tx: Any, target: str) -> tuple[dict[str, Any], list[Entry]]:
    by, approved_by = _who(c)
    return cancels.request_tx(c.gw, tx, target, "cancelled_by_operator", by, c.now,
                              approved_by)


def _status_query(c: Any, tx: Any, target: str) -> tuple[dict[str, Any], list[Entry]]:
    """Asked by whoever asked: a question needs no second person (ACTIONS)."""
    by, _ = _who(c)
    return status.request_tx(c.gw, tx, target, by, c.now)


# What a keep records when its request has no note.
KEPT_WITHOUT_NOTE = "kept by an operator"


def _suspense_keep(c: Any, tx: Any, target: str) -> tuple[dict[str, Any], list[Entry]]:
    """The item kept with the request's note as the reason (what the operator is doing
    about it: GET /v1/transfers/{id}/exceptions and the history show it)."""
    note = _note(c, tx) or KEPT_WITHOUT_NOTE
    by, _ = _who(c)  # a keep needs no second person (ACTIONS)
    return suspense.keep_tx(c.gw, tx, target, by, note, c.now), []


def _suspense_release(c: Any, tx: Any, target: str) -> tuple[dict[str, Any], list[Entry]]:
    by, approved_by = _who(c)
    return suspense.unkeep_tx(c.gw, tx, target, by, c.now, approved_by), []


def _suspense_apply(c: Any, tx: Any, target: str) -> tuple[dict[str, Any], list[Entry]]:
    note = _checked_note(c, tx, write_off.note_problems)
    by, approved_by = _who(c)
    return debit_suspense.apply_tx(c.gw, tx, target, _params(c, tx), by, note,
                                   c.request_id, c.now, approved_by), []


def _suspense_return(c: Any, tx: Any, target: str) -> tuple[dict[str, Any], list[Entry]]:
    note = _checked_note(c, tx, debit_suspense.return_note_problems)
    by, approved_by = _who(c)
    return debit_suspense.return_tx(c.gw, tx, target, _params(c, tx), by, note,
                                    c.request_id, c.now, approved_by)


PRECONDITIONS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "return": returns.check_returnable, "npc_cancel": cancels.check_cancellable,
    "status_query": status.check_queryable,
    "suspense_keep": suspense.check_keepable, "suspense_release": suspense.check_kept,
}

EXECUTORS = {"return": _return, "npc_cancel": _npc_cancel, "status_query": _status_query,
             "suspense_keep": _suspense_keep, "suspense_release": _suspense_release,
             "suspense_apply": _suspense_apply, "suspense_return": _suspense_return}
