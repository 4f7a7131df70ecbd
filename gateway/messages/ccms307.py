"""ccms.307.001.02 (business cancel request) and ccms.308.001.02 (its response).

A payment queued at the NPC (an HVPS credit waiting for funds, PR12) may be withdrawn:
the bank sends a 307 naming the payment by its group header (and transaction), with an
optional reason; the NPC answers with a 308 naming the 307 and the payment, with PR08
when the payment was cancelled or PR09 (and a reason) when it could not be, typically
because it had settled meanwhile. No published schema exists for either (SPEC.md e.5);
ours follows the ccms.900 layout.

A BEPS credit waiting for netting is withdrawn the same way: OrgnlGrpHdr names its
package (beps.121, 122 or 125) and OrgnlTx, required then, the transaction in it; PR08
means the NPC took it out of the package's totals before netting, PR09 that it could
not (typically because the package was netted, which is final).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, OriginalRef, OriginalTx, build_group_header,
                                     build_original, build_original_tx, check_group_parties,
                                     opt_el, parse_group_header, parse_original,
                                     parse_original_tx)
from gateway.messages.xml import Builder, text

MESSAGE_TYPE = "ccms.307.001.02"
RESPONSE_TYPE = "ccms.308.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.307.001.02"
RESPONSE_NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.308.001.02"
CANCELLED, REFUSED = "PR08", "PR09"
# Only payments still waiting at the NPC can be withdrawn: HVPS credits queued for
# settlement, and single credits of BEPS packages waiting for netting.
PACKAGE_TYPES = ("beps.121.001.01", "beps.122.001.01", "beps.125.001.01")
CANCELLABLE_TYPES = ("hvps.111.001.01", "hvps.112.001.01", *PACKAGE_TYPES)


@dataclass(frozen=True)
class CancelRequest:
    header: GroupHeader
    payment: OriginalRef
    payment_tx: OriginalTx | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CancelResponse:
    header: GroupHeader
    request: OriginalRef       # the ccms.307 answered
    payment: OriginalRef
    status: str                # PR08 cancelled | PR09 refused
    code: str | None = None
    reject_info: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED


def build(r: CancelRequest) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "BizCxlReq")
    build_group_header(b, doc, r.header)
    build_original(b, doc, r.payment)
    if r.payment_tx is not None:
        build_original_tx(b, doc, r.payment_tx)
    opt_el(b, doc, "Cntt", r.reason)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[CancelRequest, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}BizCxlReq")
    return CancelRequest(parse_group_header(doc, ns), parse_original(doc, ns),
                         parse_original_tx(doc, ns), text(doc, ns, "Cntt")), []


def build_response(r: CancelResponse) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "BizCxlRspn")
    build_group_header(b, doc, r.header)
    build_original(b, doc, r.request)
    inf = b.el(doc, "BizCxlRspnInf")
    build_original(b, inf, r.payment, tag="OrgnlPmt")
    b.el(inf, "PrcSts", r.status)
    opt_el(b, inf, "PrcCd", r.code)
    opt_el(b, inf, "RjctInf", r.reject_info)
    return b.tobytes()


def parse_response(root: etree._Element) -> tuple[CancelResponse, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    doc = root.find(f"{{{ns}}}BizCxlRspn")
    return CancelResponse(
        parse_group_header(doc, ns), parse_original(doc, ns),
        parse_original(doc, ns, "BizCxlRspnInf/OrgnlPmt"),
        text(doc, ns, "BizCxlRspnInf/PrcSts") or "", text(doc, ns, "BizCxlRspnInf/PrcCd"),
        text(doc, ns, "BizCxlRspnInf/RjctInf")), []


def check(m: CancelRequest | CancelResponse) -> list[Problem]:
    if isinstance(m, CancelRequest):
        p = check_group_parties(m.header, "/Document/BizCxlReq/GrpHdr")
        if m.payment.mt not in CANCELLABLE_TYPES:
            p.append(Problem("cancel_not_allowed_for_type",
                             "/Document/BizCxlReq/OrgnlGrpHdr/OrgnlMT", m.payment.mt,
                             "one of " + ", ".join(CANCELLABLE_TYPES)))
        if m.payment.mt in PACKAGE_TYPES and m.payment_tx is None:
            p.append(Problem("cancel_of_package_item_needs_transaction",
                             "/Document/BizCxlReq/OrgnlTx", None,
                             "the transaction of the package to take out (OrgnlTx)"))
        return p
    p = check_group_parties(m.header, "/Document/BizCxlRspn/GrpHdr")
    if m.status not in (CANCELLED, REFUSED):
        p.append(Problem("cancel_status_unknown", "/Document/BizCxlRspn/BizCxlRspnInf/PrcSts",
                         m.status, f"{CANCELLED} cancelled or {REFUSED} refused"))
    return p
