"""Internal book transfers (系统内) held at intake by the screening or the amount review.

A book transfer (payer and payee banks share our clearing account: the payee's account
is in our own ledger, Gateway._accept_internal) asks the review hook as every outgoing
customer payment does (Gateway.intake_hold). Clear, it settles at once (`settle`). Held,
its payment is `held` with the hook's reason (`screening_match_payee_name`,
`review_amount_above_threshold`, ...): the payer's funds stay held, nothing is credited,
nothing is sent. Only the console's review or a cancel ends it:

- review_approve (a supervisor or director): settled as intake would have settled it,
  the payee credited from the payer's hold; the payment `accepted`, then `settled`.
- review_reject (a supervisor or director): `cancelled` (`review_rejected`), its
  payer's hold released.
- a cancel by the core system (POST /v1/transfers/{id}/cancel) or by operators under
  dual control: `cancelled` at once, its payer's hold released.

An operator's release is refused (`payment_held_for_review`: it is for payments an
operator held), as for an HVPS or BEPS payment the review holds
(gateway.ops.actions.refuse_if_held_for_review).

An operator's hold is refused too, for every book transfer (`refuse_hold`): nothing of
one ever waits to be sent that a hold could stop. Held for review, it is held already
(`payment_already_held`, as an HVPS payment or BEPS item the review holds); any other
settled in our ledger in the transaction that took it, or was cancelled, and is final
(`book_transfer_not_holdable`).
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import datetime
from typing import Any

from gateway import payments
from gateway.errors import Conflict, PaygateError, Problem

log = logging.getLogger("paygate.internal")

CHANNEL = "internal"
# What the review's actions, and a cancel, take: a book transfer the review hook held.
EXPECTED = "a book transfer held by the amount review or the screening"


def settle(gw: Any, tx: Any, row: dict[str, Any], now: datetime,
           **detail: Any) -> dict[str, Any]:
    """The payer's hold goes to the payee's account in our ledger: `settled`."""
    try:
        gw.ledger.settle_internal(tx, f"{row['id']}:internal", int(row["hold_id"]),
                                  row["payee_account"], gw.work_date)
    except PaygateError as exc:
        raise PaygateError([p.at("/payee_account") for p in exc.problems],
                           exc.status) from None
    return payments.transition(tx, row, "settled", "internal_transfer_settled", now,
                               gw.notifier, settled_on=gw.work_date.isoformat(), **detail)


def held(tx: Any, gw: Any, row: dict[str, Any], reason: str, now: datetime
         ) -> dict[str, Any]:
    """A new book transfer the review hook holds: `held`, its funds held, none credited."""
    log.info("event=internal_transfer_held_for_review payment=%s reason=%s", row["id"],
             reason)
    return payments.transition(tx, row, "held", "held", now, gw.notifier, reason=reason)


def is_held(payment: dict[str, Any]) -> bool:
    from gateway.ops.review import is_review_hold
    return (payment["channel"], payment["direction"], payment["state"]) == (
        CHANNEL, "out", "held") and is_review_hold(payment["reason"])


def check(tx: Any, payment: dict[str, Any]) -> None:
    """Refused unless the payment is a book transfer the review hook holds."""
    if not is_held(payment):
        raise Conflict(Problem("payment_not_held_for_review", "/target", payment["reason"],
                               EXPECTED, f"payment {payment['id']} is {payment['state']}"))


def check_cancel(payment: dict[str, Any], path: str = "/target") -> None:
    """Refused unless a cancel can end the book transfer: one held by the review (any
    other settled at intake, and is final)."""
    if not is_held(payment):
        raise Conflict(Problem("payment_not_cancellable", path, payment["state"], EXPECTED,
                               f"book transfer {payment['id']} is {payment['state']}: "
                               "one not held settles at intake"))


def refuse_hold(payment: dict[str, Any]) -> None:
    """An operator's hold of a book transfer, refused with what it is: held for review
    already, or settled (or cancelled) and final."""
    pid, reason = payment["id"], payment["reason"]
    if is_held(payment):
        raise Conflict(Problem(
            "payment_already_held", "/target", reason,
            "a payment not held by an operator or for review",
            f"book transfer {pid} is held for review ({reason}): nothing of it is credited "
            f"until the review passes it (`paygate ops request review-approve {pid}`); "
            f"fail it (`paygate ops request review-reject {pid}`) or cancel it to release "
            "its payer's funds"))
    raise Conflict(Problem(
        "book_transfer_not_holdable", "/target", payment["state"],
        "an HVPS payment or a BEPS item not yet sent: a book transfer settles in our own "
        "ledger in the transaction that takes it, and waits only for the review",
        f"book transfer {pid} is {payment['state']}, final: nothing of it waits to be "
        "sent or settled, so a hold would stop nothing"))


def approve(gw: Any, tx: Any, target: str, who: dict[str, Any], now: datetime
            ) -> dict[str, Any]:
    """Settled as intake would have settled it."""
    payment = payments.get(tx, target, lock=True)
    check(tx, payment)
    row = payments.transition(tx, payment, "accepted", "review_approved", now, gw.notifier,
                              passed=payment["reason"], **who)
    tx.execute("UPDATE payments SET reason = NULL WHERE id = ?", (target,))
    row = settle(gw, tx, dict(row, reason=None), now)
    return {"payment": target, "state": row["state"], "was_held_for": payment["reason"]}


def cancel(gw: Any, tx: Any, payment: dict[str, Any], event: str, reason: str,
           who: dict[str, Any], now: datetime, path: str = "/target") -> dict[str, Any]:
    """`cancelled`, its payer's hold released."""
    check_cancel(payment, path)
    released = gw.ledger.release(tx, f"{payment['id']}:{event}", int(payment["hold_id"]),
                                 gw.work_date)
    payment = payments.transition(tx, payment, "cancelled", event, now, gw.notifier,
                                  reason=reason, released_entry=released, **who)
    gw.ended_unsettled(tx, payment, event, reason, now)
    return {"payment": payment["id"], "state": "cancelled", "reason": reason,
            "released_entry": released}


