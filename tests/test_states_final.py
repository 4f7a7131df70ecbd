"""Final states stay final (CONTRACT.md §5) for every payment but our BEPS debit whose
money waits in suspense, which alone may leave them (gateway.states.SUSPENSE_DEBIT_ONLY);
the incoming states are every state an incoming payment reaches, and the console takes
a paid incoming debit as final."""
from __future__ import annotations

from datetime import datetime

import pytest

from gateway.errors import Conflict
from gateway.messages import beps121, beps127
from gateway.ops import control
from gateway.states import (
    FINAL_IN,
    IN_STATES,
    SUSPENSE_DEBIT_ONLY,
    TRANSITIONS,
    allowed_from,
    check_transition,
)

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


INCOMING_DEBIT = {"direction": "in", "msg_type": beps127.MESSAGE_TYPE, "pending_no": None}


def test_every_state_an_incoming_payment_reaches_is_an_incoming_state():
    """From `received`, by the changes an incoming payment may make (a debit another bank
    sent us included: paid, netted, settled; or refused), never out of IN_STATES."""
    reached, todo = {"received"}, ["received"]
    while todo:
        for new in allowed_from(todo.pop(), INCOMING_DEBIT):
            if new not in reached:
                reached.add(new)
                todo.append(new)
    assert reached == set(IN_STATES)


@pytest.mark.parametrize("state", ["netted", "settled", "rejected", "credited", "returned"])
def test_a_final_incoming_row_offers_no_action_and_is_not_read(state):
    """A debit another bank sent us that our receipt paid (`netted`, then `settled`) is
    final as a refused one is: the console's row offers nothing, its payment unread."""
    assert state in FINAL_IN
    rows = [{"id": "p1", "direction": "in", "state": state}]

    control.add_row_actions(None, _NoReads(), rows, datetime(2026, 12, 7, 10, 0))

    assert rows[0]["actions"] == []


@pytest.mark.parametrize("state", ["received", "suspense"])
def test_an_incoming_payment_still_moving_is_not_final(state):
    assert state not in FINAL_IN


class _NoReads:
    """A transaction no statement may run through (its cache of reads it has)."""

    def __init__(self) -> None:
        self.cache: dict[str, object] = {}

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"a final row was read ({name})")
