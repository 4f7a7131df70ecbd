"""Our customers' debit mandates and stop-payments (gateway.beps.mandates) are bounded as
paying from the account is: with `api_balance_accounts` set, a client registers,
revokes, stops, lifts and lists them only on an account its entry covers (403
`account_outside_client_scope` before anything of the account is told, the rest of the
request unread); the account must be a customer account of ours, open for a new one;
the bodies are checked as every JSON endpoint's; the POSTs are idempotent by key. A
mandate another client could not register lets no peer bank's debit take the money,
and a stop it could not make blocks no debit the holder authorised."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gateway.beps import debits_in
from gateway.messages.package import ReturnLimit, Transfer
from ledger.testing import customer_account
from tests.api_support import (CLIENT, OTHER, OTHER_SECRET, SECRET, LiveGateway,
                               post_signed, signed_headers)
from tests.beps_incoming_support import package

FOURTH, FOURTH_SECRET = "teller", "s3cret-teller"  # no entry while the setting is set
KEYS = {CLIENT: SECRET, OTHER: OTHER_SECRET, FOURTH: FOURTH_SECRET}
OWN = customer_account(1, "corporate")  # LiveGateway's funded payer: OTHER's
OUTSIDE = customer_account(2, "corporate")  # another customer's, outside OTHER's entry
CLOSED = customer_account(3, "corporate")
FROZEN = customer_account(4, "corporate")
UNKNOWN = customer_account(9, "personal")  # no account of ours
BRANCH, PEER_BRANCH = "999100000027", "888200000023"
AGREEMENT = "XY-GAS-0001"
MANDATE, REVOKE = "/v1/debit-mandates", "/v1/debit-mandates/revoke"
STOP, LIFT = "/v1/debit-stops", "/v1/debit-stops/lift"
ROOT = Path(__file__).resolve().parents[1]
_keys = itertools.count(1)
_tx_ids = itertools.count(1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("mandate-scope"), api_keys=dict(KEYS),
                    settings={"api_balance_accounts": {CLIENT: ["*"],
                                                       OTHER: [OWN[:12] + "*"]}}).start()

    def accounts(tx: Any) -> None:
        for account in (OUTSIDE, CLOSED, FROZEN):
            g.gw.ledger.open_customer_account(tx, account, "另一客户", "corporate",
                                              "2026-12-07")
        g.gw.ledger.deposit(tx, "test:deposit-outside", OUTSIDE, 100_000_00, "2026-12-07")
        g.gw.ledger.close_account(tx, CLOSED, "2026-12-07")
        g.gw.ledger.freeze(tx, FROZEN, "2026-12-07")
    g.loop.run(g.gw.store.run(accounts))
    try:
        yield g
    finally:
        g.stop()


def post(live: LiveGateway, path: str, client: str, body: Any,
         key: str | None = None) -> requests.Response:
    headers = {} if key == "" else {"Idempotency-Key": key or f"m-{next(_keys)}"}
    return post_signed(live.url, path, json.dumps(body).encode(), client, KEYS[client],
                       **headers)


def get(live: LiveGateway, path: str, client: str) -> requests.Response:
    return requests.get(live.url + path, timeout=10,
                        headers=signed_headers(client, KEYS[client], "GET", path, b""))


def refusal(r: requests.Response) -> list[tuple[str, str, Any]]:
    return [(e["code"], e["path"], e["value"]) for e in r.json()["errors"]]


def kept(live: LiveGateway) -> tuple[int, int, int]:
    """The mandates, stops and changes recorded."""
    return tuple(live.query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in (
        "beps_mandates", "beps_debit_stops", "beps_mandate_events"))


def body(path: str, account: str, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"account": account, "agreement": AGREEMENT}
    if path == STOP:
        out["reason"] = "客户申请止付"
    return {**out, **more}


def debit(live: LiveGateway, account: str, amount_fen: int, agreement: str = AGREEMENT
          ) -> tuple[str, str | None]:
    """A peer bank's beps.127 debiting our `account` under `agreement`, answered as it
    arrives: the debit's state and reason."""
    tx_id = f"20261207{next(_tx_ids):08d}"
    transfers = [Transfer(tx_id, "另一客户", account, None, BRANCH, PEER_BRANCH,
                          "示例燃气公司", "6222000000001234", None, amount_fen, "B100",
                          "02102", agreement=agreement)]
    d = package(f"20261207{next(_tx_ids):08d}", transfers)
    d.obj = replace(d.obj, return_limit=ReturnLimit("03"))
    gw = live.gw

    def work(tx: Any) -> tuple[str, str | None]:
        debits_in.on_debit_package(tx, gw, d, gw.clock.now())
        return tx.query_one("SELECT state, reason FROM payments WHERE direction = 'in' AND "
                            "tx_id = ?", (tx_id,))
    return live.loop.run(gw.store.run(work))


