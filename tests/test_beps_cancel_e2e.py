"""Cancelling BEPS items before netting, end to end: core system and operators →
gateway → simulated NPC (its own process) → peer bank, over loopback HTTP. Netting is
final; until then an item comes out of its package, locally or at the NPC, and the
books, the NPC's balance and the day's reconciliation agree afterwards."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from gateway.beps import PACKAGES_STREAM, extension_of, packer
from gateway.ops import attention
from gateway.ops.web import OPS_KEY
from tests.e2e_support import BANK, YUAN, open_account, until
from tests.test_beps_e2e import (CLEARING_FEN, MONDAY, MONDAY_MORNING, assert_wire_valid,
                                 beps_started, books, credit, events, npc_balance, run,
                                 wait_state)

pytestmark = pytest.mark.e2e


async def post(h: Any, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{h.gateway.url}{path}", json=body or {}) as r:
            return r.status, await r.json()


async def get(h: Any, path: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{h.gateway.url}{path}") as r:
            assert r.status == 200, (path, r.status)
            return await r.json()


async def submit(h: Any, payer: str, amounts: list[str], prefix: str) -> list[str]:
    ids = []
    for n, amount in enumerate(amounts):
        _, view = await h.gateway.submit_transfer("core", f"{prefix}-{n}", credit(payer, amount))
        ids.append(view["id"])
    return ids


async def cap(h: Any, **change: int) -> None:
    await h.sim("POST", "/sim/beps/cap", {"participant": BANK, **change})


async def agreed(h: Any, *accounts: str) -> dict[str, Any]:
    """The gateway's books beside the NPC's balance of our clearing account."""
    out = await books(h, *accounts)
    out["npc_clearing"] = await npc_balance(h)
    return out


def test_item_held_back_by_the_cap_is_taken_out_at_the_npc(tmp_path):
    """A package over our net debit cap waits (PR11); the core system cancels one of its
    items: ccms.307 → ccms.308 PR08, the hold is released, and when more collateral lets
    the package net, the round, the settlement and the reconciliation leave it out."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ext = extension_of(gw)
            ext.configure(package_age_max_s=3600.0)  # one package, sealed below
            payer = await open_account(h, 21, 10_000 * YUAN)
            await cap(h, cap_fen=50 * YUAN)
            first, second, third = await submit(h, payer, ["100.00", "80.00", "30.00"], "k")
            await ext.packer.seal(force=True)
            for pid in (first, second, third):
                await wait_state(h, pid, "queued")

            status, answer = await post(h, f"/v1/transfers/{first}/cancel",
                                        {"reason": "客户撤销"})
            cancelled = await wait_state(h, first, "cancelled")
            held_back = await h.sim("GET", "/sim/beps/stats")
            at_cancel = await books(h, payer)

            assert (status, answer["cancelled"], answer["state"]) == (202, "requested",
                                                                      "queued")
            assert answer["package"] == cancelled["beps"]["package"]
            assert events(cancelled)[-2:] == ["cancel_requested", "npc_cancel_cancelled"]
            assert held_back["withdrawn_txs"] == 1 and held_back["rounds"] == []
            assert at_cancel[payer] == 10_000 * YUAN - 110 * YUAN
            assert at_cancel["holds"] == 110 * YUAN and at_cancel["balanced"]
            still = await h.sim("POST", "/sim/beps/net", {})
            assert (still["netting_round"], still["netted_packages"],
                    still["waiting_packages"]) == (None, 0, 1)

            await cap(h, add_fen=1_000 * YUAN)
            views = [await wait_state(h, pid, "settled") for pid in (second, third)]
            end = await agreed(h, payer)
            recon = await ext.reconcile(MONDAY)
            record = await get(h, f"/v1/transfers/{first}/exceptions")
            final = await gw.get_transfer(first)

            assert all(events(v).count("beps_netted") == 1 for v in views)
            assert "beps_netted" not in events(final) and final["state"] == "cancelled"
            assert [r["state"] for r in record["requests"]] == ["granted"]
            assert end["clearing"] == CLEARING_FEN - 110 * YUAN == end["npc_clearing"]
            assert end[payer] == 10_000 * YUAN - 110 * YUAN
            assert end["holds"] == 0 and end["netted_out"] == 0 and end["balanced"]
            assert recon["reconciled"], recon
            await assert_wire_valid(h, 4)
    run(scenario())


