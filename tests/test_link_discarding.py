"""An NPC that takes our POSTs but discards every message in them (ccms.911: our signing
key installed at the NPC is wrong, say) is not a link that is up: /health, `ops status`
and the page's card show it `degraded`, with how many messages were discarded and the
last discard's code and reason, one `link_discarding` alert is raised for the episode,
and the first message of ours the NPC acknowledges again (ccms.990) ends it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.messages.signing import EcdsaP256, KeyPeriod
from gateway.ops import cli_render
from tests.e2e_support import BANK, YUAN, open_account, started, transfer, until, wait_state
from tests.test_link_refusing import health, ops_status

pytestmark = pytest.mark.e2e


async def alerts(gw: Any, code: str) -> list[str]:
    return [c for (c,) in await gw.store.run(lambda tx: tx.query(
        "SELECT code FROM alerts WHERE code = ? ORDER BY id", (code,)))]


async def pay_discarded(h: Any, payer: str, count: int) -> None:
    """`count` transfers from `payer`, one after the other, each rejected once the NPC
    discarded its message."""
    for i in range(count):
        _, answer = await h.gateway.submit_transfer("core", f"discarded-{i}",
                                                    transfer(payer, f"{2 + i}.00"))
        await wait_state(h, answer["id"], "rejected")


def sign_with(gw: Any, key: Any) -> None:
    """The gateway signs with `key` from now on; the NPC still holds the public key of
    the one it had, as when a wrong key of ours is installed at the NPC."""
    gw.keyring.private[BANK] = key
    gw.keyring.private_all[BANK] = [(KeyPeriod(f"{BANK}.key.pem"), key)]


def test_a_discarding_npc_shows_the_link_degraded_with_one_alert_per_episode(tmp_path, caplog):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 1_000 * YUAN)
            _, first = await gw.submit_transfer("core", "ok-1", transfer(payer, "1.00"))
            await wait_state(h, first["id"], "settled")
            seen: dict[str, Any] = {"before": await health(gw.url)}

            good = gw.keyring.private[BANK]
            sign_with(gw, EcdsaP256.generate())
            await pay_discarded(h, payer, 3)
            seen["discarding"] = await health(gw.url)
            seen["status"] = await ops_status(gw.url)
            seen["alerts_discarding"] = await alerts(gw, "link_discarding")

            sign_with(gw, good)
            _, taken = await gw.submit_transfer("core", "ok-2", transfer(payer, "9.00"))
            await wait_state(h, taken["id"], "settled")
            await until(lambda: gw.link.view()["state"] == "up", "the link up again")
            seen["after"] = await health(gw.url)

            sign_with(gw, EcdsaP256.generate())
            _, again = await gw.submit_transfer("core", "discarded-again",
                                                transfer(payer, "10.00"))
            await wait_state(h, again["id"], "rejected")
            seen["second"] = await health(gw.url)
            seen["alerts_end"] = await alerts(gw, "link_discarding")
            sign_with(gw, good)
            return seen

    with caplog.at_level(logging.INFO):
        seen = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]

    assert seen["before"]["ok"] is True and seen["before"]["link"]["state"] == "up"
    discarding = seen["discarding"]
    assert discarding["ok"] is False
    assert discarding["link"]["state"] == "degraded"
    # The three payments' messages, and any other message sent meanwhile (a probe).
    count = discarding["link"]["discarded_messages"]
    assert count >= 3
    assert "CC9S0001" in discarding["link"]["last_discard"]
    assert discarding["link"]["since"] == discarding["link"]["discarding_since"]
    shown = cli_render.status(seen["status"])
    assert "DEGRADED" in shown and f"{count} messages" in shown, shown
    assert "CC9S0001" in shown, shown
    assert seen["alerts_discarding"] == ["link_discarding"]
    assert seen["after"]["ok"] is True and seen["after"]["link"]["state"] == "up"
    assert seen["after"]["link"]["discarded_messages"] == 0
    assert seen["after"]["link"]["last_discard"] is None
    # up again since the episode ended, not since before it began
    assert seen["after"]["link"]["since"] > discarding["link"]["discarding_since"]
    assert any(line.startswith("event=link_discarding_over") for line in lines)
    assert seen["second"]["link"]["state"] == "degraded"
    assert seen["alerts_end"] == ["link_discarding", "link_discarding"]


def test_the_simulated_npcs_discard_fault_degrades_the_link_until_it_is_used_up(tmp_path):
    """The simulated NPC's `discard` fault (docs/simulator.md) makes it discard our next
    two messages: both payments are rejected, the link shows degraded with the rule the
    ccms.911 named and one `link_discarding` alert, and the next payment settles and
    brings the link up again."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 1_000 * YUAN)
            seen: dict[str, Any] = {"faults": await h.sim("POST", "/sim/faults",
                                                          {"discard": 2})}
            await pay_discarded(h, payer, 2)
            seen["discarding"] = await health(gw.url)
            seen["status"] = await ops_status(gw.url)
            seen["alerts"] = await alerts(gw, "link_discarding")

            _, taken = await gw.submit_transfer("core", "taken", transfer(payer, "9.00"))
            await wait_state(h, taken["id"], "settled")
            await until(lambda: gw.link.view()["state"] == "up", "the link up again")
            seen["after"] = await health(gw.url)
            seen["faults_after"] = await h.sim("GET", "/sim/faults")
            return seen

    seen = asyncio.run(scenario())
    link = seen["discarding"]["link"]

    assert seen["faults"]["discard"] == 2
    assert link["state"] == "degraded" and link["discarded_messages"] == 2
    assert "CC9S0001" in link["last_discard"]
    assert "signature_discarded_by_fault" in link["last_discard"]
    assert "DEGRADED" in cli_render.status(seen["status"])
    assert seen["alerts"] == ["link_discarding"]
    assert seen["after"]["link"]["state"] == "up"
    assert seen["after"]["link"]["discarded_messages"] == 0
    assert seen["faults_after"]["discard"] == 0
