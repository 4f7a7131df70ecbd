"""saps.606.001.01: account booking notice (AcctBookgNtfctn).

The NPC booked an entry on the bank's settlement account: typically the net result of
a BEPS netting round when the round settles (CONTRACT.md §4), with the message that
caused it (OrgnlGrpHdr), the NPC's processing block (PR04 and the settlement date) and
the entry: business type (TxTp), kind (CtgyPurpCd), booking id, netting round, debit or
credit, and the signed amount and balance after booking (SummaryAmountText, CNY+...).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (GroupHeader, NpcProcessing, OriginalRef,
                                     build_group_header, build_npc, build_original,
                                     check_currency, check_group_parties, opt_el,
                                     parse_group_header,
                                     parse_npc, parse_original)
from gateway.messages.hvps710 import parse_summary_amount, summary_amount
from gateway.messages.xml import Builder, qpath, text

MESSAGE_TYPE = "saps.606.001.01"
NAMESPACE = "urn:cnaps:std:saps:2010:tech:xsd:saps.606.001.01"
_INF = "/Document/AcctBookgNtfctn/AcctBookgNtfctnInf"


@dataclass(frozen=True)
class Booking:
    header: GroupHeader
    original: OriginalRef
    npc: NpcProcessing
    tx_type: str                   # business type, e.g. A100
    kind: str                      # business kind, e.g. 02102
    direction: str                 # CRDT | DBIT, seen from the bank's account
    amount_fen: int                # signed, as the notice writes it
    booking_id: str | None = None
    netting_round: str | None = None
    balance_fen: int | None = None
    zero_balance_account: str | None = None
    currency: str = "CNY"


def build(n: Booking) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "AcctBookgNtfctn")
    build_group_header(b, doc, n.header)
    build_original(b, doc, n.original)
    build_npc(b, doc, n.npc)
    inf = b.el(doc, "AcctBookgNtfctnInf")
    b.el(inf, "TxTp", n.tx_type)
    b.el(inf, "CtgyPurpCd", n.kind)
    opt_el(b, inf, "BookgId", n.booking_id)
    opt_el(b, inf, "NetgRnd", n.netting_round)
    b.el(inf, "DbtCdtId", n.direction)
    b.el(inf, "Amt", summary_amount(n.amount_fen).replace("CNY", n.currency, 1))
    if n.balance_fen is not None:
        b.el(inf, "Bal", summary_amount(n.balance_fen).replace("CNY", n.currency, 1))
    opt_el(b, inf, "ZeroBalAcct", n.zero_balance_account)
    return b.tobytes()


def parse(root: etree._Element) -> tuple[Booking, list[Problem]]:
    ns = NAMESPACE
    doc = root.find(f"{{{ns}}}AcctBookgNtfctn")

    def t(name: str) -> str | None:
        return text(doc, ns, f"AcctBookgNtfctnInf/{name}")

    amount, balance = t("Amt") or "CNY+0.00", t("Bal")
    npc = parse_npc(doc.find(qpath(ns, "NPCPrcInf")), ns)
    assert npc is not None, "the schema requires NPCPrcInf in a saps.606"
    return Booking(
        parse_group_header(doc, ns), parse_original(doc, ns), npc, t("TxTp") or "",
        t("CtgyPurpCd") or "", t("DbtCdtId") or "", parse_summary_amount(amount),
        t("BookgId"), t("NetgRnd"),
        parse_summary_amount(balance) if balance is not None else None,
        t("ZeroBalAcct"), amount[:3]), []


def check(n: Booking) -> list[Problem]:
    p = check_group_parties(n.header, "/Document/AcctBookgNtfctn/GrpHdr")
    check_currency(n.currency, f"{_INF}/Amt", p)
    return p
