"""A client's scope (`api_balance_accounts`, gateway.scope) judges an incoming payment in
suspense (挂账) by where its money is, our suspense account, not by the account its
message named: the suspense account is no customer's, so only a client whose entry is
`*` (or that has no entry) sees it and may return it. A client limited to some accounts
is answered as for an id never given (404) when it reads, lists, queries or returns one
naming an account it covers, and the return itself refuses it; so too once the money
went back to the sender from suspense. Operators return it."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

import pytest

from gateway import payments as payments_mod
from gateway.errors import NotFound
from gateway.exceptions import returns
from gateway.exceptions import schema as exc_schema
from tests.api_support import post_signed
from tests.test_payment_read_scope import (BRANCH, CLIENT, FOURTH, KEYS,  # noqa: F401
                                           OTHER, UNKNOWN, as_unknown, get, live, made,
                                           pages, post)

AT = dt.datetime(2026, 12, 7, 9, tzinfo=dt.timezone.utc)
_ids = itertools.count(1)


def incoming(live, made, state: str) -> str:
    """An incoming credit naming the account OTHER's entry covers, in `state` (a copy of
    one of OTHER's payments, turned round)."""
    def work(tx: Any) -> str:
        row = payments_mod.get(tx, made["own_1"])
        row.update(id=f"S{next(_ids):03d}" + made["own_1"][4:], direction="in", client=None,
                   state=state, payer_account="6222000000000009", payer_bank="888200000023",
                   payee_account=live.payer, payee_bank=BRANCH,
                   sender_direct="888200000023", msg_id=f"77{next(_ids):014d}")
        payments_mod.insert(tx, row)
        return row["id"]
    return live.loop.run(live.gw.store.run(work))


def returned_from(live, made, via: str) -> str:
    """An incoming credit naming OTHER's covered account, sent back from `via` (suspense,
    or the account it was credited to), the return settled."""
    payment_id = incoming(live, made, "returned")

    def work(tx: Any) -> None:
        exc_schema.add_return(tx, f"RT{payment_id}", payment_id, "out", via, "settled",
                              "退回", "operator:op1", AT)
    live.loop.run(live.gw.store.run(work))
    return payment_id


def returns_of(live, payment_id: str) -> list[tuple[Any, ...]]:
    return live.query("SELECT return_id FROM exc_returns WHERE original_id = ?",
                      (payment_id,))


@pytest.fixture(scope="module")
def parked(live, made) -> str:
    return incoming(live, made, "suspense")


def test_a_payment_in_suspense_reads_as_unknown_to_a_limited_client(live, parked) -> None:
    unknown = get(live, OTHER, f"/v1/transfers/{UNKNOWN}")
    answer = get(live, OTHER, f"/v1/transfers/{parked}")

    assert unknown.status_code == 404, unknown.text
    assert as_unknown(answer, parked) == (unknown.status_code, unknown.text)
    assert parked not in {i for page in pages(live, OTHER, 100) for i in page}


@pytest.mark.parametrize("client", [CLIENT, FOURTH])
def test_a_client_of_every_account_or_of_none_in_particular_reads_it(
        live, parked, client) -> None:
    r = get(live, client, f"/v1/transfers/{parked}")

    assert (r.status_code, r.json().get("state")) == (200, "suspense"), r.text
    assert parked in {i for page in pages(live, client, 500) for i in page}


def test_a_limited_client_may_not_query_it(live, parked) -> None:
    def asked(payment_id: str) -> Any:
        body = json.dumps({"payment_id": payment_id, "content": "款项未到"}).encode()
        return post_signed(live.url, "/v1/queries", body, OTHER, KEYS[OTHER],
                           **{"Idempotency-Key": f"suspense-query-{payment_id}"})
    unknown = asked(UNKNOWN)
    answer = asked(parked)

    assert unknown.status_code == 404, unknown.text
    assert as_unknown(answer, parked) == (unknown.status_code, unknown.text)
    assert get(live, CLIENT, f"/v1/transfers/{parked}").json()["queries"] == []


def test_a_limited_client_may_not_return_it(live, parked) -> None:
    unknown = post(live, OTHER, f"/v1/transfers/{UNKNOWN}/return", {"reason": "退回"})
    answer = post(live, OTHER, f"/v1/transfers/{parked}/return", {"reason": "退回"})

    assert unknown.status_code == 404, unknown.text
    assert as_unknown(answer, parked) == (unknown.status_code, unknown.text)
    assert returns_of(live, parked) == []


def test_the_return_itself_refuses_a_limited_client(live, made) -> None:
    """Whatever let the request through, a return from suspense is refused to a client
    whose entry does not cover the suspense account, before anything is made."""
    payment_id = incoming(live, made, "suspense")
    gw = live.gw

    def work(tx: Any) -> None:
        returns.request_tx(gw, tx, payment_id, "退回", f"core:{OTHER}", gw.clock.now(),
                           OTHER)
    with pytest.raises(NotFound) as refused:
        live.loop.run(gw.store.run(work))

    assert [p.code for p in refused.value.problems] == ["payment_not_found"]
    assert returns_of(live, payment_id) == []


def test_a_client_with_no_entry_is_refused_at_the_account_it_sees(live, made) -> None:
    """It reads the payment (payee.account the account its message named) but may pay
    from no account: the refusal names that account, and says the money waits in
    suspense, not our suspense account it never saw."""
    payment_id = incoming(live, made, "suspense")
    shown = get(live, FOURTH, f"/v1/transfers/{payment_id}").json()["payee"]["account"]

    r = post(live, FOURTH, f"/v1/transfers/{payment_id}/return", {"reason": "退回"})

    assert r.status_code == 403, r.text
    (error,) = r.json()["errors"]
    assert (error["code"], error["path"], error["value"]) == (
        "account_outside_client_scope", "/payee/account", shown)
    assert "waits in our suspense account" in error["message"]
    assert returns_of(live, payment_id) == []


def test_a_client_of_every_account_returns_it(live, made) -> None:
    payment_id = incoming(live, made, "suspense")

    r = post(live, CLIENT, f"/v1/transfers/{payment_id}/return", {"reason": "退回"})

    assert r.status_code == 202, r.text
    assert returns_of(live, payment_id) == [(r.json()["return"]["id"],)]


def test_operators_return_it(live, made) -> None:
    payment_id = incoming(live, made, "suspense")
    gw = live.gw

    def work(tx: Any) -> dict[str, Any]:
        row, _ = returns.request_tx(gw, tx, payment_id, "退回", "operator:op1",
                                    gw.clock.now())
        return row

    made_row = live.loop.run(gw.store.run(work))

    assert returns_of(live, payment_id) == [(made_row["id"],)]
    assert made_row["payer_account"] == gw.ledger.internal_accounts["2241"]


def test_money_returned_from_suspense_stays_judged_by_the_suspense_account(
        live, made) -> None:
    from_suspense = returned_from(live, made, "suspense")
    from_account = returned_from(live, made, "account")

    hidden = get(live, OTHER, f"/v1/transfers/{from_suspense}")
    listed = {i for page in pages(live, OTHER, 100) for i in page}

    assert hidden.status_code == 404, hidden.text
    assert from_suspense not in listed
    assert get(live, OTHER, f"/v1/transfers/{from_account}").status_code == 200
    assert from_account in listed
    assert get(live, CLIENT, f"/v1/transfers/{from_suspense}").status_code == 200