def available(live: LiveGateway, account: str) -> int:
    gw = live.gw
    return live.loop.run(gw.store.run(
        lambda tx: gw.ledger.customer_balance(tx, account, gw.work_date).available_fen))


@pytest.mark.parametrize("path", [MANDATE, REVOKE, STOP, LIFT])
@pytest.mark.parametrize("client, account", [
    (OTHER, OUTSIDE),  # funded, another customer's
    (OTHER, CLOSED),  # account_closed would tell it exists
    (OTHER, UNKNOWN),  # account_not_found would tell
    (FOURTH, OWN),  # no entry: may pay from no account
])
def test_an_account_outside_the_scope_is_refused_before_anything_is_told(
        live: LiveGateway, path: str, client: str, account: str) -> None:
    """Whatever else the request gets wrong (an unknown member, no key), only the scope
    is told, and nothing is recorded."""
    before = kept(live)

    r = post(live, path, client, body(path, account, extra=1), key="")

    assert (r.status_code, refusal(r)) == (
        403, [("account_outside_client_scope", "/account", account)])
    assert kept(live) == before


def test_a_mandate_another_client_tried_lets_no_peer_debit_take_the_money(
        live: LiveGateway) -> None:
    """The attack: a client limited to its own customers' accounts registers a mandate on
    another customer's; the peer bank's debit under it finds none and is refused."""
    money = available(live, OUTSIDE)

    tried = post(live, MANDATE, OTHER, body(MANDATE, OUTSIDE))
    answered = debit(live, OUTSIDE, 4_999_900)

    assert tried.status_code == 403, tried.text
    assert answered == ("rejected", "RJ01: no mandate for this account and agreement")
    assert available(live, OUTSIDE) == money


def test_a_stop_another_client_tried_blocks_no_debit_the_holder_authorised(
        live: LiveGateway) -> None:
    registered = post(live, MANDATE, CLIENT, body(MANDATE, OUTSIDE))
    tried = post(live, STOP, OTHER, body(STOP, OUTSIDE))
    answered = debit(live, OUTSIDE, 100)

    assert registered.status_code == 201, registered.text
    assert tried.status_code == 403, tried.text
    assert answered == ("received", None)
    assert post(live, REVOKE, CLIENT, body(REVOKE, OUTSIDE)).status_code == 200


FIELD_CASES = [
    # (path, changes to a good body, the refusals: (code, path) each)
    (MANDATE, {"extra": 1}, [("field_unknown", "/extra")]),
    (STOP, {"extra": 1}, [("field_unknown", "/extra")]),
    (REVOKE, {"reason": "x"}, [("field_unknown", "/reason")]),
    (LIFT, {"reason": "x"}, [("field_unknown", "/reason")]),
    (MANDATE, {"agreement": None}, [("field_required", "/agreement")]),
    (MANDATE, {"agreement": "  "}, [("field_required", "/agreement")]),
    (STOP, {"reason": ""}, [("field_required", "/reason")]),
    (MANDATE, {"agreement": 7}, [("field_must_be_text", "/agreement")]),
    (MANDATE, {"agreement": "A" * 61}, [("agreement_malformed", "/agreement")]),
    (STOP, {"reason": "因" * 61}, [("stop_reason_malformed", "/reason")]),
    (STOP, {"tx_id": "12ab"}, [("field_malformed", "/tx_id")]),
    (LIFT, {"tx_id": 12}, [("field_must_be_text", "/tx_id")]),
]


@pytest.mark.parametrize("path, changes, refused", FIELD_CASES)
def test_a_body_is_checked_as_every_json_endpoints(
        live: LiveGateway, path: str, changes: dict[str, Any],
        refused: list[tuple[str, str]]) -> None:
    before = kept(live)

    r = post(live, path, CLIENT, body(path, OWN, **changes))

    assert [(c, p) for c, p, _ in refusal(r)] == refused, r.text
    assert kept(live) == before


def test_a_malformed_account_is_told_so(live: LiveGateway) -> None:
    r = post(live, MANDATE, CLIENT, body(MANDATE, "200-00#1"))

    assert (r.status_code, refusal(r)) == (422, [("account_malformed", "/account",
                                                  "200-00#1")])


@pytest.mark.parametrize("path", [MANDATE, STOP])
@pytest.mark.parametrize("account, code", [(UNKNOWN, "account_not_found"),
                                           (CLOSED, "account_closed")])
def test_a_new_mandate_or_stop_needs_an_open_account_of_ours(
        live: LiveGateway, path: str, account: str, code: str) -> None:
    before = kept(live)

    r = post(live, path, CLIENT, body(path, account))

    assert (r.status_code, refusal(r)) == (422, [(code, "/account", account)])
    assert kept(live) == before


