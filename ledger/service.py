"""`Ledger`: the narrow interface the gateway posts through.

The ledger is a stateless service over the caller's transaction: it never opens,
commits or rolls back one itself, so its postings commit together with the caller's
own rows. Every posting operation is idempotent by `event_id`: posting the same event
again has no second effect and returns the first result; reusing an event id for a
different posting is refused (`event_id_reused_for_other_posting`).

A refusal raises `LedgerError` and leaves the transaction as it was, so the caller may
record the refusal in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date

from pathlib import Path

from ledger import (accounts, dayend, incoming, payments, receivables, reports, reversal,
                    vouchers)
from ledger.audit import Audit, audit_book
from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.settings import Context, LedgerSettings
from ledger.types import (Account, CreditResult, CustomerBalance, ReceivableItem, Statement,
                          SuspenseItem, TrialBalance)
from ledger.vouchers import Voucher

WorkDate = date | str


class Ledger:
    """Double-entry books in integer fen, posted inside the caller's transactions."""

    def __init__(self, settings: LedgerSettings | None = None, *,
                 db_tx_factory_free: bool = True) -> None:
        # The ledger never opens transactions itself; the flag only says so, and is
        # accepted for callers written against the first description of this class.
        assert db_tx_factory_free, "the ledger always runs inside the caller's transaction"
        self.settings = settings or LedgerSettings()
        self._ctx = Context.from_settings(self.settings)

    @property
    def clearing_account(self) -> str:
        """Our clearing account at the central bank (25-digit internal number)."""
        return self._ctx.accounts.clearing

    @property
    def internal_accounts(self) -> dict[str, str]:
        """Our internal account numbers by subject code."""
        return dict(self._ctx.accounts.by_subject)

    # Set-up and accounts.

    def install(self, tx: Transaction) -> None:
        accounts.install(self._ctx, tx)

    def open_customer_account(self, tx: Transaction, account_no: str, name: str,
                              kind: str = "personal", work_date: WorkDate | None = None) -> None:
        accounts.open_customer_account(self._ctx, tx, account_no, name, kind, work_date)

    def account(self, tx: Transaction, account_no: str, as_of: WorkDate | None = None) -> Account:
        return accounts.get_account(tx, account_no, as_of)

    def customer_balance(self, tx: Transaction, account_no: str,
                         as_of: WorkDate) -> CustomerBalance:
        return accounts.customer_balance(tx, account_no, as_of)

    def freeze(self, tx: Transaction, account_no: str, work_date: WorkDate,
               until: WorkDate | None = None) -> str:
        return accounts.freeze(tx, account_no, work_date, until)

    def unfreeze(self, tx: Transaction, account_no: str, work_date: WorkDate) -> None:
        accounts.unfreeze(tx, account_no, work_date)

    def close_account(self, tx: Transaction, account_no: str, work_date: WorkDate) -> None:
        accounts.close_account(tx, account_no, work_date)

    # Money in for tests and the demo.

    def deposit(self, tx: Transaction, event_id: str, account_no: str, amount_fen: int,
                work_date: WorkDate) -> int:
        return payments.deposit(self._ctx, tx, event_id, account_no, amount_fen, work_date)

    def fund_clearing(self, tx: Transaction, event_id: str, amount_fen: int,
                      work_date: WorkDate) -> int:
        return payments.fund_clearing(self._ctx, tx, event_id, amount_fen, work_date)

    # Outgoing payments.

    def hold(self, tx: Transaction, event_id: str, account_no: str, amount_fen: int,
             work_date: WorkDate, ref: str,
             named: dict[str, tuple[str, str]] | None = None) -> int:
        """`named`: see ledger.payments.hold."""
        return payments.hold(self._ctx, tx, event_id, account_no, amount_fen, work_date, ref,
                             named)

    def check_hold(self, tx: Transaction, account_no: str, amount_fen: int,
                   work_date: WorkDate) -> None:
        """Refuse, with the error `hold` would give, a hold that could not be taken now
        (the account unknown, closed, frozen, short of the amount); writes nothing."""
        payments.check_hold(self._ctx, tx, account_no, amount_fen, work_date)

    def hold_many(self, tx: Transaction, holds: list[tuple[str, str, int, WorkDate, str]]
                  ) -> list[int | LedgerError]:
        """Many holds at once: (event id, account, amount, work date, ref) each; the hold
        id or the error refusing that one (the others stand)."""
        return payments.hold_many(self._ctx, tx, holds)

    def release(self, tx: Transaction, event_id: str, hold_id: int, work_date: WorkDate) -> int:
        return payments.release(self._ctx, tx, event_id, hold_id, work_date)

    def release_many(self, tx: Transaction, releases: list[tuple[str, int]],
                     work_date: WorkDate) -> list[int]:
        """`release` for many holds, (event id, hold id) each, in bulk; their entry ids."""
        return payments.release_many(self._ctx, tx, releases, work_date)

    def settle(self, tx: Transaction, event_id: str, hold_id: int, work_date: WorkDate) -> int:
        return payments.settle(self._ctx, tx, event_id, hold_id, work_date)

    def settle_internal(self, tx: Transaction, event_id: str, hold_id: int,
                        payee_account: str, work_date: WorkDate) -> int:
        return payments.settle_internal(self._ctx, tx, event_id, hold_id, payee_account,
                                        work_date)

    def net(self, tx: Transaction, event_id: str, hold_id: int, work_date: WorkDate) -> int:
        return payments.net(self._ctx, tx, event_id, hold_id, work_date)

    def net_many(self, tx: Transaction, nets: list[tuple[str, int]],
                 work_date: WorkDate) -> list[int]:
        """`net` for many holds, (event id, hold id) each, in bulk; their entry ids."""
        return payments.net_many(self._ctx, tx, nets, work_date)

    def net_together(self, tx: Transaction, event_id: str, hold_ids: list[int],
                     work_date: WorkDate, ref: str) -> int:
        """Many holds netted with one entry for their sum (a BEPS package); its entry id."""
        return payments.net_together(self._ctx, tx, event_id, hold_ids, work_date, ref)

    def settle_net(self, tx: Transaction, event_id: str, round_key: str, debit_fen: int,
                   credit_fen: int, work_date: WorkDate) -> int:
        return payments.settle_net(self._ctx, tx, event_id, round_key, debit_fen, credit_fen,
                                   work_date)

    def fee_for(self, business: str, amount_fen: int) -> int:
        return self.settings.tariff.fee_fen(business, amount_fen)

    def charge_fee(self, tx: Transaction, event_id: str, account_no: str, business: str,
                   amount_fen: int, work_date: WorkDate, ref: str = "") -> int:
        return payments.charge_fee(self._ctx, tx, event_id, account_no, business, amount_fen,
                                   work_date, ref)

    # Incoming payments and suspense.

    def credit_incoming(self, tx: Transaction, event_id: str, account_no: str,
                        payee_name: str, amount_fen: int, work_date: WorkDate,
                        ref: str, other_branch: bool = False,
                        parked: str | None = None) -> CreditResult:
        """`other_branch`: the payee bank named is not the branch keeping the account
        (the money goes to suspense as `branch_mismatch`); `parked`: it goes to suspense
        with this reason whatever its account (a party the screening matched)."""
        return incoming.credit_incoming(self._ctx, tx, event_id, account_no, payee_name,
                                        amount_fen, work_date, ref,
                                        other_branch=other_branch, parked=parked)

    def credit_incoming_netted(self, tx: Transaction, event_id: str, account_no: str,
                               payee_name: str, amount_fen: int, work_date: WorkDate,
                               ref: str, other_branch: bool = False) -> CreditResult:
        return incoming.credit_incoming(self._ctx, tx, event_id, account_no, payee_name,
                                        amount_fen, work_date, ref, netted=True,
                                        other_branch=other_branch)

    def credit_incoming_netted_many(
            self, tx: Transaction, credits: list[tuple[str, str, str, int, WorkDate, str]],
            other_branch: Collection[str] = (),
            parked: Mapping[str, str] | None = None) -> list[CreditResult]:
        """`credit_incoming_netted` for many, (event id, account, payee name, amount,
        work date, ref) each, in bulk, those whose event id is in `other_branch` naming a
        payee bank that does not keep the account, those in `parked` going to suspense
        with the reason it gives whatever their account; the result of each, in order."""
        return incoming.credit_incoming_many(self._ctx, tx, credits, netted=True,
                                             other_branch=other_branch, parked=parked)

    def holder_names(self, tx: Transaction, account_nos: list[str]) -> dict[str, str]:
        """The holder's name of each of these that is a customer account (read a few
        hundred a query); our internal accounts and unknown numbers are left out."""
        found = incoming.holders(self._ctx, tx, account_nos)
        return {account_no: row[0] for account_no, row in found.items()}

    def clear_suspense(self, tx: Transaction, event_id: str, pending_no: str,
                       account_no: str, work_date: WorkDate) -> int:
        return incoming.clear_suspense(self._ctx, tx, event_id, pending_no, account_no,
                                       work_date)

    def return_suspense(self, tx: Transaction, event_id: str, pending_no: str,
                        work_date: WorkDate, netted: bool = False) -> SuspenseItem:
        """`netted`: a BEPS return the NPC netted (Cr 4002, not the clearing account)."""
        return incoming.return_suspense(self._ctx, tx, event_id, pending_no, work_date,
                                        netted=netted)

    def open_suspense(self, tx: Transaction, as_of: WorkDate) -> list[SuspenseItem]:
        return incoming.open_suspense(tx, as_of)

    def suspense_item(self, tx: Transaction, pending_no: str) -> SuspenseItem:
        """The newest suspense item under `pending_no`, whatever its state; refused as
        suspense_item_not_found when we issued none."""
        return incoming.find_item(tx, pending_no)

    def suspense_items(self, tx: Transaction, pending_nos: list[str]
                       ) -> dict[str, SuspenseItem]:
        """`suspense_item` of each of a few numbers, in one statement: by number, those
        we issued none under left out."""
        return incoming.find_items(tx, pending_nos)

    # Receivables (其他应收款-待销账).

    def book_receivable(self, tx: Transaction, event_id: str, account_no: str, amount_fen: int,
                        work_date: WorkDate, ref: str, reason: str) -> ReceivableItem:
        """Dr 1221, Cr clearing account: money gone out for a debt of `account_no`."""
        return receivables.book_receivable(self._ctx, tx, event_id, account_no, amount_fen,
                                           work_date, ref, reason)

    def collect_receivable(self, tx: Transaction, event_id: str, pending_no: str,
                           account_no: str, work_date: WorkDate) -> int:
        """Dr the account, Cr 1221: an open receivable paid by the account that owes it."""
        return receivables.collect_receivable(self._ctx, tx, event_id, pending_no,
                                              account_no, work_date)

    def open_receivables(self, tx: Transaction, as_of: WorkDate) -> list[ReceivableItem]:
        return receivables.open_receivables(tx, as_of)

    def receivables_in(self, tx: Transaction, state: str, as_of: WorkDate,
                       limit: int = receivables.LIST_MAX) -> list[ReceivableItem]:
        """Receivables open, collected or void, oldest first, aged on `as_of`."""
        return receivables.receivables_in(tx, state, as_of, limit)

    def find_receivable(self, tx: Transaction, pending_no: str) -> ReceivableItem:
        return receivables.find_receivable(tx, pending_no)

    def reverse_receivable(self, tx: Transaction, event_id: str, pending_no: str,
                           work_date: WorkDate, by: str) -> tuple[int, ReceivableItem]:
        """Reverse the posting that last changed a receivable (its collection, else its
        booking); the reversal's entry id and the item after it."""
        return receivables.reverse_receivable(self._ctx, tx, event_id, pending_no,
                                              work_date, by)

    # Reading the books.

    def balance(self, tx: Transaction, account_no: str) -> int:
        return reports.balance(tx, account_no)

    def clearing_balance(self, tx: Transaction) -> int:
        return reports.balance(tx, self._ctx.accounts.clearing)

    def trial_balance(self, tx: Transaction, through: WorkDate | None = None) -> TrialBalance:
        return reports.trial_balance(tx, through)

    def entry_count(self, tx: Transaction) -> int:
        return reports.entry_count(tx)

    def digest(self, tx: Transaction) -> str:
        return reports.digest(tx)

    def statement(self, tx: Transaction, account_no: str, date_from: WorkDate,
                  date_to: WorkDate) -> Statement:
        return reports.statement(tx, account_no, date_from, date_to)

    # Corrections, day end and vouchers.

    def reverse(self, tx: Transaction, event_id: str, entry_id: int, work_date: WorkDate,
                by: str) -> int:
        return reversal.reverse(self._ctx, tx, event_id, entry_id, work_date, by)

    def close_day(self, tx: Transaction, work_date: WorkDate) -> dayend.DayClose:
        return dayend.close_day(tx, work_date)

    def day_rows(self, tx: Transaction, work_date: WorkDate) -> list[dayend.DayRow]:
        return dayend.day_rows(tx, work_date)

    def write_day_reports(self, tx: Transaction, work_date: WorkDate,
                          directory: str | Path) -> list[Path]:
        return dayend.write_day_reports(tx, work_date, directory)

    def audit(self, tx: Transaction) -> Audit:
        """Re-check the whole history and every figure day end stored (auditors; reads
        every line)."""
        return audit_book(tx)

    def voucher(self, tx: Transaction, number: int | str) -> Voucher:
        """The voucher of an entry, by entry id or 12-digit voucher number."""
        return vouchers.load_voucher(tx, number)
