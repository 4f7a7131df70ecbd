"""beps.123.001.01 (real-time credit, 实时贷记) and beps.124.001.01 (its receipt).

A real-time credit (business type C100 and kin) carries one customer credit on its own
and is answered by the payee bank's beps.124 receipt: PR02 paid, or PR09 refused with a
reject code and reason. Real-time types have no BEPS amount cap (routing.limits). No
published schema exists for either (SPEC.md e.5): ours gives the 123 a group header and
one transaction laid out like a beps.121 credit, and the 124 the original message,
transaction id, amount and receipt status.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages import package, package_text
from gateway.messages.common import (
    GroupHeader, NpcProcessing, OriginalRef, amount_el, build_group_header, build_npc,
    build_original, check_currency, check_group_parties, opt_el, parse_amount_el,
    parse_group_header, parse_npc, parse_original)
from gateway.messages.package import Transfer
from gateway.messages.xml import Builder, qpath, text

MESSAGE_TYPE = "beps.123.001.01"
RESPONSE_TYPE = "beps.124.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.123.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.124.001.01"
PAID, REFUSED = "PR02", "PR09"
# The single transaction reuses the package machinery under a layout of its own.
LAYOUT = package.Layout(MESSAGE_TYPE, NAMESPACE, "RealTmCdtTrf", "RealTmCdtTrfInf", None,
                        type_prefixes=("C",))
_RCT = "/Document/RealTmCdtTrfRct/RealTmCdtTrfRctInf"


@dataclass(frozen=True)
class RealTimeCredit:
    header: GroupHeader
    transfer: Transfer
    npc: NpcProcessing | None = None


@dataclass(frozen=True)
class RealTimeReceipt:
    header: GroupHeader
    original: OriginalRef
    tx_id: str
    amount_fen: int
    status: str                 # PR02 paid | PR09 refused
    reject_code: str | None = None
    reject_info: str | None = None
    npc: NpcProcessing | None = None
    currency: str = "CNY"


def build(c: RealTimeCredit) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "RealTmCdtTrf")
    build_group_header(b, doc, c.header)
    if c.npc is not None:
        build_npc(b, doc, c.npc)
    b.insert(doc, [package_text.transfer(LAYOUT, c.transfer)], package_text.DETAIL_LEVEL)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[RealTimeCredit, list[Problem]]:
    ns = NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}RealTmCdtTrf")
    transfer = package.parse_transfer(doc.find(qpath(ns, "RealTmCdtTrfInf")), None, LAYOUT,
                                      problems)
    return RealTimeCredit(parse_group_header(doc, ns), transfer,
                          parse_npc(doc.find(qpath(ns, "NPCPrcInf")), ns)), problems


def build_receipt(r: RealTimeReceipt) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "RealTmCdtTrfRct")
    build_group_header(b, doc, r.header)
    build_original(b, doc, r.original)
    if r.npc is not None:
        build_npc(b, doc, r.npc)
    inf = b.el(doc, "RealTmCdtTrfRctInf")
    b.el(inf, "OrgnlTxId", r.tx_id)
    amount_el(b, inf, "Amt", r.amount_fen, r.currency)
    b.el(inf, "RctSts", r.status)
    opt_el(b, inf, "RjctCd", r.reject_code)
    opt_el(b, inf, "RjctInf", r.reject_info)
    return b.tobytes()


def parse_receipt(root: etree._Element) -> tuple[RealTimeReceipt, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    problems: list[Problem] = []
    doc = root.find(f"{{{ns}}}RealTmCdtTrfRct")
    inf = doc.find(qpath(ns, "RealTmCdtTrfRctInf"))
    fen, ccy = parse_amount_el(inf.find(qpath(ns, "Amt")), f"{_RCT}/Amt", problems)
    return RealTimeReceipt(
        parse_group_header(doc, ns), parse_original(doc, ns), text(inf, ns, "OrgnlTxId") or "",
        fen, text(inf, ns, "RctSts") or "", text(inf, ns, "RjctCd"), text(inf, ns, "RjctInf"),
        parse_npc(doc.find(qpath(ns, "NPCPrcInf")), ns), ccy), problems


def check(m: RealTimeCredit | RealTimeReceipt) -> list[Problem]:
    if isinstance(m, RealTimeCredit):
        p = check_group_parties(m.header, "/Document/RealTmCdtTrf/GrpHdr")
        package.check_transfer(LAYOUT, None, m.transfer, p)
        return p
    p = check_group_parties(m.header, "/Document/RealTmCdtTrfRct/GrpHdr")
    check_currency(m.currency, f"{_RCT}/Amt/@Ccy", p)
    check_receipt_status(m.status, m.reject_code, f"{_RCT}", p)
    return p


def check_receipt_status(status: str, reject_code: str | None, path: str,
                         p: list[Problem]) -> None:
    """A receipt line is paid (PR02) or refused (PR09), and a refusal says why."""
    if status not in (PAID, REFUSED):
        p.append(Problem("receipt_status_unknown", f"{path}/RctSts", status,
                         f"{PAID} paid or {REFUSED} refused"))
    elif status == REFUSED and not reject_code:
        p.append(Problem("refusal_needs_reason_code", f"{path}/RjctCd", None,
                         "a reject code when the status is PR09"))
