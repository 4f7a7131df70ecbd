"""The simulated NPC's BEPS side: packages in, netting rounds, settlement, forwarding,
reconciliation, and the peers' BEPS traffic.

Packages are taken at any hour (BEPS runs 7x24). A credit package (beps.121, 122, 125)
or a debit receipt (beps.128) is checked and then waits for the next netting round
(netting.py); a debit package (beps.127) nets nothing itself and is forwarded to the
payer bank at once; a package that breaks a rule is refused with ccms.900 PR09. A
beps.720 is answered with the participant's totals of the netting date (beps.721).

Rounds close on the business clock, every `beps_netting_interval_s` from midnight (the
last of a netting date at the next midnight), as docs/calendar.md lays the day out; the
round closing k intervals after midnight is round k of that date (`netting_round_for`
in gateway.windows names it to the gateway). The last round run is kept in the
database, so a restart neither delays nor renumbers the schedule: a round whose time
passed while the NPC was down runs as soon as it starts, under that round's date and
number, with the packages taken before it closed (rounds in which nothing could net are
passed over). A round is also run on `POST /sim/beps/net`, numbered after the date's
last. After each round, and whenever HVPS settles (phases 10 and 30), unsettled rounds
are settled.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from gateway.clock import SHANGHAI, Clock
from gateway.messages import beps720, beps127, beps128, codec
from gateway.messages.common import OriginalRef
from simulators import beps_peer, beps_store as bs, netting
from simulators.beps_notices import (RECEIVER_UNKNOWN, RULE_BROKEN, SENDER_NOT_INSTRUCTING,
                                     BepsNotices)
from simulators.logfmt import event
from simulators.peers import PeerBank
from simulators.phases import current_phase
from simulators.rtgs import SETTLING_PHASES
from simulators.store import Store

log = logging.getLogger("npc.beps")

CREDIT_TYPES = frozenset({"beps.121.001.01", "beps.122.001.01", "beps.125.001.01"})
TYPES = CREDIT_TYPES | {beps127.MESSAGE_TYPE, beps128.MESSAGE_TYPE, beps720.MESSAGE_TYPE}
TICK_S = 0.2  # real seconds between looks at the round timer and the HVPS phase
DAY_US = 86_400 * 10**6
# The closing instant of the last round run on the clock (ISO), kept across restarts.
ROUNDS_THROUGH = "beps_rounds_through"


class RoundSchedule:
    """Closing instants of the timed rounds: every `interval_s` business seconds from the
    Shanghai midnight of each day, the last of a day at the next midnight. Slot k of day
    d closes at midnight + k x interval (in whole microseconds, so that an instant read
    back from the database falls on its slot exactly). An interval longer than a day
    closes no round by itself: rounds then run only when asked for (`paygate
    simulate-day` nets its rounds as events of its day so)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_us = round(interval_s * 10**6)
        self.timed = 0 < self.interval_us <= DAY_US
        self.per_day = -(-DAY_US // self.interval_us) if self.timed else 0

    def closes_at(self, day: date, k: int) -> datetime:
        midnight = datetime.combine(day, time(0), tzinfo=SHANGHAI)
        return midnight + timedelta(microseconds=min(k * self.interval_us, DAY_US))

    def last_closed(self, at: datetime) -> tuple[date, int]:
        """The slot (netting date, number) that closed last at or before `at`."""
        at = at.astimezone(SHANGHAI)
        midnight = datetime.combine(at.date(), time(0), tzinfo=SHANGHAI)
        k = ((at - midnight) // timedelta(microseconds=1)) // self.interval_us
        if k >= 1:
            return at.date(), k
        return at.date() - timedelta(days=1), self.per_day  # the round closing at midnight

    def after(self, day: date, k: int) -> tuple[date, int]:
        return (day, k + 1) if k < self.per_day else (day + timedelta(days=1), 1)


class Beps:
    def __init__(self, store: Store, notices: BepsNotices, clock: Clock,
                 participants: frozenset[str], interval_s: float) -> None:
        self.store = store
        self.notices = notices
        self.clock = clock
        self.participants = participants
        self.interval_s = interval_s
        self.default_cap_fen = netting.DEFAULT_CAP_FEN
        self.schedule = RoundSchedule(interval_s)
        self._looked = False  # the first look after start logs a catch-up
        self._task: asyncio.Task | None = None
        bs.install(store.conn)

    # Messages in (inside the node's transaction)

    def take(self, decoded: codec.Decoded, raw: bytes) -> str:
        mesg_type = decoded.header.mesg_type
        if mesg_type == beps720.MESSAGE_TYPE:
            return self._answer_recon(decoded)
        refusal = self._refusal(decoded)
        if refusal is not None:
            return self._refuse(decoded, *refusal)
        if mesg_type == beps127.MESSAGE_TYPE:
            return self._forward_debits(decoded, raw)
        return self._queue(decoded, raw)

    def _refusal(self, decoded: codec.Decoded) -> tuple[Any, str] | None:
        if decoded.problems:
            return RULE_BROKEN, ",".join(sorted({p.code for p in decoded.problems}))
        h = decoded.obj.header
        if h.instg_direct != decoded.header.orig_sender:
            return SENDER_NOT_INSTRUCTING, h.instg_direct
        if h.instd_direct not in self.participants or h.instd_direct == h.instg_direct:
            return RECEIVER_UNKNOWN, h.instd_direct
        return None

    def _refuse(self, decoded: codec.Decoded, reason: Any, detail: str) -> str:
        header = decoded.header
        msg_id = getattr(getattr(decoded.obj, "header", None), "msg_id", header.mesg_id)
        original = OriginalRef(msg_id=msg_id, instg_party=header.orig_sender,
                               mt=header.mesg_type)
        self.store.add("beps_rejected")
        self.notices.result(header.orig_sender, original, bs.REJECTED, reason,
                            self._today(), detail)
        event(log, "refused", sender=header.orig_sender, mesg_type=header.mesg_type,
              reason=reason.code, detail=detail)
        return "refused"

    def _record(self, decoded: codec.Decoded, raw: bytes, status: str, payer: str,
                payee: str, count: int, amount_fen: int, txs: list[tuple[str, int]]) -> int:
        h = decoded.obj.header
        return bs.add_package(self.store.conn, {
            "sender": h.instg_direct, "receiver": h.instd_direct, "payer": payer,
            "payee": payee, "mesg_type": decoded.header.mesg_type,
            "mesg_id": decoded.header.mesg_id, "msg_id": h.msg_id, "count": count,
            "amount_fen": amount_fen, "status": status, "received_on": self._today(),
            "received_at": self.clock.now().isoformat(), "raw": raw}, txs)

    def _queue(self, decoded: codec.Decoded, raw: bytes) -> str:
        obj = decoded.obj
        h = obj.header
        if decoded.header.mesg_type == beps128.MESSAGE_TYPE:
            # The payer bank pays the collector what the receipt says it paid.
            txs = [(line.tx_id, line.amount_fen) for line in obj.lines
                   if line.status == beps128.PAID]
            self._record(decoded, raw, bs.WAITING, h.instg_direct, h.instd_direct,
                         obj.paid_count, obj.paid_fen, txs)
        else:
            txs = [(t.tx_id, t.amount_fen) for t in obj.transfers]
            self._record(decoded, raw, bs.WAITING, h.instg_direct, h.instd_direct, h.count,
                         h.total_fen, txs)
        event(log, "package_waiting", sender=h.instg_direct, receiver=h.instd_direct,
              mesg_type=decoded.header.mesg_type, msg_id=h.msg_id, count=h.count)
        return "waiting_for_netting"

    def _forward_debits(self, decoded: codec.Decoded, raw: bytes) -> str:
        h = decoded.obj.header
        txs = [(t.tx_id, t.amount_fen) for t in decoded.obj.transfers]
        self._record(decoded, raw, bs.FORWARDED, h.instd_direct, h.instg_direct, h.count, 0,
                     txs)
        self.notices.forward(h.instd_direct, raw)
        event(log, "debits_forwarded", sender=h.instg_direct, receiver=h.instd_direct,
              msg_id=h.msg_id, count=h.count)
        return "forwarded"

    def _answer_recon(self, decoded: codec.Decoded) -> str:
        participant = decoded.header.orig_sender
        request: beps720.TotalCheckRequest = decoded.obj
        day = request.check_date
        rows = tuple(beps720.RoundTotals(day, rnd, mt, int(sc), int(sf), int(rc), int(rf),
                                         "PR04" if settled else bs.NETTED)
                     for rnd, mt, sc, sf, rc, rf, settled
                     in bs.totals(self.store.conn, participant, day))
        messages = tuple(beps720.MessageCounts(mt, int(sent), int(received), day)
                         for mt, sent, received
                         in bs.message_counts(self.store.conn, participant, day))
        original = OriginalRef(request.header.msg_id, participant, beps720.MESSAGE_TYPE)
        self.notices.total_check(participant, original, day, rows, messages)
        event(log, "total_check_sent", participant=participant, check_date=day,
              rows=len(rows))
        return "answered"

    # Rounds and settlement

    def net_now(self) -> netting.RoundResult:
        """One netting round now, its notices, and settlement if HVPS settles."""
        now = self.clock.now()
        with self.store.transaction():
            result = netting.net_round(self.store, now, self.default_cap_fen)
            netting.notify_round(self.store, self.notices, result, now)
        self.settle_if_open()
        return result

    def settle_if_open(self) -> int:
        status, work_date = current_phase(self.store)
        if status not in SETTLING_PHASES:
            return 0
        with self.store.transaction():
            return netting.settle_pending(self.store, self.notices, work_date,
                                          self.clock.now())

    def tick(self) -> None:
        if not self.due_round() and bs.unsettled_rounds(self.store.conn):
            self.settle_if_open()

    def due_round(self) -> bool:
        """Run the timed rounds whose closing time has come and that have not run yet,
        each under its own date and number, netting the packages taken before it closed;
        False when none ran. Slots in which nothing could net (every package waiting came
        later) are passed over. The first time (a new database) the schedule starts at
        the last slot closed, which runs at once when packages already wait."""
        if not self.schedule.timed:
            return False
        now = self.clock.now()
        last = self.schedule.last_closed(now)
        last_at = self.schedule.closes_at(*last)
        through = self.store.meta(ROUNDS_THROUGH)
        if through is not None and datetime.fromisoformat(through) >= last_at:
            return False
        ran = False
        while True:
            oldest = bs.first_waiting_received_at(self.store.conn)
            if oldest is None:
                break
            due = self.schedule.after(*self.schedule.last_closed(
                datetime.fromisoformat(oldest)))
            if through is not None:
                due = max(due, self.schedule.after(*self.schedule.last_closed(
                    datetime.fromisoformat(through))))
            elif due < last:
                due = last
            due_at = self.schedule.closes_at(*due)
            if due_at > last_at:
                break
            if not self._looked and due < last:
                event(log, "rounds_caught_up", netting_date=due[0].isoformat(), slot=due[1],
                      closed_at=due_at.isoformat(), last_closed_at=last_at.isoformat())
            self._looked = True
            self._net(now, due, due_at)
            through, ran = due_at.isoformat(), True
        self._looked = True
        if through is None or datetime.fromisoformat(through) < last_at:
            with self.store.transaction():
                self.store.set_meta(ROUNDS_THROUGH, last_at.isoformat())
        return ran

    def _net(self, now: datetime, slot: tuple[date, int], closes_at: datetime) -> None:
        """The timed round of `slot`, and the schedule's progress, in one transaction:
        a crash between them would otherwise run the round again or skip it."""
        day, k = slot
        with self.store.transaction():
            result = netting.net_round(self.store, now, self.default_cap_fen,
                                       netting_date=day.isoformat(), slot=k,
                                       slots_per_day=self.schedule.per_day,
                                       closes_at=closes_at)
            netting.notify_round(self.store, self.notices, result, now)
            self.store.set_meta(ROUNDS_THROUGH, closes_at.isoformat())
        self.settle_if_open()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.tick()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="beps-rounds")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def set_cap(self, participant: str, cap_fen: int | None, add_fen: int | None) -> int:
        with self.store.transaction():
            current = bs.cap(self.store.conn, participant, self.default_cap_fen)
            new_cap = cap_fen if cap_fen is not None else current + (add_fen or 0)
            bs.set_cap(self.store.conn, participant, new_cap)
        event(log, "cap_set", participant=participant, cap_fen=new_cap)
        return new_cap

    # Peers

    def peer_package(self, peer: PeerBank, body: Any, debit: bool,
                     take: Any) -> dict[str, Any]:
        """Make a peer send a credit (or debit) package through the NPC's inbound path."""
        req = beps_peer.parse_request(body, frozenset({peer.code}), self.participants)
        raw, msg_id = beps_peer.package(peer, req, debit)
        return {"msg_id": msg_id, "count": req.count, "outcome": take(raw)}

    def peer_answers(self, peer: PeerBank, decoded: codec.Decoded) -> list[bytes]:
        """What a peer answers a BEPS message delivered to it with (a debit receipt)."""
        receipt = beps_peer.receipt_for(peer, decoded)
        return [receipt] if receipt is not None else []

    def _today(self) -> str:
        return self.clock.now().date().isoformat()

    def stats(self) -> dict[str, Any]:
        conn = self.store.conn
        rounds = conn.execute("SELECT netting_date, netting_round, settled_on FROM "
                              "beps_rounds ORDER BY netting_date, netting_round").fetchall()
        return {"packages": bs.counts_by_status(conn),
                "rounds": [{"netting_date": d, "netting_round": r, "settled_on": s}
                           for d, r, s in rounds],
                "outstanding_fen": bs.outstanding(conn),
                "withdrawn_txs": bs.withdrawn_count(conn),
                "interval_s": self.interval_s,
                "rounds_through": self.store.meta(ROUNDS_THROUGH)}
