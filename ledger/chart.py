"""The chart of accounts (会计科目) and the bank's own internal accounts.

A subject's class is its first digit: 1 assets, 2 liabilities, 3 owners' equity,
4 common (an asset or a liability depending on the side of its balance), 5 profit and
loss, 6 contingent. On-balance-sheet subjects (表内) move money; off-balance-sheet ones
(表外) record events that move none yet and stay out of the balance equation.

Each subject has a normal side: the side a posting takes to increase its balance.
Balances are stored signed on that side. A balance may go below zero only where the
subject says so:

- 1003, our clearing account at the central bank: the central bank keeps the real
  books and may grant intraday overdraft; the ledger mirrors what the central bank
  has settled and never refuses it.
- 4002 and 4003, the BEPS netting accounts: common-class subjects carry a balance on
  either side, and a netting round may settle before every item of it is booked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ledger.balances import AccountRule
from ledger.numbers import make_internal_account

CLASS_NAMES = {
    1: "assets", 2: "liabilities", 3: "owners_equity", 4: "common",
    5: "profit_and_loss", 6: "contingent",
}


@dataclass(frozen=True)
class Subject:
    code: str
    name_zh: str
    name_en: str
    normal_side: str  # "D" debit or "C" credit
    on_balance: bool = True
    negative_ok: bool = False

    @property
    def klass(self) -> int:
        return int(self.code[0])


CASH = "1001"
CENTRAL_BANK = "1003"
RECEIVABLES = "1221"
PERSONAL_DEPOSITS = "2001"
CORPORATE_DEPOSITS = "2011"
SUSPENSE = "2241"
CAPITAL = "3001"
HOLDS_IN_TRANSIT = "4001"
BEPS_NETTED_OUT = "4002"
BEPS_NETTED_IN = "4003"
FEE_INCOME = "5001"
FEE_EXPENSE = "5201"
COLLECTIONS_OFF = "6001"
BLANK_VOUCHERS_OFF = "6002"

SUBJECTS: tuple[Subject, ...] = (
    Subject(CASH, "库存现金", "cash in vault", "D"),
    Subject(CENTRAL_BANK, "存放中央银行款项", "clearing account at the central bank", "D",
            negative_ok=True),
    Subject(RECEIVABLES, "其他应收款-待销账", "other receivables (pending write-off)", "D"),
    Subject(PERSONAL_DEPOSITS, "个人活期存款", "personal current deposits", "C"),
    Subject(CORPORATE_DEPOSITS, "单位活期存款", "corporate current deposits", "C"),
    Subject(SUSPENSE, "其他应付款-待销账", "suspense (pending write-off)", "C"),
    Subject(CAPITAL, "实收资本", "paid-in capital", "C"),
    Subject(HOLDS_IN_TRANSIT, "汇出汇款在途", "outgoing payments held in transit", "C"),
    Subject(BEPS_NETTED_OUT, "小额轧差待清算-应付", "BEPS netted obligations", "C",
            negative_ok=True),
    Subject(BEPS_NETTED_IN, "小额轧差待清算-应收", "BEPS netted receivables", "D",
            negative_ok=True),
    Subject(FEE_INCOME, "手续费收入", "fee income", "C"),
    Subject(FEE_EXPENSE, "手续费支出", "fee expense", "D"),
    Subject(COLLECTIONS_OFF, "托收在途", "collections in progress", "D", on_balance=False),
    Subject(BLANK_VOUCHERS_OFF, "空白重要凭证", "blank vouchers in stock", "D",
            on_balance=False),
)

SUBJECTS_BY_CODE = {s.code: s for s in SUBJECTS}

CUSTOMER_SUBJECTS = {"personal": PERSONAL_DEPOSITS, "corporate": CORPORATE_DEPOSITS}

# The bank's own accounts, one per on-balance subject that is not a customer deposit.
INTERNAL_SUBJECTS = (
    CASH, CENTRAL_BANK, RECEIVABLES, SUSPENSE, CAPITAL, HOLDS_IN_TRANSIT, BEPS_NETTED_OUT,
    BEPS_NETTED_IN, FEE_INCOME, FEE_EXPENSE,
)


@dataclass(frozen=True)
class InternalAccounts:
    """The 25-digit numbers of the bank's own accounts at one institution."""

    institution: str
    by_subject: dict[str, str]

    @classmethod
    def for_institution(cls, institution: str) -> InternalAccounts:
        numbers = {
            code: make_internal_account(institution, code, 1) for code in INTERNAL_SUBJECTS
        }
        return cls(institution, numbers)

    @cached_property
    def rules(self) -> dict[str, AccountRule]:
        """How each internal account's balance behaves, for the posting engine."""
        return {
            number: AccountRule(SUBJECTS_BY_CODE[code].normal_side,
                                SUBJECTS_BY_CODE[code].negative_ok)
            for code, number in self.by_subject.items()
        }

    @cached_property
    def numbers(self) -> frozenset[str]:
        return frozenset(self.by_subject.values())

    def __getitem__(self, subject_code: str) -> str:
        return self.by_subject[subject_code]

    @property
    def clearing(self) -> str:
        return self.by_subject[CENTRAL_BANK]

    @property
    def holds(self) -> str:
        return self.by_subject[HOLDS_IN_TRANSIT]

    @property
    def suspense(self) -> str:
        return self.by_subject[SUSPENSE]

    @property
    def receivables(self) -> str:
        return self.by_subject[RECEIVABLES]
