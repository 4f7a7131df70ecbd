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
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from gateway import logs
from gateway.worker import RetryLater

log = logging.getLogger("paygate.link")

LINK_UNKNOWN = "unknown"  # nothing delivered or failed since the start
LINK_UP = "up"
LINK_DOWN = "down"
ALERT_LINK_DOWN = "link_down"
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
        """The state for /health and the operators' page."""
        return {"state": self.state, "since": self.since.isoformat() if self.since else None,
                "cause": self.cause or None, "failed_deliveries": self.failures}

    def delivered(self) -> None:
        """A delivery reached the NPC (it answered, whatever it said)."""
        if self.state == LINK_UP:
            return
        was_down = self.state == LINK_DOWN
        if was_down:
            log.warning("event=link_up down_since=%s failed_deliveries=%s",
                        self.since.isoformat() if self.since else "", self.failures)
        self.state, self.since, self.cause, self.failures = \
            LINK_UP, self.gw.clock.now(), "", 0
        self._attempts = 0
        if was_down:
            self.gw.resume_held()

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


def _loop_time() -> float:
    """Pauses between attempts are in real seconds (connections), not business time."""
    return asyncio.get_running_loop().time()
