"""A BEPS package the NPC refuses (4xx) takes the path of an HVPS message the NPC
refuses: its outbox row is dead-lettered once and left by the sweeper, its items are
`held` with the reason and listed by `ops stuck`, an operator's retry of the letter
sends the same package again and its items go on to settle, and cancelling its items
takes them out of it and releases their holds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import keys, recovery
from gateway.beps import extension_of
from gateway.ops import queues, views
from gateway.ops.web import OPS_KEY
from tests.e2e_support import YUAN, open_account, until
from tests.test_beps_cancel_e2e import post, submit
from tests.test_beps_e2e import (CLEARING_FEN, MONDAY, MONDAY_MORNING, beps_started, books,
                                 npc_balance, run, wait_state)

pytestmark = pytest.mark.e2e


async def letters(gw: Any) -> list[tuple[str, dict[str, str]]]:
    return [(eid, f) for eid, f in await gw.redis.xrange(keys.DEAD)
            if f.get("stream") == keys.BEPS_PACKAGES]


async def package_row(gw: Any, payment_id: str) -> tuple[str, str, str, int]:
    """(package id, package state, outbox state, outbox attempts) of a packed item."""
    return tuple(await gw.store.run(lambda tx: tx.query_one(
        "SELECT k.id, k.state, o.state, o.attempts FROM beps_items i JOIN beps_packages k "
        "ON k.id = i.package_id JOIN outbox o ON o.id = k.outbox_id WHERE i.payment_id = ?",
        (payment_id,))))


async def refused_package(h: Any, payer: str, prefix: str) -> list[str]:
    """Two credits sealed into one package, which the NPC answers 400."""
    ext = extension_of(h.gateway)
    ext.configure(package_age_max_s=3600.0)
    await h.sim("POST", "/sim/faults", {"error_status": 400})
    ids = await submit(h, payer, ["100.00", "200.00"], prefix)
    await ext.packer.seal(force=True)
    for pid in ids:
        await wait_state(h, pid, "held", timeout_s=30)
    return ids


def test_a_refused_package_is_held_once_and_sent_again_by_an_operators_retry(
        tmp_path, monkeypatch):
    monkeypatch.setattr(recovery, "SWEEP_AGE_S", 0.0)

    async def scenario() -> dict[str, Any]:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ops = gw.runner.app[OPS_KEY]
            payer = await open_account(h, 31, 10_000 * YUAN)
            ids = await refused_package(h, payer, "r")
            await until(lambda: letters(gw), "the package's dead letter")
            for _ in range(3):
                await recovery.sweep(gw)
                await asyncio.sleep(0.3)
            seen: dict[str, Any] = {
                "views": [await gw.get_transfer(pid) for pid in ids],
                "letters": await letters(gw), "package": await package_row(gw, ids[0]),
                "stuck": await gw.store.run(lambda tx: [
                    p["id"] for p in views.stuck(tx, gw.clock.now(), 60)]),
                "books": await books(h, payer)}
            try:
                await ops.console.request(ops.directory.get("op1"), "release", ids[0])
            except Exception as exc:  # noqa: BLE001 - the refusal is what is looked at
                seen["release"] = exc

            await h.sim("POST", "/sim/faults", {"error_status": None})
            letter = seen["letters"][0][0]
            seen["retry"] = await ops.console.request(ops.directory.get("op1"), "retry",
                                                      letter)
            seen["settled"] = [await wait_state(h, pid, "settled", timeout_s=30)
                               for pid in ids]
            seen["listed"] = await queues.dead_letters(gw.redis, 50, gw.store)
            seen["end"] = await books(h, payer)
            seen["npc_clearing"] = await npc_balance(h)
            return seen

    seen = run(scenario())

    assert [v["state"] for v in seen["views"]] == ["held", "held"]
    assert all(v["reason"] == "refused_at_link: the NPC answered 400" for v in seen["views"])
    assert len(seen["letters"]) == 1
    assert seen["letters"][0][1]["package"] == seen["package"][0]
    # Sealed again (nothing of it reached the NPC), its row dead after one attempt.
    assert seen["package"][1:] == ("sealed", "dead", 1)
    assert {v["id"] for v in seen["views"]} <= set(seen["stuck"])
    assert seen["books"]["holds"] == 300 * YUAN
    assert seen["release"].code == "payment_message_dead_lettered"
    assert seen["retry"]["state"] == "executed"
    assert [v["state"] for v in seen["settled"]] == ["settled", "settled"]
    outbox = seen["letters"][0][1]["outbox"]
    assert [e for e in seen["listed"]["entries"] if e["fields"].get("outbox") == outbox] == []
    end = seen["end"]
    assert end["clearing"] == CLEARING_FEN - 300 * YUAN == seen["npc_clearing"]
    assert end["holds"] == 0 and end["balanced"]


def test_cancelling_the_items_of_a_refused_package_releases_their_holds(tmp_path):
    """One item cancelled by the core system, the other by an operator's npc_cancel
    (approved by a supervisor): each is taken out of the refused package at once, its
    hold released; the emptied package is cancelled and its letter is history."""
    async def scenario() -> dict[str, Any]:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ops = gw.runner.app[OPS_KEY]
            payer = await open_account(h, 32, 10_000 * YUAN)
            first, second = await refused_package(h, payer, "c")
            await until(lambda: letters(gw), "the package's dead letter")
            held = await books(h, payer)

            status, answer = await post(h, f"/v1/transfers/{first}/cancel", {})
            asked = await ops.console.request(ops.directory.get("op1"), "npc_cancel", second)
            decided = await ops.console.decide(ops.directory.get("sup1"), asked["id"], True)
            views_after = [await gw.get_transfer(pid) for pid in (first, second)]
            return {"held": held, "cancel": (status, answer), "decided": decided,
                    "views": views_after, "end": await books(h, payer),
                    "letter": (await letters(gw))[0][1],
                    "listed": await queues.dead_letters(gw.redis, 50, gw.store),
                    "npc": await h.sim("GET", "/sim/beps/stats")}

    seen = run(scenario())

    assert seen["held"]["holds"] == 300 * YUAN
    status, answer = seen["cancel"]
    assert (status, answer["state"], answer["cancelled"]) == (200, "cancelled",
                                                              "from_package")
    assert seen["decided"]["state"] == "executed"
    assert [v["state"] for v in seen["views"]] == ["cancelled", "cancelled"]
    end = seen["end"]
    assert end["holds"] == 0 and end["balanced"]
    assert end["clearing"] == CLEARING_FEN
    # The emptied package's row is done: its letter is no longer outstanding.
    assert [e for e in seen["listed"]["entries"]
            if e["fields"].get("outbox") == seen["letter"]["outbox"]] == []
    assert seen["listed"]["completed"] >= 1
    assert seen["npc"]["packages"] == {}  # nothing of it ever reached the NPC
