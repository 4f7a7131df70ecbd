"""A transfer's payer as the payer's own bank checks it: the payer name must be the
account holder's (folded as an incoming payee name is), and the payer bank the branch
that keeps the account; for JSON transfers, batches and ready messages alike."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import requests

from tests.api_support import LiveGateway, ready_example

HOLDER = "示例一号贸易有限公司"
TX = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("intake-payer"), payer_name=HOLDER).start()
    yield g
    g.stop()


def body(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    out = {"payer_account": live.payer, "payer_name": HOLDER, "payer_bank": "999100000027",
           "payee_account": "6222000000000001", "payee_name": "对手客户",
           "payee_bank": "888200000023", "amount": "10.00", "urgency": "urgent"}
    out.update(changes)
    return out


def post(live: LiveGateway, key: str, data: dict[str, Any]) -> tuple[int, list[tuple]]:
    r = requests.post(f"{live.url}/v1/transfers", json=data, timeout=10,
                      headers={"Idempotency-Key": key})
    return r.status_code, [(e["code"], e["path"], e["value"], e["expected"])
                           for e in r.json().get("errors", [])]


@pytest.mark.parametrize("name, accepted", [
    (HOLDER, True),
    ("示例一号贸易有限公司 ", True),          # a trailing space
    ("示例一号贸易有限公司".replace("一", "一 "), True),  # spaces inside
    ("完全不同的公司", False),
    ("示例一号贸易有限", False),             # a part of the name
])
def test_the_payer_name_must_be_the_account_holder_s(live, name, accepted):
    """A payer name is the holder's name, width, case and spaces aside; any other is
    refused at /payer_name, the holder's name given as expected."""
    status, errors = post(live, "name-" + hashlib.sha256(name.encode()).hexdigest()[:40], body(live, payer_name=name))

    if accepted:
        assert (status, errors) == (201, [])
    else:
        assert status == 422
        assert [(c, p, v) for c, p, v, _ in errors] == [
            ("payer_name_differs_from_account_holder", "/payer_name", name)]
        assert HOLDER in errors[0][3]


def test_the_payer_bank_must_be_the_account_s_branch(live):
    """999100000035 is ours too, but the account is kept at 999100000027."""
    status, errors = post(live, "bank-35", body(live, payer_bank="999100000035"))

    assert status == 422
    assert [(c, p, v) for c, p, v, _ in errors] == [
        ("payer_bank_not_account_branch", "/payer_bank", "999100000035")]
    assert "999100000027" in errors[0][3]


def test_name_and_funds_are_told_together(live):
    status, errors = post(live, "name-and-funds",
                          body(live, payer_name="别人", amount="999999999999.00"))

    assert status == 422
    assert sorted(c for c, *_ in errors) == ["payer_funds_insufficient",
                                             "payer_name_differs_from_account_holder"]


def test_a_batch_item_with_another_name_is_refused_alone(live):
    """Its BEPS neighbour is taken; the item is refused by name, nothing held for it."""
    items = [body(live, amount="20.00", urgency="normal", idempotency_key="batch-ok"),
             body(live, amount="21.00", urgency="normal", payer_name="别人",
                  idempotency_key="batch-bad")]
    r = requests.post(f"{live.url}/v1/transfers/batch", json=items, timeout=10,
                      headers={"Idempotency-Key": "batch-names"})
    results = r.json()["results"]

    assert [x["status"] for x in results] == [201, 422]
    assert [(e["code"], e["path"]) for e in results[1]["errors"]] == [
        ("payer_name_differs_from_account_holder", "/1/payer_name")]


def post_message(live: LiveGateway, raw: bytes) -> tuple[int, list[tuple]]:
    r = requests.post(f"{live.url}/v1/messages", data=raw, timeout=10)
    return r.status_code, [(e["code"], e["path"], e["value"])
                           for e in r.json().get("errors", [])]


def test_a_ready_message_s_debtor_name_must_be_the_holder_s(live):
    status, errors = post_message(live, ready_example(
        "2026120790000201", (f"<Nm>{HOLDER}</Nm>".encode(), "<Nm>完全不同的公司</Nm>".encode())))

    assert status == 422
    assert errors == [("payer_name_differs_from_account_holder", f"{TX}/Dbtr/Nm",
                       "完全不同的公司")]


