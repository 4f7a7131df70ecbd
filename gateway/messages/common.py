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
from typing import Any, Callable, TypeVar

from lxml import etree

from gateway.errors import Problem
from gateway.messages.xml import Builder, Element, child_text, children, qpath, text
from gateway.money import currency_problem

T = TypeVar("T")
BANK_CODE = re.compile(r"[0-9]{12}")
NPC_CODE = "0000"
ISO_DATETIME = "%Y-%m-%dT%H:%M:%S"
# An XML amount as ActiveCurrencyAndAmount's xs:decimal is written (SPEC.md b): digits,
# up to 5 decimals. Zeros before the first digit are the same decimal (00010.00 is
# 10.00, as the schema reads it), so the XML path has no leading-zero rule of its own
# (the JSON API's amount_must_not_have_leading_zeros is CONTRACT.md §2's one form); they
# are not counted among the 16 digits before the point a payment's amount may have.
_XML_AMOUNT = re.compile(r"^[0-9]+(\.[0-9]{1,5})?$")
WHOLE_DIGITS_MAX = 16
# The schema's totalDigits does not count those zeros either, so it lets an amount of any
# length through. A bank's system that pads its amounts to a fixed width writes far fewer
# than this (16 digits, the point and five decimals are 22 characters); beyond it the
# text is refused (amount_too_long) before Python reads its digits as a number, which it
# refuses past 4,300 digits, and before a refusal or a log would carry all of it.
AMOUNT_CHARS_MAX = 64
# The form nearly every amount takes: whole yuan without a leading zero, two decimals.
_USUAL_AMOUNT = re.compile(r"([1-9][0-9]{0,15})\.([0-9]{2})")
# Many amounts in that form, one per line.
_USUAL_AMOUNTS = re.compile(r"(?:[1-9][0-9]{0,15}\.[0-9]{2}\n)*"
                            r"[1-9][0-9]{0,15}\.[0-9]{2}")


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


def build_group_header(b: Builder, parent: Element, g: GroupHeader) -> None:
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
    """The GrpHdr under `el`, read by local names in one pass per level (xml.children):
    the schema, checked before any parse, has put every element in `ns`, once."""
    hdr = children(children(el).get("GrpHdr"))
    instg, instd = children(hdr.get("InstgPty")), children(hdr.get("InstdPty"))
    return GroupHeader(
        msg_id=child_text(hdr, "MsgId") or "",
        created_at=child_text(hdr, "CreDtTm") or "",
        instg_direct=child_text(instg, "InstgDrctPty") or "",
        instg_party=child_text(instg, "InstgPty") or "",
        instd_direct=child_text(instd, "InstdDrctPty") or "",
        instd_party=child_text(instd, "InstdPty") or "",
        system=child_text(hdr, "SysCd") or "",
        remark=child_text(hdr, "Rmk"),
    )


@dataclass(frozen=True)
class OriginalRef:
    """OrgnlGrpHdr: which message a response, query or notice is about."""

    msg_id: str
    instg_party: str
    mt: str


def build_original(b: Builder, parent: Element, o: OriginalRef,
                   tag: str = "OrgnlGrpHdr") -> None:
    node = b.el(parent, tag)
    b.el(node, "OrgnlMsgId", o.msg_id)
    b.el(node, "OrgnlInstgPty", o.instg_party)
    b.el(node, "OrgnlMT", o.mt)


def parse_original(el: etree._Element, ns: str, prefix: str = "OrgnlGrpHdr") -> OriginalRef:
    """The reference under `el`/`prefix`, read as `parse_group_header` reads."""
    original = children(children(el).get(prefix))
    return OriginalRef(
        msg_id=child_text(original, "OrgnlMsgId") or "",
        instg_party=child_text(original, "OrgnlInstgPty") or "",
        mt=child_text(original, "OrgnlMT") or "",
    )


def amount_to_xml(fen: int) -> str:
    assert fen >= 0, "amounts on the wire are never negative"
    return f"{fen // 100}.{fen % 100:02d}"


def usual_amount(value: str) -> int | None:
    """Fen of an amount in its usual form (e.g. 1200.00), or None for any other form,
    which `amount_from_xml` then judges. Lets hot loops skip building an error path."""
    usual = _USUAL_AMOUNT.fullmatch(value)
    return int(usual.group(1)) * 100 + int(usual.group(2)) if usual is not None else None


def amounts_from_xml(values: list[str], path_of: Callable[[int], str],
                     problems: list[Problem]) -> list[int]:
    """`amount_from_xml` of each value (path_of(i) naming the i-th, from 0), in one pass.

    When every value has the usual form, which one regular expression over the values
    joined by newlines tells, the fen are the digits without the point: exact integers
    from C-level loops. A value holding a newline of its own would add a line, so the
    line count must also agree. Otherwise each value is judged on its own, in order.
    """
    joined = "\n".join(values)
    if _USUAL_AMOUNTS.fullmatch(joined):
        digits = joined.replace(".", "").split("\n")
        if len(digits) == len(values):
            return list(map(int, digits))
    fens = []
    for index, value in enumerate(values):
        fen = usual_amount(value)
        fens.append(amount_from_xml(value, path_of(index), problems) if fen is None else fen)
    return fens


