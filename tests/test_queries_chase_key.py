"""POST /v1/queries/{id}/chase is kept by its Idempotency-Key as POST /v1/queries is: a
core system retrying a chase after a timeout gets the stored answer and the other bank
no second follow-up (ccms.314); another request under the key is a 409 naming what
differs (the chased query included), and a chase without a key is refused (400)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.api_support import LiveGateway
from tests.test_idempotency_meaning_endpoints import SPEC, post_as

BRANCH, PEER_BRANCH = "999100000027", "888200000023"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("chase-key")).start()
    yield g
    g.stop()


def post(live: LiveGateway, path: str, body: Any, key: str | None,
         content_type: str = "application/json") -> requests.Response:
    """`body` as JSON under `key`; None: with no Idempotency-Key header at all."""
    if key is not None:
        return post_as(live, path, key, body, content_type)
    return requests.post(f"{live.url}{path}", data=json.dumps(body).encode(), timeout=10,
                         headers={"Content-Type": content_type})


_queries = iter(range(1, 10_000))


def open_query(live: LiveGateway) -> str:
    """An open query of ours about a payment of ours: one to chase."""
    n = next(_queries)
    paid = post(live, "/v1/transfers", {
        "payer_account": live.payer, "payer_name": live.payer_name, "payer_bank": BRANCH,
        "payee_account": "6222000000000003", "payee_name": "对手客户",
        "payee_bank": PEER_BRANCH, "amount": f"{n}.00", "urgency": "urgent"}, f"pay-{n}")
    assert paid.status_code == 201, paid.text
    asked = post(live, "/v1/queries", {"payment_id": paid.json()["id"],
                                       "content": "款项未到"}, f"query-{n}")
    assert asked.status_code == 201, asked.text
    return asked.json()["id"]


def chases_of(live: LiveGateway, query_id: str) -> int:
    return live.query("SELECT COUNT(*) FROM queries WHERE chase_of = ?", (query_id,))[0][0]


def outbox_rows(live: LiveGateway) -> int:
    return live.query("SELECT COUNT(*) FROM outbox")[0][0]


# (the first chase's body, a retry's: the same request written another way)
SAME = [
    ({}, {}),
    ({}, None),
    ({}, {"content": None, "operator": None}),
    ({"content": "请尽快查复", "operator": "op7"}, {"operator": "op7", "content": "请尽快查复"}),
]


@pytest.mark.parametrize("n, first, retry", [(n, *case) for n, case in enumerate(SAME)])
def test_a_chase_sent_again_under_its_key_gets_the_stored_answer(live, n, first, retry):
    """No second chase, no second message to the other bank: the first answer, 201."""
    query_id = open_query(live)
    chased = post(live, f"/v1/queries/{query_id}/chase", first, f"chase-same-{n}")
    rows = outbox_rows(live)
    again = post(live, f"/v1/queries/{query_id}/chase", retry, f"chase-same-{n}")

    assert chased.status_code == 201, chased.text
    assert (again.status_code, again.json()) == (201, chased.json())
    assert chases_of(live, query_id) == 1
    assert outbox_rows(live) == rows


def test_a_retry_after_the_chase_closed_its_query_still_gets_the_stored_answer(live):
    """The chased query answered meanwhile: the retry is answered as the first time,
    while a new chase of it is refused as not open."""
    query_id = open_query(live)
    chased = post(live, f"/v1/queries/{query_id}/chase", {}, "chase-closed")
    assert live.execute("UPDATE queries SET state = 'answered' WHERE id = ? OR chase_of = ?",
                        (query_id, query_id)) == 2
    again = post(live, f"/v1/queries/{query_id}/chase", {}, "chase-closed")
    new = post(live, f"/v1/queries/{query_id}/chase", {}, "chase-closed-new")

    assert (again.status_code, again.json()) == (201, chased.json())
    assert new.status_code == 409 and new.json()["errors"][0]["code"] == "query_not_open"


@pytest.mark.parametrize("changes, name", [
    ({"content": "请尽快查复。"}, "content"),
    ({"operator": "op8"}, "operator"),
])
def test_another_chase_under_the_key_is_a_conflict_naming_what_differs(live, changes, name):
    query_id = open_query(live)
    key = f"chase-other-{name}"
    post(live, f"/v1/queries/{query_id}/chase", {"content": "请尽快查复"}, key)
    again = post(live, f"/v1/queries/{query_id}/chase",
                 {"content": "请尽快查复", **changes}, key)
    errors = again.json()["errors"]

    assert again.status_code == 409, again.text
    assert [(e["code"], e["path"]) for e in errors] == [
        ("idempotency_key_reused_with_other_body", "Idempotency-Key"),
        ("idempotency_key_reused_with_other_body", f"/{name}")]
    assert chases_of(live, query_id) == 1


def test_the_key_of_one_querys_chase_sent_on_another_query_is_a_conflict(live):
    """The query chased is part of the request: the same key on another query names
    `query_id`, with the first query's id as expected, and chases nothing."""
    first, other = open_query(live), open_query(live)
    post(live, f"/v1/queries/{first}/chase", {}, "chase-moved")
    again = post(live, f"/v1/queries/{other}/chase", {}, "chase-moved")
    errors = again.json()["errors"]

    assert again.status_code == 409, again.text
    assert (errors[1]["path"], errors[1]["value"]) == ("/query_id", other)
    assert errors[1]["expected"].startswith(first)
    assert chases_of(live, other) == 0


