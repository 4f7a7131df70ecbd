"""beps.128.001.01: ordinary debit receipt (普通借记业务回执报文).

The payer bank answers a beps.127 package before its return deadline: for each debit,
paid (PR02) or refused (PR09, with a reject code and reason). Paid items are then
netted like credits. The Giantstone field list gives receipt status, original message
id, type and detail id, original payer and payee banks, original amount, reject code
and reason, the total count and the success count and amount; no published schema
exists (SPEC.md e.5). Ours keeps the package header (count and sum of the rows'
original amounts), names the beps.127 in OrgnlGrpHdr, gives the paid totals in
RctSumry and one CstmrDrctDbtRctInf row per debit.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.beps123 import PAID, check_receipt_status
from gateway.messages.common import (
    NpcProcessing, OriginalRef, amount_el, amount_from_xml, build_npc, build_original,
    check_bank_code, check_currency, opt_el, parse_amount_el, parse_npc, parse_original)
from gateway.messages.package import PackageHeader
from gateway.messages.xml import Builder, qpath, text

MESSAGE_TYPE = "beps.128.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.128.001.01"
DEBIT_TYPE = "beps.127.001.01"
_DOC = "/Document/CstmrDrctDbtRct"


@dataclass(frozen=True)
class ReceiptLine:
    tx_id: str                 # the debit's TxId in the beps.127
    debtor_bank: str           # the original payer's bank
    creditor_bank: str         # the original payee's bank
    amount_fen: int            # the original amount
    status: str                # PR02 paid | PR09 refused
    reject_code: str | None = None
    reject_info: str | None = None
    currency: str = "CNY"


@dataclass(frozen=True)
class DebitReceipt:
    header: PackageHeader      # count and sum of all lines' original amounts
    original: OriginalRef      # the beps.127 answered
    paid_count: int
    paid_fen: int
    lines: tuple[ReceiptLine, ...]
    npc: NpcProcessing | None = None
    paid_currency: str = "CNY"


def build(r: DebitReceipt) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "CstmrDrctDbtRct")
    h = r.header
    hdr = b.el(doc, "PKGGrpHdr")
    b.el(hdr, "MsgId", h.msg_id)
    b.el(hdr, "CreDtTm", h.created_at)
    b.path(hdr, "InstgPty/InstgDrctPty", h.instg_direct)
    b.path(hdr, "InstdPty/InstdDrctPty", h.instd_direct)
    b.el(hdr, "NbOfTxs", str(h.count))
    amount_el(b, hdr, "CtrlSum", h.total_fen, h.currency)
    b.el(hdr, "SysCd", h.system)
    opt_el(b, hdr, "Rmk", h.remark)
    if r.npc is not None:
        build_npc(b, doc, r.npc)
    build_original(b, doc, r.original)
    summary = b.el(doc, "RctSumry")
    b.el(summary, "SucNbOfTxs", str(r.paid_count))
    amount_el(b, summary, "SucCtrlSum", r.paid_fen, r.paid_currency)
    for line in r.lines:
        row = b.el(doc, "CstmrDrctDbtRctInf")
        b.el(row, "OrgnlTxId", line.tx_id)
        b.el(row, "DbtrBrnchId", line.debtor_bank)
        b.el(row, "CdtrBrnchId", line.creditor_bank)
        amount_el(b, row, "OrgnlAmt", line.amount_fen, line.currency)
        b.el(row, "RctSts", line.status)
        opt_el(b, row, "RjctCd", line.reject_code)
        opt_el(b, row, "RjctInf", line.reject_info)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[DebitReceipt, list[Problem]]:
    ns = NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}CstmrDrctDbtRct")
    total = doc.find(qpath(ns, "PKGGrpHdr/CtrlSum"))
    count = text(doc, ns, "PKGGrpHdr/NbOfTxs") or "0"
    header = PackageHeader(
        text(doc, ns, "PKGGrpHdr/MsgId") or "", text(doc, ns, "PKGGrpHdr/CreDtTm") or "",
        text(doc, ns, "PKGGrpHdr/InstgPty/InstgDrctPty") or "",
        text(doc, ns, "PKGGrpHdr/InstdPty/InstdDrctPty") or "", int(count),
        amount_from_xml(text(doc, ns, "PKGGrpHdr/CtrlSum"), f"{_DOC}/PKGGrpHdr/CtrlSum",
                        problems),
        text(doc, ns, "PKGGrpHdr/SysCd") or "", text(doc, ns, "PKGGrpHdr/Rmk"),
        total.get("Ccy", "") if total is not None else "")
    # Nothing paid is a valid answer, so the paid sum may be zero.
    paid_fen, paid_ccy = parse_amount_el(doc.find(qpath(ns, "RctSumry/SucCtrlSum")),
                                         f"{_DOC}/RctSumry/SucCtrlSum", problems, True)
    lines = []
    for index, row in enumerate(doc.iterfind(qpath(ns, "CstmrDrctDbtRctInf")), start=1):
        fen, ccy = parse_amount_el(row.find(qpath(ns, "OrgnlAmt")),
                                   f"{_DOC}/CstmrDrctDbtRctInf[{index}]/OrgnlAmt", problems)
        lines.append(ReceiptLine(
            text(row, ns, "OrgnlTxId") or "", text(row, ns, "DbtrBrnchId") or "",
            text(row, ns, "CdtrBrnchId") or "", fen, text(row, ns, "RctSts") or "",
            text(row, ns, "RjctCd"), text(row, ns, "RjctInf"), ccy))
    return DebitReceipt(header, parse_original(doc, ns),
                        int(text(doc, ns, "RctSumry/SucNbOfTxs") or 0), paid_fen,
                        tuple(lines), parse_npc(doc.find(qpath(ns, "NPCPrcInf")), ns),
                        paid_ccy), problems


def check(r: DebitReceipt) -> list[Problem]:
    p: list[Problem] = []
    h = r.header
    check_currency(h.currency, f"{_DOC}/PKGGrpHdr/CtrlSum/@Ccy", p)
    check_currency(r.paid_currency, f"{_DOC}/RctSumry/SucCtrlSum/@Ccy", p)
    check_bank_code(h.instg_direct, f"{_DOC}/PKGGrpHdr/InstgPty/InstgDrctPty", p)
    check_bank_code(h.instd_direct, f"{_DOC}/PKGGrpHdr/InstdPty/InstdDrctPty", p)
    if r.original.mt != DEBIT_TYPE:
        p.append(Problem("receipt_must_answer_a_debit", f"{_DOC}/OrgnlGrpHdr/OrgnlMT",
                         r.original.mt, DEBIT_TYPE))
    _check_totals(r, p)
    for index, line in enumerate(r.lines, start=1):
        path = f"{_DOC}/CstmrDrctDbtRctInf[{index}]"
        check_currency(line.currency, f"{path}/OrgnlAmt/@Ccy", p)
        check_bank_code(line.debtor_bank, f"{path}/DbtrBrnchId", p)
        check_bank_code(line.creditor_bank, f"{path}/CdtrBrnchId", p)
        check_receipt_status(line.status, line.reject_code, path, p)
    return p


def _check_totals(r: DebitReceipt, p: list[Problem]) -> None:
    paid = [line for line in r.lines if line.status == PAID]
    for code, path, declared, actual in (
            ("package_count_mismatch", "PKGGrpHdr/NbOfTxs", r.header.count, len(r.lines)),
            ("package_control_sum_mismatch", "PKGGrpHdr/CtrlSum", r.header.total_fen,
             sum(line.amount_fen for line in r.lines)),
            ("paid_count_mismatch", "RctSumry/SucNbOfTxs", r.paid_count, len(paid)),
            ("paid_sum_mismatch", "RctSumry/SucCtrlSum", r.paid_fen,
             sum(line.amount_fen for line in paid))):
        if declared != actual:
            p.append(Problem(code, f"{_DOC}/{path}", declared,
                             f"{actual}, as the receipt lines add up"))
