"""The gateway's review hook over payments' rows: the screening alone.

Most payments are screened as they are taken, from the transfer a client sent
(Gateway.intake_hold: the screening and the amount review). Some are made by the gateway
itself from stored rows, and are screened from their row by the screening alone (no
amount review): a debit another bank sends us, before our receipt pays it
(gateway.beps.debits_in); our own debit, before its beps.127 carries it
(gateway.beps.debits_out); our return of a debit's money from suspense
(gateway.exceptions.debit_suspense). Why each takes no amount review is said there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Parties(NamedTuple):
    """What the screening reads of a payment's row: its payer's and payee's account and
    name (as it reads an outgoing transfer's); of a debit, the debtor's and the
    creditor's."""

    payer_account: str
    payer_name: str
    payee_account: str
    payee_name: str


def of_rows(gw: Any) -> Callable[[dict[str, Any]], str | None] | None:
    """The review hook's screening alone (gateway.ops.review.HoldReason.screening), its
    list looked up once, over payments' rows: the reason to hold one (which party, which
    field matched), None when clear; None when the gateway's hook has no screening."""
    screening = getattr(getattr(gw, "review", None), "screening", None)
    if screening is None:
        return None
    screen = screening(gw.settings)
    return lambda row: screen(Parties(row["payer_account"] or "", row["payer_name"] or "",
                                      row["payee_account"] or "", row["payee_name"] or ""))


def reason(gw: Any, row: dict[str, Any]) -> str | None:
    """The screening's reason to hold the one payment of `row`, None when clear."""
    screen = of_rows(gw)
    return screen(row) if screen is not None else None
