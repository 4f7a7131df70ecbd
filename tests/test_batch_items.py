"""A batch's items: a refusal names the item's own fields (its own idempotency_key too),
and the ids follow the order docs/beps.md gives."""

from __future__ import annotations

import json
import re

import pytest

from gateway.errors import Problem
from tests.api_support import CLIENT, SECRET, LiveGateway, post_signed


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("batch-items"), api_keys={CLIENT: SECRET}).start()
    yield g
    g.stop()


def _item(live, amount: str, urgency: str, **extra) -> dict:
    return {"payer_account": live.payer, "payer_name": "示例客户",
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手", "payee_bank": "888200000023", "amount": amount,
            "urgency": urgency, **extra}


def _batch(live, items: list, key: str) -> dict:
    r = post_signed(live.url, "/v1/transfers/batch", json.dumps(items).encode(),
                    **{"Idempotency-Key": key})
    assert r.status_code == 200, r.text
    return r.json()


def test_an_item_key_reused_with_another_body_is_named_in_the_item(live):
    items = [_item(live, "10.00", "normal", idempotency_key="own-a"),
             _item(live, "11.00", "normal"),
             _item(live, "12.00", "normal", idempotency_key="own-a")]
    third = _batch(live, items, "batch-own-keys")["results"][2]

    assert third["status"] == 409
    assert [(e["code"], e["path"]) for e in third["errors"]] == [
        ("idempotency_key_reused_with_other_body", "/2/idempotency_key"),
        ("idempotency_key_reused_with_other_body", "/2/amount")]
    assert (third["errors"][1]["value"], third["errors"][1]["expected"]) == \
        ("12.00", "10.00, as in the first request with this key")


def test_an_item_key_taken_by_an_earlier_request_is_named_in_the_item(live):
    _batch(live, [_item(live, "13.00", "normal", idempotency_key="own-b")], "batch-b1")
    again = _batch(live, [_item(live, "14.00", "normal", idempotency_key="own-b")],
                   "batch-b2")["results"][0]

    assert [(e["code"], e["path"]) for e in again["errors"]] == [
        ("idempotency_key_reused_with_other_body", "/0/idempotency_key"),
        ("idempotency_key_reused_with_other_body", "/0/amount")]
    assert "differs in amount" in again["errors"][0]["message"]


def test_ids_follow_the_order_docs_beps_gives(live):
    """docs/beps.md: the BEPS items' ids come first, a block in the batch's order, then
    the HVPS and internal items' as each is taken, in the batch's order."""
    items = [_item(live, "20.00", "normal"), _item(live, "60000.00", "urgent"),
             _item(live, "21.00", "normal"), _item(live, "60001.00", "urgent")]
    results = _batch(live, items, "batch-mixed")["results"]
    channels = [r["transfer"]["channel"] for r in results]
    ids = [r["transfer"]["id"] for r in results]

    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert channels == ["beps", "hvps", "beps", "hvps"]
    assert sorted(ids) == [ids[0], ids[2], ids[1], ids[3]], ids


def test_a_refused_item_lists_its_account_and_funds_as_a_single_transfer_does(live):
    """An item refused for its fields or route also names its payer's account and funds
    (account_not_found, payer_funds_insufficient), as the same body sent alone does:
    every problem together, at the item's paths."""
    from ledger.testing import customer_account
    items = [_item(live, "200000000.00", "urgent", payee_bank="888299999999"),
             _item(live, "10.00", "soon", payer_account=customer_account(2, "corporate")),
             _item(live, "200000000.00", "normal", remittance_info=7)]
    results = _batch(live, items, "batch-funds")["results"]
    alone = [post_signed(live.url, "/v1/transfers", json.dumps(item).encode(),
                         **{"Idempotency-Key": f"alone-funds-{n}"}).json()
             for n, item in enumerate(items)]

    codes = [[e["code"] for e in r["errors"]] for r in results]
    assert "payer_funds_insufficient" in codes[0] and "account_not_found" in codes[1]
    assert "payer_funds_insufficient" in codes[2]
    assert codes == [[e["code"] for e in a["errors"]] for a in alone]
    assert all(e["path"].startswith(f"/{n}/") for n, r in enumerate(results)
               for e in r["errors"])


def _post_batch(live, raw: bytes, **headers) -> tuple[int, dict]:
    r = post_signed(live.url, "/v1/transfers/batch", raw, **headers)
    return r.status_code, r.json()


