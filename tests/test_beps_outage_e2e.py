"""BEPS credits stopped during an NPC outage, end to end against the simulated NPC in its
own process. The NPC is offline: a package is sealed, its POSTs are answered 503, and it
waits in the outbox with its items `sent`, the NPC never having had it. The core system's
cancel, an operator's npc-cancel, hold, release and cancel of an item, and the package
actions take items and packages back under dual control: the payers have their money
back at once, and when the NPC is back it nets exactly what was left, each item once,
with our books agreeing with its balance of our clearing account."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway.beps import extension_of
from gateway.errors import PaygateError
from gateway.ops.web import OPS_KEY
from tests.e2e_support import YUAN, ask, open_account, until
from tests.test_beps_cancel_e2e import submit
from tests.test_beps_e2e import (CLEARING_FEN, MONDAY, MONDAY_MORNING, beps_started, books,
                                 events, npc_balance, run, wait_state)

pytestmark = pytest.mark.e2e


async def cancel_by_core(h: Any, payment_id: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{h.gateway.url}/v1/transfers/{payment_id}/cancel",
                             json={"reason": "客户撤销"}) as r:
            return r.status, await r.json()


async def package_of(h: Any, payment_id: str) -> dict[str, Any]:
    """The package that carries the item, with its outbox row's delivery counts."""
    view = await h.gateway.get_transfer(payment_id)
    package_id = view["beps"]["package"]
    row = await h.gateway.store.run(lambda tx: tx.query_one(
        "SELECT p.state, p.count, p.total_fen, o.state, o.attempts, o.untaken FROM "
        "beps_packages p JOIN outbox o ON o.id = p.outbox_id WHERE p.id = ?", (package_id,)))
    return dict(zip(("state", "count", "total_fen", "outbox", "attempts", "untaken"), row),
                id=package_id)


async def waiting_for_the_link(h: Any, payment_id: str) -> bool:
    """Sent as far as the gateway goes: its package claimed, every attempt answered 503,
    the row pending again for the link."""
    view = await h.gateway.get_transfer(payment_id)
    if view["state"] != "sent" or not view["beps"]["package"]:
        return False
    pkg = await package_of(h, payment_id)
    return pkg["outbox"] == "pending" and pkg["attempts"] >= 1 \
        and pkg["attempts"] == pkg["untaken"]


async def ops_get(h: Any, path: str) -> dict[str, Any]:
    """An operators' route as op1 reads it."""
    auth = aiohttp.BasicAuth("op1", "op1-demo")
    async with aiohttp.ClientSession(auth=auth) as http:
        async with http.get(f"{h.gateway.url}{path}") as r:
            assert r.status == 200
            return await r.json()


async def detail(h: Any, payment_id: str) -> dict[str, Any]:
    """The operators' view of a payment, with the actions offered to op1."""
    return await ops_get(h, f"/ops/api/payments/{payment_id}")


async def sealed_during_outage(h: Any, credits: list[tuple[str, list[str]]], prefix: str
                               ) -> list[str]:
    """The credits of each (payer, amounts) sealed into one package while the NPC is
    offline, waiting for the link; their payment ids in order."""
    ext = extension_of(h.gateway)
    ext.configure(package_age_max_s=3600.0)
    ids = []
    for n, (payer, amounts) in enumerate(credits):
        ids += await submit(h, payer, amounts, f"{prefix}{n}")
    await ext.packer.seal(force=True)
    for pid in ids:
        await until(lambda: waiting_for_the_link(h, pid), f"{pid} waiting for the link")
    ext.configure(package_age_max_s=0.2)
    return ids