def register() -> bool:
    """review_approve, review_reject, cancel, release and hold of a book transfer, in the
    console's tables of actions by channel; False when the product has no console."""
    if importlib.util.find_spec("gateway.ops.control") is None:
        return False
    from gateway.ops import actions

    def who(c: Any) -> dict[str, Any]:
        return {"request": c.request_id, **c.who()}

    def run_approve(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        return actions.Outcome(approve(c.gw, tx, target, who(c), c.now))

    def run_reject(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        return actions.Outcome(cancel(c.gw, tx, payments.get(tx, target, lock=True),
                                      "review_rejected", "review_rejected", who(c), c.now))

    def run_cancel(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        return actions.Outcome(cancel(c.gw, tx, payments.get(tx, target, lock=True),
                                      "ops_cancelled", "cancelled_by_operator", who(c),
                                      c.now))

    def not_released(tx: Any, target: str, params: dict[str, Any]) -> Any:
        payment = payments.get(tx, target)
        raise Conflict(Problem("payment_not_held", "/target", payment["reason"],
                               "a payment held by an operator",
                               "a book transfer is held only by the review: pass or fail "
                               "it (review_approve, review_reject)"))

    def not_held(tx: Any, target: str, params: dict[str, Any]) -> Any:
        refuse_hold(payments.get(tx, target))

    def checked(tx: Any, target: str, params: dict[str, Any]) -> None:
        check(tx, payments.get(tx, target))

    def cancellable(tx: Any, target: str, params: dict[str, Any]) -> None:
        check_cancel(payments.get(tx, target))

    for name, precondition, run in (
            ("review_approve", checked, run_approve), ("review_reject", checked, run_reject),
            ("cancel", cancellable, run_cancel),
            ("release", not_released, lambda c, tx, t, p: not_released(tx, t, p)),
            ("hold", not_held, lambda c, tx, t, p: not_held(tx, t, p))):
        actions.CHANNEL_ACTIONS.setdefault((CHANNEL, name), (precondition, run))
    return True
