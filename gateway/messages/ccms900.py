"""ccms.900.001.02: common processing confirmation (CmonConf).

The business-level result of a request. For an HVPS credit: PR04 settled, PR12 queued
for settlement (the sender's clearing account is short), PR09 rejected, and for a queued
one later PR04, or PR08 cancelled at the end of the clearing window. For a BEPS package:
PR03 netted (with NetgRnd), PR11 waiting for netting, PR09 rejected (CONTRACT.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, OriginalRef, build_group_header,
                                     build_original, check_group_parties, parse_group_header,
                                     parse_original)
from gateway.messages.xml import Builder, child_text, children

MESSAGE_TYPE = "ccms.900.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.900.001.02"

NETTED, SETTLED, CANCELLED, REJECTED = "PR03", "PR04", "PR08", "PR09"
WAITING_NETTING, QUEUED = "PR11", "PR12"


@dataclass(frozen=True)
class CommonConf:
    header: GroupHeader
    original: OriginalRef
    status: str
    code: str | None = None
    party: str | None = None
    party_code: str | None = None
    reject_info: str | None = None
    processed_on: str | None = None  # ISODate
    netting_round: str | None = None


def build(c: CommonConf) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "CmonConf")
    build_group_header(b, doc, c.header)
    build_original(b, doc, c.original)
    inf = b.el(doc, "CmonConfInf")
    b.el(inf, "PrcSts", c.status)
    for tag, value in (("PrcCd", c.code), ("PtyId", c.party), ("PtyPrcCd", c.party_code),
                       ("RjctInf", c.reject_info), ("PrcDt", c.processed_on),
                       ("NetgRnd", c.netting_round)):
        if value is not None:
            b.el(inf, tag, value)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[CommonConf, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}CmonConf")
    inf = children(children(doc).get("CmonConfInf"))
    return CommonConf(
        header=parse_group_header(doc, ns), original=parse_original(doc, ns),
        status=child_text(inf, "PrcSts") or "", code=child_text(inf, "PrcCd"),
        party=child_text(inf, "PtyId"), party_code=child_text(inf, "PtyPrcCd"),
        reject_info=child_text(inf, "RjctInf"), processed_on=child_text(inf, "PrcDt"),
        netting_round=child_text(inf, "NetgRnd")), []


def check(c: CommonConf) -> list[Problem]:
    return check_group_parties(c.header, "/Document/CmonConf/GrpHdr")
