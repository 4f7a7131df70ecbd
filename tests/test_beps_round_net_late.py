"""A round's booking notice (saps.606) that came before some of its items (the NPC's
messages out of order: a PR03 or another bank's package some 100 ms after it) raises
`beps_round_net_differs`; once those items settle and our net for the round is the
NPC's, the gateway closes the alert, saying why; while the nets still differ it stays
open (gateway.beps.items.close_net_differs_if_agreed)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from gateway import critical, dialect, store
from gateway.beps import items, schema
from ledger.testing import fresh_books

NETTING_DATE, ROUND = "2026-12-14", "05"
NOW = datetime.fromisoformat("2026-12-14T10:00:00.100+08:00")
NPC_NET_FEN = 300_00 - 500_00  # the NPC: we receive 300.00 and pay 500.00


def books(settled: list[tuple[str, str, int]]) -> Any:
    """The round booked by the NPC with NPC_NET_FEN and its alert raised as the notice
    found only item `a` (we pay 500.00); the items `settled` (id, side, fen) since."""
    db, _ = fresh_books("sqlite:///:memory:")
    rows = [("a", "D", 500_00), *settled]
    with db.transaction() as tx:
        dialect.install(tx, store.SCHEMA)
        schema.install(tx)
        critical.install(tx)
        tx.execute("INSERT INTO beps_rounds (netting_date, netting_round, settled_on, "
                   "npc_net_fen, at) VALUES (?, ?, ?, ?, ?)",
                   (NETTING_DATE, ROUND, NETTING_DATE, NPC_NET_FEN, NOW.isoformat()))
        tx.executemany("INSERT INTO beps_items (payment_id, kind, side, counterparty, "
                       "msg_type, amount_fen, package_id, netting_date, netting_round, "
                       "settled_on, created_at) VALUES (?, 'credit_out', ?, '888200000015', "
                       "'beps.121.001.01', ?, 'pkg', ?, ?, ?, ?)",
                       [(pid, side, fen, NETTING_DATE, ROUND, NETTING_DATE, NOW.isoformat())
                        for pid, side, fen in rows])
        for netting_round in (ROUND, "06"):  # another round's alert is left alone
            tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?)", (
                NOW.isoformat(), items.ALERT_NET_DIFFERS, json.dumps({
                    "netting_date": NETTING_DATE, "netting_round": netting_round,
                    "ours_fen": -500_00, "npc_fen": NPC_NET_FEN,
                    "difference_fen": NPC_NET_FEN + 500_00, "mesg_id": "1"})))
    return db


# (items settled after the notice, whether the round's alert is closed)
CASES = [
    ([("b", "C", 300_00)], True),                       # the late package makes them agree
    ([("b", "C", 200_00)], False),                      # still 100.00 apart
    ([("b", "C", 200_00), ("c", "C", 100_00)], True),   # two late items, agreeing together
    ([("b", "C", 300_00), ("c", "D", 1_00)], False),    # one more than the NPC netted
]


@pytest.mark.parametrize("settled, agrees", CASES)
def test_the_alert_is_closed_only_when_the_late_items_make_the_nets_agree(
        settled: list[tuple[str, str, int]], agrees: bool) -> None:
    db = books(settled)

    with db.transaction() as tx:
        closed = items.close_net_differs_if_agreed(tx, NETTING_DATE, ROUND, NOW)
        acks = tx.query("SELECT a.detail, k.by, k.note FROM alerts a LEFT JOIN alert_acks k "
                        "ON k.alert_id = a.id ORDER BY a.id", ())

    by_round = {json.loads(d)["netting_round"]: (by, note) for d, by, note in acks}
    assert len(closed) == (1 if agrees else 0)
    assert by_round["06"] == (None, None)
    if agrees:
        by, note = by_round[ROUND]
        assert by == "gateway"
        assert note == (f"items of round {NETTING_DATE}/{ROUND} that arrived after its "
                        f"booking notice settled: our net is the NPC's ({NPC_NET_FEN} fen)")
    else:
        assert by_round[ROUND] == (None, None)
