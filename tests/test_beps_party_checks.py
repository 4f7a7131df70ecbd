"""Our own party on a BEPS request, as our bank checks it on a transfer: a periodic
credit's payer and a debit's creditor are held to the account the ledger keeps for them
(the holder's name, width, case and spaces aside; the branch that keeps the account), a
periodic credit goes out under the holder's name as the books write it, and its retry is
compared with the payer name folded as a transfer's is. A debit another bank sends us
naming a branch of ours that does not keep the payer's account is refused in our
receipt."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway import outbound
from gateway.beps import debits_in
from gateway.messages import beps128, codec
from gateway.messages.package import ReturnLimit, Transfer
from ledger.testing import customer_account
from tests.api_support import LiveGateway
from tests.beps_incoming_support import package, payee_books
from tests.beps_support import NOW
from tests.e2e_support import BANK

HOLDER = "示例二号服务有限公司"
BRANCH, OTHER_BRANCH, PEER_BRANCH = "999100000027", "999100000035", "888200000023"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("beps-party"), payer_name=HOLDER).start()
    yield g
    g.stop()


def post(live: LiveGateway, path: str, key: str, data: dict[str, Any]
         ) -> tuple[int, Any]:
    r = requests.post(f"{live.url}{path}", data=json.dumps(data), timeout=10,
                      headers={"Idempotency-Key": key, "Content-Type": "application/json"})
    return r.status_code, r.json()


def codes(answer: Any) -> list[tuple[str, str, Any]]:
    return [(e["code"], e["path"], e["value"]) for e in answer.get("errors", [])]


def key(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


def periodic(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    body = {"payer_account": live.payer, "payer_name": HOLDER, "payer_bank": BRANCH,
            "payee_account": "6222000000000002", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH, "amount": "20.00", "agreement": "AG-P"}
    return {**body, **changes}


PERIODIC_PAYERS = [
    # (payer name, payer bank, the refusals: (code, path) each)
    (HOLDER, BRANCH, []),
    (HOLDER + " ", BRANCH, []),
    ("示例二号 服务有限公司", BRANCH, []),
    ("完全不同的公司", BRANCH, [("payer_name_differs_from_account_holder", "/payer_name")]),
    (HOLDER, OTHER_BRANCH, [("payer_bank_not_account_branch", "/payer_bank")]),
    ("别人", OTHER_BRANCH, [("payer_name_differs_from_account_holder", "/payer_name"),
                          ("payer_bank_not_account_branch", "/payer_bank")]),
]


@pytest.mark.parametrize("name, bank, refused", PERIODIC_PAYERS)
def test_a_periodic_credits_payer_is_the_account_holder_at_its_branch(
        live: LiveGateway, name: str, bank: str, refused: list[tuple[str, str]]) -> None:
    """As a transfer's payer: the name the holder's (folded), the bank the account's
    branch; every refusal told at once, nothing held or recorded."""
    entries = live.entries()
    status, answer = post(live, "/v1/periodic-credits", key("payer", name, bank),
                          periodic(live, payer_name=name, payer_bank=bank))

    if not refused:
        assert status == 201, answer
    else:
        assert status == 422
        assert [(c, p) for c, p, _ in codes(answer)] == refused
        assert live.entries() == entries


def test_a_periodic_credit_goes_out_under_the_holders_name(live: LiveGateway) -> None:
    """A name typed with other spaces is the holder's; the payment (and so its beps.125)
    carries the holder's name as the books write it."""
    status, answer = post(live, "/v1/periodic-credits", "holder-name",
                          periodic(live, payer_name="示例二号　服务 有限公司"))

    assert status == 201, answer
    assert answer["payer"]["name"] == HOLDER
    assert live.query("SELECT payer_name FROM payments WHERE id = ?",
                      (answer["id"],))[0][0] == HOLDER


def test_a_periodic_credit_with_the_payer_short_of_funds_names_the_field(
        live: LiveGateway) -> None:
    """The hold's refusal at the request's own field, with a wrong name told beside it."""
    empty = customer_account(2, "corporate")
    live.loop.run(live.gw.store.run(lambda tx: live.gw.ledger.open_customer_account(
        tx, empty, HOLDER, "corporate", live.gw.work_date)))
    status, answer = post(live, "/v1/periodic-credits", "short-of-funds",
                          periodic(live, payer_account=empty, payer_name="别人"))

    assert status == 422
    assert sorted((c, p) for c, p, _ in codes(answer)) == [
        ("payer_funds_insufficient", "/amount"),
        ("payer_name_differs_from_account_holder", "/payer_name")]


LONG_HOLDER = " ".join(["甲乙"] * 21)  # 62 characters; 42 without its spaces


