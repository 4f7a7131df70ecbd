"""hvps.111.001.01: customer credit transfer (客户发起汇兑业务报文).

The body is an ISO 20022 pacs.008.001.02 document restricted as CNAPS2 uses it
(SPEC.md c, hvps.111): one transaction, settlement method CLRG, the business type in
PmtTpInf/CtgyPurp/Prtry (e.g. A100), the business kind in Purp/Prtry (e.g. 02102), the
settlement priority NORM/HIGH/URGT, the clearing banks in InstgAgt/InstdAgt with the
branch in BrnchId, and remarks and tag lines (/H01/...) in RmtInf/Ustrd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from gateway.errors import Problem
from gateway.messages.common import (amount_from_xml, amount_to_xml, check_bank_code,
                                     check_currency, construct)
from gateway.messages.xml import DECLARATION, escape_attribute, escape_text

MESSAGE_TYPE = "hvps.111.001.01"
NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.02"
_TX = "FIToFICstmrCdtTrf/CdtTrfTxInf"
PRIORITIES = ("NORM", "HIGH", "URGT")
_TYPE = re.compile(r"[A-Z][0-9]{3}")   # business type (业务类型), SPEC.md d.4
_KIND = re.compile(r"[0-9]{5}")        # business kind (业务种类), SPEC.md d.5
_AMOUNT_PATH = f"/Document/{_TX}/IntrBkSttlmAmt"
# The tags `parse` compares (lxml's "{namespace}name" form): the transaction's children
# it tells apart, with CdtrAcct, Purp and RmtInf, which may follow Cdtr in that order, and
# a bank's member id.
_DEBTOR, _DEBTOR_ACCOUNT, *_ENDING, _MEMBER = (
    f"{{{NAMESPACE}}}{name}"
    for name in ("Dbtr", "DbtrAcct", "CdtrAcct", "Purp", "RmtInf", "ClrSysMmbId"))
_DECLARATION = DECLARATION.decode()


@dataclass(frozen=True)
class CreditTransfer:
    msg_id: str
    created_at: str
    end_to_end_id: str
    tx_id: str
    business_type: str      # A100 ...
    business_kind: str      # 02102 ...
    amount_fen: int
    priority: str           # NORM | HIGH | URGT
    instg_direct: str       # payer's clearing bank (付款清算行)
    instg_branch: str       # payer's bank (付款行)
    instd_direct: str       # payee's clearing bank (收款清算行)
    instd_branch: str       # payee's bank (收款行)
    debtor_name: str
    debtor_account: str
    debtor_agent: str       # 付款人开户行
    creditor_agent: str     # 收款人开户行
    creditor_name: str
    creditor_account: str
    remittance: tuple[str, ...] = ()
    debtor_agent_name: str | None = None
    creditor_agent_name: str | None = None
    debtor_address: str | None = None
    creditor_address: str | None = None
    currency: str = "CNY"
    charge_bearer: str = "DEBT"

    def tag(self, code: str) -> str | None:
        """The value of a /XXX/ tag line in RmtInf (SPEC.md d.6), if present (a line is
        read without the spaces around it; it is carried as written)."""
        prefix = f"/{code}/"
        for line in self.remittance:
            read = line.strip()
            if read.startswith(prefix):
                return read[len(prefix):]
        return None


def build(ct: CreditTransfer) -> bytes:
    """The document as text from one template, laid out as `xml.Builder` lays out the
    same elements (the bytes the element-by-element build wrote, which
    tests/test_messages_text.py keeps as the oracle): built for every payment sent, it
    costs a few microseconds instead of a few hundred. Text is escaped as the builder
    escapes it, and what XML cannot carry is refused as it refuses it (ValueError)."""
    x = escape_text
    remittance = "".join(f"        <Ustrd>{x(line)}</Ustrd>\n" for line in ct.remittance)
    if remittance:
        remittance = f"      <RmtInf>\n{remittance}      </RmtInf>\n"
    return f"""\
{_DECLARATION}<Document xmlns="{NAMESPACE}">
  <FIToFICstmrCdtTrf>
    <GrpHdr>
      <MsgId>{x(ct.msg_id)}</MsgId>
      <CreDtTm>{x(ct.created_at)}</CreDtTm>
      <NbOfTxs>1</NbOfTxs>
      <SttlmInf>
        <SttlmMtd>CLRG</SttlmMtd>
      </SttlmInf>
    </GrpHdr>
    <CdtTrfTxInf>
      <PmtId>
        <EndToEndId>{x(ct.end_to_end_id)}</EndToEndId>
        <TxId>{x(ct.tx_id)}</TxId>
      </PmtId>
      <PmtTpInf>
        <CtgyPurp>
          <Prtry>{x(ct.business_type)}</Prtry>
        </CtgyPurp>
      </PmtTpInf>
      <IntrBkSttlmAmt Ccy="{escape_attribute(ct.currency)}">\
{amount_to_xml(ct.amount_fen)}</IntrBkSttlmAmt>
      <SttlmPrty>{x(ct.priority)}</SttlmPrty>
      <ChrgBr>{x(ct.charge_bearer)}</ChrgBr>
{_agent("InstgAgt", ct.instg_direct, branch=ct.instg_branch)}\
{_agent("InstdAgt", ct.instd_direct, branch=ct.instd_branch)}\
{_party("Dbtr", ct.debtor_name, ct.debtor_address)}\
{_account("DbtrAcct", ct.debtor_account)}\
{_agent("DbtrAgt", ct.debtor_agent, ct.debtor_agent_name)}\
{_agent("CdtrAgt", ct.creditor_agent, ct.creditor_agent_name)}\
{_party("Cdtr", ct.creditor_name, ct.creditor_address)}\
{_account("CdtrAcct", ct.creditor_account)}\
      <Purp>
        <Prtry>{x(ct.business_kind)}</Prtry>
      </Purp>
{remittance}\
    </CdtTrfTxInf>
  </FIToFICstmrCdtTrf>
