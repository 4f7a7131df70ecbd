"""A ccms.801 the gateway refuses stops HVPS sending, loudly, end to end against the
simulated NPC in its own process (docs/operations.md, "An HVPS status notice the gateway
refused"). The NPC is forced from 10 to 00, a change the gateway refuses: the alert
`hvps_status_notice_refused` is critical, /health says `attention` and shows the hold,
and a payment taken meanwhile is accepted but not sent (the NPC, closed, would reject
it). It goes, and settles, once the two are in step again: by the NPC's next notice,
or by operators confirming the status under dual control."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway import status_hold
from gateway.critical import open_alerts
from gateway.errors import PaygateError
from gateway.ops.web import OPS_KEY
from tests.e2e_support import (
    WORK_DATE,
    payer_after_one_settled,
    started,
    state_of,
    transfer,
    until,
    wait_state,
)

pytestmark = pytest.mark.e2e

HELD_FOR_S = 2.0  # how long a payment taken during the hold is watched not leaving


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def health(h: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{h.gateway.url}/health") as r:
        assert r.status == 200
        return await r.json()


async def refused_and_held(h: Any) -> dict[str, Any]:
    """The NPC forced from 10 to 00 (illegal for the gateway), a payment taken after the
    gateway refused the notice, and what is seen while it waits."""
    gw = h.gateway
    payer = await payer_after_one_settled(h)
    await h.sim("POST", "/sim/phase", {"status": "00", "date": WORK_DATE.isoformat(),
                                        "force": True})
    await until(lambda: gw.hvps_hold is not None, "HVPS sending held")
    _, taken = await gw.submit_transfer("core", "during-hold", transfer(payer, "5.00"))
    await asyncio.sleep(HELD_FOR_S)
    return {"payer": payer, "payment": taken, "state": await state_of(h, taken["id"]),
            "outbox": await gw.store.run(lambda tx: tx.query_one(
                "SELECT state, attempts FROM outbox WHERE payment_id = ?", (taken["id"],))),
            "health": await health(h), "status": gw.hvps_status,
            "alerts": await gw.store.run(open_alerts)}


def console(gw: Any) -> tuple[Any, Any, Any]:
    """The operators' console, an operator (op1) and a supervisor (sup1)."""
    ops = gw.runner.app[OPS_KEY]
    return ops, ops.directory.get("op1"), ops.directory.get("sup1")


def assert_held(seen: dict[str, Any]) -> None:
    assert seen["status"] == "10"  # the gateway kept its status
    assert seen["payment"]["state"] == "accepted"  # answered as the window in force says
    assert seen["state"] == "accepted"  # not sent, so not rejected by the closed NPC
    assert seen["outbox"] == ("pending", 0)
    assert seen["alerts"]["codes"].get(status_hold.ALERT) == 1
    body = seen["health"]
    assert body["attention"] is True
    assert body["critical_alerts"]["codes"].get(status_hold.ALERT) == 1
    sending = body["hvps_sending"]
    assert sending["held"] is True
    assert sending["refused_notice"] == {"orig": "10", "cur": "00",
                                         "date": WORK_DATE.isoformat(), "outcome": "illegal"}
    assert sending["gateway_status"] == "10"


def test_a_later_notice_in_step_resumes_sending(tmp_path):
    """The NPC opens again (00 to 10, the status the gateway kept): the notice is taken,
    the hold ends by itself, the payment goes and settles, and the alert is closed by
    the gateway saying how."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            seen = await refused_and_held(h)
            await h.sim("POST", "/sim/phase", {"status": "10", "date": WORK_DATE.isoformat()})
            await until(lambda: gw.hvps_hold is None, "the hold ended")
            await wait_state(h, seen["payment"]["id"], "settled")
            seen["after"] = await health(h)
            seen["hold_row"] = await gw.store.run(status_hold.read)
            seen["closed"] = await gw.store.run(lambda tx: tx.query(
                "SELECT k.by, k.note FROM alerts a JOIN alert_acks k ON k.alert_id = a.id "
                "WHERE a.code = ?", (status_hold.ALERT,)))
            return seen

    seen = run(scenario())

    assert_held(seen)
    assert seen["after"]["attention"] is False
    assert seen["after"]["hvps_sending"] == {"held": False}
    assert seen["hold_row"] is None
    ((by, note),) = seen["closed"]
    assert by == "gateway" and "ccms.801 00 to 10" in note


def test_operators_confirm_the_status_and_sending_resumes(tmp_path):
    """The NPC's opening notice is lost (the link drops it), so only people can tell the
    gateway where the NPC is: op1 asks to confirm 10 with a note, nothing moves until a
    supervisor approves (nobody their own request), then the payment goes and settles;
    a confirmation asked while nothing is held is refused."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            ops, op1, sup1 = console(gw)
            seen = await refused_and_held(h)
            await h.sim("POST", "/sim/faults", {"drop": 1.0})
            await h.sim("POST", "/sim/phase", {"status": "10", "date": WORK_DATE.isoformat()})
            await asyncio.sleep(1.0)
            await h.sim("POST", "/sim/faults", {"drop": 0.0})
            seen["still_held"] = gw.hvps_hold is not None
            asked = await ops.console.request(
                op1, status_hold.ACTION, WORK_DATE.isoformat(), {"status": "10"},
                "NPC desk confirmed by phone: HVPS open (10)")
            await asyncio.sleep(HELD_FOR_S)
            seen["asked"] = asked
            seen["pending_state"] = await state_of(h, seen["payment"]["id"])
            seen["own"] = await _refusal(ops.console.decide(op1, asked["id"], True))
            seen["approved"] = await ops.console.decide(sup1, asked["id"], True)
            await until(lambda: gw.hvps_hold is None, "the hold ended")
            await wait_state(h, seen["payment"]["id"], "settled")
            seen["after"] = await health(h)
            seen["again"] = await _refusal(ops.console.request(
                op1, status_hold.ACTION, WORK_DATE.isoformat(), {"status": "10"}, "again"))
            seen["no_note"] = await _refusal(ops.console.request(
                op1, status_hold.ACTION, WORK_DATE.isoformat(), {"status": "10"}, " "))
            seen["bad_status"] = await _refusal(ops.console.request(
                op1, status_hold.ACTION, WORK_DATE.isoformat(), {"status": "11"}, "x"))
            seen["window"] = gw.window.history[-1]
            return seen

    seen = run(scenario())

    assert_held(seen)
    assert seen["still_held"] is True
    assert seen["asked"]["state"] == "pending"
    assert seen["pending_state"] == "accepted"
    assert seen["own"] == 403
    approved = seen["approved"]
    assert approved["state"] == "executed", approved
    assert approved["outcome"]["status"] == "10"
    assert approved["outcome"]["requested_by"] == "op1"
    assert approved["outcome"]["approved_by"] == "sup1"
    assert seen["after"]["attention"] is False
    assert seen["after"]["hvps_sending"] == {"held": False}
    assert seen["again"] == "hvps_status_not_held"
    assert seen["no_note"] == "note_required"
    assert seen["bad_status"] == "hvps_status_malformed"
    assert (seen["window"].source, seen["window"].outcome) == ("operator", "set_by_operator")


