"""The states the core system sees, and the only transitions allowed between them.

CONTRACT.md §5: few, stable, documented. Richer internal detail (which message is on the
wire, which lane, how many attempts) lives in the outbox and the history, never here.
"""

from __future__ import annotations

from gateway.errors import Conflict, Problem

OUT_STATES = ("accepted", "held", "sent", "queued", "netted", "settled", "rejected",
              "cancelled", "returned", "unknown")
IN_STATES = ("received", "credited", "suspense", "returned")
FINAL = frozenset({"settled", "rejected", "cancelled", "returned"})
FINAL_IN = frozenset({"credited", "returned"})

# Reasons of a payment held because its message died on the way to the NPC; the reason
# goes on with what happened (", the NPC answered 400", or the failure).
HELD_REFUSED_AT_LINK = "refused_at_link"
HELD_DEAD_LETTERED = "dead_lettered"
# The reason of an HVPS payment still `accepted` on its lane while HVPS sending is held
# after a refused ccms.801 (gateway.status_hold); cleared when it moves on.
HVPS_SENDING_HELD = "hvps_sending_held"

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
    # netted → returned: our BEPS debit whose money waited in suspense, sent back to the
    # payer bank by a return the NPC netted (gateway.exceptions.debit_suspense).
    "netted": frozenset({"settled", "returned"}),
    "settled": frozenset({"returned"}),
    # rejected, cancelled → settled: only when the NPC settles a payment the gateway had
    # ended (its message delivered after all); booked again from the payer or to other
    # receivables (gateway.late_results).
    # rejected, cancelled → netted, settled, returned: our BEPS debit that ended unpaid
    # (given up by operators) and was paid after all, its money in suspense until
    # operators apply it to our customer (netted, or settled once its round has) or
    # return it to the payer bank (returned); gateway.exceptions.debit_suspense.
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


def check_transition(payment_id: str, current: str, new: str) -> None:
    if new == current:
        return
    if new not in TRANSITIONS.get(current, frozenset()):
        raise Conflict(Problem("state_transition_not_allowed", "/state", f"{current}->{new}",
                               "one of " + ", ".join(sorted(TRANSITIONS.get(current, ()))),
                               f"payment {payment_id} cannot go from {current} to {new}"))
