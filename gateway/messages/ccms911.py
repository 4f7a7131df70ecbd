"""ccms.911.001.02: discarded-message notice (DscrdMsgNtfctn).

The NPC sends it instead of processing a message whose signature or format failed.
Like ccms.990 it has no group header: DscrdInf names the dropped message by its `{H:`
header (sender, send date, type, MesgID and MesgRefID), then gives the processing code
and the reject text (SPEC.md c, ccms.911). The original sender is at most 12 characters
here, so the NPC's own code would not fit; only banks' messages are discarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import opt_el
from gateway.messages.envelope import Header
from gateway.messages.xml import Builder, text

MESSAGE_TYPE = "ccms.911.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.911.001.02"


@dataclass(frozen=True)
class Discarded:
    orig_sender: str
    orig_send_date: str       # yyyyMMdd, from the dropped message's header
    mt: str
    msg_id: str               # the dropped header's MesgID
    code: str                 # processing code
    msg_ref_id: str | None = None
    reject_info: str | None = None

    @classmethod
    def of(cls, original: Header, code: str, reject_info: str | None) -> "Discarded":
        return cls(original.orig_sender, original.send_date, original.mesg_type,
                   original.mesg_id, code, original.mesg_ref_id, reject_info)


def build(d: Discarded) -> bytes:
    b = Builder(NAMESPACE)
    inf = b.el(b.el(None, "DscrdMsgNtfctn"), "DscrdInf")
    b.el(inf, "OrigSndr", d.orig_sender)
    b.el(inf, "OrigSndDt", d.orig_send_date)
    b.el(inf, "MT", d.mt)
    b.el(inf, "MsgId", d.msg_id)
    opt_el(b, inf, "MsgRefId", d.msg_ref_id)
    b.el(inf, "PrcCd", d.code)
    opt_el(b, inf, "RjctInf", d.reject_info)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[Discarded, list[Problem]]:
    ns = NAMESPACE

    def t(name: str) -> str | None:
        return text(root, ns, f"DscrdMsgNtfctn/DscrdInf/{name}")

    return Discarded(t("OrigSndr") or "", t("OrigSndDt") or "", t("MT") or "",
                     t("MsgId") or "", t("PrcCd") or "", t("MsgRefId"), t("RjctInf")), []


def check(d: Discarded) -> list[Problem]:
    return []
