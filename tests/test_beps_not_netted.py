"""Our BEPS packages the NPC does not net in time (gateway.beps.not_netted): one alert
per episode, the status operators see next to the netting dates, and the netting dates
a package without any answer holds back from reconciliation (gateway.beps.netting_dates),
on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.beps import netting_dates, not_netted
from gateway.beps.settings import BepsSettings
from gateway.errors import PaygateError
from gateway.ops import cli_render
from tests.e2e_support import BANK, PEER
from tests.test_beps_netting_dates_rules import Gw, asked, books, claim, sh

# Rounds every 30 minutes: a package is overdue 65 minutes after it was sealed and sent.
SETTINGS = BepsSettings(recon_delay_s=900.0, recon_dates_per_pass=10, recon_retry_s=900.0,
                        netting_interval_min=30, not_netted_margin_s=300.0)


def sent_package(db: Any, n: int, at: str, count: int = 377, state: str = "sent",
                 msg_type: str = "beps.121.001.01") -> str:
    """A package of ours sealed and sent at `at` (its outbox row made then)."""
    package_id = f"{BANK}2026120700{n:06d}"
    with db.transaction() as tx:
        outbox_id = tx.query_one(
            "INSERT INTO outbox (kind, stream, state, mesg_type, mesg_id, created_at, "
            "updated_at) VALUES ('beps_package', 'paygate:out:beps:packages', 'acked', ?, "
            "?, ?, ?) RETURNING id", (msg_type, f"M{n}", sh(at).isoformat(),
                                      sh(at).isoformat()))[0]
        tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, "
                   "receiver, count, total_fen, state, outbox_id, mesg_id, created_at, "
                   "updated_at) VALUES (?, 'out', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (package_id, msg_type, f"2026120700{n:06d}", BANK, PEER, count,
                    count * 100_00, state, outbox_id, f"M{n}", sh(at).isoformat(),
                    sh(at).isoformat()))
    return package_id


def set_state(db: Any, package_id: str, state: str) -> None:
    with db.transaction() as tx:
        tx.execute("UPDATE beps_packages SET state = ? WHERE id = ?", (state, package_id))


def check(db: Any, gw: Gw, at: str) -> bool:
    with db.transaction() as tx:
        return not_netted.check(tx, gw, SETTINGS, sh(at))


def status(db: Any, at: str) -> dict[str, Any]:
    with db.transaction() as tx:
        return not_netted.status(tx, SETTINGS, sh(at))


def test_packages_not_netted_in_two_intervals_raise_one_alert_per_episode(
        tmp_path: Path, database_url: str) -> None:
    """Sent at 17:01 and never netted: nothing at 18:05, the alert at 18:06:01, and no
    second one at later checks (a restarted gateway checks the same table); netted, the
    episode is over, and a later package not netted starts a new one."""
    db, gw = books(tmp_path, database_url)
    first = sent_package(db, 1, "2026-12-07T17:01")
    sent_package(db, 2, "2026-12-07T17:30", count=23, state="waiting")

    raised = [check(db, gw, at) for at in ("2026-12-07T17:40", "2026-12-07T18:05",
                                            "2026-12-07T18:06:01", "2026-12-07T18:40",
                                            "2026-12-08T08:29")]

    assert raised == [False, False, True, False, False]
    assert [code for code, _ in gw.raised] == ["beps_items_not_netted"]
    detail = gw.raised[0][1]
    assert (detail["items"], detail["packages"], detail["amount"]) == (377, 1, "37700.00")
    assert detail["oldest_sent_at"] == sh("2026-12-07T17:01").isoformat()
    later = status(db, "2026-12-08T08:29")
    assert later["overdue"]["items"] == 400 and later["overdue"]["queued_items"] == 23
    assert later["alerted_at"] == sh("2026-12-07T18:06:01").isoformat()

    set_state(db, first, "netted")
    set_state(db, f"{BANK}2026120700000002", "netted")
    assert check(db, gw, "2026-12-08T08:31") is False
    assert status(db, "2026-12-08T08:31")["alerted_at"] is None
    sent_package(db, 3, "2026-12-08T09:00", count=5)
    assert check(db, gw, "2026-12-08T10:06") is True
    assert [code for code, _ in gw.raised] == ["beps_items_not_netted"] * 2


def test_debit_packages_and_packages_not_sent_are_not_counted(
        tmp_path: Path, database_url: str) -> None:
    """Our beps.127 waits for the payer bank's receipt, not for a round; a package
    sealed again after the link refused it is listed by `ops stuck`."""
    db, gw = books(tmp_path, database_url)
    sent_package(db, 1, "2026-12-07T09:00", msg_type="beps.127.001.01")
    sent_package(db, 2, "2026-12-07T09:00", state="sealed")

    assert check(db, gw, "2026-12-07T12:00") is False
    assert status(db, "2026-12-07T12:00")["packages"] == 0 and gw.raised == []


def test_ops_status_shows_the_overdue_items_next_to_the_netting_dates(
        tmp_path: Path, database_url: str) -> None:
    db, gw = books(tmp_path, database_url)
    sent_package(db, 1, "2026-12-07T17:01")
    claim(db, gw, "2026-12-07T17:02", SETTINGS)  # the periodic check's passes
    claim(db, gw, "2026-12-08T08:29", SETTINGS)
    with db.transaction() as tx:
        shown = {"beps_reconciliation": netting_dates.status(tx, sh("2026-12-08T08:29"), 900),
                 "beps_not_netted": not_netted.status(tx, SETTINGS, sh("2026-12-08T08:29"))}

    lines = dict(cli_render._beps_reconciliation(shown["beps_reconciliation"])
                 + cli_render._beps_not_netted(shown["beps_not_netted"]))

    assert lines["BEPS not netted"].startswith("OVERDUE: 377 items (37700.00 yuan) sent since "
                                               "2026-12-07T17:01:00+08:00, more than 65 min")
    assert lines["BEPS waiting"] == "2026-12-07 not_netted"


def test_a_netting_date_waits_for_our_packages_without_an_answer(
        tmp_path: Path, database_url: str) -> None:
    """A package sent on the 7th with no answer by 00:15 on the 8th may be in the 7th's
    rounds or in none: the 7th is not asked for (nor shown reconciled) until it is
    answered. One answered PR11 (waiting for our cap) holds nothing back."""
    db, gw = books(tmp_path, database_url, netted_on=["2026-12-06"])
    package = sent_package(db, 1, "2026-12-07T17:01")
    sent_package(db, 2, "2026-12-06T17:01", state="waiting")

    held = claim(db, gw, "2026-12-08T00:20", SETTINGS)
    with db.transaction() as tx:
        shown = netting_dates.status(tx, sh("2026-12-08T00:20"), 900)
    with pytest.raises(PaygateError) as refused, db.transaction() as tx:
        netting_dates.check_complete(tx, "2026-12-07")
    assert "packages of ours the NPC has not answered" in str(refused.value.problems)
    set_state(db, package, "netted")
    freed = claim(db, gw, "2026-12-08T08:31", SETTINGS)

    assert [d for d, _ in held.dates] == ["2026-12-06"]
    assert [(w["netting_date"], w["state"]) for w in shown["waiting"]] == [
        ("2026-12-06", "asked"), ("2026-12-07", "not_netted")]
    assert [d for d, _ in freed.dates] == ["2026-12-07"]
    assert asked(db) == ["2026-12-06", "2026-12-07"]


def test_an_answer_for_a_date_held_back_meanwhile_does_not_reconcile_it(
        tmp_path: Path, database_url: str) -> None:
    """The 7th was asked for; a package sealed on the 7th went out only then (the link
    was down) and has no answer: an answer agreeing with ours leaves the date open."""
    db, gw = books(tmp_path, database_url, netted_on=["2026-12-07"])
    claim(db, gw, "2026-12-08T00:20", SETTINGS)
    sent_package(db, 1, "2026-12-07T23:55")
    outcome = {"work_date": "2026-12-07", "system": "BEPS", "reconciled": True,
               "differences": [], "rows": {}, "recon_id": 7}
    with db.transaction() as tx:
        netting_dates.record_answer(tx, gw, outcome, sh("2026-12-08T00:21"))
        shown = netting_dates.status(tx, sh("2026-12-08T00:21"), 900)

    assert shown["reconciled"] == 0
    assert [(w["netting_date"], w["state"]) for w in shown["waiting"]] == [
        ("2026-12-07", "not_netted")]
