"""The BEPS package shared by beps.121, 122, 125 and 127: header, transactions, checks.

A package (SPEC.md c, beps.121) is a PKGGrpHdr with the number of transactions and
their control sum, the NPC's processing block when the NPC forwards it, and one or more
transactions. Each transaction names payer and payee with their accounts (and the bank
holding each account, `Issr`), the sending and receiving banks (DbtrAgt/CdtrAgt BrnchId),
the amount, the business type (PmtTpInf/CtgyPurp/Prtry, e.g. A100) and kind (Purp/Prtry,
e.g. 02102), a remark and at most one block of additional information. The families
differ only in element names and a few rules, which a `Layout` states.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache, partial
from typing import Any, Iterable, Sequence

from lxml import etree

from gateway.errors import Problem
from gateway.messages import package_fast, package_text
from gateway.messages.common import (
    BANK_CODE, Node, NpcProcessing, OriginalRef, OriginalTx, amount_el, amount_from_xml,
    build_npc, check_bank_code, check_currency, opt_el, parse_node, parse_npc,
    parse_original, parse_original_tx, usual_amount)
from gateway.messages.xml import DECLARATION, Builder, Element, escape_attribute
from routing.limits import BepsLimits

BUSINESS_TYPE = re.compile(r"[A-Z][0-9]{3}")
BUSINESS_KIND = re.compile(r"[0-9]{5}")
RETURN_TYPE = "A105"  # 退汇: a return names the original transaction in RtrInf.
_DEFAULT_LIMITS = BepsLimits()


@dataclass(frozen=True)
class Layout:
    """How one package family names its elements and which rules it adds."""

    code: str
    namespace: str
    root: str                        # CstmrCdtTrf, FinCdtTrf, ...
    detail: str                      # CstmrCdtTrfInf, FinCdtTrfInf, ...
    extra: str | None                # the additional-information element, if any
    type_prefixes: tuple[str, ...]   # first letters of the business types allowed
    issuer_required: bool = True     # customer accounts always name their bank
    agreement: bool = False          # AgrmtNb after TxId (debits, periodic credits)
    npc_block: bool = True           # NPCPrcInf after the header
    return_limit: bool = False       # PKGRtrLtdInf after the header (beps.127)
    debit: bool = False              # the instructing party collects instead of pays

    def path(self, field: str = "") -> str:
        """A package-level path, e.g. /Document/CstmrCdtTrf/PKGGrpHdr/CtrlSum."""
        return f"/Document/{self.root}" + (f"/{field}" if field else "")

    def tx_path(self, index: int | None, field: str = "") -> str:
        """A transaction's path; `index` counts from 1 (None for a lone transaction)."""
        where = self.detail if index is None else f"{self.detail}[{index}]"
        return self.path(where) + (f"/{field}" if field else "")


@dataclass(frozen=True)
class PackageHeader:
    """PKGGrpHdr: only direct participants, plus the count and sum of the package."""

    msg_id: str
    created_at: str       # ISODateTime, business time
    instg_direct: str     # the sending direct participant
    instd_direct: str     # the receiving direct participant
    count: int            # NbOfTxs
    total_fen: int        # CtrlSum
    system: str = "BEPS"
    remark: str | None = None
    currency: str = "CNY"


@dataclass(frozen=True)
class ReturnInfo:
    """RtrInf of a return (A105): the returned message, its transaction, the reason."""

    original: OriginalRef
    original_tx: OriginalTx
    reason: str | None = None


@dataclass(frozen=True)
class ReturnLimit:
    """PKGRtrLtdInf of a debit package: days the payer bank has to send its receipt."""

    days: str                 # one or two digits, e.g. 03
    transmit_date: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """One credit (or debit) of a package.

    Slots, not a __dict__: a package holds up to thousands of these. `transfers_from_rows`
    and package_fast build them positionally: keep package_fast._FIELDS and the
    assignment in `transfers_from_rows` in this order.
    """

    tx_id: str                 # up to 16 digits, yyyyMMdd + sequence in practice
    debtor_name: str
    debtor_account: str
    debtor_account_bank: str | None   # DbtrAcct Issr: the payer's account bank
    debtor_bank: str           # DbtrAgt/BrnchId: the payer's bank (付款行)
    creditor_bank: str         # CdtrAgt/BrnchId: the payee's bank (收款行)
    creditor_name: str
    creditor_account: str
    creditor_account_bank: str | None
    amount_fen: int
    business_type: str         # A100 ...
    business_kind: str         # 02102 ...
    remark: str | None = None  # AddtlInf (附言)
    extra: ReturnInfo | Node | None = None
    debtor_address: str | None = None
    creditor_address: str | None = None
    agreement: str | None = None
    currency: str = "CNY"


