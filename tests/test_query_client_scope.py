"""What names no payment of ours is judged by who made it (gateway.scope.sees_unattached):
a query a client opens about a payment we do not have, its chases and the replies to it
are that client's alone, and so is the free text it sends; another client is answered
exactly as for an id never given (404) and finds them in no list or feed. What no client
made (a bank's query about a payment we cannot find, its free text, a reply to no query
of ours) is seen by a client api_balance_accounts limits to no accounts in particular
(no entry, or `*`), not by one limited to some. Operators (the desk asked for no client)
see everything.

CLIENT's entry is `*`, OTHER's covers some accounts, FOURTH has none."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import requests

from gateway import payments
from gateway.queries import desk_of, records
from tests.api_support import post_signed
from tests.test_payment_read_scope import (CLIENT, FOURTH, KEYS, OTHER,  # noqa: F401
                                           PEER_BRANCH, get, live, made)

UNKNOWN_QUERY = "Q2026120799999999"
_keys = itertools.count()


def post(live, client: str, path: str, body: dict[str, Any]) -> requests.Response:
    return post_signed(live.url, path, json.dumps(body).encode(), client, KEYS[client],
                       **{"Idempotency-Key": f"unattached-{next(_keys)}"})


def run(live, work) -> Any:
    return live.loop.run(live.gw.store.run(work))


def desk(live) -> Any:
    return desk_of(live.gw)


def open_unattached(live, client: str, **more: Any) -> dict[str, Any]:
    """`client`'s query about a payment a peer bank says it sent and we do not have."""
    r = post(live, client, "/v1/queries", {
        "original": {"msg_id": f"2026120788{next(_keys):06d}", "sending_bank": PEER_BRANCH,
                     "message_type": "hvps.111.001.01"},
        "amount": "12.34", "content": "客户称款项未到，请查", **more})
    assert r.status_code == 201, r.text
    assert r.json()["payment_id"] is None, r.text
    return r.json()


def bank_query(live, model: dict[str, Any]) -> str:
    """A bank's query about a payment we cannot find (a copy of `model`, turned round)."""
    def work(tx: Any) -> str:
        row = records.get(tx, model["id"])
        row.update(id=f"QI{PEER_BRANCH}{row['msg_id']}", direction="in", client=None,
                   source="counterparty", requested_by=PEER_BRANCH,
                   handling="payment_not_found", msg_id="IN" + row["msg_id"][2:])
        records.insert(tx, row)
        return row["id"]
    return run(live, work)


def bank_reply(live, reply_id: str, query_id: str | None) -> None:
    """A bank's ccms.315 in the reply feed, answering `query_id` (None: no query of ours)."""
    def work(tx: Any) -> None:
        records.add_reply(tx, {
            "id": reply_id, "feed_seq": payments.next_seq(tx, "query_feed"),
            "query_id": query_id, "direction": "in",
            "sender": PEER_BRANCH, "msg_id": reply_id, "mesg_id": reply_id,
            "answered_msg_id": "X", "replied_by": PEER_BRANCH, "content": "已查无此款",
            "at": "2026-12-07T10:00:00+08:00", "late": 0})
    run(live, work)


def hidden(live, client: str, query_id: str) -> None:
    """`client` is answered for `query_id` exactly as for an id never given."""
    unknown = get(live, client, f"/v1/queries/{UNKNOWN_QUERY}")
    answer = get(live, client, f"/v1/queries/{query_id}")

    assert unknown.status_code == 404, unknown.text
    assert (answer.status_code, answer.text.replace(query_id, UNKNOWN_QUERY)) == (
        unknown.status_code, unknown.text), client


def listed(live, client: str) -> set[str]:
    answer = get(live, client, "/v1/queries?limit=500")
    assert answer.status_code == 200, answer.text
    return {q["id"] for q in answer.json()["queries"]}


def fed(live, client: str) -> set[str]:
    answer = get(live, client, "/v1/query-replies?limit=500")
    assert answer.status_code == 200, answer.text
    return {r["id"] for r in answer.json()["replies"]}


