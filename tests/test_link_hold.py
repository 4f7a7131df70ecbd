"""While the link is down, deliveries are held: one attempt at a time finds when the NPC
answers again (with a growing pause between attempts), instead of every waiting payment
trying on its own; once it answers, every held payment goes, none lost, each sent once."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e_support import open_account, started, transfer, until, wait_state

pytestmark = pytest.mark.e2e

WAITING = 300       # payments waiting while the NPC is down
WINDOW_S = 6.0      # how long the attempts are counted


def test_a_down_link_is_probed_one_attempt_at_a_time_then_all_held_payments_go(tmp_path):
    """With 300 payments waiting, fewer than 2 delivery attempts a second reach the dead
    NPC; restarted, all 300 settle and each went out once."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000_000 * 100)
            await h.stop_simulator(kill=True)
            ids = []
            for i in range(WAITING):
                _, answer = await gw.submit_transfer("core", f"k{i}",
                                                     transfer(payer, f"{100 + i}.00"))
                ids.append(answer["id"])
            await until(lambda: gw.link.state == "down", "link down", timeout_s=5)
            await asyncio.sleep(3)  # the first round of attempts is over
            before = gw.link.failures
            await asyncio.sleep(WINDOW_S)
            attempts_per_s = (gw.link.failures - before) / WINDOW_S

            await h.start_simulator()
            for payment_id in ids:
                await wait_state(h, payment_id, "settled", timeout_s=90)
            sent = await gw.store.run(lambda tx: tx.query(
                "SELECT payment_id, COUNT(*) FROM payment_events WHERE event = 'hvps_sent' "
                "GROUP BY payment_id", ()))
            return attempts_per_s, dict(sent), ids

    attempts_per_s, sent, ids = asyncio.run(scenario())
    print(f"attempts_per_s={attempts_per_s:.1f}")

    assert attempts_per_s < 2, attempts_per_s
    assert sorted(sent) == sorted(ids) and set(sent.values()) == {1}
