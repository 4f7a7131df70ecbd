"""Which payments queued at the NPC the sweep asks about (ccms.316), and why: queued
without news for `queued_query_after_s`, or of any age once the NPC's day has ended or
our work date has moved past the day they were queued on; never while a question is
open or was just asked; at most `queued_queries_per_sweep_max` per pass, oldest news
first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest

from gateway import payments
from gateway.exceptions import schema, status
from tests.beps_support import NOW, credit_row, held_items

TODAY = NOW.date().isoformat()
EARLIER = (NOW.date() - timedelta(days=1)).isoformat()


@dataclass(frozen=True)
class Settings:
    queued_query_after_s: float = 600.0
    queued_queries_per_sweep_max: int = 20


@dataclass
class Gw:
    work_date: date
    hvps_status: str = "10"
    settings: Settings = field(default_factory=Settings)


def queued(n: int, minutes_ago: float, work_date: str = TODAY, state: str = "queued",
           channel: str = "hvps", since_minutes: float | None = None) -> dict[str, Any]:
    """A payment in `state` whose last news is `minutes_ago` old, in that state since
    `since_minutes` ago (its history's row: by default, as old as its news)."""
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    since = (NOW - timedelta(minutes=since_minutes)).isoformat() if since_minutes else at
    return dict(credit_row(100 + n, NOW), channel=channel, state=state, work_date=work_date,
                msg_type="hvps.111.001.01", updated_at=at, created_at=since)


def asked(tmp_path, monkeypatch, rows: list[dict[str, Any]], gw: Gw,
          questions: list[tuple[int, str, float]] = ()) -> list[tuple[int, str]]:
    """(row index, why) of each payment the sweep asks about, in the order asked;
    `questions`: (row index, request state, minutes ago) already on record."""
    db, _ = held_items(tmp_path, [])
    with db.transaction() as tx:
        for row in rows:
            payments.insert(tx, row)
        for index, state, minutes_ago in questions:
            request_id = schema.add_request(tx, "status", rows[index]["id"], f"Q{index}",
                                            f"M{index}", "gateway", "test",
                                            NOW - timedelta(minutes=minutes_ago))
            if state == "unanswered":
                schema.give_up_request(tx, request_id, NOW - timedelta(minutes=minutes_ago))
            elif state == "answered":
                schema.answer_request(tx, request_id, "answered", {"status": "PR12"},
                                      NOW - timedelta(minutes=5))
    seen: list[tuple[int, str]] = []
    ids = [row["id"] for row in rows]
    monkeypatch.setattr(status, "ask_tx", lambda gw, tx, payment, why, now, enter_unknown:
                        seen.append((ids.index(payment["id"]), why, enter_unknown)) or [])
    with db.transaction() as tx:
        status.queued_tx(gw, tx, NOW)
    assert all(enter_unknown is False for _, _, enter_unknown in seen), \
        "a queued payment stays queued while it is asked about"
    return [(index, why) for index, why, _ in seen]


CASES = [
    ("queued longer than the interval is asked; a younger one is not",
     [queued(0, 11), queued(1, 9)], Gw(NOW.date()), [], [(0, "queued_too_long")]),
    ("once our work date moved past the day it was queued on, any age is asked",
     [queued(0, 1, work_date=EARLIER, since_minutes=24 * 60)], Gw(NOW.date()), [],
     [(0, "work_date_moved")]),
    ("taken the day before, held for the window and queued at today's opening: the"
     " cut-over left nothing behind, it is asked as any other",
     [queued(0, 1, work_date=EARLIER), queued(1, 11, work_date=EARLIER)], Gw(NOW.date()),
     [], [(1, "queued_too_long")]),
    ("once the NPC's day ended (status 40), every queued payment is asked",
     [queued(0, 1), queued(1, 2)], Gw(NOW.date(), hvps_status="40"), [],
     [(1, "npc_day_ended"), (0, "npc_day_ended")]),
    ("a payment with a question still open is not asked again",
     [queued(0, 30)], Gw(NOW.date()), [(0, "sent", 20)], []),
    ("nor one asked within the interval, even unanswered",
     [queued(0, 30)], Gw(NOW.date()), [(0, "unanswered", 5)], []),
    ("nor one whose question was answered within the interval, after the cut-over too",
     [queued(0, 30, work_date=EARLIER)], Gw(NOW.date()), [(0, "answered", 15)], []),
    ("one last asked longer ago than the interval is asked again",
     [queued(0, 30)], Gw(NOW.date()), [(0, "unanswered", 15)], [(0, "queued_too_long")]),
    ("only queued HVPS payments are asked about",
     [queued(0, 30, state="sent"), queued(1, 30, channel="beps"), queued(2, 30)],
     Gw(NOW.date()), [], [(2, "queued_too_long")]),
    ("at most the per-pass bound, oldest news first",
     [queued(0, 20), queued(1, 40), queued(2, 30)],
     Gw(NOW.date(), settings=Settings(queued_queries_per_sweep_max=2)), [],
     [(1, "queued_too_long"), (2, "queued_too_long")]),
]


@pytest.mark.parametrize("name, rows, gw, questions, expected", CASES,
                         ids=[c[0] for c in CASES])
def test_which_queued_payments_are_asked_about(tmp_path, monkeypatch, name, rows, gw,
                                               questions, expected):
    """Each row: the payments, the gateway's state, the questions on record, and which
    payments one pass asks about, with the reason it gives."""
    assert asked(tmp_path, monkeypatch, rows, gw, questions) == expected
