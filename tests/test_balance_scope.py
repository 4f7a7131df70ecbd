"""With `api_balance_accounts` set, a core-system client reads the balances of the
accounts its entry names (an account number, a prefix ending in `*`, or `*` for all)
and no other: any other is 403 `balance_read_forbidden`, told before whether the account
exists, so that a client cannot learn which accounts we hold. Without the setting every
signed client reads every account, as before."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest
import requests

from gateway import config
from gateway.errors import PaygateError
from ledger.testing import customer_account
from tests.api_support import CLIENT, OTHER, OTHER_SECRET, SECRET, LiveGateway, signed_headers

THIRD, THIRD_SECRET = "audit", "s3cret-audit-client"
OWN = customer_account(1, "corporate")  # LiveGateway's funded payer
OWN_PREFIX = OWN[:12]  # the customer number: every account of that customer


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("balance-scope"),
                    api_keys={CLIENT: SECRET, OTHER: OTHER_SECRET, THIRD: THIRD_SECRET},
                    settings={"api_balance_accounts": {
                        CLIENT: ["*"], OTHER: [OWN_PREFIX + "*"], THIRD: []}}).start()
    try:
        yield g
    finally:
        g.stop()


def balance(live: LiveGateway, client: str, secret: str, account: str) -> requests.Response:
    path = f"/v1/accounts/{quote(account)}/balance"
    return requests.get(live.url + path, timeout=10,
                        headers=signed_headers(client, secret, "GET", path, b""))


def test_a_client_allowed_every_account_reads_any(live):
    answer = balance(live, CLIENT, SECRET, OWN)

    assert (answer.status_code, answer.json()["account"]) == (200, OWN)


def test_a_client_reads_the_accounts_its_prefix_covers(live):
    answer = balance(live, OTHER, OTHER_SECRET, OWN)

    assert (answer.status_code, answer.json()["account"]) == (200, OWN)


@pytest.mark.parametrize("account", [
    customer_account(2, "corporate"),  # ours? not told: outside the prefix either way
    customer_account(9, "personal"),
])
def test_an_account_outside_the_client_s_entry_is_forbidden(live, account: str) -> None:
    answer = balance(live, OTHER, OTHER_SECRET, account)
    problem = answer.json()["errors"][0]

    assert (answer.status_code, problem["code"], problem["path"], problem["value"]) == (
        403, "balance_read_forbidden", "/account_id", account)
    assert OTHER in problem["message"] and "api_balance_accounts" in problem["message"]


def test_a_client_with_an_empty_entry_reads_nothing(live):
    answer = balance(live, THIRD, THIRD_SECRET, OWN)

    assert (answer.status_code, answer.json()["errors"][0]["code"]) == (
        403, "balance_read_forbidden")


def test_an_unknown_account_is_still_not_found_for_a_client_allowed_all(live):
    answer = balance(live, CLIENT, SECRET, customer_account(9, "personal"))

    assert (answer.status_code, answer.json()["errors"][0]["code"]) == (
        404, "account_not_found")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PAYGATE_") or n == "REDIS_URL"]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("value, keys", [
    ({"nobody": ["*"]}, {CLIENT: SECRET}),  # a client api_keys does not know
    ({CLIENT: ["*"]}, {}),  # no api_keys: no client to name
    ({CLIENT: "*"}, {CLIENT: SECRET}),  # not a list
    ({CLIENT: [""]}, {CLIENT: SECRET}),
    ({CLIENT: ["12*34"]}, {CLIENT: SECRET}),  # a star only at the end
    (["*"], {CLIENT: SECRET}),
])
def test_a_malformed_setting_is_refused_at_start(clean_environment, value, keys) -> None:
    with pytest.raises(PaygateError) as refused:
        config.load(overrides={"api_balance_accounts": value, "api_keys": keys})

    assert [(p.code, p.path) for p in refused.value.problems] == [
        ("setting_malformed", "api_balance_accounts")]


def test_without_the_setting_a_client_still_reads_every_account(clean_environment) -> None:
    settings = config.load(overrides={"api_keys": {CLIENT: SECRET}})

    assert settings.api_balance_accounts == {}
