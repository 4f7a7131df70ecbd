"""A request sent again under a key already answered gets that first answer, even when
the transfer would be refused now (HVPS closed since, with when_closed=refuse): the
payment was taken, and a refusal would tell the core system it was not."""

from __future__ import annotations

import json

import pytest

from tests.api_support import LiveGateway, post_signed

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(tmp_path):
    g = LiveGateway(tmp_path).start()
    yield g
    g.stop()


def test_a_transfer_sent_again_after_hvps_closed_is_answered_as_taken(live):
    body = json.dumps({
        "payer_account": live.payer, "payer_name": "示例客户", "payer_bank": "999100000027",
        "payee_account": "6222000000000001", "payee_name": "B", "payee_bank": "888200000023",
        "amount": "80000000.00", "currency": "CNY", "urgency": "urgent",
        "when_closed": "refuse"}).encode()
    first = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": "k1"})
    live.gw.hvps_status = "30"
    again = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": "k1"})

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json().get("id")) == (201, first.json()["id"]), again.text



def test_a_batch_sent_again_after_hvps_closed_answers_its_item_as_taken(live):
    items = [{"payer_account": live.payer, "payer_name": "示例客户", "payer_bank": "999100000027",
              "payee_account": "6222000000000001", "payee_name": "B",
              "payee_bank": "888200000023", "amount": "80000000.00", "urgency": "urgent",
              "when_closed": "refuse"}]
    body = json.dumps(items).encode()
    first = post_signed(live.url, "/v1/transfers/batch", body, **{"Idempotency-Key": "b1"})
    live.gw.hvps_status = "30"
    again = post_signed(live.url, "/v1/transfers/batch", body, **{"Idempotency-Key": "b1"})

    taken = first.json()["results"][0]
    assert taken["status"] == 201, first.text
    assert again.json()["results"][0] == taken, again.text
