"""Pieces every message family shares: group headers, original-message references,
amounts in XML, and the uniform module interface.

Every family module offers the same verbs:

- `build(obj) -> bytes`: the XML body, valid against our schema by construction;
- `parse(root) -> obj`: the domain object from a parsed document;
- `check(obj) -> list[Problem]`: the business rules that need no outside context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from gateway.errors import Problem
from gateway.messages.xml import Builder, text

BANK_CODE = re.compile(r"[0-9]{12}")
NPC_CODE = "0000"
ISO_DATETIME = "%Y-%m-%dT%H:%M:%S"
_XML_AMOUNT = re.compile(r"^[0-9]{1,16}(\.[0-9]{1,5})?$")


@dataclass(frozen=True)
class GroupHeader:
    """GroupHeader1 of CNAPS-native messages (SPEC.md c, common building blocks)."""

    msg_id: str
    created_at: str  # ISODateTime, business time
    instg_direct: str
    instg_party: str
    instd_direct: str
    instd_party: str
    system: str
    remark: str | None = None


def build_group_header(b: Builder, parent: etree._Element, g: GroupHeader) -> None:
    hdr = b.el(parent, "GrpHdr")
    b.el(hdr, "MsgId", g.msg_id)
    b.el(hdr, "CreDtTm", g.created_at)
    instg = b.el(hdr, "InstgPty")
    b.el(instg, "InstgDrctPty", g.instg_direct)
    b.el(instg, "InstgPty", g.instg_party)
    instd = b.el(hdr, "InstdPty")
    b.el(instd, "InstdDrctPty", g.instd_direct)
    b.el(instd, "InstdPty", g.instd_party)
    b.el(hdr, "SysCd", g.system)
    if g.remark is not None:
        b.el(hdr, "Rmk", g.remark)


def parse_group_header(el: etree._Element, ns: str) -> GroupHeader:
    return GroupHeader(
        msg_id=text(el, ns, "GrpHdr/MsgId") or "",
        created_at=text(el, ns, "GrpHdr/CreDtTm") or "",
        instg_direct=text(el, ns, "GrpHdr/InstgPty/InstgDrctPty") or "",
        instg_party=text(el, ns, "GrpHdr/InstgPty/InstgPty") or "",
        instd_direct=text(el, ns, "GrpHdr/InstdPty/InstdDrctPty") or "",
        instd_party=text(el, ns, "GrpHdr/InstdPty/InstdPty") or "",
        system=text(el, ns, "GrpHdr/SysCd") or "",
        remark=text(el, ns, "GrpHdr/Rmk"),
    )


@dataclass(frozen=True)
class OriginalRef:
    """OrgnlGrpHdr: which message a response, query or notice is about."""

    msg_id: str
    instg_party: str
    mt: str


def build_original(b: Builder, parent: etree._Element, o: OriginalRef,
                   tag: str = "OrgnlGrpHdr") -> None:
    node = b.el(parent, tag)
    b.el(node, "OrgnlMsgId", o.msg_id)
    b.el(node, "OrgnlInstgPty", o.instg_party)
    b.el(node, "OrgnlMT", o.mt)


def parse_original(el: etree._Element, ns: str, prefix: str = "OrgnlGrpHdr") -> OriginalRef:
    return OriginalRef(
        msg_id=text(el, ns, f"{prefix}/OrgnlMsgId") or "",
        instg_party=text(el, ns, f"{prefix}/OrgnlInstgPty") or "",
        mt=text(el, ns, f"{prefix}/OrgnlMT") or "",
    )


def amount_to_xml(fen: int) -> str:
    assert fen >= 0, "amounts on the wire are never negative"
    return f"{fen // 100}.{fen % 100:02d}"


def amount_from_xml(value: str | None, path: str, problems: list[Problem]) -> int:
    """An XML amount in yuan to fen; more than two decimals, zero or junk is a problem."""
    if value is None or not _XML_AMOUNT.match(value):
        problems.append(Problem("amount_must_be_a_decimal_number", path, value,
                                "an amount above 0 with at most two decimals"))
        return 0
    whole, _, frac = value.partition(".")
    if len(frac.rstrip("0")) > 2:
        problems.append(Problem("amount_must_have_at_most_two_decimals", path, value,
                                "an amount above 0 with at most two decimals"))
        return 0
    fen = int(whole) * 100 + int((frac + "00")[:2])
    if fen <= 0:
        problems.append(Problem("amount_must_be_positive", path, value,
                                "an amount above 0 with at most two decimals"))
    return fen


def iso_datetime(at: datetime) -> str:
    return at.strftime(ISO_DATETIME)


def check_bank_code(value: str | None, path: str, problems: list[Problem]) -> None:
    if value is None or not BANK_CODE.fullmatch(value):
        problems.append(Problem("bank_code_must_be_12_ascii_digits", path, value,
                                "12 ASCII digits"))