@pytest.fixture(scope="module")
def long_holder(live: LiveGateway) -> str:
    """An account held under LONG_HOLDER, funded."""
    number = customer_account(3, "corporate")

    def opened(tx: Any) -> None:
        live.gw.ledger.open_customer_account(tx, number, LONG_HOLDER, "corporate",
                                             live.gw.work_date)
        live.gw.ledger.deposit(tx, "long-name:deposit", number, 100_000_00,
                               live.gw.work_date)
    live.loop.run(live.gw.store.run(opened))
    return number


def refusal_of(live: LiveGateway, path: str, key: str, body: dict[str, Any]
               ) -> tuple[int, list[dict[str, Any]]]:
    """The status and errors of a request; a batch's one item's, paths without `/0`."""
    if path.endswith("/batch"):
        status, answer = post(live, path, key, [body])
        assert status == 200, answer
        (item,) = answer["results"]
        return item["status"], [{**e, "path": e["path"].removeprefix("/0")}
                                for e in item["errors"]]
    status, answer = post(live, path, key, body)
    return status, answer.get("errors", [])


@pytest.mark.parametrize("path", ["/v1/periodic-credits", "/v1/transfers",
                                  "/v1/transfers/batch"])
def test_a_holders_name_too_long_for_a_package_is_refused(live: LiveGateway,
                                                          long_holder: str,
                                                          path: str) -> None:
    """A name typed without the holder's spaces fits a BEPS package, the holder's it would
    go out under does not: refused by name, never cut, with the same error whichever
    request would build the BEPS message (a transfer routed to BEPS as a periodic
    credit): at the name typed, the account and the holder's length told."""
    body = periodic(live, payer_account=long_holder, payer_name="甲乙" * 21)
    if path != "/v1/periodic-credits":
        del body["agreement"]
        body["urgency"] = "normal"  # 20.00 yuan, normal: BEPS
    status, errors = refusal_of(live, path, key("long-holder", path), body)

    assert status == 422
    assert errors == [{
        "code": "name_too_long_for_beps", "path": "/payer_name", "value": "甲乙" * 21,
        "expected": "a payer whose account is held under a name of at most 60 characters, "
                    "the most a BEPS package carries",
        "message": f"account {long_holder} is held under a name of 62 characters, which "
                   "the credit would go out under"}]


def test_a_periodic_credit_retried_with_the_name_spaced_otherwise_is_the_same(
        live: LiveGateway) -> None:
    """The payer name is compared as it goes out (the holder's): the same request."""
    first = post(live, "/v1/periodic-credits", "retry-spaced", periodic(live))
    again = post(live, "/v1/periodic-credits", "retry-spaced",
                 periodic(live, payer_name=" " + HOLDER))

    assert first[0] == 201, first[1]
    assert again == first


def debit(live: LiveGateway, **changes: Any) -> dict[str, Any]:
    body = {"creditor_account": live.payer, "creditor_name": HOLDER,
            "creditor_bank": BRANCH, "debtor_account": "6222000000000001",
            "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH, "amount": "10.00",
            "agreement": "AG-1"}
    return {**body, **changes}


DEBIT_CREDITORS = [
    # (creditor name, creditor bank, creditor account, the refusals)
    (HOLDER, BRANCH, None, []),
    ("示例二号 服务有限公司", BRANCH, None, []),
    ("完全不同的公司", BRANCH, None,
     [("creditor_name_differs_from_account_holder", "/creditor_name")]),
    (HOLDER, OTHER_BRANCH, None, [("creditor_bank_not_account_branch", "/creditor_bank")]),
    (HOLDER, BRANCH, customer_account(9_876, "corporate"),
     [("account_not_found", "/creditor_account")]),
]


@pytest.mark.parametrize("name, bank, account, refused", DEBIT_CREDITORS)
def test_a_debits_creditor_is_the_account_holder_at_its_branch(
        live: LiveGateway, name: str, bank: str, account: str | None,
        refused: list[tuple[str, str]]) -> None:
    """Our customer collecting is checked as an internal transfer's payee is: an
    account of ours, its holder's name, the branch that keeps it; refused at intake,
    never sent to be credited to suspense when the payer bank has paid."""
    changes = {"creditor_name": name, "creditor_bank": bank}
    if account is not None:
        changes["creditor_account"] = account
    status, answer = post(live, "/v1/debits", key("debit", name, bank, account or ""),
                          debit(live, **changes))

    if not refused:
        assert status == 201, answer
    else:
        assert status == 422
        assert [(c, p) for c, p, _ in codes(answer)] == refused


def test_a_debit_to_a_closed_account_is_refused(live: LiveGateway) -> None:
    number = customer_account(9_877, "corporate")

    def closed(tx: Any) -> None:
        live.gw.ledger.open_customer_account(tx, number, HOLDER, "corporate",
                                             live.gw.work_date)
        live.gw.ledger.close_account(tx, number, live.gw.work_date)
    live.loop.run(live.gw.store.run(closed))
    status, answer = post(live, "/v1/debits", "closed-creditor",
                          debit(live, creditor_account=number))

    assert status == 422
    assert [(c, p) for c, p, _ in codes(answer)] == [("account_closed", "/creditor_account")]


