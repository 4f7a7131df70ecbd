"""One rule for null in a transfer request: an optional field given null is the field left
out (its default applies, or none), for every optional field alike; a required field
given null is missing."""

from __future__ import annotations

import pytest
import requests

from gateway import intake
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
