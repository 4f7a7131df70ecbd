"""The body of a ccms.911.001.02 discarded-message notice (DscrdMsgNtfctn).

The NPC sends it instead of processing a message whose signature or format failed. Its
DscrdInf echoes the original header's sender, send date, type and MesgID/MesgRefID, then
the processing code and the reject text (SPEC.md c, ccms.911). There is no group header.
"""

from __future__ import annotations

from gateway.messages.envelope import Header
from gateway.messages.xml import Builder

MESSAGE_TYPE = "ccms.911.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.911.001.02"


def build(original: Header, code: str, reject_info: str) -> bytes:
    b = Builder(NAMESPACE)
    inf = b.el(b.el(None, "DscrdMsgNtfctn"), "DscrdInf")
    b.el(inf, "OrigSndr", original.orig_sender)
    b.el(inf, "OrigSndDt", original.send_date)
    b.el(inf, "MT", original.mesg_type)
    b.el(inf, "MsgId", original.mesg_id)
    b.el(inf, "MsgRefId", original.mesg_ref_id)
    b.el(inf, "PrcCd", code)
    b.el(inf, "RjctInf", reject_info)
    return b.tobytes()