class _OpenTransfer:
    """Transfer's slots without its frozen __setattr__, to fill a new record quickly."""

    __slots__ = Transfer.__slots__


def transfers_from_rows(rows: Iterable[Sequence[Any]]) -> list[Transfer]:
    """Transfers from rows of their fields in declaration order, equal to Transfer(*row).

    A frozen dataclass's __init__ sets each field through object.__setattr__, about a
    microsecond and a half for Transfer's eighteen, as much as reading a transaction
    from the tree. Here each record is made as an _OpenTransfer, whose slots the same
    row fills with plain assignments, and then becomes a Transfer: Python allows that
    change of class between two classes with the same slots, and the record is frozen
    from then on (tests/test_package_fast.py checks both).
    """
    out: list[Any] = []
    new = object.__new__
    for row in rows:
        t = new(_OpenTransfer)
        (t.tx_id, t.debtor_name, t.debtor_account, t.debtor_account_bank, t.debtor_bank,
         t.creditor_bank, t.creditor_name, t.creditor_account, t.creditor_account_bank,
         t.amount_fen, t.business_type, t.business_kind, t.remark, t.extra,
         t.debtor_address, t.creditor_address, t.agreement, t.currency) = row
        t.__class__ = Transfer  # type: ignore[assignment]
        out.append(t)
    return out


@dataclass(frozen=True)
class Package:
    header: PackageHeader
    transfers: tuple[Transfer, ...]
    npc: NpcProcessing | None = None
    return_limit: ReturnLimit | None = None

    @property
    def sum_fen(self) -> int:
        return sum(t.amount_fen for t in self.transfers)


def without(pkg: Package, tx_ids: frozenset[str]) -> Package:
    """The package less the transactions named by TxId, its NbOfTxs and CtrlSum those of
    the transactions left: a package never states a count or sum it does not carry.
    Everything else (MsgId, CreDtTm, the return deadline, the NPC's block) is kept."""
    kept = tuple(t for t in pkg.transfers if t.tx_id not in tx_ids)
    header = replace(pkg.header, count=len(kept), total_fen=sum(t.amount_fen for t in kept))
    return replace(pkg, header=header, transfers=kept)


# Building. The header and the NPC's block element by element; the transactions, which
# are nearly all of a package, from package_text's template.

def build(layout: Layout, pkg: Package) -> bytes:
    b = Builder(layout.namespace)
    doc = b.el(None, layout.root)
    _build_header(b, doc, pkg.header)
    if pkg.npc is not None:
        assert layout.npc_block, f"{layout.code} has no NPC processing block"
        build_npc(b, doc, pkg.npc)
    if layout.return_limit:
        assert pkg.return_limit is not None, f"{layout.code} needs a return deadline"
        lim = b.el(doc, "PKGRtrLtdInf")
        b.el(lim, "PKGRtrLtd", pkg.return_limit.days)
        opt_el(b, lim, "TrnsmtDt", pkg.return_limit.transmit_date)
    if pkg.transfers:
        b.insert(doc, [package_text.transfer(layout, t) for t in pkg.transfers],
                 package_text.DETAIL_LEVEL)
    return b.tobytes()


# Where `build` ends a package's header, and how it begins the document up to there.
_HEADER_END = b"\n    </PKGGrpHdr>\n"
_NPC_LEVEL = 2  # Document (0), the family's root element (1), its header and NPC block


