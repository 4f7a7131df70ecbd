"""Debits other banks send us (beps.127) that the screening holds before our receipt.

A debit our receipt would pay (gateway.beps.debits_in: mandate, no stop, the payer's
funds held) is screened as an outgoing customer payment is (gateway.ops.review, the
screening alone: the payer authorised the collector, so no amount review). A match
leaves it out of the package's receipt: it stays `received` with the screening's
reason (`screening_match_payee_name`, ...), its payer's funds held, and waits in
`beps_debit_reviews` for operators until `debit_review_margin_s` before the package's
return deadline (PKGRtrLtd), with the alert `debit_held_for_review`. `received` is the
state the core system knows a debit by until it is answered: its view says it is held
(`held_for_review`, states.held_for_review), and its package is not `answered` while
it waits (`waiting_for_review`, or `partly_answered` once a receipt answered the
others). Each decision is answered in a beps.128 of its own, naming the same beps.127:

- review_approve (a supervisor or director): paid (PR02), as the package's receipt
  would have paid it; the debit goes on as any paid debit (netted with our receipt).
- review_reject (a supervisor or director): refused (PR09, RJ08 "refused for regulatory
  reasons": the collector is not told of the match), its payer's hold released;
  `rejected`.
- nobody decided by then (`expire`, the leader's deadline sweep): refused as a failed
  review is, never paid unseen, so that the collector still has our answer in time;
  the alert `debit_review_expired` tells operators.

A stop-payment the payer registered while the debit waited (POST /v1/debit-stops) is
applied when it is answered, as it would have been on arrival: refused, RJ06 with the
payer's reason, whatever the review decides; so is the mandate the payer revoked
meanwhile (POST /v1/debit-mandates/revoke): refused, RJ01.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway import keys, payments
from gateway.beps import debits_in
from gateway.errors import Conflict, Problem
from gateway.store import after_commit, log_after_commit, lost_race, scope

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.debit_review")

EXPECTED = "a debit another bank sent us, held by the screening"
EVENT_EXPIRED = "beps_debit_review_expired"
REFUSED = f"{debits_in.SCREENED[0]}: {debits_in.SCREENED[1]}"
EXPIRED_PER_PASS = 500  # debits refused by one pass of the sweep; the rest by the next


def waiting(tx: Any, payment: dict[str, Any]) -> tuple[str, str] | None:
    """The beps.127 package a debit held by the screening came in and its agreement;
    None for any other payment."""
    from gateway.ops.review import is_review_hold
    if payment["direction"] != "in" or payment["state"] != "received" \
            or not is_review_hold(payment["reason"]):
        return None
    row = tx.query_one("SELECT package_id, agreement FROM beps_debit_reviews "
                       "WHERE payment_id = ?", (payment["id"],))
    return (row[0], row[1]) if row else None


def check(tx: Any, payment: dict[str, Any]) -> tuple[str, str]:
    """Refused unless the payment is a debit held by the screening; its package and
    agreement."""
    found = waiting(tx, payment)
    if found is None:
        raise Conflict(Problem("payment_not_held_for_review", "/target", payment["reason"],
                               EXPECTED, f"payment {payment['id']} is {payment['state']}"))
    return found


def _stop(tx: Any, payment: dict[str, Any], agreement: str) -> tuple[str, str] | None:
    """RJ06 when the payer stopped this debit, or every debit under its agreement; RJ01
    when it revoked its mandate for the agreement since the debit came."""
    row = tx.query_one("SELECT reason FROM beps_debit_stops WHERE account_no = ? AND "
                       "agreement_no = ? AND tx_id IN ('', ?) ORDER BY tx_id LIMIT 1",
                       (payment["payer_account"], agreement, payment["tx_id"]))
    if row:
        return debits_in.stopped(row[0])
    if tx.query_one("SELECT 1 FROM beps_mandates WHERE account_no = ? AND agreement_no = ?",
                    (payment["payer_account"], agreement)) is None:
        return debits_in.NO_MANDATE
    return None


def approve(gw: "Gateway", tx: Any, target: str, who: dict[str, Any], now: datetime
            ) -> dict[str, Any]:
    """Paid in a receipt of its own (refused, RJ06 or RJ01, when its payer stopped it or
    revoked its mandate since)."""
    payment = payments.get(tx, target, lock=True)
    package_id, agreement = check(tx, payment)
    stop = _stop(tx, payment, agreement)
    if stop is not None:
        return _refused(gw, tx, payment, package_id, stop, "beps_debit_refused", now, who)
    payments.transition(tx, payment, "received", "review_approved", now, gw.notifier,
                        passed=payment["reason"], **who)
    tx.execute("UPDATE payments SET reason = NULL WHERE id = ?", (target,))
    paid = payments.transition(tx, dict(payment, reason=None), "received",
                               "beps_debit_paid", now, gw.notifier, package=package_id)
    receipt = _answer(tx, gw, package_id, [(paid, None)], now)
    return {"payment": target, "state": "received", "was_held_for": payment["reason"],
            "receipt": receipt}


def reject(gw: "Gateway", tx: Any, target: str, who: dict[str, Any], now: datetime
           ) -> dict[str, Any]:
    """Refused (RJ08, or RJ06 or RJ01 when its payer stopped it or revoked its mandate
    since) in a receipt of its own, its payer's hold released."""
    payment = payments.get(tx, target, lock=True)
    package_id, agreement = check(tx, payment)
    refusal = _stop(tx, payment, agreement) or debits_in.SCREENED
    return _refused(gw, tx, payment, package_id, refusal, "review_rejected", now, who)