def amount_from_xml(value: str | None, path: str, problems: list[Problem],
                    allow_zero: bool = False) -> int:
    """An XML amount in yuan to fen; more than two decimals, zero or junk is a problem.

    Totals that may legitimately be nothing (a receipt's paid sum) pass `allow_zero`.
    """
    usual = _USUAL_AMOUNT.fullmatch(value) if value is not None else None
    if usual is not None:
        return int(usual.group(1)) * 100 + int(usual.group(2))
    if value is None or not _XML_AMOUNT.match(value):
        problems.append(Problem("amount_must_be_a_decimal_number", path, value,
                                "an amount above 0 with at most two decimals"))
        return 0
    whole, _, frac = value.partition(".")
    if len(whole.lstrip("0")) > WHOLE_DIGITS_MAX:
        problems.append(Problem("amount_too_large", path, value,
                                f"at most {WHOLE_DIGITS_MAX} digits before the decimal point "
                                "(zeros before the first digit not counted)"))
        return 0
    if len(value) > AMOUNT_CHARS_MAX:
        problems.append(Problem("amount_too_long", path, value,
                                f"an amount written in at most {AMOUNT_CHARS_MAX} characters "
                                "(zeros before the first digit included)",
                                f"amount too long at {path}: written in {len(value):,} "
                                f"characters, expected at most {AMOUNT_CHARS_MAX} (zeros "
                                "before the first digit included)"))
        return 0
    if len(frac.rstrip("0")) > 2:
        problems.append(Problem("amount_must_have_at_most_two_decimals", path, value,
                                "an amount above 0 with at most two decimals"))
        return 0
    fen = int(whole) * 100 + int((frac + "00")[:2])
    if fen <= 0 and not allow_zero:
        problems.append(Problem("amount_must_be_positive", path, value,
                                "an amount above 0 with at most two decimals"))
    return fen


def iso_datetime(at: datetime) -> str:
    return at.strftime(ISO_DATETIME)


def check_bank_code(value: str | None, path: str, problems: list[Problem]) -> None:
    if value is None or not BANK_CODE.fullmatch(value):
        problems.append(Problem("bank_code_must_be_12_ascii_digits", path, value,
                                "12 ASCII digits"))


def opt_el(b: Builder, parent: Element, tag: str, value: str | None) -> None:
    """Add `<tag>value</tag>` under parent unless the value is None."""
    if value is not None:
        b.el(parent, tag, value)


@dataclass(frozen=True)
class NpcProcessing:
    """NPCPrcInf: what the NPC did with a message it forwards or reports on (SPEC.md c).

    `status` is a PRnn code (PR03 netted, PR04 settled, PR09 rejected, ...), `code` the
    eight-character processing code (NEZI0000 when all went well).
    """

    status: str
    code: str
    reject_info: str | None = None
    netting_date: str | None = None     # ISODate
    netting_round: str | None = None    # two digits, 01, 02, ...
    settlement_date: str | None = None  # ISODate
    received_at: str | None = None      # ISODateTime
    forwarded_at: str | None = None     # ISODateTime


_NPC_FIELDS = (("PrcSts", "status"), ("PrcCd", "code"), ("RjctInf", "reject_info"),
               ("NetgDt", "netting_date"), ("NetgRnd", "netting_round"),
               ("SttlmDt", "settlement_date"), ("RcvTm", "received_at"),
               ("TrnsmtTm", "forwarded_at"))


def build_npc(b: Builder, parent: Element, npc: NpcProcessing,
              tag: str = "NPCPrcInf") -> None:
    node = b.el(parent, tag)
    for xml_tag, name in _NPC_FIELDS:
        opt_el(b, node, xml_tag, getattr(npc, name))


def parse_npc(el: etree._Element | None, ns: str) -> NpcProcessing | None:
    """The NPCPrcInf element `el` (or None when the message has none)."""
    if el is None:
        return None
    values = {name: text(el, ns, xml_tag) for xml_tag, name in _NPC_FIELDS}
    values["status"] = values["status"] or ""
    values["code"] = values["code"] or ""
    return NpcProcessing(**values)


@dataclass(frozen=True)
class OriginalTx:
    """OrgnlTx: one transaction of an original message, with its indirect parties."""

    instg_indirect: str   # the original payer's bank
    instd_indirect: str   # the original payee's bank
    tx_id: str            # up to 16 digits
    business_type: str    # the original business type, e.g. A100


def build_original_tx(b: Builder, parent: Element, o: OriginalTx) -> None:
    node = b.el(parent, "OrgnlTx")
    b.el(node, "InstgIndrctPty", o.instg_indirect)
    b.el(node, "InstdIndrctPty", o.instd_indirect)
    b.el(node, "OrgnlTxId", o.tx_id)
    b.el(node, "OrgnlTxTpCd", o.business_type)