def test_cancel_after_netting_is_refused_and_the_item_settles(tmp_path):
    """The NPC netted the package but its PR03 was lost, so the gateway still sees the
    item waiting and asks: the NPC refuses (netted, final), the refusal shows on the
    item, and once the PR03 arrives the item is netted and settles as usual."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            payer, pid = await _settled_without_its_pr03(h, 22, "late")

            status, _ = await post(h, f"/v1/transfers/{pid}/cancel", {})
            await until(lambda: _request_state(h, pid, "refused"), "the NPC's refusal")
            refused = await gw.get_transfer(pid)
            await h.sim("POST", "/sim/redeliver", {"include_faulted": True})
            settled = await wait_state(h, pid, "settled")
            end = await agreed(h, payer)

            refusal = refused["history"][-1]
            assert status == 202 and refused["state"] == "queued"
            assert refusal["event"] == "cancel_refused"
            assert refusal["detail"]["code"] == "NEZE0011"
            assert "netted" in refusal["detail"]["info"]
            assert events(settled).count("beps_netted") == 1
            assert end[payer] == 10_000 * YUAN - 100 * YUAN
            assert end["clearing"] == CLEARING_FEN - 100 * YUAN == end["npc_clearing"]
            assert end["holds"] == 0 and end["netted_out"] == 0 and end["balanced"]
    run(scenario())


def test_a_round_settled_apart_from_our_books_is_alerted_once(tmp_path):
    """The NPC nets our package but its PR03 is lost: the round's saps.606 names a net
    our books do not hold. Operators are told at once, naming the round, both amounts
    and the difference, open on the page and in `ops alerts`; the PR03 arriving later
    settles the item, raises nothing more, and makes our net the NPC's: the gateway
    closes the alert, saying why."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            payer, pid = await _settled_without_its_pr03(h, 23, "lost")
            await until(lambda: _alerts(h, "beps_round_net_differs"), "the alert")
            (round_,) = (await h.sim("GET", "/sim/beps/stats"))["rounds"]
            raised = await _alerts(h, "beps_round_net_differs")
            listed = await _listed(h)

            await h.sim("POST", "/sim/redeliver", {"include_faulted": True})
            await wait_state(h, pid, "settled")
            end = await agreed(h, payer)
            after = await _alerts(h, "beps_round_net_differs")
            closed = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT k.by, k.note FROM alerts a JOIN alert_acks k ON k.alert_id = a.id "
                "WHERE a.code = 'beps_round_net_differs'", ()))

            (detail,) = raised
            assert detail["netting_date"] == round_["netting_date"]
            assert detail["netting_round"] == round_["netting_round"]
            assert (detail["ours_fen"], detail["npc_fen"], detail["difference_fen"]) == \
                (0, -100 * YUAN, -100 * YUAN)
            assert listed["beps_round_net_differs"] is True
            assert after == raised
            assert [by for by, _ in closed] == ["gateway"]
            assert "our net is the NPC's" in closed[0][1]
            assert end["clearing"] == CLEARING_FEN - 100 * YUAN == end["npc_clearing"]
    run(scenario())


async def _alerts(h: Any, code: str) -> list[dict[str, Any]]:
    rows = await h.gateway.store.run(lambda tx: tx.query(
        "SELECT detail FROM alerts WHERE code = ? ORDER BY id", (code,)))
    return [json.loads(detail) for (detail,) in rows]


async def _listed(h: Any) -> dict[str, bool]:
    """Each alert code the operators' list shows, with whether it needs attention."""
    rows = await h.gateway.store.run(lambda tx: attention.listing(tx, [], 100))
    return {r["code"]: r["attention"] for r in rows}


async def _settled_without_its_pr03(h: Any, n: int, prefix: str) -> tuple[str, str]:
    """A payer's 100.00 yuan credit waits at the NPC for our net debit cap; its PR03 is
    lost when more collateral lets it net, and the NPC settles its round: (payer, id)."""
    payer = await open_account(h, n, 10_000 * YUAN)
    await cap(h, cap_fen=50 * YUAN)
    (pid,) = await submit(h, payer, ["100.00"], prefix)
    await wait_state(h, pid, "queued")
    await h.sim("POST", "/sim/faults", {"lose_result": 1})
    await cap(h, add_fen=1_000 * YUAN)
    await until(lambda: _round_settled(h), "the NPC netted and settled the round")
    return payer, pid


