"""One rule for null in a transfer request: an optional field given null is the field left
out (its default applies, or none), for every optional field alike; a required field
given null is missing."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from gateway import intake
from gateway.clock import SHANGHAI
from gateway.errors import ValidationFailed
from tests.api_support import LiveGateway

OWN = frozenset({"999100000019", "999100000027"})
BASE = {"payer_account": "20000000001410300000013", "payer_name": "示例客户",
        "payer_bank": "999100000027", "payee_account": "6222000000000001",
        "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "100.00"}
OPTIONAL = ["currency", "business_type", "business_kind", "remittance_info", "urgency",
            "when_closed"]


def test_the_optional_fields_are_those_the_request_may_leave_out() -> None:
    """The rule covers exactly the fields a transfer does not require."""
    assert sorted(intake.OPTIONAL) == sorted(OPTIONAL)


@pytest.mark.parametrize("name", OPTIONAL)
def test_an_optional_field_given_null_is_the_field_left_out(name: str) -> None:
    """Null is accepted, reads as the same transfer and hashes as the same request."""
    with_null = {**BASE, name: None}

    assert intake.parse_transfer(with_null, OWN) == intake.parse_transfer(BASE, OWN)
    assert intake.transfer_sha256(with_null) == intake.transfer_sha256(BASE)


def test_every_optional_field_null_at_once_is_the_bare_transfer() -> None:
    body = {**BASE, **dict.fromkeys(OPTIONAL)}

    assert intake.parse_transfer(body, OWN) == intake.parse_transfer(BASE, OWN)
    assert intake.parse_transfer(body, OWN).urgency == "normal"


@pytest.mark.parametrize("name", ["payer_name", "payee_bank", "amount"])
def test_a_required_field_given_null_is_missing(name: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        intake.parse_transfer({**BASE, name: None}, OWN)

    assert [(p.code, p.path) for p in refused.value.problems] == [
        ("field_required", f"/{name}")]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("intake-nulls")).start()
    yield g
    g.stop()


def test_a_null_urgency_is_taken_and_a_retry_leaving_it_out_is_the_same(live) -> None:
    """`"urgency": null` is a normal transfer (201); the same key with urgency left out
    gets the stored answer, not a 409."""
    body = {**BASE, "payer_account": live.payer, "urgency": None, "when_closed": None,
            "business_kind": None}
    first = requests.post(f"{live.url}/v1/transfers", json=body,
                          headers={"Idempotency-Key": "null-urgency"}, timeout=10)
    again = requests.post(f"{live.url}/v1/transfers", json={**BASE, "payer_account": live.payer},
                          headers={"Idempotency-Key": "null-urgency"}, timeout=10)

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])


# Every other endpoint taking optional fields keeps the same rule, from its field table:
# (name, parse, meaning, a request leaving every optional field out, its optional fields).
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=SHANGHAI)


def _endpoints() -> list[tuple]:
    from gateway.beps import debits_out, periodic
    from gateway.queries import requests as q
    debit = {"creditor_account": "20000000001410300000013", "creditor_name": "示例客户",
             "creditor_bank": "999100000027", "debtor_account": "6222000000000001",
             "debtor_name": "对手客户", "debtor_bank": "888200000023", "amount": "10.00",
             "agreement": "AG-1"}
    periodic_body = {**BASE, "agreement": "AG-P"}
    query = {"payment_id": "P2026120700000001", "content": "款项未到"}
    subject = {"original": {"msg_id": "M1", "sending_bank": "888200000015"},
               "amount": "1.00", "content": "款项未到"}
    free = {"receiver": "888200000015", "content": "请核实"}
    return [
        ("debit", lambda b: debits_out.parse_debit(b, OWN), debits_out.meaning, debit,
         ["business_kind", "remittance_info"]),
        ("periodic", lambda b: periodic.parse(b, OWN), periodic.meaning, periodic_body,
         ["currency", "business_type", "business_kind", "remittance_info", "urgency",
          "when_closed"]),
        ("query", lambda b: q.parse_query(b, NOW), q.query_meaning, query,
         ["original", "amount", "query_type", "doubt_at", "operator"]),
        ("query about a message", lambda b: q.parse_query(b, NOW), q.query_meaning, subject,
         ["payment_id", "query_type"]),
        ("free text", q.parse_free_format, q.free_format_meaning, free,
         ["system", "operator"]),
        ("chase", q.parse_chase, None, {}, ["content", "operator"]),  # no key: no meaning
    ]


@pytest.mark.parametrize("endpoint", range(6))
def test_every_endpoint_reads_null_on_an_optional_field_as_left_out(endpoint: int) -> None:
    """Debits, periodic credits, queries, free text and chases: each optional field given
    null is the same request as the field left out, read and compared alike (POST
    /v1/debits once refused `"business_kind": null` with 422)."""
    name, parse, meaning, bare, optional = _endpoints()[endpoint]
    for field in optional:
        with_null = {**bare, field: None}
        assert parse(with_null) == parse(bare), (name, field)
        assert meaning is None or meaning(with_null) == meaning(bare), (name, field)


def test_a_null_in_a_queried_message_is_left_out_too() -> None:
    from gateway.queries import requests as q
    bare = {"original": {"msg_id": "M1", "sending_bank": "888200000015"},
            "amount": "1.00", "content": "款项未到"}
    nulls = {**bare, "original": {**bare["original"], "message_type": None,
                                  "tx_id": None, "business_type": None}}
    assert q.parse_query(nulls, NOW) == q.parse_query(bare, NOW)
    assert q.query_meaning(nulls) == q.query_meaning(bare)


def test_a_required_field_of_a_debit_given_null_is_missing() -> None:
    from gateway.beps import debits_out
    body = _endpoints()[0][3]
    with pytest.raises(ValidationFailed) as refused:
        debits_out.parse_debit({**body, "agreement": None}, OWN)
    assert [(p.code, p.path) for p in refused.value.problems] == [
        ("field_required", "/agreement")]