def free_text(live, client: str) -> dict[str, dict[str, Any]]:
    answer = get(live, client, "/v1/free-format?limit=500")
    assert answer.status_code == 200, answer.text
    return {m["id"]: m for m in answer.json()["messages"]}


def test_a_query_about_no_payment_of_ours_is_its_clients_alone(live, made) -> None:
    mine = open_unattached(live, CLIENT)

    assert get(live, CLIENT, f"/v1/queries/{mine['id']}").json()["content"] == \
        mine["content"]
    assert mine["id"] in listed(live, CLIENT)
    for other in (FOURTH, OTHER):
        hidden(live, other, mine["id"])
        assert mine["id"] not in listed(live, other), other
    assert mine["id"] in {q["id"] for q in live.loop.run(desk(live).search(limit=500))}
    assert live.loop.run(desk(live).get(mine["id"]))["id"] == mine["id"]


def test_the_client_is_kept_when_an_operator_is_named(live, made) -> None:
    """A query opened through a client's credentials in an operator's name is that
    client's: `requested_by` names the operator, the client column the client."""
    mine = open_unattached(live, FOURTH, operator="op7")

    assert mine["requested_by"] == "op7"
    assert live.query("SELECT client FROM queries WHERE id = ?", (mine["id"],)) == [
        (FOURTH,)]
    assert mine["id"] in listed(live, FOURTH)
    hidden(live, CLIENT, mine["id"])


def test_another_client_may_not_chase_it_and_its_chase_is_the_clients(live, made) -> None:
    mine = open_unattached(live, CLIENT)
    unknown = post(live, FOURTH, f"/v1/queries/{UNKNOWN_QUERY}/chase", {})
    refused = post(live, FOURTH, f"/v1/queries/{mine['id']}/chase", {})

    assert unknown.status_code == 404, unknown.text
    assert (refused.status_code, refused.text.replace(mine["id"], UNKNOWN_QUERY)) == (
        unknown.status_code, unknown.text)
    assert live.query("SELECT COUNT(*) FROM queries WHERE chase_of = ?", (mine["id"],)) \
        == [(0,)]

    chased = post(live, CLIENT, f"/v1/queries/{mine['id']}/chase", {})

    assert chased.status_code == 201, chased.text
    assert chased.json()["chase_of"] == mine["id"]
    hidden(live, FOURTH, chased.json()["id"])
    assert chased.json()["id"] in listed(live, CLIENT)


def test_a_reply_to_it_is_in_its_clients_feed_alone(live, made) -> None:
    mine = open_unattached(live, CLIENT)
    bank_reply(live, "A-own-reply", mine["id"])

    assert "A-own-reply" in fed(live, CLIENT)
    assert "A-own-reply" not in fed(live, FOURTH)
    assert "A-own-reply" not in fed(live, OTHER)
    operators = live.loop.run(desk(live).reply_feed(0, 500))
    assert "A-own-reply" in {r["id"] for r in operators}


def test_a_reply_to_no_query_of_ours_is_for_clients_limited_to_no_accounts(
        live, made) -> None:
    bank_reply(live, "A-unmatched", None)

    assert "A-unmatched" in fed(live, CLIENT)
    assert "A-unmatched" in fed(live, FOURTH)
    assert "A-unmatched" not in fed(live, OTHER)


def test_a_banks_query_about_no_payment_of_ours_is_for_clients_limited_to_no_accounts(
        live, made) -> None:
    theirs = bank_query(live, open_unattached(live, CLIENT))
    bank_reply(live, "A-to-theirs", None)
    before = live.query("SELECT state FROM queries WHERE id = ?", (theirs,))

    hidden(live, OTHER, theirs)
    assert theirs not in listed(live, OTHER)
    refused = post(live, OTHER, f"/v1/queries/{theirs}/reply",
                   {"operator": "op1", "content": "查无此款"})
    assert refused.status_code == 404, refused.text
    assert live.query("SELECT state FROM queries WHERE id = ?", (theirs,)) == before
    for client in (CLIENT, FOURTH):
        assert get(live, client, f"/v1/queries/{theirs}").status_code == 200, client
        assert theirs in listed(live, client), client

    answered = post(live, FOURTH, f"/v1/queries/{theirs}/reply",
                    {"operator": "op1", "content": "查无此款"})

    assert (answered.status_code, answered.json()["state"]) == (200, "answered"), \
        answered.text