</Document>
""".encode()


def _agent(tag: str, member: str, name: str | None = None, branch: str | None = None) -> str:
    """A bank: its clearing member (FinInstnId/ClrSysMmbId/MmbId), then its name if given
    (DbtrAgt, CdtrAgt) and its branch if given (BrnchId/Id: InstgAgt, InstdAgt)."""
    named = f"          <Nm>{escape_text(name)}</Nm>\n" if name is not None else ""
    branched = "" if branch is None else f"""\
        <BrnchId>
          <Id>{escape_text(branch)}</Id>
        </BrnchId>
"""
    return f"""\
      <{tag}>
        <FinInstnId>
          <ClrSysMmbId>
            <MmbId>{escape_text(member)}</MmbId>
          </ClrSysMmbId>
{named}\
        </FinInstnId>
{branched}\
      </{tag}>
"""


def _account(tag: str, number: str) -> str:
    """DbtrAcct / CdtrAcct: the account number (Id/Othr/Id)."""
    return f"""\
      <{tag}>
        <Id>
          <Othr>
            <Id>{escape_text(number)}</Id>
          </Othr>
        </Id>
      </{tag}>
"""


def _party(tag: str, name: str, address: str | None) -> str:
    """Dbtr / Cdtr: the name, and the address line if given."""
    located = "" if address is None else f"""\
        <PstlAdr>
          <AdrLine>{escape_text(address)}</AdrLine>
        </PstlAdr>
"""
    return f"""\
      <{tag}>
        <Nm>{escape_text(name)}</Nm>
{located}\
      </{tag}>
"""


def _t(el: etree._Element) -> str:
    """A code, id, amount or time, read without the spaces around it."""
    return (el.text or "").strip()


def _text(el: etree._Element) -> str:
    """A name, address line or remittance line exactly as written, spaces at its ends
    included: such text is carried into the messages we send and shown as the sender
    wrote it, never trimmed on the way (a ready message is checked, not edited)."""
    return el.text or ""


def _member_and_name(agent: etree._Element) -> tuple[str, str | None]:
    """MmbId and Nm of an <Agent><FinInstnId>, each optional and in that order: only a
    lone child's tag says which of the two it is."""
    fin = agent[0]
    count = len(fin)
    if count == 0:
        return "", None
    first = fin[0]
    if count == 1 and first.tag != _MEMBER:
        return "", _text(first)
    return _t(first[0]), (_text(fin[1]) if count > 1 else None)


def _address(party: etree._Element) -> str | None:
    if len(party) < 2 or len(party[1]) == 0:
        return None
    return _text(party[1][0])


def _parties(tail: list[etree._Element]) -> list[etree._Element | None]:
    """Dbtr, DbtrAcct, DbtrAgt, CdtrAgt, Cdtr, CdtrAcct, Purp and RmtInf (None for an
    absent optional one) among a transaction's children after InstdAgt.

    lxml makes an element's tag anew for each element ("{namespace}name"), which costs
    more than reading its text, so the schema's order tells most of them: only IntrmyAgt1
    and IntrmyAgt2 (not mapped) come before Dbtr, only DbtrAcct between Dbtr and DbtrAgt,
    CdtrAgt and Cdtr come right after DbtrAgt, and what follows is CdtrAcct, Purp and
    RmtInf in that order, each optional: their tags are read only when one is missing.
    """
    at = 0
    while tail[at].tag != _DEBTOR:
        at += 1
    debtor = tail[at]
    debtor_account = tail[at + 1] if tail[at + 1].tag == _DEBTOR_ACCOUNT else None
    at += 1 if debtor_account is None else 2
    agents_and_creditor = tail[at:at + 3]
    ending = tail[at + 3:]
    if len(ending) != len(_ENDING):
        present = {kid.tag: kid for kid in ending}
        ending = [present.get(tag) for tag in _ENDING]
    return [debtor, debtor_account, *agents_and_creditor, *ending]


