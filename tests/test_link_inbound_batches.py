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
