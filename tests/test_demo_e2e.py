"""`paygate demo` run for real (with fewer JSON transfers): the project's example messages
are accepted and settled, the ledger day is closed with its reports, and
`serve --simulate` on the folder it kept funds nothing and names the ledger's holders."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest

from gateway import clearing_check, demo
from gateway.calendar import BusinessCalendar
from gateway.config import Settings
from gateway.harness import Harness
from gateway.serve import SIM_CLEARING_FEN, open_demo_accounts
from gateway.windows import timetable_from_settings
from ledger.testing import customer_account

pytestmark = pytest.mark.e2e


def _alert_codes(result: dict) -> list[str]:
    return [a["code"] for a in result["alerts"]]


def test_demo_settles_the_examples_closes_the_day_and_serve_keeps_its_books(
        tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    code, result = asyncio.run(demo.run_demo(folder, 20, 7))

    assert code == 0, result
    assert not {"demo_example_refused", "demo_example_not_settled"} & set(_alert_codes(result))
    day = date.fromisoformat(result["work_date"])
    reports = sorted(p.name for p in (folder / "gateway" / "reports").iterdir())
    assert reports == [f"daily-statement-{day}.csv", f"subject-day-sheets-{day}.txt"]

    following = BusinessCalendar().next_working_day(day)
    payers = demo.example_payers()

    async def serve_on_the_kept_folder() -> tuple[dict, int, int, list, list, dict]:
        h = Harness(folder, clock_spec=f"{following}T09:00",
                    balances_fen={demo.BANK: SIM_CLEARING_FEN}, sim_args=["--follow-clock"])
        await h.start()
        try:
            gw = h.gateway
            count = "SELECT COUNT(*) FROM ledger_entry"
            before = await gw.store.run(lambda tx: tx.query_one(count, ())[0])
            accounts = await open_demo_accounts(gw)
            # Ends only once the books' 1003 and the NPC's balance for us agree, with
            # nothing in flight (the day's rounds the NPC settles as it starts taken).
            await asyncio.wait_for(clearing_check.watch(h), 30)
            after = await gw.store.run(lambda tx: tx.query_one(count, ())[0])
            alerts = await gw.store.run(lambda tx: tx.query(
                "SELECT code, detail FROM alerts ORDER BY id", ()))
            closed = await gw.store.run(lambda tx: tx.query(
                "SELECT work_date FROM ledger_day ORDER BY work_date", ()))
            stamps = await gw.store.run(lambda tx: {
                "windows": [(json.loads(d)["to"], at) for d, at in tx.query(
                    "SELECT detail, at FROM alerts WHERE code = 'window_changed' AND "
                    "at < ? ORDER BY id", (f"{following}T00:00",))],
                "recon": tx.query("SELECT system, at FROM recon ORDER BY id", ()),
                "payments": tx.query_one("SELECT MIN(created_at), MAX(created_at) FROM "
                                         "payments WHERE work_date = ?", (day.isoformat(),))})
            return accounts, before, after, alerts, closed, stamps
        finally:
            await h.stop()
    accounts, before, after, alerts, closed, stamps = asyncio.run(serve_on_the_kept_folder())

    assert after == before  # nothing funded a second time
    # The day's events are stamped at their phases by the timetable, not minutes apart.
    times = {name: at.isoformat()[:16] for name, at in
             demo.day_times(day, timetable_from_settings(Settings())).items()}
    assert [(to, at[:16]) for to, at in stamps["windows"]] == [
        ("10", times["opening"]), ("20", times["cut_off"]), ("30", times["clearing_window"]),
        ("40", times["end_of_day"]), ("00", times["cut_over"])]
    assert [(system, at[:16]) for system, at in stamps["recon"]] == [
        ("HVPS", times["end_of_day"]), ("BEPS", times["end_of_day"])]
    first, last = stamps["payments"]
    assert times["payments"] <= first[:16] and last[:16] < times["cut_off"]
    assert [tuple(row) for row in closed] == [(day.isoformat(),)]
    codes = [code for code, _ in alerts]
    assert "day_end_missing" not in codes and "clearing_balance_differs" not in codes
    demo_numbers = [customer_account(i, "corporate") for i in (1, 2, 3)]
    assert list(accounts) == sorted(demo_numbers)
    assert {a: v["name"] for a, v in accounts.items()} == {a: payers[a] for a in accounts}
    assert all(v["ledger_balance"] != "0.00" for v in accounts.values())
    # Nothing under way on the kept folder: all of it is free to pay from.
    assert all(v["available"] == v["ledger_balance"] for v in accounts.values())


def test_a_refused_example_fails_the_demo_with_an_alert(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accounts held under other names than the examples give: every example is refused,
    which the summary's alerts name, and the demo exits 1 though the books balance."""
    named = demo.example_payers()
    monkeypatch.setattr(demo, "example_payers",
                        lambda: {account: f"别的{name}" for account, name in named.items()})
    code, result = asyncio.run(demo.run_demo(tmp_path, 10, 7))

    assert code == 1
    assert result["ledger"]["balanced"] and result["ledger"]["reconciled"]
    refused = [json.loads(a["detail"]) for a in result["alerts"]
               if a["code"] == "demo_example_refused"]
    assert len(refused) == len(named)
    assert all(r["status"] == 422 and "payer_name_differs_from_account_holder" in r["errors"]
               for r in refused)
