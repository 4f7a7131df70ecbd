"""GET /v1/accounts/{account_id}/balance: a customer account as the gateway's ledger sees
it (ledger balance, money held for payments under way, available), read only, for the
core system's clients; an unknown account is not found, a malformed number refused."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests

from ledger.testing import customer_account
from tests.api_support import CLIENT, SECRET, LiveGateway, post_signed, signed_headers, two_clients

DEPOSIT_FEN = 10**10  # LiveGateway funds its payer with 100,000,000.00 yuan


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    yield from two_clients(tmp_path_factory, "account-balance")


def balance(live: LiveGateway, account: str, query: str = "",
            signed: bool = True) -> requests.Response:
    path = f"/v1/accounts/{quote(account)}/balance{query}"  # signed as sent
    headers = signed_headers(CLIENT, SECRET, "GET", path, b"") if signed else {}
    return requests.get(live.url + path, headers=headers, timeout=10)


def open_account(live: LiveGateway, account: str, deposit_fen: int = 0) -> None:
    def work(tx):
        live.gw.ledger.open_customer_account(tx, account, "余额测试", "corporate",
                                             "2026-12-07")
        if deposit_fen:
            live.gw.ledger.deposit(tx, f"test:{account}", account, deposit_fen, "2026-12-07")
    live.loop.run(live.gw.store.run(work))


def pay(live: LiveGateway, payer: str, amount: str, key: str) -> requests.Response:
    body = json.dumps({
        "payer_account": payer, "payer_name": "余额测试", "payer_bank": "999100000027",
        "payee_account": "6222000000000001", "payee_name": "B", "payee_bank": "888200000023",
        "amount": amount, "urgency": "urgent"}).encode()
    return post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": key})


def test_a_funded_account_has_all_its_money_available(live):
    """Nothing held: the ledger balance is all available, in fen and in yuan."""
    answer = balance(live, live.payer)
    view = answer.json()

    assert answer.status_code == 200, answer.text
    assert (view["account"], view["currency"], view["status"]) == (live.payer, "CNY", "open")
    assert (view["ledger_balance_fen"], view["held_fen"], view["available_fen"]) == (
        DEPOSIT_FEN, 0, DEPOSIT_FEN)
    assert (view["ledger_balance"], view["held"], view["available"]) == (
        "100000000.00", "0.00", "100000000.00")
    assert (view["holds"], view["work_date"]) == (0, "2026-12-07")


def test_money_held_for_payments_under_way_is_not_available(live):
    """Two payments accepted and not yet settled hold their amounts: the ledger balance
    keeps them, the available balance does not."""
    account = customer_account(7, "corporate")
    open_account(live, account, 500_000)
    accepted = [pay(live, account, amount, f"bal-{amount}") for amount in ("1200.00", "0.50")]
    view = balance(live, account).json()

    assert [a.status_code for a in accepted] == [201, 201], [a.text for a in accepted]
    assert (view["ledger_balance_fen"], view["held_fen"], view["available_fen"]) == (
        500_000, 120_050, 379_950)
    assert (view["held"], view["available"], view["holds"]) == ("1200.50", "3799.50", 2)


def test_a_frozen_account_has_nothing_available(live):
    account = customer_account(8, "corporate")
    open_account(live, account, 10_000)
    live.loop.run(live.gw.store.run(
        lambda tx: live.gw.ledger.freeze(tx, account, "2026-12-07")))
    view = balance(live, account).json()

    assert (view["status"], view["ledger_balance_fen"], view["available_fen"]) == (
        "frozen", 10_000, 0)
    assert view["frozen_until"] is not None


@pytest.mark.parametrize("account, status, code", [
    (customer_account(9, "corporate"), 404, "account_not_found"),  # well formed, not ours
    ("20000000001410300000014", 422, "account_id_malformed"),  # a wrong check digit
    ("2000000000141030000001３", 422, "account_id_malformed"),  # a full-width digit
    ("1234", 422, "account_id_malformed"),
    ("1101010001010001000000015", 422, "account_id_malformed"),  # 25 digits: internal
])
def test_an_unknown_or_malformed_account_is_refused(live, account: str, status: int,
                                                    code: str) -> None:
    answer = balance(live, account)

    assert (answer.status_code, [e["code"] for e in answer.json()["errors"]]) == (
        status, [code])
    assert answer.json()["errors"][0]["path"] == "/account_id"


def test_a_query_parameter_is_refused_with_a_malformed_account(live):
    """Every problem of the request at once, the account's first."""
    answer = balance(live, "1234", "?currency=CNY")

    assert [e["code"] for e in answer.json()["errors"]] == [
        "account_id_malformed", "query_parameter_unknown"]


def test_a_repeated_query_parameter_is_refused_with_every_value(live):
    """Given twice, a parameter is refused as the listings refuse one (every value
    shown, `query_parameter_repeated`), not told by its first value alone."""
    answer = balance(live, live.payer, "?currency=CNY&currency=USD")
    problems = [(e["code"], e["path"], e["value"]) for e in answer.json()["errors"]]

    assert answer.status_code == 422
    assert ("query_parameter_repeated", "?currency", ["CNY", "USD"]) in problems
    assert [code for code, _, _ in problems] == ["query_parameter_unknown",
                                                 "query_parameter_repeated"]


def test_a_balance_needs_a_client_s_credentials(live):
    answer = balance(live, live.payer, signed=False)

    assert (answer.status_code, answer.json()["errors"][0]["code"]) == (401, "client_unknown")