def with_npc(layout: Layout, body: bytes, npc: NpcProcessing) -> bytes | None:
    """What `build` writes for the package in `body` with the NPC's block `npc` added,
    written into the body's own text (the NPC forwarding a netted package): the block
    goes right after the header, where `build` puts it. Only for a body laid out as
    `build` lays one out up to the end of its header (so that the result is those very
    bytes), in this family's namespace, with no NPC block yet; None for any other, to be
    parsed and built again. Parsing a package of a thousand transactions and writing it
    out again only to add the block was most of the cost of forwarding it."""
    if not layout.npc_block:
        return None
    start = DECLARATION + (f'<Document xmlns="{escape_attribute(layout.namespace)}">\n'
                           f"  <{layout.root}>\n    <PKGGrpHdr>\n").encode()
    at = body.find(_HEADER_END)
    if not body.startswith(start) or at < 0 or body.find(_HEADER_END, at + 1) >= 0 \
            or b"<NPCPrcInf>" in body:
        return None
    block = Builder.part(_NPC_LEVEL)
    build_npc(block, None, npc)  # type: ignore[arg-type]
    at += len(_HEADER_END)
    return b"".join((body[:at], block.text().encode(), body[at:]))


def _build_header(b: Builder, doc: Element, h: PackageHeader) -> None:
    hdr = b.el(doc, "PKGGrpHdr")
    b.el(hdr, "MsgId", h.msg_id)
    b.el(hdr, "CreDtTm", h.created_at)
    b.path(hdr, "InstgPty/InstgDrctPty", h.instg_direct)
    b.path(hdr, "InstdPty/InstdDrctPty", h.instd_direct)
    b.el(hdr, "NbOfTxs", str(h.count))
    amount_el(b, hdr, "CtrlSum", h.total_fen, h.currency)
    b.el(hdr, "SysCd", h.system)
    opt_el(b, hdr, "Rmk", h.remark)


# Parsing. `parse` expects a document valid against our schema (codec.decode validates
# first), so the children of a transaction come in the schema's order and are read by
# position; their tags are still compared, and a transaction that does not match is
# read by name instead. Reading by position is what keeps a 1,000-transaction package
# within the bench target (gateway/messages/bench.py).

def _kids(el: etree._Element | None) -> dict[str, etree._Element]:
    if el is None:
        return {}
    out: dict[str, etree._Element] = {}
    for child in el:
        tag = child.tag
        if isinstance(tag, str):
            out.setdefault(tag[tag.find("}") + 1:], child)
    return out


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    return (el.text or "").strip()


def _dig(el: etree._Element | None, *steps: str) -> etree._Element | None:
    for step in steps:
        if el is None:
            return None
        el = _kids(el).get(step)
    return el


def parse(layout: Layout, root: etree._Element) -> tuple[Package, list[Problem]]:
    problems: list[Problem] = []
    head, txs = elements(layout, root)
    parts: dict[str, etree._Element] = {}
    for el in head:
        parts.setdefault(el.tag[el.tag.find("}") + 1:], el)
    header = _parse_header(parts["PKGGrpHdr"], layout, problems)
    npc = parse_npc(parts.get("NPCPrcInf"), layout.namespace)
    limit = None
    if "PKGRtrLtdInf" in parts:
        lim = _kids(parts["PKGRtrLtdInf"])
        limit = ReturnLimit(_text(lim.get("PKGRtrLtd")) or "", _text(lim.get("TrnsmtDt")))
    uniform = package_fast.read_uniform(layout, root, head, txs, problems,
                                        transfers_from_rows)
    if uniform is not None:
        return Package(header, tuple(uniform), npc, limit), problems
    return Package(header, read_by_element(layout, txs, problems), npc, limit), problems


def elements(layout: Layout,
             root: etree._Element) -> tuple[list[etree._Element], list[etree._Element]]:
    """The package's elements before its first transaction (PKGGrpHdr, NPCPrcInf...;
    the schema puts all of them there) and its transactions."""
    doc = _kids(root)[layout.root]
    detail_tag = f"{{{layout.namespace}}}{layout.detail}"
    head = []
    for child in doc:
        if child.tag == detail_tag:
            break
        if isinstance(child.tag, str):
            head.append(child)
    return head, list(doc.iterchildren(detail_tag))


