"""A batch's BEPS transfers taken together (gateway.bulk.accept_many): what each item
gets, and what the database holds after, is what the same transfers sent one by one
would give. A refused item leaves no row, no hold and no stored answer behind; a key
repeated inside the batch gets its first use's answer; a payer whose money runs out
part of the way through has exactly the items it covers held, in the batch's order."""

from __future__ import annotations

import json

import pytest

from ledger.testing import customer_account
from tests.api_support import CLIENT, SECRET, LiveGateway, post_signed

SHORT_PAYER = customer_account(2, "corporate")
SHORT_NAME = "短款客户"
SHORT_FUNDS_FEN = 10_000  # 100.00 yuan


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("bulk-accept"), api_keys={CLIENT: SECRET}).start()

    def short_payer(tx):
        g.gw.ledger.open_customer_account(tx, SHORT_PAYER, SHORT_NAME, "corporate",
                                          "2026-12-07")
        g.gw.ledger.deposit(tx, "test:deposit:short", SHORT_PAYER, SHORT_FUNDS_FEN,
                            "2026-12-07")
    g.loop.run(g.gw.store.run(short_payer))
    yield g
    g.stop()


def _item(live, amount: str, **extra) -> dict:
    return {"payer_account": live.payer, "payer_name": "示例客户",
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手", "payee_bank": "888200000023", "amount": amount,
            "urgency": "normal", **extra}


def _batch(live, items: list, key: str) -> list[dict]:
    r = post_signed(live.url, "/v1/transfers/batch", json.dumps(items).encode(),
                    **{"Idempotency-Key": key})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _count(live, sql: str, params: tuple) -> int:
    return live.query(sql, params)[0][0]


def _balance(live, account: str) -> int:
    return live.loop.run(live.gw.store.run(lambda tx: live.gw.ledger.balance(tx, account)))


def test_refused_items_leave_nothing_and_the_others_are_taken(live):
    items = [_item(live, "1.00"),
             _item(live, "2.00", payer_name="别人"),                       # not the holder
             _item(live, "3.00"),
             _item(live, "4.00", payer_account=customer_account(9, "corporate")),  # none
             _item(live, "5.00")]
    before = _balance(live, live.payer)
    results = _batch(live, items, "bulk-partial")

    assert [r["status"] for r in results] == [201, 422, 201, 422, 201]
    assert "payer_name_differs_from_account_holder" in [
        e["code"] for e in results[1]["errors"]]
    assert "account_not_found" in [e["code"] for e in results[3]["errors"]]
    taken = [r["transfer"]["id"] for r in results if r["status"] == 201]
    assert [r["transfer"]["amount_fen"] for r in results if r["status"] == 201] == \
        [100, 300, 500]
    # Only the accepted ones have rows, holds and stored answers.
    # (the batch's own record of its list, under KEY:batch, aside)
    keys = [row[0] for row in live.query(
        "SELECT key FROM idempotency WHERE client = ? AND key LIKE ?", (CLIENT, "bulk-partial:%"))]
    assert sorted(k for k in keys if k.split(":")[1].isascii() and k.split(":")[1].isdigit()) \
        == ["bulk-partial:0", "bulk-partial:2", "bulk-partial:4"]
    rows = live.query("SELECT id, hold_id FROM payments WHERE id IN (?, ?, ?)", tuple(taken))
    assert len(rows) == 3 and all(hold for _, hold in rows)
    assert _count(live, "SELECT COUNT(*) FROM beps_items WHERE payment_id IN (?, ?, ?)",
                  tuple(taken)) == 3
    assert before - _balance(live, live.payer) == 900

    # The same batch again: each item its first answer, nothing held twice.
    again = _batch(live, items, "bulk-partial")
    assert [r["status"] for r in again] == [201, 422, 201, 422, 201]
    assert [r["transfer"]["id"] for r in again if r["status"] == 201] == taken
    assert before - _balance(live, live.payer) == 900


def test_a_key_repeated_inside_the_batch_gets_its_first_answer(live):
    same = _item(live, "6.00", idempotency_key="bulk-repeat-a")
    other = _item(live, "7.00", idempotency_key="bulk-repeat-a")
    before = _balance(live, live.payer)
    results = _batch(live, [same, _item(live, "8.00"), dict(same), other], "bulk-repeat")

    assert [r["status"] for r in results] == [201, 201, 201, 409]
    assert results[2]["transfer"] == results[0]["transfer"]
    assert [e["code"] for e in results[3]["errors"]][0] == \
        "idempotency_key_reused_with_other_body"
    assert _count(live, "SELECT COUNT(*) FROM idempotency WHERE client = ? AND key = ?",
                  (CLIENT, "bulk-repeat-a")) == 1
    assert _count(live, "SELECT COUNT(*) FROM payments WHERE id = ?",
                  (results[0]["transfer"]["id"],)) == 1
    assert before - _balance(live, live.payer) == 1400  # 6.00 and 8.00, once each


def test_a_payer_short_of_funds_part_way_has_exactly_what_it_covers_held(live):
    short = {"payer_account": SHORT_PAYER, "payer_name": SHORT_NAME}
    items = [_item(live, "40.00", **short), _item(live, "1.00"),
             _item(live, "40.00", **short), _item(live, "40.00", **short),
             _item(live, "10.00", **short), _item(live, "20.00", **short)]
    results = _batch(live, items, "bulk-short")

    # In the batch's order, as one by one: 40 + 40 fit, the third 40 does not, 10 fits
    # what is left (20.00), then 20 no longer does (10.00 left).
    assert [r["status"] for r in results] == [201, 201, 201, 422, 201, 422]
    for refused in (results[3], results[5]):
        assert [e["code"] for e in refused["errors"]] == ["payer_funds_insufficient"]
        assert refused["errors"][0]["path"].startswith(f"/{refused['index']}/")
    assert _balance(live, SHORT_PAYER) == SHORT_FUNDS_FEN - 9_000
    held = live.query("SELECT p.amount_fen FROM payments p WHERE p.payer_account = ? "
                      "AND p.hold_id IS NOT NULL ORDER BY p.id", (SHORT_PAYER,))
    assert [amount for amount, in held] == [4_000, 4_000, 1_000]
    assert _count(live, "SELECT COUNT(*) FROM idempotency WHERE client = ? AND key IN "
                  "(?, ?)", (CLIENT, "bulk-short:3", "bulk-short:5")) == 0
