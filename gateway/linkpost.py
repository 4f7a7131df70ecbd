"""Our envelopes to the NPC, several to a POST under load (group commit on the link).

Every send on the link (a stream worker's, a send after commit of gateway.direct, a BEPS
package's) asks for its one envelope to be posted and waits for that envelope's own
outcome. While fewer than POSTS_MAX POSTs are on their way, the envelopes ready in this
turn of the event loop leave at once, together; once that many are on their way, the
envelopes that become ready wait and leave together in the next POST, as soon as one
ends (at most `link_batch_max` envelopes and `link_batch_bytes_max` bytes in one POST;
an envelope larger than that goes alone). No timer collects them: on an idle link an
envelope leaves in the turn it is ready, alone and unframed, byte for byte as before.

A POST costs about the same CPU on both sides whatever it carries, and the NPC takes a
POST's envelopes in one transaction, so a POST of 20 envelopes costs little more than
one of a single envelope. The framing and the answer are gateway.messages.framing.

Each envelope's outcome is what a POST of it alone would have given: taken (the caller
marks its row sent), refused (LinkRefused, a RuntimeError, as a 4xx: the row is
dead-lettered at once, gateway.worker.DeadNow), or not taken now (RetryLater, as a 5xx,
a timeout or no connection: the caller gives its outbox row back for the retry). A POST
that fails as a whole fails every envelope in it that way. A RetryLater says whether the
NPC provably did not take the envelope (`untaken`): only when no connection was made
or the NPC answered 503 ("not taken now"). A timeout, a connection lost mid-request, an
unreadable answer or another 5xx (a 504 from a proxy that gave up waiting) leave the
NPC possibly holding it, and an operator may then not take the payment back as if it
had never left (gateway.outbound.Delivery). Link health (gateway.link) hears each POST:
one that had an envelope taken marks the link up; one that reached the NPC but had none
taken and some refused marks it degraded (refusing); one that did not reach it, or whose
every envelope was answered 5xx, marks it down.

The last look before the bytes leave: an HVPS payment's message (an hvps.111 or hvps.112
from a priority lane, a return included) is taken into a POST only while HVPS sending is
neither held (gateway.status_hold) nor closed (the timetable, the NPC's notice,
operators). One that became ready before the hold or the close, and waited here for a
POST, is kept back instead (KeptBack, a RetryLater: the NPC provably did not take it in
this attempt): its caller gives its outbox row back to its lane, where it waits for the
hold to end or follows the closed window (gateway.status_hold.follow_closed_window), its
same bytes kept for the next attempt. A message in a POST already on its way may reach
the NPC, which answers it as its status then says. Other messages (ccms.990s, queries,
replies, status queries, cancellation requests, reconciliation) are not settlement, and
go whatever HVPS's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.messages import framing
from gateway.worker import RetryLater

log = logging.getLogger("paygate.linkpost")

# POSTs to the NPC on their way at once. `paygate bench e2e --quick`, alternating runs
# with 1, 2 and 4, measured the same CPU per payment and throughput within the machine's
# noise; 2 is kept so that one POST the NPC is slow to answer (up to the link's timeout)
# does not hold up every other envelope, and more would only split batches.
POSTS_MAX = 2
# The NPC's answer that it took nothing now (the simulated NPC's when offline, too).
NOT_TAKEN_STATUS = 503
SINGLE_POSTS_MAX = 128  # gateway.direct.LINK_CONNECTIONS_MAX
_HEADERS = {"Content-Type": "application/octet-stream"}


@dataclass
class _Send:
    outbox_id: int
    envelope: bytes
    done: asyncio.Future
    payment: bool = False  # an HVPS payment's message: kept back while sending may not go


class LinkPoster:
    def __init__(self, gw: Any, envelopes_max: int, bytes_max: int,
                 posts_max: int = POSTS_MAX) -> None:
        assert envelopes_max >= 1 and bytes_max >= 1 and posts_max >= 1
        self.gw = gw
        self.envelopes_max = envelopes_max
        self.bytes_max = bytes_max
        # One envelope per POST (a peer that reads no framing) needs POSTs side by side,
        # as many as the link's connections, as before batching.
        self.posts_max = posts_max if envelopes_max > 1 else SINGLE_POSTS_MAX
        self._waiting: deque[_Send] = deque()
        self._posting = 0  # POSTs on their way
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self.posts = 0      # POSTs made (a resend on a fresh connection not counted)
        self.envelopes = 0  # envelopes they carried

    async def post(self, outbox_id: int, envelope: bytes, payment: bool = False) -> None:
        """Post one envelope, with the envelopes ready with it; returns once the NPC
        took it. RuntimeError when it was refused, RetryLater when it was not taken now
        (KeptBack when `payment`, an HVPS payment's message, may not go now)."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(_Send(outbox_id, envelope, done, payment))
        self._schedule()
        await done

    def _schedule(self) -> None:
        # At the end of this loop turn, so that the envelopes made ready together (a
        # commit's 990s, a stream read's messages) leave in one POST.
        if not self._scheduled and self._posting < self.posts_max:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and self._posting < self.posts_max:
            batch = self._next_batch()
            if not batch:
                return
            self._posting += 1
            task = asyncio.get_running_loop().create_task(self._post(batch))
            self._tasks.add(task)
            task.add_done_callback(self._ended)

    def _next_batch(self) -> list[_Send]:
        batch: list[_Send] = []
        size = 0
        while self._waiting and len(batch) < self.envelopes_max:
            send = self._waiting[0]
            if send.done.done():  # its caller was cancelled: nobody waits for it
                self._waiting.popleft()
                continue
            if send.payment:
                stopped = self.gw.hvps_sending_stopped()
                if stopped is not None:
                    self._waiting.popleft()
                    log.info("event=link_payment_kept_back outbox=%s why=%s",
                             send.outbox_id, stopped)
                    send.done.set_exception(KeptBack(stopped, send.outbox_id))
                    continue
            if batch and size + len(send.envelope) > self.bytes_max:
                break
            batch.append(self._waiting.popleft())
            size += len(send.envelope)
        return batch

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._posting -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("event=link_post_failed error=%r", task.exception())
        if self._waiting:
            self._schedule()

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _post(self, batch: list[_Send]) -> None:
        try:
            outcomes: list[Exception | None] = await self._outcomes(batch)
        except Exception as exc:
            # Not the link's doing (an answer cut short, a URL aiohttp refuses): each
            # sender fails as it failed when it posted alone, and its stage retries it
            # up to a dead letter.
            log.warning("event=link_post_failed envelopes=%s error=%r", len(batch), exc)
            outcomes = [RuntimeError(f"link post failed: {exc!r}") for _ in batch]
        except BaseException:  # cancelled at a stop: no sender is left waiting
            for send in batch:
                if not send.done.done():
                    send.done.set_exception(RetryLater("link post cancelled"))
            raise
        for send, outcome in zip(batch, outcomes):
            if send.done.done():
                continue
            if outcome is None:
                send.done.set_result(None)
            else:
                send.done.set_exception(outcome)

    async def _outcomes(self, batch: list[_Send]) -> list[Exception | None]:
        """Each envelope's outcome (None: taken), with the link's health told."""
        link = self.gw.link
        try:
            statuses = await self._statuses(batch)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            cause = f"link unreachable: {exc!r}"
            await link.failed(cause)
            # No connection made: nothing of the POST left us. (A connection that failed
            # after the NPC had closed one carrying it is DisconnectedThenUnreachable.)
            untaken = isinstance(exc, aiohttp.ClientConnectorError)
            return [RetryLater(cause, untaken=untaken) for _ in batch]
        except framing.AnswerUnreadable as exc:
            # The NPC answered, so the link is reachable; which envelopes it took is
            # unknown, so all are sent again (it recognises those it took by their
            # message ids).
            link.answered()
            log.warning("event=link_answer_unreadable envelopes=%s error=%s", len(batch),
                        exc)
            return [RetryLater(str(exc)) for _ in batch]
        if all(status >= 500 for status in statuses):
            cause = f"link answered {statuses[0]}"
            await link.failed(cause)
            return [RetryLater(f"link answered {s}", untaken=s == NOT_TAKEN_STATUS)
                    for s in statuses]
        outcomes = [_outcome(send, status) for send, status in zip(batch, statuses)]
        refused = [o for o in outcomes if isinstance(o, LinkRefused)]
        if any(o is None for o in outcomes):
            link.delivered()
        elif refused:
            # Reachable, but nothing of the POST taken: refused, or not taken now. Each
            # refused envelope is one refused message, however many a POST carried.
            await link.refused(str(refused[-1]), refused[-1].status, len(refused))
        return outcomes

    async def _statuses(self, batch: list[_Send]) -> list[int]:
        body, headers = framing.frame([send.envelope for send in batch])
        self.posts += 1
        self.envelopes += len(batch)
        try:
            return await self._post_once(body, headers, len(batch))
        except aiohttp.ServerDisconnectedError as closed:
            # A kept-alive connection the NPC closed just as it was reused says nothing
            # of the link: once more on a new connection (the NPC takes a message it
            # already has as a repeat) before it counts as a failure.
            try:
                return await self._post_once(body, headers, len(batch))
            except aiohttp.ClientConnectorError as exc:
                raise DisconnectedThenUnreachable(exc) from closed

    async def _post_once(self, body: bytes, headers: dict[str, str], count: int
                         ) -> list[int]:
        async with self.gw.link_http.post(self.gw.settings.npc_url, data=body,
                                          headers={**_HEADERS, **headers}) as r:
            if count == 1:
                return [r.status]
            return framing.statuses(r.status, await r.read(), count)


def _outcome(send: _Send, status: int) -> Exception | None:
    if 200 <= status < 300:
        return None
    if status >= 500:
        return RetryLater(f"link answered {status}", untaken=status == NOT_TAKEN_STATUS)
    return LinkRefused(status, send.outbox_id)


class LinkRefused(RuntimeError):
    """The NPC refused a message (4xx): sending the same bytes again gets the same
    answer, so its work is dead-lettered at once (gateway.worker.DeadNow). A refused
    message was not taken (`untaken`, as RetryLater's)."""

    untaken = True

    def __init__(self, status: int, outbox_id: int) -> None:
        super().__init__(f"link answered {status} for outbox {outbox_id}")
        self.status = status


class KeptBack(RetryLater):
    """An HVPS payment's message not put into a POST: HVPS sending is held or closed
    (`why`). Nothing left us, so the attempt provably did not give it to the NPC."""

    def __init__(self, why: str, outbox_id: int) -> None:
        super().__init__(f"outbox {outbox_id} kept back at the link: {why}", untaken=True)
        self.why = why


class DisconnectedThenUnreachable(aiohttp.ClientConnectionError):
    """The NPC closed the connection carrying a POST, and a new connection for it could
    not be made: unreachable, yet the first POST may have reached the NPC before it
    closed, so the envelopes are not provably untaken."""

    def __init__(self, cause: aiohttp.ClientConnectorError) -> None:
        super().__init__(f"connection closed by the NPC, then {cause!r}")
