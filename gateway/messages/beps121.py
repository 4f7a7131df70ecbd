"""beps.121.001.01: customer ordinary credit package (客户发起普通贷记业务报文).

The bank packages customer credits for one receiving direct participant; the NPC nets
them in a round and forwards the package to the receiver with NPCPrcInf filled in (PR03
netted, PrcCd NEZI0000, NetgDt and NetgRnd), which is final for the payee. Business
types are A-series credits: A100 ordinary remittance, A105 return (退汇, which names
the returned transaction in RtrInf), A109 collection and others. An ordinary credit may
carry at most 50,000.00 yuan (routing.limits). The package rules live in package.py.
"""

from __future__ import annotations

from lxml import etree

from gateway.errors import Problem
from gateway.messages import package
from gateway.messages.package import Package, PackageHeader, ReturnInfo, Transfer
from routing.limits import BepsLimits

MESSAGE_TYPE = "beps.121.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.121.001.01"
LAYOUT = package.Layout(MESSAGE_TYPE, NAMESPACE, "CstmrCdtTrf", "CstmrCdtTrfInf",
                        "CstmrCdtTrfAddtlInf", type_prefixes=("A",))

__all__ = ["Package", "PackageHeader", "ReturnInfo", "Transfer", "build", "check", "parse"]


def build(pkg: Package) -> bytes:
    return package.build(LAYOUT, pkg)


def parse(root: etree._Element) -> tuple[Package, list[Problem]]:
    return package.parse(LAYOUT, root)


def check(pkg: Package, limits: BepsLimits | None = None) -> list[Problem]:
    return package.check(LAYOUT, pkg, limits)
