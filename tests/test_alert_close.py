"""An operator (any level but 10, no second person) closes an ordinary alert once it has
been looked at: it moves to the history (the page's Alerts card and `ops alerts` no
longer count it open), with who and when in the audit trail. A critical alert still
needs a supervisor's `alert_acknowledge`; phase changes and link episodes, which go to
the history by themselves, are refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import PaygateError
from gateway.ops import attention, cli_render, control
from tests.e2e_support import started
from tests.test_health_critical import CRITICAL, console_of, raise_alert

pytestmark = pytest.mark.e2e


def test_an_operator_closes_an_ordinary_alert_into_the_history(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            console, op1, sup1 = console_of(gw)

            def counts() -> Any:
                return gw.store.run(lambda tx: attention.counts(tx, []))

            seen: dict[str, Any] = {}
            ordinary = await raise_alert(gw, "link_ack_refused", mesg_id="x", mt="y")
            critical = await raise_alert(gw, CRITICAL, payment="P1", amount_fen=100)
            phase = await raise_alert(gw, "window_changed", work_date="2026-12-07")
            episode = await raise_alert(gw, "link_down", since="2026-12-07T09:00:00+08:00")
            seen["before"] = await counts()
            seen["listed_before"] = await gw.store.run(
                lambda tx: attention.listing(tx, [], 10))
            refusals = {}
            for what, target in (("critical", critical), ("phase", phase),
                                 ("episode", episode), ("unknown", 999999)):
                with pytest.raises(PaygateError) as refused:
                    await console.request(op1, "alert_close", str(target))
                refusals[what] = refused.value.code
            seen["closed"] = await console.request(op1, "alert_close", str(ordinary),
                                                       note="message resent by hand")
            with pytest.raises(PaygateError) as again:
                await console.request(sup1, "alert_close", str(ordinary))
            refusals["again"] = again.value.code
            with pytest.raises(PaygateError) as ordinary_ack:
                await console.request(sup1, "alert_acknowledge", str(ordinary))
            refusals["acknowledge_ordinary"] = ordinary_ack.value.code
            seen["refusals"] = refusals
            seen["after"] = await counts()
            seen["listed"] = await gw.store.run(lambda tx: attention.listing(tx, [], 10))
            # No link episode going on: the history alone, and the open alone.
            seen["history"] = await gw.store.run(
                lambda tx: attention.listing(tx, [], 10, attention=False))
            seen["open"] = await gw.store.run(
                lambda tx: attention.listing(tx, [], 10, attention=True))
            seen["audit"] = await gw.store.run(lambda tx: tx.query(
                "SELECT actor, what, at FROM ops_audit WHERE target = ? ORDER BY id",
                (str(ordinary),)))
            seen["ids"] = {"ordinary": ordinary, "critical": critical, "phase": phase,
                           "episode": episode}
            return seen

    seen = asyncio.run(scenario())
    ids = seen["ids"]

    assert seen["refusals"] == {"critical": "alert_is_critical",
                                "phase": "alert_closes_by_itself",
                                "episode": "alert_closes_by_itself",
                                "unknown": "alert_not_found",
                                "again": "alert_already_acknowledged",
                                "acknowledge_ordinary": "alert_not_critical"}
    assert seen["closed"]["state"] == "executed" and seen["closed"]["requested_by"] == "op1"
    assert seen["after"] == {"attention": seen["before"]["attention"] - 1,
                             "history": seen["before"]["history"] + 1}
    listed = {a["id"]: a for a in seen["listed"]}
    assert listed[ids["ordinary"]]["attention"] is False
    assert listed[ids["ordinary"]]["acknowledged_by"] == "op1"
    assert listed[ids["critical"]]["attention"] is True
    history = {a["id"] for a in seen["history"]}
    opened = {a["id"] for a in seen["open"]}
    assert {ids["ordinary"], ids["phase"], ids["episode"]} <= history
    assert ids["critical"] in opened and not history & opened
    # Which alert the page offers to close: an ordinary one still open, nothing else.
    before = {a["id"]: a["closable"] for a in seen["listed_before"] if a["id"] in ids.values()}
    assert before == {ids["ordinary"]: True, ids["critical"]: False, ids["phase"]: False,
                      ids["episode"]: False}
    assert not any(listed[i]["closable"] for i in ids.values())
    assert [(actor, what) for actor, what, _ in seen["audit"]] == [("op1", "request"),
                                                                   ("op1", "execute")]
    assert all(at for *_, at in seen["audit"])
    listed = len(seen["listed"])
    assert "op1" in cli_render.alerts({"alerts": seen["listed"], "total": listed,
                                       "shown": listed, "truncated": False})


def test_the_close_action_needs_no_second_person_and_no_supervisor():
    rule = control.RULES["alert_close"]
    assert rule.target == "alert" and not rule.needs_approval
    assert rule.request_level_min == 0
    assert control.LABELS["alert_close"]["en"]
