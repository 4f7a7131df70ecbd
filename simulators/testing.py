"""Test support: a fake bank that records what the NPC sends, and a bank-side builder of
signed messages, so that tests drive the simulator over its real HTTP link.

    async with FakeBank() as bank:
        sim = Simulator(replace(settings, banks={OUR_BANK: bank.url}), clock)
        await sim.start()
        await bank.post(sim.url, bank.sender.credit(amount_fen=100))
        await sim.drain()
        results = bank.bodies("ccms.900.001.02")
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from lxml import etree

from gateway.clock import SHANGHAI, Clock, ManualClock
from gateway.messages import codec, framing, hvps111, hvps112, hvps710
from gateway.messages import envelope as envelope_mod
from gateway.messages.common import GroupHeader, iso_datetime
from gateway.messages.envelope import Envelope, Header
from gateway.messages.signing import KeyRing, write_keypair
from gateway.messages.xml import parse
from simulators.app import Simulator
from simulators.settings import NPC_CODE, OUR_BANK, Delivery, Settings

OUR_BRANCH = "999100000027"
PEER = "888200000015"
PEER_BRANCH = "888200000023"
MONDAY_0900 = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)
WORK_DATE = "2026-12-07"


class BankSender:
    """Builds and signs messages as a bank (by default ours) would send them."""

    def __init__(self, keys_dir: Path, clock: Clock, code: str = OUR_BANK) -> None:
        write_keypair(keys_dir, code)
        self.ring = KeyRing.load(keys_dir, [code])
        self.keys_dir = keys_dir
        self.clock = clock
        self.code = code
        self._seq = itertools.count(1)

    def header(self, mesg_type: str, receiver: str = NPC_CODE, priority: str = "3",
               mesg_id: str | None = None) -> Header:
        now = self.clock.now()
        mesg_id = mesg_id or f"{now:%Y%m%d}{next(self._seq):012d}"
        return Header(orig_sender=self.code, orig_sender_sid="HVPS", orig_receiver=receiver,
                      orig_receiver_sid="HVPS", send_date=f"{now:%Y%m%d}",
                      send_time=f"{now:%H%M%S}", mesg_type=mesg_type, mesg_id=mesg_id,
                      mesg_ref_id=mesg_id, priority=priority, direction="U")

    def credit(self, amount_fen: int, priority: str = "NORM", receiver: str = PEER,
               tx_id: str | None = None, mesg_id: str | None = None, **changes: Any) -> bytes:
        """A signed hvps.111 from this bank; `tx_id` is also the end-to-end id."""
        header = self.header(hvps111.MESSAGE_TYPE, receiver,
                             {"URGT": "1", "HIGH": "2"}.get(priority, "3"), mesg_id)
        tx_id = tx_id or f"{self.clock.now():%Y%m%d}{next(self._seq):08d}"
        fields = dict(
            msg_id=tx_id, created_at=iso_datetime(self.clock.now()), end_to_end_id=tx_id,
            tx_id=tx_id, business_type="A100", business_kind="02102", amount_fen=amount_fen,
            priority=priority, instg_direct=self.code, instg_branch=OUR_BRANCH,
            instd_direct=receiver, instd_branch=PEER_BRANCH, debtor_name="示例甲贸易有限公司",
            debtor_account="11000000000000000101", debtor_agent=OUR_BRANCH,
            creditor_agent=PEER_BRANCH, creditor_name="测试乙",
            creditor_account="6200000000000000201", remittance=("/H01/货款",))
        fields.update(changes)
        body = hvps111.build(hvps111.CreditTransfer(**fields))
        return codec.encode(header, body, self.ring)

    def institution_credit(self, amount_fen: int, receiver: str = PEER,
                           tx_id: str | None = None) -> bytes:
        """A signed hvps.112 (interbank transfer, A200) from this bank."""
        header = self.header(hvps112.MESSAGE_TYPE, receiver)
        tx_id = tx_id or f"{self.clock.now():%Y%m%d}{next(self._seq):08d}"
        transfer = hvps112.InstitutionTransfer(
            msg_id=tx_id, created_at=iso_datetime(self.clock.now()), end_to_end_id=tx_id,
            tx_id=tx_id, business_type="A200", amount_fen=amount_fen, priority="NORM",
            instg_direct=self.code, instg_branch=OUR_BRANCH, instd_direct=receiver,
            instd_branch=PEER_BRANCH, debtor=hvps112.Institution(member=self.code),
            creditor=hvps112.Institution(member=receiver), remittance=("/F25/02105",))
        return codec.encode(header, hvps112.build(transfer), self.ring)

    def recon_request(self, check_date: str) -> bytes:
        """A signed hvps.710 asking for the totals of `check_date`."""
        header = self.header(hvps710.MESSAGE_TYPE)
        request = hvps710.ReconRequest(GroupHeader(
            msg_id=f"{self.clock.now():%Y%m%d}{next(self._seq):08d}",
            created_at=iso_datetime(self.clock.now()), instg_direct=self.code,
            instg_party=self.code, instd_direct=NPC_CODE, instd_party=NPC_CODE,
            system="HVPS"), check_date)
        return codec.encode(header, hvps710.build(request), self.ring)


class FakeBank:
    """An HTTP inbound URL on 127.0.0.1 that records every envelope and answers 200, or
    the statuses queued in `answers` first (one per POST, for all its envelopes); the
    envelopes of a framed POST get those queued in `envelope_answers` first, one each.
    `posts` counts the envelopes of each POST."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.answers: list[int] = []
        self.envelope_answers: list[int] = []
        self.posts: list[int] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _inbound(self, request: web.Request) -> web.Response:
        raw = await request.read()
        lengths = request.headers.get(framing.LENGTHS_HEADER)
        envelopes = [raw] if lengths is None else framing.split(raw, lengths)
        self.posts.append(len(envelopes))
        status = self.answers.pop(0) if self.answers else 200
        if status != 200 or lengths is None:
            if status == 200:
                self.received.append(raw)
            return web.Response(status=status)
        results = []
        for envelope in envelopes:
            own = self.envelope_answers.pop(0) if self.envelope_answers else 200
            if own == 200:
                self.received.append(envelope)
            results.append((own, {}))
        status, body = framing.answer(results)
        return web.json_response(body, status=status)

    async def __aenter__(self) -> FakeBank:
        app = web.Application(client_max_size=envelope_mod.ENVELOPE_LEN_MAX + 4096)
        app.router.add_post("/link/inbound", self._inbound)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/link/inbound"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def envelopes(self, mesg_type: str | None = None) -> list[Envelope]:
        found = [envelope_mod.decode(raw) for raw in self.received]
        return [e for e in found if mesg_type is None or e.header.mesg_type == mesg_type]

    def bodies(self, mesg_type: str) -> list[etree._Element]:
        return [parse(e.body) for e in self.envelopes(mesg_type)]


