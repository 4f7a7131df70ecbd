"""Debits other banks send us (beps.127): our customers pay, if they agreed to.

Each debit in the package is answered in one beps.128 receipt, sent at once (well
before the package's return deadline). A debit is paid (PR02) when the payer is our
customer, has authorised the collector under the agreement the debit names
(`beps_mandates`, registered through POST /v1/debit-mandates, gateway.beps.mandates) and
has the money now: the amount is held at once (the bank never advances funds). Otherwise it is refused
(PR09) with one of these reject codes (RjctCd), a reason in RjctInf:

| code | rule |
|---|---|
| RJ01 | no mandate for this account and agreement |
| RJ02 | the payer's balance does not cover the debit |
| RJ03 | the account cannot be debited (unknown, closed, frozen) |
| RJ04 | the payer's bank is not one of ours |
| RJ05 | the same debit (collector and TxId) was answered before |
| RJ06 | the payer stopped payment (止付) of this debit or of every debit under the agreement |
| RJ07 | the payer's bank named is ours but not the branch that keeps the account |
| RJ08 | refused for regulatory reasons (the screening, gateway.beps.debit_review) |

RJ07 is the branch rule every credit to our books follows (intake.kept_elsewhere): an
incoming credit naming a branch that does not keep its account waits in suspense
(branch_mismatch); a debit, which takes money, is refused instead: whose money, at whose
order (DOMAIN.md §3) is not settled by guessing that the collector meant the account's
own branch.

Stop-payment: beps.411/412 have no schema in the public material, so a payer's stop
(POST /v1/debit-stops) is kept by the gateway and applied when the debit arrives: its
receipt refuses it with RJ06 and the payer's reason. Receipts are sent at once, so a
debit already answered (paid) is no longer stoppable here; it can be returned. A stop
lifted (POST /v1/debit-stops/lift) or a mandate revoked (POST /v1/debit-mandates/revoke)
counts for the debits answered from then on.

A debit that would be paid is screened first (its creditor and our payer, as every
outgoing customer payment is at intake): a match leaves it out of the receipt, its
payer's funds held, until operators pass or fail it (gateway.beps.debit_review), which
answers it in a receipt of its own. The package is `answered` only once every debit of
it is: `waiting_for_review` while no receipt has gone (every debit held), and
`partly_answered` while some wait after its first receipt answered the others.

A paid debit is `received` until the NPC nets our receipt (then `netted`, the hold
becomes a netted obligation, `settled` with its round); a refused one is `rejected`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway import intake, keys, outbound, payments, screening
from gateway.beps import items
from gateway.beps.incoming import incoming_row, new_transfers
from gateway.beps.settings import BepsSettings
from gateway.inbound import Processed
from gateway.messages import beps127, beps128, codec
from gateway.messages.common import OriginalRef, iso_datetime
from gateway.messages.package import Package, PackageHeader, Transfer
from gateway.workstate import log_after_commit
from ledger.errors import LedgerError
from ledger.postings import IDS_PER_QUERY

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.debits")

NO_MANDATE = ("RJ01", "no mandate for this account and agreement")
NO_FUNDS = ("RJ02", "the payer's balance does not cover the debit")
NOT_DEBITABLE = ("RJ03", "the account cannot be debited")
NOT_OURS = ("RJ04", "the payer's bank is not one of ours")
DUPLICATE = ("RJ05", "the same debit was answered before")
NOT_KEPT_HERE = ("RJ07", "the payer's bank named does not keep the account")
# A debit the screening held, failed by operators or left undecided until its answer was
# due: the collector is told no more than that (the match stays with us).
SCREENED = ("RJ08", "refused for regulatory reasons")
EVENT_HELD = "beps_debit_held_for_review"
# States of a collector's beps.127 (beps_packages): `answered` once a receipt of ours has
# answered every debit of it; before that, while the screening holds some for operators
# (gateway.beps.debit_review), `waiting_for_review` when no receipt has gone yet (every
# debit held) and `partly_answered` when the package's first receipt answered the others.
ANSWERED, PARTLY_ANSWERED, WAITING_FOR_REVIEW = "answered", "partly_answered", \
    "waiting_for_review"


def on_debit_package(tx: Any, gw: "Gateway", d: codec.Decoded, now: datetime) -> Processed:
    pkg: Package = d.obj
    h = pkg.header
    package_id = f"{h.instg_direct}{h.msg_id}"
    if tx.query_one("SELECT 1 FROM beps_packages WHERE id = ?", (package_id,)):
        gw.alert(tx, "duplicate_incoming_package", package=package_id)
        return Processed({"duplicate_of": package_id})
    days = int(pkg.return_limit.days) if pkg.return_limit else 1
    tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, receiver, "
               "count, total_fen, state, mesg_id, deadline_at, created_at, updated_at) "
               "VALUES (?, 'in', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (package_id, beps127.MESSAGE_TYPE, h.msg_id, h.instg_direct, h.instd_direct,
                h.count, h.total_fen, ANSWERED, d.header.mesg_id,
                (now + timedelta(days=days)).isoformat(), now.isoformat(), now.isoformat()))
    lines, paid, held = _answer(tx, gw, h.instg_direct, package_id, pkg.transfers, now)
    if held:
        tx.execute("UPDATE beps_packages SET state = ? WHERE id = ?",
                   (PARTLY_ANSWERED if lines else WAITING_FOR_REVIEW, package_id))
    _wait_for_review(tx, gw, held, package_id, now + timedelta(days=days), now)
    after = []
    if lines:  # none when every debit waits for operators
        outbox_id = send_receipt(tx, gw, h.instg_direct, h.msg_id, package_id, lines, paid,
                                 now)
        after = [lambda: asyncio.ensure_future(
            gw.redis.xadd(keys.OUT_LINK, {"outbox": str(outbox_id)}))]
    log_after_commit(log, logging.INFO, [(
        f"event=beps_debits_answered package={package_id} paid={len(paid)} "
        f"refused={len(lines) - len(paid)} held={len(held)}")])
    return Processed({"package": package_id, "paid": len(paid),
                      "refused": len(lines) - len(paid),
                      **({"held": len(held)} if held else {})}, after)


def _answer(tx: Any, gw: "Gateway", collector: str, package_id: str,
            transfers: tuple[Transfer, ...], now: datetime
            ) -> tuple[list[beps128.ReceiptLine], list[dict[str, Any]],
                       list[tuple[dict[str, Any], str]]]:
    """Pay (hold) or refuse each debit of the package: its receipt lines, in order, the
    payments paid, and those the screening holds with their agreement (their funds
    held, no line). A few
    statements whatever the package's size: what the debits need (payments recorded
    before, stops, mandates) is read at once, the payments are written in bulk and the
    holds placed together (ledger.hold_many), each refused alone when its payer cannot
    cover it, as one hold after another would be."""
    new = new_transfers(tx, gw, beps127.MESSAGE_TYPE, collector, transfers)
    fresh = [t for t in new if t is not None]
    rows = [incoming_row(gw, f"D{collector}{t.tx_id}", beps127.MESSAGE_TYPE, collector, t,
                         now) for t in fresh]
    payments.insert_many(tx, rows)
    refusals = _refusals(tx, gw, fresh)
    work_date = gw.work_date.isoformat()
    holding = [(row, t) for row, t, refusal in zip(rows, fresh, refusals) if refusal is None]
    held = iter(gw.ledger.hold_many(tx, [
        (f"{row['id']}:hold", t.debtor_account, t.amount_fen, work_date, row["id"])
        for row, t in holding]))
    screen = screening.of_rows(gw)
    changes: list[tuple[dict[str, Any], str, str, dict[str, Any]]] = []
    final: list[tuple[str, str] | str | None] = []
    for row, refusal in zip(rows, refusals):
        if refusal is None:
            hold_id = next(held)
            if isinstance(hold_id, LedgerError):
                refusal = (NO_FUNDS if hold_id.code == "payer_funds_insufficient"
                           else NOT_DEBITABLE)
        match = screen(row) if refusal is None and screen is not None else None
        final.append(match or refusal)
        if match is not None:
            changes.append((row, "received", EVENT_HELD,
                            {"hold_id": str(hold_id), "reason": match,
                             "package": package_id}))
        elif refusal is None:
            changes.append((row, "received", "beps_debit_paid",
                            {"hold_id": str(hold_id), "package": package_id}))
        else:
            changes.append((row, "rejected", "beps_debit_refused",
                            {"reason": f"{refusal[0]}: {refusal[1]}", "package": package_id}))
    changed = iter(zip(payments.transition_each(tx, changes, now, gw.notifier), final))
    lines, paid, waiting = [], [], []
    for t, found in zip(transfers, new):
        if found is None:
            lines.append(receipt_line(t.tx_id, t.debtor_bank, t.creditor_bank,
                                      t.amount_fen, DUPLICATE))
            continue
        row, refusal = next(changed)
        if isinstance(refusal, str):  # the screening's reason: answered once decided
            waiting.append((row, t.agreement or ""))
            continue
        lines.append(receipt_line(t.tx_id, t.debtor_bank, t.creditor_bank, t.amount_fen,
                                  refusal))
        if refusal is None:
            paid.append(row)
    return lines, paid, waiting


def receipt_line(tx_id: str, debtor_bank: str, creditor_bank: str, amount_fen: int,
                 refusal: tuple[str, str] | None) -> beps128.ReceiptLine:
    """A receipt's line: paid (PR02), or refused (PR09) with its code and reason."""
    if refusal is None:
        return beps128.ReceiptLine(tx_id, debtor_bank, creditor_bank, amount_fen,
                                   beps128.PAID)
    return beps128.ReceiptLine(tx_id, debtor_bank, creditor_bank, amount_fen, "PR09",
                               *refusal)