@pytest.mark.parametrize("blank", ["  ", "", "\u3000"])
def test_a_blank_item_key_is_refused_at_the_item_as_a_blank_header_is(live, blank):
    """An item's own key of only spaces is no key: refused (400 idempotency_key_required)
    at its /i/idempotency_key, as a blank Idempotency-Key header is; its neighbour is taken."""
    items = [_item(live, "15.00", "normal", idempotency_key=f"own-blank-{len(blank)}"),
             _item(live, "16.00", "normal", idempotency_key=blank)]
    results = _batch(live, items, f"batch-blank-{ord(blank[0]) if blank else 0}")["results"]

    assert [r["status"] for r in results] == [201, 400]
    assert [(e["code"], e["path"], e["value"]) for e in results[1]["errors"]] == [
        ("idempotency_key_required", "/1/idempotency_key", blank)]


def test_an_item_without_any_key_is_refused_at_its_own_key(live):
    """No batch header and no key of its own: each item is told at /i/idempotency_key,
    where its key is missing, not at a header the batch need not carry."""
    items = [_item(live, "17.00", "normal", idempotency_key="own-keyed"),
             _item(live, "18.00", "normal"), _item(live, "19.00", "normal")]
    status, answer = _post_batch(live, json.dumps(items).encode())
    results = answer["results"]

    assert status == 200
    assert [r["status"] for r in results] == [201, 400, 400]
    assert [[(e["code"], e["path"]) for e in r["errors"]] for r in results[1:]] == [
        [("idempotency_key_required", "/1/idempotency_key")],
        [("idempotency_key_required", "/2/idempotency_key")]]


def test_a_member_repeated_inside_an_item_is_refused_at_the_item_s_field(live):
    """The batch cannot be read as one meaning: refused whole (400), the repeated member
    named with its item's index."""
    first = json.dumps(_item(live, "20.00", "normal"))
    second = json.dumps(_item(live, "21.00", "normal"))[:-1] + ', "amount": "22.00"}'
    status, answer = _post_batch(live, f"[{first}, {second}]".encode(),
                                 **{"Idempotency-Key": "batch-repeated-member"})

    assert status == 400
    assert [(e["code"], e["path"]) for e in answer["errors"]] == [
        ("json_key_duplicate", "/1/amount")]


# One fault a field, each told with a message naming where it is (`at /amount: ...`);
# the first two have messages written out in full, the others built from their parts.
PATH_FAULTS = [
    ("currency", {"currency": "USD"}, "currency_must_be_cny"),
    ("amount", {"amount": "0010.00"}, "amount_must_not_have_leading_zeros"),
    ("amount", {"amount": "-1"}, "amount_must_be_positive"),
    ("urgency", {"urgency": "soon"}, "urgency_unknown"),
    ("payee_bank", {"payee_bank": "12"}, "bank_code_must_be_12_ascii_digits"),
    ("payer_account", {"payer_account": "6222 0000"}, "account_malformed"),
    ("remittance_info", {"remittance_info": 7}, "remittance_info_malformed"),
    ("when_closed", {"when_closed": "later"}, "when_closed_unknown"),
    ("purpose", {"purpose": "rent"}, "field_unknown"),
]


@pytest.mark.parametrize("field, fault, code", PATH_FAULTS,
                         ids=[case[2] for case in PATH_FAULTS])
def test_an_item_s_message_names_the_path_its_error_gives(live, field, fault, code):
    """Every item's problem is at /i/field, and its message names that very path, never
    the field's path in a transfer sent alone (`at /currency` for item 4's currency)."""
    items = [dict(_item(live, "10.00", "normal"), **fault) for _ in range(5)]
    results = _batch(live, items, f"batch-paths-{code}-{field}")["results"]

    for result in results:
        (error,) = [e for e in result["errors"] if e["code"] == code]
        assert error["path"] == f"/{result['index']}/{field}"
        named = re.findall(r"(?<![\w/])/[\w/]+", error["message"])
        assert named and set(named) == {error["path"]}, error["message"]


@pytest.mark.parametrize("old, new, message, moved", [
    ("/currency", "/4/currency", "the currency must be CNY at /currency: got 'USD'",
     "the currency must be CNY at /4/currency: got 'USD'"),
    ("/", "/4", "body must be an object at /: got 1 / 2",
     "body must be an object at /4: got 1 / 2"),
    ("/amount", "/4/amount", "at /amount_fen and at /amount, amount/x",
     "at /amount_fen and at /4/amount, amount/x"),
    ("/amount", "/4/amount", "", "a rule at /4/amount"),
])
def test_a_problem_moved_to_another_path_names_it_in_its_message(old, new, message, moved):
    """Only the old path where the message names it (`at PATH`) changes: a longer path
    beginning alike, or a slash in other words, stay as they are; a message left to be
    built from the parts is built at the new path."""
    problem = Problem("a_rule", old, None, "", message).at(new)

    assert (problem.path, problem.to_dict()["message"]) == (new, moved)