def parse_original_tx(el: etree._Element, ns: str,
                      prefix: str = "OrgnlTx") -> OriginalTx | None:
    if el.find(qpath(ns, prefix)) is None:
        return None
    return OriginalTx(text(el, ns, f"{prefix}/InstgIndrctPty") or "",
                      text(el, ns, f"{prefix}/InstdIndrctPty") or "",
                      text(el, ns, f"{prefix}/OrgnlTxId") or "",
                      text(el, ns, f"{prefix}/OrgnlTxTpCd") or "")


@dataclass(frozen=True)
class Partition:
    """Prttn: this message's place (StartNb..EndNb of TtlNb) in a split response."""

    total: int
    start: int
    end: int


def build_partition(b: Builder, parent: Element, p: Partition) -> None:
    node = b.el(parent, "Prttn")
    b.el(node, "TtlNb", str(p.total))
    b.el(node, "StartNb", str(p.start))
    b.el(node, "EndNb", str(p.end))


def parse_partition(el: etree._Element, ns: str) -> Partition:
    return Partition(int(text(el, ns, "Prttn/TtlNb") or 0),
                     int(text(el, ns, "Prttn/StartNb") or 0),
                     int(text(el, ns, "Prttn/EndNb") or 0))


def check_partition(p: Partition, path: str, problems: list[Problem]) -> None:
    if not 1 <= p.start <= p.end <= p.total:
        problems.append(Problem("partition_out_of_range", path,
                                f"{p.start}..{p.end} of {p.total}",
                                "1 <= StartNb <= EndNb <= TtlNb"))


def check_currency(currency: str, path: str, problems: list[Problem]) -> None:
    """CNAPS2 clears renminbi only; a foreign currency code is refused, never converted."""
    found = currency_problem(currency, path)
    if found is not None:
        problems.append(found)


def amount_el(b: Builder, parent: Element, tag: str, fen: int,
              currency: str = "CNY") -> None:
    b.el(parent, tag, amount_to_xml(fen), Ccy=currency)


def parse_amount_el(el: etree._Element | None, path: str, problems: list[Problem],
                    allow_zero: bool = False) -> tuple[int, str]:
    """(fen, currency) of an ActiveCurrencyAndAmount element, with its problems."""
    if el is None:
        problems.append(Problem("amount_missing", path, None, "an amount"))
        return 0, ""
    value = (el.text or "").strip()
    return amount_from_xml(value, path, problems, allow_zero), el.get("Ccy", "")


@dataclass(frozen=True)
class Node:
    """An element kept as it came: for additional-information blocks (cheque, draft,
    treasury details...) that the product carries through but does not interpret.

    `ccy` is the currency attribute of an amount element; no other attribute occurs in
    CNAPS2 bodies.
    """

    tag: str
    text: str | None = None
    ccy: str | None = None
    children: tuple["Node", ...] = ()

    def find(self, tag: str) -> "Node | None":
        return next((child for child in self.children if child.tag == tag), None)


def build_node(b: Builder, parent: Element, node: Node) -> None:
    attrs = {"Ccy": node.ccy} if node.ccy is not None else {}
    el = b.el(parent, node.tag, node.text, **attrs)
    for child in node.children:
        build_node(b, el, child)


def parse_node(el: etree._Element) -> Node:
    children = tuple(parse_node(child) for child in el if isinstance(child.tag, str))
    value = None if children else (el.text or "").strip()
    return Node(etree.QName(el).localname, value, el.get("Ccy"), children)


def check_party_code(value: str, path: str, problems: list[Problem]) -> None:
    """A party of a group header: a 12-digit bank code, or the NPC's 0000."""
    if value != NPC_CODE:
        check_bank_code(value, path, problems)


def check_group_parties(g: GroupHeader, path: str) -> list[Problem]:
    """The four parties of a GrpHdr are bank codes or the NPC (SPEC.md c, GroupHeader1).

    ccms.801 broadcasts to every participant with twelve zeros as receiver, which the
    bank-code rule accepts as twelve digits.
    """
    problems: list[Problem] = []
    for field, value in (("InstgPty/InstgDrctPty", g.instg_direct),
                         ("InstgPty/InstgPty", g.instg_party),
                         ("InstdPty/InstdDrctPty", g.instd_direct),
                         ("InstdPty/InstdPty", g.instd_party)):
        check_party_code(value, f"{path}/{field}", problems)
    return problems


def construct(cls: type[T], values: dict[str, Any]) -> T:
    """A frozen dataclass instance with its fields set directly from `values`.

    A frozen dataclass's __init__ sets each field through object.__setattr__, which for
    the wide records of the payment messages costs as much as reading them from the
    tree. For a dataclass without __post_init__, slots or init=False fields, filling
    its __dict__ gives an object equal to cls(**values); the families use this only on
    their hot paths, and their round-trip tests compare with the ordinary constructor.
    """
    assert values.keys() == cls.__dataclass_fields__.keys(), \
        f"every field of {cls.__name__} is given"
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj
