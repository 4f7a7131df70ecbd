"""ccms.303.001.02: free-format message (自由格式报文).

Free text of up to 500 characters between two participants, or between a participant
and the NPC, forwarded as it is. Only the group header is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, build_group_header, check_group_parties,
                                     parse_group_header)
from gateway.messages.xml import Builder, text

MESSAGE_TYPE = "ccms.303.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.303.001.02"
CONTENT_LEN_MAX = 500


@dataclass(frozen=True)
class FreeFormat:
    header: GroupHeader
    content: str


def build(m: FreeFormat) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "FreeFrmt")
    build_group_header(b, doc, m.header)
    b.path(doc, "FreeFrmtInf/MsgCntt", m.content)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[FreeFormat, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}FreeFrmt")
    return FreeFormat(parse_group_header(doc, ns),
                      text(doc, ns, "FreeFrmtInf/MsgCntt") or ""), []


def check(m: FreeFormat) -> list[Problem]:
    p = check_group_parties(m.header, "/Document/FreeFrmt/GrpHdr")
    if not m.content.strip():
        p.append(Problem("free_text_required", "/Document/FreeFrmt/FreeFrmtInf/MsgCntt",
                         m.content, "some text"))
    return p
