"""Every endpoint that takes an Idempotency-Key compares a retry by what it asks for, as
POST /v1/transfers does: debits, periodic credits, queries and free text sent again
written another way (an amount as 10.0 for 10.00, a default spelt out, a null for a
field left out, a time with its offset) get the stored answer; another request under
the same key is a 409, whether or not its own body is valid."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
import requests
import yaml

from gateway import intake
from tests.api_support import LiveGateway

BRANCH, PEER_BANK, PEER_BRANCH = "999100000027", "888200000015", "888200000023"
SPEC = yaml.safe_load(resources.files("gateway").joinpath("openapi.yaml").read_text())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("idempotency-endpoints")).start()
    yield g
    g.stop()


def post(live: LiveGateway, path: str, key: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{live.url}{path}", data=json.dumps(body), timeout=10,
                         headers={"Idempotency-Key": key,
                                  "Content-Type": "application/json"})


def debit(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    body = {"creditor_account": live.payer, "creditor_name": live.payer_name,
            "creditor_bank": BRANCH, "debtor_account": "6222000000000001",
            "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH, "amount": "10.00",
            "agreement": "AG-1"}
    return {**body, **changes}


def periodic(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    body = {"payer_account": live.payer, "payer_name": live.payer_name,
            "payer_bank": BRANCH, "payee_account": "6222000000000002",
            "payee_name": "对手客户", "payee_bank": PEER_BRANCH, "amount": "20.00",
            "agreement": "AG-P", "remittance_info": "工资"}
    return {**body, **changes}


def free_text(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    return {"receiver": PEER_BANK, "content": "请核实汇款", **changes}


@pytest.fixture(scope="module")
def payment(live) -> str:
    """One of our payments, for the queries to be about."""
    r = post(live, "/v1/transfers", "query-subject", {
        "payer_account": live.payer, "payer_name": live.payer_name, "payer_bank": BRANCH,
        "payee_account": "6222000000000003", "payee_name": "对手客户",
        "payee_bank": PEER_BRANCH, "amount": "30.00", "urgency": "urgent"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def query(live: LiveGateway, payment: str, **changes: Any) -> dict[str, Any]:
    return {"payment_id": payment, "content": "款项未到", **changes}


# (endpoint, body maker, the first request's changes, a retry's changes: the same request)
SAME = [
    ("/v1/debits", debit, {}, {"amount": "10.0"}),
    ("/v1/debits", debit, {}, {"amount": "10", "business_kind": "01400",
                               "remittance_info": None}),
    ("/v1/periodic-credits", periodic, {}, {"amount": "20"}),
    ("/v1/periodic-credits", periodic, {}, {"currency": "CNY", "business_type": "E100",
                                            "business_kind": "01200",
                                            "remittance_info": "/H01/工资"}),
    ("/v1/periodic-credits", periodic, {}, {"remittance_info": ["工资"]}),
    # The payer name goes out as the holder's, so its spelling does not count.
    ("/v1/periodic-credits", periodic, {}, {"payer_name": " 示例 客户"}),
    ("/v1/free-format", free_text, {}, {"system": "HVPS", "operator": None}),
    ("/v1/queries", query, {"doubt_at": "2026-12-07T08:30"},
     {"doubt_at": "2026-12-07T08:30:00+08:00", "query_type": "QT00", "amount": None,
      "operator": None}),
    ("/v1/queries", query, {"amount": "30.00"}, {"amount": "30"}),
    ("/v1/queries", query, {"doubt_at": "2026-12-07T08:45"},
     {"doubt_at": "2026-12-07T00:45:00Z"}),
]

# (endpoint, body maker, a retry's changes: another request under the same key)
OTHER = [
    ("/v1/debits", debit, {"amount": "10.01"}),
    ("/v1/debits", debit, {"business_kind": "01401"}),
    ("/v1/debits", debit, {"debtor_name": "对手 客户"}),
    ("/v1/periodic-credits", periodic, {"amount": "20.01"}),
    ("/v1/periodic-credits", periodic, {"remittance_info": "/H02/工资"}),
    ("/v1/free-format", free_text, {"content": "请核实汇款 "}),
    ("/v1/free-format", free_text, {"system": "BEPS"}),
    ("/v1/queries", query, {"query_type": "QT01"}),
    ("/v1/queries", query, {"content": "款项未到。"}),
    ("/v1/queries", query, {"doubt_at": "2026-12-07T08:00"}),
]


def _body(live: LiveGateway, make: Any, payment: str, **changes: Any) -> dict[str, Any]:
    return make(live, payment, **changes) if make is query else make(live, **changes)


@pytest.mark.parametrize("n, case", list(enumerate(SAME)))
def test_a_retry_written_another_way_gets_the_stored_answer(live, payment, n, case):
    path, make, first_changes, changes = case
    key = f"same-{n}"
    first = post(live, path, key, _body(live, make, payment, **first_changes))
    again = post(live, path, key, _body(live, make, payment, **{**first_changes, **changes}))

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (201, first.json())


@pytest.mark.parametrize("n, case", list(enumerate(OTHER)))
def test_another_request_under_the_key_is_a_conflict(live, payment, n, case):
    path, make, changes = case
    key = f"other-{n}"
    first = post(live, path, key, _body(live, make, payment))
    again = post(live, path, key, _body(live, make, payment, **changes))

    assert first.status_code == 201, first.text
    assert again.status_code == 409, again.text
    assert again.json()["errors"][0]["code"] == "idempotency_key_reused_with_other_body"


@pytest.mark.parametrize("path, make, table", [
    ("/v1/debits", debit, "idempotency"),
    ("/v1/periodic-credits", periodic, "idempotency"),
    ("/v1/free-format", free_text, "query_requests"),
])
def test_a_key_stored_as_text_answers_its_own_text(live, path, make, table):
    """A key whose hash was stored as the text's (before retries were compared by
    meaning) still gets its answer for the same text, and a 409 for another spelling."""
    body = make(live, **({"amount": "5.0"} if make is not free_text else {}))
    first = post(live, path, f"legacy-{path}", body)
    stored = f"free_format:legacy-{path}" if table == "query_requests" else f"legacy-{path}"
    live.loop.run(live.gw.store.run(lambda tx: tx.execute(
        f"UPDATE {table} SET body_sha256 = ? WHERE key = ?",
        (intake.body_sha256(body), stored))))
    again = post(live, path, f"legacy-{path}", body)
    spelt = post(live, path, f"legacy-{path}", {**body, "operator": None}
                 if make is free_text else {**body, "amount": "5.00"})

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (201, first.json())
    assert spelt.status_code == 409


def transfer(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    return {"payer_account": live.payer, "payer_name": live.payer_name, "payer_bank": BRANCH,
            "payee_account": "6222000000000004", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH, "amount": "40.00", "urgency": "urgent", **changes}


@pytest.mark.parametrize("path, make", [
    ("/v1/transfers", transfer), ("/v1/debits", debit), ("/v1/periodic-credits", periodic),
    ("/v1/queries", query), ("/v1/free-format", free_text),
])
def test_a_repeat_is_answered_with_the_first_status_and_openapi_says_so(
        live, payment, path, make):
    """The same request under its key again gets the first answer with the first status,
    201, on every endpoint taking a key, as on /v1/transfers; openapi.yaml gives 201 as
    the one success of each, never a 200 for a repeat."""
    body = _body(live, make, payment) if make is not transfer else transfer(live)
    first = post(live, path, f"repeat-{path}", body)
    again = post(live, path, f"repeat-{path}", body)
    documented = SPEC["paths"][path]["post"]["responses"]

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (201, first.json())
    assert [status for status in documented if status.startswith("2")] == ["201"]
    assert "repeat" in documented["201"]["description"]


@pytest.mark.parametrize("path, make, changes, was", [
    ("/v1/queries", query, {"content": "款项未到。"}, "款项未到"),
    ("/v1/queries", query, {"query_type": "QT01"}, "QT00"),
    ("/v1/free-format", free_text, {"system": "BEPS"}, "HVPS"),
    ("/v1/free-format", free_text, {"content": "请核实汇款 "}, "请核实汇款"),
    ("/v1/debits", debit, {"amount": "10.01"}, "10.00"),
    ("/v1/debits", debit, {"business_kind": "01401"}, "01400"),
    ("/v1/periodic-credits", periodic, {"remittance_info": "/H02/工资"}, "工资"),
    ("/v1/periodic-credits", periodic, {"amount": "20.01"}, "20.00"),
])
def test_another_request_under_the_key_names_each_field_that_differs(
        live, payment, path, make, changes, was):
    """As a transfer's is: the key, then each differing field with the value the retry
    gives and, as expected, the first request's (its default when it left it out)."""
    key = f"named-{path}-{sorted(changes)}"
    post(live, path, key, _body(live, make, payment))
    again = post(live, path, key, _body(live, make, payment, **changes))
    (name, value), = changes.items()
    errors = again.json()["errors"]

    assert again.status_code == 409, again.text
    assert [(e["code"], e["path"]) for e in errors] == [
        ("idempotency_key_reused_with_other_body", "Idempotency-Key"),
        ("idempotency_key_reused_with_other_body", f"/{name}")]
    assert errors[1]["value"] == value
    assert errors[1]["expected"] == f"{was}, as in the first request with this key"
    assert f"differs in {name}" in errors[0]["message"]


