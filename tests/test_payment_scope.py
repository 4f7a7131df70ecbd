"""With `api_balance_accounts` set, a core-system client pays only from the accounts its
entry covers, as it reads only their balances: a transfer, a batch item, a ready
message, a periodic credit paying from another account, or a debit collecting into one,
is refused 403 `account_outside_client_scope` before the ledger is asked. No refusal
then tells the client whether the account exists, is frozen or closed, or what it
holds (a funds refusal names the balance)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from gateway import ready
from ledger.testing import customer_account
from tests.api_support import (CLIENT, EXAMPLE_HOLDER, OTHER, OTHER_SECRET, SECRET,
                               LiveGateway, post_signed, ready_example)

THIRD, THIRD_SECRET = "audit", "s3cret-audit-client"  # an empty entry: no account
FOURTH, FOURTH_SECRET = "teller", "s3cret-teller-client"  # no entry while the setting is set
OWN = customer_account(1, "corporate")  # LiveGateway's funded payer
OUTSIDE = customer_account(2, "corporate")  # another customer's account, outside OTHER's
BRANCH, PEER_BRANCH = "999100000027", "888200000023"
KEYS = {CLIENT: SECRET, OTHER: OTHER_SECRET, THIRD: THIRD_SECRET, FOURTH: FOURTH_SECRET}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("payment-scope"), payer_name=EXAMPLE_HOLDER,
                    api_keys=dict(KEYS),
                    settings={"api_balance_accounts": {
                        CLIENT: ["*"], OTHER: [OWN[:12] + "*"], THIRD: []}}).start()

    def frozen(tx: Any) -> None:
        g.gw.ledger.open_customer_account(tx, OUTSIDE, "另一客户", "corporate", "2026-12-07")
        g.gw.ledger.freeze(tx, OUTSIDE, "2026-12-07")
    g.loop.run(g.gw.store.run(frozen))
    try:
        yield g
    finally:
        g.stop()


def post(live: LiveGateway, path: str, client: str, key: str, body: Any) -> requests.Response:
    return post_signed(live.url, path, json.dumps(body).encode(), client, KEYS[client],
                       **{"Idempotency-Key": key})


def transfer(account: str, **changes: Any) -> dict[str, Any]:
    return {"payer_account": account, "payer_name": EXAMPLE_HOLDER, "payer_bank": BRANCH,
            "payee_account": "6222000000000001", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH, "amount": "10.00", "urgency": "urgent", **changes}


def refusal(answer: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [(e["code"], e["path"], e["value"]) for e in answer["errors"]]


def payments(live: LiveGateway) -> int:
    return live.query("SELECT COUNT(*) FROM payments")[0][0]


@pytest.mark.parametrize("client, account", [
    (THIRD, OWN),  # funded: a funds refusal would name its balance
    (OTHER, OUTSIDE),  # frozen: account_frozen would tell it exists
    (OTHER, customer_account(9, "personal")),  # not ours: account_not_found would tell
    (FOURTH, OWN),
])
def test_a_transfer_from_outside_the_scope_tells_nothing_of_the_account(
        live: LiveGateway, client: str, account: str) -> None:
    """The reviewer's probe: a huge amount and a blank payee name, refused for those
    with the payer's funds told beside them; outside the scope only the scope is told."""
    before = payments(live)
    r = post(live, "/v1/transfers", client, f"probe-{client}-{account}",
             transfer(account, amount="999999999999.00", payee_name=""))

    assert (r.status_code, refusal(r.json())) == (
        403, [("account_outside_client_scope", "/payer_account", account)])
    assert "100000000.00" not in r.text and client in r.text
    assert payments(live) == before


def test_a_client_without_an_entry_is_told_it_has_none(live: LiveGateway) -> None:
    r = post(live, "/v1/transfers", FOURTH, "no-entry", transfer(OWN))

    assert r.status_code == 403
    assert "has no entry in api_balance_accounts" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize("client", [CLIENT, OTHER])
def test_a_client_pays_from_the_accounts_its_entry_covers(live: LiveGateway,
                                                          client: str) -> None:
    r = post(live, "/v1/transfers", client, f"own-{client}", transfer(OWN))

    assert r.status_code == 201, r.text


def test_within_the_scope_funds_are_still_told(live: LiveGateway) -> None:
    """The client may read this account's balance: the funds refusal stays as it was."""
    r = post(live, "/v1/transfers", OTHER, "own-huge",
             transfer(OWN, amount="999999999999.00", payee_name=""))

    assert r.status_code == 422
    assert "payer_funds_insufficient" in [e["code"] for e in r.json()["errors"]]


