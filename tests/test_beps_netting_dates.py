"""BEPS reconciliation covers every netting date: weekends, holidays and the rounds after
the day end included, each date once it is complete, once (gateway.beps.netting_dates).

The walks run the National Day holiday of 2026 (1-7 October off, Thursday 8 October the
first working day after it) on one virtual clock, gateway and simulated NPC together,
with BEPS credits netted on the days off."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import outbound
from gateway.beps import extension_of, recon
from gateway.messages import codec
from gateway.ops import cli_render, snapshot
from simulators.faults import Faults
from tests.test_holiday_hvps_day import HolidayRun, sh

# The bytes of outgoing messages, kept in the archive (gateway.outbound.stored_bytes)
SENT_BYTES = "SELECT " + outbound.stored_bytes("outbox") + " FROM outbox"

pytestmark = pytest.mark.e2e

PEER, PEER_BRANCH = "888200000015", "888200000023"
HOLIDAY_DATES = [(date(2026, 9, 30) + timedelta(days=n)).isoformat() for n in range(10)]


class NettingRun(HolidayRun):
    """The holiday run with BEPS traffic: our credits, a peer's package to us, rounds."""

    def __init__(self, data_dir: Path, ticks: bool = True) -> None:
        super().__init__(data_dir)
        self.ticks = ticks
        self.keys = 0

    async def start(self) -> None:
        await super().start()
        extension_of(self.gw).configure(package_age_max_s=10.0 ** 7)

    async def move_to(self, at: datetime) -> None:
        if self.ticks:
            await super().move_to(at)
            return
        # No periodic check: the gateway learns the day's changes from the NPC's
        # notices only, and BEPS is reconciled by the day ends alone.
        for change in self.changes_until(at):
            self.clock.set(change.at)
            await self._phase(change.cur_code, change.cur_date)()
            await self.quiet()
        self.clock.set(at)
        await self.quiet()

    def changes_until(self, at: datetime) -> list[Any]:
        from gateway.windows import status_changes_between
        return status_changes_between(self.clock.now(), at, self.calendar)

    async def credits(self, *amounts: str) -> None:
        for amount in amounts:
            self.keys += 1
            await self.credit(f"netting-{self.keys}", amount)

    async def peer_package(self, amount_fen: int, count: int = 1) -> None:
        """A package from the peer bank to our customer, taken by the NPC."""
        sim = self.sim
        sim.beps.peer_package(sim.peers[PEER], {
            "sender": PEER, "receiver": self.gw.settings.bank_code,
            "account": self.customers["c2"], "name": "日终客户c2", "bank": "999100000027",
            "amount_fen": amount_fen, "count": count}, False, sim.node.take)
        await self.quiet()

    async def lost_peer_round(self, amount_fen: int) -> None:
        """A difference planted at the NPC: a peer's package to us netted in a round of
        its own, its forwarding to us lost on the way."""
        self.sim.faults.faults = replace(Faults(), drop=1.0)
        await self.peer_package(amount_fen, count=2)
        self.sim.beps.net_now()
        await self.quiet()
        self.sim.faults.faults = Faults()


async def asked_dates(gw: Any) -> list[str]:
    """The check date of every beps.720 the gateway put in its outbox, in order."""
    rows = await gw.store.run(lambda tx: tx.query(
        SENT_BYTES + " WHERE mesg_type = 'beps.720.001.01' ORDER BY id", ()))
    return [codec.decode(bytes(envelope)).obj.check_date for (envelope,) in rows]


async def compared(gw: Any) -> list[tuple[str, int]]:
    """Each beps.721 compared: its netting date and whether it agreed, in order."""
    return await gw.store.run(lambda tx: tx.query(
        "SELECT work_date, reconciled FROM recon WHERE system = 'BEPS' ORDER BY id", ()))


async def netting_dates(gw: Any) -> dict[str, tuple[str, int, int]]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT netting_date, state, asks, answers FROM beps_netting_dates", ()))
    return {d: (state, asks, answers) for d, state, asks, answers in rows}


async def alerts(gw: Any, code: str) -> list[dict[str, Any]]:
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT detail FROM alerts WHERE code = ? ORDER BY id", (code,)))
    return [json.loads(detail) for (detail,) in rows]


# (instant, what happens then). The gateway's window ticks at each instant and runs its
# periodic check; the NPC announces each HVPS change on the way.
WALK = [
    ("2026-09-30 16:30", "credits"),
    ("2026-09-30 16:40", "round"),       # netting date 30 Sep, before its day end
    ("2026-09-30 17:40", "credits"),     # after the day end's reconciliation at 17:30
    ("2026-09-30 17:50", "round"),
    ("2026-09-30 23:50", "credits"),
    ("2026-09-30 23:55", "round"),       # the last round of 30 Sep
    ("2026-10-01 00:05", None),          # 30 Sep not complete yet (its notices' delay)
    ("2026-10-01 10:00", "credits"),
    ("2026-10-01 10:30", "round"),
    ("2026-10-02 11:00", "peer"),
    ("2026-10-02 11:30", "round"),
    ("2026-10-03 10:00", "credits"),
    ("2026-10-03 10:30", "round"),
    ("2026-10-05 09:00", "lost"),        # the planted difference: netting date 5 Oct
    ("2026-10-05 09:30", None),
    ("2026-10-07 23:40", "credits"),
    ("2026-10-07 23:45", "round"),
    ("2026-10-08 00:20", None),
    ("2026-10-08 09:00", None),          # HVPS open: every holiday round settles
    ("2026-10-08 10:00", "credits"),
    ("2026-10-08 10:30", "round"),
    ("2026-10-08 18:00", None),          # after the day end of 8 October
    ("2026-10-09 00:20", None),
    ("2026-10-09 09:00", None),
]


