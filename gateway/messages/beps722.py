"""beps.722.001.01 (BEPS package detail check request) and beps.723.001.01 (response).

After a beps.721 difference, the bank asks for the packages behind chosen payment rows
(side SR00/SR01, netting date and round, message type, status) and the messages behind
chosen message rows (side, type, receive date). The 723 (split by Prttn) lists, per
payment row, each package's group header with its count and control sum, and per
message row each message's group header and status (PmtId PT00/PT01, values only).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (
    GroupHeader, NpcProcessing, OriginalRef, Partition, amount_el, build_group_header,
    build_npc, build_original, build_partition, check_currency, check_group_parties,
    check_partition, opt_el, parse_amount_el, parse_group_header, parse_npc, parse_original,
    parse_partition)
from gateway.messages.xml import Builder, Element, qpath, text

MESSAGE_TYPE = "beps.722.001.01"
RESPONSE_TYPE = "beps.723.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.722.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.723.001.01"
_RSP = "/Document/DtlChckRspn/DtlChckRspnInf"


@dataclass(frozen=True)
class PaymentRow:
    side: str              # SR00 sent | SR01 received
    netting_date: str
    netting_round: str
    mt: str
    status: str


@dataclass(frozen=True)
class MessageRow:
    side: str
    mt: str
    received_on: str


@dataclass(frozen=True)
class DetailCheckRequest:
    header: GroupHeader
    check_date: str
    payments: tuple[PaymentRow, ...]
    messages: tuple[MessageRow, ...]


@dataclass(frozen=True)
class PackageTotal:
    original: OriginalRef
    count: int
    total_fen: int
    currency: str = "CNY"


@dataclass(frozen=True)
class PaymentDetails:
    row: PaymentRow
    packages: tuple[PackageTotal, ...]


@dataclass(frozen=True)
class MessageStatus:
    original: OriginalRef
    status: str
    payment_flag: str | None = None


@dataclass(frozen=True)
class MessageDetails:
    row: MessageRow
    messages: tuple[MessageStatus, ...]


@dataclass(frozen=True)
class DetailCheckResponse:
    header: GroupHeader
    partition: Partition
    request: OriginalRef
    check_date: str
    npc: NpcProcessing
    payments: tuple[PaymentDetails, ...] | None = None
    messages: tuple[MessageDetails, ...] | None = None


def _build_payment_row(b: Builder, node: Element, r: PaymentRow) -> None:
    for tag, value in (("SndRcvTp", r.side), ("TxNetgDt", r.netting_date),
                       ("TxNetgRnd", r.netting_round), ("MT", r.mt), ("PrcSts", r.status)):
        b.el(node, tag, value)


def _build_message_row(b: Builder, node: Element, r: MessageRow) -> None:
    for tag, value in (("SndRcvTp", r.side), ("MT", r.mt), ("RcvDt", r.received_on)):
        b.el(node, tag, value)


def _payment_row(node: etree._Element, ns: str) -> PaymentRow:
    return PaymentRow(*(text(node, ns, tag) or "" for tag in
                        ("SndRcvTp", "TxNetgDt", "TxNetgRnd", "MT", "PrcSts")))


def _message_row(node: etree._Element, ns: str) -> MessageRow:
    return MessageRow(*(text(node, ns, tag) or "" for tag in ("SndRcvTp", "MT", "RcvDt")))


def build(r: DetailCheckRequest) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "DtlChckReq")
    build_group_header(b, doc, r.header)
    inf = b.el(doc, "DtlChckReqInf")
    b.el(inf, "ChckDt", r.check_date)
    pmt = b.el(inf, "DtlChckPmtInf")
    b.el(pmt, "NbOfTxs", str(len(r.payments)))
    for row in r.payments:
        _build_payment_row(b, b.el(pmt, "DtlChckPmtDtls"), row)
    msg = b.el(inf, "DtlChckMsg")
    b.el(msg, "NbOfTxs", str(len(r.messages)))
    for m in r.messages:
        _build_message_row(b, b.el(msg, "DtlChckMsgDtls"), m)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[DetailCheckRequest, list[Problem]]:
    ns = NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}DtlChckReq")
    inf = doc.find(qpath(ns, "DtlChckReqInf"))
    payments = tuple(_payment_row(n, ns)
                     for n in inf.iterfind(qpath(ns, "DtlChckPmtInf/DtlChckPmtDtls")))
    messages = tuple(_message_row(n, ns)
                     for n in inf.iterfind(qpath(ns, "DtlChckMsg/DtlChckMsgDtls")))
    base = "/Document/DtlChckReq/DtlChckReqInf"
    for path, rows in (("DtlChckPmtInf", payments), ("DtlChckMsg", messages)):
        declared = text(inf, ns, f"{path}/NbOfTxs") or ""
        if declared != str(len(rows)):
            problems.append(Problem("row_count_mismatch", f"{base}/{path}/NbOfTxs", declared,
                                    f"{len(rows)}, the number of rows that follow"))
    return DetailCheckRequest(parse_group_header(doc, ns), text(inf, ns, "ChckDt") or "",
                              payments, messages), problems


def build_response(r: DetailCheckResponse) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "DtlChckRspn")
    build_group_header(b, doc, r.header)
    build_partition(b, doc, r.partition)
    build_original(b, doc, r.request)
    inf = b.el(doc, "DtlChckRspnInf")
    b.el(inf, "ChckDt", r.check_date)
    build_npc(b, inf, r.npc)
    if r.payments is not None:
        pmt = b.el(inf, "DtlChckPmtRspnInf")
        b.el(pmt, "NbOfTxs", str(len(r.payments)))
        for details in r.payments:
            node = b.el(pmt, "DtlChckRspnDtls")
            _build_payment_row(b, node, details.row)
            b.el(node, "NbOfDtls", str(len(details.packages)))
            for pkg in details.packages:
                dtl = b.el(node, "OrgnlPmtDtls")
                build_original(b, dtl, pkg.original)
                b.el(dtl, "TtlCnt", str(pkg.count))
                amount_el(b, dtl, "CtrlSum", pkg.total_fen, pkg.currency)
    if r.messages is not None:
        msg = b.el(inf, "DtlChckMsgRspn")
        b.el(msg, "NbOfTxs", str(len(r.messages)))
        for details in r.messages:
            node = b.el(msg, "DtlChckMsgRspnDtls")
            _build_message_row(b, node, details.row)
            b.el(node, "NbOfDtls", str(len(details.messages)))
            for m in details.messages:
                dtl = b.el(node, "OrgnlMsgDtls")
                build_original(b, dtl, m.original)
                b.el(dtl, "PrcSts", m.status)
                opt_el(b, dtl, "PmtId", m.payment_flag)
    return b.tobytes()


def parse_response(root: etree._Element) -> tuple[DetailCheckResponse, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}DtlChckRspn")
    inf = doc.find(qpath(ns, "DtlChckRspnInf"))
    payments = messages = None
    pmt = inf.find(qpath(ns, "DtlChckPmtRspnInf"))
    if pmt is not None:
        payments = tuple(_payment_details(n, i, ns, problems) for i, n in
                         enumerate(pmt.iterfind(qpath(ns, "DtlChckRspnDtls")), start=1))
    msg = inf.find(qpath(ns, "DtlChckMsgRspn"))
    if msg is not None:
        messages = tuple(
            MessageDetails(_message_row(n, ns), tuple(
                MessageStatus(parse_original(d, ns), text(d, ns, "PrcSts") or "",
                              text(d, ns, "PmtId"))
                for d in n.iterfind(qpath(ns, "OrgnlMsgDtls"))))
            for n in msg.iterfind(qpath(ns, "DtlChckMsgRspnDtls")))
    npc = parse_npc(inf.find(qpath(ns, "NPCPrcInf")), ns)
    assert npc is not None, "the schema requires NPCPrcInf in a beps.723"
    return DetailCheckResponse(parse_group_header(doc, ns), parse_partition(doc, ns),
                               parse_original(doc, ns), text(inf, ns, "ChckDt") or "", npc,
                               payments, messages), problems


def _payment_details(node: etree._Element, i: int, ns: str,
                     problems: list[Problem]) -> PaymentDetails:
    packages = []
    for j, dtl in enumerate(node.iterfind(qpath(ns, "OrgnlPmtDtls")), start=1):
        path = f"{_RSP}/DtlChckPmtRspnInf/DtlChckRspnDtls[{i}]/OrgnlPmtDtls[{j}]/CtrlSum"
        fen, ccy = parse_amount_el(dtl.find(qpath(ns, "CtrlSum")), path, problems)
        packages.append(PackageTotal(parse_original(dtl, ns),
                                     int(text(dtl, ns, "TtlCnt") or 0), fen, ccy))
    return PaymentDetails(_payment_row(node, ns), tuple(packages))


def check(m: DetailCheckRequest | DetailCheckResponse) -> list[Problem]:
    if isinstance(m, DetailCheckRequest):
        return check_group_parties(m.header, "/Document/DtlChckReq/GrpHdr")
    p = check_group_parties(m.header, "/Document/DtlChckRspn/GrpHdr")
    check_partition(m.partition, "/Document/DtlChckRspn/Prttn", p)
    for i, details in enumerate(m.payments or (), start=1):
        for j, pkg in enumerate(details.packages, start=1):
            check_currency(pkg.currency, f"{_RSP}/DtlChckPmtRspnInf/DtlChckRspnDtls[{i}]"
                           f"/OrgnlPmtDtls[{j}]/CtrlSum/@Ccy", p)
    return p
