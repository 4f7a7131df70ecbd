"""ccms.991.001.01 (link probe, 探测请求报文) and ccms.992.001.01 (probe response).

Either side may probe the link: the 991 says which node, server, line manager and
route sent it and when, which node and server should answer on which line, and the
sender's view of the states (one digit each). The 992 echoes the prober, names the
responder and lists the load factor of each of its lines. Neither has a group header.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import opt_el
from gateway.messages.xml import Builder, text

MESSAGE_TYPE = "ccms.991.001.01"
RESPONSE_TYPE = "ccms.992.001.01"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.991.001.01"
RESPONSE_NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.992.001.01"

_PROBE_FIELDS = (("SndNd", "sender_node"), ("SndSvcrNm", "sender_server"),
                 ("SndLineMgrNm", "sender_line_manager"), ("SndRoadNm", "sender_route"),
                 ("SndDt", "sent_at"), ("RcvNd", "receiver_node"),
                 ("RcvSvcrNm", "receiver_server"), ("RcvLineMgr", "receiver_line_manager"),
                 ("RspnLineNm", "response_line"))
_ANSWER_FIELDS = (("OrigSndNd", "prober_node"), ("OrigSndSvsrNm", "prober_server"),
                  ("OrigSndLineMgrNm", "prober_line_manager"), ("RcvRoadNm", "route"),
                  ("OrigSndDt", "probed_at"), ("RspnNd", "responder_node"),
                  ("RspnSvcrNm", "responder_server"),
                  ("RspnLineMgr", "responder_line_manager"), ("RcvLineNm", "line"))


@dataclass(frozen=True)
class Probe:
    sender_node: str
    sender_server: str
    sender_line_manager: str
    sender_route: str
    sent_at: str                  # up to 23 characters, e.g. 2024-05-20T10:00:00.000
    receiver_node: str
    receiver_server: str
    receiver_line_manager: str
    response_line: str
    server_state: str = "0"       # SndSvcrRcvSts
    node_state: str | None = None
    receiver_node_state: str | None = None


@dataclass(frozen=True)
class LineLoad:
    line: str
    load_factor: str


@dataclass(frozen=True)
class ProbeResponse:
    prober_node: str
    prober_server: str
    prober_line_manager: str
    route: str
    probed_at: str
    responder_node: str
    responder_server: str
    responder_line_manager: str
    loads: tuple[LineLoad, ...]
    line: str | None = None


def build(p: Probe) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "ChckReq")
    inf = b.el(doc, "ChckInf")
    for tag, name in _PROBE_FIELDS:
        b.el(inf, tag, getattr(p, name))
    mgmt = b.el(doc, "SndSvcrMgmtInf")
    b.el(mgmt, "SndSvcrRcvSts", p.server_state)
    opt_el(b, mgmt, "SndNdMgmtSts", p.node_state)
    opt_el(b, mgmt, "RcvNdMgmtSts", p.receiver_node_state)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[Probe, list[Problem]]:
    ns = NAMESPACE
    values = {name: text(root, ns, f"ChckReq/ChckInf/{tag}") or ""
              for tag, name in _PROBE_FIELDS}
    return Probe(**values,
                 server_state=text(root, ns, "ChckReq/SndSvcrMgmtInf/SndSvcrRcvSts") or "",
                 node_state=text(root, ns, "ChckReq/SndSvcrMgmtInf/SndNdMgmtSts"),
                 receiver_node_state=text(root, ns, "ChckReq/SndSvcrMgmtInf/RcvNdMgmtSts"),
                 ), []


def build_response(r: ProbeResponse) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "ChckRspn")
    inf = b.el(doc, "ChckRspnInf")
    for tag, name in _ANSWER_FIELDS:
        opt_el(b, inf, tag, getattr(r, name))
    for load in r.loads:
        row = b.el(doc, "LdFctrInf")
        b.el(row, "RspnLclLineNm", load.line)
        b.el(row, "LdFctr", load.load_factor)
    return b.tobytes()


def parse_response(root: etree._Element) -> tuple[ProbeResponse, list[Problem]]:
    ns = RESPONSE_NAMESPACE

    def t(tag: str) -> str:
        return text(root, ns, f"ChckRspn/ChckRspnInf/{tag}") or ""

    loads = tuple(LineLoad(text(row, ns, "RspnLclLineNm") or "", text(row, ns, "LdFctr") or "")
                  for row in root.iterfind(f"{{{ns}}}ChckRspn/{{{ns}}}LdFctrInf"))
    return ProbeResponse(
        prober_node=t("OrigSndNd"), prober_server=t("OrigSndSvsrNm"),
        prober_line_manager=t("OrigSndLineMgrNm"), route=t("RcvRoadNm"),
        probed_at=t("OrigSndDt"), responder_node=t("RspnNd"), responder_server=t("RspnSvcrNm"),
        responder_line_manager=t("RspnLineMgr"), loads=loads,
        line=text(root, ns, "ChckRspn/ChckRspnInf/RcvLineNm")), []


def check(m: Probe | ProbeResponse) -> list[Problem]:
    return []
