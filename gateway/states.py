"""The states the core system sees, and the only transitions allowed between them.

CONTRACT.md §5: few, stable, documented. Richer internal detail (which message is on the
wire, which lane, how many attempts) lives in the outbox and the history, never here.
"""

from __future__ import annotations

from typing import Any, Mapping

from gateway.errors import Conflict, Problem
from gateway.messages import beps127

OUT_STATES = ("accepted", "held", "sent", "queued", "netted", "settled", "rejected",
              "cancelled", "returned", "unknown")
# An incoming credit is `received`, then `credited` or in `suspense`, and may be
# `returned`; an inbound BEPS debit (beps.127) our receipt paid is `netted` with the
# receipt, then `settled` with its round, and one the receipt refused is `rejected`.
IN_STATES = ("received", "credited", "suspense", "netted", "settled", "rejected",
             "returned")
FINAL = frozenset({"settled", "rejected", "cancelled", "returned"})
# Final for the core system (CONTRACT.md §5): the money of an incoming payment is where
# it stays. An inbound debit paid is final once netted (DOMAIN.md §1; only its round's
# settlement follows, no one's action), and one our receipt refused (RJ01 no mandate,
# RJ06 stopped, RJ08 failed by the review) is `rejected` for good.
FINAL_IN = frozenset({"credited", "netted", "settled", "returned", "rejected"})

# Reasons of a payment held because its message died on the way to the NPC; the reason
# goes on with what happened (", the NPC answered 400", or the failure).
HELD_REFUSED_AT_LINK = "refused_at_link"
HELD_DEAD_LETTERED = "dead_lettered"
# The reason of an HVPS payment still `accepted` on its lane while HVPS sending is held
# after a refused ccms.801 (gateway.status_hold); cleared when it moves on.
HVPS_SENDING_HELD = "hvps_sending_held"
# Reasons of a payment the amount review or the screening holds (gateway.ops.review): an
# outgoing one `held`; a debit another bank sent us `received`, unpaid, our receipt
# waiting for operators (gateway.beps.debit_review); a credit another bank sent us in
# `suspense`, its money parked there (gateway.screening.parked). None is a state of its
# own.
SCREENING_REASON_PREFIX = "screening_"
REVIEW_REASON_PREFIXES = ("review_", SCREENING_REASON_PREFIX)

TRANSITIONS: dict[str, frozenset[str]] = {
    # outgoing
    # accepted → settled: an internal book transfer (系统内) settles in our own ledger.
    "accepted": frozenset({"held", "sent", "settled", "rejected", "cancelled"}),
    "held": frozenset({"accepted", "sent", "rejected", "cancelled"}),
    # sent → held: the NPC refused the message itself (4xx) or it died on the way (dead
    # letter); nothing reached the NPC, and an operator retries or cancels it.
    "sent": frozenset({"held", "queued", "netted", "settled", "rejected", "cancelled",
                       "unknown"}),
    # BEPS: a package queued for netting (PR11: over our net debit cap, or our clearing
    # balance short) is netted later.
    "queued": frozenset({"netted", "settled", "rejected", "cancelled", "unknown"}),
    "unknown": frozenset({"sent", "queued", "netted", "settled", "rejected", "cancelled"}),
    # netted → returned: only our BEPS debit whose money waited in suspense
    # (SUSPENSE_DEBIT_ONLY).
    "netted": frozenset({"settled", "returned"}),
    "settled": frozenset({"returned"}),
    # rejected, cancelled → settled: only when the NPC settles a payment the gateway had
    # ended (its message delivered after all); booked again from the payer or to other
    # receivables (gateway.late_results).
    # rejected, cancelled → netted, returned: only our BEPS debit with money in suspense
    # (SUSPENSE_DEBIT_ONLY).
    "rejected": frozenset({"settled", "netted", "returned"}),
    "cancelled": frozenset({"settled", "netted", "returned"}),
    # incoming ("returned" is shared: an outgoing payment returned by the payee's bank,
    # or an incoming one we sent back)
    # An inbound BEPS debit (beps.127) is received, then paid by our receipt and netted,
    # or refused in the receipt (rejected).
    "received": frozenset({"credited", "suspense", "netted", "rejected"}),
    "suspense": frozenset({"credited", "returned"}),
    "credited": frozenset({"returned"}),
    "returned": frozenset(),
}


# Changes out of a final state (CONTRACT.md §5) that only our BEPS debit whose collected
# money waits in suspense under a pending write-off number may make
# (gateway.exceptions.debit_suspense): one that ended unpaid (given up by operators,
# `rejected` or `cancelled`) and was paid after all becomes `netted` (or `settled` once
# its round has) when operators apply the money to our customer, and any such debit
# becomes `returned` when the return of the money to the payer bank nets. Every other
# payment keeps these states final: the change is refused.
SUSPENSE_DEBIT_ONLY = frozenset({("rejected", "netted"), ("rejected", "returned"),
                                 ("cancelled", "netted"), ("cancelled", "returned"),
                                 ("netted", "returned")})


# (direction, state) of the payments a review's reason holds (`held_for_review`) before
# they move: the review's reasons or the screening's.
_HELD_FOR_REVIEW = (("out", "held"), ("in", "received"))