def test_a_frozen_account_takes_a_mandate(live: LiveGateway) -> None:
    """The freeze refuses the debits themselves while it lasts (RJ03)."""
    r = post(live, MANDATE, CLIENT, body(MANDATE, FROZEN))

    assert (r.status_code, r.json()["new"]) == (201, True), r.text


def test_a_mandate_needs_a_key_and_a_retry_gets_the_first_answer(live: LiveGateway) -> None:
    mandate = body(MANDATE, OWN, agreement="XY-KEYED")
    keyless = post(live, MANDATE, OTHER, mandate, key="")
    first = post(live, MANDATE, OTHER, mandate, key="keyed-mandate")
    again = post(live, MANDATE, OTHER, mandate, key="keyed-mandate")
    other = post(live, MANDATE, OTHER, {**mandate, "agreement": "XY-OTHER"},
                 key="keyed-mandate")
    fresh = post(live, MANDATE, OTHER, mandate)

    assert (keyless.status_code, refusal(keyless)[0][0]) == (400, "idempotency_key_required")
    assert (first.status_code, first.json()["new"]) == (201, True)
    assert (again.status_code, again.json()) == (201, first.json())
    assert other.status_code == 409
    assert [(c, p) for c, p, _ in refusal(other)] == [
        ("idempotency_key_reused_with_other_body", "Idempotency-Key"),
        ("idempotency_key_reused_with_other_body", "/agreement")]
    assert (fresh.status_code, fresh.json()["new"]) == (201, False)


def _documented_row(path: str) -> str:
    """The row of docs/beps.md's table of mandate and stop endpoints for `POST path`."""
    text = (ROOT / "docs" / "beps.md").read_text(encoding="utf-8")
    return next(line for line in text.splitlines() if line.startswith(f"| `POST {path}` |"))


@pytest.mark.parametrize("path", [MANDATE, REVOKE, STOP, LIFT])
def test_every_mandate_and_stop_post_needs_a_key_as_documented(live: LiveGateway,
                                                               path: str) -> None:
    """Each POST without an Idempotency-Key is refused 400 idempotency_key_required and
    changes nothing; docs/beps.md's table and openapi.yaml both say the header is
    required, so a client reading either sends it."""
    before = kept(live)
    keyless = post(live, path, CLIENT, body(path, OWN, agreement="XY-NO-KEY"), key="")
    spec = yaml.safe_load((ROOT / "gateway" / "openapi.yaml").read_text(encoding="utf-8"))
    headers = {p["name"]: p.get("required") for p in spec["paths"][path]["post"]["parameters"]
               if p["in"] == "header"}
    row = _documented_row(path)

    assert (keyless.status_code, refusal(keyless)[0][:2]) == (
        400, ("idempotency_key_required", "Idempotency-Key"))
    assert kept(live) == before
    assert headers.get("Idempotency-Key") is True
    assert "`Idempotency-Key` (required)" in row and "`idempotency_key_required`" in row


def test_a_key_taken_by_a_transfer_is_not_a_mandates(live: LiveGateway) -> None:
    transfer = {"payer_account": OWN, "payer_name": live.payer_name, "payer_bank": BRANCH,
                "payee_account": "6222000000000001", "payee_name": "对手客户",
                "payee_bank": PEER_BRANCH, "amount": "1.00", "urgency": "normal"}
    paid = post(live, "/v1/transfers", OTHER, transfer, key="shared-key")
    r = post(live, MANDATE, OTHER, body(MANDATE, OWN), key="shared-key")

    assert paid.status_code == 201, paid.text
    assert (r.status_code, refusal(r)[0][0]) == (409, "idempotency_key_used_for_other_kind")
    assert r.json()["errors"][0]["kind"] == "debit_mandate"


def test_a_revoked_mandate_pays_no_more_debits(live: LiveGateway) -> None:
    registered = post(live, MANDATE, OTHER, body(MANDATE, OWN))
    paid = debit(live, OWN, 100)
    revoked = post(live, REVOKE, OTHER, body(REVOKE, OWN))
    refused = debit(live, OWN, 100)
    listed = get(live, f"{MANDATE}?account={OWN}", OTHER).json()["mandates"]
    again = post(live, REVOKE, OTHER, body(REVOKE, OWN))

    assert registered.status_code == 201, registered.text
    assert paid == ("received", None)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] and revoked.json()["agreement"] == AGREEMENT
    assert refused == ("rejected", "RJ01: no mandate for this account and agreement")
    assert AGREEMENT not in [m["agreement"] for m in listed]
    assert (again.status_code, refusal(again)) == (
        404, [("mandate_not_found", "/agreement", AGREEMENT)])
    assert live.query("SELECT event, client FROM beps_mandate_events WHERE account_no = ? "
                      "AND agreement_no = ? ORDER BY at, event", (OWN, AGREEMENT)) == [
        ("mandate_registered", OTHER), ("mandate_revoked", OTHER)]


