"""The link's health as our deliveries see it: up, down (since when, why), or unknown.

The probe (gateway.session) notices a dead NPC only after two unanswered intervals, a
minute by default, while every delivery in between fails at once. So each delivery
reports its outcome here: the first failure marks the link down at once (a warning
line, one `link_down` alert for the outage, /health and the operators' page show it),
the next success marks it up again. Nothing is lost meanwhile: a failed delivery gives
its outbox row back, and the row is sent again when the sweeper next puts it on its
stream (gateway.recovery).

While the link is down, deliveries are held: one attempt at a time may reach for the
NPC, the next one only after a pause that grows (PROBE_BACKOFF_S); every other delivery
gives its row back at once, without a connection, and the sweeper puts back only one
row per pass for the NPC. Without this each waiting payment retried on its own: about
230 connection attempts a second with 2,000 waiting. The first delivery that gets
through marks the link up and puts every held row back on its stream at once, oldest
first, each on its own priority lane (gateway.recovery.resume).

A link that answers but refuses (4xx) every message is not up either: each refused
message is dead-lettered and its payment held (gateway.app), and the link shows
`degraded` from the first refusal until a message is taken again, with the count of
refusals and the last one's reason; one `link_refusing` alert is raised for the episode
(a link that goes down and comes back still refusing continues it), and the first
message taken ends it (`event=link_refusing_over`).

A link that takes our POSTs but whose NPC then throws every message away unprocessed
(ccms.911: our signing key installed at the NPC is wrong, a format check fails) is not
up either, though every POST was answered 2xx: each discard notice is counted here
once its handling has committed (`discarded`), and the link shows `degraded` from the
first until the NPC acknowledges a message of ours again (a ccms.990 accepting one sent
after the last discarded one: an acknowledgement of an earlier message that was merely
late ends nothing), with the count of discards and the last one's code and reason. One
`link_discarding` alert is raised for the episode, apart from `link_refusing`: a
refused message waits, held, for an operator's retry, while a discarded payment is
rejected and its hold released, and the cure differs (our key at the NPC, the message's
format). Each gateway process counts the notices it receives itself; with several
processes the episode, its alert and the view operators see are the cluster's
(gateway.linkshare).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Awaitable

from gateway import logs
from gateway.worker import RetryLater

log = logging.getLogger("paygate.link")

LINK_UNKNOWN = "unknown"  # nothing delivered or failed since the start
LINK_UP = "up"
LINK_DOWN = "down"
# The NPC answers but takes nothing: every message since `since` was refused (4xx).
LINK_DEGRADED = "degraded"
ALERT_LINK_DOWN = "link_down"
ALERT_LINK_REFUSING = "link_refusing"
ALERT_LINK_DISCARDING = "link_discarding"
# Pauses between attempts while the link is down, the last one repeated: a restarted NPC
# is found within seconds, and a long outage costs one attempt every few seconds.
PROBE_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
HELD = "link down: delivery held until an attempt finds the NPC answering"


class LinkHealth:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.state = LINK_UNKNOWN
        self.since: datetime | None = None
        self.cause = ""
        self.failures = 0  # failed deliveries since the link last worked
        self._attempting = False  # an attempt is on its way while the link is down
        self._attempt_at = 0.0    # loop time before which no attempt starts (link down)
        self._attempts = 0        # failed attempts since the link went down
        # The refusal episode: messages refused since one was last taken, the last
        # refusal's reason, since when, and whether its one alert was raised.
        self.refusals = 0
        self.last_refusal = ""
        self.refusing_since: datetime | None = None
        self._refusing_alerted = False
        # The discard episode: messages of ours the NPC discarded (ccms.911) since it last
        # acknowledged one, the last discard's code and reason, since when, the header
        # MesgID of the latest discarded, and whether its one alert was raised.
        self.discards = 0
        self.last_discard = ""
        self.discarding_since: datetime | None = None
        self._discarded_last = ""
        self._discarding_alerted = False

    def admit(self) -> bool:
        """Before a delivery: while the link is down, RetryLater(HELD) unless this is the
        one attempt allowed now; True for that attempt, whose end must be reported
        (`attempt_over`)."""
        if self.state != LINK_DOWN:
            return False
        if self._attempting or _loop_time() < self._attempt_at:
            raise RetryLater(HELD, untaken=True)  # no connection was made
        self._attempting = True
        return True

    def attempt_over(self) -> None:
        self._attempting = False

    def view(self) -> dict[str, Any]:
        """This process's state for /health and the operators' page (`shown`); with
        several processes they see the cluster's (gateway.linkshare)."""
        return shown(self.raw())

    def raw(self) -> dict[str, Any]:
        """This process's state as it is kept, each episode apart (JSON values)."""
        return {"state": self.state, "since": _iso(self.since), "cause": self.cause or None,
                "failed_deliveries": self.failures, "refused_deliveries": self.refusals,
                "last_refusal": self.last_refusal or None,
                "refusing_since": _iso(self.refusing_since),
                "discarded_messages": self.discards,
                "last_discard": self.last_discard or None,
                "discarding_since": _iso(self.discarding_since)}

    def discarded(self, mesg_id: str, mesg_type: str, code: str, reason: str) -> None:
        """The NPC discarded a message of ours (a ccms.911, its handling committed): the
        link is `degraded` until it acknowledges one again. The first discard of an
        episode is logged and raises its one alert (after this returns)."""
        self.discards += 1
        self.last_discard = f"{code} {reason}".strip() + f" ({mesg_type} {mesg_id})"
        if _later(mesg_id, self._discarded_last):
            self._discarded_last = mesg_id
        if self.discarding_since is None:
            self.discarding_since = self.gw.clock.now()
        share = self.gw.link_share
        if share.active:  # the episode and its alert are the cluster's
            self.gw.spawn(share.discarded(mesg_id, mesg_type, code, reason,
                                          self.last_discard,
                                          self.gw.clock.now().isoformat()))
            return
        alerting = self.alert_discarding(mesg_id, mesg_type, code, reason)
        if alerting is not None:
            self.gw.spawn(alerting)

    def alert_discarding(self, mesg_id: str, mesg_type: str, code: str,
                         reason: str) -> Awaitable[Any] | None:
        """This process's discard episode's one alert, to be awaited; None when it was
        raised already. With several processes, what stands in for the cluster's alert
        while Redis cannot be reached (gateway.linkshare)."""
        if self._discarding_alerted or self.discarding_since is None:
            return None
        self._discarding_alerted = True
        since = self.discarding_since.isoformat()
        said = self.last_discard
        log.warning("event=link_discarding code=%s reason=%s mesg_id=%s since=%s", code,
                    logs.value(reason), mesg_id, since)
        return self.gw.store.run(lambda tx: self.gw.alert(
            tx, ALERT_LINK_DISCARDING, since=since, npc_code=code, reason=reason,
            mesg_id=mesg_id, mt=mesg_type, message=discarding_message(said)))

    def acknowledged(self, mesg_id: str) -> None:
        """The NPC acknowledged (ccms.990, accepted) our message `mesg_id`: when it was
        sent after the last one discarded, the discard episode is over (this process's,
        and the cluster's when its last discarded message is older)."""
        if self.gw.link_share.active and self.gw.link_share.discarding:
            self.gw.spawn(self.gw.link_share.acknowledged(mesg_id))
        if not self.discards or not _later(mesg_id, self._discarded_last):
            return
        log.warning("event=link_discarding_over discarding_since=%s discarded_messages=%s "
                    "last_discard=%s", _iso(self.discarding_since) or "", self.discards,
                    logs.value(self.last_discard))
        self.discards, self.last_discard, self.discarding_since = 0, "", None
        self._discarded_last = ""
        self._discarding_alerted = False
        if self.state in (LINK_UP, LINK_UNKNOWN):
            # It was shown degraded since the first discard: up again from now, not from
            # before the episode.
            self.since = self.gw.clock.now()

    def delivered(self) -> None:
        """The NPC took a message: the link is up, and a refusal episode is over."""
        if self.refusals:
            log.warning("event=link_refusing_over refusing_since=%s refused_deliveries=%s "
                        "last_refusal=%s", self.refusing_since.isoformat()
                        if self.refusing_since else "", self.refusals,
                        logs.value(self.last_refusal))
            self.refusals, self.last_refusal, self.refusing_since = 0, "", None
            self._refusing_alerted = False
        if self.state == LINK_UP:
            return
        self._answered(LINK_UP, "")

    def answered(self) -> None:
        """The NPC answered, but what it took is not known (an answer that could not be
        read): it is reachable; the state is otherwise left as it is."""
        if self.state in (LINK_DOWN, LINK_UNKNOWN):
            self._answered(LINK_DEGRADED if self.refusals else LINK_UP, self.last_refusal)

    def _answered(self, state: str, cause: str) -> None:
        was_down = self.state == LINK_DOWN
        if was_down:
            log.warning("event=link_up down_since=%s failed_deliveries=%s state=%s",
                        self.since.isoformat() if self.since else "", self.failures, state)
        since = self.refusing_since if state == LINK_DEGRADED else None
        self.state, self.since, self.cause, self.failures = \
            state, since or self.gw.clock.now(), cause, 0
        self._attempts = 0
        if was_down:
            self.gw.resume_held()

    async def refused(self, reason: str, status: int, messages: int = 1) -> None:
        """The NPC answered `messages` messages of a POST with a refusal (4xx) and took
        nothing of it: the link is reachable but `degraded` until a message is taken
        again. The first refusal of an episode is logged and raises its one alert."""
        self.refusals += messages
        self.last_refusal = reason
        if self.refusing_since is None:
            self.refusing_since = self.gw.clock.now()
        if self.state != LINK_DEGRADED:
            self._answered(LINK_DEGRADED, reason)
        self.cause = reason
        if self._refusing_alerted:
            return
        self._refusing_alerted = True  # before the await: concurrent refusals raise none
        since = self.refusing_since.isoformat()
        log.warning("event=link_refusing status=%s reason=%s since=%s", status,
                    logs.value(reason), since)
        await self.gw.store.run(lambda tx: self.gw.alert(
            tx, ALERT_LINK_REFUSING, since=since, status=status, reason=reason,
            message="the NPC refuses our messages (4xx): each is dead-lettered and its "
                    "payment held (ops stuck, ops dead); find why it refuses them, then "
                    "retry the dead letters or cancel the payments"))

    async def failed(self, cause: str) -> None:
        """A delivery could not reach the NPC (no connection, a timeout, a 5xx). The first
        one of an outage marks the link down and raises its one alert."""
        self.failures += 1
        pause_s = PROBE_BACKOFF_S[min(self._attempts, len(PROBE_BACKOFF_S) - 1)]
        self._attempts += 1
        self._attempt_at = _loop_time() + pause_s
        if self.state == LINK_DOWN:
            return
        self.state, self.since, self.cause = LINK_DOWN, self.gw.clock.now(), cause
        log.warning("event=link_down cause=%s since=%s", logs.value(cause),
                    self.since.isoformat())
        since = self.since.isoformat()
        await self.gw.store.run(lambda tx: self.gw.alert(
            tx, ALERT_LINK_DOWN, since=since, cause=cause,
            message="deliveries to the NPC fail; messages stay queued in the outbox and "
                    "are sent again until the link answers"))


