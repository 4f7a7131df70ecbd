"""The simulator assembled: store, keys, link, NPC, peers, phases and the HTTP server.

`Simulator.start()` binds the server (port 0 picks a free one), starts delivery and,
with `follow_clock`, the phase ticker; `stop()` undoes all of it. Tests run it in-process;
`paygate simulate npc` runs it as its own process (npc.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway import windows
from gateway.calendar import BusinessCalendar
from gateway.clock import Clock
from gateway.errors import PaygateError, Problem
from simulators import control
from simulators.beps import Beps
from simulators.beps_notices import BepsNotices
from simulators.faults import FaultState
from simulators.ids import Ids
from simulators.intake import Intake
from simulators.keys import Keys
from simulators.link import Link
from simulators.logfmt import event
from simulators.node import Node
from simulators.notices import Notices
from simulators.peers import PeerBank, parse_request
from simulators.phases import ClockFollower, Phases, current_phase
from simulators.queries import PeerQueries
from simulators.rtgs import Rtgs
from simulators.settings import NPC_CODE, OUR_BANK, Settings
from simulators.store import CANCELLED, QUEUED, SETTLED, Store

log = logging.getLogger("npc.app")
DEFAULT_INITIAL_PHASE = "10"  # without a clock to follow: daytime, on the clock's date

# The end of a refusal of the clock at start; `serve --simulate`, which set --clock from
# the user's setting, names that setting instead (gateway.harness).
CLOCK_ADVICE = "set --clock later"
OUR_BRANCH = "999100000027"  # CONTRACT.md §1: the branch named as payee's bank for us


class Simulator:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.store = Store(settings.database_path())
        self.keys = Keys(settings.keys_dir, [NPC_CODE, *(p.code for p in settings.peers)])
        self.faults = FaultState(settings.seed, frozenset(settings.banks))
        self.link = Link(self.store, clock, settings.banks, settings.delivery, self.faults)
        self.ids = Ids(self.store, clock)
        self.notices = Notices(self.store, self.ids, clock, self.keys.ring, self.link.wake)
        self.calendar = BusinessCalendar(settings.calendar_file)
        participants = settings.participants
        self.rtgs = Rtgs(self.store, self.notices, clock, participants,
                         lambda: current_phase(self.store))
        self.phases = Phases(self.store, self.notices, self.rtgs, self.calendar,
                             sorted(settings.banks))
        self.node = Node(self.store, self.keys, self.notices, self.rtgs, clock, participants)
        self.intake = Intake(self.store, self.node.take)
        self.beps = Beps(self.store, BepsNotices(self.store, self.ids, clock, self.keys.ring,
                                                 self.link.wake),
                         clock, participants, settings.beps_netting_interval_s)
        self.node.beps = self.beps
        self.node.faults = self.faults
        branches = {OUR_BANK: OUR_BRANCH, **{p.code: p.branch for p in settings.peers}}
        self.peers = {p.code: PeerBank(p, self.keys, self.ids, clock, branches)
                      for p in settings.peers}
        self.queries = PeerQueries(self.store, self.peers, clock, self.node.take,
                                   settings.seed)
        for code, peer in self.peers.items():
            self.link.add_local(code, self._peer_handler(peer))
        self.follower: ClockFollower | None = None
        if settings.follow_clock:
            timetable = windows.Timetable.from_mapping(settings.timetable)
            self.follower = ClockFollower(self.phases, clock, self.calendar, timetable,
                                          settings.tick_s)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task | None = None

    def _peer_handler(self, peer: PeerBank) -> Callable[[bytes], None]:
        def handle(raw: bytes) -> None:
            decoded = peer.receive(raw)
            if decoded is None:
                return
            for answer in peer.acknowledge(decoded):
                self.node.take(answer)
            for answer in self.beps.peer_answers(peer, decoded):
                self.node.take(answer)
            for answer in self.queries.receive(peer, decoded, raw):
                self.node.take(answer)
        return handle

    def _initialise(self) -> None:
        with self.store.transaction():
            for code in sorted(self.settings.participants):
                self.store.seed_balance(code, self.settings.balances_fen.get(code, 0))
            phase, work_date = self.settings.initial_phase, self.settings.initial_date
            if self.follower is not None and phase is None and work_date is None:
                phase, work_date = self.follower.forecast()
            self.phases.initialise(phase or DEFAULT_INITIAL_PHASE,
                                   work_date or self.clock.today().isoformat())

    async def start(self) -> None:
        self._initialise()
        if self.follower is not None:
            self._refuse_clock_behind(self.follower)
            self.follower.catch_up()
        await self.link.start()
        self.beps.start()
        await self.queries.start()
        self._runner = web.AppRunner(control.make_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.settings.host}:{port}"
        if self.follower is not None:
            self._ticker = asyncio.create_task(self.follower.run(), name="follow-clock")
        status, work_date = current_phase(self.store)
        event(log, "started", url=self.url, participants=len(self.settings.participants),
              hvps_status=status, work_date=work_date)

    def _refuse_clock_behind(self, follower: ClockFollower) -> None:
        """A clock whose work date is before the one the data holds is refused, as the
        gateway refuses it: following it would take the NPC back through a day end,
        cancelling the payments queued at it and announcing dates in the past."""
        _, stored = current_phase(self.store)
        _, forecast = follower.forecast()
        if forecast < stored:
            raise PaygateError(Problem(
                "clock_before_stored_work_date", "clock", self.clock.now().isoformat(),
                f"a time whose work date is {stored} or later",
                f"the simulator's clock gives work date {forecast}, before {stored}, the "
                f"work date its data directory holds; {CLOCK_ADVICE}"), status=409)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.queries.stop()
        await self.beps.stop()
        await self.link.stop()
        self.store.close()
        event(log, "stopped", url=self.url)

    async def drain(self) -> None:
        """Wait until everything that can be delivered now has been delivered."""
        await self.link.drain()

    def send_from_peer(self, body: Any) -> list[dict[str, str]]:
        """Build the requested peer credits and put them through the NPC's inbound path."""
        req = parse_request(body, frozenset(self.peers), self.settings.participants)
        peer = self.peers[req.sender]
        created = []
        for _ in range(req.count):
            raw, ids = peer.credit_transfer(req)
            ids["outcome"] = self.node.take(raw)
            created.append(ids)
        event(log, "peer_sent", peer=peer.code, receiver=req.receiver, count=req.count,
              amount_fen=req.amount_fen)
        return created

    def stats(self) -> dict[str, Any]:
        status, work_date = current_phase(self.store)
        counter = self.store.counter
        return {
            "balances": self.store.balances(),
            "settled": self.store.count_status(SETTLED),
            "settled_twice": self.store.settled_twice(),
            "queued": self.store.count_status(QUEUED),
            "cancelled": self.store.count_status(CANCELLED),
            "rejected": counter("rejected"),
            "messages_in": counter("messages_in"),
            "messages_out": counter("messages_out"),
            "discarded": counter("discarded"),
            "duplicates": counter("duplicates"),
            "phase": status,
            "work_date": work_date,
            # Its clock's business now: `serve --simulate` compares it with the gateway's.
            "now": self.clock.now().isoformat(),
            "outbox": self.store.outbox_counts(),
            "link": {"posts": self.link.posts, "envelopes": self.link.envelopes},
            "faults": self.faults.faults.to_dict(),
            "peers": {code: dict(peer.received) for code, peer in self.peers.items()},
            "queries": self.queries.stats(),
        }
