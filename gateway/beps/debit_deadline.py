"""Our debits (beps.127) whose receipt is overdue, and operators giving them up.

A beps.127 package names a return deadline (PKGRtrLtd, `debit_return_days` after
sealing) by which the payer bank should answer with its beps.128. The deadline passing
says only that the answer is late, not what it is: the payer bank may still pay, and a
paid debit netted at the NPC is final there (DOMAIN.md §1: final once netted). Had the
gateway ended such a debit `rejected` at the deadline, the core system, told that final
state, could collect the bill again while the late receipt credited our customer: paid
twice, and a final state that changed. So the deadline ends nothing:

- `mark_overdue` (the leader's sweep, every `deadline_check_s`): each debit of the
  package still waiting keeps its state (`sent`, or `queued`) with the reason
  `debit_receipt_overdue` and the history event `beps_debit_receipt_overdue`; the
  package is `overdue`; operators get the alert `debit_receipt_overdue` and, when the
  query desk is installed, a ccms.314 asks the payer bank about the package ("every
  doubt gets a query", DOMAIN.md §2), its reply coming back as any reply does. The core
  system hears nothing: the state is unchanged, and the GET view shows the reason.
- A receipt arriving later is handled as any receipt (debits_out.on_receipt): paid, the
  debit is netted and our customer credited once; refused, it is rejected.
- `give_up` (console action `debit_give_up`, requested with a note saying why, a
  supervisor or director approving): once the payer bank has said it will not pay, or
  the matter is settled otherwise, the debit is `rejected` (reason
  `debit_receipt_overdue`, event `beps_debit_given_up` naming who asked, who approved
  and why), and the core system is told. A paid receipt arriving after that goes to
  suspense, never to our customer (debits_out._paid).
"""

from __future__ import annotations

import importlib.util
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway import payments
from gateway.beps import build, items
from gateway.beps.debits_out import (RECEIPT_OVERDUE, UNANSWERED, WAITING,
                                     close_overdue_alert)
from gateway.errors import Conflict, PaygateError, Problem, ValidationFailed
from gateway.money import format_yuan
from gateway.store import after_commit, scope

if TYPE_CHECKING:
    from gateway.app import Gateway

ACTION = "debit_give_up"
ACTION_LABEL = {"en": "Give up an overdue debit", "zh": "放弃超期借记"}
EVENT_OVERDUE = "beps_debit_receipt_overdue"
EVENT_GIVEN_UP = "beps_debit_given_up"
NOTE_EXPECTED = ("why the debit is given up (the payer bank's reply to our query, a call "
                 "with it, ...): a note is required")
# The query asks about the package in words another bank's desk reads: our package's
# MsgId, its count and sum, and the deadline it missed.
QUERY_TEXT = ("我行普通借记业务包（报文标识号{msg_id}，{count}笔，金额{amount}元）已过回执期限"
              "（{deadline}）仍未收到回执，请查复处理结果。")


def mark_overdue(tx: Any, gw: Gateway, now: datetime) -> int:
    """Debits whose package's return deadline passed without a receipt: each marked
    overdue in its state, its package `overdue`, operators told and the payer bank
    asked; how many debits. A package is marked once (it leaves the states looked at)."""
    rows = tx.query("SELECT id, msg_id, sender, receiver, count, total_fen, deadline_at "
                    "FROM beps_packages WHERE direction = 'out' AND msg_type = ? "
                    "AND state IN ('sealed', 'sent', 'waiting') AND deadline_at < ?",
                    (build.DEBIT_TYPE, now.isoformat()))
    count = 0
    for package_id, msg_id, sender, receiver, total, amount_fen, deadline_at in rows:
        waiting = [p for p in items.package_payments(tx, package_id)
                   if p["state"] in UNANSWERED]
        query = _ask_payer_bank(tx, gw, {
            "msg_id": msg_id, "sender": sender, "receiver": receiver, "count": total,
            "total_fen": amount_fen, "deadline_at": deadline_at}, now) if waiting else None
        detail = {"reason": RECEIPT_OVERDUE, "package": package_id,
                  "deadline_at": deadline_at, **({"query": query} if query else {})}
        payments.transition_each(tx, [(p, p["state"], EVENT_OVERDUE, detail)
                                      for p in waiting], now, gw.notifier)
        tx.execute("UPDATE beps_packages SET state = 'overdue', updated_at = ? WHERE id = ?",
                   (now.isoformat(), package_id))
        gw.alert(tx, "debit_receipt_overdue", package=package_id, receiver=receiver,
                 deadline_at=deadline_at, waiting=len(waiting),
                 amount_fen=sum(p["amount_fen"] for p in waiting), query=query)
        count += len(waiting)
    return count


