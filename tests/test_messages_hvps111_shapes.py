"""An incoming hvps.111 maps to the same payment whichever optional parts it carries.

`hvps111.parse` finds the transaction's optional children by the schema's order and
reads as few tags as it can; our own build writes one shape only. Here documents are
written element by element with every optional part of our schema present or absent
(intermediary banks, accounts, agents named by member id, by name, by both or neither,
an address block with or without its line, remittance lines, the purpose), each one
checked valid first, and the payment must hold exactly what the document says.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.messages import hvps111, xml
from gateway.messages.common import amount_from_xml
from message_schemas import catalogue

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# An agent's FinInstnId: its member id, its name, both (in that order) or neither.
AGENT = st.sampled_from([(None, None), ("999100000027", None), (None, "示例银行营业部"),
                         ("888200000023", "对手银行 支行")])
# A party's postal address: no PstlAdr, an empty one, or one with its line.
ADDRESS = st.sampled_from(["none", "empty", "line"])
OPTIONAL = st.sampled_from([None, "11000000000000000101"])


@st.composite
def shapes(draw: Any) -> dict[str, Any]:
    return {"intermediaries": draw(st.sampled_from([(), (1,), (2,), (1, 2)])),
            "intermediary_agent": draw(AGENT), "debtor_address": draw(ADDRESS),
            "debtor_account": draw(OPTIONAL), "debtor_agent": draw(AGENT),
            "creditor_agent": draw(AGENT), "creditor_address": draw(ADDRESS),
            "creditor_account": draw(OPTIONAL), "kind": draw(st.sampled_from([None, "02102"])),
            "remittance": draw(st.sampled_from([None, (), ("/H01/货款",),
                                                ("/H01/货款", " /H02/合同号 ")]))}


def _agent(b: xml.Builder, parent: xml.Element, tag: str,
           agent: tuple[str | None, str | None]) -> None:
    fin = b.el(b.el(parent, tag), "FinInstnId")
    member, name = agent
    if member is not None:
        b.el(b.el(fin, "ClrSysMmbId"), "MmbId", member)
    if name is not None:
        b.el(fin, "Nm", name)


def _party(b: xml.Builder, parent: xml.Element, tag: str, name: str, address: str) -> None:
    party = b.el(parent, tag)
    b.el(party, "Nm", name)
    if address != "none":
        postal = b.el(party, "PstlAdr")
        if address == "line":
            b.el(postal, "AdrLine", f"{name}的地址 1 号")


def _document(shape: dict[str, Any]) -> bytes:
    """An hvps.111 in the given shape, in the schema's order, element by element."""
    b = xml.Builder(hvps111.NAMESPACE)
    doc = b.el(None, "FIToFICstmrCdtTrf")
    grp = b.el(doc, "GrpHdr")
    for tag, value in (("MsgId", "2024052000000101"), ("CreDtTm", "2024-05-20T10:15:30"),
                       ("NbOfTxs", "1")):
        b.el(grp, tag, value)
    b.path(grp, "SttlmInf/SttlmMtd", "CLRG")
    tx = b.el(doc, "CdtTrfTxInf")
    payment_id = b.el(tx, "PmtId")
    b.el(payment_id, "EndToEndId", "E2E-1")
    b.el(payment_id, "TxId", "2024052000000101")
    b.path(tx, "PmtTpInf/CtgyPurp/Prtry", "A100")
    b.el(tx, "IntrBkSttlmAmt", " 1500.5 ", Ccy="CNY")
    b.el(tx, "SttlmPrty", "URGT")
    b.el(tx, "ChrgBr", "DEBT")
    for tag, bank, branch in (("InstgAgt", "999100000019", "999100000027"),
                              ("InstdAgt", "888200000015", "888200000023")):
        agent = b.el(tx, tag)
        b.path(agent, "FinInstnId/ClrSysMmbId/MmbId", bank)
        b.path(agent, "BrnchId/Id", branch)
    for number in shape["intermediaries"]:
        _agent(b, tx, f"IntrmyAgt{number}", shape["intermediary_agent"])
    _party(b, tx, "Dbtr", "示例贸易有限公司", shape["debtor_address"])
    b.path(tx, "DbtrAcct/Id/Othr/Id", shape["debtor_account"])
    _agent(b, tx, "DbtrAgt", shape["debtor_agent"])
    _agent(b, tx, "CdtrAgt", shape["creditor_agent"])
    _party(b, tx, "Cdtr", "测试乙", shape["creditor_address"])
    b.path(tx, "CdtrAcct/Id/Othr/Id", shape["creditor_account"])
    b.path(tx, "Purp/Prtry", shape["kind"])
    if shape["remittance"] is not None:
        remittance = b.el(tx, "RmtInf")
        for line in shape["remittance"]:
            b.el(remittance, "Ustrd", line)
    return b.tobytes()