# (the endpoint that took the key first, its body, the endpoint reusing it, its body)
CROSS_KIND = [
    ("/v1/transfers", transfer, "transfer", "/v1/debits", debit, "debit"),
    ("/v1/transfers", transfer, "transfer", "/v1/periodic-credits", periodic,
     "periodic_credit"),
    ("/v1/debits", debit, "debit", "/v1/transfers", transfer, "transfer"),
    ("/v1/debits", debit, "debit", "/v1/periodic-credits", periodic, "periodic_credit"),
    ("/v1/periodic-credits", periodic, "periodic_credit", "/v1/debits", debit, "debit"),
    ("/v1/periodic-credits", periodic, "periodic_credit", "/v1/transfers", transfer,
     "transfer"),
]


@pytest.mark.parametrize("first_path, first_make, first_kind, path, make, kind", CROSS_KIND,
                         ids=[f"{c[2]} then {c[5]}" for c in CROSS_KIND])
def test_a_key_taken_by_another_kind_of_request_says_which(
        live, first_path, first_make, first_kind, path, make, kind):
    """A key first taken by a transfer, a debit or a periodic credit, reused for another
    of these kinds, is refused naming the kind that took it and the payment it made,
    with its own code: the two requests' fields are not comparable."""
    key = f"cross-{first_kind}-{kind}"
    first = post(live, first_path, key, first_make(live))
    again = post(live, path, key, make(live))
    [error] = again.json()["errors"]

    assert first.status_code == 201, first.text
    assert again.status_code == 409, again.text
    assert (error["code"], error["path"], error["value"]) == (
        "idempotency_key_used_for_other_kind", "Idempotency-Key", key)
    assert (error["first_kind"], error["kind"]) == (first_kind, kind)
    assert first_path in error["expected"]
    assert f"for payment {first.json()['id']}" in error["message"]