def _wait_for_review(tx: Any, gw: "Gateway", held: list[tuple[dict[str, Any], str]],
                     package_id: str, deadline: datetime, now: datetime) -> None:
    """The debits the screening held (each with its agreement) wait for operators until
    `debit_review_margin_s` before the package's return deadline
    (gateway.beps.debit_review.expire)."""
    if not held:
        return
    margin_s = BepsSettings.from_settings(gw.settings).debit_review_margin_s
    due = max(now, deadline - timedelta(seconds=margin_s)).isoformat()
    tx.executemany("INSERT INTO beps_debit_reviews (payment_id, package_id, agreement, "
                   "due_at, created_at) VALUES (?, ?, ?, ?, ?)",
                   [(row["id"], package_id, agreement, due, now.isoformat())
                    for row, agreement in held])
    rows = [row for row, _ in held]
    log_after_commit(log, logging.INFO, [
        f"event=beps_debit_held_for_review payment={row['id']} reason={row['reason']} "
        f"due_at={due}" for row in rows])
    gw.alert(tx, "debit_held_for_review", package=package_id, debits=len(rows),
             amount_fen=sum(row["amount_fen"] for row in rows), due_at=due)


def stopped(reason: str) -> tuple[str, str]:
    """The refusal of a debit its payer stopped, with the payer's reason."""
    return "RJ06", f"payer stopped payment: {reason}"[:105]