def read_by_element(layout: Layout, txs: list[etree._Element],
                    problems: list[Problem]) -> tuple[Transfer, ...]:
    """The transactions `txs` read element by element: the reading of any package, which
    package_fast's must equal wherever it applies."""
    return tuple(parse_transfer(el, index, layout, problems)
                 for index, el in enumerate(txs, start=1))


def _parse_header(el: etree._Element, layout: Layout,
                  problems: list[Problem]) -> PackageHeader:
    h = _kids(el)
    total = h.get("CtrlSum")
    count_text = _text(h.get("NbOfTxs")) or "0"
    return PackageHeader(
        msg_id=_text(h.get("MsgId")) or "",
        created_at=_text(h.get("CreDtTm")) or "",
        instg_direct=_text(_dig(h.get("InstgPty"), "InstgDrctPty")) or "",
        instd_direct=_text(_dig(h.get("InstdPty"), "InstdDrctPty")) or "",
        count=int(count_text) if count_text.isascii() and count_text.isdigit() else -1,
        total_fen=amount_from_xml(_text(total), layout.path("PKGGrpHdr/CtrlSum"), problems),
        system=_text(h.get("SysCd")) or "",
        remark=_text(h.get("Rmk")),
        currency=total.get("Ccy", "") if total is not None else "",
    )


_FIXED = ("Dbtr", "DbtrAcct", "DbtrAgt", "CdtrAgt", "Cdtr", "CdtrAcct", "Amt", "PmtTpInf",
          "Purp")


@lru_cache(maxsize=64)
def _tags(ns: str) -> tuple[str, str, str, str]:
    """Full tags of AgrmtNb and of the first, amount and last fixed child."""
    return f"{{{ns}}}AgrmtNb", f"{{{ns}}}Dbtr", f"{{{ns}}}Amt", f"{{{ns}}}Purp"


def parse_transfer(el: etree._Element, index: int | None, layout: Layout,
                   problems: list[Problem]) -> Transfer:
    kids = list(el)
    agreement_tag, first_tag, amount_tag, last_tag = _tags(layout.namespace)
    at = 1
    agreement = None
    if layout.agreement and len(kids) > 1 and kids[1].tag == agreement_tag:
        agreement = (kids[1].text or "").strip()
        at = 2
    if len(kids) < at + 9 or kids[at].tag != first_tag or kids[at + 6].tag != amount_tag \
            or kids[at + 8].tag != last_tag:
        return _parse_transfer_by_name(el, index, layout, problems)
    dbtr, dacct, dagt, cagt, cdtr, cacct, amt, tp, purp = kids[at:at + 9]
    rest = _kids_of(kids[at + 9:]) if len(kids) > at + 9 else {}
    amount_text = (amt.text or "").strip()
    amount_fen = usual_amount(amount_text)
    if amount_fen is None:
        amount_fen = amount_from_xml(amount_text, layout.tx_path(index, "Amt"), problems)
    debtor_othr, creditor_othr = dacct[0][0], cacct[0][0]
    return Transfer(
        (kids[0].text or "").strip(),
        (dbtr[0].text or "").strip(),
        (debtor_othr[0].text or "").strip(),
        (debtor_othr[1].text or "").strip() if len(debtor_othr) > 1 else None,
        (dagt[0][0].text or "").strip(),
        (cagt[0][0].text or "").strip(),
        (cdtr[0].text or "").strip(),
        (creditor_othr[0].text or "").strip(),
        (creditor_othr[1].text or "").strip() if len(creditor_othr) > 1 else None,
        amount_fen,
        (tp[0][0].text or "").strip(),
        (purp[0].text or "").strip(),
        _text(rest.get("AddtlInf")) if rest else None,
        _parse_extra(rest.get(layout.extra), layout.namespace) if rest and layout.extra
        else None,
        _address_at(dbtr) if len(dbtr) > 1 else None,
        _address_at(cdtr) if len(cdtr) > 1 else None,
        agreement,
        amt.get("Ccy", ""),
    )


def _kids_of(elements: list[etree._Element]) -> dict[str, etree._Element]:
    return {el.tag[el.tag.find("}") + 1:]: el for el in elements}


def _address_at(party: etree._Element) -> str | None:
    if len(party) < 2 or len(party[1]) == 0:
        return None
    return (party[1][0].text or "").strip()


