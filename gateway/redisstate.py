"""Redis as the gateway sees it: up or down, the embedded server kept alive, and the
answers given while it is away.

Redis carries only hand-overs (stream entries); the database is the truth. So a Redis
outage must never turn committed work into an error: a payment saved before the
hand-over failed is answered as accepted and the sweeper (gateway.recovery) puts it on
its stream once Redis is back. What cannot be done without Redis (the queue depth check
of a new payment, the operators' queue figures) is refused with 503 `redis_unavailable`
and a Retry-After, never with a 500.

The embedded Redis (gateway.redisproc) is a child of the gateway: when it dies it is
started again on its own port and append-only file, with a warning line and one
`redis_died` alert per death. Its streams, consumer groups and pending entries come back
from that file (up to its last second, fsync every second); what the last second lost
is put back by the sweeper from the database, as after a crash.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import PaygateError, Problem

log = logging.getLogger("paygate.redis")

# Every failure that means "Redis cannot be reached now" (LOADING after a restart is a
# ConnectionError in redis-py; the builtin one is a reset socket): a pause, never a bug.
REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError)
RETRY_AFTER_S = 2          # the Retry-After of a 503 redis_unavailable
SUPERVISE_EVERY_S = 0.5    # how often the embedded server's process is looked at
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # between failed restarts, the last repeated
PING_TIMEOUT_S = 1.0       # /health's ping; a pool that gives no connection counts as down
ALERT_REDIS_DIED = "redis_died"


class RedisUnavailable(PaygateError):
    status = 503


def unavailable(exc: BaseException) -> RedisUnavailable:
    """The 503 for a request that needs Redis while it cannot be reached."""
    return RedisUnavailable(Problem(
        "redis_unavailable", "/", None, f"Redis reachable; try again in {RETRY_AFTER_S} s",
        f"the gateway's Redis cannot be reached now ({type(exc).__name__}); nothing was "
        "done for this request"))


class Outage:
    """One warning line per cause when Redis fails, and one line when it works again,
    instead of a line per failed attempt (a worker retries several times a second)."""

    def __init__(self, logger: logging.Logger, event: str, **context: Any) -> None:
        self.logger = logger
        self.event = event
        self.context = "".join(f" {k}={v}" for k, v in context.items())
        self.causes: dict[str, int] = {}

    def failed(self, exc: BaseException) -> None:
        cause = type(exc).__name__
        if cause not in self.causes:
            self.causes[cause] = 0
            self.logger.warning("event=%s%s cause=%s error=%r", self.event, self.context,
                                cause, exc)
        self.causes[cause] += 1

    def recovered(self) -> None:
        if not self.causes:
            return
        self.logger.info("event=%s_over%s failures=%s", self.event, self.context,
                         sum(self.causes.values()))
        self.causes.clear()

    @property
    def down(self) -> bool:
        return bool(self.causes)


class RedisWatch:
    """The gateway's view of its Redis, and the keeper of the embedded one."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.restarts = 0
        self.last_death: str | None = None

    async def view(self) -> dict[str, Any]:
        """Redis's state for /health: up when it answers a ping within PING_TIMEOUT_S."""
        embedded = self.gw.embedded_redis
        out: dict[str, Any] = {"embedded": embedded is not None, "restarts": self.restarts,
                               "last_death": self.last_death}
        if embedded is not None and embedded.died() is not None:
            return dict(out, state="down", error="embedded redis-server exited")
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                await self.gw.redis.ping()
        except (*REDIS_DOWN_ERRORS, TimeoutError) as exc:
            return dict(out, state="down", error=f"{type(exc).__name__}: {exc}"[:200])
        return dict(out, state="up", error=None)

    async def supervise(self) -> None:
        """While the gateway runs: start the embedded Redis again whenever it dies."""
        embedded = self.gw.embedded_redis
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            code = embedded.died()
            if code is not None:
                await self._revive(embedded, code)

    async def _revive(self, embedded: Any, code: int) -> None:
        self.last_death = self.gw.clock.now().isoformat()
        log.warning("event=redis_died exit_code=%s port=%s restarting=true", code,
                    embedded.port)
        await self.gw.store.run(lambda tx: self.gw.alert(
            tx, ALERT_REDIS_DIED, exit_code=code, port=embedded.port,
            message="the embedded Redis exited; it is started again on its append-only "
                    "file and the sweeper puts back what it lost"))
        loop = asyncio.get_running_loop()
        for attempt in itertools.count():  # until it runs again or the gateway stops
            try:
                await loop.run_in_executor(None, embedded.restart)
                break
            except Exception as exc:
                pause_s = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
                if attempt == 0:
                    log.error("event=redis_restart_failed error=%r retry_in_s=%s", exc,
                              pause_s)
                await asyncio.sleep(pause_s)
        self.restarts += 1
        log.warning("event=redis_restarted port=%s restarts=%s", embedded.port,
                    self.restarts)
