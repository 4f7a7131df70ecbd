"""What the router is asked: one outgoing credit transfer, before it has a channel.

Urgency follows CONTRACT.md §5: `normal` (NORM, header priority 3), `urgent` (HIGH, 2),
`extra_urgent` (URGT, 1). `when_closed` says what to do when the payment must go by
HVPS and HVPS is closed: `queue` it for the next opening, `refuse` it, or fall back to
`beps` within the BEPS cap; None leaves it to the configured default.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gateway.errors import ProblemList
from routing.fields import is_ascii_digits
from routing.kinds import kind_problem

# Header MesgPriority and ISO SttlmPrty for each urgency (SPEC.md header field 13).
PRIORITY = {"normal": 3, "urgent": 2, "extra_urgent": 1}
SETTLEMENT_PRIORITY = {"normal": "NORM", "urgent": "HIGH", "extra_urgent": "URGT"}
WHEN_CLOSED = ("queue", "refuse", "beps")
UPPER_ASCII = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class RouteRequest(NamedTuple):
    """What a route depends on (a tuple: one is made for every payment)."""

    payer_bank: str
    payee_bank: str
    amount_fen: int
    business_type: str
    business_kind: str | None = None
    urgency: str = "normal"
    when_closed: str | None = None
    customer: bool = True

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


def request_problems(req: RouteRequest) -> ProblemList:
    """Every rule the request's own fields break (bank codes are checked by the directory)."""
    problems = ProblemList()
    if type(req.amount_fen) is not int:
        problems.add("amount_fen_must_be_an_integer", "amount_fen", req.amount_fen,
                     "a whole number of fen")
    elif req.amount_fen <= 0:
        problems.add("amount_must_be_positive", "amount_fen", req.amount_fen,
                     "an amount above 0")
    if not _is_business_type(req.business_type):
        problems.add("business_type_must_be_a_letter_and_3_digits", "business_type",
                     req.business_type, "a CNAPS2 business type such as A100")
    if req.business_kind not in (None, "") and not is_ascii_digits(req.business_kind, 5):
        problems.add("business_kind_must_be_5_ascii_digits", "business_kind",
                     req.business_kind, "a CNAPS2 business kind such as 02102, or none")
    elif req.business_kind not in (None, ""):
        unknown = kind_problem(req.business_type, req.business_kind)
        if unknown is not None:
            problems.add(unknown[0], "business_kind", req.business_kind, unknown[1])
    if req.urgency not in PRIORITY:
        problems.add("urgency_unknown", "urgency", req.urgency, ", ".join(PRIORITY))
    if req.when_closed is not None and req.when_closed not in WHEN_CLOSED:
        problems.add("when_closed_unknown", "when_closed", req.when_closed,
                     ", ".join(WHEN_CLOSED) + ", or none for the configured default")
    if not isinstance(req.customer, bool):
        problems.add("customer_must_be_true_or_false", "customer", req.customer,
                     "true for a customer payment, false between institutions")
    return problems


def _is_business_type(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 4
        and value[0] in UPPER_ASCII
        and is_ascii_digits(value[1:], 3)
    )