@pytest.mark.parametrize("first_path, first_make, first_kind, path, make, kind",
                         [c for c in CROSS_KIND if c[2] != "transfer"],
                         ids=[f"{c[2]} then {c[5]}" for c in CROSS_KIND if c[2] != "transfer"])
def test_a_key_kept_before_kinds_were_names_the_kind_its_payment_has(
        live, first_path, first_make, first_kind, path, make, kind):
    """A debit's or periodic credit's key kept before kinds were kept with keys (a body
    and no kind) is told by the payment it made, never guessed to be a transfer's."""
    key = f"unkinded-{first_kind}-{kind}"
    first = post(live, first_path, key, first_make(live))
    assert first.status_code == 201, first.text
    assert live.execute("UPDATE idempotency SET kind = NULL WHERE key = ?", (key,)) == 1
    again = post(live, path, key, make(live))
    [error] = again.json()["errors"]

    assert again.status_code == 409, again.text
    assert (error["code"], error["first_kind"], error["kind"]) == (
        "idempotency_key_used_for_other_kind", first_kind, kind)
    assert first_path in error["expected"]
    assert f"for payment {first.json()['id']}" in error["message"]


def test_a_key_kept_before_kinds_were_still_answers_its_own_repeat(live):
    key = "unkinded-repeat"
    first = post(live, "/v1/debits", key, debit(live))
    assert live.execute("UPDATE idempotency SET kind = NULL WHERE key = ?", (key,)) == 1
    again = post(live, "/v1/debits", key, debit(live))

    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])


