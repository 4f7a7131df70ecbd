"""hvps.712.001.01 (HVPS detail check request) and hvps.713.001.01 (its response).

When the hvps.711 totals differ from the bank's, the bank asks for the messages behind
chosen rows of a checking date (message type, business type, send or receive side
SR00/SR01, status), TtlCnt counting the rows. The NPC answers with 713s (split by
Prttn): per row the number of messages and, per message, its group header, debit or
credit side and amount, which the bank compares item by item.
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

MESSAGE_TYPE = "hvps.712.001.01"
RESPONSE_TYPE = "hvps.713.001.01"
NAMESPACE = "urn:cnaps:std:hvps:2010:tech:xsd:hvps.712.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:hvps:2010:tech:xsd:hvps.713.001.01"
_REQ = "/Document/DtlReq/DtlReqInf"
_RSP = "/Document/DtlRspn/DtlRspnInf"


@dataclass(frozen=True)
class DetailSelector:
    mt: str
    tx_type: str
    side: str          # SR00 sent | SR01 received
    status: str


@dataclass(frozen=True)
class DetailRequest:
    header: GroupHeader
    check_date: str
    rows: tuple[DetailSelector, ...]
    count: int                 # TtlCnt, the number of rows


@dataclass(frozen=True)
class CheckedMessage:
    original: OriginalRef
    amount_fen: int
    direction: str | None = None   # CRDT | DBIT
    currency: str = "CNY"


@dataclass(frozen=True)
class DetailRows:
    selector: DetailSelector
    count: int                     # NbOfTxs
    messages: tuple[CheckedMessage, ...]


@dataclass(frozen=True)
class DetailResponse:
    header: GroupHeader
    partition: Partition
    request: OriginalRef
    check_date: str
    npc: NpcProcessing
    rows: tuple[DetailRows, ...]
    count: int | None = None       # TtlCnt


def _build_selector(b: Builder, node: Element, s: DetailSelector) -> None:
    b.el(node, "MT", s.mt)
    b.el(node, "TxTpCd", s.tx_type)
    b.el(node, "SndRcvTp", s.side)
    b.el(node, "PrcSts", s.status)


def _parse_selector(node: etree._Element, ns: str) -> DetailSelector:
    return DetailSelector(text(node, ns, "MT") or "", text(node, ns, "TxTpCd") or "",
                          text(node, ns, "SndRcvTp") or "", text(node, ns, "PrcSts") or "")


def build(r: DetailRequest) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "DtlReq")
    build_group_header(b, doc, r.header)
    inf = b.el(doc, "DtlReqInf")
    b.el(inf, "ChckngDt", r.check_date)
    b.el(inf, "TtlCnt", str(r.count))
    for row in r.rows:
        _build_selector(b, b.el(inf, "Dtls"), row)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[DetailRequest, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}DtlReq")
    inf = doc.find(qpath(ns, "DtlReqInf"))
    rows = tuple(_parse_selector(n, ns) for n in inf.iterfind(qpath(ns, "Dtls")))
    return DetailRequest(parse_group_header(doc, ns), text(inf, ns, "ChckngDt") or "", rows,
                         int(text(inf, ns, "TtlCnt") or 0)), []


def build_response(r: DetailResponse) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "DtlRspn")
    build_group_header(b, doc, r.header)
    build_partition(b, doc, r.partition)
    build_original(b, doc, r.request)
    inf = b.el(doc, "DtlRspnInf")
    b.el(inf, "ChckDt", r.check_date)
    build_npc(b, inf, r.npc)
    opt_el(b, inf, "TtlCnt", None if r.count is None else str(r.count))
    for row in r.rows:
        node = b.el(inf, "Dtls")
        _build_selector(b, node, row.selector)
        b.el(node, "NbOfTxs", str(row.count))
        for m in row.messages:
            dtl = b.el(node, "ChckngDtl")
            build_original(b, dtl, m.original)
            opt_el(b, dtl, "DbtCdtId", m.direction)
            amount_el(b, dtl, "Amt", m.amount_fen, m.currency)
    return b.tobytes()


def parse_response(root: etree._Element) -> tuple[DetailResponse, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}DtlRspn")
    inf = doc.find(qpath(ns, "DtlRspnInf"))
    rows = []
    for i, node in enumerate(inf.iterfind(qpath(ns, "Dtls")), start=1):
        messages = []
        for j, dtl in enumerate(node.iterfind(qpath(ns, "ChckngDtl")), start=1):
            fen, ccy = parse_amount_el(dtl.find(qpath(ns, "Amt")),
                                       f"{_RSP}/Dtls[{i}]/ChckngDtl[{j}]/Amt", problems)
            messages.append(CheckedMessage(parse_original(dtl, ns), fen,
                                           text(dtl, ns, "DbtCdtId"), ccy))
        rows.append(DetailRows(_parse_selector(node, ns), int(text(node, ns, "NbOfTxs") or 0),
                               tuple(messages)))
    npc = parse_npc(inf.find(qpath(ns, "NPCPrcInf")), ns)
    assert npc is not None, "the schema requires NPCPrcInf in an hvps.713"
    count = text(inf, ns, "TtlCnt")
    return DetailResponse(parse_group_header(doc, ns), parse_partition(doc, ns),
                          parse_original(doc, ns), text(inf, ns, "ChckDt") or "", npc,
                          tuple(rows), int(count) if count is not None else None), problems


def check(m: DetailRequest | DetailResponse) -> list[Problem]:
    if isinstance(m, DetailRequest):
        p = check_group_parties(m.header, "/Document/DtlReq/GrpHdr")
        if m.count != len(m.rows):
            p.append(Problem("detail_count_mismatch", f"{_REQ}/TtlCnt", m.count,
                             f"{len(m.rows)}, the number of Dtls"))
        return p
    p = check_group_parties(m.header, "/Document/DtlRspn/GrpHdr")
    check_partition(m.partition, "/Document/DtlRspn/Prttn", p)
    for i, row in enumerate(m.rows, start=1):
        for j, msg in enumerate(row.messages, start=1):
            check_currency(msg.currency, f"{_RSP}/Dtls[{i}]/ChckngDtl[{j}]/Amt/@Ccy", p)
    return p
