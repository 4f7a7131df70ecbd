"""Network faults between the NPC and the gateway: messages dropped, duplicated,
delayed and reordered, the NPC refusing everything for a while. The gateway retries,
deduplicates and asks for lost outcomes; every payment still ends settled exactly once."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e_support import BANK, YUAN, open_account, started, transfer, until

pytestmark = pytest.mark.e2e


def test_faulty_link_loses_and_doubles_nothing(tmp_path):
    """Under drops, duplicates, delays, reordering and an outage, all payments settle once
    and the books agree with the NPC."""
    async def scenario():
        async with started(tmp_path, result_timeout_s=2.0, exceptions_sweep_interval_s=0.5
                           ) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000_000 * YUAN)
            await h.sim("POST", "/sim/faults", {"drop": 0.2, "duplicate": 0.3,
                                                "delay_ms": 20, "reorder": True})
            ids = []
            for i in range(20):
                _, answer = await gw.submit_transfer("core", f"f{i}",
                                                     transfer(payer, f"{60000 + i}.00"))
                ids.append(answer["id"])
            await h.sim("POST", "/sim/faults", {"error_status": 503})
            for i in range(20, 30):
                _, answer = await gw.submit_transfer("core", f"f{i}",
                                                     transfer(payer, f"{60000 + i}.00"))
                ids.append(answer["id"])
            await asyncio.sleep(2.0)
            await h.sim("POST", "/sim/faults", {"error_status": None})

            async def all_settled() -> bool:
                states = await gw.store.run(lambda tx: [s for (s,) in tx.query(
                    "SELECT state FROM payments WHERE direction = 'out'", ())])
                return states.count("settled") == len(ids)
            await until(all_settled, "every payment settled", timeout_s=90)
            await h.sim("POST", "/sim/faults", {"drop": 0.0, "duplicate": 0.0, "delay_ms": 0,
                                                "reorder": False})
            stats = await h.sim("GET", "/sim/stats")
            clearing = await gw.store.run(gw.ledger.clearing_balance)
            balanced = await gw.store.run(lambda tx: gw.ledger.trial_balance(tx).balanced)
            asked = await gw.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM archive WHERE mesg_type = 'ccms.316.001.01'", ())[0])
            return stats, clearing, balanced, asked

    stats, clearing, balanced, asked = asyncio.run(scenario())
    print("faults:", stats["outbox"], "status queries:", asked)
    assert stats["outbox"].get("dropped", 0) > 0  # the faults really happened
    assert asked > 0  # lost results were asked for (ccms.316), never resent
    assert stats["settled_twice"] == []
    assert stats["faults"]["drop"] == 0.0
    assert clearing == stats["balances"][BANK]
    assert balanced
