"""An internal transfer (the payee's account kept in our own ledger, settled there at
once) checks its payee as an incoming CNAPS credit is checked: the payee name must be
the account holder's (folded as the payer's name is), and the payee bank the branch
that keeps the account; the holder's name is never told to the payer."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import requests

from ledger.testing import customer_account
from tests.api_support import LiveGateway

PAYEE_HOLDER = "系统内收款人有限公司"
BRANCH, OTHER_BRANCH = "999100000027", "999100000035"  # both ours, one clearing account


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("internal-payee")).start()
    g.payee = customer_account(2, "corporate")

    def setup(tx: Any) -> None:
        g.gw.ledger.open_customer_account(tx, g.payee, PAYEE_HOLDER, "corporate",
                                          "2026-12-07")
    g.loop.run(g.gw.store.run(setup))
    yield g
    g.stop()


def body(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    out = {"payer_account": live.payer, "payer_name": live.payer_name, "payer_bank": BRANCH,
           "payee_account": live.payee, "payee_name": PAYEE_HOLDER, "payee_bank": BRANCH,
           "amount": "10.00"}
    out.update(changes)
    return out


def key(data: Any) -> str:
    return hashlib.sha256(repr(data).encode()).hexdigest()[:40]


def post(live: LiveGateway, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = requests.post(f"{live.url}/v1/transfers", json=data, timeout=10,
                      headers={"Idempotency-Key": key(data)})
    return r.status_code, r.json()


def payee_balance(live: LiveGateway) -> int:
    return live.loop.run(live.gw.store.run(lambda tx: live.gw.ledger.balance(tx, live.payee)))


@pytest.mark.parametrize("name", [PAYEE_HOLDER, "系统内收款人 有限公司",
                                  "系统内收款人有限公司".replace("有限", "有　限")])
def test_an_internal_transfer_to_the_holder_s_name_is_settled(live, name):
    """The payee's name as the books hold it, spaces (a full-width one too) aside."""
    before = payee_balance(live)
    status, answer = post(live, body(live, payee_name=name))

    assert status == 201, answer
    assert answer["channel"] == "internal" and answer["state"] == "settled"
    assert payee_balance(live) == before + 1000


@pytest.mark.parametrize("name", ["另一家公司", "系统内收款人"])
def test_an_internal_payee_name_not_the_holder_s_is_refused(live, name):
    """Another name, or a part of the holder's, is refused at /payee_name before any
    money moves; neither the refusal's expectation nor its message names the holder."""
    entries, before = live.entries(), payee_balance(live)
    status, answer = post(live, body(live, payee_name=name))

    assert status == 422
    assert [(e["code"], e["path"], e["value"]) for e in answer["errors"]] == [
        ("payee_name_differs_from_account_holder", "/payee_name", name)]
    assert PAYEE_HOLDER not in str(answer)
    assert live.entries() == entries and payee_balance(live) == before


def test_an_internal_payee_bank_must_be_the_account_s_branch(live):
    """999100000035 is ours and shares the clearing account, but the payee's account is
    kept at 999100000027: refused at /payee_bank, that branch named."""
    entries = live.entries()
    status, answer = post(live, body(live, payee_bank=OTHER_BRANCH))

    assert status == 422
    [problem] = answer["errors"]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "payee_bank_not_account_branch", "/payee_bank", OTHER_BRANCH)
    assert BRANCH in problem["expected"]
    assert live.entries() == entries


def test_every_problem_of_an_internal_transfer_is_told_together(live):
    """The payer's and the payee's problems come in one refusal."""
    status, answer = post(live, body(live, payer_name="别人", payee_name="别的收款人",
                                     payee_bank=OTHER_BRANCH))

    assert status == 422
    assert [(e["code"], e["path"]) for e in answer["errors"]] == [
        ("payer_name_differs_from_account_holder", "/payer_name"),
        ("payee_name_differs_from_account_holder", "/payee_name"),
        ("payee_bank_not_account_branch", "/payee_bank")]


def test_a_batch_item_to_an_internal_payee_is_checked_alone(live):
    """In a batch, the internal item with the wrong payee name is refused at its own
    pointer, the others taken."""
    items = [dict(body(live, payee_name="另一家公司", amount="1.00"), idempotency_key="bi-1"),
             dict(body(live, amount="1.00"), idempotency_key="bi-2")]
    r = requests.post(f"{live.url}/v1/transfers/batch", json=items, timeout=10)

    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert [(e["code"], e["path"]) for e in first["errors"]] == [
        ("payee_name_differs_from_account_holder", "/0/payee_name")]
    assert second["status"] == 201 and second["transfer"]["state"] == "settled"
