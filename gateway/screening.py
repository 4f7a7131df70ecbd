"""The gateway's review hook over payments' rows: the screening alone.

Most payments are screened as they are taken, from the transfer a client sent
(Gateway.intake_hold: the screening and the amount review). Some are made by the gateway
itself from stored rows, and are screened from their row by the screening alone (no
amount review): a debit another bank sends us, before our receipt pays it
(gateway.beps.debits_in); our own debit, before its beps.127 carries it
(gateway.beps.debits_out); our return of a debit's money from suspense
(gateway.exceptions.debit_suspense); a credit another bank sends us, before it is
credited (gateway.handlers, gateway.beps.incoming: a match parks its money in suspense,
`parked`); our return of an incoming payment to the bank that sent it
(gateway.exceptions.returns). Why each takes no amount review is said there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.workstate import log_after_commit

log = logging.getLogger("paygate.screening")

# The alert telling operators of incoming credits the screening parked in suspense.
ALERT_INCOMING_HELD = "incoming_credit_held_for_review"
PAYMENTS_NAMED_MAX = 50  # payments an alert of a package names; the count tells the rest


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


def parked(gw: Any, rows: list[dict[str, Any]]) -> dict[str, str]:
    """The screening's reason for each incoming credit of `rows` (payments' rows, not
    yet credited) whose payer or payee it matches, by payment id: its money goes to
    suspense with that reason instead of to the payee, whatever the account (a
    sanctions hit is not the bank's to credit on its own), until operators decide
    (gateway.exceptions: applied to an account, the hit passed; or returned)."""
    screen = of_rows(gw)
    if screen is None:
        return {}
    return {row["id"]: found for row in rows if (found := screen(row)) is not None}


def tell_held(gw: Any, tx: Any, held: list[dict[str, Any]], **where: Any) -> None:
    """Operators told of the incoming credits the screening parked in suspense (`held`,
    their rows as parked: reason and pending number): a log line each, and one alert
    for them all (`where` says what brought them: a package, its netting)."""
    if not held:
        return
    log_after_commit(log, logging.WARNING, [
        f"event={ALERT_INCOMING_HELD} payment={row['id']} reason={row['reason']} "
        f"pending_no={row['pending_no']} amount_fen={row['amount_fen']}" for row in held])
    named: dict[str, Any] = ({"payment": held[0]["id"], "reason": held[0]["reason"],
                              "pending_no": held[0]["pending_no"]} if len(held) == 1 else
                             {"payments": [row["id"] for row in held[:PAYMENTS_NAMED_MAX]]})
    gw.alert(tx, ALERT_INCOMING_HELD, **where, **named, credits=len(held),
             amount_fen=sum(row["amount_fen"] for row in held))