def held_for_review(payment: Mapping[str, Any]) -> bool:
    """Whether the amount review or the screening holds the payment now: outgoing and
    `held`, or incoming and still `received` (a debit another bank sent us), with a
    reason of REVIEW_REASON_PREFIXES; or a credit the screening parked in `suspense`
    for operators (`parked_by_screening`)."""
    reason = payment.get("reason")
    return parked_by_screening(payment) or (
        bool(reason) and reason.startswith(REVIEW_REASON_PREFIXES)
        and (payment.get("direction"), payment.get("state")) in _HELD_FOR_REVIEW)


def parked_by_screening(payment: Mapping[str, Any]) -> bool:
    """Whether the payment is a credit another bank sent us whose money the screening
    parked in suspense, waiting for operators (gateway.screening.parked): incoming, in
    `suspense`, its reason the screening's (SCREENING_REASON_PREFIX): the amount
    review's prefix never parks a credit. Another suspense credit (the ledger's
    `account_not_found`, say) is not held, whatever happened to its returns since (a
    return's failure is recorded in the history, never as the original's reason:
    gateway.exceptions.outcomes.return_failed). `parked_sql` is the same test in SQL."""
    reason = payment.get("reason")
    return (payment.get("direction"), payment.get("state")) == ("in", "suspense") \
        and bool(reason) and reason.startswith(SCREENING_REASON_PREFIX)


def parked_sql(alias: str = "") -> str:
    """`parked_by_screening` as an SQL condition on a payments row (`alias` its table's
    name in the statement, if any): the prefix compared exactly (`starts_with_sql`),
    a reason that is NULL giving false, not NULL, so that NOT (...) holds for it."""
    at = f"{alias}." if alias else ""
    return (f"({at}direction = 'in' AND {at}state = 'suspense' AND "
            f"{starts_with_sql(f'{at}reason', SCREENING_REASON_PREFIX)})")


def starts_with_sql(column: str, prefix: str) -> str:
    """An SQL condition that `column` begins with `prefix`, compared exactly: its first
    characters equal to the prefix, never a LIKE pattern, whose `_` would match any one
    character (`review_` taking `reviewX...` too) and which SQLite compares without
    case. A NULL column gives false, not NULL, so that NOT (...) holds for it. `prefix`
    is our own constant (ASCII, no quote), never a client's text."""
    assert prefix.isascii() and "'" not in prefix, prefix
    return f"substr(COALESCE({column}, ''), 1, {len(prefix)}) = '{prefix}'"


def is_suspense_debit(payment: Mapping[str, Any] | None) -> bool:
    """Whether the payment is our BEPS debit (beps.127) whose money went to suspense."""
    return (payment is not None and payment.get("direction") == "out"
            and payment.get("msg_type") == beps127.MESSAGE_TYPE
            and payment.get("pending_no") is not None)


def allowed_from(current: str, payment: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The states a payment in `current` may go to; the SUSPENSE_DEBIT_ONLY ones only
    when `payment` (its row) is a suspense debit."""
    if is_suspense_debit(payment):
        return TRANSITIONS.get(current, frozenset())
    return _ALLOWED_PLAIN.get(current, frozenset())


# The states each state may go to for every payment but a suspense debit, made once
# instead of at each change of a payment's state (two a payment on the HVPS path).
_ALLOWED_PLAIN: dict[str, frozenset[str]] = {
    current: frozenset(new for new in allowed if (current, new) not in SUSPENSE_DEBIT_ONLY)
    for current, allowed in TRANSITIONS.items()}


def check_transition(payment_id: str, current: str, new: str,
                     payment: Mapping[str, Any] | None = None) -> None:
    """Refuse (409 `state_transition_not_allowed`) a change TRANSITIONS does not allow, or
    one of SUSPENSE_DEBIT_ONLY for a payment (`payment`, its row; none for a group of
    payments) that is not a suspense debit."""
    if new == current:
        return
    allowed = allowed_from(current, payment)
    if new not in allowed:
        raise Conflict(Problem("state_transition_not_allowed", "/state", f"{current}->{new}",
                               "one of " + ", ".join(sorted(allowed)),
                               f"payment {payment_id} cannot go from {current} to {new}"))


def incoming_not_cancellable(path: str, payment: Mapping[str, Any]) -> Conflict:
    """The refusal of a cancel of an incoming payment, whichever road asked for it (the
    core system's cancel, an operator's cancel or npc-cancel, a BEPS item's stop), in
    whatever channel and state the payment is: a credit another bank sent us is returned
    to its sender, a debit it sent us is paid or refused in our receipt (beps.128), and
    neither is ever cancelled. Every payment we send may be cancelled in some state
    (HVPS, BEPS, a book transfer), which `expected` says. The code keeps the name clients
    already match on, from when only HVPS payments were cancelled (a stable code is
    never renamed); docs/errors.md says when it is answered."""
    payment_id, state = payment["id"], payment["state"]
    if payment.get("msg_type") == beps127.MESSAGE_TYPE:
        instead = ("a debit another bank sent us is paid or refused in our receipt "
                   "(beps.128), not cancelled")
    else:
        instead = ("a credit another bank sent us is returned to its sender (return), "
                   "not cancelled")
    return Conflict(Problem("cancel_only_for_outgoing_hvps_payments", path, payment_id,
                            "an outgoing payment (HVPS, BEPS or a book transfer): a cancel "
                            "is refused with this code for every incoming payment, "
                            "whatever its channel and state",
                            f"payment {payment_id} is incoming ({state}): only a payment "
                            f"we send is cancelled; {instead}"))