def field(root: etree._Element, path: str) -> str | None:
    """The text at a slash path below the document's root, namespaces ignored."""
    steps = "/".join(f"{{*}}{step}" for step in path.split("/"))
    found = root.find(f"./{steps}")
    return None if found is None else (found.text or "").strip()


async def post_envelope(url: str, raw: bytes) -> int:
    async with ClientSession() as session:
        async with session.post(f"{url}/link/inbound", data=raw) as response:
            return response.status


async def post_envelopes(url: str, envelopes: list[bytes], lengths: str | None = None
                         ) -> tuple[int, Any]:
    """POST envelopes to `url`'s link inbound in one request, framed when several (with
    `lengths` as the framing header instead of the true one, to break it); (status,
    decoded JSON answer)."""
    body, headers = framing.frame(envelopes)
    if lengths is not None:
        headers = {framing.LENGTHS_HEADER: lengths}
    async with ClientSession() as session:
        async with session.post(f"{url}/link/inbound", data=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)


async def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the control API; (status, decoded JSON)."""
    async with ClientSession() as session:
        async with session.request(method, f"{url}{path}", json=body) as response:
            return response.status, await response.json()


@dataclass
class World:
    """One running simulator, the fake bank it delivers to, our bank's signer, the clock."""

    sim: Simulator
    bank: FakeBank
    sender: BankSender
    clock: ManualClock

    async def send(self, raw: bytes) -> None:
        assert await post_envelope(self.sim.url, raw) == 200
        await self.sim.drain()

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await call(self.sim.url, method, path, body)
        assert status == 200, answer
        await self.sim.drain()
        return answer

    async def restart(self) -> None:
        """Stop the simulator and start a new one on the same database and keys."""
        await self.sim.stop()
        self.sim = Simulator(self.sim.settings, self.clock)
        await self.sim.start()

    def results(self) -> list[tuple[str | None, ...]]:
        """(OrgnlMsgId, PrcSts, PrcCd) of every ccms.900 the bank got, in order."""
        return [(field(r, "CmonConf/OrgnlGrpHdr/OrgnlMsgId"),
                 field(r, "CmonConf/CmonConfInf/PrcSts"),
                 field(r, "CmonConf/CmonConfInf/PrcCd"))
                for r in self.bank.bodies("ccms.900.001.02")]


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    """Settings for one in-process simulator with fast, bounded retries."""
    base = Settings(data_dir=tmp_path / "npc", keys_dir=tmp_path / "keys",
                    delivery=Delivery(attempts_max=3, backoff_s=0.0))
    return replace(base, **changes)


@asynccontextmanager
async def simulated(tmp_path: Path, start: datetime = MONDAY_0900,
                    **changes: Any) -> AsyncIterator[World]:
    """A simulator on 127.0.0.1 delivering to a fake bank for OUR_BANK, on a manual clock
    at `start` (09:00 of a Monday), with the settings `changes` applied."""
    clock = ManualClock(start)
    async with FakeBank() as bank:
        settings = make_settings(tmp_path, banks={OUR_BANK: bank.url}, **changes)
        sim = Simulator(settings, clock)
        await sim.start()
        # The gateway's key is created after the simulator started, as in the demo.
        sender = BankSender(settings.keys_dir, clock)
        world = World(sim, bank, sender, clock)
        try:
            yield world
        finally:
            await world.sim.stop()