async def _refusal(coro: Any) -> Any:
    """The refusal's first code (its HTTP status for a 403), or the answer when none."""
    try:
        return await coro
    except PaygateError as exc:
        return exc.status if exc.status == 403 else exc.problems[0].code


def test_confirming_a_closed_status_keeps_the_day_and_the_held_payments_off_the_wire(
        tmp_path):
    """The NPC forced from 10 to 40 at 09:00 (illegal for the gateway): two payments taken
    during the hold show `hvps_sending_held`. Confirming 40 under tomorrow's date is
    refused when asked (and so is the cut-over, a day change); confirming 40 on the work
    date is approved, and neither closes the ledger day nor reconciles: HVPS is closed
    under it, so the payment with `when_closed` `refuse` is rejected with `hvps_closed`
    (its money released) and the other waits for the next opening, neither sent."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            ops, op1, sup1 = console(gw)
            payer = await payer_after_one_settled(h)
            await h.sim("POST", "/sim/phase", {"status": "40", "date": WORK_DATE.isoformat(),
                                                "force": True})
            await until(lambda: gw.hvps_hold is not None, "HVPS sending held")
            _, queued = await gw.submit_transfer("core", "held-q", transfer(payer, "5.00"))
            _, refused = await gw.submit_transfer("core", "held-r", transfer(
                payer, "6.00", when_closed="refuse"))
            seen: dict[str, Any] = {"during": [await gw.get_transfer(p["id"])
                                               for p in (queued, refused)]}
            tomorrow = WORK_DATE.replace(day=WORK_DATE.day + 1).isoformat()
            seen["tomorrow"] = await _refusal(ops.console.request(
                op1, status_hold.ACTION, tomorrow, {"status": "40"}, "NPC desk: 40"))
            seen["cutover"] = await _refusal(ops.console.request(
                op1, status_hold.ACTION, WORK_DATE.isoformat(), {"status": "15"}, "desk"))
            asked = await ops.console.request(
                op1, status_hold.ACTION, WORK_DATE.isoformat(), {"status": "40"},
                "NPC desk confirmed by phone: end of day (40)")
            seen["approved"] = await ops.console.decide(sup1, asked["id"], True)
            await until(lambda: gw.hvps_hold is None, "the hold ended")
            await asyncio.sleep(HELD_FOR_S)
            seen["after"] = [await gw.get_transfer(p["id"]) for p in (queued, refused)]
            seen["outbox"] = await gw.store.run(lambda tx: tx.query(
                "SELECT state, attempts FROM outbox WHERE payment_id IN (?, ?) ORDER BY id",
                (queued["id"], refused["id"])))
            seen["days_closed"] = await gw.store.run(lambda tx: tx.query(
                "SELECT work_date FROM ledger_day", ()))
            seen["reconciled"] = dict(gw.day_end.results)
            seen["gateway"] = (gw.hvps_status, gw.work_date)
            seen["holds"] = await gw.store.run(lambda tx: tx.query(
                "SELECT p.id, e.state FROM payments p LEFT JOIN ledger_hold_end e ON "
                "e.hold_id = CAST(p.hold_id AS BIGINT) WHERE p.id IN (?, ?) ORDER BY p.id",
                (queued["id"], refused["id"])))
            return seen

    seen = run(scenario())

    assert [(p["state"], p["reason"]) for p in seen["during"]] == [
        ("accepted", "hvps_sending_held")] * 2
    assert seen["tomorrow"] == "hvps_status_date_not_allowed"
    assert seen["cutover"] == "hvps_status_confirm_changes_day"
    approved = seen["approved"]
    assert approved["state"] == "executed", approved
    assert approved["outcome"]["held_payments"] == {"waiting": 1, "refused": 1}
    assert [(p["state"], p["reason"]) for p in seen["after"]] == [
        ("held", "waiting_for_hvps_window"), ("rejected", "hvps_closed")]
    assert seen["outbox"] == [("waiting", 0), ("failed", 0)]
    assert seen["days_closed"] == []
    assert seen["reconciled"] == {}
    assert seen["gateway"] == ("40", WORK_DATE)
    # The waiting payment's money stays held; the refused one's is released.
    assert [state for _, state in seen["holds"]] == [None, "released"]