def test_free_text_is_its_senders_and_the_banks_is_for_clients_limited_to_no_accounts(
        live, made) -> None:
    sent = post(live, CLIENT, "/v1/free-format",
                {"receiver": PEER_BRANCH, "content": "请协查一笔来账"})
    assert sent.status_code == 201, sent.text
    mine = sent.json()["id"]

    def theirs(tx: Any) -> str:
        return records.add_free_format(tx, {
            "id": "FI-theirs", "feed_seq": payments.next_seq(tx, "free_format_feed"),
            "direction": "in", "sender": PEER_BRANCH,
            "receiver": live.gw.settings.bank_code, "system": "HVPS", "msg_id": "FI1",
            "mesg_id": "FI1", "content": "贵行来账已退回", "requested_by": PEER_BRANCH,
            "at": "2026-12-07T10:00:00+08:00"})["id"]
    banks = run(live, theirs)

    assert set(free_text(live, CLIENT)) >= {mine, banks}
    assert "client" not in free_text(live, CLIENT)[mine]
    assert set(free_text(live, FOURTH)) & {mine, banks} == {banks}
    assert set(free_text(live, OTHER)) & {mine, banks} == set()
    operators = live.loop.run(desk(live).free_format_feed(None, 0, 500))
    assert {mine, banks} <= {m["id"] for m in operators}


def test_free_text_a_limited_client_sent_is_its_own(live, made) -> None:
    sent = post(live, OTHER, "/v1/free-format",
                {"receiver": PEER_BRANCH, "content": "请协查"})
    assert sent.status_code == 201, sent.text

    assert sent.json()["id"] in free_text(live, OTHER)
    assert sent.json()["id"] not in free_text(live, CLIENT)
    assert sent.json()["id"] not in free_text(live, FOURTH)


class _Settings:
    def __init__(self, api_keys: dict[str, str], scopes: dict[str, list[str]]) -> None:
        self.api_keys, self.api_balance_accounts = api_keys, scopes


KEYED = {"a": "s", "b": "s", "c": "s"}
SCOPED = {"a": ["*"], "b": ["2000*"]}  # "c": no entry

# (settings, client, the item's client, seen): with client credentials a client's item
# is its own; no client's is seen by a client without an entry or with `*`; the open API
# (no api_keys, so no api_balance_accounts) tells no client from another.
UNATTACHED = [
    (_Settings(KEYED, SCOPED), "a", "a", True),
    (_Settings(KEYED, SCOPED), "a", "b", False),
    (_Settings(KEYED, SCOPED), "b", "b", True),
    (_Settings(KEYED, SCOPED), "a", None, True),
    (_Settings(KEYED, SCOPED), "b", None, False),
    (_Settings(KEYED, SCOPED), "c", None, True),
    (_Settings(KEYED, SCOPED), "c", "a", False),
    (_Settings(KEYED, {}), "b", None, True),
    (_Settings(KEYED, {}), "b", "a", False),
    (_Settings({}, {}), "default", None, True),
    (_Settings({}, {}), "default", "demo", True),
]


@pytest.mark.parametrize("settings, client, owner, seen", UNATTACHED)
def test_the_sql_condition_says_what_the_rule_says(settings, client, owner, seen) -> None:
    """`unattached_condition` picks the rows `sees_unattached` lets the client see."""
    import sqlite3

    from gateway import scope

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (client TEXT)")
    db.execute("INSERT INTO items VALUES (?)", (owner,))
    condition = scope.unattached_condition(settings, client)
    sql, params = condition or ("1 = 1", [])

    assert scope.sees_unattached(settings, client, owner) is seen
    assert db.execute(f"SELECT COUNT(*) FROM items WHERE {sql}", params).fetchone() == (
        int(seen),)
