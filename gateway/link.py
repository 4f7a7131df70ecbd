"""The link's health as our deliveries see it: up, down (since when, why), or unknown.

The probe (gateway.session) notices a dead NPC only after two unanswered intervals, a
minute by default, while every delivery in between fails at once. So each delivery
reports its outcome here: the first failure marks the link down at once (a warning
line, one `link_down` alert for the outage, /health and the operators' page show it),
the next success marks it up again. Nothing is lost meanwhile: a failed delivery gives
its outbox row back, and the row is sent again when the sweeper next puts it on its
stream (gateway.recovery), which is also how the link is found up again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from gateway import logs

log = logging.getLogger("paygate.link")

LINK_UNKNOWN = "unknown"  # nothing delivered or failed since the start
LINK_UP = "up"
LINK_DOWN = "down"
ALERT_LINK_DOWN = "link_down"


class LinkHealth:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.state = LINK_UNKNOWN
        self.since: datetime | None = None
        self.cause = ""
        self.failures = 0  # failed deliveries since the link last worked

    def view(self) -> dict[str, Any]:
        """The state for /health and the operators' page."""
        return {"state": self.state, "since": self.since.isoformat() if self.since else None,
                "cause": self.cause or None, "failed_deliveries": self.failures}

    def delivered(self) -> None:
        """A delivery reached the NPC (it answered, whatever it said)."""
        if self.state == LINK_UP:
            return
        if self.state == LINK_DOWN:
            log.warning("event=link_up down_since=%s failed_deliveries=%s",
                        self.since.isoformat() if self.since else "", self.failures)
        self.state, self.since, self.cause, self.failures = \
            LINK_UP, self.gw.clock.now(), "", 0

    async def failed(self, cause: str) -> None:
        """A delivery could not reach the NPC (no connection, a timeout, a 5xx). The first
        one of an outage marks the link down and raises its one alert."""
        self.failures += 1
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
