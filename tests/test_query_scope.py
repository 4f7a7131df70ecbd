"""POST /v1/queries about a payment the client may not see (another client's, or one
outside its entry in `api_balance_accounts`, gateway.scope) answers exactly as an id
never given (404 at /payment_id), whatever else the request says: the client and scope
are checked as soon as the payment is found, before its amount, its channel or its
package are read, so that no answer tells the client of it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import requests

from tests.api_support import post_signed
from tests.test_payment_read_scope import (BRANCH, CLIENT, FOURTH, KEYS,  # noqa: F401
                                           OTHER, SECOND, UNKNOWN, as_unknown, get, live,
                                           made, submit, transfer)

_keys = itertools.count()


def post(live, client: str, path: str, body: dict[str, Any]) -> requests.Response:
    return post_signed(live.url, path, json.dumps(body).encode(), client, KEYS[client],
                       **{"Idempotency-Key": f"query-scope-{next(_keys)}"})


def query(payment_id: str, **more: str) -> dict[str, str]:
    return {"payment_id": payment_id, "content": "款项未到", **more}


def refused_as_unknown(live, client: str, payment_id: str, **more: str) -> None:
    unknown = post(live, client, "/v1/queries", query(UNKNOWN, **more))
    answer = post(live, client, "/v1/queries", query(payment_id, **more))

    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["errors"][0]["path"] == "/payment_id"
    assert as_unknown(answer, payment_id) == (unknown.status_code, unknown.text)


def urgent(live, client: str, account: str, amount: str) -> str:
    """An HVPS credit of `client`'s from `account`."""
    r = post(live, client, "/v1/transfers", dict(transfer(live, account, amount),
                                                  urgency="urgent"))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_an_incoming_payment_outside_the_scope_is_refused_as_unknown(live, made) -> None:
    refused_as_unknown(live, OTHER, made["in_second"])


def test_an_own_payment_outside_the_scope_is_refused_as_unknown(live, made) -> None:
    refused_as_unknown(live, OTHER, made["second_3"])


def test_an_own_hvps_payment_now_outside_the_scope_is_refused_as_unknown(live, made) -> None:
    entry = live.gw.settings.api_balance_accounts[OTHER]
    live.gw.settings.api_balance_accounts[OTHER] = ["*"]
    try:
        mine = urgent(live, OTHER, SECOND, "8.88")
    finally:
        live.gw.settings.api_balance_accounts[OTHER] = entry

    assert get(live, OTHER, f"/v1/transfers/{mine}").status_code == 404
    refused_as_unknown(live, OTHER, mine)


def test_an_own_hvps_payment_in_the_scope_is_queried(live, made) -> None:
    mine = urgent(live, OTHER, live.payer, "9.99")

    r = post(live, OTHER, "/v1/queries", query(mine))

    assert r.status_code == 201, r.text
    assert r.json()["payment_id"] == mine


def test_another_clients_beps_payment_does_not_tell_its_amount(live, made) -> None:
    theirs = submit(live, CLIENT, live.payer, "777.77")

    refused_as_unknown(live, OTHER, theirs, amount="1.00")


def test_another_clients_hvps_payment_does_not_tell_its_amount(live, made) -> None:
    theirs = urgent(live, CLIENT, live.payer, "666.66")

    refused_as_unknown(live, OTHER, theirs, amount="1.00")


def test_another_clients_unpacked_beps_payment_is_not_a_conflict(live, made) -> None:
    """Its owner is told it is in no package yet (409); another client, nothing."""
    theirs = submit(live, CLIENT, live.payer, "555.55")

    assert post(live, CLIENT, "/v1/queries", query(theirs)).status_code == 409
    refused_as_unknown(live, OTHER, theirs)


def test_another_clients_book_transfer_is_not_named_as_such(live, made) -> None:
    """Its owner is told it did not go through CNAPS (422); another client, nothing."""
    body = dict(transfer(live, live.payer, "4.44"), payee_account=SECOND,
                payee_name=live.payer_name, payee_bank=BRANCH)
    made_by = post(live, CLIENT, "/v1/transfers", body)
    assert made_by.status_code == 201, made_by.text
    theirs = made_by.json()["id"]
    assert made_by.json().get("channel", "internal") not in ("hvps", "beps"), made_by.text

    mine = post(live, CLIENT, "/v1/queries", query(theirs))
    assert (mine.status_code, mine.json()["errors"][0]["code"]) == (
        422, "payment_not_sent_through_cnaps"), mine.text
    refused_as_unknown(live, OTHER, theirs)


UNKNOWN_QUERY = "Q2026120799999999"