def _refused(gw: "Gateway", tx: Any, payment: dict[str, Any], package_id: str,
             refusal: tuple[str, str], event: str, now: datetime, who: dict[str, Any]
             ) -> dict[str, Any]:
    refused = _refuse(gw, tx, payment, refusal, event, now, who)
    receipt = _answer(tx, gw, package_id, [(refused, refusal)], now)
    return {"payment": payment["id"], "state": "rejected", "reason": refused["reason"],
            "receipt": receipt}


def expire(tx: Any, gw: "Gateway", now: datetime) -> int:
    """Debits still held when their answer falls due: refused (RJ08, or RJ06 or RJ01
    when their payer stopped them or revoked its mandate since), one receipt per
    package, operators told; how many."""
    rows = tx.query("SELECT payment_id, package_id FROM beps_debit_reviews WHERE due_at <= ? "
                    "ORDER BY due_at, payment_id LIMIT ?", (now.isoformat(), EXPIRED_PER_PASS))
    by_package: dict[str, list[tuple[dict[str, Any], tuple[str, str]]]] = {}
    # Packages whose last waiting debit was answered another way meanwhile: their state
    # is set once every debit of the pass is locked (the payments first, then the
    # packages, as a decision locks them: see _package_state).
    recount: set[str] = set()
    for payment_id, package_id in rows:
        # Each debit in a savepoint of its own: one that cannot be refused (logged in
        # full, tried again next pass) does not keep the others from their answer.
        try:
            with scope(tx):
                payment = payments.get(tx, payment_id, lock=True)
                found = waiting(tx, payment)
                if found is None:  # answered another way: nothing left to decide
                    tx.execute("DELETE FROM beps_debit_reviews WHERE payment_id = ?",
                               (payment_id,))
                    recount.add(package_id)
                    continue
                refusal = _stop(tx, payment, found[1]) or debits_in.SCREENED
                refused = _refuse(gw, tx, payment, refusal, EVENT_EXPIRED, now, {})
        except Exception as exc:
            if lost_race(exc):
                raise
            log.exception("event=debit_review_expiry_failed payment=%s package=%s error=%r",
                          payment_id, package_id, exc)
            continue
        by_package.setdefault(package_id, []).append((refused, refusal))
    for package_id in sorted(recount - set(by_package)):
        _package_state(tx, package_id, now)
    for package_id, decided in sorted(by_package.items()):
        receipt = _answer(tx, gw, package_id, decided, now)
        gw.alert(tx, "debit_review_expired", package=package_id, receipt=receipt,
                 debits=[p["id"] for p, _ in decided],
                 amount_fen=sum(p["amount_fen"] for p, _ in decided))
    return sum(len(decided) for decided in by_package.values())


def _refuse(gw: "Gateway", tx: Any, payment: dict[str, Any], refusal: tuple[str, str],
            event: str, now: datetime, who: dict[str, Any]) -> dict[str, Any]:
    released = gw.ledger.release(tx, f"{payment['id']}:release", int(payment["hold_id"]),
                                 gw.work_date)
    return payments.transition(tx, payment, "rejected", event, now, gw.notifier,
                               reason=f"{refusal[0]}: {refusal[1]}",
                               held_for=payment["reason"], released_entry=released, **who)


