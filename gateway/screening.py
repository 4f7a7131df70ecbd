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
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from gateway import critical
from gateway.states import parked_by_screening, parked_sql
from gateway.workstate import log_after_commit

log = logging.getLogger("paygate.screening")

# The alert telling operators of incoming credits the screening parked in suspense.
ALERT_INCOMING_HELD = "incoming_credit_held_for_review"
PAYMENTS_NAMED_MAX = 50  # payments an alert of a package names; the count tells the rest
# A credit still parked: in suspense with the screening's reason (`is_parked`, in SQL).
_PARKED = parked_sql()
SCREENING_PREFIX = "screening_match_"  # a hit's reason: screening_match_<side>_<field>


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


def hits(gw: Any, side: str, account: str, name: str) -> list[tuple[str, str]]:
    """The screening's matches of one party (`side`, payer or payee) read as that side,
    its account and its name each on its own: (reason, the value matched) for each that
    matches, the account's first (as the screening reads them). Each is judged apart by
    an approval that passes a value (gateway.exceptions.write_off.passes)."""
    screen = of_rows(gw)
    if screen is None:
        return []
    found = []
    for field, value in ((f"{side}_account", account), (f"{side}_name", name)):
        row = {"payer_account": "", "payer_name": "", "payee_account": "",
               "payee_name": "", field: value or ""}
        if (reason_of := screen(row)) is not None:
            found.append((reason_of, value or ""))
    return found


def passed_entries(gw: Any, reason_of: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """What a supervisor passing the screening's hit `reason_of` (screening_match_
    <side>_<field>) on the payment of `row` passes: the digest of the list in force and
    the entries of it that match the field's value (`list_sha256`, `entries`), recorded
    in the approval's history so that a later check carries the pass over only while the
    same list, or the very same entries, match (gateway.exceptions.debit_suspense).
    Nothing for another reason, or when the gateway's hook has no screening."""
    in_force = getattr(getattr(gw, "review", None), "in_force", None)
    if in_force is None or not reason_of.startswith(SCREENING_PREFIX):
        return {}
    field_name = reason_of.removeprefix(SCREENING_PREFIX)
    blocked = in_force(gw.settings)
    return {"list_sha256": blocked.sha256,
            "entries": blocked.entries_matching(field_name, row.get(field_name) or "")}


def entries_now(gw: Any, reason_of: str, value: str) -> tuple[str, list[str]]:
    """The digest of the list in force and its entries that match `value` for the hit
    `reason_of` (as `passed_entries` records them); none when the gateway's hook has no
    screening."""
    in_force = getattr(getattr(gw, "review", None), "in_force", None)
    if in_force is None:
        return "", []
    blocked = in_force(gw.settings)
    return blocked.sha256, blocked.entries_matching(reason_of, value)


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


def is_parked(payment: Mapping[str, Any]) -> bool:
    """A credit another bank sent us whose money the screening parked in suspense, still
    waiting for operators' decision (`parked`; states.parked_by_screening)."""
    return parked_by_screening(payment)


def close_decided(tx: Any, was: dict[str, Any], how: str, now: datetime) -> list[int]:
    """Close, as the gateway, the open ALERT_INCOMING_HELD alerts that told of the credit
    `was` (its row before operators' decision moved it) once every credit each covers
    is decided: applied to an account, or returned and the return settled, none still
    parked. A credit whose return failed is still parked, and its alert stays open, as
    does a package's while another of its credits waits. `how` says what decided this
    one. Their ids; none for a credit the screening did not park.

    The alerts are locked (PostgreSQL) before the other credits are read: two processes
    deciding a package's last two credits at once would otherwise each read the other's
    credit still parked (its change not yet committed) and leave the alert open for
    good. Each calls this after moving its own credit: whichever takes the lock second
    waits for the first to commit, then reads both credits decided."""
    if not is_parked(was):
        return []
    payment_id, package = was["id"], _package_of(tx, was)
    closed = []
    for alert_id, detail in critical.unclosed(tx, (ALERT_INCOMING_HELD,),
                                              package or payment_id, lock=True):
        named = [detail["payment"]] if "payment" in detail else detail.get("payments", [])
        if detail.get("package") != package or (
                payment_id not in named and len(named) == detail["credits"]):
            continue  # about other credits (the text matched only in part)
        if _still_parked(tx, named, package, detail["credits"]):
            continue
        closed.append(alert_id)
    if closed:
        critical.close_by_gateway(tx, closed, f"every credit it told of is decided ({how})",
                                  now)
    return closed


def _package_of(tx: Any, payment: dict[str, Any]) -> str | None:
    """The package that brought a BEPS credit (the alert of its package names it)."""
    if payment["channel"] != "beps":
        return None
    row = tx.query_one("SELECT package_id FROM beps_items WHERE payment_id = ?",
                       (payment["id"],))
    return row[0] if row else None


def _still_parked(tx: Any, named: list[str], package: str | None, credits: int) -> bool:
    """Whether any credit an alert covers is still parked: those it names, or, when it
    names only the first PAYMENTS_NAMED_MAX of its package's, any of that package."""
    if len(named) < credits and package is not None:
        return tx.query_one(
            "SELECT 1 FROM payments WHERE id IN (SELECT payment_id FROM beps_items "
            f"WHERE package_id = ?) AND {_PARKED}", (package,)) is not None
    marks = ", ".join("?" * len(named))
    return tx.query_one(f"SELECT 1 FROM payments WHERE id IN ({marks}) AND {_PARKED}",
                        tuple(named)) is not None
