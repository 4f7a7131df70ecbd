"""hvps.112.001.01: institution credit transfer (金融机构发起汇兑业务报文).

No captured hvps.112 is public (SPEC.md c, hvps.112). Its connector field list is that
of hvps.111 without the business kind, and the only schema that fits is ISO 20022
pacs.009.001.02, which has no category purpose, purpose or charge bearer. So, as the
shared sample does, the business type (A103 treasury net clearing, A104 treasury
credit, A106 issuance fund, A200 interbank transfer, A105 return...) travels in
PmtTpInf/LclInstrm/Prtry and the business kind as a `/F25/` line in RmtInf/Ustrd.
Debtor and creditor are institutions (member code, name, address); one transaction per
message, settled by clearing (CLRG), with the NORM/HIGH/URGT settlement priority.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (amount_el, check_bank_code, check_currency, opt_el,
                                     parse_amount_el)
from gateway.messages.xml import Builder, Element, text, texts

MESSAGE_TYPE = "hvps.112.001.01"
NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pacs.009.001.02"
_TX = "FinInstnCdtTrf/CdtTrfTxInf"
PRIORITIES = ("NORM", "HIGH", "URGT")
KIND_TAG = "F25"  # business kind (业务种类) as a tag line, SPEC.md d.6
_TYPE = re.compile(r"A[0-9]{3}")
_KIND = re.compile(r"[0-9]{5}")


@dataclass(frozen=True)
class Institution:
    """A financial institution as pacs.009 names it: member code, name, address."""

    member: str | None = None
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class InstitutionTransfer:
    msg_id: str
    created_at: str
    end_to_end_id: str
    tx_id: str
    business_type: str          # A200 ...
    amount_fen: int
    priority: str               # NORM | HIGH | URGT
    instg_direct: str           # payer's clearing bank
    instg_branch: str           # payer's bank
    instd_direct: str           # payee's clearing bank
    instd_branch: str           # payee's bank
    debtor: Institution
    creditor: Institution
    debtor_account: str | None = None
    creditor_account: str | None = None
    debtor_agent: Institution | None = None
    creditor_agent: Institution | None = None
    intermediary1: Institution | None = None
    intermediary2: Institution | None = None
    remittance: tuple[str, ...] = ()
    currency: str = "CNY"

    def tag(self, code: str) -> str | None:
        """The value of a /XXX/ tag line in RmtInf (SPEC.md d.6), if present."""
        prefix = f"/{code}/"
        return next((line[len(prefix):] for line in self.remittance
                     if line.startswith(prefix)), None)

    @property
    def business_kind(self) -> str | None:
        return self.tag(KIND_TAG)


def _clearing(b: Builder, parent: Element, tag: str, member: str, branch: str) -> None:
    node = b.el(parent, tag)
    b.path(node, "FinInstnId/ClrSysMmbId/MmbId", member)
    b.path(node, "BrnchId/Id", branch)


def _institution(b: Builder, parent: Element, tag: str, inst: Institution | None,
                 ) -> None:
    if inst is None:
        return
    fin = b.el(b.el(parent, tag), "FinInstnId")
    b.path(fin, "ClrSysMmbId/MmbId", inst.member)
    opt_el(b, fin, "Nm", inst.name or None)  # an empty name is none (Nm takes 1+)
    b.path(fin, "PstlAdr/AdrLine", inst.address)


def build(t: InstitutionTransfer) -> bytes:
    b = Builder(NAMESPACE)
    doc = b.el(None, "FinInstnCdtTrf")
    hdr = b.el(doc, "GrpHdr")
    b.el(hdr, "MsgId", t.msg_id)
    b.el(hdr, "CreDtTm", t.created_at)
    b.el(hdr, "NbOfTxs", "1")
    b.path(hdr, "SttlmInf/SttlmMtd", "CLRG")
    tx = b.el(doc, "CdtTrfTxInf")
    pmt = b.el(tx, "PmtId")
    b.el(pmt, "EndToEndId", t.end_to_end_id)
    b.el(pmt, "TxId", t.tx_id)
    b.path(tx, "PmtTpInf/LclInstrm/Prtry", t.business_type)
    amount_el(b, tx, "IntrBkSttlmAmt", t.amount_fen, t.currency)
    b.el(tx, "SttlmPrty", t.priority)
    _clearing(b, tx, "InstgAgt", t.instg_direct, t.instg_branch)
    _clearing(b, tx, "InstdAgt", t.instd_direct, t.instd_branch)
    _institution(b, tx, "IntrmyAgt1", t.intermediary1)
    _institution(b, tx, "IntrmyAgt2", t.intermediary2)
    _institution(b, tx, "Dbtr", t.debtor)
    b.path(tx, "DbtrAcct/Id/Othr/Id", t.debtor_account or None)
    _institution(b, tx, "DbtrAgt", t.debtor_agent)
    _institution(b, tx, "CdtrAgt", t.creditor_agent)
    _institution(b, tx, "Cdtr", t.creditor)
    b.path(tx, "CdtrAcct/Id/Othr/Id", t.creditor_account or None)
    if t.remittance:
        rmt = b.el(tx, "RmtInf")
        for line in t.remittance:
            b.el(rmt, "Ustrd", line)
    return b.tobytes()


def _parse_institution(tx: etree._Element, tag: str) -> Institution | None:
    ns = NAMESPACE
    if tx.find(f"{{{ns}}}{tag}") is None:
        return None
    return Institution(text(tx, ns, f"{tag}/FinInstnId/ClrSysMmbId/MmbId"),
                       text(tx, ns, f"{tag}/FinInstnId/Nm"),
                       text(tx, ns, f"{tag}/FinInstnId/PstlAdr/AdrLine"))


def parse(root: etree._Element) -> tuple[InstitutionTransfer, list[Problem]]:
    ns = NAMESPACE
    problems: list[Problem] = []
    tx = root.find(f"{{{ns}}}FinInstnCdtTrf/{{{ns}}}CdtTrfTxInf")
    amount_fen, currency = parse_amount_el(tx.find(f"{{{ns}}}IntrBkSttlmAmt"),
                                           f"/Document/{_TX}/IntrBkSttlmAmt", problems)

    def t(path: str) -> str:
        return text(tx, ns, path) or ""

    return InstitutionTransfer(
        msg_id=text(root, ns, "FinInstnCdtTrf/GrpHdr/MsgId") or "",
        created_at=text(root, ns, "FinInstnCdtTrf/GrpHdr/CreDtTm") or "",
        end_to_end_id=t("PmtId/EndToEndId"),
        tx_id=t("PmtId/TxId"),
        business_type=t("PmtTpInf/LclInstrm/Prtry"),
        amount_fen=amount_fen,
        currency=currency,
        priority=t("SttlmPrty"),
        instg_direct=t("InstgAgt/FinInstnId/ClrSysMmbId/MmbId"),
        instg_branch=t("InstgAgt/BrnchId/Id"),
        instd_direct=t("InstdAgt/FinInstnId/ClrSysMmbId/MmbId"),
        instd_branch=t("InstdAgt/BrnchId/Id"),
        intermediary1=_parse_institution(tx, "IntrmyAgt1"),
        intermediary2=_parse_institution(tx, "IntrmyAgt2"),
        debtor=_parse_institution(tx, "Dbtr") or Institution(),
        debtor_account=text(tx, ns, "DbtrAcct/Id/Othr/Id"),
        debtor_agent=_parse_institution(tx, "DbtrAgt"),
        creditor_agent=_parse_institution(tx, "CdtrAgt"),
        creditor=_parse_institution(tx, "Cdtr") or Institution(),
        creditor_account=text(tx, ns, "CdtrAcct/Id/Othr/Id"),
        remittance=tuple(texts(tx, ns, "RmtInf/Ustrd")),
    ), problems


def check(t: InstitutionTransfer) -> list[Problem]:
    """Business rules of an hvps.112 that need no outside context."""
    p: list[Problem] = []
    base = f"/Document/{_TX}"
    check_currency(t.currency, f"{base}/IntrBkSttlmAmt/@Ccy", p)
    if t.priority not in PRIORITIES:
        p.append(Problem("priority_unknown", f"{base}/SttlmPrty", t.priority,
                         "NORM, HIGH or URGT"))
    for path, value in (("InstgAgt/FinInstnId/ClrSysMmbId/MmbId", t.instg_direct),
                        ("InstgAgt/BrnchId/Id", t.instg_branch),
                        ("InstdAgt/FinInstnId/ClrSysMmbId/MmbId", t.instd_direct),
                        ("InstdAgt/BrnchId/Id", t.instd_branch)):
        check_bank_code(value, f"{base}/{path}", p)
    for tag, inst in (("Dbtr", t.debtor), ("Cdtr", t.creditor), ("DbtrAgt", t.debtor_agent),
                      ("CdtrAgt", t.creditor_agent)):
        if inst is not None and inst.member is not None:
            check_bank_code(inst.member, f"{base}/{tag}/FinInstnId/ClrSysMmbId/MmbId", p)
    for tag, inst in (("Dbtr", t.debtor), ("Cdtr", t.creditor)):
        if not (inst.member or inst.name):
            p.append(Problem("party_field_required", f"{base}/{tag}/FinInstnId", None,
                             "a member code or a name"))
    if t.instg_direct and t.instg_direct == t.instd_direct:
        p.append(Problem("payer_and_payee_clearing_banks_must_differ",
                         f"{base}/InstdAgt/FinInstnId/ClrSysMmbId/MmbId", t.instd_direct,
                         "a clearing bank other than the payer's"))
    _check_types(t, base, p)
    return p


def _check_types(t: InstitutionTransfer, base: str, p: list[Problem]) -> None:
    if not _TYPE.fullmatch(t.business_type):
        p.append(Problem("business_type_malformed", f"{base}/PmtTpInf/LclInstrm/Prtry",
                         t.business_type, "an A-series business type such as A200"))
    kind = t.business_kind
    if kind is not None and not _KIND.fullmatch(kind):
        p.append(Problem("business_kind_malformed", f"{base}/RmtInf/Ustrd", f"/F25/{kind}",
                         "/F25/ followed by five digits"))
    if t.business_type == "A105" and t.tag("F40") is None and t.tag("E50") is None:
        p.append(Problem("return_must_name_original", f"{base}/RmtInf/Ustrd", None,
                         "/F40/ original message type and /E50/ original message id"))
