"""Vouchers (凭证): every posting has one, and ledger and vouchers agree (账据相符).

A voucher is read back from its entry, so it can never disagree with the books. Its
number is the voucher kind (2 digits, which paper it is) and the print number (10
digits, the entry id). It shows the parties (the debited and credited accounts with
their holders), every line, and the amount with thousands separators and in Chinese
capitals. `render_text` is for the terminal and for printing; `render_html` for the
operators' web page.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from gateway.money import format_yuan_grouped
from gateway.operator_names import operator_name
from ledger.capitals import amount_in_capitals
from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.numbers import make_voucher_no, split_voucher_no, validate_voucher_no
from ledger.postings import DEBIT, VOUCHER_KINDS


@dataclass(frozen=True)
class VoucherLine:
    account_no: str
    account_name: str
    subject: str
    side: str
    amount_fen: int


@dataclass(frozen=True)
class Voucher:
    voucher_no: str
    kind_name: str
    entry_id: int
    event_id: str
    op: str
    work_date: str
    ref: str
    teller: str
    reverses: int | None
    lines: tuple[VoucherLine, ...]

    @property
    def amount_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.side == DEBIT)

    @property
    def debited(self) -> VoucherLine:
        return next(line for line in self.lines if line.side == DEBIT)

    @property
    def credited(self) -> VoucherLine:
        return next(line for line in self.lines if line.side != DEBIT)


def load_voucher(tx: Transaction, number: int | str) -> Voucher:
    """The voucher of an entry, by entry id or by 12-digit voucher number."""
    entry_id = _entry_id(number)
    row = tx.query_one("SELECT entry_id, event_id, op, voucher_kind, work_date, ref, teller,"
                       " reverses FROM ledger_entry WHERE entry_id = ?", (entry_id,))
    if row is None or (isinstance(number, str) and make_voucher_no(row[3], row[0]) != number):
        raise LedgerError("voucher_not_found", number, "a voucher number of ours", "voucher")
    lines = tx.query(
        "SELECT l.account_no, a.name, a.subject, l.side, l.amount_fen FROM ledger_line l"
        " JOIN ledger_account a ON a.account_no = l.account_no WHERE l.entry_id = ?"
        " ORDER BY l.line_no", (entry_id,))
    return Voucher(
        voucher_no=make_voucher_no(row[3], row[0]), kind_name=VOUCHER_KINDS[row[3]],
        entry_id=int(row[0]), event_id=row[1], op=row[2], work_date=row[4], ref=row[5],
        # A reversal by an operator written before the console named operators plainly
        # (`operator:sup1`) is shown under the name every other record gives them.
        teller=operator_name(row[6]), reverses=row[7],
        lines=tuple(VoucherLine(r[0], r[1], r[2], r[3], int(r[4])) for r in lines),
    )


def _entry_id(number: int | str) -> int:
    if isinstance(number, int) and not isinstance(number, bool) and number > 0:
        return number
    if isinstance(number, str) and validate_voucher_no(number):
        return split_voucher_no(number)[1]
    raise LedgerError("voucher_not_found", number, "an entry id or a 12-digit voucher number",
                      "voucher")


def render_text(voucher: Voucher) -> str:
    """The voucher as fixed-width text."""
    debited, credited = voucher.debited, voucher.credited
    out = [
        f"{voucher.kind_name}  No. {voucher.voucher_no}",
        f"work date {voucher.work_date}  event {voucher.event_id}  business {voucher.op}",
        f"reference {voucher.ref or '-'}  teller {voucher.teller}",
    ]
    if voucher.reverses is not None:
        out.append(f"reverses entry {voucher.reverses}")
    out += [
        f"debit   {debited.account_no}  {debited.account_name}",
        f"credit  {credited.account_no}  {credited.account_name}",
        f"amount  CNY {format_yuan_grouped(voucher.amount_fen)}",
        f"        {amount_in_capitals(voucher.amount_fen)}",
        "",
        f"  {'side':<7}{'subject':<9}{'account':<27}{'amount':>18}  holder",
    ]
    for line in voucher.lines:
        side = "debit" if line.side == DEBIT else "credit"
        out.append(f"  {side:<7}{line.subject:<9}{line.account_no:<27}"
                   f"{format_yuan_grouped(line.amount_fen):>18}  {line.account_name}")
    return "\n".join(out) + "\n"


def render_html(voucher: Voucher) -> str:
    """The voucher as an HTML fragment; every value is escaped."""
    def cell(value: object) -> str:
        return f"<td>{escape(str(value))}</td>"

    head = (
        f'<section class="voucher" id="voucher-{voucher.voucher_no}">'
        f"<h2>{escape(voucher.kind_name)} <span>No. {voucher.voucher_no}</span></h2>"
        "<dl>"
        f"<dt>Work date</dt><dd>{voucher.work_date}</dd>"
        f"<dt>Business</dt><dd>{escape(voucher.op)}</dd>"
        f"<dt>Event</dt><dd>{escape(voucher.event_id)}</dd>"
        f"<dt>Reference</dt><dd>{escape(voucher.ref or '-')}</dd>"
        f"<dt>Teller</dt><dd>{escape(voucher.teller)}</dd>"
        f"<dt>Amount</dt><dd>CNY {format_yuan_grouped(voucher.amount_fen)}</dd>"
        f"<dt>In capitals</dt><dd>{amount_in_capitals(voucher.amount_fen)}</dd>"
        "</dl><table><thead><tr><th>Side</th><th>Subject</th><th>Account</th>"
        "<th>Holder</th><th>Amount</th></tr></thead><tbody>"
    )
    rows = "".join(
        "<tr>" + cell("debit" if line.side == DEBIT else "credit") + cell(line.subject)
        + cell(line.account_no) + cell(line.account_name)
        + f'<td class="amount">{format_yuan_grouped(line.amount_fen)}</td></tr>'
        for line in voucher.lines
    )
    return head + rows + "</tbody></table></section>\n"
