"""The element-by-element lxml build the messages had before they were written as text,
kept as the oracle the text must equal byte for byte (tests/test_messages_text.py).

`LxmlBuilder` offers `xml.Builder`'s calls on an lxml tree serialised by lxml's pretty
printer; `build_package` and `build_real_time_credit` add each element of a package's
transactions (and of a beps.123's one) as the families did, `build_credit_transfer`
and `build_comm_conf` each element of an hvps.111 and of a ccms.990.
"""

from __future__ import annotations

from lxml import etree

from gateway.messages import beps123, ccms990, hvps111, package
from gateway.messages.common import (amount_el, build_group_header, build_node, build_npc,
                                     build_original, build_original_tx, opt_el)
from gateway.messages.package import Layout, Package, ReturnInfo, Transfer
from gateway.messages.xml import DECLARATION


class LxmlBuilder:
    """Builds one document in one default namespace, element by element, with lxml."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})

    def el(self, parent: etree._Element | None, tag: str, value: str | None = None,
           **attrs: str) -> etree._Element:
        node = etree.SubElement(self.root if parent is None else parent,
                                f"{{{self.ns}}}{tag}", attrs)
        if value is not None:
            node.text = value
        return node

    def path(self, parent: etree._Element, path: str, value: str | None) -> None:
        if value is None:
            return
        node = parent
        for step in path.split("/"):
            node = self.el(node, step)
        node.text = value

    def tobytes(self) -> bytes:
        return DECLARATION + etree.tostring(self.root, encoding="UTF-8", pretty_print=True)


def build_package(layout: Layout, pkg: Package) -> bytes:
    b = LxmlBuilder(layout.namespace)
    doc = b.el(None, layout.root)
    package._build_header(b, doc, pkg.header)  # the header is still built by calls
    if pkg.npc is not None:
        build_npc(b, doc, pkg.npc)
    if layout.return_limit:
        assert pkg.return_limit is not None
        lim = b.el(doc, "PKGRtrLtdInf")
        b.el(lim, "PKGRtrLtd", pkg.return_limit.days)
        opt_el(b, lim, "TrnsmtDt", pkg.return_limit.transmit_date)
    for t in pkg.transfers:
        build_transfer(b, b.el(doc, layout.detail), t, layout)
    return b.tobytes()


def build_real_time_credit(c: beps123.RealTimeCredit) -> bytes:
    b = LxmlBuilder(beps123.NAMESPACE)
    doc = b.el(None, "RealTmCdtTrf")
    build_group_header(b, doc, c.header)
    if c.npc is not None:
        build_npc(b, doc, c.npc)
    build_transfer(b, b.el(doc, "RealTmCdtTrfInf"), c.transfer, beps123.LAYOUT)
    return b.tobytes()


def _build_party(b: LxmlBuilder, tx: etree._Element, tag: str, name: str,
                 address: str | None) -> None:
    node = b.el(tx, tag)
    b.el(node, "Nm", name)
    if address is not None:
        b.path(node, "PstlAdr/AdrLine", address)


def _build_account(b: LxmlBuilder, tx: etree._Element, tag: str, number: str,
                   bank: str | None) -> None:
    othr = b.el(b.el(b.el(tx, tag), "Id"), "Othr")
    b.el(othr, "Id", number)
    opt_el(b, othr, "Issr", bank)


def build_transfer(b: LxmlBuilder, tx: etree._Element, t: Transfer, layout: Layout) -> None:
    b.el(tx, "TxId", t.tx_id)
    if layout.agreement:
        opt_el(b, tx, "AgrmtNb", t.agreement)
    _build_party(b, tx, "Dbtr", t.debtor_name, t.debtor_address)
    _build_account(b, tx, "DbtrAcct", t.debtor_account, t.debtor_account_bank)
    b.path(tx, "DbtrAgt/BrnchId/Id", t.debtor_bank)
    b.path(tx, "CdtrAgt/BrnchId/Id", t.creditor_bank)
    _build_party(b, tx, "Cdtr", t.creditor_name, t.creditor_address)
    _build_account(b, tx, "CdtrAcct", t.creditor_account, t.creditor_account_bank)
    amount_el(b, tx, "Amt", t.amount_fen, t.currency)
    b.path(tx, "PmtTpInf/CtgyPurp/Prtry", t.business_type)
    b.path(tx, "Purp/Prtry", t.business_kind)
    opt_el(b, tx, "AddtlInf", t.remark)
    if t.extra is None:
        return
    assert layout.extra is not None
    holder = b.el(tx, layout.extra)
    if isinstance(t.extra, ReturnInfo):
        rtr = b.el(holder, "RtrInf")
        build_original(b, rtr, t.extra.original)
        build_original_tx(b, rtr, t.extra.original_tx)
        opt_el(b, rtr, "Cntt", t.extra.reason)
    else:
        build_node(b, holder, t.extra)


def build_credit_transfer(ct: hvps111.CreditTransfer) -> bytes:
    b = LxmlBuilder(hvps111.NAMESPACE)
    doc = b.el(None, "FIToFICstmrCdtTrf")
    hdr = b.el(doc, "GrpHdr")
    b.el(hdr, "MsgId", ct.msg_id)
    b.el(hdr, "CreDtTm", ct.created_at)
    b.el(hdr, "NbOfTxs", "1")
    b.path(hdr, "SttlmInf/SttlmMtd", "CLRG")
    tx = b.el(doc, "CdtTrfTxInf")
    pmt = b.el(tx, "PmtId")
    b.el(pmt, "EndToEndId", ct.end_to_end_id)
    b.el(pmt, "TxId", ct.tx_id)
    b.path(tx, "PmtTpInf/CtgyPurp/Prtry", ct.business_type)
    amount_el(b, tx, "IntrBkSttlmAmt", ct.amount_fen, ct.currency)
    b.el(tx, "SttlmPrty", ct.priority)
    b.el(tx, "ChrgBr", ct.charge_bearer)
    for tag, member, branch in (("InstgAgt", ct.instg_direct, ct.instg_branch),
                                ("InstdAgt", ct.instd_direct, ct.instd_branch)):
        agent = b.el(tx, tag)
        b.path(agent, "FinInstnId/ClrSysMmbId/MmbId", member)
        b.path(agent, "BrnchId/Id", branch)
    _build_party(b, tx, "Dbtr", ct.debtor_name, ct.debtor_address)
    b.path(tx, "DbtrAcct/Id/Othr/Id", ct.debtor_account)
    for tag, member, name in (("DbtrAgt", ct.debtor_agent, ct.debtor_agent_name),
                              ("CdtrAgt", ct.creditor_agent, ct.creditor_agent_name)):
        fin = b.el(b.el(tx, tag), "FinInstnId")
        b.path(fin, "ClrSysMmbId/MmbId", member)
        opt_el(b, fin, "Nm", name)
    _build_party(b, tx, "Cdtr", ct.creditor_name, ct.creditor_address)
    b.path(tx, "CdtrAcct/Id/Othr/Id", ct.creditor_account)
    b.path(tx, "Purp/Prtry", ct.business_kind)
    if ct.remittance:
        rmt = b.el(tx, "RmtInf")
        for line in ct.remittance:
            b.el(rmt, "Ustrd", line)
    return b.tobytes()


def build_comm_conf(c: ccms990.CommConf) -> bytes:
    b = LxmlBuilder(ccms990.NAMESPACE)
    inf = b.el(b.el(None, "ComConf"), "ConfInf")
    b.el(inf, "OrigSndr", c.orig_sender)
    b.el(inf, "OrigSndDt", c.orig_send_date)
    b.el(inf, "MT", c.mt)
    b.el(inf, "MsgId", c.msg_id)
    opt_el(b, inf, "MsgRefId", c.msg_ref_id)
    b.el(inf, "MsgPrcCd", c.code)
    return b.tobytes()