@pytest.mark.parametrize("key", [None, "", "k" * 65])
def test_a_chase_without_a_usable_key_is_refused_and_sends_nothing(live, key):
    """As POST /v1/queries: 400 idempotency_key_required, before anything is chased."""
    query_id = open_query(live)
    rows = outbox_rows(live)
    refused = post(live, f"/v1/queries/{query_id}/chase", {}, key)

    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["code"] == "idempotency_key_required"
    assert chases_of(live, query_id) == 0 and outbox_rows(live) == rows


def test_a_chase_retried_as_another_type_gets_its_stored_answer(live):
    """A retry declared text/plain is answered from the store; a new chase so is 415."""
    query_id = open_query(live)
    chased = post(live, f"/v1/queries/{query_id}/chase", {}, "chase-typed")
    again = post(live, f"/v1/queries/{query_id}/chase", {}, "chase-typed", "text/plain")
    new = post(live, f"/v1/queries/{query_id}/chase", {}, "chase-typed-new", "text/plain")

    assert (again.status_code, again.json()) == (201, chased.json())
    assert new.status_code == 415 and chases_of(live, query_id) == 1


def test_openapi_gives_the_chase_its_key_and_its_repeat():
    chase = SPEC["paths"]["/v1/queries/{id}/chase"]["post"]
    key = next(p for p in chase["parameters"] if p["name"] == "Idempotency-Key")

    assert key["in"] == "header" and key["required"] is True
    assert [status for status in chase["responses"] if status.startswith("2")] == ["201"]
    assert "repeat" in chase["responses"]["201"]["description"]


def test_a_chase_of_a_chase_asks_the_first_querys_text_prefixed_once(live):
    """docs/queries.md: a chase's default text is the first query's with 催查：, the
    chase of a chase's too (never 催查：催查：)."""
    query_id = open_query(live)
    chase = post(live, f"/v1/queries/{query_id}/chase", {}, f"chase-twice-{query_id}-1")
    again = post(live, f"/v1/queries/{chase.json()['id']}/chase", {},
                 f"chase-twice-{query_id}-2")

    assert chase.status_code == 201, chase.text
    assert again.status_code == 201, again.text
    assert (chase.json()["content"], again.json()["content"]) == ("催查：款项未到",
                                                                  "催查：款项未到")
    assert again.json()["chase_of"] == query_id