def test_a_ready_message_s_debtor_agent_must_be_the_account_s_branch(live):
    status, errors = post_message(live, ready_example(
        "2026120790000202", (b"<MmbId>999100000027</MmbId>\n          </ClrSysMmbId>\n"
                             b"          <Nm>",
                             b"<MmbId>999100000035</MmbId>\n          </ClrSysMmbId>\n"
                             b"          <Nm>")))

    assert status == 422
    assert ("payer_bank_not_account_branch", f"{TX}/DbtrAgt/FinInstnId/ClrSysMmbId/MmbId",
            "999100000035") in errors


SPACED = ["示例一号  贸易有限公司", " 示例一号贸易有限公司 ", "示例一号贸易有限公司\u3000"]


def stored_payer_name(live: LiveGateway, payment_id: str) -> str:
    [(name,)] = live.query("SELECT payer_name FROM payments WHERE id = ?", (payment_id,))
    return name


@pytest.mark.parametrize("typed", SPACED)
@pytest.mark.parametrize("amount, urgency, channel", [
    ("60000.00", "urgent", "hvps"), ("30.00", "normal", "beps")])
def test_a_payer_name_typed_with_other_spaces_goes_out_as_the_holder_s(
        live, typed, amount, urgency, channel):
    """The name matched the holder's with spaces aside: the payment (the row its message
    is built from) and its answer carry the holder's name as the books write it."""
    key = f"spaced-{channel}-" + hashlib.sha256(typed.encode()).hexdigest()[:20]
    r = requests.post(f"{live.url}/v1/transfers", timeout=10, headers={"Idempotency-Key": key},
                      json=body(live, payer_name=typed, amount=amount, urgency=urgency))
    answer = r.json()

    assert (r.status_code, answer["channel"]) == (201, channel)
    assert answer["payer"]["name"] == HOLDER
    assert stored_payer_name(live, answer["id"]) == HOLDER


def test_batch_items_typed_with_other_spaces_go_out_under_the_holder_s_name(live):
    """A batch's BEPS items (taken together) and its HVPS items (taken one by one) alike."""
    items = [body(live, amount="31.00", urgency="normal", payer_name=SPACED[0]),
             body(live, amount="60001.00", urgency="urgent", payer_name=SPACED[1]),
             body(live, amount="32.00", urgency="normal", payer_name=HOLDER)]
    r = requests.post(f"{live.url}/v1/transfers/batch", json=items, timeout=10,
                      headers={"Idempotency-Key": "batch-spaced-names"})
    results = r.json()["results"]
    taken = [x["transfer"] for x in results]

    assert [x["status"] for x in results] == [201, 201, 201]
    assert [t["channel"] for t in taken] == ["beps", "hvps", "beps"]
    assert [t["payer"]["name"] for t in taken] == [HOLDER] * 3
    assert [stored_payer_name(live, t["id"]) for t in taken] == [HOLDER] * 3


def test_a_ready_message_s_debtor_name_must_be_written_as_the_holder_s(live):
    """A ready message is never rewritten: a name that is the holder's only with spaces
    aside is refused at Dbtr/Nm, the holder's name given as expected, not sent as typed."""
    r = requests.post(f"{live.url}/v1/messages", timeout=10, data=ready_example(
        "2026120790000203", (f"<Nm>{HOLDER}</Nm>".encode(), f"<Nm>{SPACED[0]}</Nm>".encode())))
    errors = r.json()["errors"]

    assert r.status_code == 422
    assert [(e["code"], e["path"], e["value"]) for e in errors] == [
        ("payer_name_not_written_as_held", f"{TX}/Dbtr/Nm", SPACED[0])]
    assert HOLDER in errors[0]["expected"]


def test_a_ready_message_refused_for_its_time_also_names_its_debtor_name(live):
    """Every problem of a refused message is told: the name written unlike the holder's
    beside the creation time."""
    status, errors = post_message(live, ready_example(
        "2026120790000204", (f"<Nm>{HOLDER}</Nm>".encode(), f"<Nm>{SPACED[0]}</Nm>".encode()),
        (b"2026-12-07T09:15:00", b"2024-12-07T09:15:00")))

    assert status == 422
    assert sorted(c for c, *_ in errors) == ["creation_time_too_far_from_now",
                                             "payer_name_not_written_as_held"]
