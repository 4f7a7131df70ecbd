"""With `api_balance_accounts` set, a client's action that moves a customer's money is
bounded as paying from that account is: a return takes the money from the account
credited (or our suspense account, which only `*` covers), a cancel gives it back to the
payer's; a client without an entry, which sees incoming payments and the gateway's own
but may pay from no account, is refused 403 `account_outside_client_scope` for either,
nothing held or changed.

A settled book transfer (系统内) another client submitted is shown to a client whose
entry covers its payee's account, as an incoming credit to that account is: read,
listed, its exceptions read, its history its settlement alone; acting on it (a return,
a cancel, a status query, a query) is its submitter's, 403
`payment_submitted_by_another_client`. One held, cancelled or refused stays its
submitter's alone, and a client without an entry does not see it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import requests

from gateway import payments as payments_mod
from ledger.testing import customer_account
from tests.api_support import (CLIENT, OTHER, OTHER_SECRET, SECRET, LiveGateway,
                               post_signed, signed_headers)

FOURTH, FOURTH_SECRET = "teller", "s3cret-teller"  # no entry while the setting is set
BRA, BRA_SECRET = "branch-a", "s3cret-branch-a"  # SECOND's client
KEYS = {CLIENT: SECRET, OTHER: OTHER_SECRET, FOURTH: FOURTH_SECRET, BRA: BRA_SECRET}
OWN = customer_account(1, "corporate")  # LiveGateway's funded payer: OTHER's
SECOND = customer_account(2, "corporate")  # BRA's
HOLDER = "系统内收款人"
BRANCH, PEER_BRANCH = "999100000027", "888200000023"
UNKNOWN = "P2026120799999999"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("money-actions"), api_keys=dict(KEYS),
                    settings={"api_balance_accounts": {
                        CLIENT: ["*"], OTHER: [OWN[:12] + "*"],
                        BRA: [SECOND[:12] + "*"]}}).start()

    def second(tx: Any) -> None:
        g.gw.ledger.open_customer_account(tx, SECOND, HOLDER, "corporate", "2026-12-07")
        g.gw.ledger.deposit(tx, "test:deposit-2", SECOND, 10**8, "2026-12-07")
    g.loop.run(g.gw.store.run(second))
    try:
        yield g
    finally:
        g.stop()


def post(live: LiveGateway, client: str, path: str, body: Any,
         key: str | None = None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return post_signed(live.url, path, json.dumps(body).encode(), client, KEYS[client],
                       **headers)


def get(live: LiveGateway, client: str, path: str) -> requests.Response:
    return requests.get(live.url + path, timeout=10,
                        headers=signed_headers(client, KEYS[client], "GET", path, b""))


def refusal(r: requests.Response) -> list[tuple[str, str, Any]]:
    return [(e["code"], e["path"], e["value"]) for e in r.json()["errors"]]


def transfer(live: LiveGateway, client: str, payee: str = "6222000000000001",
             payee_name: str = "对手客户", payee_bank: str = PEER_BRANCH) -> str:
    body = {"payer_account": OWN, "payer_name": live.payer_name, "payer_bank": BRANCH,
            "payee_account": payee, "payee_name": payee_name, "payee_bank": payee_bank,
            "amount": f"{next(_ids)}.00", "urgency": "normal"}
    r = post(live, client, "/v1/transfers", body, key=f"t-{next(_ids)}")
    assert r.status_code == 201, r.text
    return r.json()["id"]


def copy(live: LiveGateway, payment_id: str, **changes: Any) -> str:
    """A copy of a payment, changed (an incoming one, turned round, say)."""
    def work(tx: Any) -> str:
        row = payments_mod.get(tx, payment_id)
        row.update(id=f"C{next(_ids):03d}" + payment_id[4:], msg_id=f"77{next(_ids):014d}",
                   **changes)
        payments_mod.insert(tx, row)
        return row["id"]
    return live.loop.run(live.gw.store.run(work))


def incoming(live: LiveGateway, state: str) -> str:
    """An incoming credit to OWN in `state`."""
    return copy(live, transfer(live, OTHER), direction="in", client=None, state=state,
                payer_account="6222000000000009", payer_bank=PEER_BRANCH,
                payee_account=OWN, payee_bank=BRANCH, sender_direct=PEER_BRANCH)


def state_of(live: LiveGateway, payment_id: str) -> str:
    return live.query("SELECT state FROM payments WHERE id = ?", (payment_id,))[0][0]


def returns_of(live: LiveGateway, payment_id: str) -> list[Any]:
    return live.query("SELECT return_id FROM exc_returns WHERE original_id = ?",
                      (payment_id,))


def held(live: LiveGateway) -> int:
    gw = live.gw
    return live.loop.run(gw.store.run(
        lambda tx: gw.ledger.customer_balance(tx, OWN, gw.work_date).held_fen))


@pytest.mark.parametrize("state", ["credited", "suspense"])
def test_a_client_without_an_entry_returns_no_incoming_payment(live, state) -> None:
    """It reads the payment, but the return would take the money from an account it may
    not pay from: the customer's it was credited to, or our suspense account."""
    payment_id = incoming(live, state)
    holds = held(live)

    seen = get(live, FOURTH, f"/v1/transfers/{payment_id}")
    r = post(live, FOURTH, f"/v1/transfers/{payment_id}/return", {"reason": "退回"})

    assert seen.status_code == 200, seen.text
    assert r.status_code == 403, r.text
    assert [(c, p) for c, p, _ in refusal(r)] == [("account_outside_client_scope",
                                                   "/payee/account")]
    assert "has no entry in api_balance_accounts" in r.json()["errors"][0]["message"]
    assert (returns_of(live, payment_id), state_of(live, payment_id)) == ([], state)
    assert held(live) == holds


