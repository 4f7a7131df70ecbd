"""A payment held overnight for the HVPS window, sent at the next opening and queued at
the NPC for liquidity (PR12): its reason is then the NPC's, wherever it is read, and it
is not asked about as if the cut-over had left it behind in the queue of a day gone."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime
from typing import Any

import pytest

from gateway import payments
from gateway.clock import SHANGHAI, ScaledClock
from gateway.exceptions.extension import Exceptions
from gateway.harness import Harness
from gateway.ops import views
from simulators import codes
from tests.e2e_support import BANK, PEER, YUAN, open_account, transfer, wait_state

pytestmark = pytest.mark.e2e

# Monday evening, HVPS closed; fast enough that the night passes in about twenty seconds.
EVENING = datetime(2026, 12, 7, 17, 5, tzinfo=SHANGHAI)
RATE = 3_000.0
NEXT_DAY = date(2026, 12, 8)


def test_payment_queued_at_the_opening_shows_the_npcs_reason_and_is_not_asked_about(
        tmp_path):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]],
                                  list[int]]:
        clock = ScaledClock(start=EVENING, anchor_epoch_s=time.time(), rate=RATE)
        # The NPC's clearing account is short of the payment: it queues it (PR12). No
        # payment is old enough to be asked about for its time in the queue alone.
        h = Harness(tmp_path, clock_spec=clock.to_spec(),
                    balances_fen={BANK: 100_000 * YUAN, PEER: 10**14},
                    settings_overrides={"queued_query_after_s": 10**7},
                    sim_args=["--follow-clock"])
        await h.start()
        try:
            gw = h.gateway
            await gw.store.run(lambda tx: gw.ledger.fund_clearing(
                tx, "test:opening", 100_000 * YUAN, gw.work_date))
            payer = await open_account(h, 21, 1_000_000 * YUAN)
            _, taken = await gw.submit_transfer("core", "evening-1",
                                                transfer(payer, "300000.00"))
            await wait_state(h, taken["id"], "held")
            await wait_state(h, taken["id"], "queued", timeout_s=60.0)
            assert gw.work_date == NEXT_DAY
            # The sweep's passes after the opening (its own run every 30 s of real time
            # may come too, which changes nothing).
            ext = next(e for e in gw.extensions if isinstance(e, Exceptions))
            asked = [await ext.sweep_once() for _ in range(3)]
            view = await gw.get_transfer(taken["id"])
            console = await gw.store.run(lambda tx: views.payment_view(
                payments.get(tx, taken["id"])))
            return view, console, view["history"], asked
        finally:
            await h.stop()

    view, console, history, asked = asyncio.run(scenario())

    assert view["state"] == console["state"] == "queued"
    assert asked == [0, 0, 0]
    assert [e for e in history if e["event"] == "status_query_sent"] == []
    # The NPC's words on the queueing (its RjctInf), on the API and on the console alike.
    assert view["reason"] == console["reason"] == codes.QUEUED.text
    assert [e["detail"].get("npc_code") for e in history
            if e["event"] == "hvps_queued_at_npc"] == [codes.QUEUED.code]
