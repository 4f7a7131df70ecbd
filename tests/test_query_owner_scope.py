"""A query a client opens about a payment (gateway.scope.sees_owned) is that client's
alone, with its chases and the replies to it, though other clients see the payment: its
text is the client's own words about its customer. Another client that sees the payment
is answered for it exactly as for a query id never given (404), finds it in no list or
feed, and not under `queries` of GET /v1/transfers/{id}. What no client made about the
payment (a bank's query, one the gateway opened) goes with the payment: every client
that sees the payment sees it. Operators (the desk asked for no client) see everything.

The payment is an incoming HVPS credit to an account every client here sees: CLIENT's
entry is `*`, OTHER's covers the account, FOURTH has none."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import requests

from gateway.queries import desk_of, records
from tests.api_support import post_signed
from tests.test_payment_read_scope import (CLIENT, FOURTH, KEYS, OTHER,  # noqa: F401
                                           PEER_BRANCH, get, incoming_to, live, made)
from tests.test_query_client_scope import UNKNOWN_QUERY, bank_reply, fed, hidden, listed

_keys = itertools.count()
OTHERS = (OTHER, FOURTH)


def post(live, client: str, path: str, body: dict[str, Any]) -> requests.Response:
    return post_signed(live.url, path, json.dumps(body).encode(), client, KEYS[client],
                       **{"Idempotency-Key": f"owner-scope-{next(_keys)}"})


@pytest.fixture(scope="module")
def paid_in(live) -> str:
    """An incoming HVPS credit to the rig's payer account (a copy of an HVPS payment of
    CLIENT's, turned round): a payment every client here sees."""
    r = post(live, CLIENT, "/v1/transfers", {
        "payer_account": live.payer, "payer_name": live.payer_name,
        "payer_bank": "999100000027", "payee_account": "6222000000000001",
        "payee_name": "对手客户", "payee_bank": PEER_BRANCH, "amount": "6.66",
        "urgency": "urgent"})
    assert r.status_code == 201, r.text
    payment_id = incoming_to(live, r.json()["id"], live.payer)
    for client in (CLIENT, *OTHERS):
        seen = get(live, client, f"/v1/transfers/{payment_id}")
        assert seen.status_code == 200, (client, seen.text)
    return payment_id


def ask(live, client: str, payment_id: str) -> dict[str, Any]:
    r = post(live, client, "/v1/queries", {"payment_id": payment_id,
                                           "content": "客户称未入账，请核实"})
    assert r.status_code == 201, r.text
    return r.json()


def not_made_by_a_client(live, model: dict[str, Any], direction: str, source: str) -> str:
    """A query about the same payment that no client made (a copy of `model`): a bank's
    (`in`) or the gateway's own (`out`, source `gateway`)."""
    def work(tx: Any) -> str:
        row = records.get(tx, model["id"])
        row.update(id=f"{model['id']}{source[:2].upper()}", direction=direction,
                   client=None, source=source, requested_by=source,
                   msg_id=f"{source[:2].upper()}{row['msg_id'][2:]}")
        records.insert(tx, row)
        return row["id"]
    return live.loop.run(live.gw.store.run(work))


def on_transfer(live, client: str, payment_id: str) -> set[str]:
    answer = get(live, client, f"/v1/transfers/{payment_id}")
    assert answer.status_code == 200, answer.text
    return {q["id"] for q in answer.json()["queries"]}


def test_a_clients_query_about_a_payment_others_see_is_its_own(live, made, paid_in) -> None:
    mine = ask(live, CLIENT, paid_in)

    assert get(live, CLIENT, f"/v1/queries/{mine['id']}").json()["content"] == \
        mine["content"]
    assert mine["id"] in listed(live, CLIENT)
    assert mine["id"] in on_transfer(live, CLIENT, paid_in)
    for other in OTHERS:
        hidden(live, other, mine["id"])
        assert mine["id"] not in listed(live, other), other
        assert mine["id"] not in on_transfer(live, other, paid_in), other
        by_payment = get(live, other, f"/v1/queries?payment_id={paid_in}")
        assert mine["id"] not in {q["id"] for q in by_payment.json()["queries"]}, other
    assert live.loop.run(desk_of(live.gw).get(mine["id"]))["id"] == mine["id"]


def test_its_chase_and_the_replies_to_it_are_its_own_too(live, made, paid_in) -> None:
    mine = ask(live, CLIENT, paid_in)
    refused = post(live, OTHER, f"/v1/queries/{mine['id']}/chase", {})
    unknown = post(live, OTHER, f"/v1/queries/{UNKNOWN_QUERY}/chase", {})
    chased = post(live, CLIENT, f"/v1/queries/{mine['id']}/chase", {})
    bank_reply(live, "A-owner-reply", mine["id"])

    assert (refused.status_code, refused.text.replace(mine["id"], UNKNOWN_QUERY)) == (
        unknown.status_code, unknown.text)
    assert chased.status_code == 201, chased.text
    assert "A-owner-reply" in fed(live, CLIENT)
    assert chased.json()["id"] in on_transfer(live, CLIENT, paid_in)
    for other in OTHERS:
        hidden(live, other, chased.json()["id"])
        assert "A-owner-reply" not in fed(live, other), other
        assert chased.json()["id"] not in on_transfer(live, other, paid_in), other


@pytest.mark.parametrize("direction, source", [("in", "counterparty"), ("out", "gateway")])
def test_what_no_client_made_about_it_goes_with_the_payment(
        live, made, paid_in, direction: str, source: str) -> None:
    """A bank's query about the payment, or one the gateway opened, is seen by every
    client that sees the payment."""
    theirs = not_made_by_a_client(live, ask(live, CLIENT, paid_in), direction, source)

    for client in (CLIENT, *OTHERS):
        assert get(live, client, f"/v1/queries/{theirs}").status_code == 200, client
        assert theirs in listed(live, client), client
        assert theirs in on_transfer(live, client, paid_in), client


KEYED = {"a": "s", "b": "s"}

# (api_keys, client, the query's client, seen), for a query about a payment the client
# sees: with client credentials, a client's query is its own and no client's goes with
# the payment; the open API (no api_keys) tells no client from another.
OWNED = [
    (KEYED, "a", "a", True),
    (KEYED, "a", "b", False),
    (KEYED, "a", None, True),
    ({}, "default", "demo", True),
    ({}, "default", None, True),
]


@pytest.mark.parametrize("api_keys, client, owner, seen", OWNED)
def test_the_sql_condition_says_what_the_rule_says(api_keys, client, owner, seen) -> None:
    """`owned_condition` picks the rows `sees_owned` lets the client see."""
    import sqlite3

    from gateway import scope

    settings = type("Settings", (), {"api_keys": api_keys, "api_balance_accounts": {}})()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (client TEXT)")
    db.execute("INSERT INTO items VALUES (?)", (owner,))
    sql, params = scope.owned_condition(settings, client) or ("1 = 1", [])

    assert scope.sees_owned(settings, client, owner) is seen
    assert db.execute(f"SELECT COUNT(*) FROM items WHERE {sql}", params).fetchone() == (
        int(seen),)
