"""Our envelopes to the NPC share POSTs under load, and each still gets its own outcome
(gateway.linkpost), against an inbound URL on loopback that reads framed POSTs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.errors import PaygateError
from gateway.linkpost import LinkPoster, LinkRefused
from gateway.messages import framing
from gateway.worker import RetryLater


class Npc:
    """An inbound URL that records each POST's envelopes and answers each envelope with
    the status `verdict(envelope)` gives it (the whole POST with `whole`, if set)."""

    def __init__(self) -> None:
        self.posts: list[list[bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.verdict = lambda envelope: 200
        self.whole: int | None = None
        self.body_instead: bytes | None = None
        self.release = asyncio.Event()
        self.release.set()

    async def inbound(self, request: web.Request) -> web.Response:
        raw = await request.read()
        lengths = request.headers.get(framing.LENGTHS_HEADER)
        envelopes = [raw] if lengths is None else framing.split(raw, lengths)
        self.posts.append(envelopes)
        self.headers.append(dict(request.headers))
        await self.release.wait()
        if self.whole is not None:
            return web.Response(status=self.whole)
        if self.body_instead is not None:
            return web.Response(status=207, body=self.body_instead)
        if lengths is None:
            return web.Response(status=self.verdict(raw))
        status, body = framing.answer([(self.verdict(e), {}) for e in envelopes])
        return web.json_response(body, status=status)


class Health:
    def __init__(self) -> None:
        self.said: list[str] = []

    def delivered(self) -> None:
        self.said.append("up")

    def answered(self) -> None:
        self.said.append("answered")

    async def refused(self, reason: str, status: int, messages: int = 1) -> None:
        self.said.append(f"refused {status}: {messages}")

    async def failed(self, cause: str) -> None:
        self.said.append("down")


@contextlib.asynccontextmanager
async def posting(npc: Npc, envelopes_max: int = 64, bytes_max: int = 1 << 20,
                  posts_max: int = 1, listening: bool = True
                  ) -> AsyncIterator[tuple[LinkPoster, Any]]:
    """A poster for a gateway stand-in (its link health, HTTP client and NPC URL)
    posting to `npc` on loopback (or to where nothing listens any more)."""
    app = web.Application()
    app.router.add_post("/link/inbound", npc.inbound)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    if not listening:
        await runner.cleanup()
    gw = SimpleNamespace(link=Health(), link_http=aiohttp.ClientSession(),
                         settings=SimpleNamespace(npc_url=f"http://127.0.0.1:{port}/link/inbound"))
    try:
        yield LinkPoster(gw, envelopes_max, bytes_max, posts_max), gw
    finally:
        await gw.link_http.close()
        await runner.cleanup()


def _envelope(i: int) -> bytes:
    return b"{H:" + f"envelope {i:04d}".encode()


async def _send_all(poster: LinkPoster, count: int) -> list[Any]:
    return await asyncio.gather(*(poster.post(i, _envelope(i)) for i in range(count)),
                                return_exceptions=True)


def run(scenario: Any) -> Any:
    return asyncio.run(scenario)


def test_an_idle_link_posts_one_envelope_unframed() -> None:
    """One envelope on an idle link leaves alone, without the framing header."""
    async def scenario() -> Npc:
        npc = Npc()
        async with posting(npc) as (poster, gw):
            await poster.post(1, _envelope(1))
        return npc

    npc = run(scenario())

    assert npc.posts == [[_envelope(1)]]
    assert framing.LENGTHS_HEADER not in npc.headers[0]


def test_envelopes_ready_while_a_post_is_on_its_way_go_together() -> None:
    """While a POST is held at the NPC, 40 more envelopes wait and then leave in one
    POST: 41 envelopes in 2 POSTs, every one taken exactly once, in order."""
    async def scenario() -> tuple[Npc, list[Any], LinkPoster]:
        npc = Npc()
        async with posting(npc) as (poster, gw):
            npc.release.clear()
            first = asyncio.ensure_future(poster.post(1000, _envelope(1000)))
            while not npc.posts:
                await asyncio.sleep(0.01)
            rest = asyncio.ensure_future(_send_all(poster, 40))
            while len(poster._waiting) < 40:  # all of them handed over, none posted
                await asyncio.sleep(0.01)
            npc.release.set()
            outcomes = [await first, *await rest]
        return npc, outcomes, poster

    npc, outcomes, poster = run(scenario())

    assert outcomes == [None] * 41
    assert [len(p) for p in npc.posts] == [1, 40]
    assert npc.posts[1] == [_envelope(i) for i in range(40)]
    assert (poster.posts, poster.envelopes) == (2, 41)


@pytest.mark.parametrize("envelopes_max, bytes_max, sizes", [
    (16, 1 << 20, [16, 16, 8]),
    (64, 10 * len(_envelope(0)), [10, 10, 10, 10]),
    (1, 1 << 20, [1] * 40),
])
def test_a_post_is_bounded_in_envelopes_and_bytes(envelopes_max, bytes_max, sizes) -> None:
    """At most `link_batch_max` envelopes and `link_batch_bytes_max` bytes go in one
    POST; 1 is one envelope per POST."""
    async def scenario() -> Npc:
        npc = Npc()
        async with posting(npc, envelopes_max, bytes_max) as (poster, gw):
            await _send_all(poster, 40)
        return npc

    npc = run(scenario())

    assert sorted(len(p) for p in npc.posts) == sorted(sizes)
    assert sorted(e for p in npc.posts for e in p) == [_envelope(i) for i in range(40)]


def test_each_envelope_of_a_post_gets_its_own_outcome() -> None:
    """A 207 gives each envelope what a POST of it alone would have: taken, refused
    (LinkRefused naming its outbox row and the status) or not taken now (RetryLater); the
    link is up."""
    verdicts = {3: 401, 5: 503}

    async def scenario() -> tuple[list[Any], Health, Npc]:
        npc = Npc()
        npc.verdict = lambda e: verdicts.get(int(e[-4:]), 200)
        async with posting(npc) as (poster, gw):
            outcomes = await _send_all(poster, 8)
        return outcomes, gw.link, npc

    outcomes, health, npc = run(scenario())

    assert len(npc.posts) == 1
    assert [type(o).__name__ for o in outcomes] == [
        "NoneType", "NoneType", "NoneType", "LinkRefused", "NoneType", "RetryLater",
        "NoneType", "NoneType"]
    assert "outbox 3" in str(outcomes[3])
    assert health.said == ["up"]


def test_a_post_with_none_taken_tells_the_link_each_refused_envelope() -> None:
    """A 207 with no envelope taken, two refused and the rest not taken now: the link is
    told of two refused messages (one each, not one for the POST)."""
    verdicts = {1: 400, 4: 403}

    async def scenario() -> tuple[list[Any], Health]:
        npc = Npc()
        npc.verdict = lambda e: verdicts.get(int(e[-4:]), 503)
        async with posting(npc) as (poster, gw):
            outcomes = await _send_all(poster, 6)
        return outcomes, gw.link

    outcomes, health = run(scenario())

    assert [type(o).__name__ for o in outcomes] == [
        "RetryLater", "LinkRefused", "RetryLater", "RetryLater", "LinkRefused", "RetryLater"]
    assert health.said == ["refused 403: 2"]


@pytest.mark.parametrize("whole, body_instead, said", [
    (503, None, ["down"]),
    (400, None, ["refused 400: 5"]),
    (None, b"not json", ["answered"]),
])
def test_a_post_that_fails_as_a_whole_fails_every_envelope(whole, body_instead, said) -> None:
    """A status for the whole POST is every envelope's (5xx: RetryLater and the link down;
    4xx: refused, and the link told it refuses, not that it is up); a 207 that cannot be
    read sends every envelope again (RetryLater), the link told only that it answered."""
    async def scenario() -> tuple[list[Any], Health]:
        npc = Npc()
        npc.whole, npc.body_instead = whole, body_instead
        async with posting(npc) as (poster, gw):
            outcomes = await _send_all(poster, 5)
        return outcomes, gw.link

    outcomes, health = run(scenario())

    expected = LinkRefused if whole == 400 else RetryLater
    assert all(type(o) is expected for o in outcomes)
    assert health.said == said


def test_no_npc_fails_every_envelope_for_a_retry() -> None:
    """Nothing listening: every envelope of the POST is RetryLater and the link down."""
    async def scenario() -> tuple[list[Any], Health]:
        async with posting(Npc(), listening=False) as (poster, gw):
            outcomes = await _send_all(poster, 4)
        return outcomes, gw.link

    outcomes, health = run(scenario())

    assert all(isinstance(o, RetryLater) for o in outcomes)
    assert health.said == ["down"]


@pytest.mark.parametrize("values, problems", [
    ({}, []),
    ({"link_batch_max": 1, "link_batch_bytes_max": 1}, []),
    ({"link_batch_max": 0}, [("setting_malformed", "link_batch_max")]),
    ({"link_batch_max": framing.ENVELOPES_MAX + 1}, [("setting_malformed", "link_batch_max")]),
    ({"link_batch_max": "64"}, []),
    ({"link_batch_bytes_max": framing.BATCH_LEN_MAX + 1},
     [("setting_malformed", "link_batch_bytes_max")]),
])
def test_batch_bounds_are_checked_at_start(values, problems) -> None:
    """`link_batch_max` and `link_batch_bytes_max` are whole numbers from 1 to what an
    inbound URL takes in one POST; anything else is refused by name before start."""
    from gateway import config

    try:
        config.load(None, values)
        found = []
    except PaygateError as exc:
        found = [(p.code, p.path) for p in exc.problems]

    assert found == problems


def test_a_post_failing_for_another_cause_fails_each_sender_as_before() -> None:
    """A POST that fails for a cause not on the link (a URL aiohttp refuses) gives each
    envelope's sender a RuntimeError, as a POST of it alone did, and leaves the link's
    health untold."""
    async def scenario() -> tuple[list[Any], Health]:
        async with posting(Npc()) as (poster, gw):
            gw.settings.npc_url = "nonsense://127.0.0.1/link/inbound"
            outcomes = await _send_all(poster, 3)
        return outcomes, gw.link

    outcomes, health = run(scenario())

    assert all(type(o) is RuntimeError for o in outcomes)
    assert health.said == []
