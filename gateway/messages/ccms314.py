"""ccms.314.001.01 (business query, 查询书) and ccms.315.001.01 (query reply, 查复书).

A bank asks the counterparty about a payment (not received, wrong payee...): the 314
names the payment by its group header, optionally the transaction and its amount, with
up to 256 characters of question; the NPC forwards it. The 315 names the 314 it answers
(OrgnlGrpHdr), repeats the payment and gives the reply text. QryTp QT00/QT01 is
optional; the sources give its values only. Reply deadlines are kept by the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (
    GroupHeader, Node, OriginalRef, OriginalTx, amount_el, build_group_header, build_node,
    build_original, build_original_tx, check_currency, check_group_parties, opt_el,
    parse_amount_el, parse_group_header, parse_node, parse_original, parse_original_tx)
from gateway.messages.xml import Builder, Element, qpath, text

MESSAGE_TYPE = "ccms.314.001.01"
RESPONSE_TYPE = "ccms.315.001.01"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.314.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.315.001.01"


@dataclass(frozen=True)
class Query:
    header: GroupHeader
    subject: OriginalRef          # the payment asked about
    amount_fen: int
    content: str                  # the question
    subject_tx: OriginalTx | None = None
    query_type: str | None = None
    bill: Node | None = None      # BllInf, carried as it came
    currency: str = "CNY"


@dataclass(frozen=True)
class Reply:
    header: GroupHeader
    query: OriginalRef            # the ccms.314 answered
    subject: OriginalRef
    amount_fen: int
    content: str                  # the answer
    subject_tx: OriginalTx | None = None
    query_type: str | None = None
    currency: str = "CNY"


def _build_subject(b: Builder, parent: Element, subject: OriginalRef,
                   tx: OriginalTx | None) -> Element:
    inf = b.el(parent, "OrgnlInf")
    build_original(b, inf, subject)
    if tx is not None:
        build_original_tx(b, inf, tx)
    return inf


def build(q: Query) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "BizQry")
    build_group_header(b, doc, q.header)
    body = b.el(doc, "BizQryInf")
    opt_el(b, body, "QryTp", q.query_type)
    inf = _build_subject(b, body, q.subject, q.subject_tx)
    amount_el(b, inf, "Amt", q.amount_fen, q.currency)
    if q.bill is not None:
        build_node(b, inf, q.bill)
    b.el(body, "Cntt", q.content)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[Query, list[Problem]]:
    ns = NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}BizQry")
    inf = doc.find(qpath(ns, "BizQryInf/OrgnlInf"))
    amount_fen, currency = parse_amount_el(
        inf.find(qpath(ns, "Amt")), "/Document/BizQry/BizQryInf/OrgnlInf/Amt", problems)
    bill = inf.find(qpath(ns, "BllInf"))
    return Query(parse_group_header(doc, ns), parse_original(inf, ns), amount_fen,
                 text(doc, ns, "BizQryInf/Cntt") or "", parse_original_tx(inf, ns),
                 text(doc, ns, "BizQryInf/QryTp"),
                 parse_node(bill) if bill is not None else None, currency), problems


def build_reply(r: Reply) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "BizRspn")
    build_group_header(b, doc, r.header)
    build_original(b, doc, r.query)
    body = b.el(doc, "BizRspnInf")
    opt_el(b, body, "QryTp", r.query_type)
    inf = _build_subject(b, body, r.subject, r.subject_tx)
    amount_el(b, inf, "OrgnlAmt", r.amount_fen, r.currency)
    b.el(body, "Cntt", r.content)
    return b.tobytes()


def parse_reply(root: etree._Element) -> tuple[Reply, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}BizRspn")
    inf = doc.find(qpath(ns, "BizRspnInf/OrgnlInf"))
    amount_fen, currency = parse_amount_el(
        inf.find(qpath(ns, "OrgnlAmt")), "/Document/BizRspn/BizRspnInf/OrgnlInf/OrgnlAmt",
        problems)
    return Reply(parse_group_header(doc, ns), parse_original(doc, ns),
                 parse_original(inf, ns), amount_fen, text(doc, ns, "BizRspnInf/Cntt") or "",
                 parse_original_tx(inf, ns), text(doc, ns, "BizRspnInf/QryTp"),
                 currency), problems


def check(m: Query | Reply) -> list[Problem]:
    if isinstance(m, Query):
        base, amount = "/Document/BizQry", "BizQryInf/OrgnlInf/Amt"
    else:
        base, amount = "/Document/BizRspn", "BizRspnInf/OrgnlInf/OrgnlAmt"
    p = check_group_parties(m.header, f"{base}/GrpHdr")
    check_currency(m.currency, f"{base}/{amount}/@Ccy", p)
    if isinstance(m, Reply) and m.query.mt != MESSAGE_TYPE:
        p.append(Problem("reply_must_answer_a_query", f"{base}/OrgnlGrpHdr/OrgnlMT",
                         m.query.mt, MESSAGE_TYPE))
    return p