def _expected(shape: dict[str, Any]) -> dict[str, Any]:
    """The payment's fields that depend on the shape, as the document states them."""
    def address(kind: str, name: str) -> str | None:
        return f"{name}的地址 1 号" if kind == "line" else None

    return {"debtor_address": address(shape["debtor_address"], "示例贸易有限公司"),
            "creditor_address": address(shape["creditor_address"], "测试乙"),
            "debtor_account": shape["debtor_account"] or "",
            "creditor_account": shape["creditor_account"] or "",
            "debtor_agent": shape["debtor_agent"][0] or "",
            "debtor_agent_name": shape["debtor_agent"][1],
            "creditor_agent": shape["creditor_agent"][0] or "",
            "creditor_agent_name": shape["creditor_agent"][1],
            "business_kind": shape["kind"] or "",
            "remittance": tuple(shape["remittance"] or ())}


@SETTINGS
@given(shapes())
def test_every_shape_maps_to_what_the_document_says(shape: dict[str, Any]) -> None:
    """Each code or id holds its element's stripped text, each text (a name, an address
    or remittance line) its text as written, spaces included, "" or None where the
    optional element is absent, whichever other optional parts the transaction has."""
    root = xml.parse(_document(shape))
    assert catalogue.schema(hvps111.MESSAGE_TYPE).validate(root)

    ct, problems = hvps111.parse(root)

    assert problems == []
    assert {field: getattr(ct, field) for field in _expected(shape)} == _expected(shape)
    assert (ct.msg_id, ct.created_at, ct.end_to_end_id, ct.tx_id, ct.business_type,
            ct.amount_fen, ct.currency, ct.priority, ct.charge_bearer) == (
        "2024052000000101", "2024-05-20T10:15:30", "E2E-1", "2024052000000101", "A100",
        150_050, "CNY", "URGT", "DEBT")
    assert (ct.instg_direct, ct.instg_branch, ct.instd_direct, ct.instd_branch) == (
        "999100000019", "999100000027", "888200000015", "888200000023")
    assert (ct.debtor_name, ct.creditor_name) == ("示例贸易有限公司", "测试乙")


def test_an_amount_in_an_unusual_form_is_judged_with_its_path() -> None:
    """An amount the schema lets through but the rules refuse (three decimals) is a
    problem naming the amount's element, as `amount_from_xml` names it."""
    body = _document({"intermediaries": (), "intermediary_agent": (None, None),
                      "debtor_address": "none", "debtor_account": None,
                      "debtor_agent": (None, None), "creditor_agent": (None, None),
                      "creditor_address": "none", "creditor_account": None, "kind": None,
                      "remittance": None}).replace(b" 1500.5 ", b"1500.505")
    root = xml.parse(body)
    assert catalogue.schema(hvps111.MESSAGE_TYPE).validate(root)
    expected: list[Any] = []
    amount_from_xml("1500.505", "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/IntrBkSttlmAmt",
                    expected)

    _, problems = hvps111.parse(root)

    assert problems == expected
    assert [(p.code, p.path) for p in problems] == [
        ("amount_must_have_at_most_two_decimals",
         "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/IntrBkSttlmAmt")]
