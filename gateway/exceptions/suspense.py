"""Automatic return of money left in suspense (待销账).

Money that could not be credited waits in suspense for someone to find its owner. After
`days` HVPS working days (default 3, counted from the day after it arrived, by the
business calendar, on the gateway's work date) it is returned to the sender
(returns.py) with the reason `AUTO_REASON`. Only items never returned before are taken:
once a return of an item failed, people decide what happens to it next. Returns go by
HVPS (hvps.111), so only HVPS customer credits are taken; BEPS suspense stays with people.
Nor is a credit the screening parked in suspense (its reason `screening_...`,
gateway.screening.parked) ever taken: money from or for a listed party waits for a
person's decision (applied, or returned by operators under dual control), never goes
back to a listed party on a timer.

An operator may keep an item from this (`keep`), for instance while the customer is
being traced, and let it go again (`unkeep`). An automatic return the gateway cannot
make (a refusal by the ledger, say) keeps the item, with the refusal as its
note, and alerts the operators, so the same failure is not repeated at every sweep.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from gateway import payments
from gateway.errors import Conflict, PaygateError, Problem, ValidationFailed
from gateway.exceptions import returns, schema
from gateway.exceptions.wire import Entry
from gateway.ops import control
from gateway.states import parked_by_screening, parked_sql

log = logging.getLogger("paygate.exceptions")

DEFAULT_DAYS = 3
DAYS_MAX = 30          # a month in suspense is a case for people, not for a timer
AUTO_REASON = "suspense_not_claimed"
AUTO_BY = "auto_return"
SWEEP_BATCH_MAX = 50   # returns started per sweep; the rest wait for the next sweep

_CANDIDATES = (
    "SELECT p.id, p.work_date FROM payments p WHERE p.direction = 'in' "
    "AND p.state = 'suspense' AND p.msg_type = 'hvps.111.001.01' AND p.work_date < ? "
    f"AND NOT {parked_sql('p')} "
    "AND NOT EXISTS (SELECT 1 FROM exc_suspense_keep k WHERE k.payment_id = p.id) "
    "AND NOT EXISTS (SELECT 1 FROM exc_returns r WHERE r.original_id = p.id) "
    "ORDER BY p.work_date, p.id LIMIT ?")


def check_days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= DAYS_MAX:
        raise ValidationFailed(Problem("suspense_return_days_out_of_range",
                                       "suspense_return_working_days", days,
                                       f"a whole number of working days from 1 to {DAYS_MAX}"))
    return days


def due(calendar: Any, received_on: date, today: date, days: int) -> bool:
    """Whether `days` working days have passed after `received_on`, up to `today`."""
    counted, day = 0, received_on
    while counted < days and day < today:
        day += timedelta(days=1)
        if calendar.is_working_day(day):
            counted += 1
    return counted >= days


def sweep_tx(gw: Any, tx: Any, now: datetime, days: int) -> list[Entry]:
    """Start the returns of the suspense items that are due."""
    today = gw.work_date
    entries: list[Entry] = []
    for payment_id, work_date in tx.query(_CANDIDATES, (today.isoformat(), SWEEP_BATCH_MAX)):
        if not due(gw.calendar, date.fromisoformat(work_date), today, days):
            continue
        # The candidates were read before an operator's keep in another process may have
        # committed: with the item locked (keep_tx locks it too), look again.
        payments.get(tx, payment_id, lock=True)
        if schema.kept(tx, payment_id):
            continue
        try:
            # Operators deciding the item (an application waiting for its second
            # person): the timer does not decide under them; the next sweep looks again.
            control.refuse_core_overtaking(tx, payment_id, "automatic return", now)
        except Conflict as exc:
            log.info("event=automatic_return_waits payment=%s pending_request=%s",
                     payment_id, exc.problems[0].value)
            continue
        try:
            with tx.savepoint():
                _, queued = returns.request_tx(gw, tx, payment_id, AUTO_REASON, AUTO_BY, now)
        except PaygateError as exc:
            schema.keep(tx, payment_id, AUTO_BY, f"automatic return refused: {exc.code}", now)
            gw.alert(tx, "automatic_return_refused", payment=payment_id, refusal=exc.code)
            continue
        log.info("event=automatic_return payment=%s received_on=%s days=%s", payment_id,
                 work_date, days)
        entries += queued
    return entries


def check_in_suspense(payment: dict[str, Any]) -> None:
    if payment["direction"] != "in" or payment["state"] != "suspense":
        raise ValidationFailed(Problem("payment_not_in_suspense", "/id", payment["state"],
                                       "an incoming payment in suspense"))


def check_keepable(tx: Any, payment: dict[str, Any]) -> None:
    """An operator's keep is asked for an item in suspense not kept already (reads only;
    keeping a kept item again changes nothing when it runs)."""
    check_in_suspense(payment)
    _refuse_parked(payment, "suspense_keep")
    if schema.kept(tx, payment["id"]):
        raise Conflict(Problem("suspense_already_kept", "/target", payment["id"],
                               "a suspense item the automatic return may take"))


def check_kept(tx: Any, payment: dict[str, Any]) -> None:
    """An operator's release is asked for an item in suspense that is kept."""
    check_in_suspense(payment)
    _refuse_parked(payment, "suspense_release")
    if not schema.kept(tx, payment["id"]):
        raise Conflict(Problem("suspense_not_kept", "/target", payment["id"],
                               "a suspense item kept from the automatic return"))


def _refuse_parked(payment: dict[str, Any], action: str) -> None:
    """A credit the screening parked is never the automatic return's to take
    (`sweep_tx` leaves it): keeping it from that return, or giving it back, would
    change nothing, and offering either beside its application and return would say
    otherwise. Refused, so neither the detail view nor a request offers them."""
    if not parked_by_screening(payment):
        return
    raise Conflict(Problem(
        "suspense_item_parked_by_screening", "/target", payment["reason"],
        "a suspense item the automatic return may take (not one the screening parked)",
        f"{action} of payment {payment['id']}: the screening parked it "
        f"({payment['reason']}) and the automatic return never takes it; operators apply "
        "it to an account or return it, under dual control (suspense_apply, return)"))


def keep_tx(gw: Any, tx: Any, payment_id: str, by: str, note: str,
            now: datetime) -> dict[str, Any]:
    payment = payments.get(tx, payment_id, lock=True)  # against the sweep: sweep_tx
    check_in_suspense(payment)
    added = schema.keep(tx, payment_id, by, note, now)
    if added:
        payments.transition(tx, payment, "suspense", "automatic_return_kept", now,
                            gw.notifier, by=by, note=note)
    return {"payment": payment_id, "kept": True, "already": not added}


def unkeep_tx(gw: Any, tx: Any, payment_id: str, by: str, now: datetime,
              approved_by: str | None = None) -> dict[str, Any]:
    """Let the automatic return take the item again (`by` who asked, `approved_by` who
    approved it under dual control). Refused once the item has left
    suspense (applied, credited or returned meanwhile): allowing the return of money
    that is no longer in suspense would tell of a change that cannot happen."""
    payment = payments.get(tx, payment_id, lock=True)
    check_in_suspense(payment)
    removed = schema.unkeep(tx, payment_id)
    if removed:
        payments.transition(tx, payment, payment["state"], "automatic_return_allowed", now,
                            gw.notifier, by=by, **payments.approval(approved_by))
    return {"payment": payment_id, "kept": False, "changed": removed}
