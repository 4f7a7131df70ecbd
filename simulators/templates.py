"""The ccms.990 and ccms.900 bodies the simulator writes most, written as text, and the
envelope of an unsigned message.

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
from operator import attrgetter

from gateway.messages import ccms900, ccms990
from gateway.messages.envelope import HEADER_FIELDS, HEADER_LEN, Envelope, Header
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


def _plain(values: tuple[str | None, ...]) -> bool:
    """True when every value is there and none holds a character to refuse or escape:
    the document is then its lines with the values as they are, written in one piece."""
    if None in values:
        return False
    return _SPECIAL.search("".join(values)) is None  # type: ignore[arg-type]


_ACK_START = (f'{_DECLARATION}<Document xmlns="{ccms990.NAMESPACE}">\n'
              "  <ComConf>\n    <ConfInf>\n")
_ACK_END = "    </ConfInf>\n  </ComConf>\n</Document>\n"


def ack_body(c: ccms990.CommConf) -> bytes:
    """What ccms990.build(c) writes."""
    if _plain((c.orig_sender, c.orig_send_date, c.mt, c.msg_id, c.msg_ref_id, c.code)):
        # Every acknowledgement the simulator writes: each value there, none to escape.
        return (f"{_ACK_START}      <OrigSndr>{c.orig_sender}</OrigSndr>\n"
                f"      <OrigSndDt>{c.orig_send_date}</OrigSndDt>\n      <MT>{c.mt}</MT>\n"
                f"      <MsgId>{c.msg_id}</MsgId>\n      <MsgRefId>{c.msg_ref_id}</MsgRefId>\n"
                f"      <MsgPrcCd>{c.code}</MsgPrcCd>\n{_ACK_END}").encode()
    fields = [("OrigSndr", c.orig_sender), ("OrigSndDt", c.orig_send_date), ("MT", c.mt),
              ("MsgId", c.msg_id)]
    if c.msg_ref_id is not None:
        fields.append(("MsgRefId", c.msg_ref_id))
    fields.append(("MsgPrcCd", c.code))
    return _document(ccms990.NAMESPACE, ["  <ComConf>\n", "    <ConfInf>\n",
                                         *_leaves(3, fields),
                                         "    </ConfInf>\n", "  </ComConf>\n"])


_RESULT_START = (f'{_DECLARATION}<Document xmlns="{ccms900.NAMESPACE}">\n'
                 "  <CmonConf>\n    <GrpHdr>\n")
_RESULT_END = "    </CmonConfInf>\n  </CmonConf>\n</Document>\n"


def result_body(c: ccms900.CommonConf) -> bytes:
    """What ccms900.build(c) writes."""
    g, o = c.header, c.original
    optional = [(tag, value) for tag, value in (
        ("PrcCd", c.code), ("PtyId", c.party), ("PtyPrcCd", c.party_code),
        ("RjctInf", c.reject_info), ("PrcDt", c.processed_on),
        ("NetgRnd", c.netting_round)) if value is not None]
    required = (g.msg_id, g.created_at, g.instg_direct, g.instg_party, g.instd_direct,
                g.instd_party, g.system, o.msg_id, o.instg_party, o.mt, c.status)
    if _plain(required + (g.remark or "",) + tuple(value for _, value in optional)):
        # The usual result: the group header and the original whole, nothing to escape.
        remark = "" if g.remark is None else f"      <Rmk>{g.remark}</Rmk>\n"
        return "".join([
            (f"{_RESULT_START}      <MsgId>{g.msg_id}</MsgId>\n"
             f"      <CreDtTm>{g.created_at}</CreDtTm>\n      <InstgPty>\n"
             f"        <InstgDrctPty>{g.instg_direct}</InstgDrctPty>\n"
             f"        <InstgPty>{g.instg_party}</InstgPty>\n      </InstgPty>\n"
             f"      <InstdPty>\n        <InstdDrctPty>{g.instd_direct}</InstdDrctPty>\n"
             f"        <InstdPty>{g.instd_party}</InstdPty>\n      </InstdPty>\n"
             f"      <SysCd>{g.system}</SysCd>\n{remark}    </GrpHdr>\n    <OrgnlGrpHdr>\n"
             f"      <OrgnlMsgId>{o.msg_id}</OrgnlMsgId>\n"
             f"      <OrgnlInstgPty>{o.instg_party}</OrgnlInstgPty>\n"
             f"      <OrgnlMT>{o.mt}</OrgnlMT>\n    </OrgnlGrpHdr>\n    <CmonConfInf>\n"
             f"      <PrcSts>{c.status}</PrcSts>\n"),
            *[f"      <{tag}>{value}</{tag}>\n" for tag, value in optional],
            _RESULT_END]).encode("utf-8")
    remark = [] if g.remark is None else _leaves(3, [("Rmk", g.remark)])
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


# The header's fields in their order, each left-aligned in its width (Header.encode).
_HEADER_FORMAT = "{H:" + "".join(f"%-{width}s" for _, width in HEADER_FIELDS) + "}"
_HEADER_VALUES = attrgetter(*(name for name, _ in HEADER_FIELDS))


def unsigned_envelope(header: Header, body: bytes) -> bytes:
    """What Envelope(header, None, body).encode() writes (the NPC's notices and every
    ccms.990 go unsigned), the header's fields written by one format instead of one by
    one. A field wider than its width makes the header longer than it may be: that one
    is left to Envelope.encode, which refuses it."""
    text = _HEADER_FORMAT % _HEADER_VALUES(header)
    if len(text) != HEADER_LEN:
        return Envelope(header, None, body).encode()
    return b"".join((text.encode("ascii"), b"\r\n", body))
