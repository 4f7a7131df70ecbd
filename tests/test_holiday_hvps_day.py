"""The National Day holiday of 2026 (1-7 October, Thursday 8 October the first working day
after it) on one virtual clock, gateway and simulated NPC together.

After the end of day of Wednesday 30 September HVPS cuts over to 8 October and prepares
it (00) until 08:30 that day, as `paygate ops status` shows; the ledger day of 30
September closes at that cut-over. A BEPS credit taken on Saturday 3 October is netted
that day and its round settles at Thursday's opening, on Thursday's work date."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.beps import extension_of
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.errors import PaygateError
from gateway.ops import cli_render, snapshot
from gateway.redisproc import free_port
from gateway.simday import DayRun, Volumes
from gateway.windows import status_changes_between
from ledger.testing import customer_account

pytestmark = pytest.mark.e2e

LAST_BEFORE, FIRST_AFTER = date(2026, 9, 30), date(2026, 10, 8)
PAYEE_BANK = "888200000023"

# (instant, HVPS status, work date, accepts customer payments, next change: when, status)
WALK = [
    ("2026-09-30 17:00", "30", "2026-09-30", False, ("2026-09-30 17:30", "40")),
    ("2026-09-30 17:30", "40", "2026-09-30", False, ("2026-09-30 17:45", "15")),
    ("2026-09-30 17:45", "15", "2026-10-08", False, ("2026-09-30 18:00", "00")),
    ("2026-09-30 18:00", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-09-30 21:00", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-01 08:30", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-02 12:00", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-03 10:00", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-03 10:30", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-05 17:45", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-07 17:45", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-07 20:30", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-08 08:29", "00", "2026-10-08", False, ("2026-10-08 08:30", "10")),
    ("2026-10-08 08:30", "10", "2026-10-08", True, ("2026-10-08 17:00", "30")),
    ("2026-10-08 09:00", "10", "2026-10-08", True, ("2026-10-08 17:00", "30")),
]


def sh(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


class HolidayRun(DayRun):
    """A DayRun that starts on the afternoon of 30 September and is driven step by step."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(LAST_BEFORE, 7, data_dir, Volumes(0, 0, 0, 0))
        self.clock = ManualClock(sh("2026-09-30 16:00"))

    async def move_to(self, at: datetime) -> None:
        """Move the clock to `at`, the NPC announcing each status change on the way, as
        the timetable has it, and let the gateway's own tick run."""
        for change in status_changes_between(self.clock.now(), at, self.calendar):
            self.clock.set(change.at)
            await self._phase(change.cur_code, change.cur_date)()
            await self.quiet()
        self.clock.set(at)
        await self.gw.window_tick()
        await self.quiet()

    async def credit(self, key: str, amount: str) -> dict[str, Any]:
        status, answer = await self.gw.submit_transfer("holiday", key, {
            "payer_account": self.customers["c1"], "payer_name": "日终客户c1",
            "payer_bank": "999100000027", "payee_account": "6233000000000001",
            "payee_name": "对手客户", "payee_bank": PAYEE_BANK, "amount": amount})
        assert status == 201, answer
        return answer

    async def net_round(self) -> None:
        await extension_of(self.gw).packer.seal(force=True)
        await self.quiet()
        self.sim.beps.net_now()
        await self.quiet()