def test_a_batch_item_from_outside_the_scope_is_refused_alone(live: LiveGateway) -> None:
    before = payments(live)
    r = post(live, "/v1/transfers/batch", OTHER, "batch-mixed", [
        transfer(OWN), transfer(OUTSIDE, amount="999999999999.00")])
    results = r.json()["results"]

    assert r.status_code == 200, r.text
    assert [x["status"] for x in results] == [201, 403]
    assert refusal(results[1]) == [("account_outside_client_scope", "/1/payer_account",
                                    OUTSIDE)]
    assert payments(live) == before + 1


def test_a_ready_message_from_outside_the_scope_is_refused(live: LiveGateway) -> None:
    """The example message pays from OWN, which THIRD may not use; refused before its
    stored answer, its payer or its funds are read."""
    before = payments(live)
    r = post_signed(live.url, "/v1/messages", ready_example("2026120790000771"), THIRD,
                    THIRD_SECRET, **{"Content-Type": "application/xml"})

    assert (r.status_code, refusal(r.json())) == (
        403, [("account_outside_client_scope", ready.PATHS["debtor_account"], OWN)])
    assert payments(live) == before


def test_a_ready_message_within_the_scope_is_taken(live: LiveGateway) -> None:
    r = post_signed(live.url, "/v1/messages", ready_example("2026120790000772"), OTHER,
                    OTHER_SECRET, **{"Content-Type": "application/xml"})

    assert r.status_code == 201, r.text


def test_a_periodic_credit_from_outside_the_scope_is_refused(live: LiveGateway) -> None:
    body = {**transfer(OUTSIDE), "agreement": "AG-P"}
    del body["urgency"]
    r = post(live, "/v1/periodic-credits", OTHER, "periodic-outside", body)

    assert (r.status_code, refusal(r.json())) == (
        403, [("account_outside_client_scope", "/payer_account", OUTSIDE)])


def test_a_debit_collecting_into_an_account_outside_the_scope_is_refused(
        live: LiveGateway) -> None:
    body = {"creditor_account": OUTSIDE, "creditor_name": "另一客户",
            "creditor_bank": BRANCH, "debtor_account": "6222000000000001",
            "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH, "amount": "10.00",
            "agreement": "AG-1"}
    r = post(live, "/v1/debits", THIRD, "debit-outside", body)

    assert (r.status_code, refusal(r.json())) == (
        403, [("account_outside_client_scope", "/creditor_account", OUTSIDE)])
    assert "collect into" in r.json()["errors"][0]["message"]


def debit(account: str) -> dict[str, Any]:
    return {"creditor_account": account, "creditor_name": EXAMPLE_HOLDER,
            "creditor_bank": BRANCH, "debtor_account": "6222000000000001",
            "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH, "amount": "10.00",
            "agreement": "AG-1"}


@pytest.mark.parametrize("path, body", [
    ("/v1/transfers", transfer(OWN)),
    ("/v1/periodic-credits", {k: v for k, v in transfer(OWN, agreement="AG-P").items()
                              if k != "urgency"}),
    ("/v1/debits", debit(OWN)),
])
def test_a_body_of_another_type_naming_an_account_outside_the_scope_is_a_415(
        live: LiveGateway, path: str, body: dict[str, Any]) -> None:
    """The type is judged first: no stored answer is looked up for an account outside
    the scope, and the refusal is the type's, as for any new request of that type. The
    request is answered (as JSON, its account in the scope) and stored, the entry then
    narrowed to leave its account out, and the request sent again under its key as
    text/plain: within the scope the stored answer would be given."""
    raw = json.dumps(body).encode()
    key = f"typed-outside-{path}"

    def send(content_type: str) -> requests.Response:
        return post_signed(live.url, path, raw, OTHER, KEYS[OTHER],
                           **{"Idempotency-Key": key, "Content-Type": content_type})
    first = send("application/json")
    assert first.status_code in (201, 202), first.text
    assert send("text/plain").json() == first.json()  # in the scope: the stored answer

    scopes = live.gw.settings.api_balance_accounts
    entry = scopes[OTHER]
    scopes[OTHER] = [OUTSIDE]
    try:
        r = send("text/plain")
    finally:
        scopes[OTHER] = entry

    assert r.status_code == 415, r.text
    assert refusal(r.json())[0][0] == "unsupported_media_type"
