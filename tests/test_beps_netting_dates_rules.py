"""The BEPS netting dates to reconcile (gateway.beps.netting_dates), on SQLite and
PostgreSQL: when a date is complete, which dates a pass asks for and how often, what an
answer does, and two passes at once."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import critical, dialect, outbound, store
from gateway.beps import items, netting_dates, schema
from gateway.beps.settings import BepsSettings
from gateway.clock import SHANGHAI
from gateway.errors import PaygateError
from gateway.messages import codec
from gateway.messages.signing import KeyRing, write_keypair
from gateway.windows import last_complete_netting_date, netting_date_complete_at
from ledger.fixtures import postgres_schema_or_skip
from ledger.testing import fresh_books
from tests.beps_support import StubSettings
from tests.e2e_support import BANK, PEER
from tests.race_support import Other

# The bytes of outgoing messages, kept in the archive (gateway.outbound.stored_bytes)
SENT_BYTES = "SELECT " + outbound.stored_bytes("outbox") + " FROM outbox"

SETTINGS = BepsSettings(recon_delay_s=900.0, recon_dates_per_pass=2, recon_retry_s=900.0)


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


class Gw:
    """What a pass needs of the gateway: our bank code, keys, and the alerts raised."""

    def __init__(self, keyring: KeyRing) -> None:
        self.settings = StubSettings()
        self.keyring = keyring
        self.raised: list[tuple[str, dict[str, Any]]] = []

    def alert(self, tx: Any, code: str, **detail: Any) -> None:
        self.raised.append((code, detail))


def books(tmp_path: Path, url: str, netted_on: list[str] = ()) -> tuple[Any, Gw]:
    """The gateway's tables, with one netted BEPS item on each of `netted_on`."""
    db, _ = fresh_books(url)
    write_keypair(tmp_path / "keys", BANK)
    gw = Gw(KeyRing.load(tmp_path / "keys", [BANK]))
    with db.transaction() as tx:
        dialect.install(tx, store.SCHEMA)
        critical.install(tx)  # alerts the gateway closes itself
        schema.install(tx)
        for n, day in enumerate(netted_on):
            items.add(tx, f"P{n}", items.CREDIT_OUT, PEER, "beps.121.001.01", 100, sh(
                f"{day}T10:00"))
            tx.execute("UPDATE beps_items SET netting_date = ?, netting_round = '01' WHERE "
                       "payment_id = ?", (day, f"P{n}"))
    return db, gw


def claim(db: Any, gw: Gw, at: str, settings: BepsSettings = SETTINGS
          ) -> netting_dates.Claimed:
    with db.transaction() as tx:
        return netting_dates.claim(tx, gw, settings, sh(at))


def asked(db: Any) -> list[str]:
    """The check date of every beps.720 in the outbox, in order."""
    with db.transaction() as tx:
        rows = tx.query(SENT_BYTES + " WHERE mesg_type = 'beps.720.001.01' "
                        "ORDER BY id", ())
    return [codec.decode(bytes(envelope)).obj.check_date for (envelope,) in rows]


def states(db: Any) -> dict[str, tuple[str, int]]:
    with db.transaction() as tx:
        return {d: (s, n) for d, s, n in tx.query(
            "SELECT netting_date, state, asks FROM beps_netting_dates", ())}


def answer(db: Any, gw: Gw, day: str, differences: list[dict[str, Any]]) -> bool:
    outcome = {"work_date": day, "system": "BEPS", "reconciled": not differences,
               "differences": differences, "rows": {}, "recon_id": 7}
    with db.transaction() as tx:
        return netting_dates.record_answer(tx, gw, outcome, sh("2026-10-02T01:00"))


@pytest.mark.parametrize("at, delay_s, complete", [
    ("2026-10-02T00:14:59", 900, "2026-09-30"),   # 1 October's notices may still come
    ("2026-10-02T00:15:00", 900, "2026-10-01"),
    ("2026-10-02T23:59:59", 900, "2026-10-01"),   # 2 October nets until midnight
    ("2026-10-02T00:00:00", 0, "2026-10-01"),
    ("2026-10-01T16:15:00+00:00", 900, "2026-10-01"),  # 00:15 on the 2nd in Shanghai
])
def test_a_netting_date_is_complete_after_its_midnight_and_the_delay(
        at: str, delay_s: float, complete: str) -> None:
    when = datetime.fromisoformat(at)
    when = when if when.tzinfo else when.replace(tzinfo=SHANGHAI)

    assert last_complete_netting_date(when, delay_s).isoformat() == complete
    assert netting_date_complete_at(date.fromisoformat(complete), delay_s) <= when
    assert netting_date_complete_at(date.fromisoformat(complete) + timedelta(days=1),
                                    delay_s) > when