def post_as(live: LiveGateway, path: str, key: str, body: Any,
            content_type: str | None) -> requests.Response:
    headers = {"Idempotency-Key": key}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(f"{live.url}{path}", data=json.dumps(body).encode(), timeout=10,
                         headers=headers)


def batch(live: LiveGateway) -> list[dict[str, Any]]:
    return [transfer(live, urgency="normal", amount="1.00"),
            transfer(live, urgency="normal", amount="2.00")]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None])
@pytest.mark.parametrize("path, make", [
    ("/v1/transfers", transfer), ("/v1/transfers/batch", batch), ("/v1/debits", debit),
    ("/v1/periodic-credits", periodic), ("/v1/queries", query),
    ("/v1/free-format", free_text),
])
def test_a_retry_declared_as_another_type_gets_its_stored_answer(
        live, payment, path, make, content_type):
    """Every endpoint storing its answers under an Idempotency-Key answers a retry from
    them whatever its Content-Type, as /v1/transfers does: a core system that sent none,
    or another, retries after a timeout. Another request under the key, and a new key,
    of that type are refused 415 all the same, and nothing more is stored."""
    key = f"typed-{path}-{(content_type or 'none')[:12]}"
    body = make(live) if make in (transfer, batch) else _body(live, make, payment)
    first = post_as(live, path, key, body, "application/json")
    stored = live.query("SELECT COUNT(*) FROM idempotency")[0][0]
    again = post_as(live, path, key, body, content_type)
    other = post_as(live, path, key, [*body, body[0]] if make is batch
                    else {**body, "content": "另一"} if make in (query, free_text)
                    else {**body, "amount": "3.00"}, content_type)
    new_key = post_as(live, path, key + "-new", body, content_type)

    assert first.status_code in (200, 201), first.text
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    for refused in (other, new_key):
        assert refused.status_code == 415, refused.text
        assert refused.json()["errors"][0]["code"] == "unsupported_media_type"
    assert live.query("SELECT COUNT(*) FROM idempotency")[0][0] == stored


def test_a_batch_sent_again_as_another_type_takes_no_item_it_did_not_take(live) -> None:
    """Items taken the first time get their stored answers; an item refused then (its
    amount malformed) is refused for the type now, never taken under it."""
    good, bad = transfer(live, urgency="normal", amount="6.00"), transfer(live, amount="x")
    first = post_as(live, "/v1/transfers/batch", "typed-partial", [good, bad],
                    "application/json")
    payments_before = live.query("SELECT COUNT(*) FROM payments")[0][0]
    again = post_as(live, "/v1/transfers/batch", "typed-partial",
                    [good, dict(bad, amount="7.00")], "text/plain")
    same = post_as(live, "/v1/transfers/batch", "typed-partial", [good, bad], "text/plain")

    assert [r["status"] for r in first.json()["results"]] == [201, 422], first.text
    # Another list under the key: not the batch recorded, refused whole for its type.
    assert again.status_code == 415, again.text
    assert same.status_code == 200, same.text
    [kept, refused] = same.json()["results"]
    assert kept == first.json()["results"][0]
    assert (refused["status"], refused["errors"][0]["code"]) == (415, "unsupported_media_type")
    assert (same.json()["accepted"], same.json()["refused"]) == (1, 1)
    assert live.query("SELECT COUNT(*) FROM payments")[0][0] == payments_before


