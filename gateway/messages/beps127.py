"""beps.127.001.01: ordinary direct debit package (普通借记业务报文), business type B100.

The payee's bank (the sender) collects from payers at the receiving participant under
agreements (AgrmtNb). PKGRtrLtdInf gives the package return deadline in days: the payer
bank must answer with a beps.128 receipt before it, and items it does not refuse are
netted like credits. Unlike the credit packages there is no NPCPrcInf block, and the
additional information is treasury credit or information or a truncated cheque or
bill, which the product carries through as it came (common.Node).
"""

from __future__ import annotations

from lxml import etree

from gateway.errors import Problem
from gateway.messages import package
from gateway.messages.package import Package, PackageHeader, ReturnLimit, Transfer
from routing.limits import BepsLimits

MESSAGE_TYPE = "beps.127.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.127.001.01"
LAYOUT = package.Layout(MESSAGE_TYPE, NAMESPACE, "CstmrDrctDbt", "CstmrDrctDbtInf",
                        "CstmrDrctDbtAddtlInf", type_prefixes=("B",), agreement=True,
                        npc_block=False, return_limit=True, debit=True)
RETURN_DAYS_MAX = 30  # a deadline beyond a month is a typing error, not a business term

__all__ = ["Package", "PackageHeader", "ReturnLimit", "Transfer", "build", "check", "parse"]


def build(pkg: Package) -> bytes:
    return package.build(LAYOUT, pkg)


def parse(root: etree._Element) -> tuple[Package, list[Problem]]:
    return package.parse(LAYOUT, root)


def check(pkg: Package, limits: BepsLimits | None = None) -> list[Problem]:
    problems = package.check(LAYOUT, pkg, limits)
    limit = pkg.return_limit
    days = limit.days if limit is not None else ""
    if not (days.isascii() and days.isdigit() and 1 <= int(days) <= RETURN_DAYS_MAX):
        problems.append(Problem("return_deadline_out_of_range",
                                LAYOUT.path("PKGRtrLtdInf/PKGRtrLtd"), days,
                                f"1 to {RETURN_DAYS_MAX} days"))
    return problems
