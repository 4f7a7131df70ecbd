"""POST /v1/queries refusals name the request's own fields, with the values as the client
wrote them: an unknown payment at /payment_id, an amount that is not the payment's in
yuan as it was sent."""

from __future__ import annotations

import pytest
import requests

from tests.api_support import LiveGateway


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("query-refusals")).start()
    yield g
    g.stop()


def post(live, path: str, body: dict, key: str) -> requests.Response:
    return requests.post(f"{live.url}{path}", json=body, timeout=10,
                         headers={"Idempotency-Key": key})


def test_an_unknown_payment_is_named_at_payment_id(live):
    r = post(live, "/v1/queries", {"payment_id": "P2026120799999999", "content": "请查询"},
             "q-unknown")

    assert r.status_code == 404
    assert [(e["code"], e["path"], e["value"]) for e in r.json()["errors"]] == [
        ("payment_not_found", "/payment_id", "P2026120799999999")]


def test_an_amount_that_differs_is_shown_as_written(live):
    sent = post(live, "/v1/transfers", {
        "payer_account": live.payer, "payer_name": "示例客户", "payer_bank": "999100000027",
        "payee_account": "6222000000000001", "payee_name": "对手客户",
        "payee_bank": "888200000023", "amount": "1500.00", "urgency": "urgent"}, "q-pay")
    assert sent.status_code == 201, sent.text

    r = post(live, "/v1/queries", {"payment_id": sent.json()["id"], "amount": "1500.10",
                                   "content": "请查询"}, "q-amount")

    assert r.status_code == 422
    [error] = r.json()["errors"]
    assert (error["code"], error["path"], error["value"]) == (
        "amount_differs_from_payment", "/amount", "1500.10")
    assert "1500.00" in error["expected"] and "fen" not in error["expected"]
