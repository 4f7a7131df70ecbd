"""A client's scope (`api_balance_accounts`, gateway.scope) judges an incoming payment
applied from suspense (销账) by the account its money went to, not the one its message
named: that account's is the money a return takes back. A payment named to an account
the entry covers but applied to one it does not is hidden (404 as an unknown id, left out
of the listing) and cannot be returned by the client; the other way round, it is seen,
listed and returned from the account it went to. The return itself refuses a client
whose entry does not cover the account it would take the money from."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway import payments as payments_mod
from gateway.errors import NotFound
from gateway.exceptions import returns
from gateway.exceptions import schema as exc_schema
from tests.test_payment_read_scope import (OTHER, SECOND, UNKNOWN, as_unknown, get,  # noqa: F401
                                           live, made, pages, post)

APPLIED_AT = dt.datetime(2026, 12, 7, 9, tzinfo=dt.timezone.utc)


def applied(live, outgoing: str, named: str, credited: str, prefix: str) -> str:
    """An incoming credit naming our account `named`, its suspense item applied to
    `credited` (a copy of an outgoing payment, turned round)."""
    def work(tx: Any) -> str:
        row = payments_mod.get(tx, outgoing)
        row.update(id=prefix + outgoing[1:], direction="in", client=None, state="credited",
                   payer_account="6222000000000009", payer_bank="888200000023",
                   payee_account=named, payee_bank="999100000027",
                   sender_direct="888200000023")
        payments_mod.insert(tx, row)
        exc_schema.add_applied(tx, row["id"], f"PN{prefix}", credited, 1, "op1", "applied",
                               APPLIED_AT)
        return row["id"]
    return live.loop.run(live.gw.store.run(work))


@pytest.fixture(scope="module")
def moved(live, made) -> dict[str, str]:
    """`away`: named to the account OTHER's entry covers, applied to SECOND, outside it;
    `here`: named to SECOND, applied to the covered account."""
    assert not SECOND.startswith(live.gw.settings.api_balance_accounts[OTHER][0][:-1])
    return {"away": applied(live, made["own_2"], live.payer, SECOND, "J"),
            "here": applied(live, made["second_2"], SECOND, live.payer, "K")}


def holds_of(live, payment_id: str) -> list[tuple[Any, ...]]:
    return live.query("SELECT p.id, p.payer_account FROM payments p JOIN exc_returns r "
                      "ON r.return_id = p.id WHERE r.original_id = ?", (payment_id,))


def test_a_payment_applied_outside_the_scope_reads_as_an_unknown_id(live, moved) -> None:
    unknown = get(live, OTHER, f"/v1/transfers/{UNKNOWN}")
    away = get(live, OTHER, f"/v1/transfers/{moved['away']}")

    assert unknown.status_code == 404, unknown.text
    assert as_unknown(away, moved["away"]) == (unknown.status_code, unknown.text)


def test_a_payment_applied_inside_the_scope_is_read(live, moved) -> None:
    r = get(live, OTHER, f"/v1/transfers/{moved['here']}")

    assert (r.status_code, r.json().get("id")) == (200, moved["here"]), r.text


def test_the_list_judges_an_applied_payment_by_the_account_credited(live, moved) -> None:
    listed = {i for page in pages(live, OTHER, 2) for i in page}

    assert moved["here"] in listed
    assert moved["away"] not in listed


def test_a_return_of_a_payment_applied_outside_the_scope_holds_nothing(live, moved) -> None:
    unknown = post(live, OTHER, f"/v1/transfers/{UNKNOWN}/return", {"reason": "退回"})
    away = post(live, OTHER, f"/v1/transfers/{moved['away']}/return", {"reason": "退回"})

    assert as_unknown(away, moved["away"]) == (unknown.status_code, unknown.text)
    assert holds_of(live, moved["away"]) == []


def test_the_return_itself_refuses_an_account_outside_the_scope(live, moved) -> None:
    """Whatever let the request through, the return does not take money from an account
    the client's entry does not cover."""
    gw = live.gw

    def work(tx: Any) -> None:
        returns.request_tx(gw, tx, moved["away"], "退回", f"core:{OTHER}", gw.clock.now(),
                           OTHER)
    with pytest.raises(NotFound) as refused:
        live.loop.run(gw.store.run(work))

    assert [p.code for p in refused.value.problems] == ["payment_not_found"]
    assert holds_of(live, moved["away"]) == []


def test_a_return_of_a_payment_applied_inside_the_scope_takes_from_it(live, moved) -> None:
    r = post(live, OTHER, f"/v1/transfers/{moved['here']}/return", {"reason": "退回"})

    assert r.status_code == 202, r.text
    assert holds_of(live, moved["here"]) == [(r.json()["return"]["id"], live.payer)]
