"""POST /v1/messages: a refusal names the message's own elements and values, and lists
every problem of the message together (its rules, its payment's fields, its payer's
account and funds)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import requests

from tests.api_support import LiveGateway

EXAMPLE = "hvps.111_urgent-goods-payment.xml"
PAYER = "20000000001410300000013"
TX = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("message-refusals"),
                    payer_name="示例一号贸易有限公司").start()
    assert g.payer == PAYER  # the example message's payer, with 100,000,000.00 yuan
    yield g
    g.stop()


def message(msg_id: str, **swap: bytes) -> bytes:
    raw = resources.files("gateway").joinpath("examples", EXAMPLE).read_bytes()
    raw = raw.replace(b"<MsgId>2026120790000001</MsgId>", f"<MsgId>{msg_id}</MsgId>".encode())
    raw = raw.replace(b"<EndToEndId>99910000002720261207900000000001",
                      f"<EndToEndId>999100000027202612079{msg_id[-11:]}".encode())
    for old, new in swap.values():
        assert old in raw
        raw = raw.replace(old, new)
    return raw


def post(live, raw: bytes) -> tuple[int, list[tuple[str, str, Any]]]:
    r = requests.post(f"{live.url}/v1/messages", data=raw, timeout=10)
    return r.status_code, [(e["code"], e["path"], e["value"]) for e in r.json().get("errors", [])]


AMOUNT = (b">150000.00<", b">150000000.00<")
ACCOUNT = (b"<Id>20000000001410300000013</Id>", b"<Id>20000000001410300000099</Id>")
USD = (b'Ccy="CNY"', b'Ccy="USD"')


def test_funds_short_is_named_at_the_message_s_amount(live):
    status, errors = post(live, message("2026120790000101", amount=AMOUNT))

    assert status == 422
    assert [(c, p) for c, p, _ in errors] == [("payer_funds_insufficient",
                                               f"{TX}/IntrBkSttlmAmt")]


def test_an_unknown_account_is_named_at_the_message_s_debtor_account(live):
    status, errors = post(live, message("2026120790000102", account=ACCOUNT))

    assert status == 422
    assert [(c, p) for c, p, _ in errors] == [("account_not_found",
                                               f"{TX}/DbtrAcct/Id/Othr/Id")]


def test_every_problem_of_a_message_is_listed_together(live):
    status, errors = post(live, message("2026120790000103", usd=USD, account=ACCOUNT))

    assert status == 422
    assert sorted((c, p) for c, p, _ in errors) == [
        ("account_not_found", f"{TX}/DbtrAcct/Id/Othr/Id"),
        ("currency_must_be_cny", f"{TX}/IntrBkSttlmAmt/@Ccy")]


def test_funds_are_told_with_the_message_s_other_problems(live):
    status, errors = post(live, message("2026120790000104", usd=USD, amount=AMOUNT))

    assert sorted(c for c, _, _ in errors) == ["currency_must_be_cny",
                                               "payer_funds_insufficient"]


def test_a_changed_amount_under_a_taken_msg_id_shows_the_message_s_text(live):
    first, _ = post(live, message("2026120790000105"))
    status, errors = post(live, message("2026120790000105",
                                        amount=(b">150000.00<", b">150000.01<")))

    assert first == 201
    assert status == 409
    assert (f"{TX}/IntrBkSttlmAmt", "150000.01") in [(p, v) for _, p, v in errors]


def test_a_json_transfer_tells_its_account_with_its_other_problems(live):
    body = {"payer_account": "6200000000000000999", "payer_name": "x",
            "payer_bank": "999100000027", "payee_account": "6222000011112222",
            "payee_name": "y", "payee_bank": "888200000023", "amount": "10.00",
            "currency": "USD", "urgency": "urgent"}
    r = requests.post(f"{live.url}/v1/transfers", json=body, timeout=10,
                      headers={"Idempotency-Key": "json-together"})

    assert r.status_code == 422
    assert sorted(e["code"] for e in r.json()["errors"]) == ["account_not_found",
                                                             "currency_must_be_cny"]


THREE_DECIMALS = (b">150000.00<", b">1.005<")


def test_an_amount_with_three_decimals_is_refused_for_that_alone(live):
    status, errors = post(live, message("2026120790000106", amount=THREE_DECIMALS))

    assert status == 422
    assert errors == [("amount_must_have_at_most_two_decimals", f"{TX}/IntrBkSttlmAmt",
                       "1.005")]


def test_an_amount_with_three_decimals_still_has_its_account_checked(live):
    status, errors = post(live, message("2026120790000107", amount=THREE_DECIMALS,
                                        account=ACCOUNT))

    assert status == 422
    assert sorted((c, p) for c, p, _ in errors) == [
        ("account_not_found", f"{TX}/DbtrAcct/Id/Othr/Id"),
        ("amount_must_have_at_most_two_decimals", f"{TX}/IntrBkSttlmAmt")]


def test_an_amount_after_5000_zeros_is_refused_as_too_long(live):
    """Zeros before an amount's first digit are the same decimal, but not past 64
    characters in all: 5,000 of them are refused by name, never a 500 (Python reads no
    more than 4,300 digits as a number)."""
    padded = (b">150000.00<", b">" + b"0" * 5_000 + b"150000.00<")
    status, errors = post(live, message("2026120790000109", amount=padded))

    assert status == 422
    assert [(c, p) for c, p, _ in errors] == [("amount_too_long", f"{TX}/IntrBkSttlmAmt")]


# Schema faults libxml2 stops at: once CdtTrfTxInf lacks its ChrgBr, it checks none of
# CdtTrfTxInf's later children, so the faults in Dbtr and Cdtr went untold.
SCHEMA_FAULTS = {
    "priority": (b"<SttlmPrty>URGT</SttlmPrty>", b"<SttlmPrty>FAST</SttlmPrty>"),
    "charge_bearer": (b"<ChrgBr>DEBT</ChrgBr>", b""),
    "debtor": (b"<Dbtr>", b"<Dbtr><Nickname>x</Nickname>"),
    "creditor_name": (b"<Cdtr>\n        <Nm>", b"<Cdtr>\n        <Name>"),
}


def test_a_message_refused_for_its_schema_lists_every_schema_error(live):
    """Every schema error is told at once, each at its element with its value and what
    the schema expects there, including those libxml2 does not reach."""
    raw = message("2026120790000108", **SCHEMA_FAULTS).replace(b"</Nm>\n      </Cdtr>",
                                                               b"</Name>\n      </Cdtr>")
    r = requests.post(f"{live.url}/v1/messages", data=raw, timeout=10)
    errors = {e["path"]: (e["value"], e["expected"]) for e in r.json()["errors"]}

    assert r.status_code == 422
    assert {e["code"] for e in r.json()["errors"]} == {"schema_violation"}
    assert errors[f"{TX}/SttlmPrty"] == ("FAST", "one of NORM, HIGH, URGT")
    assert errors[f"{TX}/InstgAgt"] == ("InstgAgt", "the element ChrgBr here")
    assert errors[f"{TX}/Dbtr/Nickname"] == ("Nickname", "the element Nm here")
    assert errors[f"{TX}/Cdtr/Name"] == ("Name", "the element Nm here")
