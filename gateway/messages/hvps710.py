"""hvps.710.001.01 (reconciliation request) and hvps.711.001.01 (summary file).

At day end the bank asks the NPC for its totals of a checking date (710 ChckngDt); the
NPC answers with a SummryFile (711): per message type, business type and processing
status, the count and sum the bank sent and received, and per message type the message
counts. The bank compares them with its own records and lists every difference; details
of differing items are asked for with hvps.712/713.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, OriginalRef, build_group_header,
                                     build_original, parse_group_header, parse_original)
from gateway.messages.xml import Builder, text

MESSAGE_TYPE = "hvps.710.001.01"
RESPONSE_TYPE = "hvps.711.001.01"
NAMESPACE = "urn:cnaps:std:hvps:2010:tech:xsd:hvps.710.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:hvps:2010:tech:xsd:hvps.711.001.01"


@dataclass(frozen=True)
class ReconRequest:
    header: GroupHeader
    check_date: str  # ISODate


@dataclass(frozen=True)
class PaymentTotals:
    mt: str
    tx_type: str     # business type, e.g. A100
    sent_count: int
    sent_fen: int
    received_count: int
    received_fen: int
    status: str      # PR04 ...


@dataclass(frozen=True)
class MessageTotals:
    mt: str
    tx_type: str
    sent_count: int
    received_count: int
    status: str


@dataclass(frozen=True)
class ReconSummary:
    header: GroupHeader
    original: OriginalRef | None
    check_date: str
    payments: tuple[PaymentTotals, ...]
    messages: tuple[MessageTotals, ...]


def build(r: ReconRequest) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "AcctChckngReq")
    build_group_header(b, doc, r.header)
    b.path(doc, "AcctChckngReqInf/ChckngDt", r.check_date)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[ReconRequest, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}AcctChckngReq")
    return ReconRequest(parse_group_header(doc, ns),
                        text(doc, ns, "AcctChckngReqInf/ChckngDt") or ""), []


def summary_amount(fen: int) -> str:
    """SummaryAmountText: currency, sign, yuan with two decimals (CNY+1000.00)."""
    sign = "-" if fen < 0 else "+"
    fen = abs(fen)
    return f"CNY{sign}{fen // 100}.{fen % 100:02d}"


def parse_summary_amount(value: str) -> int:
    sign = -1 if value[3] == "-" else 1
    whole, _, frac = value[4:].partition(".")
    return sign * (int(whole) * 100 + int(frac[:2].ljust(2, "0")))


def build_summary(s: ReconSummary) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "SummryFile")
    build_group_header(b, doc, s.header)
    if s.original is not None:
        build_original(b, doc, s.original)
    inf = b.el(doc, "SummryFileInf")
    b.el(inf, "ChckDt", s.check_date)
    b.el(inf, "TtlPmt", str(len(s.payments)))
    for p in s.payments:
        row = b.el(inf, "ChckPmtInfDtls")
        b.el(row, "MT", p.mt)
        b.el(row, "TxTpCd", p.tx_type)
        b.el(row, "SndgNbOfTxs", str(p.sent_count))
        b.el(row, "SndgCtrlSum", summary_amount(p.sent_fen))
        b.el(row, "RcvgNbOfTxs", str(p.received_count))
        b.el(row, "RcvgCtrlSum", summary_amount(p.received_fen))
        b.el(row, "PrcSts", p.status)
    b.el(inf, "TtlMsg", str(len(s.messages)))
    for m in s.messages:
        row = b.el(inf, "ChckMsg")
        b.el(row, "MT", m.mt)
        b.el(row, "TxTpCd", m.tx_type)
        b.el(row, "SndgNbOfTxs", str(m.sent_count))
        b.el(row, "RcvgNbOfTxs", str(m.received_count))
        b.el(row, "PrcSts", m.status)
    return b.tobytes()


def parse_summary(root: etree._Element) -> tuple[ReconSummary, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    doc = root.find(f"{{{ns}}}SummryFile")
    has_original = doc.find(f"{{{ns}}}OrgnlGrpHdr") is not None
    payments, messages = [], []
    for row in doc.iterfind(f"{{{ns}}}SummryFileInf/{{{ns}}}ChckPmtInfDtls"):
        def t(name: str, row=row) -> str:
            return text(row, ns, name) or ""
        payments.append(PaymentTotals(
            t("MT"), t("TxTpCd"), int(t("SndgNbOfTxs") or 0),
            parse_summary_amount(t("SndgCtrlSum")), int(t("RcvgNbOfTxs") or 0),
            parse_summary_amount(t("RcvgCtrlSum")), t("PrcSts")))
    for row in doc.iterfind(f"{{{ns}}}SummryFileInf/{{{ns}}}ChckMsg"):
        def t(name: str, row=row) -> str:
            return text(row, ns, name) or ""
        messages.append(MessageTotals(t("MT"), t("TxTpCd"), int(t("SndgNbOfTxs") or 0),
                                      int(t("RcvgNbOfTxs") or 0), t("PrcSts")))
    return ReconSummary(parse_group_header(doc, ns),
                        parse_original(doc, ns) if has_original else None,
                        text(doc, ns, "SummryFileInf/ChckDt") or "", tuple(payments),
                        tuple(messages)), []


def check(r: object) -> list[Problem]:
    return []