def _answer(tx: Any, gw: "Gateway", package_id: str,
            decided: list[tuple[dict[str, Any], tuple[str, str] | None]], now: datetime
            ) -> str:
    """Our beps.128 for the debits decided of one package, queued once committed; the
    debits leave the review table, and the package is `answered` once none of its debits
    waits there (`partly_answered` while some do). The receipt's outbox row."""
    collector, msg_id = tx.query_one("SELECT sender, msg_id FROM beps_packages WHERE id = ?",
                                     (package_id,))
    lines = [debits_in.receipt_line(p["tx_id"], p["payer_bank"], p["payee_bank"],
                                    p["amount_fen"], refusal) for p, refusal in decided]
    paid = [p for p, refusal in decided if refusal is None]
    outbox_id = debits_in.send_receipt(tx, gw, collector, msg_id, package_id, lines, paid,
                                       now)
    tx.executemany("DELETE FROM beps_debit_reviews WHERE payment_id = ?",
                   [(p["id"],) for p, _ in decided])
    state = _package_state(tx, package_id, now)
    after_commit(tx, keys.OUT_LINK, {"outbox": str(outbox_id)})
    log.info("event=beps_debit_review_answered package=%s paid=%s refused=%s outbox=%s "
             "package_state=%s", package_id, len(paid), len(decided) - len(paid), outbox_id,
             state)
    return str(outbox_id)


def _package_state(tx: Any, package_id: str, now: datetime) -> str:
    """The collector's package `answered` once none of its debits waits for operators,
    `partly_answered` while some do and a receipt has answered the others,
    `waiting_for_review` while every one does; its state.

    The package's row is locked (PostgreSQL) before its waiting debits are counted: the
    last two decisions on one package, made at once in two gateway processes (two
    supervisors, or one and the deadline sweep), each lock only their own debit, and
    without it each would count the other's debit as still waiting and both write
    `partly_answered`, forever. Under the lock the second waits for the first to commit,
    then counts what it left. Every caller locks its debits' payments first, the package
    after, so two of them never wait for each other."""
    count = tx.query_one("SELECT count FROM beps_packages WHERE id = ?"
                         + (" FOR UPDATE" if tx.dialect == "postgresql" else ""),
                         (package_id,))[0]
    waiting = tx.query_one("SELECT COUNT(*) FROM beps_debit_reviews WHERE package_id = ?",
                           (package_id,))[0]
    # Every debit of the package is either answered by a receipt or waits here.
    state = (debits_in.ANSWERED if not waiting else debits_in.WAITING_FOR_REVIEW
             if waiting >= count else debits_in.PARTLY_ANSWERED)
    tx.execute("UPDATE beps_packages SET state = ?, updated_at = ? WHERE id = ?",
               (state, now.isoformat(), package_id))
    return state


def correct_package_states(tx: Any, now: datetime) -> int:
    """Set right, at start-up, the state of every collector's package whose state does not
    say whether its debits wait for operators (`_package_state`); how many. A database
    made before these states existed has packages `answered` while some of their debits
    wait in `beps_debit_reviews`, and one written by a gateway before the package's
    row was locked may have one left `partly_answered` with none waiting. Only such
    packages are read (those with a debit waiting, and those in a waiting state), each
    then locked and counted as a decision counts it, so that a decision made meanwhile
    by another gateway process is never overwritten. Running it again changes nothing."""
    waiting = (debits_in.PARTLY_ANSWERED, debits_in.WAITING_FOR_REVIEW)
    wrong = tx.query(
        "SELECT DISTINCT r.package_id, p.state FROM beps_debit_reviews r JOIN beps_packages "
        "p ON p.id = r.package_id WHERE p.state = ?", (debits_in.ANSWERED,))
    wrong += tx.query(
        "SELECT id, state FROM beps_packages WHERE state IN (?, ?) AND NOT EXISTS "
        "(SELECT 1 FROM beps_debit_reviews r WHERE r.package_id = beps_packages.id)", waiting)
    lines = []
    for package_id, was in sorted(wrong):
        state = _package_state(tx, package_id, now)
        lines.append(f"event=beps_debit_package_state_corrected package={package_id} "
                     f"was={was} state={state}")
    log_after_commit(log, logging.WARNING, lines)
    return len(wrong)
