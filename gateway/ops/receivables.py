"""Receivables (其他应收款-待销账, subject 1221) as operators' actions and list.

A receivable is booked when the NPC settles a payment the gateway had ended and the
payer's account can no longer cover it (gateway.late_results): the money has left our
clearing account, and the claim on the payer waits under a pending write-off number of
kind 2 (`212070001`). Operators settle each item with one of two actions, under the
console's dual control, since both move money in the books:

- `receivable_collect` (an open receivable; a supervisor or director approves): Dr the
  account the item names, Cr 1221 (ledger.collect_receivable); the item is collected.
- `receivable_reverse` (an open or collected receivable; a supervisor or director
  approves; the note, required, says why): reverses what last changed the item
  (ledger.reverse_receivable), its collection (the item is open again) or else its
  booking (the item is void), on that posting's own work date only.

The target is the item's pending write-off number. A request that could not run now (an
item collected already, a number no receivable has) is refused when it is made, with
the error its execution would give; it is checked again when it runs. A collection needs
the account to cover the whole amount then (`payer_funds_insufficient`: the bank never
advances money): the request ends `failed` with that refusal, and may be asked again
once the customer has paid in. The payment the item was booked for gets
`receivable_collected` or `receivable_reversed` in its history.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway import payments
from gateway.errors import NotFound, PaygateError, Problem, ValidationFailed, with_paths
from gateway.money import format_yuan
from ledger import LedgerError
from ledger import numbers

COLLECT = "receivable_collect"
REVERSE = "receivable_reverse"
ACTIONS = (COLLECT, REVERSE)
TARGET_EXPECTED = ("a receivable's pending write-off number (其他应收款-待销账): 9 digits "
                   "beginning with 2, such as 212070001")
STATES = ("open", "collected", "void")
LIST_MAX = 500  # the ledger's own bound on one list


def is_receivable_no(text: Any) -> bool:
    """A pending write-off number of the receivables' kind."""
    return numbers.validate_pending_no(text) and text[0] == numbers.PENDING_KIND_RECEIVABLE


def reverse_note_problems(note: str) -> list[Problem]:
    """A correction says why: a reversal's request needs a note."""
    if note.strip():
        return []
    return [Problem("note_required", "/note", note,
                    "why the receivable is reversed (a correction is always explained)")]


def check(gw: Any, tx: Any, action: str, target: str) -> None:
    """Refuse, with the error the execution would give, a request that could not run
    now: an unknown number, a collection of an item not open, a reversal of a void one."""
    item = _item(gw, tx, target)
    if action == COLLECT and item.state != "open":
        raise _at_target(LedgerError("receivable_not_open", item.state, "an open receivable",
                                     "pending_no"))
    if action == REVERSE and item.state == "void":
        raise _at_target(LedgerError("receivable_already_void", item.pending_no,
                                     "an open or collected receivable", "pending_no"))


def collect(gw: Any, tx: Any, request_id: int, who: dict[str, str], target: str,
            now: Any) -> dict[str, Any]:
    """Debit the account a receivable names and close the item. `who`: the request's
    author (`by`) and its approver (`approved_by`), as actions.Context.who names them."""
    item = _item(gw, tx, target)
    try:
        entry_id = gw.ledger.collect_receivable(tx, f"ops:{request_id}:{COLLECT}",
                                                item.pending_no, item.account_no,
                                                gw.work_date)
    except LedgerError as exc:
        raise _at_target(exc) from None
    _tell_payment(tx, item.ref, "receivable_collected", now, receivable=item.pending_no,
                  account=item.account_no, amount_fen=item.amount_fen, ledger_entry=entry_id,
                  **who)
    return {"receivable": item.pending_no, "state": "collected", "account": item.account_no,
            "amount_fen": item.amount_fen, "amount": format_yuan(item.amount_fen),
            "payment": item.ref, "ledger_entry": entry_id}


def reverse(gw: Any, tx: Any, request_id: int, who: dict[str, str], target: str,
            now: Any) -> dict[str, Any]:
    """Reverse what last changed a receivable: its collection, else its booking (the
    ledger's reversal by the approver carrying it out; `who` as for `collect`)."""
    before = _item(gw, tx, target)
    try:
        entry_id, after = gw.ledger.reverse_receivable(
            tx, f"ops:{request_id}:{REVERSE}", before.pending_no, gw.work_date,
            who.get("approved_by", who["by"]))
    except LedgerError as exc:
        raise _at_target(exc) from None
    _tell_payment(tx, before.ref, "receivable_reversed", now, receivable=before.pending_no,
                  was=before.state, now_state=after.state, ledger_entry=entry_id,
                  **who)
    return {"receivable": before.pending_no, "was": before.state, "state": after.state,
            "amount_fen": before.amount_fen, "amount": format_yuan(before.amount_fen),
            "payment": before.ref, "ledger_entry": entry_id}


def listing(gw: Any, tx: Any, state: str, today: date) -> list[dict[str, Any]]:
    """The receivables in `state`, oldest first, as the console lists them."""
    return [{"pending_no": r.pending_no, "state": r.state, "amount_fen": r.amount_fen,
             "amount": format_yuan(r.amount_fen), "account": r.account_no,
             "payment": r.ref, "work_date": r.work_date, "age_days": r.age_days,
             "reason": r.reason}
            for r in gw.ledger.receivables_in(tx, state, today, LIST_MAX)]


def _item(gw: Any, tx: Any, target: str) -> Any:
    if not is_receivable_no(target):
        raise ValidationFailed(Problem("target_malformed", "/target", target,
                                       TARGET_EXPECTED))
    try:
        return gw.ledger.find_receivable(tx, target)
    except LedgerError as exc:
        raise NotFound(_at_target(exc).problems) from None


def _tell_payment(tx: Any, payment_id: str, event: str, now: Any, **detail: Any) -> None:
    """A line in the history of the payment the receivable was booked for, its state
    kept (a receivable names its payment by id; one booked for no payment of ours is
    told by the request's outcome and the audit alone)."""
    try:
        payment = payments.get(tx, payment_id)
    except NotFound:
        return
    payments.transition(tx, payment, payment["state"], event, now, None, **detail)


def _at_target(exc: PaygateError) -> PaygateError:
    """The ledger names a receivable `pending_no`; a request names it `/target`."""
    return with_paths(exc, lambda path: "/target" if path == "pending_no" else path)
