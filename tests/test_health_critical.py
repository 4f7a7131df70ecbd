"""A critical alert (money the NPC moved against what the gateway had decided) stays open
until a supervisor acknowledges it. Meanwhile /health still answers 200 with `ok` as the
link and Redis make it (liveness: restarting or rerouting cures nothing here), but says
`attention` with the open critical alerts by code, without their detail (the route needs
no credentials); `ops status`, the page's snapshot and /metrics show them too."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway.errors import PaygateError
from gateway.ops import cli_render
from gateway.ops.web import OPS_KEY
from tests.e2e_support import started

pytestmark = pytest.mark.e2e

CRITICAL = "npc_settled_payment_we_ended"


async def get(url: str, path: str, auth: bool = False) -> tuple[int, Any]:
    basic = aiohttp.BasicAuth("op1", "op1-demo") if auth else None
    async with aiohttp.ClientSession(auth=basic) as s, s.get(url + path) as r:
        body = await (r.json() if path != "/metrics" else r.text())
        return r.status, body


async def raise_alert(gw: Any, code: str, **detail: Any) -> int:
    def work(tx: Any) -> int:
        gw.alert(tx, code, **detail)
        return tx.query_one("SELECT MAX(id) FROM alerts", ())[0]
    return await gw.store.run(work)


def console_of(gw: Any) -> tuple[Any, Any, Any]:
    """The gateway's console and its demo operator and supervisor (op1, sup1)."""
    ops = gw.runner.app[OPS_KEY]
    return ops.console, ops.directory.get("op1"), ops.directory.get("sup1")


def test_health_shows_open_critical_alerts_until_a_supervisor_acknowledges_them(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            console, op1, sup1 = console_of(gw)
            seen: dict[str, Any] = {"before": await get(gw.url, "/health")}
            other = await raise_alert(gw, "link_ack_refused", mesg_id="x", mt="y")
            critical = await raise_alert(gw, CRITICAL, payment="P1", amount_fen=100,
                                         severity="critical")
            seen["open"] = await get(gw.url, "/health")
            seen["status"] = (await get(gw.url, "/ops/api/status", auth=True))[1]
            seen["metrics"] = (await get(gw.url, "/metrics", auth=True))[1]
            seen["alerts_open"] = (await get(gw.url, "/ops/api/alerts", auth=True))[1]
            refusals = {}
            for what, who, target in (("operator", op1, critical), ("other", sup1, other),
                                      ("unknown", sup1, 999999)):
                with pytest.raises(PaygateError) as refused:
                    await console.request(who, "alert_acknowledge", str(target))
                refusals[what] = refused.value.code
            seen["acknowledged"] = await console.request(
                sup1, "alert_acknowledge", str(critical), note="booked from the payer")
            with pytest.raises(PaygateError) as again:
                await console.request(sup1, "alert_acknowledge", str(critical))
            refusals["again"] = again.value.code
            seen["refusals"] = refusals
            seen["closed"] = await get(gw.url, "/health")
            seen["alerts_closed"] = (await get(gw.url, "/ops/api/alerts", auth=True))[1]
            return seen

    seen = asyncio.run(scenario())

    status, before = seen["before"]
    assert status == 200 and before["ok"] is True and before["attention"] is False
    assert before["critical_alerts"] == {"open": 0, "since": None, "codes": {}}
    status, open_ = seen["open"]
    assert status == 200 and open_["ok"] is True and open_["attention"] is True
    assert open_["critical_alerts"]["open"] == 1
    assert open_["critical_alerts"]["codes"] == {CRITICAL: 1}
    assert open_["critical_alerts"]["since"] is not None
    assert "P1" not in str(open_)  # no payment named to a caller without credentials
    shown = cli_render.status(seen["status"])
    assert "critical alerts" in shown and CRITICAL in shown, shown
    assert "paygate_critical_alerts_open 1" in seen["metrics"]
    assert [(a["code"], a["open"]) for a in seen["alerts_open"]["alerts"]][:2] == [
        (CRITICAL, True), ("link_ack_refused", False)]
    assert "OPEN" in cli_render.alerts(seen["alerts_open"])
    assert seen["alerts_closed"]["alerts"][0]["acknowledged_by"] == "sup1"
    assert seen["refusals"] == {"operator": "operator_level_too_low",
                                "other": "alert_not_critical", "unknown": "alert_not_found",
                                "again": "alert_already_acknowledged"}
    assert seen["acknowledged"]["state"] == "executed"
    assert seen["acknowledged"]["outcome"]["alert"] == int(seen["acknowledged"]["target"])
    status, closed = seen["closed"]
    assert status == 200 and closed["attention"] is False
    assert closed["critical_alerts"]["open"] == 0