def test_items_and_a_package_the_npc_never_took_are_stopped_and_never_sent(tmp_path):
    """The user's case. Four credits of two payers in one package during an outage: the
    core system cancels one (taken out of the package at once, not `payment_in_flight`),
    an operator's npc-cancel takes out another (accepted when asked, since it can be
    done), then an operator holds the package and a supervisor approves its cancel: the
    other two are cancelled, every payer has the money back, and once the NPC is back it
    receives no package at all."""
    async def scenario() -> dict[str, Any]:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ops = gw.runner.app[OPS_KEY]
            op1, sup1 = ops.directory.get("op1"), ops.directory.get("sup1")
            payer = await open_account(h, 41, 10_000 * YUAN)
            other = await open_account(h, 42, 10_000 * YUAN)
            await h.sim("POST", "/sim/faults", {"offline": True})
            ids = await sealed_during_outage(h, [(payer, ["100.00", "200.00"]),
                                                 (other, ["300.00", "400.00"])], "a")
            seen: dict[str, Any] = {"before": await package_of(h, ids[0])}

            seen["core_cancel"] = await cancel_by_core(h, ids[0])
            asked = await ask(ops, op1, "npc_cancel", ids[2])
            seen["npc_cancel"] = await ops.console.decide(sup1, asked["id"], True)
            seen["after_two"] = await package_of(h, ids[1])
            seen["detail"] = await detail(h, ids[1])
            held = await ask(ops, op1, "package_hold", seen["before"]["id"])
            seen["hold"] = held
            seen["held_states"] = [(await gw.get_transfer(p))["state"] for p in ids]
            asked = await ask(ops, op1, "package_cancel", seen["before"]["id"])
            seen["cancel_pending"] = asked["state"]
            seen["pending_list"] = await ops_get(h, "/ops/api/requests?state=pending")
            seen["cancel"] = await ops.console.decide(sup1, asked["id"], True)
            seen["mid"] = await books(h, payer, other)

            await h.sim("POST", "/sim/faults", {"offline": False})
            await asyncio.sleep(3)  # the link answers again: anything waiting would go
            seen["views"] = [await gw.get_transfer(p) for p in ids]
            seen["end"] = await books(h, payer, other)
            seen["npc_clearing"] = await npc_balance(h)
            seen["npc"] = await h.sim("GET", "/sim/beps/stats")
            return seen

    seen = run(scenario())

    before = seen["before"]
    assert (before["state"], before["count"], before["outbox"]) == ("sent", 4, "pending")
    status, answer = seen["core_cancel"]
    assert (status, answer["cancelled"], answer["state"]) == (200, "from_package", "cancelled")
    assert seen["npc_cancel"]["state"] == "executed"
    assert seen["npc_cancel"]["outcome"]["cancelled"] == "from_package"
    assert (seen["after_two"]["count"], seen["after_two"]["total_fen"]) == (2, 600 * YUAN)
    offered = seen["detail"]
    assert offered["package"] == before["id"]
    assert offered["actions"] == ["hold", "cancel"]
    assert offered["package_actions"] == ["package_hold", "package_cancel"]
    assert seen["hold"]["state"] == "executed"  # no second person for a hold
    assert seen["hold"]["outcome"]["held"] == 2
    assert seen["held_states"] == ["cancelled", "held", "cancelled", "held"]
    assert seen["cancel_pending"] == "pending"
    # What the approver is shown: the package and what it holds now.
    (shown,) = seen["pending_list"]["requests"]
    assert (shown["action"], shown["target"], shown["amount"]) == (
        "package_cancel", before["id"], "600.00")
    assert seen["cancel"]["state"] == "executed"
    assert seen["cancel"]["outcome"]["cancelled"] == 2
    assert [v["state"] for v in seen["views"]] == ["cancelled"] * 4
    assert all(v["beps"]["package"] is None for v in seen["views"])
    assert events(seen["views"][1])[-3:] == ["beps_sent", "ops_held", "ops_package_cancelled"]
    for books_ in (seen["mid"], seen["end"]):
        assert books_["holds"] == 0 and books_["netted_out"] == 0 and books_["balanced"]
        assert list(books_.values())[-2:] == [10_000 * YUAN, 10_000 * YUAN]
    assert seen["end"]["clearing"] == CLEARING_FEN == seen["npc_clearing"]
    assert seen["npc"]["packages"] == {}


def test_held_items_and_package_are_released_and_each_item_nets_once(tmp_path):
    """During an outage an operator holds one item (taken out of its package, which is
    rebuilt under the same ids) and then the package; both are released (a supervisor
    approving each): the package goes as it is and the item in a new package. When the
    NPC is back both are netted, each item once, and the books agree with the NPC."""
    async def scenario() -> dict[str, Any]:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ops = gw.runner.app[OPS_KEY]
            op1, sup1 = ops.directory.get("op1"), ops.directory.get("sup1")
            payer = await open_account(h, 43, 10_000 * YUAN)
            await h.sim("POST", "/sim/faults", {"offline": True})
            first, second = await sealed_during_outage(h, [(payer, ["100.00", "200.00"])],
                                                       "r")
            package = (await package_of(h, first))["id"]
            seen: dict[str, Any] = {}
            seen["item_hold"] = await ask(ops, op1, "hold", first)
            seen["rebuilt"] = await package_of(h, second)
            seen["package_hold"] = await ask(ops, op1, "package_hold", package)
            with pytest.raises(PaygateError) as again:
                await ask(ops, op1, "package_hold", package)
            seen["again"] = again.value.code
            for action, target in (("package_release", package), ("release", first)):
                asked = await ask(ops, op1, action, target)
                seen[action] = await ops.console.decide(sup1, asked["id"], True)
            seen["released"] = [(await gw.get_transfer(p))["state"] for p in (first, second)]

            await h.sim("POST", "/sim/faults", {"offline": False})
            views = [await wait_state(h, p, "settled", 30) for p in (first, second)]
            seen["views"] = views
            seen["end"] = await books(h, payer)
            seen["npc_clearing"] = await npc_balance(h)
            seen["npc"] = await h.sim("GET", "/sim/beps/stats")
            seen["package_after"] = package
            return seen

    seen = run(scenario())

    assert seen["item_hold"]["state"] == "executed"
    assert seen["item_hold"]["outcome"]["taken_out_of"] == seen["package_after"]
    assert (seen["rebuilt"]["count"], seen["rebuilt"]["total_fen"]) == (1, 200 * YUAN)
    assert seen["rebuilt"]["state"] == "sent"  # rebuilt, its state kept
    assert seen["package_hold"]["state"] == "executed"
    assert seen["again"] == "package_already_held"
    assert seen["package_release"]["state"] == "executed"
    assert seen["release"]["state"] == "executed"
    # Each goes `sent` again as soon as a sender claims its package: the released item
    # is packed anew at the packer's next pass, which can come before this look.
    assert all(state in ("accepted", "sent") for state in seen["released"])
    first, second = seen["views"]
    assert first["beps"]["package"] != second["beps"]["package"] == seen["package_after"]
    assert all(events(v).count("beps_netted") == 1 for v in seen["views"])
    assert "ops_held" in events(first) and "ops_released" in events(first)
    end = seen["end"]
    assert end["holds"] == 0 and end["netted_out"] == 0 and end["balanced"]
    assert end["clearing"] == CLEARING_FEN - 300 * YUAN == seen["npc_clearing"]
    assert seen["npc"]["packages"] == {"PR03": 2}