def _account(el: etree._Element | None) -> tuple[str, str | None]:
    othr = _kids(_dig(el, "Id", "Othr"))
    return _text(othr.get("Id")) or "", _text(othr.get("Issr"))


def _parse_transfer_by_name(el: etree._Element, index: int | None, layout: Layout,
                            problems: list[Problem]) -> Transfer:
    k = _kids(el)
    amount = k.get("Amt")
    debtor, creditor = _kids(k.get("Dbtr")), _kids(k.get("Cdtr"))
    debtor_account, debtor_account_bank = _account(k.get("DbtrAcct"))
    creditor_account, creditor_account_bank = _account(k.get("CdtrAcct"))
    return Transfer(
        tx_id=_text(k.get("TxId")) or "",
        agreement=_text(k.get("AgrmtNb")),
        debtor_name=_text(debtor.get("Nm")) or "",
        debtor_address=_text(_dig(debtor.get("PstlAdr"), "AdrLine")),
        debtor_account=debtor_account,
        debtor_account_bank=debtor_account_bank,
        debtor_bank=_text(_dig(k.get("DbtrAgt"), "BrnchId", "Id")) or "",
        creditor_bank=_text(_dig(k.get("CdtrAgt"), "BrnchId", "Id")) or "",
        creditor_name=_text(creditor.get("Nm")) or "",
        creditor_address=_text(_dig(creditor.get("PstlAdr"), "AdrLine")),
        creditor_account=creditor_account,
        creditor_account_bank=creditor_account_bank,
        amount_fen=amount_from_xml(_text(amount), layout.tx_path(index, "Amt"), problems),
        currency=amount.get("Ccy", "") if amount is not None else "",
        business_type=_text(_dig(k.get("PmtTpInf"), "CtgyPurp", "Prtry")) or "",
        business_kind=_text(_dig(k.get("Purp"), "Prtry")) or "",
        remark=_text(k.get("AddtlInf")),
        extra=_parse_extra(k.get(layout.extra) if layout.extra else None, layout.namespace),
    )


def _parse_extra(holder: etree._Element | None, ns: str) -> ReturnInfo | Node | None:
    if holder is None or len(holder) == 0:
        return None
    block = holder[0]
    if etree.QName(block).localname != "RtrInf":
        return parse_node(block)
    original_tx = parse_original_tx(block, ns)
    assert original_tx is not None, "the schema requires OrgnlTx in RtrInf"
    return ReturnInfo(parse_original(block, ns), original_tx,
                      _text(_kids(block).get("Cntt")))


# Business rules that need no outside context

# The rules run on every transaction of every package, so each path of a problem is
# built only once a rule is broken, and the cap of a business type is looked up once a
# package.

def check(layout: Layout, pkg: Package, limits: BepsLimits | None = None) -> list[Problem]:
    p: list[Problem] = []
    _check_header(layout, pkg, p)
    on_date = _date_of(pkg.header.created_at)
    caps = _Caps(limits or _DEFAULT_LIMITS, on_date)
    seen: set[str] = set()
    for index, t in enumerate(pkg.transfers, start=1):
        check_transfer(layout, index, t, p)
        _check_limit(layout, index, t, caps, p)
        if t.tx_id in seen:
            p.append(Problem("transaction_id_duplicate", layout.tx_path(index, "TxId"), t.tx_id,
                             "a TxId used once in the package"))
        seen.add(t.tx_id)
    return p


def check_item(layout: Layout, t: Transfer, on_date: date,
               limits: BepsLimits | None = None) -> list[Problem]:
    """The rules `check` applies to each transaction of a package, for one on its own
    (paths without an index): what the NPC would refuse the whole package for."""
    return check_items(layout, [t], on_date, limits)[0]


def check_items(layout: Layout, transfers: Iterable[Transfer], on_date: date,
                limits: BepsLimits | None = None) -> list[list[Problem]]:
    """`check_item` of each of these transactions of a package dated `on_date` (each
    business type's cap looked up once for all of them)."""
    caps = _Caps(limits or _DEFAULT_LIMITS, on_date)
    found = []
    for t in transfers:
        p: list[Problem] = []
        check_transfer(layout, None, t, p)
        _check_limit(layout, None, t, caps, p)
        found.append(p)
    return found