def test_every_netting_date_of_the_holiday_is_reconciled_once(tmp_path: Path) -> None:
    """From 30 September to 9 October: each netting date is asked for (beps.720) and
    compared once, as soon as a tick finds it complete, the holiday's dates and the
    rounds after 30 September's day end included; the difference planted at the NPC on
    5 October is alerted once, naming the date, and `ops status` shows which dates are
    reconciled."""
    async def scenario() -> dict[str, Any]:
        run = NettingRun(tmp_path)
        await run.start()
        seen: dict[str, Any] = {"asked": {}}
        try:
            gw = run.gw
            for at, what in WALK:
                await run.move_to(sh(at))
                if what == "credits":
                    await run.credits("123.45", "67.89")
                elif what == "round":
                    await run.net_round()
                elif what == "peer":
                    await run.peer_package(4_321_00)
                elif what == "lost":
                    await run.lost_peer_round(777_00)
                seen["asked"][at] = await asked_dates(gw)
                if at == "2026-09-30 17:40":
                    seen["day_end_30"] = await gw.day_end.wait_reconciled(date(2026, 9, 30))
            seen["day_end_8"] = await gw.day_end.wait_reconciled(date(2026, 10, 8))
            seen["compared"] = await compared(gw)
            seen["dates"] = await netting_dates(gw)
            seen["differences"] = await alerts(gw, "reconciliation_differences")
            seen["packages"] = await alerts(gw, "reconciliation_package_differences")
            seen["round_apart"] = await alerts(gw, "beps_round_net_differs")
            seen["totals_30"] = await gw.store.run(
                lambda tx: dict(recon.our_totals(tx, "2026-09-30")))
            seen["status"] = await snapshot.status(gw)
            return seen
        finally:
            await run.stop()

    seen = asyncio.run(scenario())

    asked = seen["asked"]
    assert asked["2026-10-01 00:05"] == []
    assert asked["2026-10-01 10:00"] == ["2026-09-30"]
    assert asked["2026-10-02 11:00"] == HOLIDAY_DATES[:2]
    assert asked["2026-10-05 09:00"] == HOLIDAY_DATES[:5]
    assert asked["2026-10-07 23:40"] == HOLIDAY_DATES[:7]
    assert asked["2026-10-08 00:20"] == HOLIDAY_DATES[:8]
    assert asked["2026-10-09 09:00"] == HOLIDAY_DATES[:9]
    # Once each: one beps.720 and one beps.721 compared per netting date.
    assert sorted(d for d, _ in seen["compared"]) == HOLIDAY_DATES[:9]  # in any order
    assert {d: ok for d, ok in seen["compared"]} == {
        d: int(d != "2026-10-05") for d in HOLIDAY_DATES[:9]}
    assert seen["dates"] == {
        **{d: ("differences" if d == "2026-10-05" else "reconciled", 1, 1)
           for d in HOLIDAY_DATES[:9]},
        "2026-10-09": ("open", 0, 0)}
    # 30 September's three rounds, the two after its day end included, agreed.
    assert sorted(k[1] for k in seen["totals_30"]) == ["01", "02", "03"]
    # The day ends themselves found nothing left: each date was reconciled by then.
    for day_end in (seen["day_end_30"], seen["day_end_8"]):
        part = day_end["parts"]["BepsExtension"]
        assert day_end["reconciled"] and part["reconciled"], day_end
        assert part["netting_dates"] == [] and part["not_reconciled"] == []
    [planted] = seen["differences"]
    assert (planted["system"], planted["netting_date"], planted["count"]) == (
        "BEPS", "2026-10-05", 2)
    assert {"netting_date": "2026-10-05", "netting_round": "01", "mt": "beps.121.001.01",
            "field": "received_count", "ours": 0, "npc": 2} in planted["differences"]
    # The round the lost package was netted in is alerted when it settles (saps.606).
    [apart] = seen["round_apart"]
    assert (apart["netting_date"], apart["netting_round"], apart["ours_fen"],
            apart["npc_fen"], apart["difference_fen"]) == ("2026-10-05", "01", 0, 2 * 777_00,
                                                           2 * 777_00)
    [lost] = seen["packages"]
    assert lost["work_date"] == "2026-10-05" and lost["packages"][0]["only_at"] == "npc"
    status = seen["status"]["beps_reconciliation"]
    assert (status["complete_through"], status["reconciled_through"]) == (
        "2026-10-08", "2026-10-08")
    assert (status["reconciled"], status["with_differences"], status["not_reconciled"]) == (
        8, 1, 0)
    text = cli_render.status(seen["status"])
    assert "BEPS reconciled   netting dates to 2026-10-08 (complete to 2026-10-08)" in text
    assert "BEPS waiting      none" in text
    assert "BEPS differences  2026-10-05 (2)" in text