def test_a_pass_asks_for_the_complete_dates_oldest_first_each_once(
        tmp_path: Path, database_url: str) -> None:
    """Tracking starts at our first netted item's date; each pass asks for at most two
    dates, the oldest first, and says to look again at once while more are due, else at
    the next date's completion (or the retry time, whichever is first)."""
    db, gw = books(tmp_path, database_url, netted_on=["2026-09-28", "2026-09-30"])

    first = claim(db, gw, "2026-10-02T00:20")
    second = claim(db, gw, "2026-10-02T00:21")
    third = claim(db, gw, "2026-10-02T00:22")

    assert [d for d, _ in first.dates] == ["2026-09-28", "2026-09-29"]
    assert first.next_check == sh("2026-10-02T00:20")
    assert [d for d, _ in second.dates] == ["2026-09-30", "2026-10-01"]
    assert third.dates == [] and third.next_check == sh("2026-10-02T00:37")
    assert asked(db) == ["2026-09-28", "2026-09-29", "2026-09-30", "2026-10-01"]
    assert states(db) == {**{d: ("asked", 1) for d in asked(db)},
                          "2026-10-02": ("open", 0)}


def test_a_fresh_gateway_starts_with_today(tmp_path: Path, database_url: str) -> None:
    """No netted item yet: today is the first date; the next pass is at its completion."""
    db, gw = books(tmp_path, database_url)

    found = claim(db, gw, "2026-10-02T10:00")
    later = claim(db, gw, "2026-10-03T00:16")

    assert found.dates == [] and found.next_check == sh("2026-10-02T10:15")
    assert [d for d, _ in later.dates] == ["2026-10-02"]
    assert states(db) == {"2026-10-02": ("asked", 1), "2026-10-03": ("open", 0)}


def test_an_answer_settles_its_date_and_its_differences_are_alerted(
        tmp_path: Path, database_url: str) -> None:
    """An answer for a complete date sets its state (differences alerted, naming the
    date); a pass never asks for an answered date again. An answer about a date not
    complete (an early look) is not its reconciliation and changes nothing."""
    db, gw = books(tmp_path, database_url, netted_on=["2026-09-30"])
    claim(db, gw, "2026-10-02T00:20")
    difference = {"netting_date": "2026-10-01", "netting_round": "01",
                  "mt": "beps.121.001.01", "field": "received_count", "ours": 0, "npc": 2}

    tracked = [answer(db, gw, "2026-09-30", []), answer(db, gw, "2026-10-01", [difference]),
               answer(db, gw, "2026-10-02", [difference])]
    again = claim(db, gw, "2026-10-05T00:00")

    assert tracked == [True, True, False]
    assert [(code, d["netting_date"], d["count"]) for code, d in gw.raised] == [
        ("reconciliation_differences", "2026-10-01", 1)]
    assert gw.raised[0][1]["differences"] == [difference]
    assert [d for d, _ in again.dates] == ["2026-10-02", "2026-10-03"]
    found = states(db)
    assert (found["2026-09-30"], found["2026-10-01"]) == (("reconciled", 1),
                                                          ("differences", 1))


def test_an_agreeing_answer_closes_the_date_s_earlier_differences(
        tmp_path: Path, database_url: str) -> None:
    """A netting date whose differences were alerted, asked again and answered without
    any: its open `reconciliation_differences` is closed by the gateway; another date's
    stays open."""
    db, gw = books(tmp_path, database_url, netted_on=["2026-09-30"])
    claim(db, gw, "2026-10-02T00:20")
    with db.transaction() as tx:
        for day in ("2026-09-30", "2026-10-01"):
            tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?)", (
                "2026-10-02T00:30:00+08:00", "reconciliation_differences", json.dumps(
                    {"system": "BEPS", "netting_date": day, "count": 1})))

    assert answer(db, gw, "2026-10-01", []) is True
    with db.transaction() as tx:
        left = [d["netting_date"] for _, d in critical.unclosed(
            tx, ("reconciliation_differences",))]
    assert left == ["2026-09-30"]