def _check_header(layout: Layout, pkg: Package, p: list[Problem]) -> None:
    h = pkg.header
    if h.system != "BEPS":
        p.append(Problem("system_code_must_be_beps", layout.path("PKGGrpHdr/SysCd"),
                         h.system, "BEPS"))
    check_currency(h.currency, layout.path("PKGGrpHdr/CtrlSum/@Ccy"), p)
    check_bank_code(h.instg_direct, layout.path("PKGGrpHdr/InstgPty/InstgDrctPty"), p)
    check_bank_code(h.instd_direct, layout.path("PKGGrpHdr/InstdPty/InstdDrctPty"), p)
    if h.instg_direct and h.instg_direct == h.instd_direct:
        p.append(Problem("payer_and_payee_clearing_banks_must_differ",
                         layout.path("PKGGrpHdr/InstdPty/InstdDrctPty"), h.instd_direct,
                         "a direct participant other than the sender"))
    if h.count != len(pkg.transfers):
        p.append(Problem("package_count_mismatch", layout.path("PKGGrpHdr/NbOfTxs"),
                         h.count, f"{len(pkg.transfers)}, the number of {layout.detail}"))
    if h.total_fen != pkg.sum_fen:
        p.append(Problem("package_control_sum_mismatch",
                         layout.path("PKGGrpHdr/CtrlSum"), _yuan(h.total_fen),
                         f"{_yuan(pkg.sum_fen)}, the sum of the transactions' amounts"))
    if pkg.npc is not None and not layout.npc_block:
        p.append(Problem("npc_block_not_allowed", layout.path("NPCPrcInf"), None,
                         f"no NPCPrcInf in {layout.code}"))


def check_transfer(layout: Layout, index: int | None, t: Transfer,
                   p: list[Problem]) -> None:
    if _passes(layout, t):
        return  # nearly always: nothing to collect, no path to write
    if t.currency != "CNY":
        check_currency(t.currency, layout.tx_path(index, "Amt/@Ccy"), p)
    banks = [("DbtrAgt/BrnchId/Id", t.debtor_bank), ("CdtrAgt/BrnchId/Id", t.creditor_bank)]
    for field, bank in (("DbtrAcct/Id/Othr/Issr", t.debtor_account_bank),
                        ("CdtrAcct/Id/Othr/Issr", t.creditor_account_bank)):
        if bank is not None or layout.issuer_required:
            banks.append((field, bank or ""))
    for field, bank in banks:
        if bank is None or not BANK_CODE.fullmatch(bank):
            check_bank_code(bank, layout.tx_path(index, field), p)
    for field, value in (("Dbtr/Nm", t.debtor_name), ("Cdtr/Nm", t.creditor_name),
                         ("DbtrAcct/Id/Othr/Id", t.debtor_account),
                         ("CdtrAcct/Id/Othr/Id", t.creditor_account)):
        if not value.strip():
            p.append(Problem("party_field_required", layout.tx_path(index, field), value,
                             "a value"))
    _check_business_type(layout, index, t, p)


# The codes of transactions found to pass `check_transfer`'s rules on codes (currency,
# banks, the accounts' banks, business type and kind), with what of the family those
# rules read: a package's thousand transactions nearly all share them (one payer bank,
# one payee bank, one business type and kind), so each such set is matched against the
# patterns once instead of once a transaction. Emptied when it holds this many, far more
# than the banks and business codes in use at once (each is a few short strings).
CODES_PASSING_MAX = 4096
_codes_passing: set[tuple[Any, ...]] = set()


def _passes(layout: Layout, t: Transfer) -> bool:
    """Whether `check_transfer` finds nothing, told without collecting (a package of a
    thousand asks a thousand times); False also when unsure (a transaction carrying
    additional information), for `check_transfer` to look at rule by rule."""
    if t.extra is not None:
        return False
    codes = (t.currency, t.debtor_bank, t.creditor_bank, t.debtor_account_bank,
             t.creditor_account_bank, t.business_type, t.business_kind,
             layout.issuer_required, layout.type_prefixes)
    if codes not in _codes_passing:
        if not _codes_pass(layout, t):
            return False
        if len(_codes_passing) >= CODES_PASSING_MAX:
            _codes_passing.clear()
        _codes_passing.add(codes)
    return (bool(t.debtor_name.strip()) and bool(t.creditor_name.strip())
            and bool(t.debtor_account.strip()) and bool(t.creditor_account.strip()))


