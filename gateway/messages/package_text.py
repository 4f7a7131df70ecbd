"""A package's transactions written from a template: the costly part of sealing one.

A package of 1,000 transactions holds some 35,000 elements. Added one by one, through
lxml or through `xml.Builder`, they cost tens of milliseconds, spent in the database
thread that seals the package. Here a transaction is one string template of the
family's element names (its `Layout`) with the fields escaped into it: a few
microseconds. The template is laid out as `xml.Builder` lays out the same elements, so
the bytes are the same whichever wrote them; tests/test_messages_text.py compares them
with the element-by-element lxml build and validates them against the schemas.

The elements are package.py's (SPEC.md, beps.121): TxId, the agreement (AgrmtNb, in
families with agreements), the payer (Dbtr) with its postal address if any, the
payer's account and the bank holding it (DbtrAcct/Id/Othr Id and Issr), the payer's
and payee's banks (DbtrAgt, CdtrAgt), the payee and its account likewise, the amount,
business type and kind, the remark (AddtlInf), and the additional information block,
which is rare (returns and the like) and written element by element.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.messages.common import (Node, amount_to_xml, build_node, build_original,
                                     build_original_tx, opt_el)
from gateway.messages.xml import Builder, escape_attribute, escape_text, plain_text

if TYPE_CHECKING:
    from gateway.messages.package import Layout, ReturnInfo, Transfer

DETAIL_LEVEL = 2  # Document (0), the family's root element (1), a transaction (2)

# The templates are written at DETAIL_LEVEL: four spaces before the transaction's tag.
# Formatted strings, which Python assembles from their pieces without parsing a
# template on each call (str.format would, at three times the cost).


def transfer(layout: Layout, t: Transfer) -> str:
    """One transaction as text at DETAIL_LEVEL. Its text fields are str, the optional
    ones None when absent (an absent part is left out, as the element build did)."""
    # Text almost never needs escaping: one look at all of it instead of one per field.
    texts = (t.tx_id, t.agreement, t.debtor_name, t.debtor_address, t.debtor_account,
             t.debtor_account_bank, t.debtor_bank, t.creditor_bank, t.creditor_name,
             t.creditor_address, t.creditor_account, t.creditor_account_bank,
             t.business_type, t.business_kind, t.remark)
    x = _as_it_is if plain_text("".join(filter(None, texts))) else escape_text
    detail = layout.detail
    agreement = (f"      <AgrmtNb>{x(t.agreement)}</AgrmtNb>\n"
                 if layout.agreement and t.agreement is not None else "")
    debtor_address = _address(x(t.debtor_address)) if t.debtor_address is not None else ""
    debtor_issuer = _issuer(x(t.debtor_account_bank)) if t.debtor_account_bank is not None \
        else ""
    creditor_address = _address(x(t.creditor_address)) if t.creditor_address is not None \
        else ""
    creditor_issuer = _issuer(x(t.creditor_account_bank)) \
        if t.creditor_account_bank is not None else ""
    remark = f"      <AddtlInf>{x(t.remark)}</AddtlInf>\n" if t.remark is not None else ""
    extra = _extra(layout, t.extra) if t.extra is not None else ""
    return f"""\
    <{detail}>
      <TxId>{x(t.tx_id)}</TxId>
{agreement}\
      <Dbtr>
        <Nm>{x(t.debtor_name)}</Nm>
{debtor_address}\
      </Dbtr>
      <DbtrAcct>
        <Id>
          <Othr>
            <Id>{x(t.debtor_account)}</Id>
{debtor_issuer}\
          </Othr>
        </Id>
      </DbtrAcct>
      <DbtrAgt>
        <BrnchId>
          <Id>{x(t.debtor_bank)}</Id>
        </BrnchId>
      </DbtrAgt>
      <CdtrAgt>
        <BrnchId>
          <Id>{x(t.creditor_bank)}</Id>
        </BrnchId>
      </CdtrAgt>
      <Cdtr>
        <Nm>{x(t.creditor_name)}</Nm>
{creditor_address}\
      </Cdtr>
      <CdtrAcct>
        <Id>
          <Othr>
            <Id>{x(t.creditor_account)}</Id>
{creditor_issuer}\
          </Othr>
        </Id>
      </CdtrAcct>
      <Amt Ccy="{escape_attribute(t.currency)}">{amount_to_xml(t.amount_fen)}</Amt>
      <PmtTpInf>
        <CtgyPurp>
          <Prtry>{x(t.business_type)}</Prtry>
        </CtgyPurp>
      </PmtTpInf>
      <Purp>
        <Prtry>{x(t.business_kind)}</Prtry>
      </Purp>
{remark}\
{extra}\
    </{detail}>
"""


def _as_it_is(value: str) -> str:
    return value


def _address(line: str) -> str:
    """PstlAdr/AdrLine of a party (Dbtr or Cdtr), after its name (`line` escaped)."""
    return f"""\
        <PstlAdr>
          <AdrLine>{line}</AdrLine>
        </PstlAdr>
"""


def _issuer(bank: str) -> str:
    """Issr of an account: the bank holding it (escaped)."""
    return f"            <Issr>{bank}</Issr>\n"


def _extra(layout: Layout, extra: ReturnInfo | Node) -> str:
    """The additional-information block, element by element (returns and the like)."""
    assert layout.extra is not None, f"{layout.code} carries no additional information"
    b = Builder.part(DETAIL_LEVEL + 1)
    holder = b.el(None, layout.extra)
    if isinstance(extra, Node):
        build_node(b, holder, extra)
        return b.text()
    rtr = b.el(holder, "RtrInf")
    build_original(b, rtr, extra.original)
    build_original_tx(b, rtr, extra.original_tx)
    opt_el(b, rtr, "Cntt", extra.reason)
    return b.text()
