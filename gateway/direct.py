"""Work carried on in this process right after its commit, without a stream in between.

A ccms.990 answering an inbound message, and a status change for the core system's
webhook, are each committed in the outbox by the work that made them and then only need
sending. Put on a Redis stream, each would cost an append, a read and an
acknowledgement, and a wait for the consumer's next read, for work this process can
start at once. So, while fewer than `limit` such sends are under way, the process sends
them itself; past the limit, they go to their streams as before (which bounds the work
one process takes on and keeps the streams as the place a backlog shows).

A payment's status change for the webhook goes further: its row is written already
claimed by the work that made the change (gateway.payments), so it is pushed by this
process, at once while slots are free and else in turn, waiting in memory rather than on
the stream (bounded in number and in time, see WAITING_MAX; past them it goes by the
stream after all). The rows that start together share one POST, up to
`webhook_events_max` events (gateway.webhook): the rows a commit hands over at once, and
those that waited for a slot.

An HVPS payment's hvps.111 is sent the same way when the work that accepts the payment
can claim it (Gateway.submit_transfer): built, signed and marked sent in that work, then
posted after commit, with no priority lane in between; so is a BEPS package, claimed by
the work that seals it (gateway.beps.packer). The lanes exist to put urgent
payments first when payments wait; so a payment goes straight out only while this
process's lane sender has room to take more (no entry waits unread on the lanes for it
to overtake) and a link slot is free, and otherwise onto its lane as before.

Sends on the link (hvps.111s, and apart from them ccms.990s) and pushes to the webhook
take slots of their own, so that webhook rows waiting for a slot (they take each one that
comes free) never keep a payment from going straight out or a 990 from being sent at
once, and the 990s of a burst of results never send payments by their lanes. When
the two shared their slots, under load nearly every payment went by its lane and a
quarter of the 990s by the link stream (an entry appended, read, claimed and
acknowledged each, and a second piece of store work each).

Nothing here is needed for safety: the outbox rows are committed first. A send that
fails hands its row to the stream, whose worker retries it (backoff, dead letters); a
process that dies mid-send leaves rows that start-up recovery and the sweeper put back
(gateway.recovery), as for any other stage. A send the NPC refused (4xx) is not handed
on: the same bytes would be refused again, so the send that claimed the row ends it
itself, dead-lettered and held as the stream's sender would (gateway.worker.dead_letter,
gateway.app.Gateway.outbox_dead). Each attempt has one owner, the claim on the row:
a message is POSTed once per attempt, and a refusal is one dead letter and one refused
delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime
from typing import Any, Awaitable

from gateway import keys, outbound, worker
from gateway.linkpost import LinkRefused
from gateway.webhook import Hook
from gateway.worker import RetryLater

log = logging.getLogger("paygate.direct")

# Sends under way at once, to the webhook and on the link. The webhook's HTTP client has
# DIRECT_MAX connections (gateway.app), so more would only queue inside it. A send on the
# link keeps its slot until the POST carrying it is answered (gateway.linkpost), so the
# link's slots bound the envelopes in its POSTs: with 64, two POSTs on their way carried
# about 32 each and the rest of the payments went by their lanes (and the 990s by the
# link stream); 256 lets the POSTs fill to `link_batch_max` (64 by default, two on their
# way) with as many ready behind them. `paygate bench e2e --quick`, two runs each in
# turns: 1,359 and 1,348 µs of gateway CPU per HVPS payment against 1,548 and 1,494, and
# 616 and 574 payments completed a second against 346 and 512. With
# `link_batch_max = 1` the link's client has LINK_CONNECTIONS_MAX connections, and more
# single POSTs only queue inside it. LINK_TIMEOUT_S bounds each.
DIRECT_MAX = 64
LINK_DIRECT_MAX = 256
# The ccms.990s answering what the NPC sent us have slots of their own, apart from the
# hvps.111s' (whose bound decides when a payment goes by its priority lane instead). A
# 990 carries no priority, and one that finds no slot goes by the link stream: an
# append, a read, an acknowledgement and a store work of its own to claim the row it
# could have been sent from. Under a load the NPC is slower to take than we are to
# make, the 990s of two POSTs of 64 results took what the hvps.111s left of 256, and
# most 990s (about 1,600 of 2,500 payments in a 10 s unpaced HVPS phase) went by the
# stream. 1,024 keeps them in memory (about half a megabyte) and on the link at once.
LINK_ACKS_MAX = 1024
LINK_CONNECTIONS_MAX = 128
# Claimed webhook rows waiting in this process for a slot, at most, and for how long; a
# row past either bound gives its claim back and goes by the webhook stream. Well inside
# the claim's lease (outbound.CLAIM_LEASE_S), so that a push that starts then ends before
# the sweeper could take the row for a claim gone stale: a row is never pushed from both.
WAITING_MAX = 10_000
WAITING_S = outbound.CLAIM_LEASE_S / 2


class Direct:
    def __init__(self, gw: Any, limit: int = DIRECT_MAX,
                 link_limit: int = LINK_DIRECT_MAX, ack_limit: int = LINK_ACKS_MAX) -> None:
        self.gw = gw
        self.limit = limit
        self.taken = 0  # slots reserved or running
        self.link_limit = link_limit
        self.link_taken = 0  # the link's slots reserved or running
        self.ack_limit = ack_limit
        self.acks_taken = 0  # the 990s' slots reserved or running
        self._tasks: set[asyncio.Task] = set()
        self.sent = 0
        self.handed_to_streams = 0
        self.dead_lettered = 0  # sends the NPC refused, dead-lettered here
        # Claimed webhook rows waiting for a slot, each with the time it began to wait.
        self._waiting: deque[tuple[Hook, datetime]] = deque()
        self.webhooks_to_stream = 0  # claimed rows given back to the webhook stream
        self._giving_back: list[int] = []
        self._give_backs: set[asyncio.Task] = set()
        self._gave_back_logged_at: datetime | None = None

    def reserve(self) -> bool:
        """Take a slot for a send to start after a commit; False when all are taken."""
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def release(self) -> None:
        """Give back a reserved slot that will not be used."""
        assert self.taken > 0, "a slot is released only after it was reserved"
        self.taken -= 1
        self._next_waiting()

    def reserve_link(self) -> bool:
        """Take a slot for a send on the link to start after a commit; False when all
        are taken."""
        if self.link_taken >= self.link_limit:
            return False
        self.link_taken += 1
        return True

    def release_link(self) -> None:
        """Give back a reserved link slot that will not be used."""
        assert self.link_taken > 0, "a link slot is released only after it was reserved"
        self.link_taken -= 1

    def reserve_ack(self) -> bool:
        """Take a slot for a ccms.990 to be sent after a commit; False when all are
        taken (it then goes by the link stream)."""
        if self.acks_taken >= self.ack_limit:
            return False
        self.acks_taken += 1
        return True

    def release_ack(self) -> None:
        """Give back a reserved 990 slot that will not be used."""
        assert self.acks_taken > 0, "a 990 slot is released only after it was reserved"
        self.acks_taken -= 1

    def send_ack(self, outbox_id: int, envelope: bytes) -> None:
        """Send a claimed outbox row (a ccms.990) in its reserved slot."""
        task = asyncio.get_running_loop().create_task(
            self._send_claimed(outbox_id, envelope, keys.OUT_LINK))
        self._tasks.add(task)
        task.add_done_callback(self._ack_ended)

    def send_credit(self, outbox_id: int, envelope: bytes, lane: str) -> None:
        """Send an hvps.111 claimed by the work that accepted its payment, in its reserved
        link slot; a send that fails goes to the payment's priority lane."""
        self._start_link(self._send_claimed(outbox_id, envelope, lane))

    def send_package(self, outbox_id: int, envelope: bytes, stream: str) -> None:
        """Send a BEPS package claimed by the work that sealed it, in its reserved link
        slot; a send that fails goes to the packages' `stream` (gateway.beps.packer)."""
        self._start_link(self._send_claimed(outbox_id, envelope, stream))

    def push_claimed_webhooks(self, hooks: list[Hook]) -> None:
        """Push webhook rows the committed work claimed: at once while slots are free,
        else in turn as slots come free, the rows ready at that moment together in as
        few POSTs as `webhook_events_max` allows. Past WAITING_MAX waiting, or once one
        has waited WAITING_S, a row gives its claim back and goes by the webhook stream."""
        now = self.gw.clock.now()
        self._waiting.extend((hook, now) for hook in hooks)
        self._next_waiting()
        while len(self._waiting) > WAITING_MAX:  # the newest go by the stream
            self._give_back_webhook(self._waiting.pop()[0].outbox_id)

    def push_webhooks(self, outbox_ids: list[int]) -> list[int]:
        """Push webhook rows, each in a slot of its own while slots are free (those
        claimed together share a POST, gateway.webhook); the ids left over, for the
        webhook stream."""
        left = []
        for outbox_id in outbox_ids:
            if self.reserve():
                self._start(self._push_webhook(outbox_id))
            else:
                left.append(outbox_id)
        return left

    def _give_back_webhook(self, outbox_id: int) -> None:
        """A claimed webhook row this process will not push soon: its claim is given back
        and it goes by the webhook stream (those of one loop turn together)."""
        self._giving_back.append(outbox_id)
        if len(self._giving_back) == 1:
            task = asyncio.get_running_loop().create_task(self._give_back_now())
            self._give_backs.add(task)
            task.add_done_callback(self._give_backs.discard)

    async def _give_back_now(self) -> None:
        await asyncio.sleep(0)  # the rest of this loop turn's rows join
        ids, self._giving_back = self._giving_back, []
        gw = self.gw
        now = gw.clock.now()
        try:
            await gw.store.run(lambda tx: [outbound.give_back(tx, i, now) for i in ids])
            await gw.streams.xadd_many([(keys.WEBHOOK, {"outbox": str(i)}) for i in ids])
        except Exception as exc:
            # Not lost: a claim not given back ends with its lease, a row given back and
            # not on the stream is pending and stale soon; the sweeper takes both.
            log.warning("event=webhooks_give_back_failed count=%s error=%r", len(ids), exc)
            return
        self.webhooks_to_stream += len(ids)
        if self._gave_back_logged_at is None or \
                (now - self._gave_back_logged_at).total_seconds() >= WAITING_S:
            self._gave_back_logged_at = now  # in an overload they come by the thousand
            log.warning("event=webhooks_to_stream count=%s total=%s waiting=%s", len(ids),
                        self.webhooks_to_stream, len(self._waiting))

    async def drain(self) -> None:
        """Wait for the sends under way, and for the webhook rows waiting their turn."""
        while self._tasks or self._give_backs:
            await asyncio.gather(*self._tasks, *self._give_backs, return_exceptions=True)

    def _start(self, work: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.taken -= 1
        _log_failure(task)
        self._next_waiting()

    def _start_link(self, work: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._link_ended)

    def _link_ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.link_taken -= 1
        _log_failure(task)

    def _ack_ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.acks_taken -= 1
        _log_failure(task)

    def _next_waiting(self) -> None:
        """A slot came free: the webhook rows that waited longest take it, as many as one
        POST carries (rows that waited past WAITING_S go by the webhook stream instead)."""
        if not self._waiting:
            return
        now = self.gw.clock.now()
        events_max = self.gw.settings.webhook_events_max
        while self._waiting and self.taken < self.limit:
            bundle: list[Hook] = []
            count = 0
            while self._waiting:
                hook, since = self._waiting[0]
                if (now - since).total_seconds() > WAITING_S:
                    self._waiting.popleft()
                    self._give_back_webhook(hook.outbox_id)
                    continue
                if bundle and count + hook.count > events_max:
                    break
                self._waiting.popleft()
                bundle.append(hook)
                count += hook.count
            if bundle:
                self.taken += 1
                self._start(self._deliver_webhooks(bundle))

    async def _send_claimed(self, outbox_id: int, envelope: bytes, stream: str) -> None:
        gw = self.gw
        try:
            await gw.post_to_link(outbox_id, envelope, payment=stream in keys.HVPS_LANES)
        except LinkRefused as exc:
            # The same bytes would be refused again: this attempt ends the row as the
            # stream's sender ends one the NPC refused (held for an operator, one dead
            # letter naming `stream`, where an operator's retry puts it), rather than
            # handing it to that sender to be POSTed and refused a second time.
            await worker.dead_letter(gw.redis, "direct", stream, "",
                                     {"outbox": str(outbox_id)}, str(exc), 1, exc.status,
                                     gw.outbox_dead)
            self.dead_lettered += 1
            return
        except Exception as exc:
            untaken = outbound.untaken_by(exc)
            await gw.store.run(lambda tx: outbound.give_back_sent(
                tx, outbox_id, gw.clock.now(), untaken, gw.notifier))
            await self._to_stream(stream, outbox_id, exc)
            return
        await gw.mark_sent((outbox_id, gw.clock.now()))
        self.sent += 1

    async def _deliver_webhooks(self, hooks: list[Hook]) -> None:
        gw = self.gw
        try:
            await gw.webhooks.deliver(hooks)
        except RetryLater:
            return  # the retry is scheduled in the rows; the sweeper brings them back
        except Exception as exc:
            ids = [hook.outbox_id for hook in hooks]
            now = gw.clock.now()
            await gw.store.run(lambda tx: [outbound.give_back(tx, i, now) for i in ids])
            for outbox_id in ids:
                await self._to_stream(keys.WEBHOOK, outbox_id, exc)
            return
        self.sent += 1

    async def _push_webhook(self, outbox_id: int) -> None:
        try:
            await self.gw.webhooks.push(outbox_id)
        except RetryLater:
            return  # the retry is scheduled in the row; the sweeper brings it back
        except Exception as exc:
            await self._to_stream(keys.WEBHOOK, outbox_id, exc)
            return
        self.sent += 1

    async def _to_stream(self, stream: str, outbox_id: int, exc: Exception) -> None:
        await self.gw.streams.xadd(stream, {"outbox": str(outbox_id)})
        self.handed_to_streams += 1
        log.info("event=direct_send_to_stream stream=%s outbox=%s error=%r", stream,
                 outbox_id, exc)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        # The row stays in the outbox; the sweeper puts it back on its stream.
        log.warning("event=direct_send_failed error=%r", task.exception())
