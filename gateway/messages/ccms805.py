"""ccms.805.001.02 (login or logout request), ccms.806.001.02 (its response) and
ccms.807.001.02 (forced logout notice).

A participant logs in to a system (LoginOprTp OT00) before sending business and logs
out (OT01) at the end; the NPC answers with an 806 carrying the current system date and
status and whether the request was accepted. The NPC may also take a participant off
line with an 807, which is only a group header (the remark says why).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, build_group_header, check_group_parties,
                                     opt_el, parse_group_header)
from gateway.messages.xml import Builder, text

MESSAGE_TYPE = "ccms.805.001.02"
RESPONSE_TYPE = "ccms.806.001.02"
LOGOUT_TYPE = "ccms.807.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.805.001.02"
RESPONSE_NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.806.001.02"
LOGOUT_NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.807.001.02"
LOGIN, LOGOUT = "OT00", "OT01"


@dataclass(frozen=True)
class LoginRequest:
    header: GroupHeader
    operation: str            # OT00 login | OT01 logout


@dataclass(frozen=True)
class LoginResponse:
    header: GroupHeader
    request_msg_id: str       # the 805's MsgId
    operation: str
    system_date: str          # ISODate
    system_status: str        # 00, 10, ... as in ccms.801
    status: str               # PRnn
    code: str | None = None
    reject_info: str | None = None


@dataclass(frozen=True)
class ForcedLogout:
    header: GroupHeader


def build(r: LoginRequest) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "LoginReq")
    build_group_header(b, doc, r.header)
    b.path(doc, "LoginInf/LoginOprTp", r.operation)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[LoginRequest, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}LoginReq")
    return LoginRequest(parse_group_header(doc, ns),
                        text(doc, ns, "LoginInf/LoginOprTp") or ""), []


def build_response(r: LoginResponse) -> bytes:
    b = Builder(RESPONSE_NAMESPACE)
    doc = b.el(None, "LoginRspn")
    build_group_header(b, doc, r.header)
    b.path(doc, "OrgnlGrpInf/OrgnlMsgId", r.request_msg_id)
    inf = b.el(doc, "LoginRspnInf")
    b.el(inf, "LoginOprTp", r.operation)
    b.el(inf, "CurSysDt", r.system_date)
    b.el(inf, "CurSysSts", r.system_status)
    b.el(inf, "PrcSts", r.status)
    opt_el(b, inf, "PrcCd", r.code)
    opt_el(b, inf, "RjctInf", r.reject_info)
    return b.tobytes()


def parse_response(root: etree._Element) -> tuple[LoginResponse, list[Problem]]:
    ns = RESPONSE_NAMESPACE
    doc = root.find(f"{{{ns}}}LoginRspn")

    def t(name: str) -> str | None:
        return text(doc, ns, f"LoginRspnInf/{name}")

    return LoginResponse(parse_group_header(doc, ns),
                         text(doc, ns, "OrgnlGrpInf/OrgnlMsgId") or "",
                         t("LoginOprTp") or "", t("CurSysDt") or "", t("CurSysSts") or "",
                         t("PrcSts") or "", t("PrcCd"), t("RjctInf")), []


def build_logout(n: ForcedLogout) -> bytes:
    b = Builder(LOGOUT_NAMESPACE)
    build_group_header(b, b.el(None, "LogoutNtfctn"), n.header)
    return b.tobytes()


def parse_logout(root: etree._Element) -> tuple[ForcedLogout, list[Problem]]:
    ns = LOGOUT_NAMESPACE
    return ForcedLogout(parse_group_header(root.find(f"{{{ns}}}LogoutNtfctn"), ns)), []


def check(m: LoginRequest | LoginResponse | ForcedLogout) -> list[Problem]:
    root = {LoginRequest: "LoginReq", LoginResponse: "LoginRspn",
            ForcedLogout: "LogoutNtfctn"}[type(m)]
    return check_group_parties(m.header, f"/Document/{root}/GrpHdr")
