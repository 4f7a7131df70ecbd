"""The simulated NPC and several envelopes per link POST: it delivers the messages that
wait together, acts on each envelope's answer, and takes framed POSTs envelope by
envelope (gateway.messages.framing)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import ClientSession
from multidict import CIMultiDict

from gateway.messages import envelope as envelope_mod
from gateway.messages.framing import LENGTHS_HEADER as LENGTHS
from simulators.settings import OUR_BANK, Delivery
from simulators.testing import PEER, World, post_envelopes, simulated

TO_US = {"sender": PEER, "receiver": OUR_BANK, "payee_account": "6222000000000001",
         "payee_name": "测试丁", "amount_fen": 100}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _peer_sends(w: World, count: int) -> list[str]:
    answer = await w.control("POST", "/sim/peer/send", {**TO_US, "count": count})
    return [c["mesg_id"] for c in answer["created"]]


def test_waiting_messages_go_to_a_bank_in_fewer_posts(tmp_path: Path) -> None:
    """Twenty credits made at once reach the bank in fewer POSTs than messages, each
    message once, and every outbox row is sent."""
    async def scenario() -> tuple[World, list[str], dict]:
        async with simulated(tmp_path) as w:
            sent = await _peer_sends(w, 20)
            return w, sent, w.sim.stats()

    w, sent, stats = run(scenario())

    credits = [e.header.mesg_id for e in w.bank.envelopes("hvps.111.001.01")]
    assert sorted(credits) == sorted(sent)
    assert len(w.bank.posts) < len(w.bank.received)
    assert max(w.bank.posts) > 1
    assert set(stats["outbox"]) == {"sent"}


def test_a_post_the_bank_took_is_logged_in_one_line(tmp_path: Path, caplog) -> None:
    """The messages one POST delivered are logged in one `delivery_sent` line naming
    each of their MesgIDs and how many of each type it carried."""
    async def scenario() -> World:
        async with simulated(tmp_path) as w:
            with caplog.at_level(logging.INFO, logger="npc.link"):
                await _peer_sends(w, 20)
                await w.sim.drain()
            return w

    w = run(scenario())

    lines = [r.kv_fields for r in caplog.records if r.getMessage() == "delivery_sent"]
    assert len(lines) == len(w.bank.posts)
    assert sorted(f["messages"] for f in lines) == sorted(w.bank.posts)
    logged = [mesg_id for f in lines for mesg_id in f["mesg_ids"].split(",")]
    received = [envelope_mod.decode(raw).header.mesg_id for raw in w.bank.received]
    assert sorted(logged) == sorted(received)
    assert len(set(logged)) == len(logged)
    types: dict[str, int] = {}
    for f in lines:
        for item in f["mesg_types"].split(","):
            mtype, n = item.split(":")
            types[mtype] = types.get(mtype, 0) + int(n)
    assert types["hvps.111.001.01"] == 20
    assert sum(types.values()) == len(w.bank.received)


def test_batch_max_one_posts_each_message_alone(tmp_path: Path) -> None:
    """`delivery.batch_max` 1 sends one envelope per POST, unframed, as a bank that
    reads only single envelopes needs."""
    async def scenario() -> World:
        async with simulated(tmp_path, delivery=Delivery(attempts_max=3, backoff_s=0.0,
                                                         batch_max=1)) as w:
            await _peer_sends(w, 6)
            return w

    w = run(scenario())

    assert w.bank.posts == [1] * len(w.bank.received)
    assert len(w.bank.envelopes("hvps.111.001.01")) == 6


def test_each_envelope_answer_is_acted_on(tmp_path: Path) -> None:
    """In one POST of four, the bank refuses the second and cannot take the third now:
    the second is marked refused and not sent again, the third is sent again alone and
    taken, the others are sent once."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path) as w:
            w.bank.envelope_answers = [200, 400, 503, 200]
            await _peer_sends(w, 4)
            return w, w.sim.stats()

    w, stats = run(scenario())

    assert w.bank.posts[:2] == [4, 1]
    assert stats["outbox"]["refused"] == 1 and set(stats["outbox"]) == {"sent", "refused"}
    assert len(w.bank.envelopes("hvps.111.001.01")) == 3


