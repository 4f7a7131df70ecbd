"""With several core-system clients (`api_keys`), a ready hvps.111's MsgId is the
participant's whatever client sends it: another client's message under a taken MsgId is
refused (409), and no refusal shows one client the payment of another."""

from __future__ import annotations

from importlib import resources

import pytest
import requests

from tests.api_support import CLIENT, OTHER, OTHER_SECRET, SECRET, post_signed, two_clients

EXAMPLE = "hvps.111_urgent-goods-payment.xml"
MSG_ID, E2E = b"<MsgId>2026120790000001</MsgId>", b"99910000002720261207900000000001"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    # The example message's payer name is the account's holder.
    yield from two_clients(tmp_path_factory, "ready-clients", "示例一号贸易有限公司")


def message(msg_id: str, end_to_end: str) -> bytes:
    raw = resources.files("gateway").joinpath("examples", EXAMPLE).read_bytes()
    assert MSG_ID in raw and E2E in raw
    return raw.replace(MSG_ID, f"<MsgId>{msg_id}</MsgId>".encode()).replace(
        E2E, end_to_end.encode())


def post(live, raw: bytes, client: str = CLIENT, secret: str = SECRET) -> requests.Response:
    return post_signed(live.url, "/v1/messages", raw, client, secret,
                       **{"Content-Type": "application/xml"})


def outgoing(live) -> int:
    return live.query("SELECT COUNT(*) FROM payments WHERE direction = 'out'")[0][0]


def test_another_client_cannot_take_a_msg_id_already_taken(live):
    first = post(live, message("2026120790000201", "99910000002720261207900000000201"))
    before = outgoing(live)
    other = post(live, message("2026120790000201", "99910000002720261207900000000202"),
                 OTHER, OTHER_SECRET)

    assert first.status_code == 201
    assert other.status_code == 409, other.text
    [error] = other.json()["errors"]
    assert error["code"] == "idempotency_key_reused_with_other_body"
    assert error["path"].endswith("/GrpHdr/MsgId")
    assert first.json()["id"] not in other.text
    assert outgoing(live) == before


def test_another_client_sending_the_same_message_sees_no_payment_of_the_first(live):
    raw = message("2026120790000203", "99910000002720261207900000000203")
    first = post(live, raw)
    other = post(live, raw, OTHER, OTHER_SECRET)

    assert first.status_code == 201
    assert other.status_code == 409, other.text
    [error] = other.json()["errors"]
    assert error["path"].endswith("/GrpHdr/MsgId")
    assert first.json()["id"] not in other.text and "(accepted)" not in other.text


def test_an_end_to_end_id_in_use_by_another_client_is_refused_without_its_payment(live):
    first = post(live, message("2026120790000204", "99910000002720261207900000000204"))
    other = post(live, message("2026120790000205", "99910000002720261207900000000204"),
                 OTHER, OTHER_SECRET)
    own = post(live, message("2026120790000206", "99910000002720261207900000000204"))

    assert first.status_code == 201
    assert other.status_code == 409, other.text
    [error] = other.json()["errors"]
    assert error["code"] == "end_to_end_id_in_use"
    assert first.json()["id"] not in other.text
    assert own.status_code == 409 and first.json()["id"] in own.text
