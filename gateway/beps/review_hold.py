"""BEPS credits held at intake by the screening or the amount review (Gateway.intake_hold),
and our debits and suspense returns the screening holds (gateway.screening).

A credit the review hook holds is set aside as an operator's hold sets it (its item's
package id `items.HELD_OUT`, out of every package), its payment `held` with the hook's
reason (`screening_match_payee_name`, `review_amount_above_threshold`, ...). Only the
console's review decides it, as for an HVPS payment (gateway.ops.actions):

- review_approve (a supervisor or director): the item waits to be packed again, its
  payment `accepted`, its reason cleared; it leaves in the next package.
- review_reject (a supervisor or director): cancelled as any unpacked item is
  (gateway.beps.cancels), its payer's hold released in the ledger (our debits and
  suspense returns hold nothing).

A cancel by the core system or by an operator finds the item set aside and cancels it
at once, releasing its hold (gateway.beps.cancels). An operator's release is refused
(`payment_held_for_review`, gateway.ops.actions.refuse_if_held_for_review: it is for
items an operator held), as is a hold (already held).

The same two actions decide a debit another bank sent us that the screening holds
before our receipt pays it (gateway.beps.debit_review): each is handed there.
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import datetime
from typing import Any

from gateway import keys, payments, screening
from gateway.beps import cancels, debit_review, items, stops
from gateway.errors import Conflict, Problem

log = logging.getLogger("paygate.beps.review")

# What the review actions take: a BEPS credit the screening or the amount review set aside.
EXPECTED = "a payment held by the amount review or the screening"
IDS_PER_STATEMENT = 500  # items set aside by one statement


def held(tx: Any, gw: Any, row: dict[str, Any], reason: str, now: datetime
         ) -> dict[str, Any]:
    """The payment of an item just added set aside (`items.HELD_OUT`): `held`, `reason`."""
    log.info("event=beps_item_held_for_review payment=%s reason=%s", row["id"], reason)
    return payments.transition(tx, row, "held", "held", now, gw.notifier, reason=reason)


def set_aside(tx: Any, gw: Any, rows: list[dict[str, Any]], reasons: dict[str, str],
              now: datetime) -> None:
    """Items of a batch just added (waiting to be packed, uncommitted, so no packer has
    them) set aside, their payments `held` with the reason `reasons` gives each."""
    ids = [row["id"] for row in rows]
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        chunk = ids[start:start + IDS_PER_STATEMENT]
        tx.execute(f"UPDATE beps_items SET package_id = ? WHERE package_id IS NULL AND "
                   f"payment_id IN ({', '.join('?' * len(chunk))})",
                   (items.HELD_OUT, *chunk))
    changed = payments.transition_each(
        tx, [(row, "held", "held", {"reason": reasons[row["id"]]}) for row in rows],
        now, gw.notifier)
    for row, was in zip(changed, rows):
        was.update(row)
        log.info("event=beps_item_held_for_review payment=%s reason=%s", row["id"],
                 row["reason"])


def check(tx: Any, payment: dict[str, Any]) -> None:
    """Refused unless the payment is a BEPS credit the review hook set aside, or a debit
    received that the screening holds."""
    from gateway.ops.review import is_review_hold
    if payment["direction"] == "in":
        debit_review.check(tx, payment)
        return
    place = items.place(tx, payment["id"])
    if payment["state"] != "held" or not is_review_hold(payment["reason"]) \
            or place is None or place[1] != items.HELD_OUT:
        raise Conflict(Problem("payment_not_held_for_review", "/target", payment["reason"],
                               EXPECTED))


def approve(gw: Any, tx: Any, target: str, who: dict[str, Any], now: datetime
            ) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
    """The item waits to be packed: it leaves in the next package."""
    payment = payments.get(tx, target)
    if payment["direction"] == "in":
        return debit_review.approve(gw, tx, target, who, now), []
    check(tx, payment)
    if tx.execute("UPDATE beps_items SET package_id = NULL WHERE payment_id = ? AND "
                  "package_id = ?", (target, items.HELD_OUT)) != 1:
        raise Conflict(Problem("payment_not_held_for_review", "/target", payment["reason"],
                               EXPECTED, f"the item of payment {target} moved meanwhile"))
    payments.transition(tx, payment, "accepted", "review_approved", now, gw.notifier,
                        passed=payment["reason"],
                        **screening.passed_entries(gw, payment["reason"] or "", payment),
                        **who)
    tx.execute("UPDATE payments SET reason = NULL WHERE id = ?", (target,))
    return ({"payment": target, "state": "accepted", "was_held_for": payment["reason"]},
            [(keys.BEPS_TX, {"item": target})])


def reject(gw: Any, tx: Any, target: str, who: dict[str, Any], now: datetime
           ) -> dict[str, Any]:
    """Cancelled before packing, its payer's hold released."""
    payment = payments.get(tx, target)
    if payment["direction"] == "in":
        return debit_review.reject(gw, tx, target, who, now)
    check(tx, payment)
    done = cancels.request(gw, tx, payment, "review_rejected", who["by"], now)
    assert isinstance(done, dict), f"payment {target} was set aside, never packed"
    return done


def register() -> bool:
    """review_approve and review_reject of a BEPS credit, in the console's tables of
    actions by channel; False when the product has no console."""
    if importlib.util.find_spec("gateway.ops.control") is None:
        return False
    from gateway.ops import actions

    for name, run in (("review_approve", approve), ("review_reject", reject)):
        actions.CHANNEL_ACTIONS.setdefault(("beps", name), (
            lambda tx, t, p: check(tx, payments.get(tx, t)), stops.executor(run)))
    return True