def parse(root: etree._Element) -> tuple[CreditTransfer, list[Problem]]:
    """Map a document valid against our schema (codec.decode validates first).

    The schema fixes the order inside each element, so fields are read by position
    (the optional children of the transaction as `_parties` finds them), and the texts
    that every document has are read in one pass.
    """
    problems: list[Problem] = []
    doc = root[0]
    grp, kids = doc[0], list(doc[1])
    # The first seven children are fixed; the rest are found as _parties says.
    pmt, tp, amount_el, prty, chrg, instg, instd = kids[:7]
    dbtr, dacct, dagt, cagt, cdtr, cacct, purp, rmt = _parties(kids[7:])
    (msg_id, created_at, end_to_end_id, tx_id, business_type, amount, priority,
     charge_bearer, instg_direct, instg_branch, instd_direct,
     instd_branch) = [(leaf.text or "").strip() for leaf in (
        grp[0], grp[1], pmt[0], pmt[1], tp[0][0], amount_el, prty, chrg, instg[0][0][0],
        instg[1][0], instd[0][0][0], instd[1][0])]
    # Names and remittance lines as written (`_text`).
    debtor_name, creditor_name = dbtr[0].text or "", cdtr[0].text or ""
    debtor_agent, debtor_agent_name = _member_and_name(dagt)
    creditor_agent, creditor_agent_name = _member_and_name(cagt)
    ct = construct(CreditTransfer, {
        "msg_id": msg_id,
        "created_at": created_at,
        "end_to_end_id": end_to_end_id,
        "tx_id": tx_id,
        "business_type": business_type,
        "business_kind": _t(purp[0]) if purp is not None else "",
        "amount_fen": amount_from_xml(amount, _AMOUNT_PATH, problems),
        "priority": priority,
        "instg_direct": instg_direct,
        "instg_branch": instg_branch,
        "instd_direct": instd_direct,
        "instd_branch": instd_branch,
        "debtor_name": debtor_name,
        "debtor_account": _t(dacct[0][0][0]) if dacct is not None else "",
        "debtor_agent": debtor_agent,
        "creditor_agent": creditor_agent,
        "creditor_name": creditor_name,
        "creditor_account": _t(cacct[0][0][0]) if cacct is not None else "",
        "remittance": tuple([line.text or "" for line in rmt]) if rmt is not None else (),
        "debtor_agent_name": debtor_agent_name,
        "creditor_agent_name": creditor_agent_name,
        "debtor_address": _address(dbtr),
        "creditor_address": _address(cdtr),
        "currency": amount_el.get("Ccy", ""),
        "charge_bearer": charge_bearer,
    })
    return ct, problems


def check(ct: CreditTransfer) -> list[Problem]:
    """Business rules of an hvps.111 that need no outside context."""
    p: list[Problem] = []
    base = f"/Document/{_TX}"
    check_currency(ct.currency, f"{base}/IntrBkSttlmAmt/@Ccy", p)
    if ct.priority not in PRIORITIES:
        p.append(Problem("priority_unknown", f"{base}/SttlmPrty", ct.priority,
                         "NORM, HIGH or URGT"))
    for path, value in (("InstgAgt/FinInstnId/ClrSysMmbId/MmbId", ct.instg_direct),
                        ("InstgAgt/BrnchId/Id", ct.instg_branch),
                        ("InstdAgt/FinInstnId/ClrSysMmbId/MmbId", ct.instd_direct),
                        ("InstdAgt/BrnchId/Id", ct.instd_branch),
                        ("DbtrAgt/FinInstnId/ClrSysMmbId/MmbId", ct.debtor_agent),
                        ("CdtrAgt/FinInstnId/ClrSysMmbId/MmbId", ct.creditor_agent)):
        check_bank_code(value, f"{base}/{path}", p)
    if ct.instg_direct and ct.instg_direct == ct.instd_direct:
        p.append(Problem("payer_and_payee_clearing_banks_must_differ",
                         f"{base}/InstdAgt/FinInstnId/ClrSysMmbId/MmbId", ct.instd_direct,
                         "a clearing bank other than the payer's"))
    if not _TYPE.fullmatch(ct.business_type):
        p.append(Problem("business_type_malformed", f"{base}/PmtTpInf/CtgyPurp/Prtry",
                         ct.business_type, "a letter and three digits, e.g. A100"))
    if not _KIND.fullmatch(ct.business_kind):
        p.append(Problem("business_kind_malformed", f"{base}/Purp/Prtry", ct.business_kind,
                         "five digits, e.g. 02102"))
    if ct.business_type == "A105" and ct.tag("F40") is None and ct.tag("E50") is None:
        p.append(Problem("return_must_name_original", f"{base}/RmtInf/Ustrd", None,
                         "/F40/ original message type and /E50/ original message id"))
    for name, value in (("Dbtr/Nm", ct.debtor_name), ("Cdtr/Nm", ct.creditor_name),
                        ("DbtrAcct/Id/Othr/Id", ct.debtor_account),
                        ("CdtrAcct/Id/Othr/Id", ct.creditor_account)):
        if not value.strip():  # a name of spaces alone names nobody
            p.append(Problem("party_field_required", f"{base}/{name}", value, "a value"))
    return p
