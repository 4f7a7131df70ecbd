"""ccms.316.001.01 (business status query) and ccms.317.001.01 (its response).

When a message's outcome is unknown after a timeout, the bank asks the NPC what became
of it instead of sending it again (CONTRACT.md §4: never a blind resend). The 316 names
the message by its group header (and transaction); the 317 names the 316 and the
message and gives the NPC's processing block for it: PR04 settled, PR03 netted, PR12
queued, PR09 rejected, or PR24 when the NPC never accepted it, which is the one answer
that makes a resend safe. No published schema exists for either (SPEC.md e.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, NpcProcessing, OriginalRef, OriginalTx,
                                     build_group_header, build_npc, build_original,
                                     build_original_tx, check_group_parties,
                                     parse_group_header, parse_npc, parse_original,
                                     parse_original_tx)
from gateway.messages.xml import Builder, qpath

MESSAGE_TYPE = "ccms.316.001.01"
RESPONSE_TYPE = "ccms.317.001.01"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.316.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.317.001.01"
NOT_ACCEPTED = "PR24"  # NPC未受理: the NPC has no trace of the message


@dataclass(frozen=True)
class StatusQuery:
    header: GroupHeader
    subject: OriginalRef
    subject_tx: OriginalTx | None = None


@dataclass(frozen=True)
class StatusResponse:
    header: GroupHeader
    query: OriginalRef       # the ccms.316 answered
    subject: OriginalRef
    npc: NpcProcessing

    @property
    def resend_safe(self) -> bool:
        return self.npc.status == NOT_ACCEPTED


def build(q: StatusQuery) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "BizStsQry")
    build_group_header(b, doc, q.header)
    inf = b.el(doc, "BizStsQryInf")
    build_original(b, inf, q.subject)
    if q.subject_tx is not None:
        build_original_tx(b, inf, q.subject_tx)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[StatusQuery, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}BizStsQry")
    inf = doc.find(qpath(ns, "BizStsQryInf"))
    return StatusQuery(parse_group_header(doc, ns), parse_original(inf, ns),
                       parse_original_tx(inf, ns)), []


def build_response(r: StatusResponse) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "BizStsRspn")
    build_group_header(b, doc, r.header)
    build_original(b, doc, r.query)
    inf = b.el(doc, "BizStsRspnInf")
    build_original(b, inf, r.subject, tag="OrgnlPmt")
    build_npc(b, inf, r.npc)
    return b.tobytes()


def parse_response(root: etree._Element) -> tuple[StatusResponse, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    doc = root.find(f"{{{ns}}}BizStsRspn")
    inf = doc.find(qpath(ns, "BizStsRspnInf"))
    npc = parse_npc(inf.find(qpath(ns, "NPCPrcInf")), ns)
    assert npc is not None, "the schema requires NPCPrcInf in a ccms.317"
    return StatusResponse(parse_group_header(doc, ns), parse_original(doc, ns),
                          parse_original(inf, ns, "OrgnlPmt"), npc), []


def check(m: StatusQuery | StatusResponse) -> list[Problem]:
    root = "BizStsQry" if isinstance(m, StatusQuery) else "BizStsRspn"
    return check_group_parties(m.header, f"/Document/{root}/GrpHdr")
