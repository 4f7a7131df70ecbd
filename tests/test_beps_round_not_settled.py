"""A BEPS round netted but not settled through a whole HVPS day is raised at that day's
end (`beps_round_not_settled`), once per work date, naming each such round and what we
pay and receive in it; rounds settled, and rounds of the day itself (maybe netted after
its clearing window), are not."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from gateway import dialect, store
from gateway.beps import schema, settlement_watch
from ledger.testing import fresh_books

WORK_DATE = date(2026, 12, 14)  # a Monday: Saturday's and Sunday's rounds settle today


class AlertingGateway:
    """What the check needs of the gateway: alerts written to the alerts table."""

    def alert(self, tx: Any, code: str, **detail: Any) -> None:
        tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?)",
                   ("2026-12-14T17:30:00+08:00", code, json.dumps(detail, default=str)))


def books_with_rounds() -> Any:
    """Netted items: Saturday round 03 unsettled (we pay 500.00, receive 120.00),
    Saturday round 02 settled, Sunday round 01 unsettled (we receive 80.00), Monday
    round 04 unsettled (netted today)."""
    db, _ = fresh_books("sqlite:///:memory:")
    rows = [("a", "D", 500_00, "2026-12-12", "03", None),
            ("b", "C", 120_00, "2026-12-12", "03", None),
            ("c", "D", 999_00, "2026-12-12", "02", "2026-12-14"),
            ("d", "C", 80_00, "2026-12-13", "01", None),
            ("e", "D", 70_00, "2026-12-14", "04", None)]
    with db.transaction() as tx:
        dialect.install(tx, store.SCHEMA)
        schema.install(tx)
        tx.executemany("INSERT INTO beps_items (payment_id, kind, side, counterparty, "
                       "msg_type, amount_fen, package_id, netting_date, netting_round, "
                       "settled_on, created_at) VALUES (?, 'credit_out', ?, '888200000015', "
                       "'beps.121.001.01', ?, 'pkg', ?, ?, ?, '2026-12-12T10:00:00+08:00')",
                       rows)
    return db


def alerts(db: Any) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        return [json.loads(detail) for (detail,) in tx.query(
            "SELECT detail FROM alerts WHERE code = ?", (settlement_watch.ALERT,))]


def test_rounds_unsettled_through_the_hvps_day_are_raised_once() -> None:
    """At Monday's day end Saturday's round 03 and Sunday's round 01, still unsettled,
    are raised with what we pay and receive; a second run of the day end raises nothing
    more, and the next day end raises them again if they still have not settled."""
    db, gw = books_with_rounds(), AlertingGateway()

    with db.transaction() as tx:
        found = settlement_watch.check_at_day_end(tx, gw, WORK_DATE)
        settlement_watch.check_at_day_end(tx, gw, WORK_DATE)
    raised = alerts(db)
    with db.transaction() as tx:
        settlement_watch.check_at_day_end(tx, gw, date(2026, 12, 15))

    assert [(r["netting_date"], r["netting_round"]) for r in found] == [
        ("2026-12-12", "03"), ("2026-12-13", "01")]
    assert len(raised) == 1
    assert raised[0]["work_date"] == "2026-12-14" and raised[0]["count"] == 2
    assert (raised[0]["pay_fen"], raised[0]["receive_fen"]) == (500_00, 200_00)
    assert raised[0]["rounds"][0] == {"netting_date": "2026-12-12", "netting_round": "03",
                                      "items": 2, "pay_fen": 500_00, "receive_fen": 120_00,
                                      "net": "-380.00"}
    assert [a["work_date"] for a in alerts(db)] == ["2026-12-14", "2026-12-15"]
    assert alerts(db)[1]["count"] == 3  # Monday's round 04 joined them


def test_nothing_is_raised_when_every_earlier_round_settled() -> None:
    """Settled rounds and the day's own are not raised."""
    db, gw = books_with_rounds(), AlertingGateway()
    with db.transaction() as tx:
        tx.execute("UPDATE beps_items SET settled_on = '2026-12-14' WHERE netting_date < ?",
                   ("2026-12-14",))
        found = settlement_watch.check_at_day_end(tx, gw, WORK_DATE)

    assert found == [] and alerts(db) == []