async def _round_settled(h: Any) -> bool:
    stats = await h.sim("GET", "/sim/beps/stats")
    return bool(stats["rounds"]) and all(r["settled_on"] for r in stats["rounds"])


async def _request_state(h: Any, payment_id: str, state: str) -> bool:
    record = await get(h, f"/v1/transfers/{payment_id}/exceptions")
    return [r["state"] for r in record["requests"]] == [state]


def test_items_taken_out_of_a_sealed_package_before_it_is_sent(tmp_path):
    """A package sealed but not yet handed to the sender: an operator's cancel (approved
    by a supervisor) and the core system's take two of its three items out at once; the
    package sent afterwards carries the third only, with its count and sum."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            ext = extension_of(gw)
            ext.configure(package_age_max_s=3600.0)
            payer = await open_account(h, 23, 10_000 * YUAN)
            first, second, third = await submit(h, payer, ["100.00", "200.00", "300.00"],
                                                "s")
            now = gw.clock.now()
            (outbox_id,) = await gw.store.run(lambda tx: packer.seal_due(
                tx, gw, ext.settings, PACKAGES_STREAM, now, force=True))
            ops = gw.runner.app[OPS_KEY]
            asked = await ops.console.request(ops.directory.get("op1"), "npc_cancel", second)
            before_approval = (await gw.get_transfer(second))["state"]
            approved = await ops.console.decide(ops.directory.get("sup1"), asked["id"], True)
            status, answer = await post(h, f"/v1/transfers/{third}/cancel")
            package_id = answer["package"]
            sealed = await get(h, f"/v1/packages/{package_id}")

            assert (asked["state"], before_approval) == ("pending", "accepted")
            assert approved["state"] == "executed"
            assert (status, answer["cancelled"], answer["state"]) == (200, "from_package",
                                                                      "cancelled")
            assert (sealed["state"], sealed["count"], sealed["total_fen"]) == (
                "sealed", 1, 100 * YUAN)
            assert (await books(h, payer))[payer] == 10_000 * YUAN - 100 * YUAN

            await gw.redis.xadd(PACKAGES_STREAM, {"outbox": str(outbox_id)})
            await wait_state(h, first, "settled")
            end = await agreed(h, payer)
            npc = await h.sim("GET", "/sim/beps/stats")
            recon = await ext.reconcile(MONDAY)
            cancelled = [await gw.get_transfer(pid) for pid in (second, third)]

            assert [v["state"] for v in cancelled] == ["cancelled", "cancelled"]
            assert all(v["beps"]["package"] is None for v in cancelled)
            assert events(cancelled[0])[-1] == "cancelled_from_package"
            told = cancelled[0]["history"][-1]["detail"]
            assert (told["by"], told["approved_by"]) == ("op1", "sup1")
            assert npc["packages"] == {"PR03": 1} and npc["withdrawn_txs"] == 0
            assert end["clearing"] == CLEARING_FEN - 100 * YUAN == end["npc_clearing"]
            assert end["holds"] == 0 and end["netted_out"] == 0 and end["balanced"]
            assert recon["reconciled"], recon
            await assert_wire_valid(h, 3)
    run(scenario())


def test_the_last_item_of_a_waiting_package_cancels_the_package(tmp_path):
    """Every item of a package waiting at the NPC cancelled: the package nets nothing,
    and a later round over a higher cap finds nothing of it."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            payer = await open_account(h, 24, 10_000 * YUAN)
            await cap(h, cap_fen=50 * YUAN)
            (pid,) = await submit(h, payer, ["120.00"], "last")
            await wait_state(h, pid, "queued")

            await post(h, f"/v1/transfers/{pid}/cancel", {})
            view = await wait_state(h, pid, "cancelled")
            await cap(h, add_fen=1_000 * YUAN)
            await asyncio.sleep(3.0)  # three netting rounds
            package = await get(h, f"/v1/packages/{view['beps']['package']}")
            npc = await h.sim("GET", "/sim/beps/stats")
            end = await agreed(h, payer)

            assert package["state"] == "cancelled"
            assert npc["packages"] == {"PR08": 1} and npc["rounds"] == []
            assert end[payer] == 10_000 * YUAN
            assert end["clearing"] == CLEARING_FEN == end["npc_clearing"]
            assert end["holds"] == 0 and end["balanced"]
    run(scenario())