def test_the_day_end_reconciles_the_holiday_dates_oldest_first(tmp_path: Path) -> None:
    """No periodic check: the day end of 8 October asks for the complete dates not
    reconciled (30 September to 7 October), three per pass as configured, the oldest
    first; the difference planted on 2 October is alerted once, with the answer, and
    not again by the day end; the next day end goes on from there, and `ops status`
    names the dates still waiting. An operator asks again for a date reconciled
    already; one not complete is refused."""
    async def scenario() -> dict[str, Any]:
        run = NettingRun(tmp_path, ticks=False)
        await run.start()
        seen: dict[str, Any] = {}
        try:
            gw = run.gw
            extension_of(gw).configure(recon_dates_per_pass=3)
            for at, what in [("2026-09-30 20:00", "credits"), ("2026-09-30 20:30", "round"),
                             ("2026-10-02 10:00", "lost"),
                             ("2026-10-03 10:00", "credits"), ("2026-10-03 10:30", "round"),
                             ("2026-10-08 17:40", None)]:
                await run.move_to(sh(at))
                if what == "credits":
                    await run.credits("10.00")
                elif what == "round":
                    await run.net_round()
                elif what == "lost":
                    await run.lost_peer_round(55_00)
            seen["day_end_8"] = await gw.day_end.wait_reconciled(date(2026, 10, 8))
            seen["status_8"] = (await snapshot.status(gw))["beps_reconciliation"]
            await run.move_to(sh("2026-10-09 17:40"))
            seen["day_end_9"] = await gw.day_end.wait_reconciled(date(2026, 10, 9))
            seen["asked"] = await asked_dates(gw)
            seen["again"] = await operator_asks(run, ["2026-10-01", "2026-10-09"])
            await run.quiet()
            seen["dates"] = await netting_dates(gw)
            seen["compared"] = await compared(gw)
            seen["differences"] = await alerts(gw, "reconciliation_differences")
            return seen
        finally:
            await run.stop()

    seen = asyncio.run(scenario())

    first = seen["day_end_8"]["parts"]["BepsExtension"]
    assert first["netting_dates"] == [
        {"netting_date": "2026-09-30", "reconciled": True, "differences": 0},
        {"netting_date": "2026-10-01", "reconciled": True, "differences": 0},
        {"netting_date": "2026-10-02", "reconciled": False, "differences": 2}]
    assert first["reconciled"] is False and first["unanswered"] == []
    assert {d["netting_date"] for d in first["differences"]} == {"2026-10-02"}
    assert seen["day_end_8"]["reconciled"] is False
    assert [(a["system"], a["netting_date"]) for a in seen["differences"]] == [
        ("BEPS", "2026-10-02")]
    assert first["not_reconciled"] == HOLIDAY_DATES[3:8]
    assert seen["day_end_8"]["work_date"] == "2026-10-08"
    assert [(w["netting_date"], w["state"]) for w in seen["status_8"]["waiting"]] == [
        (d, "due") for d in HOLIDAY_DATES[3:8]]
    assert seen["status_8"]["reconciled_through"] == "2026-10-02"
    second = seen["day_end_9"]["parts"]["BepsExtension"]
    assert [d["netting_date"] for d in second["netting_dates"]] == HOLIDAY_DATES[3:6]
    assert second["not_reconciled"] == HOLIDAY_DATES[6:9]
    assert seen["asked"] == HOLIDAY_DATES[:6]
    assert seen["again"] == [("executed", "reconciled"),
                             ("failed", "beps_netting_date_not_complete")]
    assert seen["dates"]["2026-10-01"] == ("reconciled", 2, 2)
    assert seen["dates"]["2026-10-02"] == ("differences", 1, 1)
    # Each date compared once (the answers to one pass's beps.720s may come in any
    # order), then the date the operator asked for again.
    dates = [d for d, _ in seen["compared"]]
    assert sorted(dates[:6]) == HOLIDAY_DATES[:6] and dates[6:] == ["2026-10-01"]


async def operator_asks(run: NettingRun, days: list[str]) -> list[tuple[str, str]]:
    """`paygate ops request beps-reconcile DAY` by an operator, for each day: the
    request's state and its outcome's previous state, or its refusal's code."""
    from aiohttp import web

    from gateway.errors import PaygateError
    from gateway.ops.web import OPS_KEY, add_routes

    app = web.Application()
    add_routes(app, run.gw)
    ops = app[OPS_KEY]
    await ops.console.ready()
    out = []
    for day in days:
        try:
            req = await ops.console.request(ops.directory.get("op1"), "beps_reconcile", day)
        except PaygateError as exc:
            out.append(("failed", exc.problems[0].code))
            continue
        out.append((req["state"], req["outcome"]["state_before"]))
    return out