def test_drops_apply_per_message_in_a_batch(tmp_path: Path) -> None:
    """With drop at one half, each message of a batch is dropped or sent on its own
    draw: the bank gets exactly those marked sent."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", {"drop": 0.5})
            await _peer_sends(w, 16)
            return w, w.sim.stats()

    w, stats = run(scenario())

    assert 0 < stats["outbox"]["dropped"] < 16
    assert len(w.bank.received) + stats["outbox"]["dropped"] == 16


def test_a_framed_post_is_taken_envelope_by_envelope(tmp_path: Path) -> None:
    """Three envelopes in one POST, the middle one not an envelope at all: the two
    credits taken and acknowledged with a 990 each, the broken one dropped as the NPC
    drops it alone and answered so (207: 400 for it), never counted as taken."""
    async def scenario() -> tuple[int, Any, World, dict]:
        async with simulated(tmp_path) as w:
            good = [w.sender.credit(100, tx_id=f"202612070000000{i}") for i in (1, 2)]
            status, answer = await post_envelopes(w.sim.url, [good[0], b"{H:not an envelope",
                                                     good[1]])
            await w.sim.drain()
            return status, answer, w, w.sim.stats()

    status, answer, w, stats = run(scenario())

    assert status == 207
    assert [(r["index"], r["status"]) for r in answer["results"]] == [
        (0, 200), (1, 400), (2, 200)]
    assert answer["results"][1]["errors"][0]["code"] == "participant_unknown"
    assert len(w.bank.envelopes("ccms.990.001.02")) == 2
    assert (stats["discarded"], stats["settled"]) == (1, 2)


def test_a_misframed_post_is_refused_whole(tmp_path: Path) -> None:
    """Lengths that run past the body: 400 naming the envelope, nothing taken."""
    async def scenario() -> tuple[int, Any, dict]:
        async with simulated(tmp_path) as w:
            good = w.sender.credit(100, tx_id="2026120700000001")
            status, answer = await post_envelopes(w.sim.url, [good, good],
                                         f"{len(good)},{len(good) + 1}")
            return status, answer, w.sim.stats()

    status, answer, stats = run(scenario())

    assert status == 400
    assert [(e["code"], e["path"]) for e in answer["errors"]] == [
        ("envelope_lengths_exceed_body", "Envelope-Lengths/1")]
    assert stats["messages_in"] == 0


def test_a_post_repeating_its_framing_header_is_refused_whole(tmp_path: Path) -> None:
    """Envelope-Lengths given twice, the same lengths or others: which one frames the body
    would be a guess, so the NPC refuses the POST (400 header_repeated, both values
    named), as the gateway refuses it, and takes nothing; one header line is taken."""
    async def post(url: str, body: bytes, lengths: list[str]) -> tuple[int, Any]:
        headers = CIMultiDict((LENGTHS, value) for value in lengths)
        async with ClientSession() as session:
            async with session.post(f"{url}/link/inbound", data=body, headers=headers) as r:
                return r.status, await r.json(content_type=None)

    async def scenario() -> tuple[list[list[str]], list[tuple[int, Any]], tuple[int, Any],
                                  dict, dict]:
        async with simulated(tmp_path) as w:
            good = [w.sender.credit(100, tx_id=f"202612070000001{i}") for i in (1, 2)]
            right, body = f"{len(good[0])},{len(good[1])}", good[0] + good[1]
            repeats = [[right, right], [right, str(len(body))]]
            refused = [await post(w.sim.url, body, lengths) for lengths in repeats]
            before = w.sim.stats()
            taken = await post(w.sim.url, body, [right])
            await w.sim.drain()
            return repeats, refused, taken, before, w.sim.stats()

    repeats, refused, taken, before, after = run(scenario())

    for lengths, (status, answer) in zip(repeats, refused):
        assert status == 400, answer
        assert [(e["code"], e["path"], e["value"]) for e in answer["errors"]] == [
            ("header_repeated", LENGTHS, lengths)]
    assert before["messages_in"] == 0
    assert taken == (200, {"taken": 2}) and after["settled"] == 2
