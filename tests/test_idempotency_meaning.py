"""A transfer sent again under its idempotency key is compared by what it asks for, not
by its text: the same payment written another way (the amount as 100.0 for 100.00, a
default spelt out, a remittance line tagged or not, the payer's name spaced otherwise)
gets its stored answer, and only another payment is a 409."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from gateway import intake, payments
from tests.api_support import LiveGateway

BASE = {"payer_account": "20000000001410300000013", "payer_name": "示例客户",
        "payer_bank": "999100000027", "payee_account": "6222000000000001",
        "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "100.00",
        "remittance_info": "货款"}

# (changes to BASE) that ask for the same payment
SAME = [
    {"amount": "100.0"},
    {"amount": "100"},
    {"currency": "CNY", "business_type": "A100", "business_kind": "02102",
     "urgency": "normal", "when_closed": None},
    {"remittance_info": ["货款"]},
    {"remittance_info": "/H01/货款"},
    {"payer_name": " 示例 客户\u3000"},
    {"payer_name": "示例客户", "amount": "100.0", "urgency": "normal"},
]
# (changes to BASE) that ask for another payment, or are refused for their own fields
OTHER = [
    {"amount": "100.01"},
    {"amount": "1.001"},
    {"urgency": "urgent"},
    {"business_kind": "02101"},
    {"remittance_info": "/H02/货款"},
    {"remittance_info": None},
    {"payee_name": "对手 客户"},
    {"payer_name": "示例\t客户"},
    {"currency": "cny"},
]

JSON = "application/json"  # every JSON body is declared as such (415 otherwise)


def _with(changes: dict[str, Any]) -> dict[str, Any]:
    return {**BASE, **changes}


@pytest.mark.parametrize("changes", SAME)
def test_spellings_of_one_transfer_have_one_hash(changes):
    assert intake.transfer_sha256(_with(changes)) == intake.transfer_sha256(BASE)


@pytest.mark.parametrize("changes", OTHER)
def test_another_transfer_has_another_hash(changes):
    assert intake.transfer_sha256(_with(changes)) != intake.transfer_sha256(BASE)


@pytest.mark.parametrize("changes", [{}, *SAME, *OTHER, {"when_closed": "queue"},
                                     {"currency": None}, {"when_closed": None}])
def test_fields_left_at_their_default_are_dropped_and_only_those(changes):
    body = _with(changes)
    kept = {name: value for name, value in body.items()
            if not (name in intake.DEFAULTS and value == intake.DEFAULTS[name]
                    or name == "when_closed" and value is None)}

    assert intake.without(body, intake.DEFAULTS, ("when_closed",)) == kept
    assert intake.without(body, intake.DEFAULTS, ("when_closed",)) is not body


def test_a_batch_s_hashes_are_its_items_and_its_list_s():
    """A batch's items hashed together with its list (each meaning made once) hash as
    each alone does, and the list as the hash of its items' meanings, the one stored
    under a batch key before: a batch sent again after an upgrade is the same batch."""
    items = [_with(changes) for changes in SAME + OTHER] + [
        "not an object", {"idempotency_key": "own", **BASE},
        {**BASE, "payee_name": "a\ud800b"}]
    for batch in (items, items[:-1], items[:1]):
        hashes, whole = intake.transfer_hashes(batch)

        assert hashes == [intake.transfer_sha256(item) for item in batch]
        assert whole == intake.transfer_sha256([intake.transfer_meaning(item)
                                                for item in batch])
    assert len(set(intake.transfer_hashes(items)[0])) == len(OTHER) + 4


def test_a_hash_stored_before_is_compared_by_the_request_s_text():
    """A key stored when hashes were of the request's text still answers that text."""
    legacy = intake.body_sha256(BASE)
    body = _with({"amount": "100.0"})

    assert intake.same_transfer(legacy, intake.transfer_sha256(BASE), BASE)
    assert not intake.same_transfer(legacy, intake.transfer_sha256(body), body)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("idempotency-meaning")).start()
    yield g
    g.stop()


def _post(live: LiveGateway, key: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{live.url}/v1/transfers", timeout=10,
                         data=json.dumps({**body, "payer_account": live.payer}),
                         headers={"Idempotency-Key": key, "Content-Type": JSON})


@pytest.mark.parametrize("n, changes", list(enumerate(SAME)))
def test_a_retry_written_another_way_gets_the_stored_answer(live, n, changes):
    first = _post(live, f"same-{n}", BASE)
    again = _post(live, f"same-{n}", _with(changes))

    assert first.status_code == 201
    assert (again.status_code, again.json()) == (201, first.json())


def test_a_retry_of_another_amount_is_still_a_conflict(live):
    first = _post(live, "other-amount", BASE)
    again = _post(live, "other-amount", _with({"amount": "100.01"}))

    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "idempotency_key_reused_with_other_body"


