"""The values the ledger hands back to its callers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CustomerBalance:
    """A customer account's money as the books see it now.

    A hold moves the payer's money to holds in transit (4001) until its payment settles
    or is released, so the account's own balance is what remains free: `ledger_balance_fen`
    adds back the money held for payments under way. Nothing is available from an account
    that is frozen or closed (every line that would lower it is refused)."""

    account: Account
    held_fen: int
    holds: int  # payments under way holding money on the account

    @property
    def ledger_balance_fen(self) -> int:
        return self.account.balance_fen + self.held_fen

    @property
    def available_fen(self) -> int:
        return self.account.balance_fen if self.account.status == "open" else 0


@dataclass(frozen=True)
class CreditResult:
    """Where an incoming credit went: the payee's account, or suspense (待销账).

    `kind` is "credited" (with `account_no`) or "suspense" (with `pending_no` and
    `reason`: account_not_found, account_closed, name_mismatch or branch_mismatch).
    """

    kind: str
    account_no: str | None = None
    pending_no: str | None = None
    reason: str | None = None
    entry_id: int = 0

    def to_json(self) -> str:
        # The fields by name, as asdict gives them, without its deep copy of each: a
        # package's thousand credits each store theirs.
        return json.dumps({"account_no": self.account_no, "entry_id": self.entry_id,
                           "kind": self.kind, "pending_no": self.pending_no,
                           "reason": self.reason}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CreditResult:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Account:
    account_no: str
    subject: str
    name: str
    role: str
    status: str  # the effective status on the date asked about: a lapsed freeze is open
    frozen_until: str | None
    balance_fen: int
    opened_on: str


@dataclass(frozen=True)
class SubjectRow:
    """One subject in a trial balance: turnover on each side and the closing balance."""

    code: str
    name: str
    klass: int
    normal_side: str
    debit_fen: int
    credit_fen: int

    @property
    def balance_fen(self) -> int:
        """The balance on the subject's normal side."""
        net_fen = self.debit_fen - self.credit_fen
        return net_fen if self.normal_side == "D" else -net_fen


@dataclass(frozen=True)
class TrialBalance:
    rows: tuple[SubjectRow, ...]
    debit_total_fen: int
    credit_total_fen: int
    assets_fen: int
    liabilities_fen: int
    equity_fen: int
    income_fen: int
    expenses_fen: int
    accounts_agree: bool  # every account's running balance equals the sum of its lines

    @property
    def balanced(self) -> bool:
        """Debits equal credits, assets = liabilities + equity + income - expenses, and
        the detail ledgers agree with the general ledger (总分核对)."""
        equation_holds = self.assets_fen == (
            self.liabilities_fen + self.equity_fen + self.income_fen - self.expenses_fen
        )
        return (self.debit_total_fen == self.credit_total_fen and equation_holds
                and self.accounts_agree)


@dataclass(frozen=True)
class SuspenseItem:
    pending_no: str
    amount_fen: int
    account_no: str
    payee_name: str
    reason: str
    ref: str
    work_date: str
    state: str
    entry_id: int
    age_days: int = 0


@dataclass(frozen=True)
class ReceivableItem:
    """Money owed to the bank, booked on other receivables (1221, 其他应收款-待销账) under
    a pending write-off number: `account_no` is the account it is to be collected from,
    `ref` what it is for (a payment's id)."""

    pending_no: str
    amount_fen: int
    account_no: str
    reason: str
    ref: str
    work_date: str
    state: str  # open, collected or void (its booking reversed)
    entry_id: int
    age_days: int = 0


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    voucher_no: str
    work_date: str
    op: str
    ref: str
    side: str
    amount_fen: int
    balance_fen: int


@dataclass(frozen=True)
class Statement:
    account_no: str
    name: str
    date_from: str
    date_to: str
    opening_fen: int
    closing_fen: int
    lines: tuple[StatementLine, ...] = field(default_factory=tuple)
