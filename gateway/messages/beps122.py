"""beps.122.001.01: institution ordinary credit package (金融机构发起普通贷记业务报文).

Laid out like beps.121 for transfers between institutions (A104 treasury credit, A200
interbank transfer, A105 return...): the accounts' holding bank (Issr) is optional, and
the additional information (FinCdtTrfAddtlInf) is treasury credit, treasury information
or a return, whose reason text (Cntt) is required here.
"""

from __future__ import annotations

from lxml import etree

from gateway.errors import Problem
from gateway.messages import package
from gateway.messages.package import Package, PackageHeader, ReturnInfo, Transfer
from routing.limits import BepsLimits

MESSAGE_TYPE = "beps.122.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.122.001.01"
LAYOUT = package.Layout(MESSAGE_TYPE, NAMESPACE, "FinCdtTrf", "FinCdtTrfInf",
                        "FinCdtTrfAddtlInf", type_prefixes=("A",), issuer_required=False)

__all__ = ["Package", "PackageHeader", "ReturnInfo", "Transfer", "build", "check", "parse"]


def build(pkg: Package) -> bytes:
    return package.build(LAYOUT, pkg)


def parse(root: etree._Element) -> tuple[Package, list[Problem]]:
    return package.parse(LAYOUT, root)


def check(pkg: Package, limits: BepsLimits | None = None) -> list[Problem]:
    problems = package.check(LAYOUT, pkg, limits)
    for index, t in enumerate(pkg.transfers, start=1):
        # The schema requires Cntt in a beps.122 return; a built object could lack it.
        if isinstance(t.extra, ReturnInfo) and not t.extra.reason:
            problems.append(Problem("return_reason_required",
                                    LAYOUT.tx_path(index, "FinCdtTrfAddtlInf/RtrInf/Cntt"),
                                    None, "the reason for the return"))
    return problems
