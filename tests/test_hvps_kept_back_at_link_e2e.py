"""The link's last look before an HVPS payment's bytes leave (gateway.linkpost), end to
end against the simulated NPC in its own process. One POST is kept on its way (the NPC
took its payment and answered; the answer is held back here), so payments claimed
meanwhile wait in the link's queue for the next POST. HVPS then closes, or its sending
is held; the waiting payments must not reach an NPC that would reject them: each goes
back to its lane with its attempt counted as provably untaken, and follows the closed
window (waits for the next opening, or is refused by its `when_closed`), or waits for
the hold to end and then goes, its same message, and settles."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import status_hold
from tests.e2e_support import (
    WORK_DATE,
    payer_after_one_settled,
    phase,
    started,
    transfer,
    until,
    wait_state,
)

pytestmark = pytest.mark.e2e


async def one_post_on_its_way(h: Any) -> tuple[asyncio.Event, asyncio.Event]:
    """The next POST carrying an HVPS payment reaches the NPC and is answered, but its
    outcome is held until the returned `release` is set (`posted` is set once the NPC
    answered); one POST at a time, so that what becomes ready meanwhile waits in the
    link's queue. A POST of another message (a login, a probe, an acknowledgement), which
    may still be on its way when the payment is submitted, goes as it would."""
    poster = h.gateway.link_poster
    poster.posts_max = 1
    posted, release = asyncio.Event(), asyncio.Event()
    statuses = poster._statuses

    async def held(batch: list[Any]) -> list[int]:
        answer = await statuses(batch)
        if not posted.is_set() and any(send.payment for send in batch):
            posted.set()
            await release.wait()
        return answer
    poster._statuses = held
    return posted, release


async def payer_with_one_on_its_way(h: Any) -> tuple[str, dict[str, Any], asyncio.Event]:
    """A payer whose first payment settled, and a second payment of it (2.00) whose POST
    the NPC answered and whose outcome is held (`one_post_on_its_way`): the payer, that
    payment, and the event that lets its outcome go."""
    payer = await payer_after_one_settled(h)
    posted, release = await one_post_on_its_way(h)
    _, first = await h.gateway.submit_transfer("core", "on-its-way", transfer(payer, "2.00"))
    await asyncio.wait_for(posted.wait(), 20)
    return payer, first, release


async def waiting_at_link(h: Any, payment_ids: list[str]) -> None:
    """Each payment claimed and its bytes waiting in the link's queue for a POST."""
    gw = h.gateway

    async def queued() -> bool:
        rows = await gw.store.run(lambda tx: tx.query(
            f"SELECT id FROM outbox WHERE payment_id IN ({', '.join('?' * len(payment_ids))})",
            tuple(payment_ids)))
        waiting = {send.outbox_id for send in gw.link_poster._waiting}
        return len(rows) == len(payment_ids) and all(r[0] in waiting for r in rows)
    await until(queued, "the payments waiting in the link's queue")


async def outbox_of(h: Any, payment_ids: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await h.gateway.store.run(lambda tx: tx.query(
        f"SELECT state, attempts, untaken FROM outbox WHERE payment_id IN "
        f"({', '.join('?' * len(payment_ids))}) ORDER BY id", tuple(payment_ids)))]


def test_payments_waiting_at_the_link_when_hvps_closes_follow_the_closed_window(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer, first, release = await payer_with_one_on_its_way(h)
            _, queued = await gw.submit_transfer("core", "at-link-q", transfer(payer, "5.00"))
            _, refused = await gw.submit_transfer("core", "at-link-r", transfer(
                payer, "6.00", when_closed="refuse"))
            ids = [queued["id"], refused["id"]]
            await waiting_at_link(h, ids)
            await phase(h, "20")
            await until(lambda: gw.hvps_status == "20", "the cut-off taken")
            release.set()
            await wait_state(h, first["id"], "settled")
            await wait_state(h, refused["id"], "rejected")
            await wait_state(h, queued["id"], "held")
            return {"after": [await gw.get_transfer(i) for i in ids],
                    "outbox": await outbox_of(h, ids),
                    "stats": await h.sim("GET", "/sim/stats")}

    seen = asyncio.run(scenario())

    queued, refused = seen["after"]
    assert (queued["state"], queued["reason"]) == ("held", "waiting_for_hvps_window")
    assert (refused["state"], refused["reason"]) == ("rejected", "hvps_closed")
    assert refused["history"][-1]["event"] == status_hold.CLOSED_ON_LANE
    # One attempt each, kept back before it left: provably never with the NPC.
    assert seen["outbox"] == [("waiting", 1, 1), ("failed", 1, 1)]
    assert seen["stats"]["rejected"] == 0  # the closed NPC was never asked
    assert seen["stats"]["settled"] == 2  # the first payment and the one on its way


def test_a_payment_waiting_at_the_link_when_sending_is_held_goes_once_the_hold_ends(
        tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer, first, release = await payer_with_one_on_its_way(h)
            _, held = await gw.submit_transfer("core", "at-link", transfer(payer, "5.00"))
            await waiting_at_link(h, [held["id"]])
            mesg_id = await gw.store.run(lambda tx: tx.query_one(
                "SELECT mesg_id FROM outbox WHERE payment_id = ?", (held["id"],))[0])
            await h.sim("POST", "/sim/phase", {"status": "00", "date": WORK_DATE.isoformat(),
                                                "force": True})
            await until(lambda: gw.hvps_hold is not None, "HVPS sending held")
            release.set()
            await wait_state(h, first["id"], "settled")

            async def given_back() -> bool:
                return await outbox_of(h, [held["id"]]) == [("pending", 1, 1)]
            await until(given_back, "the payment given back to its lane")
            seen: dict[str, Any] = {"during": await gw.get_transfer(held["id"])}
            await h.sim("POST", "/sim/phase", {"status": "10", "date": WORK_DATE.isoformat()})
            await until(lambda: gw.hvps_hold is None, "the hold ended")
            await wait_state(h, held["id"], "settled")
            seen["mesg_ids"] = await gw.store.run(lambda tx: tx.query(
                "SELECT mesg_id FROM outbox WHERE payment_id = ?", (held["id"],)))
            seen["mesg_id"] = mesg_id
            seen["stats"] = await h.sim("GET", "/sim/stats")
            return seen

    seen = asyncio.run(scenario())

    assert seen["during"]["state"] == "sent"  # handed to the link, never taken
    assert seen["during"]["delivery"] == {"taken_by_npc": False, "attempts": 1,
                                          "attempts_not_taken": 1}
    assert [tuple(r) for r in seen["mesg_ids"]] == [(seen["mesg_id"],)]  # the same message
    assert seen["stats"]["rejected"] == 0
    assert seen["stats"]["settled_twice"] == [] and seen["stats"]["duplicates"] == 0