def _refusals(tx: Any, gw: "Gateway", transfers: list[Transfer]
              ) -> list[tuple[str, str] | None]:
    """Why each debit is refused before its payer's funds are looked at (None: it is
    not): the payers' stops and mandates are read a few hundred accounts a query."""
    accounts = list(dict.fromkeys(t.debtor_account for t in transfers
                                  if t.debtor_bank in gw.own_banks))
    stops: dict[tuple[str, str, str], str] = {}
    mandates: set[tuple[str, str]] = set()
    for start in range(0, len(accounts), IDS_PER_QUERY):
        chunk = accounts[start:start + IDS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        stops.update(((a, agreement, tx_id), reason) for a, agreement, tx_id, reason in tx.query(
            "SELECT account_no, agreement_no, tx_id, reason FROM beps_debit_stops "
            f"WHERE account_no IN ({marks})", chunk))
        mandates.update((a, agreement) for a, agreement in tx.query(
            "SELECT account_no, agreement_no FROM beps_mandates "
            f"WHERE account_no IN ({marks})", chunk))
    out: list[tuple[str, str] | None] = []
    for t in transfers:
        agreement = t.agreement or ""
        # A stop of every debit under the agreement is told before one of this debit.
        stop = stops.get((t.debtor_account, agreement, ""),
                         stops.get((t.debtor_account, agreement, t.tx_id)))
        if t.debtor_bank not in gw.own_banks:
            out.append(NOT_OURS)
        elif intake.kept_elsewhere(t.debtor_bank, gw.account_bank):
            out.append(NOT_KEPT_HERE)
        elif stop is not None:
            out.append(stopped(stop))
        else:
            out.append(None if (t.debtor_account, agreement) in mandates else NO_MANDATE)
    return out


def send_receipt(tx: Any, gw: "Gateway", collector: str, original_msg_id: str,
                 package_id: str, lines: list[beps128.ReceiptLine],
                 paid: list[dict[str, Any]], now: datetime) -> int:
    """Our beps.128 answering `lines` of the collector's beps.127 `original_msg_id`
    (all its debits, or those operators decided since), queued; its outbox row."""
    bank = gw.settings.bank_code
    day = now.strftime("%Y%m%d")
    msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
    paid_fen = sum(p["amount_fen"] for p in paid)
    receipt = beps128.DebitReceipt(
        header=PackageHeader(msg_id, iso_datetime(now), bank, collector, len(lines),
                             sum(line.amount_fen for line in lines)),
        original=OriginalRef(original_msg_id, collector, beps127.MESSAGE_TYPE),
        paid_count=len(paid), paid_fen=paid_fen, lines=tuple(lines))
    header = outbound.new_header(tx, now, bank, collector, beps128.MESSAGE_TYPE, "BEPS", 3)
    outbox_id = outbound.queue_message(tx, header, beps128.build(receipt), gw.keyring, now)
    receipt_id = f"{bank}{msg_id}"
    tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, receiver, "
               "count, total_fen, state, outbox_id, mesg_id, answers, created_at, updated_at) "
               "VALUES (?, 'out', ?, ?, ?, ?, ?, ?, 'sent', ?, ?, ?, ?, ?)",
               (receipt_id, beps128.MESSAGE_TYPE, msg_id, bank, collector, len(lines),
                paid_fen, outbox_id, header.mesg_id, package_id, now.isoformat(),
                now.isoformat()))
    items.add_package(tx, [(p["id"], items.DEBIT_IN, collector, beps128.MESSAGE_TYPE,
                            p["amount_fen"]) for p in paid], now, package_id=receipt_id)
    return outbox_id