def shown(raw: dict[str, Any]) -> dict[str, Any]:
    """A state (`LinkHealth.raw`, or the cluster's) as /health and the operators' page
    show it: a link that answers (up, or not used yet) but whose NPC discards our
    messages is `degraded` since the first discard; a link down stays down, one refusing
    stays as its refusals say."""
    out = dict(raw)
    if raw["discarded_messages"] and raw["state"] in (LINK_UP, LINK_UNKNOWN):
        out.update(state=LINK_DEGRADED, since=raw["discarding_since"],
                   cause=raw["last_discard"])
    return out


def discarding_message(said: str) -> str:
    """The `link_discarding` alert's words, `said` naming the discard that began it."""
    return (f"the NPC discards our messages (ccms.911, {said}): each discarded payment is "
            "rejected and its hold released, each package rejected; check our signing key "
            "installed at the NPC (a signature code) or the messages' format, then send "
            "the payments again")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _later(mesg_id: str, than: str) -> bool:
    """Whether header MesgID `mesg_id` was numbered after `than`. Ours are the send date
    and a sequence, of one length (gateway.outbound.new_header), so they sort as text;
    one of another length is taken as later (nothing to compare it with)."""
    return len(mesg_id) != len(than) or mesg_id > than


def _loop_time() -> float:
    """Pauses between attempts are in real seconds (connections), not business time."""
    return asyncio.get_running_loop().time()
