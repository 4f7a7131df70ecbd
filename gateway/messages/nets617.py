"""nets.617.001.01 (BEPS netting query, 轧差净额查询请求) and nets.618.001.01 (response).

A bank asks for its netting results of a date and round (QryTp QT00/QT01, values only
in the sources; MmbId is the member asked about). The NPC answers with an 618: the
processing block and, per round, netting type (NT01/NT02) and member, the side
(CRDT/DBIT), the net amount, a response status and the settlement date. A long answer
is split over several 618s (Prttn).
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
from gateway.messages.xml import Builder, qpath, text

MESSAGE_TYPE = "nets.617.001.01"
RESPONSE_TYPE = "nets.618.001.01"
NAMESPACE = "urn:cnaps:std:nets:2010:tech:xsd:nets.617.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:nets:2010:tech:xsd:nets.618.001.01"
_RESULTS = "/Document/BEPSNetgRspn/BEPSNetgRspnInf"


@dataclass(frozen=True)
class NettingQuery:
    header: GroupHeader
    netting_date: str       # ISODate
    netting_round: str      # 01, 02, ...
    query_type: str         # QT00 | QT01
    member: str


@dataclass(frozen=True)
class NettingRow:
    netting_round: str
    netting_type: str       # NT01 | NT02
    member: str
    direction: str          # CRDT | DBIT
    amount_fen: int
    status: str
    settlement_date: str | None = None
    currency: str = "CNY"


@dataclass(frozen=True)
class NettingResults:
    netting_date: str
    count: int              # NbOfTx
    rows: tuple[NettingRow, ...]


@dataclass(frozen=True)
class NettingResponse:
    header: GroupHeader
    partition: Partition
    query: OriginalRef
    npc: NpcProcessing
    results: NettingResults | None = None


def build(q: NettingQuery) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "BEPSNetgQry")
    build_group_header(b, doc, q.header)
    inf = b.el(doc, "BEPSNetgQryInf")
    b.el(inf, "NetgDt", q.netting_date)
    b.el(inf, "NetgRnd", q.netting_round)
    b.el(inf, "QryTp", q.query_type)
    b.el(inf, "MmbId", q.member)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[NettingQuery, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}BEPSNetgQry")

    def t(name: str) -> str:
        return text(doc, ns, f"BEPSNetgQryInf/{name}") or ""

    return NettingQuery(parse_group_header(doc, ns), t("NetgDt"), t("NetgRnd"), t("QryTp"),
                        t("MmbId")), []


def build_response(r: NettingResponse) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "BEPSNetgRspn")
    build_group_header(b, doc, r.header)
    build_partition(b, doc, r.partition)
    build_original(b, doc, r.query)
    build_npc(b, doc, r.npc)
    if r.results is None:
        return b.tobytes()
    inf = b.el(doc, "BEPSNetgRspnInf")
    b.el(inf, "NetgDt", r.results.netting_date)
    b.el(inf, "NbOfTx", str(r.results.count))
    for row in r.results.rows:
        node = b.el(inf, "TxList")
        b.el(node, "NetgRnd", row.netting_round)
        b.el(node, "NetgTp", row.netting_type)
        b.el(node, "MmbId", row.member)
        b.el(node, "DbtCdtId", row.direction)
        amount_el(b, node, "Amt", row.amount_fen, row.currency)
        b.el(node, "RspnSts", row.status)
        opt_el(b, node, "SttlmDt", row.settlement_date)
    return b.tobytes()


def parse_response(root: etree._Element) -> tuple[NettingResponse, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}BEPSNetgRspn")
    npc = parse_npc(doc.find(qpath(ns, "NPCPrcInf")), ns)
    assert npc is not None, "the schema requires NPCPrcInf in a nets.618"
    inf = doc.find(qpath(ns, "BEPSNetgRspnInf"))
    results = None
    if inf is not None:
        rows = []
        for index, node in enumerate(inf.iterfind(qpath(ns, "TxList")), start=1):
            # A net position may be zero, so a zero amount is not refused here.
            fen, ccy = parse_amount_el(node.find(qpath(ns, "Amt")),
                                       f"{_RESULTS}/TxList[{index}]/Amt", problems, True)
            rows.append(NettingRow(
                text(node, ns, "NetgRnd") or "", text(node, ns, "NetgTp") or "",
                text(node, ns, "MmbId") or "", text(node, ns, "DbtCdtId") or "", fen,
                text(node, ns, "RspnSts") or "", text(node, ns, "SttlmDt"), ccy))
        results = NettingResults(text(inf, ns, "NetgDt") or "",
                                 int(text(inf, ns, "NbOfTx") or 0), tuple(rows))
    return NettingResponse(parse_group_header(doc, ns), parse_partition(doc, ns),
                           parse_original(doc, ns), npc, results), problems


def check(m: NettingQuery | NettingResponse) -> list[Problem]:
    if isinstance(m, NettingQuery):
        return check_group_parties(m.header, "/Document/BEPSNetgQry/GrpHdr")
    p = check_group_parties(m.header, "/Document/BEPSNetgRspn/GrpHdr")
    check_partition(m.partition, "/Document/BEPSNetgRspn/Prttn", p)
    if m.results is not None:
        for index, row in enumerate(m.results.rows, start=1):
            check_currency(row.currency, f"{_RESULTS}/TxList[{index}]/Amt/@Ccy", p)
    return p