def test_a_lifted_stop_lets_the_debits_through_again(live: LiveGateway) -> None:
    agreement = {"agreement": "XY-LIFT"}
    post(live, MANDATE, OTHER, body(MANDATE, OWN, **agreement))
    stopped = post(live, STOP, OTHER, body(STOP, OWN, **agreement))
    listed = get(live, f"{STOP}?account={OWN}", OTHER).json()["stops"]
    lifted = post(live, LIFT, OTHER, body(LIFT, OWN, tx_id=None, **agreement))
    again = post(live, LIFT, OTHER, body(LIFT, OWN, **agreement))
    one = post(live, LIFT, OTHER, body(LIFT, OWN, tx_id="2026120700000001", **agreement))

    assert (stopped.status_code, stopped.json()["tx_id"]) == (201, None), stopped.text
    assert [(s["agreement"], s["tx_id"], s["reason"]) for s in listed] == [
        ("XY-LIFT", None, "客户申请止付")]
    assert (lifted.status_code, lifted.json()["reason"]) == (200, "客户申请止付")
    assert get(live, f"{STOP}?account={OWN}", OTHER).json()["stops"] == []
    assert (again.status_code, refusal(again)) == (
        404, [("debit_stop_not_found", "/agreement", "XY-LIFT")])
    assert (one.status_code, refusal(one)) == (
        404, [("debit_stop_not_found", "/tx_id", "2026120700000001")])


@pytest.mark.parametrize("client, account, status", [
    (OTHER, OWN, 200), (CLIENT, OUTSIDE, 200), (OTHER, OUTSIDE, 403), (FOURTH, OWN, 403),
    (OTHER, UNKNOWN, 403), (CLIENT, UNKNOWN, 404)])
@pytest.mark.parametrize("path", [MANDATE, STOP])
def test_the_listings_are_bounded_by_the_scope(
        live: LiveGateway, path: str, client: str, account: str, status: int) -> None:
    r = get(live, f"{path}?account={account}", client)

    assert r.status_code == status, r.text
    if status == 403:
        assert refusal(r) == [("account_outside_client_scope", "?account", account)]


def test_a_listing_names_its_account(live: LiveGateway) -> None:
    missing = get(live, MANDATE, CLIENT)
    unknown = get(live, f"{MANDATE}?acct={OWN}", CLIENT)

    assert (missing.status_code, refusal(missing)) == (
        422, [("query_parameter_required", "?account", None)])
    assert [c for c, _, _ in refusal(unknown)] == ["query_parameter_unknown",
                                                    "query_parameter_required"]


def test_an_agreement_is_kept_without_its_surrounding_spaces_as_a_debits_is_read(
        live: LiveGateway) -> None:
    """A debit's AgrmtNb is read without the spaces around it: so is a mandate's."""
    registered = post(live, MANDATE, OTHER, {"account": OWN, "agreement": "  XY-SPACES  "})
    listed = get(live, f"{MANDATE}?account={OWN}", OTHER).json()["mandates"]
    paid = debit(live, OWN, 1_00, "XY-SPACES")
    revoked = post(live, REVOKE, OTHER, {"account": OWN, "agreement": "XY-SPACES\u3000"})

    assert (registered.status_code, registered.json()["agreement"]) == (201, "XY-SPACES")
    assert "XY-SPACES" in [m["agreement"] for m in listed]
    assert paid == ("received", None)
    assert revoked.status_code == 200, revoked.text


def test_a_stop_in_force_asked_again_with_another_reason_names_the_reason_in_force(
        live: LiveGateway) -> None:
    agreement = {"agreement": "XY-REASON"}
    first = post(live, STOP, OTHER, body(STOP, OWN, **agreement))
    same = post(live, STOP, OTHER, body(STOP, OWN, **agreement))
    before = kept(live)
    other = post(live, STOP, OTHER, body(STOP, OWN, reason="账户挂失", **agreement))
    listed = get(live, f"{STOP}?account={OWN}", OTHER).json()["stops"]

    assert (first.status_code, first.json()["new"]) == (201, True), first.text
    assert (same.status_code, same.json()["new"], same.json()["reason"]) == (
        201, False, "客户申请止付")
    assert (other.status_code, refusal(other)) == (
        409, [("debit_stop_in_force_with_other_reason", "/reason", "账户挂失")])
    assert "客户申请止付" in other.json()["errors"][0]["expected"]
    assert kept(live) == before
    assert [s["reason"] for s in listed if s["agreement"] == "XY-REASON"] == ["客户申请止付"]
