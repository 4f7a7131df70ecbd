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
                                     build_original, check_group_parties, construct)
from gateway.messages.xml import Builder

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


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


# The leaves of a CmonConf: every one's local name is its own in the document (the
# schema, checked before any parse, allows no other element and each at most once), so
# one pass over the tree reads them all. Of the two named InstgPty (and InstdPty), the
# party element comes after the group it is in and so is the one kept.
_HEADER = (_q("MsgId"), _q("CreDtTm"), _q("InstgDrctPty"), _q("InstgPty"),
           _q("InstdDrctPty"), _q("InstdPty"), _q("SysCd"))
_REMARK = _q("Rmk")
_ORIGINAL = (_q("OrgnlMsgId"), _q("OrgnlInstgPty"), _q("OrgnlMT"))
_STATUS = _q("PrcSts")
_OPTIONAL = (("code", _q("PrcCd")), ("party", _q("PtyId")), ("party_code", _q("PtyPrcCd")),
             ("reject_info", _q("RjctInf")), ("processed_on", _q("PrcDt")),
             ("netting_round", _q("NetgRnd")))
_HEADER_FIELDS = ("msg_id", "created_at", "instg_direct", "instg_party", "instd_direct",
                  "instd_party", "system")


def parse(root: etree._Element) -> tuple[CommonConf, list[Problem]]:
    """The CmonConf read in one pass over its elements (the same objects that
    parse_group_header, parse_original and child_text give, field by field)."""
    # The whole tree: the schema gives Document one child, the CmonConf, whose own tag and
    # the Document's are in none of the look-ups below (a path search for the CmonConf
    # first cost a seventh of the reading).
    found = {el.tag: el.text for el in root.iter()}
    header = {field: (found.get(tag) or "").strip()
              for field, tag in zip(_HEADER_FIELDS, _HEADER)}
    remark = found.get(_REMARK, _ABSENT)
    header["remark"] = None if remark is _ABSENT else (remark or "").strip()
    msg_id, instg_party, mt = ((found.get(tag) or "").strip() for tag in _ORIGINAL)
    values = {"header": construct(GroupHeader, header),
              "original": construct(OriginalRef, {"msg_id": msg_id,
                                                  "instg_party": instg_party, "mt": mt}),
              "status": (found.get(_STATUS) or "").strip()}
    for field, tag in _OPTIONAL:
        value = found.get(tag, _ABSENT)
        values[field] = None if value is _ABSENT else (value or "").strip()
    return construct(CommonConf, values), []


_ABSENT = object()


def check(c: CommonConf) -> list[Problem]:
    return check_group_parties(c.header, "/Document/CmonConf/GrpHdr")
