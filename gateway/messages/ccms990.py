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
from gateway.messages.common import construct
from gateway.messages.xml import DECLARATION, escape_text

MESSAGE_TYPE = "ccms.990.001.02"
NAMESPACE = "urn:cnaps:std:ccms:2010:tech:xsd:ccms.990.001.02"
_DECLARATION = DECLARATION.decode()
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
    """The document as text, laid out as `xml.Builder` lays out the same elements
    (tests/test_messages_text.py keeps the element-by-element build as the oracle): one
    is sent for every message received, so it is written in microseconds. A field that is
    None is written as an empty element, as the builder writes it; MsgRefId is left out."""
    ref = _leaf("MsgRefId", c.msg_ref_id) if c.msg_ref_id is not None else ""
    return f"""\
{_DECLARATION}<Document xmlns="{NAMESPACE}">
  <ComConf>
    <ConfInf>
{_leaf("OrigSndr", c.orig_sender)}{_leaf("OrigSndDt", c.orig_send_date)}\
{_leaf("MT", c.mt)}{_leaf("MsgId", c.msg_id)}{ref}{_leaf("MsgPrcCd", c.code)}\
    </ConfInf>
  </ComConf>
</Document>
""".encode()


def _leaf(tag: str, value: str | None) -> str:
    """One element of ConfInf on its line: its text escaped, or empty for None."""
    if value is None:
        return f"      <{tag}/>\n"
    return f"      <{tag}>{escape_text(value)}</{tag}>\n"


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


# The leaves of ConfInf by their qualified tags, with their fields: the schema, checked
# before any parse, allows no other element in the document and each once, so one pass
# over the tree reads them all (where looking up each level's children took three passes).
_LEAVES = (("orig_sender", _q("OrigSndr")), ("orig_send_date", _q("OrigSndDt")),
           ("mt", _q("MT")), ("msg_id", _q("MsgId")), ("code", _q("MsgPrcCd")))
_MSG_REF_ID = _q("MsgRefId")


def parse(root: etree._Element) -> tuple[CommConf, list[Problem]]:
    """The ConfInf read in one pass over the document's elements (what reading it level
    by level with `children` and `child_text` gives: tests/test_ccms990_reading.py)."""
    found = {el.tag: el.text for el in root.iter()}
    values = {field: (found.get(tag) or "").strip() for field, tag in _LEAVES}
    ref = found.get(_MSG_REF_ID, _ABSENT)
    values["msg_ref_id"] = None if ref is _ABSENT else (ref or "").strip()
    return construct(CommConf, values), []


_ABSENT = object()


def check(c: CommConf) -> list[Problem]:
    return []
