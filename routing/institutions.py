"""Our own institutions (机构) and the clearing accounts they settle through.

Each institution has a 10-digit number: province 2 · city 2 · county union 2 · branch 4.
Accounting institutions (ending in an odd digit) post business; management-only ones
(ending in an even digit) hold no accounts and no bank code. Clearing between our
institutions is layered upward (层层向上清算): an institution with no clearing account
of its own uses the one found first when walking up its clearing parents. Two
institutions that end up on the same clearing account settle with each other in our
own books (系统内), never through CNAPS.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import Problem, ProblemList, ValidationFailed
from routing.accounts import ACCOUNT_EXPECTED, account_institution, account_problem
from routing.fields import cell_text, is_ascii_digits

COLUMNS = (
    "institution_no", "name", "management_parent", "clearing_parent", "bank_code",
    "clearing_account",
)


@dataclass(frozen=True)
class Institution:
    institution_no: str
    name: str
    management_parent: str
    clearing_parent: str
    bank_code: str
    clearing_account: str

    @property
    def accounting(self) -> bool:
        """Accounting institutions end in an odd digit, management-only ones in an even one."""
        return is_ascii_digits(self.institution_no, 10) and self.institution_no[-1] in "13579"


class Institutions:
    """Our institutions, with every accounting institution's clearing account resolved."""

    def __init__(self, rows: list[Institution], source: str = "rows") -> None:
        self.source = source
        self._by_no = {row.institution_no: row for row in rows}
        self._by_bank = {row.bank_code: row for row in rows if row.bank_code}
        problems = ProblemList()
        self._clearing = {
            row.institution_no: self._resolve(row, problems)
            for row in rows
            if row.accounting
        }
        problems.raise_if_any()

    @classmethod
    def load(cls, path_or_rows: str | Path | Iterable[Mapping[str, Any]]) -> Institutions:
        """Read institutions from a CSV path or from mappings with the CSV's columns."""
        source, raw = _read(path_or_rows)
        return cls(_parse(source, raw), source)

    def all(self) -> list[Institution]:
        """Every institution, ordered by number."""
        return [self._by_no[number] for number in sorted(self._by_no)]

    def get(self, institution_no: str) -> Institution | None:
        return self._by_no.get(institution_no)

    def by_bank_code(self, bank_code: str) -> Institution | None:
        """Our institution that holds this CNAPS bank code, or None if it is not ours."""
        return self._by_bank.get(bank_code)

    def clearing_account(self, institution_no: str) -> str:
        """The clearing account an accounting institution settles through."""
        return self._clearing[institution_no]

    def shared_clearing_account(self, bank_a: str, bank_b: str) -> str | None:
        """The clearing account two of our bank codes share, or None (also if not ours)."""
        first, second = self.by_bank_code(bank_a), self.by_bank_code(bank_b)
        if first is None or second is None:
            return None
        account = self._clearing[first.institution_no]
        return account if account == self._clearing[second.institution_no] else None

    def _resolve(self, row: Institution, problems: ProblemList) -> str:
        seen: list[str] = []
        current: Institution | None = row
        while current is not None and current.institution_no not in seen:
            if current.clearing_account:
                return current.clearing_account
            seen.append(current.institution_no)
            current = self._by_no.get(current.clearing_parent)
        code = "clearing_parent_cycle" if current is not None else "clearing_account_not_found"
        problems.add(code, f"{self.source}/{row.institution_no}/clearing_parent",
                     " -> ".join(seen),
                     "a chain of clearing parents that reaches an institution holding "
                     "a clearing account")
        return ""


def _read(source: str | Path | Iterable[Mapping[str, Any]]) -> tuple[str, list]:
    if not isinstance(source, (str, Path)):
        return "rows", [dict(row) for row in source]
    path = Path(source)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            raise ValidationFailed(Problem(
                "institutions_csv_columns_missing", path.name, ",".join(missing),
                "a header with " + ",".join(COLUMNS)))
        return path.name, list(reader)


def _parse(source: str, raw: list[Mapping[str, Any]]) -> list[Institution]:
    problems = ProblemList()
    rows = [
        Institution(**{name: cell_text(item.get(name)) for name in COLUMNS}) for item in raw
    ]
    for index, row in enumerate(rows):
        where = f"{source}:{index + 2}" if source != "rows" else f"{source}[{index}]"
        _check_row(where, row, problems)
    _check_links(source, rows, problems)
    problems.raise_if_any()
    return rows


def _check_row(where: str, row: Institution, problems: ProblemList) -> None:
    if not is_ascii_digits(row.institution_no, 10):
        problems.add("institution_no_must_be_10_ascii_digits", f"{where}/institution_no",
                     row.institution_no, "10 ASCII digits: province 2, city 2, union 2, branch 4")
        return
    if row.bank_code and not is_ascii_digits(row.bank_code, 12):
        problems.add("bank_code_must_be_12_ascii_digits", f"{where}/bank_code",
                     row.bank_code, "12 ASCII digits, or empty")
    code = account_problem(row.clearing_account) if row.clearing_account else None
    if code:
        problems.add(code, f"{where}/clearing_account", row.clearing_account,
                     ACCOUNT_EXPECTED)
    if not row.accounting and (row.bank_code or row.clearing_account):
        problems.add("management_institution_must_not_hold_accounts", where,
                     row.institution_no,
                     "no bank code and no clearing account on an institution ending in "
                     "an even digit")


def _check_links(source: str, rows: list[Institution], problems: ProblemList) -> None:
    numbers = [row.institution_no for row in rows]
    accounting = {row.institution_no for row in rows if row.accounting}
    banks = [row.bank_code for row in rows if row.bank_code]
    for number in sorted({n for n in numbers if numbers.count(n) > 1}):
        problems.add("institution_no_duplicate", f"{source}/{number}", number,
                     "each institution number once")
    for bank in sorted({b for b in banks if banks.count(b) > 1}):
        problems.add("institution_bank_code_duplicate", f"{source}/{bank}", bank,
                     "each bank code on one institution")
    for row in rows:
        where = f"{source}/{row.institution_no}"
        if row.management_parent and row.management_parent not in numbers:
            problems.add("management_parent_unknown", f"{where}/management_parent",
                         row.management_parent, "an institution in the file, or empty")
        if row.clearing_parent and row.clearing_parent not in accounting:
            problems.add("clearing_parent_must_be_an_accounting_institution",
                         f"{where}/clearing_parent", row.clearing_parent,
                         "an accounting institution in the file (odd last digit), or empty")
        holder = account_institution(row.clearing_account) if row.clearing_account else ""
        if holder and holder not in accounting:
            problems.add("clearing_account_institution_unknown", f"{where}/clearing_account",
                         row.clearing_account,
                         "an account held by an accounting institution in the file")
