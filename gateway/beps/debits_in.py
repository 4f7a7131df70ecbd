"""Debits other banks send us (beps.127): our customers pay, if they agreed to.

Each debit in the package is answered in one beps.128 receipt, sent at once (well
before the package's return deadline). A debit is paid (PR02) when the payer is our
customer, has authorised the collector under the agreement the debit names
(`beps_mandates`, registered through POST /v1/debit-mandates) and has the money now:
the amount is held at once (the bank never advances funds). Otherwise it is refused
(PR09) with one of these reject codes (RjctCd), a reason in RjctInf:

| code | rule |
|---|---|
| RJ01 | no mandate for this account and agreement |
| RJ02 | the payer's balance does not cover the debit |
| RJ03 | the account cannot be debited (unknown, closed, frozen) |
| RJ04 | the payer's bank is not one of ours |
| RJ05 | the same debit (collector and TxId) was answered before |
| RJ06 | the payer stopped payment (止付) of this debit or of every debit under the agreement |

Stop-payment: beps.411/412 have no schema in the public material, so a payer's stop
(POST /v1/debit-stops) is kept by the gateway and applied when the debit arrives: its
receipt refuses it with RJ06 and the payer's reason. Receipts are sent at once, so a
debit already answered (paid) is no longer stoppable here; it can be returned.

A paid debit is `received` until the NPC nets our receipt (then `netted`, the hold
becomes a netted obligation, `settled` with its round); a refused one is `rejected`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway import keys, outbound, payments
from gateway.beps import items
from gateway.beps.incoming import incoming_row
from gateway.inbound import Processed
from gateway.messages import beps127, beps128, codec
from gateway.messages.common import OriginalRef, iso_datetime
from gateway.messages.package import Package, PackageHeader, Transfer
from ledger.errors import LedgerError

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.debits")

NO_MANDATE = ("RJ01", "no mandate for this account and agreement")
NO_FUNDS = ("RJ02", "the payer's balance does not cover the debit")
NOT_DEBITABLE = ("RJ03", "the account cannot be debited")
NOT_OURS = ("RJ04", "the payer's bank is not one of ours")
DUPLICATE = ("RJ05", "the same debit was answered before")


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
               "VALUES (?, 'in', ?, ?, ?, ?, ?, ?, 'answered', ?, ?, ?, ?)",
               (package_id, beps127.MESSAGE_TYPE, h.msg_id, h.instg_direct, h.instd_direct,
                h.count, h.total_fen, d.header.mesg_id,
                (now + timedelta(days=days)).isoformat(), now.isoformat(), now.isoformat()))
    lines, paid = [], []
    for t in pkg.transfers:
        line, row = _answer(tx, gw, h.instg_direct, package_id, t, now)
        lines.append(line)
        if row is not None:
            paid.append(row)
    outbox_id = _send_receipt(tx, gw, pkg, package_id, lines, paid, now)
    after = [lambda: asyncio.ensure_future(
        gw.redis.xadd(keys.OUT_LINK, {"outbox": str(outbox_id)}))]
    log.info("event=beps_debits_answered package=%s paid=%s refused=%s", package_id,
             len(paid), len(lines) - len(paid))
    return Processed({"package": package_id, "paid": len(paid),
                      "refused": len(lines) - len(paid)}, after)


def _answer(tx: Any, gw: "Gateway", collector: str, package_id: str, t: Transfer,
            now: datetime) -> tuple[beps128.ReceiptLine, dict[str, Any] | None]:
    """Pay (hold) or refuse one debit; its receipt line and, when paid, its payment."""
    pid = f"D{collector}{t.tx_id}"
    if payments.find_by_message(tx, "in", collector, beps127.MESSAGE_TYPE, t.tx_id):
        gw.alert(tx, "duplicate_incoming_payment", sender=collector, tx_id=t.tx_id)
        return _line(t, DUPLICATE), None
    row = incoming_row(gw, pid, beps127.MESSAGE_TYPE, collector, t, now)
    payments.insert(tx, row)
    refusal, hold_id = _refusal(tx, gw, t), None
    if refusal is None:
        try:
            with tx.savepoint():
                hold_id = gw.ledger.hold(tx, f"{pid}:hold", t.debtor_account, t.amount_fen,
                                         gw.work_date.isoformat(), pid)
        except LedgerError as exc:
            refusal = NO_FUNDS if exc.code == "payer_funds_insufficient" else NOT_DEBITABLE
    line = _line(t, refusal)
    if refusal is not None:
        payments.transition(tx, row, "rejected", "beps_debit_refused", now, gw.notifier,
                            reason=f"{refusal[0]}: {refusal[1]}", package=package_id)
        return line, None
    row = payments.transition(tx, row, "received", "beps_debit_paid", now, gw.notifier,
                              hold_id=str(hold_id), package=package_id)
    return line, row


def _line(t: Transfer, refusal: tuple[str, str] | None) -> beps128.ReceiptLine:
    if refusal is None:
        return beps128.ReceiptLine(t.tx_id, t.debtor_bank, t.creditor_bank, t.amount_fen,
                                   beps128.PAID)
    return beps128.ReceiptLine(t.tx_id, t.debtor_bank, t.creditor_bank, t.amount_fen,
                               "PR09", *refusal)


def _refusal(tx: Any, gw: "Gateway", t: Transfer) -> tuple[str, str] | None:
    if t.debtor_bank not in gw.own_banks:
        return NOT_OURS
    stop = tx.query_one("SELECT reason FROM beps_debit_stops WHERE account_no = ? AND "
                        "agreement_no = ? AND tx_id IN ('', ?)",
                        (t.debtor_account, t.agreement or "", t.tx_id))
    if stop is not None:
        return ("RJ06", f"payer stopped payment: {stop[0]}"[:105])
    mandate = tx.query_one("SELECT 1 FROM beps_mandates WHERE account_no = ? AND "
                           "agreement_no = ?", (t.debtor_account, t.agreement or ""))
    return None if mandate else NO_MANDATE


def _send_receipt(tx: Any, gw: "Gateway", pkg: Package, package_id: str,
                  lines: list[beps128.ReceiptLine], paid: list[dict[str, Any]],
                  now: datetime) -> int:
    bank, collector = gw.settings.bank_code, pkg.header.instg_direct
    day = now.strftime("%Y%m%d")
    msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
    paid_fen = sum(p["amount_fen"] for p in paid)
    receipt = beps128.DebitReceipt(
        header=PackageHeader(msg_id, iso_datetime(now), bank, collector, len(lines),
                             sum(line.amount_fen for line in lines)),
        original=OriginalRef(pkg.header.msg_id, collector, beps127.MESSAGE_TYPE),
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
    for p in paid:
        items.add(tx, p["id"], items.DEBIT_IN, collector, beps128.MESSAGE_TYPE,
                  p["amount_fen"], now, agreement=None, package_id=receipt_id)
    return outbox_id


def add_stop(tx: Any, account_no: str, agreement_no: str, tx_id: str, reason: str,
             now: datetime) -> bool:
    """Record a payer's stop-payment; False when the same stop exists already."""
    if tx.query_one("SELECT 1 FROM beps_debit_stops WHERE account_no = ? AND agreement_no = ? "
                    "AND tx_id = ?", (account_no, agreement_no, tx_id)):
        return False
    tx.execute("INSERT INTO beps_debit_stops (account_no, agreement_no, tx_id, reason, "
               "created_at) VALUES (?, ?, ?, ?, ?)",
               (account_no, agreement_no, tx_id, reason, now.isoformat()))
    return True


def add_mandate(tx: Any, account_no: str, agreement_no: str, now: datetime) -> bool:
    """Register a payer's authorisation; False when it was registered before."""
    if tx.query_one("SELECT 1 FROM beps_mandates WHERE account_no = ? AND agreement_no = ?",
                    (account_no, agreement_no)):
        return False
    tx.execute("INSERT INTO beps_mandates (account_no, agreement_no, created_at) "
               "VALUES (?, ?, ?)", (account_no, agreement_no, now.isoformat()))
    return True