def test_a_debit_naming_another_branch_of_ours_as_the_payers_bank_is_refused(
        tmp_path: Path) -> None:
    """Theirs (beps.127 in): the payer's bank is ours but not the branch that keeps the
    account, so the debit is refused in our receipt (PR09, RJ07) as any debit we do not
    pay is, nothing held; the same debit naming the account's branch is paid."""
    db, gw = payee_books(tmp_path, 1)
    gw.own_banks = frozenset({BANK, BRANCH, OTHER_BRANCH})
    payer = customer_account(100)
    with db.transaction() as tx:
        gw.ledger.deposit(tx, "funds", payer, 10_000, NOW.date())
        debits_in.add_mandate(tx, payer, "XY-1", NOW)
    transfers = [Transfer(f"20261212{n:08d}", "示例客户", payer, None, bank, PEER_BRANCH,
                          "示例燃气公司", "6222000000001234", None, 100, "B100", "02102",
                          agreement="XY-1")
                 for n, bank in enumerate((OTHER_BRANCH, BRANCH))]
    d = package("2026121200000011", transfers)
    d.obj = replace(d.obj, return_limit=ReturnLimit("03"))
    with db.transaction() as tx:
        out = debits_in.on_debit_package(tx, gw, d, NOW).outcome
        states = tx.query("SELECT state, reason FROM payments ORDER BY msg_id", ())
        mesg_id = tx.query_one("SELECT mesg_id FROM beps_packages WHERE msg_type = ?",
                               (beps128.MESSAGE_TYPE,))[0]
        receipt = codec.decode(outbound.archived_bytes(tx, beps128.MESSAGE_TYPE, mesg_id)).obj
        held = gw.ledger.customer_balance(tx, payer, NOW.date()).held_fen
    db.close()

    assert (out["paid"], out["refused"]) == (1, 1)
    assert [(s, (r or "")[:4]) for s, r in states] == [("rejected", "RJ07"), ("received", "")]
    assert [(line.status, line.reject_code) for line in receipt.lines] == [
        ("PR09", "RJ07"), ("PR02", None)]
    assert "does not keep the account" in receipt.lines[0].reject_info
    assert held == 100


@pytest.mark.parametrize("path, body, business_type", [
    ("/v1/periodic-credits", periodic, "E100"), ("/v1/debits", debit, "B100")])
def test_an_amount_over_the_beps_cap_is_told_in_yuan_with_the_cap(
        live: LiveGateway, path: str, body: Any, business_type: str) -> None:
    """The refusal shows the amount as the request wrote it, and the cap it is over."""
    status, answer = post(live, path, key("over-cap", path),
                          body(live, amount="50000.1"))

    (error,) = answer["errors"]
    assert status == 422
    assert (error["code"], error["path"], error["value"]) == (
        "amount_over_beps_limit", "/amount", "50000.1")
    assert "50000.00 yuan" in error["expected"] and business_type in error["expected"]
    assert "50000.10 yuan" in error["message"]


@pytest.mark.parametrize("named, answered", [
    ({}, None), ({"tx_id": None}, None), ({"tx_id": ""}, None),
    ({"tx_id": "2026120700000042"}, "2026120700000042")])
def test_a_stop_payment_answers_the_debit_it_names_or_null(
        live: LiveGateway, named: dict[str, Any], answered: str | None) -> None:
    """A stop of every debit under the agreement names no debit: its answer's tx_id is
    null, whether the request left it out, sent null or sent it empty."""
    status, answer = post(live, "/v1/debit-stops", key("stop", json.dumps(named)),
                          {"account": live.payer, "agreement": "AG-STOP",
                           "reason": "客户申请止付", **named})

    assert (status, answer["tx_id"]) == (201, answered)


@pytest.mark.parametrize("path, body, field", [
    ("/v1/debit-mandates", {"agreement": "AG-\u0000"}, "agreement"),
    ("/v1/debit-mandates", {"agreement": "AG\u200b1"}, "agreement"),
    ("/v1/debit-stops", {"agreement": "AG-STOP", "reason": "止付\u0007"}, "reason"),
    ("/v1/debit-stops", {"agreement": "AG\u202eSTOP", "reason": "止付"}, "agreement"),
])
def test_a_mandate_or_stop_with_control_or_invisible_characters_is_refused(
        live: LiveGateway, path: str, body: dict[str, Any], field: str) -> None:
    """As a transfer's texts are: 422 naming the field (a NUL is text PostgreSQL does
    not store at all; it is refused, not a server error)."""
    status, answer = post(live, path, key("unsafe", path, json.dumps(body)),
                          {"account": live.payer, **body})

    assert status == 422
    assert [(e["code"], e["path"]) for e in answer["errors"]] == [
        ("text_has_control_or_invisible_characters", f"/{field}")]
