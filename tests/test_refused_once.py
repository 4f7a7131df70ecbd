"""A message the NPC refuses (4xx) is POSTed once per attempt, whoever makes the attempt:
an hvps.111 sent straight after its payment's commit (gateway.direct) and refused is
dead-lettered by that send, not handed to the lane's sender to be POSTed and refused a
second time; the link's count of refused deliveries counts messages, one each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import keys
from tests.e2e_support import (payer_after_one_settled, started, transfer, until,
                                wait_state)

pytestmark = pytest.mark.e2e


async def letters_of(gw: Any, payment_id: str) -> list[dict[str, str]]:
    return [f for _, f in await gw.redis.xrange(keys.DEAD) if f.get("payment") == payment_id]


def watch_posts(gw: Any) -> list[int]:
    """The outbox ids of the envelopes POSTed from now on, one per POST of each."""
    posted: list[int] = []
    post = gw.link_poster.post

    async def counted(outbox_id: int, envelope: bytes, payment: bool = False) -> None:
        posted.append(outbox_id)
        await post(outbox_id, envelope, payment)
    gw.link_poster.post = counted
    return posted


def test_a_refused_message_sent_after_commit_is_posted_once_and_dead_lettered_once(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await payer_after_one_settled(h)
            await h.sim("POST", "/sim/faults", {"error_status": 400})
            posted = watch_posts(gw)

            _, answer = await gw.submit_transfer("core", "refused-1",
                                                 transfer(payer, "2.00"))
            await wait_state(h, answer["id"], "held")
            await until(lambda: letters_of(gw, answer["id"]), "the dead letter")
            await asyncio.sleep(0.5)  # a second POST, were one coming, would be made by now
            row = await gw.store.run(lambda tx: tx.query_one(
                "SELECT state, attempts, untaken FROM outbox WHERE payment_id = ? "
                "AND kind = 'hvps_credit'", (answer["id"],)))
            outbox_id = await gw.store.run(lambda tx: tx.query_one(
                "SELECT id FROM outbox WHERE payment_id = ? AND kind = 'hvps_credit'",
                (answer["id"],))[0])
            # Every envelope POSTed has had its answer (those POSTed last included).
            await until(lambda: gw.link.view()["refused_deliveries"] >= len(set(posted)),
                        "the answers to every POST")
            return {"posts": posted.count(outbox_id), "others": set(posted) - {outbox_id},
                    "refused": gw.link.view()["refused_deliveries"],
                    "handed_over": gw.direct.handed_to_streams,
                    "row": tuple(row), "letters": await letters_of(gw, answer["id"])}

    seen = asyncio.run(scenario())

    assert seen["posts"] == 1
    # Every message POSTed meanwhile was refused too (the 990s answering the NPC): each
    # counts once.
    assert seen["refused"] == 1 + len(seen["others"])
    assert seen["handed_over"] == 0
    assert seen["row"] == ("dead", 1, 1)
    assert len(seen["letters"]) == 1
    assert seen["letters"][0]["stream"] in keys.HVPS_LANES