def _codes_pass(layout: Layout, t: Transfer) -> bool:
    """Whether a transaction's codes pass every rule of `check_transfer` on them."""
    bank = BANK_CODE.fullmatch
    debtor_issuer, creditor_issuer = t.debtor_account_bank, t.creditor_account_bank
    return (t.currency == "CNY"
            and t.debtor_bank is not None and bank(t.debtor_bank) is not None
            and t.creditor_bank is not None and bank(t.creditor_bank) is not None
            and (bank(debtor_issuer) is not None if debtor_issuer is not None
                 else not layout.issuer_required)
            and (bank(creditor_issuer) is not None if creditor_issuer is not None
                 else not layout.issuer_required)
            and BUSINESS_TYPE.fullmatch(t.business_type) is not None
            and t.business_type[0] in layout.type_prefixes
            and t.business_type != RETURN_TYPE
            and BUSINESS_KIND.fullmatch(t.business_kind) is not None)


def _check_business_type(layout: Layout, index: int | None, t: Transfer,
                         p: list[Problem]) -> None:
    type_path = partial(layout.tx_path, index, "PmtTpInf/CtgyPurp/Prtry")
    if not BUSINESS_TYPE.fullmatch(t.business_type):
        p.append(Problem("business_type_malformed", type_path(), t.business_type,
                         "a letter and three digits, e.g. A100"))
    elif t.business_type[0] not in layout.type_prefixes:
        p.append(Problem("business_type_not_allowed_for_message", type_path(),
                         t.business_type, f"a type starting with "
                         f"{' or '.join(layout.type_prefixes)} in {layout.code}"))
    if not BUSINESS_KIND.fullmatch(t.business_kind):
        p.append(Problem("business_kind_malformed", layout.tx_path(index, "Purp/Prtry"),
                         t.business_kind, "five digits, e.g. 02102"))
    is_return = isinstance(t.extra, ReturnInfo)
    if t.business_type == RETURN_TYPE and not is_return:
        p.append(Problem("return_must_name_original", layout.tx_path(index, layout.extra or ""),
                         None, "RtrInf naming the returned message and transaction"))
    if is_return and t.business_type != RETURN_TYPE:
        p.append(Problem("return_info_only_for_returns", type_path(), t.business_type,
                         f"{RETURN_TYPE} when RtrInf is present"))


class _Caps:
    """The BEPS cap of each business type on the package's day, each looked up once."""

    def __init__(self, limits: BepsLimits, on_date: date | None) -> None:
        self.limits, self.on_date = limits, on_date
        self.cap_fen: dict[str, int | None] = {}

    def of(self, business_type: str) -> int | None:
        assert self.on_date is not None, "a package without a date has no caps"
        if business_type not in self.cap_fen:
            self.cap_fen[business_type] = self.limits.limit_for(business_type,
                                                                self.on_date).cap_fen
        return self.cap_fen[business_type]


def _check_limit(layout: Layout, index: int | None, t: Transfer, caps: _Caps,
                 p: list[Problem]) -> None:
    if caps.on_date is None or not BUSINESS_TYPE.fullmatch(t.business_type):
        return
    cap_fen = caps.of(t.business_type)
    if cap_fen is not None and t.amount_fen > cap_fen:
        p.append(Problem("amount_over_beps_limit", layout.tx_path(index, "Amt"),
                         _yuan(t.amount_fen),
                         f"at most {_yuan(cap_fen)} for {t.business_type} in BEPS"))


def _date_of(created_at: str) -> date | None:
    try:
        return date.fromisoformat(created_at[:10])
    except ValueError:
        return None


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


assert package_fast._FIELDS == tuple(Transfer.__dataclass_fields__), \
    "package_fast builds Transfer positionally"
