"""beps.720.001.01 (BEPS total-check request) and beps.721.001.01 (total-check result).

At the end of the day the bank asks the NPC for its BEPS totals of a date (720 ChckDt).
The 721 lists, per netting date, round and message type, the package counts and signed
sums the bank sent and received with their status (ChckPmtInf), then per message type
the counts of non-payment messages with the receive date (ChckMsg). Each list starts
with its own row count (NbOfChckInf).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, OriginalRef, build_group_header,
                                     build_original, check_group_parties, parse_group_header,
                                     parse_original)
from gateway.messages.hvps710 import parse_summary_amount, summary_amount
from gateway.messages.xml import Builder, qpath, text

MESSAGE_TYPE = "beps.720.001.01"
RESPONSE_TYPE = "beps.721.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.720.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.721.001.01"
_INF = "/Document/TtlChck/TtlChckInf"


@dataclass(frozen=True)
class TotalCheckRequest:
    header: GroupHeader
    check_date: str


@dataclass(frozen=True)
class RoundTotals:
    netting_date: str
    netting_round: str
    mt: str
    sent_count: int
    sent_fen: int          # signed, as SummaryAmountText
    received_count: int
    received_fen: int
    status: str


@dataclass(frozen=True)
class MessageCounts:
    mt: str
    sent_count: int
    received_count: int
    received_on: str


@dataclass(frozen=True)
class TotalCheck:
    header: GroupHeader
    original: OriginalRef | None
    check_date: str
    payments: tuple[RoundTotals, ...]
    messages: tuple[MessageCounts, ...]
    payment_count: int     # ChckPmtInf/NbOfChckInf
    message_count: int     # ChckMsg/NbOfChckInf


def build(r: TotalCheckRequest) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "TtlChckInfReq")
    build_group_header(b, doc, r.header)
    b.path(doc, "TtlChckInfReqInf/ChckDt", r.check_date)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[TotalCheckRequest, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}TtlChckInfReq")
    return TotalCheckRequest(parse_group_header(doc, ns),
                             text(doc, ns, "TtlChckInfReqInf/ChckDt") or ""), []


def build_result(r: TotalCheck) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "TtlChck")
    build_group_header(b, doc, r.header)
    if r.original is not None:
        build_original(b, doc, r.original)
    inf = b.el(doc, "TtlChckInf")
    b.el(inf, "ChckDt", r.check_date)
    pmt = b.el(inf, "ChckPmtInf")
    b.el(pmt, "NbOfChckInf", str(r.payment_count))
    for p in r.payments:
        row = b.el(pmt, "ChckPmtInfDtls")
        for tag, value in (("TxNetgDt", p.netting_date), ("TxNetgRnd", p.netting_round),
                           ("MT", p.mt), ("SndTtlCnt", str(p.sent_count)),
                           ("SndTtlAmt", summary_amount(p.sent_fen)),
                           ("RcvTtlCnt", str(p.received_count)),
                           ("RcvTtlAmt", summary_amount(p.received_fen)),
                           ("PrcSts", p.status)):
            b.el(row, tag, value)
    msg = b.el(inf, "ChckMsg")
    b.el(msg, "NbOfChckInf", str(r.message_count))
    for m in r.messages:
        row = b.el(msg, "ChckMsgDtls")
        for tag, value in (("MT", m.mt), ("SndTtlCnt", str(m.sent_count)),
                           ("RcvTtlCnt", str(m.received_count)), ("RcvDt", m.received_on)):
            b.el(row, tag, value)
    return b.tobytes()


def parse_result(root: etree._Element) -> tuple[TotalCheck, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    doc = root.find(f"{{{ns}}}TtlChck")
    inf = doc.find(qpath(ns, "TtlChckInf"))

    def t(node: etree._Element, name: str) -> str:
        return text(node, ns, name) or ""

    payments = tuple(RoundTotals(
        t(n, "TxNetgDt"), t(n, "TxNetgRnd"), t(n, "MT"), int(t(n, "SndTtlCnt") or 0),
        parse_summary_amount(t(n, "SndTtlAmt")), int(t(n, "RcvTtlCnt") or 0),
        parse_summary_amount(t(n, "RcvTtlAmt")), t(n, "PrcSts"))
        for n in inf.iterfind(qpath(ns, "ChckPmtInf/ChckPmtInfDtls")))
    messages = tuple(MessageCounts(t(n, "MT"), int(t(n, "SndTtlCnt") or 0),
                                   int(t(n, "RcvTtlCnt") or 0), t(n, "RcvDt"))
                     for n in inf.iterfind(qpath(ns, "ChckMsg/ChckMsgDtls")))
    has_original = doc.find(qpath(ns, "OrgnlGrpHdr")) is not None
    return TotalCheck(parse_group_header(doc, ns),
                      parse_original(doc, ns) if has_original else None,
                      t(inf, "ChckDt"), payments, messages,
                      int(t(inf, "ChckPmtInf/NbOfChckInf") or 0),
                      int(t(inf, "ChckMsg/NbOfChckInf") or 0)), []


def check(m: TotalCheckRequest | TotalCheck) -> list[Problem]:
    if isinstance(m, TotalCheckRequest):
        return check_group_parties(m.header, "/Document/TtlChckInfReq/GrpHdr")
    p = check_group_parties(m.header, "/Document/TtlChck/GrpHdr")
    for path, declared, rows in (("ChckPmtInf", m.payment_count, len(m.payments)),
                                 ("ChckMsg", m.message_count, len(m.messages))):
        if declared != rows:
            p.append(Problem("row_count_mismatch", f"{_INF}/{path}/NbOfChckInf", declared,
                             f"{rows}, the number of rows that follow"))
    return p
