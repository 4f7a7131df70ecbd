"""GET /v1/packages/{id} shows a client only the transactions it sees (gateway.scope:
with client credentials its own payments and incoming ones, and with an entry in
`api_balance_accounts` those on an account of ours the entry covers); a package holding
none of them answers exactly as an id never given (404 package_not_found)."""

from __future__ import annotations

import itertools
from typing import Any

import requests

from tests.test_payment_read_scope import (CLIENT, FOURTH, OTHER, get, live, made,  # noqa: F401
                                           submit)

UNKNOWN_PACKAGE = "999100000027" + "2026120799999999"
_numbers = itertools.count(1)


def packed(live, *payment_ids: str) -> str:
    """A package of ours, sent, holding the payments (each a BEPS credit waiting)."""
    package_id = f"9991000000272026120780{next(_numbers):06d}"

    def work(tx: Any) -> None:
        total = sum(tx.query_one("SELECT amount_fen FROM payments WHERE id = ?", (p,))[0]
                    for p in payment_ids)
        tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, "
                   "receiver, count, total_fen, state, created_at, updated_at) VALUES "
                   "(?, 'out', 'beps.122.001.01', ?, '999100000027', '888200000023', ?, ?, "
                   "'sent', '2026-12-07T09:00:00+08:00', '2026-12-07T09:00:00+08:00')",
                   (package_id, package_id[12:], len(payment_ids), total))
        for p in payment_ids:
            tx.execute("UPDATE beps_items SET package_id = ? WHERE payment_id = ?",
                       (package_id, p))
    live.loop.run(live.gw.store.run(work))
    return package_id


def shown(answer: requests.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [t["id"] for t in answer.json()["transactions"]]


def test_a_package_shows_each_client_only_the_transactions_it_sees(live, made) -> None:
    theirs = submit(live, CLIENT, live.payer, "6.06")
    package = packed(live, made["own_1"], made["second_1"], theirs)

    assert shown(get(live, OTHER, f"/v1/packages/{package}")) == [made["own_1"]]
    assert shown(get(live, CLIENT, f"/v1/packages/{package}")) == [theirs]
    # The count and sum are those of the transactions shown: the package's own would
    # let a client work out the amounts of the others'.
    seen = get(live, CLIENT, f"/v1/packages/{package}").json()
    assert (seen["count"], seen["total_fen"], seen["amount"]) == (1, 606, "6.06")


def test_a_package_of_no_transaction_the_client_sees_reads_as_unknown(live, made) -> None:
    package = packed(live, made["second_2"])
    unknown = get(live, OTHER, f"/v1/packages/{UNKNOWN_PACKAGE}")

    assert unknown.status_code == 404, unknown.text
    for client in (OTHER, FOURTH, CLIENT):
        hidden = get(live, client, f"/v1/packages/{package}")
        assert (hidden.status_code, hidden.text.replace(package, UNKNOWN_PACKAGE)) == (
            unknown.status_code, unknown.text), client
