"""A field the request leaves out takes its default (business kind 02102, type A100, ...);
a refusal of that default says the default was applied and which, rather than telling
the client of a value it never wrote."""

from __future__ import annotations

import json

import pytest
import requests

from tests.api_support import LiveGateway


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("intake-defaults")).start()
    yield g
    g.stop()


def _body(live, **changes) -> dict:
    out = {"payer_account": live.payer, "payer_name": "示例客户", "payer_bank": "999100000027",
           "payee_account": "6222000000000001", "payee_name": "对手客户",
           "payee_bank": "888200000023", "amount": "10.00", "business_type": "A201"}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def _kind_errors(errors: list[dict]) -> list[dict]:
    return [e for e in errors if e["path"].endswith("/business_kind")]


@pytest.mark.parametrize("kind, value, default_told", [(None, None, True),
                                                       ("02102", "02102", False)])
def test_a_refused_kind_is_told_as_sent_or_as_the_default(live, kind, value, default_told):
    """With no business_kind the refusal says the default 02102 was applied (its value
    null: nothing was sent); with 02102 written, it is the client's own value."""
    r = requests.post(f"{live.url}/v1/transfers", json=_body(live, business_kind=kind),
                      headers={"Idempotency-Key": f"kind-{kind}"}, timeout=10)
    [error] = _kind_errors(r.json()["errors"])

    assert r.status_code == 422
    assert (error["code"], error["path"], error["value"]) == (
        "business_kind_not_allowed_for_type", "/business_kind", value)
    assert "03401" in error["expected"]
    assert ("the default 02102 was applied" in error["message"]) is default_told


def test_a_batch_item_without_a_kind_is_told_the_default_at_its_own_path(live):
    items = [_body(live, idempotency_key="batch-kind-0", business_type=None),
             _body(live, idempotency_key="batch-kind-1")]
    r = requests.post(f"{live.url}/v1/transfers/batch", data=json.dumps(items), timeout=10,
                      headers={"Content-Type": "application/json"})
    results = r.json()["results"]
    [error] = _kind_errors(results[1]["errors"])

    assert [x["status"] for x in results] == [201, 422]
    assert (error["path"], error["value"]) == ("/1/business_kind", None)
    assert "the default 02102 was applied" in error["message"]
