"""ccms.990.001.02: communication-level acknowledgement (通信级确认报文).

Every message, both ways, is answered by a 990 sent as its own message. ConfInf echoes
the original's sender, send date, type and the header's MesgID/MesgRefID (not the XML
MsgId), and MsgPrcCd: PM1I0000 means taken; anything else is a refusal (SPEC.md b).
There is no group header.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.xml import Builder, child_text, children

MESSAGE_TYPE = "ccms.990.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.990.001.02"
ACCEPTED = "PM1I0000"


@dataclass(frozen=True)
class CommConf:
    orig_sender: str
    orig_send_date: str  # yyyyMMdd
    mt: str
    msg_id: str          # the original header's MesgID
    msg_ref_id: str | None
    code: str = ACCEPTED

    @property
    def accepted(self) -> bool:
        return self.code == ACCEPTED


def build(c: CommConf) -> bytes:
    b = Builder(NAMESPACE)
    inf = b.el(b.el(None, "ComConf"), "ConfInf")
    b.el(inf, "OrigSndr", c.orig_sender)
    b.el(inf, "OrigSndDt", c.orig_send_date)
    b.el(inf, "MT", c.mt)
    b.el(inf, "MsgId", c.msg_id)
    if c.msg_ref_id is not None:
        b.el(inf, "MsgRefId", c.msg_ref_id)
    b.el(inf, "MsgPrcCd", c.code)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[CommConf, list[Problem]]:
    inf = children(children(children(root).get("ComConf")).get("ConfInf"))
    return CommConf(child_text(inf, "OrigSndr") or "", child_text(inf, "OrigSndDt") or "",
                    child_text(inf, "MT") or "", child_text(inf, "MsgId") or "",
                    child_text(inf, "MsgRefId"), child_text(inf, "MsgPrcCd") or ""), []


def check(c: CommConf) -> list[Problem]:
    return []