def test_a_client_whose_entry_covers_the_account_credited_returns_it(live) -> None:
    payment_id = incoming(live, "credited")

    r = post(live, OTHER, f"/v1/transfers/{payment_id}/return", {"reason": "退回"})

    assert r.status_code == 202, r.text
    assert returns_of(live, payment_id) == [(r.json()["return"]["id"],)]


def test_a_client_without_an_entry_cancels_no_payment_from_a_customers_account(
        live) -> None:
    """The gateway's own payment (no client's: an operator's test transfer, say) from our
    customer's account is seen by a client without an entry, not cancelled by it."""
    payment_id = transfer(live, OTHER)
    assert live.execute("UPDATE payments SET client = NULL WHERE id = ?", (payment_id,)) == 1
    before = state_of(live, payment_id)

    seen = get(live, FOURTH, f"/v1/transfers/{payment_id}")
    r = post(live, FOURTH, f"/v1/transfers/{payment_id}/cancel", {"reason": "撤销"})

    assert seen.status_code == 200, seen.text
    assert (r.status_code, refusal(r)) == (
        403, [("account_outside_client_scope", "/payer/account", OWN)])
    assert state_of(live, payment_id) == before == "accepted"


def test_a_client_whose_entry_covers_the_payer_cancels_its_own_payment(live) -> None:
    payment_id = transfer(live, OTHER)

    r = post(live, OTHER, f"/v1/transfers/{payment_id}/cancel", {"reason": "撤销"})

    assert r.status_code == 200, r.text
    assert state_of(live, payment_id) == "cancelled"


@pytest.fixture(scope="module")
def book(live) -> str:
    """OTHER's book transfer from OWN to BRA's SECOND, settled at once."""
    payment_id = transfer(live, OTHER, SECOND, HOLDER, BRANCH)
    assert state_of(live, payment_id) == "settled"
    return payment_id


def listed(live: LiveGateway, client: str) -> set[str]:
    out, after = set(), ""
    for _ in range(20):
        answer = get(live, client, f"/v1/transfers?limit=100{after}").json()
        out |= {t["id"] for t in answer["transfers"]}
        if answer["next_after"] is None:
            return out
        after = f"&after={answer['next_after']}"
    raise AssertionError(out)


@pytest.mark.parametrize("client", [BRA, CLIENT])
def test_a_book_transfer_to_a_covered_account_is_seen_as_a_credit(live, book, client) -> None:
    r = get(live, client, f"/v1/transfers/{book}")
    exceptions = get(live, client, f"/v1/transfers/{book}/exceptions")

    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["payee"]["account"]) == ("settled", SECOND)
    assert {e["state"] for e in r.json()["history"]} == {"settled"}
    assert book in listed(live, client)
    assert exceptions.status_code == 200, exceptions.text


def test_its_submitter_sees_its_whole_history(live, book) -> None:
    r = get(live, OTHER, f"/v1/transfers/{book}")

    assert [e["state"] for e in r.json()["history"]][0] == "accepted"


@pytest.mark.parametrize("action, body", [("cancel", {"reason": "撤销"}),
                                          ("return", {"reason": "退回"}),
                                          ("status-query", {})])
def test_acting_on_a_book_transfer_seen_as_a_credit_is_its_submitters(
        live, book, action, body) -> None:
    r = post(live, BRA, f"/v1/transfers/{book}/{action}", body)

    assert (r.status_code, refusal(r)) == (
        403, [("payment_submitted_by_another_client", "/id", book)])
    assert state_of(live, book) == "settled"


def test_a_query_about_it_is_its_submitters(live, book) -> None:
    r = post(live, BRA, "/v1/queries", {"payment_id": book, "content": "款项未到"},
             key=f"q-{book}")

    assert (r.status_code, refusal(r)) == (
        403, [("payment_submitted_by_another_client", "/payment_id", book)])


def test_a_client_without_an_entry_does_not_see_it(live, book) -> None:
    """It sees what it saw without the setting: its own payments and incoming ones."""
    unknown = get(live, FOURTH, f"/v1/transfers/{UNKNOWN}")
    r = get(live, FOURTH, f"/v1/transfers/{book}")

    assert (r.status_code, r.text.replace(book, UNKNOWN)) == (404, unknown.text)
    assert book not in listed(live, FOURTH)


@pytest.mark.parametrize("state", ["held", "cancelled"])
def test_a_book_transfer_that_credited_nothing_stays_its_submitters(
        live, book, state) -> None:
    payment_id = copy(live, book, state=state)

    r = get(live, BRA, f"/v1/transfers/{payment_id}")

    assert r.status_code == 404, r.text
    assert payment_id not in listed(live, BRA)
    assert get(live, OTHER, f"/v1/transfers/{payment_id}").status_code == 200
