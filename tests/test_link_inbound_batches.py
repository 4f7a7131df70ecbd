"""The gateway's link inbound takes a framed POST envelope by envelope: a bad envelope
among good ones is refused alone, the good ones are taken, and the answer says which
(gateway.messages.framing). The shared samples addressed to us serve as good envelopes,
their senders' signatures marked unverified (CONTRACT.md §1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import Settings
from gateway.messages import ccms990
from simulators.testing import post_envelopes
from tests.test_samples_inbound import SAMPLES, inbound_samples

pytestmark = pytest.mark.skipif(not SAMPLES.exists(),
                                reason="../shared/cnaps/samples is not beside the checkout")


async def _with_gateway(tmp_path: Path, work: Any) -> Any:
    gw = Gateway(Settings(data_dir=str(tmp_path), port=0, npc_url="http://127.0.0.1:9/x",
                          unverified_senders=["888200000015", "0000"]))
    await gw.start()
    try:
        return await work(gw)
    finally:
        await gw.stop()


def _inbox(gw: Gateway) -> Any:
    return gw.store.run(lambda tx: tx.query("SELECT mesg_type, mesg_id FROM inbox "
                                            "ORDER BY id", ()))


def test_a_bad_envelope_among_good_ones_is_refused_alone(tmp_path: Path) -> None:
    """Good, broken, good: 207, the broken one refused with its own error (400, its
    header unreadable), the two good ones taken into the inbox; posted again, the two
    are repeats and the answer is a plain 200."""
    first, second = inbound_samples()[:2]
    good = [first.read_bytes(), second.read_bytes()]

    async def work(gw: Gateway) -> tuple:
        answer = await post_envelopes(gw.url, [good[0], b"{H:broken", good[1]])
        inbox = await _inbox(gw)
        again = await post_envelopes(gw.url, good)
        return answer, inbox, again, await _inbox(gw)

    (status, body), inbox, again, inbox_after = asyncio.run(_with_gateway(tmp_path, work))

    assert status == 207
    assert [(r["index"], r["status"]) for r in body["results"]] == [(0, 200), (1, 400),
                                                                    (2, 200)]
    assert body["results"][1]["errors"][0]["code"] == "header_must_be_130_characters"
    assert len(inbox) == 2
    assert again == (200, {"taken": 2})
    assert inbox_after == inbox


def test_a_misframed_post_takes_nothing(tmp_path: Path) -> None:
    """Lengths that leave bytes over: 400 naming the rule, nothing in the inbox."""
    good = inbound_samples()[0].read_bytes()

    async def work(gw: Gateway) -> tuple:
        answer = await post_envelopes(gw.url, [good, good], f"{len(good)},{len(good) - 1}")
        return answer, await _inbox(gw)

    (status, body), inbox = asyncio.run(_with_gateway(tmp_path, work))

    assert status == 400
    assert [(e["code"], e["path"]) for e in body["errors"]] == [
        ("envelope_lengths_short_of_body", "Envelope-Lengths")]
    assert inbox == []


def test_one_envelope_without_framing_is_answered_as_before(tmp_path: Path) -> None:
    """A single-envelope POST keeps its answer: taken, and whether it was a repeat."""
    good = inbound_samples()[0].read_bytes()

    async def work(gw: Gateway) -> tuple:
        return await post_envelopes(gw.url, [good]), await post_envelopes(gw.url, [good])

    first, again = asyncio.run(_with_gateway(tmp_path, work))

    assert first == (200, {"taken": True, "duplicate": False})
    assert again == (200, {"taken": True, "duplicate": True})


def _sample(name: str) -> bytes:
    [path] = [p for p in inbound_samples() if p.name.startswith(name)]
    return path.read_bytes()


def test_a_posts_envelopes_are_taken_in_one_work_and_one_failing_there_is_undone_alone(
        tmp_path: Path) -> None:
    """A credit, a ccms.801 whose store work fails after writing its receipt, the credit
    again, a ccms.990 and a saps.606 in one POST: one piece of store work takes them all;
    the 801 is answered 500 and leaves nothing (no inbox row, no archived message, no
    990 answering it), the repeated credit is a duplicate taken once, and every other
    envelope has its inbox row, its archived message once and its 990 (one for the
    repeat too, none for the 990)."""
    credit, ccms801 = _sample("hvps.111"), _sample("ccms.801")
    envelopes = [credit, ccms801, credit, _sample("ccms.990"), _sample("saps.606")]

    async def work(gw: Gateway) -> tuple:
        receive = gw._receive_tx

        def failing(tx: Any, env: Any, *args: Any) -> Any:
            received = receive(tx, env, *args)
            if env.header.mesg_type.startswith("ccms.801"):
                raise RuntimeError("the 801's work fails after its receipt")
            return received
        gw._receive_tx = failing  # type: ignore[method-assign]
        run, works = gw.store.run, []

        def counting(work: Any) -> Any:
            works.append(work.__qualname__)
            return run(work)
        gw.store.run = counting  # type: ignore[method-assign]
        answer = await post_envelopes(gw.url, envelopes)
        receipts = works.count("Gateway.receive_link_many.<locals>.work")
        gw.store.run = run  # type: ignore[method-assign]
        inbox = await _inbox(gw)
        archived = await gw.store.run(lambda tx: tx.query(
            "SELECT mesg_type, count(*) FROM archive WHERE direction = 'in' "
            "GROUP BY mesg_type ORDER BY mesg_type", ()))
        acks = await gw.store.run(lambda tx: tx.query_one(
            "SELECT count(*) FROM outbox WHERE mesg_type = ?", (ccms990.MESSAGE_TYPE,)))
        return answer, receipts, inbox, archived, acks[0]

    (status, body), receipts, inbox, archived, acks = asyncio.run(
        _with_gateway(tmp_path, work))

    assert status == 207
    assert [(r["index"], r["status"]) for r in body["results"]] == [
        (0, 200), (1, 500), (2, 200), (3, 200), (4, 200)]
    assert body["results"][1]["errors"][0]["code"] == "internal_error"
    assert [r.get("duplicate") for r in body["results"]] == [False, None, True, False,
                                                            False]
    assert receipts == 1
    types = sorted(row[0] for row in inbox)
    assert [t.split(".")[0] + "." + t.split(".")[1] for t in types] == [
        "ccms.990", "hvps.111", "saps.606"]
    assert [count for _, count in archived] == [1, 1, 1]
    assert sorted(t for t, _ in archived) == types
    assert acks == 3
