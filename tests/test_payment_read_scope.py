"""With `api_balance_accounts` set, a client that has an entry sees only the payments
with an account of ours its entry covers (the payer's of ours, or the payee's of an
incoming payment): GET /v1/transfers/{id} and a return, cancel or status query of
another answer exactly as an id never given does (404), and GET /v1/transfers leaves
them out, its pages full and its cursor paging on among those it sees. A client with
no entry sees what it saw before."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from gateway import payments as payments_mod
from ledger.testing import customer_account
from tests.api_support import (CLIENT, OTHER, OTHER_SECRET, SECRET, LiveGateway,
                               post_signed, signed_headers)

FOURTH, FOURTH_SECRET = "teller", "s3cret-teller-client"  # no entry while the setting is set
KEYS = {CLIENT: SECRET, OTHER: OTHER_SECRET, FOURTH: FOURTH_SECRET}
SECOND = customer_account(2, "corporate")  # a second funded account of ours
BRANCH, PEER_BRANCH = "999100000027", "888200000023"
UNKNOWN = "P2026120799999999"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("read-scope"), api_keys=dict(KEYS),
                    settings={"api_balance_accounts": {CLIENT: ["*"], OTHER: ["*"]}}).start()

    def second(tx: Any) -> None:
        g.gw.ledger.open_customer_account(tx, SECOND, g.payer_name, "corporate", "2026-12-07")
        g.gw.ledger.deposit(tx, "test:deposit-2", SECOND, 10**10, "2026-12-07")
    g.loop.run(g.gw.store.run(second))
    try:
        yield g
    finally:
        g.stop()


def transfer(live: LiveGateway, account: str, amount: str) -> dict[str, Any]:
    """A BEPS credit: it stays accepted under the tests' still clock."""
    return {"payer_account": account, "payer_name": live.payer_name, "payer_bank": BRANCH,
            "payee_account": "6222000000000001", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH, "amount": amount, "urgency": "normal"}


def submit(live: LiveGateway, client: str, account: str, amount: str) -> str:
    r = post_signed(live.url, "/v1/transfers", json.dumps(transfer(live, account, amount))
                    .encode(), client, KEYS[client], **{"Idempotency-Key": f"{account}-{amount}"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def incoming_to(live: LiveGateway, outgoing: str, account: str) -> str:
    """An incoming payment to our `account` (a copy of an outgoing one, turned round)."""
    def work(tx: Any) -> str:
        row = payments_mod.get(tx, outgoing)
        row.update(id="I" + outgoing[1:], direction="in", client=None,
                   payer_account="6222000000000009", payer_bank=PEER_BRANCH,
                   payee_account=account, payee_bank=BRANCH)
        payments_mod.insert(tx, row)
        return row["id"]
    return live.loop.run(live.gw.store.run(work))


@pytest.fixture(scope="module")
def made(live) -> dict[str, str]:
    """OTHER's payments from both accounts and an incoming one to each; then OTHER's
    entry narrowed to the funded account alone."""
    ids = {"own_1": submit(live, OTHER, live.payer, "1.00"),
           "second_1": submit(live, OTHER, SECOND, "2.00"),
           "own_2": submit(live, OTHER, live.payer, "3.00"),
           "second_2": submit(live, OTHER, SECOND, "4.00"),
           "second_3": submit(live, OTHER, SECOND, "5.00")}
    ids["in_own"] = incoming_to(live, ids["own_1"], live.payer)
    ids["in_second"] = incoming_to(live, ids["second_1"], SECOND)
    live.gw.settings.api_balance_accounts[OTHER] = [live.payer[:12] + "*"]
    return ids


def get(live: LiveGateway, client: str, path: str) -> requests.Response:
    return requests.get(live.url + path, timeout=10,
                        headers=signed_headers(client, KEYS[client], "GET", path, b""))


def post(live: LiveGateway, client: str, path: str, body: Any) -> requests.Response:
    return post_signed(live.url, path, json.dumps(body).encode(), client, KEYS[client])


def as_unknown(answer: requests.Response, payment_id: str) -> tuple[int, str]:
    """The answer with the id it names put back as the unknown id, to compare with one."""
    return answer.status_code, answer.text.replace(payment_id, UNKNOWN)


@pytest.mark.parametrize("name", ["second_1", "in_second"])
def test_a_payment_outside_the_scope_reads_as_an_unknown_id(live, made, name) -> None:
    unknown = get(live, OTHER, f"/v1/transfers/{UNKNOWN}")
    outside = get(live, OTHER, f"/v1/transfers/{made[name]}")

    assert unknown.status_code == 404, unknown.text
    assert as_unknown(outside, made[name]) == (unknown.status_code, unknown.text)


@pytest.mark.parametrize("client, name", [(OTHER, "own_1"), (OTHER, "in_own"),
                                          (CLIENT, "in_second"), (FOURTH, "in_second")])
def test_a_payment_the_scope_covers_or_a_client_without_entry_reads_it(
        live, made, client, name) -> None:
    r = get(live, client, f"/v1/transfers/{made[name]}")

    assert (r.status_code, r.json().get("id")) == (200, made[name]), r.text


def pages(live: LiveGateway, client: str, limit: int) -> list[list[str]]:
    out, after = [], ""
    for _ in range(20):
        answer = get(live, client, f"/v1/transfers?limit={limit}{after}").json()
        out.append([t["id"] for t in answer["transfers"]])
        assert answer["count"] == len(out[-1])
        if answer["next_after"] is None:
            return out
        after = f"&after={answer['next_after']}"
    raise AssertionError(out)


def test_the_list_shows_only_the_payments_in_scope_in_full_pages(live, made) -> None:
    seen = {made["own_1"], made["own_2"], made["in_own"]}

    listed = pages(live, OTHER, 2)

    assert [len(page) for page in listed] == [2, 1]
    assert sorted(i for page in listed for i in page) == sorted(seen)
    assert {made["in_own"], made["in_second"]} <= {
        i for page in pages(live, CLIENT, 100) for i in page}


def test_a_payment_outside_the_scope_is_no_cursor(live, made) -> None:
    r = get(live, OTHER, f"/v1/transfers?after={made['second_2']}")

    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["code"] == "cursor_unknown"


@pytest.mark.parametrize("action", ["return", "cancel", "status-query", "exceptions"])
def test_acting_on_a_payment_outside_the_scope_is_refused_as_on_an_unknown_id(
        live, made, action) -> None:
    name = "in_second" if action == "return" else "second_3"
    path = "/v1/transfers/{}/" + action
    send = (lambda p: get(live, OTHER, p)) if action == "exceptions" else \
        (lambda p: post(live, OTHER, p, {"reason": "退回"} if action != "status-query"
                        else {}))
    before = live.query("SELECT state FROM payments WHERE id = ?", (made[name],))
    unknown = send(path.format(UNKNOWN))
    outside = send(path.format(made[name]))

    assert unknown.status_code == 404, unknown.text
    assert as_unknown(outside, made[name]) == (unknown.status_code, unknown.text)
    assert live.query("SELECT state FROM payments WHERE id = ?", (made[name],)) == before


def test_a_return_of_a_payment_in_scope_is_not_refused_as_unknown(live, made) -> None:
    r = post(live, OTHER, f"/v1/transfers/{made['in_own']}/return", {"reason": "退回"})

    assert r.status_code != 404, r.text