def asked_about(live, made) -> dict[str, str]:
    """CLIENT's query about its own HVPS payment, and a bank's query about the incoming
    payment to SECOND, outside OTHER's entry (a copy of the first, turned round)."""
    from gateway.queries import records
    theirs = urgent(live, CLIENT, live.payer, "3.33")
    asked = post(live, CLIENT, "/v1/queries", query(theirs))
    assert asked.status_code == 201, asked.text

    def work(tx: Any) -> str:
        row = records.get(tx, asked.json()["id"])
        row.update(id=row["id"] + "IN", direction="in",
                   payment_id=made["in_second"], msg_id="IN" + row["msg_id"][2:])
        records.insert(tx, row)
        return row["id"]
    return {"out": asked.json()["id"], "out_payment": theirs,
            "in": live.loop.run(live.gw.store.run(work))}


def test_a_query_about_a_payment_the_client_may_not_see_is_not_shown(live, made) -> None:
    ids = asked_about(live, made)
    unknown = get(live, OTHER, f"/v1/queries/{UNKNOWN_QUERY}")

    assert unknown.status_code == 404, unknown.text
    for name in ("out", "in"):
        hidden = get(live, OTHER, f"/v1/queries/{ids[name]}")
        assert (hidden.status_code, hidden.text.replace(ids[name], UNKNOWN_QUERY)) == (
            unknown.status_code, unknown.text), name
        assert get(live, CLIENT, f"/v1/queries/{ids[name]}").status_code == 200, name
    listed = get(live, OTHER, f"/v1/queries?payment_id={ids['out_payment']}")
    assert (listed.status_code, listed.json()) == (200, {"queries": []}), listed.text
    every = {q["id"] for q in get(live, OTHER, "/v1/queries?limit=500").json()["queries"]}
    assert not {ids["out"], ids["in"]} & every
    assert {ids["out"], ids["in"]} <= {
        q["id"] for q in get(live, CLIENT, "/v1/queries?limit=500").json()["queries"]}


@pytest.mark.parametrize("action, name", [("chase", "out"), ("reply", "in")])
def test_a_query_about_a_payment_the_client_may_not_see_is_not_acted_on(
        live, made, action, name) -> None:
    ids = asked_about(live, made)
    body = {"operator": "op1", "content": "已查"}
    before = live.query("SELECT state FROM queries WHERE id = ?", (ids[name],))
    unknown = post(live, OTHER, f"/v1/queries/{UNKNOWN_QUERY}/{action}", body)
    hidden = post(live, OTHER, f"/v1/queries/{ids[name]}/{action}", body)

    assert unknown.status_code == 404, unknown.text
    assert (hidden.status_code, hidden.text.replace(ids[name], UNKNOWN_QUERY)) == (
        unknown.status_code, unknown.text)
    assert live.query("SELECT state FROM queries WHERE id = ?", (ids[name],)) == before


def test_the_reply_feed_leaves_out_replies_to_queries_the_client_may_not_see(
        live, made) -> None:
    """A bank's reply to CLIENT's query about its own payment is in CLIENT's reply feed
    and not in OTHER's; a reply matching no query of ours is in CLIENT's (its entry is
    `*`) and FOURTH's (no entry), not in OTHER's, limited to some accounts
    (tests/test_query_client_scope.py)."""
    from gateway.queries import records
    ids = asked_about(live, made)

    def work(tx: Any) -> None:
        seq = (tx.query_one("SELECT MAX(feed_seq) FROM query_replies", ())[0] or 0) + 1
        for n, (reply_id, query_id) in enumerate((("R-scope-1", ids["out"]),
                                                  ("R-scope-2", None))):
            records.add_reply(tx, {
                "id": reply_id, "feed_seq": seq + n, "query_id": query_id,
                "direction": "in", "sender": "888200000015", "msg_id": f"RS{n}", "mesg_id": f"RS{n}", "answered_msg_id": "X",
                "replied_by": "bank",
                "content": "已入账", "at": "2026-12-07T10:00:00+08:00", "late": 0})
    live.loop.run(live.gw.store.run(work))

    def fed(client: str) -> set[str]:
        answer = get(live, client, "/v1/query-replies?limit=500")
        assert answer.status_code == 200, answer.text
        return {r["id"] for r in answer.json()["replies"]}

    assert {"R-scope-1", "R-scope-2"} <= fed(CLIENT)
    assert "R-scope-2" in fed(FOURTH) and "R-scope-1" not in fed(FOURTH)
    assert not {"R-scope-1", "R-scope-2"} & fed(OTHER)