def _ask_payer_bank(tx: Any, gw: Gateway, package: dict[str, Any],
                    now: datetime) -> str | None:
    """A ccms.314 to the payer bank about the package, sent once committed; its query id,
    or None when the gateway has no query desk or the query could not be made (logged
    and raised: the debits are marked and operators told all the same)."""
    desk = _query_desk(gw)
    if desk is None:
        return None
    from gateway.queries import outgoing
    text = QUERY_TEXT.format(msg_id=package["msg_id"], count=package["count"],
                             amount=format_yuan(package["total_fen"]),
                             deadline=package["deadline_at"][:16].replace("T", " "))
    try:
        with scope(tx):
            row, pushes = outgoing.ask_about_package(tx, desk, package, build.DEBIT_TYPE,
                                                     text, now)
    except PaygateError as exc:
        gw.alert(tx, "debit_receipt_query_failed", msg_id=package["msg_id"],
                 receiver=package["receiver"], error=exc.to_dict())
        return None
    for stream, outbox_id in pushes:
        after_commit(tx, stream, {"outbox": str(outbox_id)})
    return str(row["id"])


def _query_desk(gw: Gateway) -> Any:
    """The gateway's query desk (gateway.queries), None when it has none."""
    if importlib.util.find_spec("gateway.queries") is None:
        return None
    from gateway.queries import QueryDesk
    return next((ext for ext in getattr(gw, "extensions", ()) if isinstance(ext, QueryDesk)),
                None)


# Operators give a debit up

def check_give_up(tx: Any, payment: dict[str, Any]) -> str:
    """Refuse giving up a payment that is not our debit waiting past its deadline; the
    package it waits in."""
    row = tx.query_one("SELECT i.kind, k.id, k.state, k.deadline_at FROM beps_items i "
                       "LEFT JOIN beps_packages k ON k.id = i.package_id "
                       "WHERE i.payment_id = ?", (payment["id"],))
    if row is None or row[0] != items.DEBIT_OUT:
        raise ValidationFailed(Problem(
            "payment_not_our_debit", "/target", payment["id"],
            "a debit of ours (beps.127) waiting for the payer bank's receipt"))
    _, package_id, package_state, deadline_at = row
    if payment["state"] not in WAITING:
        raise Conflict(Problem(
            "debit_not_waiting_for_receipt", "/target", payment["state"],
            "a debit sent and waiting for its receipt",
            f"debit {payment['id']} is {payment['state']}: it has its answer already"))
    if package_state != "overdue":
        raise Conflict(Problem(
            "debit_receipt_not_overdue", "/target", package_state,
            "a debit whose package's return deadline has passed",
            f"the payer bank has until {deadline_at} to answer package {package_id}; "
            "wait for its receipt"))
    return str(package_id)


def give_up(gw: Gateway, tx: Any, payment_id: str, request_id: int, by: str,
            now: datetime) -> dict[str, Any]:
    """The overdue debit `rejected`, checked again with the payment locked (its receipt
    may have come since the request), recording who asked, who approved and why."""
    payment = payments.get(tx, payment_id, lock=True)
    package_id = check_give_up(tx, payment)
    requested_by, note = tx.query_one("SELECT requested_by, note FROM ops_requests "
                                      "WHERE id = ?", (request_id,))
    if not note.strip():  # a request recorded before its note was required
        raise ValidationFailed(note_problems(note))
    payments.transition(tx, payment, "rejected", EVENT_GIVEN_UP, now, gw.notifier,
                        reason=RECEIPT_OVERDUE, package=package_id, request=request_id,
                        requested_by=requested_by, approved_by=by, note=note.strip())
    close_overdue_alert(tx, package_id, f"the last, {payment_id}, given up by request "
                                        f"{request_id} (approved by {by}) at "
                                        f"{now.isoformat()}", now)
    return {"payment": payment_id, "state": "rejected", "reason": RECEIPT_OVERDUE,
            "package": package_id, "requested_by": requested_by, "approved_by": by}


def note_problems(note: str) -> list[Problem]:
    return [] if note.strip() else [Problem("note_required", "/note", note, NOTE_EXPECTED)]


def register() -> bool:
    """Add `debit_give_up` to the console's tables (a payment target, a second person
    approving, a note required); False when the product has no console."""
    if importlib.util.find_spec("gateway.ops.control") is None:
        return False
    from gateway.ops import actions, control

    def execute(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        return actions.Outcome(give_up(c.gw, tx, target, c.request_id, c.actor, c.now))

    control.RULES.setdefault(ACTION, control.Rule("payment", needs_approval=True))
    control.LABELS.setdefault(ACTION, ACTION_LABEL)
    control.NOTE_RULES.setdefault(ACTION, note_problems)
    actions.EXECUTORS.setdefault(ACTION, execute)
    actions.PRECONDITIONS.setdefault(
        ACTION, lambda tx, target, params: check_give_up(tx, payments.get(tx, target)))
    return True


def receipt_due(tx: Any, payment_id: str) -> str | None:
    """When the payer bank's receipt for our debit is due (its package's PKGRtrLtd as a
    time), shown under the debit's `beps` block; None for other items."""
    row = tx.query_one("SELECT k.deadline_at FROM beps_items i JOIN beps_packages k "
                       "ON k.id = i.package_id WHERE i.payment_id = ? AND i.kind = ?",
                       (payment_id, items.DEBIT_OUT))
    return row[0] if row else None
