"""The ccms.990 and ccms.900 bodies the simulator writes most, written as text.

Every HVPS payment makes the simulator write three of them: the NPC's ccms.990 and
ccms.900 to the payer and a simulated payee's ccms.990 back to the NPC. Built element by
element with lxml (gateway.messages.ccms990.build, ccms900.build) each costs several
times what joining its lines costs. The text is byte for byte what those builders write:
the same declaration, default namespace, two-space indentation, empty and missing
values, and the escapes libxml2 applies to text (`&`, `<`, `>` and carriage return). A
value lxml refuses (control characters, lone surrogates, U+FFFE and U+FFFF) is refused
here with the same ValueError. tests/test_simulator_templates.py proves the equality
for arbitrary field values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.messages import ccms900, ccms990
from gateway.messages.xml import DECLARATION

_DECLARATION = DECLARATION.decode("ascii")
# The characters libxml2 cannot hold in text (lxml refuses to set them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"))


# Any character `_text` has to look at: one libxml2 cannot hold or one it escapes. Most
# values (ids, codes, dates) have none, and one search tells so; the checks of a value
# that has one are made one by one.
_SPECIAL = re.compile("[\x00-\x08\x0b-\x1f&<>\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    if _SPECIAL.search(value) is None:
        return value
    if _NOT_XML.search(value):
        raise ValueError("All strings must be XML compatible: Unicode or ASCII, no NULL "
                         f"bytes or control characters: {value[:40]!r}")
    for raw, escaped in _ESCAPES:
        if raw in value:
            value = value.replace(raw, escaped)
    return value


def _leaves(depth: int, fields: Iterable[tuple[str, str | None]]) -> list[str]:
    """One line per (tag, value): `<Tag/>` for None, as an element without text."""
    indent = "  " * depth
    return [f"{indent}<{tag}/>\n" if value is None
            else f"{indent}<{tag}>{_text(value)}</{tag}>\n" for tag, value in fields]


def _document(namespace: str, lines: list[str]) -> bytes:
    return "".join([_DECLARATION, f'<Document xmlns="{namespace}">\n', *lines,
                    "</Document>\n"]).encode("utf-8")


def ack_body(c: ccms990.CommConf) -> bytes:
    """What ccms990.build(c) writes."""
    fields = [("OrigSndr", c.orig_sender), ("OrigSndDt", c.orig_send_date), ("MT", c.mt),
              ("MsgId", c.msg_id)]
    if c.msg_ref_id is not None:
        fields.append(("MsgRefId", c.msg_ref_id))
    fields.append(("MsgPrcCd", c.code))
    return _document(ccms990.NAMESPACE, ["  <ComConf>\n", "    <ConfInf>\n",
                                         *_leaves(3, fields),
                                         "    </ConfInf>\n", "  </ComConf>\n"])


def result_body(c: ccms900.CommonConf) -> bytes:
    """What ccms900.build(c) writes."""
    g, o = c.header, c.original
    remark = [] if g.remark is None else _leaves(3, [("Rmk", g.remark)])
    optional = [(tag, value) for tag, value in (
        ("PrcCd", c.code), ("PtyId", c.party), ("PtyPrcCd", c.party_code),
        ("RjctInf", c.reject_info), ("PrcDt", c.processed_on),
        ("NetgRnd", c.netting_round)) if value is not None]
    return _document(ccms900.NAMESPACE, [
        "  <CmonConf>\n", "    <GrpHdr>\n",
        *_leaves(3, [("MsgId", g.msg_id), ("CreDtTm", g.created_at)]),
        "      <InstgPty>\n",
        *_leaves(4, [("InstgDrctPty", g.instg_direct), ("InstgPty", g.instg_party)]),
        "      </InstgPty>\n", "      <InstdPty>\n",
        *_leaves(4, [("InstdDrctPty", g.instd_direct), ("InstdPty", g.instd_party)]),
        "      </InstdPty>\n",
        *_leaves(3, [("SysCd", g.system)]), *remark,
        "    </GrpHdr>\n", "    <OrgnlGrpHdr>\n",
        *_leaves(3, [("OrgnlMsgId", o.msg_id), ("OrgnlInstgPty", o.instg_party),
                     ("OrgnlMT", o.mt)]),
        "    </OrgnlGrpHdr>\n", "    <CmonConfInf>\n",
        *_leaves(3, [("PrcSts", c.status), *optional]),
        "    </CmonConfInf>\n", "  </CmonConf>\n"])
