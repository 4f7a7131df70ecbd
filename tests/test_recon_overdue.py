"""A reconciliation the NPC does not answer: an hvps.710 or beps.720 left without its
hvps.711 / beps.721 for `recon_answer_overdue_s` raises `reconciliation_overdue` (naming
the system and the date) and shows on ops status and the reconciliation card as overdue;
when the answer comes after all, the alert goes to the history (closed by the gateway)
and status no longer says overdue. The simulated NPC's `drop` fault loses the answers;
its redelivery sends them late."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import recon
from gateway.ops import attention, cli_render, snapshot
from tests.e2e_support import WORK_DATE, started, until

pytestmark = pytest.mark.e2e


async def _overdue_alerts(gw: Any) -> list[dict[str, Any]]:
    rows = await gw.store.run(lambda tx: attention.listing(tx, [], 50))
    return [r for r in rows if r["code"] == recon.ALERT_OVERDUE]


def test_an_unanswered_reconciliation_is_overdue_until_its_answer_comes(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path, recon_answer_overdue_s=1.0) as h:
            gw = h.gateway
            beps = next(e for e in gw.extensions if hasattr(e, "reconcile_at_day_end"))
            seen: dict[str, Any] = {}
            await h.sim("POST", "/sim/faults", {"drop": 1.0})
            hvps_ask = asyncio.create_task(gw.reconcile_hvps(WORK_DATE, timeout_s=60))
            beps_ask = asyncio.create_task(beps.reconcile(WORK_DATE, timeout_s=60))

            async def both_raised() -> bool:
                return len(await _overdue_alerts(gw)) == 2
            # Raised by the gateway's own periodic check (the window tick).
            await until(both_raised, "two reconciliation_overdue alerts", 30)
            seen["alerts"] = await _overdue_alerts(gw)
            seen["status"] = await gw.store.run(lambda tx: snapshot.books(gw, tx))
            seen["done_early"] = hvps_ask.done() or beps_ask.done()

            await h.sim("POST", "/sim/faults", {"drop": 0.0})
            await h.sim("POST", "/sim/redeliver", {"include_faulted": True})
            seen["hvps"] = await hvps_ask
            seen["beps"] = await beps_ask

            async def both_closed() -> bool:
                return not any(a["attention"] for a in await _overdue_alerts(gw))
            await until(both_closed, "the overdue alerts closed", 30)
            seen["alerts_after"] = await _overdue_alerts(gw)
            seen["status_after"] = await gw.store.run(lambda tx: snapshot.books(gw, tx))
            return seen

    seen = asyncio.run(scenario())

    day = WORK_DATE.isoformat()
    assert not seen["done_early"]
    assert sorted((a["detail"]["system"], a["detail"]["work_date"], a["attention"])
                  for a in seen["alerts"]) == [("BEPS", day, True), ("HVPS", day, True)]
    assert all(a["closable"] for a in seen["alerts"])
    overdue = seen["status"]["reconciliation_overdue"]
    assert sorted((o["system"], o["work_date"]) for o in overdue) == [("BEPS", day),
                                                                      ("HVPS", day)]
    shown = cli_render.status({**_status_frame(), **seen["status"]})
    assert f"OVERDUE: HVPS {day}" in shown and f"OVERDUE: BEPS {day}" in shown, shown

    assert seen["hvps"]["work_date"] == day and seen["beps"]["work_date"] == day
    assert [(a["attention"], a["acknowledged_by"]) for a in seen["alerts_after"]] == \
        [(False, "gateway")] * 2
    assert seen["status_after"]["reconciliation_overdue"] == []
    assert "OVERDUE" not in cli_render.status({**_status_frame(),
                                               **seen["status_after"]})


def _status_frame() -> dict[str, Any]:
    """What `cli_render.status` reads besides the books (the window, the link)."""
    return {"bank": "999100000019", "window": {"status": "10", "name_en": "business",
                                              "open": True, "work_date": "2026-12-07",
                                              "next": {}},
            "link": {"state": "up"}, "counts": []}
