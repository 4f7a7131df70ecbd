"""POST /v1/queries/{id}/reply is kept by its Idempotency-Key as a chase is: a core system
retrying its answer to a bank's query after a timeout gets the stored answer, though the
query is answered now, and the other bank no second reply (ccms.315); another request
under the key is a 409 naming what differs (the query answered included), and a reply
without a key is refused (400)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.api_support import LiveGateway
from tests.test_idempotency_meaning_endpoints import SPEC
from tests.test_queries_chase_key import outbox_rows, post
from tests.test_query_client_scope import bank_query

PEER_BRANCH = "888200000023"
ANSWER = {"content": "已查无此款", "operator": "op1"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("reply-key")).start()
    yield g
    g.stop()


_queries = itertools.count(1)


def bank_asks(live: LiveGateway) -> str:
    """An open query another bank sent us (about a payment we cannot find): one to
    answer."""
    n = next(_queries)
    ours = post(live, "/v1/queries", {
        "original": {"msg_id": f"2026120777{n:06d}", "sending_bank": PEER_BRANCH},
        "amount": f"{n}.00", "content": "客户称款项未到，请查"}, f"ours-{n}")
    assert ours.status_code == 201, ours.text
    return bank_query(live, ours.json())


def replies_of(live: LiveGateway, query_id: str) -> int:
    return live.query("SELECT COUNT(*) FROM query_replies WHERE query_id = ? AND "
                      "direction = 'out'", (query_id,))[0][0]


# (the first reply's body, a retry's: the same answer written another way)
SAME = [
    (ANSWER, ANSWER),
    (ANSWER, {"operator": "op1", "content": "已查无此款"}),
]


@pytest.mark.parametrize("n, first, retry", [(n, *case) for n, case in enumerate(SAME)])
def test_a_reply_sent_again_under_its_key_gets_the_stored_answer(live, n, first, retry):
    """No second reply, no second message to the other bank: the first answer, 200,
    although the query the retry names is answered now."""
    query_id = bank_asks(live)
    replied = post(live, f"/v1/queries/{query_id}/reply", first, f"reply-same-{n}")
    rows = outbox_rows(live)
    again = post(live, f"/v1/queries/{query_id}/reply", retry, f"reply-same-{n}")

    assert (replied.status_code, replied.json()["state"]) == (200, "answered"), replied.text
    assert (again.status_code, again.json()) == (200, replied.json())
    assert replies_of(live, query_id) == 1
    assert outbox_rows(live) == rows


def test_a_new_reply_to_an_answered_query_is_still_refused_as_not_open(live):
    """Only the retry under the first key is answered from the store."""
    query_id = bank_asks(live)
    post(live, f"/v1/queries/{query_id}/reply", ANSWER, "reply-first")
    new = post(live, f"/v1/queries/{query_id}/reply", ANSWER, "reply-first-new")

    assert new.status_code == 409 and new.json()["errors"][0]["code"] == "query_not_open"
    assert replies_of(live, query_id) == 1


@pytest.mark.parametrize("changes, name", [
    ({"content": "已查无此款。"}, "content"),
    ({"operator": "op2"}, "operator"),
])
def test_another_reply_under_the_key_is_a_conflict_naming_what_differs(live, changes, name):
    query_id = bank_asks(live)
    key = f"reply-other-{name}"
    post(live, f"/v1/queries/{query_id}/reply", ANSWER, key)
    again = post(live, f"/v1/queries/{query_id}/reply", {**ANSWER, **changes}, key)
    errors = again.json()["errors"]

    assert again.status_code == 409, again.text
    assert [(e["code"], e["path"]) for e in errors] == [
        ("idempotency_key_reused_with_other_body", "Idempotency-Key"),
        ("idempotency_key_reused_with_other_body", f"/{name}")]
    assert replies_of(live, query_id) == 1


def test_the_key_of_one_querys_reply_sent_on_another_query_is_a_conflict(live):
    """The query answered is part of the request: the same key on another query names
    `query_id`, with the first query's id as expected, and answers nothing."""
    first, other = bank_asks(live), bank_asks(live)
    post(live, f"/v1/queries/{first}/reply", ANSWER, "reply-moved")
    again = post(live, f"/v1/queries/{other}/reply", ANSWER, "reply-moved")
    errors = again.json()["errors"]

    assert again.status_code == 409, again.text
    assert (errors[1]["path"], errors[1]["value"]) == ("/query_id", other)
    assert errors[1]["expected"].startswith(first)
    assert replies_of(live, other) == 0


@pytest.mark.parametrize("key", [None, "", "k" * 65])
def test_a_reply_without_a_usable_key_is_refused_and_sends_nothing(live, key):
    """As a chase: 400 idempotency_key_required, before anything is answered."""
    query_id = bank_asks(live)
    rows = outbox_rows(live)
    refused = post(live, f"/v1/queries/{query_id}/reply", ANSWER, key)

    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["code"] == "idempotency_key_required"
    assert replies_of(live, query_id) == 0 and outbox_rows(live) == rows


def test_a_reply_retried_as_another_type_gets_its_stored_answer(live):
    """A retry declared text/plain is answered from the store; a new reply so is 415."""
    query_id, other = bank_asks(live), bank_asks(live)
    replied = post(live, f"/v1/queries/{query_id}/reply", ANSWER, "reply-typed")
    again = post(live, f"/v1/queries/{query_id}/reply", ANSWER, "reply-typed", "text/plain")
    new = post(live, f"/v1/queries/{other}/reply", ANSWER, "reply-typed-new", "text/plain")

    assert (again.status_code, again.json()) == (200, replied.json())
    assert new.status_code == 415 and replies_of(live, other) == 0


def test_openapi_gives_the_reply_its_key_and_its_repeat():
    reply: dict[str, Any] = SPEC["paths"]["/v1/queries/{id}/reply"]["post"]
    key = next(p for p in reply["parameters"] if p["name"] == "Idempotency-Key")

    assert key["in"] == "header" and key["required"] is True
    assert [status for status in reply["responses"] if status.startswith("2")] == ["200"]
    assert "repeat" in reply["responses"]["200"]["description"]
