"""Final states stay final (CONTRACT.md §5) for every payment but our BEPS debit whose
money waits in suspense, which alone may leave them (gateway.states.SUSPENSE_DEBIT_ONLY)."""
from __future__ import annotations

import pytest

from gateway.errors import Conflict
from gateway.messages import beps121, beps127
from gateway.states import SUSPENSE_DEBIT_ONLY, TRANSITIONS, allowed_from, check_transition

SUSPENSE_DEBIT = {"direction": "out", "msg_type": beps127.MESSAGE_TYPE, "pending_no": "P1"}
OTHERS = {
    "debit without a pending number": dict(SUSPENSE_DEBIT, pending_no=None),
    "outgoing BEPS credit": dict(SUSPENSE_DEBIT, msg_type=beps121.MESSAGE_TYPE),
    "incoming debit": dict(SUSPENSE_DEBIT, direction="in"),
    "no payment row (a group)": None,
}


@pytest.mark.parametrize("current,new", sorted(SUSPENSE_DEBIT_ONLY))
def test_suspense_debit_may_leave(current, new):
    check_transition("p1", current, new, SUSPENSE_DEBIT)


@pytest.mark.parametrize("current,new", sorted(SUSPENSE_DEBIT_ONLY))
@pytest.mark.parametrize("other", sorted(OTHERS))
def test_any_other_payment_refused(current, new, other):
    with pytest.raises(Conflict) as refused:
        check_transition("p1", current, new, OTHERS[other])
    problem = refused.value.problems[0]
    assert problem.code == "state_transition_not_allowed"
    assert new not in problem.expected


@pytest.mark.parametrize("current,new", [("rejected", "settled"), ("cancelled", "settled"),
                                         ("netted", "settled"), ("settled", "returned")])
def test_changes_open_to_every_payment(current, new):
    # A late settlement (gateway.late_results), a round settling, a payee bank's return.
    check_transition("p1", current, new, OTHERS["outgoing BEPS credit"])
    check_transition("p1", current, new)


@pytest.mark.parametrize("current", sorted(TRANSITIONS) + ["no_such_state"])
@pytest.mark.parametrize("payment", sorted(OTHERS) + ["suspense debit"])
def test_allowed_changes_are_the_transitions_less_the_suspense_debits_own(current, payment):
    """`allowed_from` (its table made once) gives, for every state and kind of payment,
    TRANSITIONS less what SUSPENSE_DEBIT_ONLY keeps for a suspense debit."""
    row = SUSPENSE_DEBIT if payment == "suspense debit" else OTHERS[payment]
    every = TRANSITIONS.get(current, frozenset())
    expected = every if row is SUSPENSE_DEBIT else frozenset(
        new for new in every if (current, new) not in SUSPENSE_DEBIT_ONLY)
    assert allowed_from(current, row) == expected
    for new in every:
        if new in expected:
            check_transition("p1", current, new, row)
        else:
            with pytest.raises(Conflict):
                check_transition("p1", current, new, row)