async def until(check: Any, what: str, timeout_s: float = 20.0) -> Any:
    for _ in range(int(timeout_s / 0.02)):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_hvps_day_over_national_day_and_a_holiday_beps_credit(tmp_path: Path) -> None:
    """Step by step from 30 September 17:00 to 8 October 09:00: the status, work date and
    next change the gateway and `ops status` show, the day end of 30 September at its
    own cut-over, and a BEPS credit of 3 October settling on 8 October."""
    async def scenario() -> dict[str, Any]:
        run = HolidayRun(tmp_path)
        await run.start()
        seen: dict[str, Any] = {"steps": []}
        try:
            gw = run.gw
            extension_of(gw).configure(package_age_max_s=10.0 ** 7)
            for at, *_expected in WALK:
                await run.move_to(sh(at))
                view = snapshot.window(gw)
                seen["steps"].append((at, gw.hvps_status, gw.work_date.isoformat(),
                                      gw.hvps_open, (view["next"]["at"],
                                                     view["next"]["status"]),
                                      view["status"], view["work_date"]))
                if at == "2026-09-30 18:00":
                    seen["closed"] = await until(lambda: gw.store.run(lambda tx: tx.query(
                        "SELECT work_date FROM ledger_day ORDER BY work_date", ())),
                        "the ledger day of 30 September closed")
                    seen["recon"] = await gw.day_end.wait_reconciled(LAST_BEFORE)
                if at == "2026-10-02 12:00":
                    seen["ops"] = cli_render.status(await snapshot.status(gw))
                if at == "2026-10-03 10:00":
                    seen["accepted"] = await run.credit("holiday-1", "1234.56")
                if at == "2026-10-03 10:30":
                    await run.net_round()
                    seen["netted"] = await gw.get_transfer(seen["accepted"]["id"])
            payment_id = seen["accepted"]["id"]

            async def settled() -> dict[str, Any] | None:
                view = await gw.get_transfer(payment_id)
                return view if view["state"] == "settled" else None
            seen["settled"] = await until(settled, "the holiday credit settled")
            seen["work_date"] = await gw.store.run(lambda tx: tx.query_one(
                "SELECT work_date FROM payments WHERE id = ?", (payment_id,))[0])
            seen["balanced"] = await gw.store.run(
                lambda tx: gw.ledger.trial_balance(tx).balanced)
            seen["clearing"] = await gw.store.run(gw.ledger.clearing_balance)
            seen["npc_clearing"] = run.sim.store.balances()[gw.settings.bank_code]
            return seen
        finally:
            await run.stop()

    seen = asyncio.run(scenario())

    for (at, status, work_date, accepts, (next_at, next_status)), step in zip(
            WALK, seen["steps"]):
        assert step == (at, status, work_date, accepts,
                        (sh(next_at).isoformat(), next_status), status, work_date), at
    assert seen["closed"] == [("2026-09-30",)]
    assert seen["recon"]["work_date"] == "2026-09-30" and seen["recon"]["reconciled"]
    assert "HVPS status       00 business preparation 营业准备" in seen["ops"]
    assert "work date         2026-10-08" in seen["ops"]
    assert "next change       2026-10-08T08:30:00+08:00 -> 10 daytime processing" \
        in seen["ops"]

    assert (seen["accepted"]["channel"], seen["accepted"]["state"]) == ("beps", "accepted")
    assert seen["netted"]["state"] == "netted"
    assert seen["netted"]["beps"]["netting_date"] == "2026-10-03"
    assert seen["netted"]["beps"]["settled_on"] is None
    assert seen["work_date"] == "2026-10-08"
    assert seen["settled"]["beps"]["netting_date"] == "2026-10-03"
    assert seen["settled"]["beps"]["settled_on"] == "2026-10-08"
    assert seen["balanced"] and seen["clearing"] == seen["npc_clearing"]


@pytest.mark.parametrize("at, accepted, next_opening", [
    # The evening before a working day opens the day under the 2018 timetable.
    ("2026-09-29 21:00", True, None),
    # The evening before the first day of the holiday is its restricted session (20:30
    # to 08:30, cross-border funding only): a customer's payment is refused as closed.
    ("2026-09-30 21:00", False, "2026-10-07T20:30:00+08:00"),
    ("2026-10-01 08:00", False, "2026-10-07T20:30:00+08:00"),
    ("2026-10-07 20:30", True, None),
])
def test_restricted_session_takes_no_customer_payment(tmp_path: Path, at: str,
                                                      accepted: bool,
                                                      next_opening: str | None) -> None:
    """With HVPS taking business from 20:30 the evening before a working day, the same
    hours before the first day of a holiday take none: an HVPS transfer asked to be
    refused when closed gets hvps_closed with the opening of 8 October's business."""
    payer = customer_account(1, "corporate")

    async def attempt() -> tuple[str, str | None, str | None]:
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0, hvps_evening_open=True,
                              npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                     clock=ManualClock(sh(at)))
        await gw.start(serve_http=False)
        try:
            def fund(tx: Any) -> None:
                gw.ledger.open_customer_account(tx, payer, "示例客户", "corporate",
                                                gw.work_date)
                gw.ledger.deposit(tx, "test:opening", payer, 10**12, gw.work_date)
            await gw.store.run(fund)
            try:
                _, answer = await gw.submit_transfer("tests", "restricted-1", {
                    "payer_account": payer, "payer_name": "示例客户",
                    "payer_bank": "999100000027", "payee_account": "6222000000000001",
                    "payee_name": "对手客户", "payee_bank": PAYEE_BANK,
                    "amount": "80000000.00", "urgency": "urgent", "when_closed": "refuse"})
            except PaygateError as exc:
                problem = exc.problems[0].to_dict()
                return problem["code"], problem.get("next_opening"), gw.hvps_status
            return answer["channel"], None, gw.hvps_status
        finally:
            await gw.stop()

    code, opening, status = asyncio.run(attempt())

    if accepted:
        assert (code, status) == ("hvps", "10")
    else:
        assert (code, opening, status) == ("hvps_closed", next_opening, "00")