@pytest.mark.parametrize("batch_key", [None, "typed-own-keys"])
def test_a_batch_of_items_with_their_own_keys_sent_again_as_another_type_gets_them(
        live, batch_key) -> None:
    """Items naming their own idempotency_key, under a batch key or none, are a retry
    as a batch keyed by position is: each item taken before gets its stored answer, a
    new one the type's refusal; a list of none taken before is refused whole."""
    tag = batch_key or "none"
    items = [dict(transfer(live, urgency="normal", amount=f"{n}.00"),
                  idempotency_key=f"own-{tag}-{n}") for n in (11, 12)]
    new = dict(transfer(live, urgency="normal", amount="13.00"),
               idempotency_key=f"own-{tag}-13")

    def send(body: list[dict[str, Any]], content_type: str) -> requests.Response:
        headers = {"Content-Type": content_type}
        if batch_key is not None:
            headers["Idempotency-Key"] = batch_key
        return requests.post(f"{live.url}/v1/transfers/batch", data=json.dumps(body).encode(),
                             headers=headers, timeout=10)
    first = send(items, "application/json")
    payments_before = live.query("SELECT COUNT(*) FROM payments")[0][0]
    again = send(items, "text/plain")
    mixed = send([items[1], new], "text/plain")
    unseen = send([new], "text/plain")

    assert [r["status"] for r in first.json()["results"]] == [201, 201], first.text
    assert (again.status_code, again.json()) == (200, first.json())
    assert mixed.status_code == 200, mixed.text
    [kept, refused] = mixed.json()["results"]
    assert kept == dict(first.json()["results"][1], index=0)
    assert (refused["status"], refused["errors"][0]["code"]) == (415, "unsupported_media_type")
    assert unseen.status_code == 415, unseen.text
    assert unseen.json()["errors"][0]["code"] == "unsupported_media_type"
    assert live.query("SELECT COUNT(*) FROM payments")[0][0] == payments_before


# A request under a key another request took is refused for the key (409) whether or not
# its own body is valid: a body its fields would refuse (422) is not checked first, since
# what the core system mistook is the key. The same body under a new key still gets its
# fields' 422; the key is looked up only for a refused body
# (gateway.key_reuse.refused_or_replayed).
REUSED = "idempotency_key_reused_with_other_body"

# (endpoint, body maker, changes its fields refuse: 422 under a new key)
INVALID = [
    ("/v1/transfers", transfer, {"amount": "-5.00"}),
    ("/v1/transfers", transfer, {"amount": "40.001", "urgency": "soon"}),
    ("/v1/transfers", transfer, {"payee_bank": "12345"}),
    ("/v1/debits", debit, {"amount": "abc"}),
    ("/v1/periodic-credits", periodic, {"amount": "0"}),
    ("/v1/free-format", free_text, {"content": ""}),
    ("/v1/queries", query, {"query_type": "QT99"}),
]


@pytest.mark.parametrize("n, case", list(enumerate(INVALID)))
def test_a_reused_key_with_an_invalid_body_is_refused_for_the_key(live, payment, n, case):
    path, make, changes = case
    first = post(live, path, f"invalid-taken-{n}", _body(live, make, payment))
    reused = post(live, path, f"invalid-taken-{n}", _body(live, make, payment, **changes))
    fresh = post(live, path, f"invalid-fresh-{n}", _body(live, make, payment, **changes))
    errors = reused.json()["errors"]

    assert first.status_code == 201, first.text
    assert reused.status_code == 409, reused.text
    assert (errors[0]["code"], errors[0]["path"]) == (REUSED, "Idempotency-Key")
    assert {e["code"] for e in errors} == {REUSED}
    assert fresh.status_code == 422, fresh.text
    assert REUSED not in fresh.text


def test_a_debit_mandate_under_a_taken_key_with_an_invalid_body_is_refused_for_the_key(
        live):
    body = {"account": live.payer, "agreement": "AG-KEY"}
    first = post(live, "/v1/debit-mandates", "mandate-taken", body)
    reused = post(live, "/v1/debit-mandates", "mandate-taken", {**body, "agreement": ""})

    assert first.status_code == 201, first.text
    assert reused.status_code == 409, reused.text
    assert reused.json()["errors"][0]["code"] == REUSED


def test_a_batch_item_under_a_taken_key_with_an_invalid_body_is_refused_for_the_key(live):
    """An item naming its own key, taken by an earlier transfer, with an amount refused:
    its result is the key's 409; the batch's other items are judged on their own."""
    first = post(live, "/v1/transfers", "item-taken", transfer(live, amount="7.00"))
    items = [{**transfer(live, amount="-7.00"), "idempotency_key": "item-taken"},
             {**transfer(live, amount="-7.00"), "idempotency_key": "item-new"}]
    r = requests.post(f"{live.url}/v1/transfers/batch", data=json.dumps(items), timeout=10,
                      headers={"Idempotency-Key": "batch-of-taken-item",
                               "Content-Type": "application/json"})
    taken, new = r.json()["results"]

    assert first.status_code == 201, first.text
    assert (taken["status"], taken["errors"][0]["code"]) == (409, REUSED), r.text
    assert new["status"] == 422, r.text
