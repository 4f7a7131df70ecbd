"""beps.125.001.01: periodic credit package (定期贷记业务报文), business type E100.

Credits paid on a schedule under an agreement with the payer (salaries, pensions).
No published schema exists (SPEC.md e.5): ours packages them like beps.121, with the
agreement number (AgrmtNb) after TxId as beps.127 carries it, and the same NPCPrcInf
for the forwarded package. The answer is a ccms.900 like any package's.
"""

from __future__ import annotations

from lxml import etree

from gateway.errors import Problem
from gateway.messages import package
from gateway.messages.package import Package, PackageHeader, Transfer
from routing.limits import BepsLimits

MESSAGE_TYPE = "beps.125.001.01"
NAMESPACE = "urn:cnaps:std:beps:2010:tech:xsd:beps.125.001.01"
LAYOUT = package.Layout(MESSAGE_TYPE, NAMESPACE, "PrdcCdtTrf", "PrdcCdtTrfInf", None,
                        type_prefixes=("E",), agreement=True)

__all__ = ["Package", "PackageHeader", "Transfer", "build", "check", "parse"]


def build(pkg: Package) -> bytes:
    return package.build(LAYOUT, pkg)


def parse(root: etree._Element) -> tuple[Package, list[Problem]]:
    return package.parse(LAYOUT, root)


def check(pkg: Package, limits: BepsLimits | None = None) -> list[Problem]:
    problems = package.check(LAYOUT, pkg, limits)
    for index, t in enumerate(pkg.transfers, start=1):
        if not t.agreement:
            problems.append(Problem("agreement_number_required", LAYOUT.tx_path(index, "AgrmtNb"),
                                    None, "the agreement the periodic credit is paid under"))
    return problems