def test_an_unanswered_date_is_asked_again_only_once_its_question_left_us(
        tmp_path: Path, database_url: str) -> None:
    """A beps.720 still in the outbox (the link down) or refused by the NPC (a dead
    letter, for an operator) is not asked again; one the NPC took without answering is,
    after the retry time, three times in all; then the date is `unanswered`, alerted
    once, and left to an operator."""
    db, gw = books(tmp_path, database_url, netted_on=["2026-10-01"])
    claim(db, gw, "2026-10-02T00:20")

    def delivered(state: str = "done") -> None:
        with db.transaction() as tx:
            tx.execute("UPDATE outbox SET state = ?", (state,))

    waiting = claim(db, gw, "2026-10-02T01:00")
    delivered("dead")
    refused = claim(db, gw, "2026-10-02T01:00")
    delivered()
    second = claim(db, gw, "2026-10-02T01:00")
    soon = claim(db, gw, "2026-10-02T01:10")
    delivered()
    third = claim(db, gw, "2026-10-02T01:20")
    delivered()
    given_up = [claim(db, gw, "2026-10-02T01:40"), claim(db, gw, "2026-10-02T03:00")]

    assert waiting.dates == [] and refused.dates == [] and soon.dates == []
    assert [d for d, _ in second.dates] == ["2026-10-01"]
    assert [d for d, _ in third.dates] == ["2026-10-01"]
    assert [c.dates for c in given_up] == [[], []]
    assert asked(db) == ["2026-10-01"] * 3
    assert states(db)["2026-10-01"] == ("unanswered", 3)
    assert [(code, d["netting_date"], d["asks"]) for code, d in gw.raised] == [
        ("beps_reconciliation_unanswered", "2026-10-01", 3)]


def test_an_operator_asks_again_for_a_complete_date_only(
        tmp_path: Path, database_url: str) -> None:
    """Asked again: a date reconciled already, or one before the first tracked; refused:
    today's, which still nets, and a date not tracked yet."""
    db, gw = books(tmp_path, database_url, netted_on=["2026-10-01"])
    claim(db, gw, "2026-10-03T00:20")
    answer(db, gw, "2026-10-01", [])
    outcomes = []
    for day in ("2026-10-01", "2026-09-20", "2026-10-03", "2026-10-04"):
        try:
            with db.transaction() as tx:
                outcomes.append(netting_dates.ask_again(tx, gw, day, sh("2026-10-03T09:00"))[
                    "state_before"])
        except PaygateError as exc:
            outcomes.append(exc.problems[0].code)

    assert outcomes == ["reconciled", None, "beps_netting_date_not_complete",
                        "beps_netting_date_not_complete"]
    assert asked(db) == ["2026-10-01", "2026-10-02", "2026-10-01", "2026-09-20"]
    assert states(db)["2026-10-01"] == ("asked", 2)


def test_the_operators_status_names_what_waits_and_what_differs(
        tmp_path: Path, database_url: str) -> None:
    db, gw = books(tmp_path, database_url, netted_on=["2026-09-28"])
    claim(db, gw, "2026-10-02T00:20")
    answer(db, gw, "2026-09-28", [])
    answer(db, gw, "2026-09-29", [{"field": "sent_fen"}])
    with db.transaction() as tx:
        seen = netting_dates.status(tx, sh("2026-10-02T09:00"), 900.0)

    assert seen["complete_through"] == "2026-10-01"
    assert seen["reconciled_through"] == "2026-09-29"
    assert (seen["reconciled"], seen["with_differences"], seen["not_reconciled"]) == (1, 1, 2)
    assert [(w["netting_date"], w["state"]) for w in seen["waiting"]] == [
        ("2026-09-30", "due"), ("2026-10-01", "due")]
    assert [(d["netting_date"], d["differences"]) for d in seen["differing"]] == [
        ("2026-09-29", 1)]


@pytest.mark.postgres
def test_two_passes_at_once_ask_for_each_date_once(tmp_path: Path) -> None:
    """Two gateway processes (or a day end and the periodic check) pass at once: the
    second waits for the first's rows and then finds nothing left to ask."""
    with postgres_schema_or_skip("beps_netting") as url:
        db, gw = books(tmp_path, url, netted_on=["2026-09-30"])
        with db.transaction() as tx:
            first = netting_dates.claim(tx, gw, SETTINGS, sh("2026-10-02T00:20"))
            other = Other(url, lambda tx: netting_dates.claim(tx, gw, SETTINGS,
                                                              sh("2026-10-02T00:20")))
            other.start_and_wait_for_lock(url)
        second = other.finish()

    assert [d for d, _ in first.dates] == ["2026-09-30", "2026-10-01"]
    assert not isinstance(second, Exception), second
    assert second.dates == []