def test_a_key_stored_before_meaning_was_compared_answers_its_own_text(live):
    """A key whose hash was stored as the text's (before this release) still gets its
    answer for the same text."""
    first = _post(live, "legacy-key", _with({"amount": "100.0"}))
    text = intake.body_sha256({**_with({"amount": "100.0"}), "payer_account": live.payer})
    live.loop.run(live.gw.store.run(lambda tx: tx.execute(
        "UPDATE idempotency SET body_sha256 = ? WHERE key = ?", (text, "legacy-key"))))
    again = _post(live, "legacy-key", _with({"amount": "100.0"}))

    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])


def _batch(live: LiveGateway, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    r = requests.post(f"{live.url}/v1/transfers/batch", timeout=10,
                      data=json.dumps([{**x, "payer_account": live.payer} for x in items]),
                      headers={"Idempotency-Key": key, "Content-Type": JSON})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_batch_sent_again_written_another_way_is_the_same_batch(live):
    """Items keyed by the batch key: the list written another way is the same list, not
    batch_key_reused_with_other_items, and every item gets its first answer."""
    first = _batch(live, [BASE, _with({"amount": "7.50"})], "batch-meaning")
    again = _batch(live, [_with({"amount": "100"}), _with({"amount": "7.5"})], "batch-meaning")

    assert [r["status"] for r in first["results"]] == [201, 201]
    assert again == first


def test_an_item_key_repeated_in_one_batch_written_another_way_is_one_payment(live):
    items = [{**BASE, "idempotency_key": "item-meaning"},
             {**_with({"amount": "100.0"}), "idempotency_key": "item-meaning"}]
    results = _batch(live, items, "batch-item-meaning")["results"]

    assert [r["status"] for r in results] == [201, 201]
    assert results[0]["transfer"]["id"] == results[1]["transfer"]["id"]


# (changes to BASE in the retry) -> the fields its 409 names, and the first request's
# value each one expects
NAMED = [
    ({"amount": "100.01"}, {"/amount": "100.00"}),
    ({"urgency": "urgent"}, {"/urgency": "normal"}),
    ({"remittance_info": None}, {"/remittance_info": '["/H01/货款"]'}),
    ({"payee_name": "对手 客户"}, {"/payee_name": "对手客户"}),
    ({"amount": "99", "business_kind": "02101"},
     {"/amount": "100.00", "/business_kind": "02102"}),
]


@pytest.mark.parametrize("n, changes, named", [(n, c, d) for n, (c, d) in enumerate(NAMED)])
def test_a_retry_asking_for_another_payment_names_the_fields_that_differ(
        live, n, changes, named):
    """As a ready message's refusal names the fields that differ from the first message
    under its MsgId: the key first, then each differing field with the value sent and
    the first request's as expected."""
    first = _post(live, f"named-{n}", BASE)
    again = _post(live, f"named-{n}", _with(changes))
    errors = again.json()["errors"]

    assert (first.status_code, again.status_code) == (201, 409)
    assert {e["code"] for e in errors} == {"idempotency_key_reused_with_other_body"}
    assert errors[0]["path"] == "Idempotency-Key" and first.json()["id"] in \
        errors[0]["message"]
    assert {e["path"]: e["expected"].split(", as in")[0] for e in errors[1:]} == named
    assert all(e["value"] == _with(changes)[e["path"][1:]] for e in errors[1:])


def test_a_retry_differing_only_where_the_payment_keeps_nothing_is_refused_by_key(live):
    """`when_closed` is not kept on the payment: the refusal names the key alone."""
    first = _post(live, "named-closed", BASE)
    again = _post(live, "named-closed", _with({"when_closed": "refuse"}))
    errors = again.json()["errors"]

    assert (first.status_code, again.status_code) == (201, 409)
    assert [e["path"] for e in errors] == ["Idempotency-Key"]


def test_the_urgency_compared_is_the_one_asked_before_an_operator_changed_it(live):
    """An operator gave the payment another priority since: a retry with the first
    urgency and another amount is refused for the amount only."""
    first = _post(live, "named-priority", _with({"urgency": "urgent"}))
    pid = first.json()["id"]

    def changed(tx: Any) -> None:
        payment = payments.get(tx, pid)
        tx.execute("UPDATE payments SET priority = 1, urgency = 'extra_urgent' WHERE id = ?",
                   (pid,))
        payments.transition(tx, payment, payment["state"], "ops_priority_changed",
                            live.gw.clock.now(), priority_from=2, priority_to=1)
    live.loop.run(live.gw.store.run(changed))
    again = _post(live, "named-priority", _with({"urgency": "urgent", "amount": "100.02"}))

    assert [e["path"] for e in again.json()["errors"]] == ["Idempotency-Key", "/amount"]


def test_a_value_of_another_json_type_is_shown_in_json_s_spelling(live):
    """`"amount": true` is told as JSON writes it (true), not as Python does (True)."""
    refused = _post(live, "amount-true", _with({"amount": True}))
    problem = next(e for e in refused.json()["errors"] if e["path"] == "/amount")

    assert refused.status_code == 422
    assert "true" in problem["message"] and "True" not in problem["message"]