def add_stop(tx: Any, account_no: str, agreement_no: str, tx_id: str, reason: str,
             now: datetime) -> bool:
    """Record a payer's stop-payment; False when the same stop exists already (the
    requests' checks and record of who asked: gateway.beps.mandates)."""
    if tx.query_one("SELECT 1 FROM beps_debit_stops WHERE account_no = ? AND agreement_no = ? "
                    "AND tx_id = ?", (account_no, agreement_no, tx_id)):
        return False
    tx.execute("INSERT INTO beps_debit_stops (account_no, agreement_no, tx_id, reason, "
               "created_at) VALUES (?, ?, ?, ?, ?)",
               (account_no, agreement_no, tx_id, reason, now.isoformat()))
    return True


def add_mandate(tx: Any, account_no: str, agreement_no: str, now: datetime) -> bool:
    """Register a payer's authorisation; False when it was registered before (the
    requests' checks and record of who asked: gateway.beps.mandates)."""
    if tx.query_one("SELECT 1 FROM beps_mandates WHERE account_no = ? AND agreement_no = ?",
                    (account_no, agreement_no)):
        return False
    tx.execute("INSERT INTO beps_mandates (account_no, agreement_no, created_at) "
               "VALUES (?, ?, ?)", (account_no, agreement_no, now.isoformat()))
    return True

