"""The gateway process: wiring of store, ledger, router, streams, link and API.

Start-up order: database (and ledger tables) → Redis (embedded unless configured) →
recovery (every unfinished outbox and inbox row back on its stream) → workers → HTTP.
Shutdown runs the other way round and lets in-flight work finish.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, NamedTuple

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

import ledger
from gateway.collector import tune_collector
from gateway import (bulk, dbopen, deployment, intake, internal_hold, jsontext, key_reuse,
                     keys, logs, outbound, payments, ready, recon, recovery, scope,
                     status_hold, store, webhook)
from gateway.cluster import Cluster
from gateway.batcher import Batcher
from gateway.calendar import ALERT_DATA_MISSING, BusinessCalendar
from gateway.clock import Clock, ManualClock, SystemClock, texts
from gateway.coalesce import Coalescer
from gateway.config import Settings, clock_source, source_of
from gateway.errors import Conflict, PaygateError, Problem
from gateway.money import parse_yuan
from gateway.dayend import DayEnd, check_clock, check_clock_time
from gateway.direct import DIRECT_MAX, LINK_CONNECTIONS_MAX, Direct
from gateway.handlers import Handlers
from gateway.inbound import (ProcessingFailed, process_tx, receive_and_process_tx, receive_tx,
                             receive_unprocessed_tx)
from gateway.link import LINK_DOWN, LinkHealth
from gateway.linkshare import LinkShare
from gateway.linkpost import KeptBack, LinkPoster, LinkRefused
from gateway.messages import ccms900, ccms990, codec
from gateway.messages import envelope as env_mod
from gateway.messages import hvps710, hvps712
from gateway.messages.common import GroupHeader
from gateway.messages.signing import KeyRing, write_keypair
from gateway.redisproc import EmbeddedRedis
from gateway.redisstate import REDIS_DOWN_ERRORS, Outage, RedisWatch, unavailable
from gateway.states import HELD_DEAD_LETTERED, HELD_REFUSED_AT_LINK
from gateway.store import Store, lost_race
from gateway.windows import (
    REFUSED_OUTCOMES, SOURCE_NOTICE, SOURCE_OPERATOR, WindowState, hvps_phase,
    next_hvps_opening, timetable_from_settings,
)
from gateway.worker import DeadNow, RetryLater, StreamWorker
from routing import RouteRequest, Router, load_default

log = logging.getLogger("paygate.gateway")

LINK_TIMEOUT_S = 10.0
DEPTH_CHECK_S = 0.1
REDIS_LOADING_WAIT_S = 120.0  # a large append-only file loads in seconds; wait for it
WINDOW_TICK_S = 5.0
# The longest wait between two looks for reconciliations the NPC left unanswered.
RECON_OVERDUE_CHECK_S = 60.0
# A sender without a key retries each message with a backoff, every message it has: one
# `sender_key_unknown` alert per sender this often says it without an alert per attempt.
# Senders remembered for that are few (the NPC and the banks behind it); the memory is
# emptied past this many.
KEY_UNKNOWN_ALERT_EVERY_S = 300.0

KEY_UNKNOWN_SENDERS_MAX = 1000
# Envelopes of one framed link POST checked in one turn of the event loop.
ENVELOPES_PER_TURN = 8
# The message types whose link POST is taken together in one savepoint
# (`Gateway._take_together`): the HVPS results, which come many to a POST under load.
# Any other is taken one by one, each in a savepoint of its own: its processing may
# change more than rows (a ccms.801 moves the HVPS window), and the fewer envelopes are
# processed twice, the fewer such changes depend on being undone.
TAKEN_TOGETHER = frozenset({ccms990.MESSAGE_TYPE, ccms900.MESSAGE_TYPE})
# Why an HVPS payment's message was kept back at the link with HVPS closed (its retry
# note; the row then follows the closed window: gateway.status_hold).
HVPS_CLOSED_AT_LINK = "hvps_closed"
REDIS_CONNECTIONS_MAX = 256
REDIS_POOL_WAIT_S = 10.0

# Feature modules; each has `install(gw) -> extension`. An extension may offer
# `handlers()` (message type -> handler), `add_routes(app)`, `workers()` (name, streams,
# handler), `async start()`, `async stop()`, `summary(tx) -> dict` (summary sections),
# `claim_result(tx, decoded, now)` (a ccms.900 about something that is not a payment),
# `payment_ended(tx, payment, status, reason, now)` (an outgoing payment of ours ended
# unsettled by the core's own handling: Gateway.ended_unsettled),
# `simulate_day_events(run)` (events for `paygate simulate-day`).
EXTENSIONS: tuple[str, ...] = ("gateway.session", "gateway.ops", "gateway.queries",
                               "gateway.exceptions", "gateway.beps")


class Prepared(NamedTuple):
    """A transfer checked and routed, ready for its transaction (Gateway._accept_tx)."""

    client: str
    idem_key: str
    body_hash: str
    transfer: intake.Transfer
    decision: Any
    accept: Any            # the channel's intake: fn(tx, row, transfer, decision, now)
    work_date: date
    now: datetime
    end_to_end_id: str | None
    # The work that accepts it also claims its message, sent after commit (a slot of
    # gateway.direct is reserved for it).
    send_now: bool = False
    # A ready hvps.111 (POST /v1/messages): its message, kept and compared (gateway.ready).
    message: Any = None
    # The request itself, for a hash stored under its key before requests were compared
    # by meaning (intake.same_transfer).
    body: Any = None


# A stop never hangs: each of its phases gets this long, then the stop goes on (what was
# cut short is committed work whose sending the next start's recovery picks up).
STOP_PHASE_S = 15.0


async def _bounded(phase: str, work: Awaitable[Any]) -> None:
    try:
        async with asyncio.timeout(STOP_PHASE_S):
            await work
    except TimeoutError:
        log.warning("event=stop_phase_cut_short phase=%s after_s=%s", phase, STOP_PHASE_S)


class _TriedOnly(Exception):
    """Undoes a hold tried only to learn whether it would be refused."""


class Gateway:
    def __init__(self, settings: Settings, clock: Clock | None = None,
                 router: Router | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        # What set the clock, named in a refusal at start: the setting `clock` where the
        # user set it, the machine's time, or a command's own (the demo's virtual day).
        self.clock_source = (clock_source(settings)
                             if settings.clock or isinstance(self.clock, SystemClock)
                             else "the clock this command runs on")
        self.calendar = BusinessCalendar(settings.calendar_file or None,
                                         settings.calendar_alert_days)
        self.timetable = timetable_from_settings(settings)
        self.ledger = ledger.Ledger()
        self.store = Store(settings.db_url, self.ledger)
        self.cluster = Cluster(self)
        self.cluster.on_lead.append(self.recover)
        self.cluster.listeners.update(hvps_status=self._on_peer_hvps_status,
                                      hvps_recon=lambda e: self.recon_done(e["result"]))
        self.cluster.listeners[status_hold.CLUSTER_KIND] = self._on_peer_hvps_hold
        # HVPS sending held while the gateway and the NPC disagree on HVPS's status (a
        # refused ccms.801): the hold's row, None while in step (gateway.status_hold).
        self.hvps_hold: dict[str, Any] | None = None
        # How many times this process changed its hold (`_take_hvps_hold`): the window
        # tick applies the hold it read from the table only when nothing changed it
        # between the read and the apply (a notice's after-commit work, another
        # process's word), whose change is newer than the tick's read.
        self._hvps_hold_changes = 0
        # The last status operators confirmed that this process has seen (its `seq` in
        # `hvps_status_confirmed`), taken once whichever way it arrives.
        self._confirmed_seq = 0
        self._confirmed_taking = asyncio.Lock()
        self.router = router or load_default()
        self.router.hvps_window = self.timetable.business_window()
        self.notifier = payments.Notifier(webhook=bool(settings.webhook_url),
                                          events_max=settings.webhook_events_max)
        self.own_banks = frozenset([settings.bank_code, *settings.branch_codes])
        # The bank code of the institution whose books the ledger keeps: the branch every
        # customer account of the ledger is kept at, and so a transfer's payer bank.
        kept_at = self.router.institutions.get(self.ledger.settings.institution)
        self.account_bank: str | None = kept_at.bank_code if kept_at and kept_at.bank_code \
            else None
        self.keyring: KeyRing | None = None
        self._key_unknown_alerted: dict[str, float] = {}
        self.redis: aioredis.Redis | None = None
        self.database_id = ""  # the database's identity, read at start (gateway.deployment)
        self.streams: Coalescer | None = None  # pipelined XADD/XACK (gateway.coalesce)
        self.embedded_redis: EmbeddedRedis | None = None
        self.http: aiohttp.ClientSession | None = None  # the webhook's
        self.link_http: aiohttp.ClientSession | None = None  # the NPC's inbound URL
        self.workers: list[StreamWorker] = []
        self._hvps_sender: StreamWorker | None = None
        self._tasks: list[asyncio.Task] = []
        self.handlers = Handlers(self)
        self._handler_table: dict[str, Any] | None = None
        # Sends this process starts itself after a commit (gateway.direct), and the small
        # outbox updates of concurrent sends merged into one piece of work each.
        self.direct = Direct(self)
        self.mark_sent = Batcher(self.store, outbound.mark_sent_many)
        self.webhooks = webhook.Pusher(self)
        self.day_end = DayEnd(self)
        self.cluster.on_lead.append(self.day_end.run_owed)
        self.cluster.on_lead.append(self.day_end.check_missing)
        self.cluster.on_lead.append(self.day_end.finish_owed)
        now = self.clock.now()
        # The HVPS state: forecast by the local timetable until the NPC's ccms.801 notices
        # arrive, which are the authority from then on (gateway.windows.WindowState).
        # Changed only inside the store's work, so that a ccms.801's work undone sets back
        # its own change and nothing another part of the gateway changed meanwhile.
        self.window = WindowState(self.calendar, now, self.timetable, changed_in_work=True)
        self.hvps_status = self.window.code
        self.work_date: date = self.window.work_date
        self.scheduler: Any = None
        self.recon_results: dict[str, dict[str, Any]] = {}
        self.recon_details: dict[str, dict[str, Any]] = {}
        self.link = LinkHealth(self)  # up or down, as deliveries find it
        self.link_share = LinkShare(self)  # the link's state across processes
        # Our envelopes to the NPC, several to a POST under load (gateway.linkpost).
        self.link_poster = LinkPoster(self, settings.link_batch_max,
                                      settings.link_batch_bytes_max)
        self.redis_watch = RedisWatch(self)  # Redis's state; keeps the embedded one alive
        self._hand_over_outage = Outage(log, "hand_over_postponed")
        self._calendar_checked_on: date | None = None
        self._next_opening: tuple[datetime, Any, Any, datetime] | None = None  # its method
        self._open_by_clock: tuple[datetime, Any, Any, bool] | None = None  # _closed_by_status
        self._depth, self._depth_at, self._depth_reading = 0, -1.0, False
        self._recon_waiters: dict[str, asyncio.Future] = {}
        self._recon_overdue_at: datetime | None = None  # next check_recon_overdue
        self._owed_check_at: datetime | None = None  # next DayEnd.finish_owed of a tick
        self.runner: web.AppRunner | None = None
        self.url = ""
        # Intake per channel; extensions add theirs (BEPS, internal transfers).
        self.channels: dict[str, Any] = {"hvps": self._accept_hvps,
                                         "internal": self._accept_internal}
        # A review hook: (transfer, settings) -> reason to hold for review, or None.
        self.review: Any = None
        # Extensions add to a payment's view (GET /v1/transfers/{id}): fn(tx, view,
        # client), `client` the core-system client asking (None: the gateway's own use),
        # for what one client sees and another does not (its queries); a ready
        # message's payment shows the core system's MsgId and TxId.
        self.view_hooks: list[Any] = [ready.show_core_ids, outbound.show_delivery]
        # What a dead-lettered outbox row of another kind than an HVPS credit does to
        # its work, by kind (a BEPS package's items held): fn(tx, outbox id, reason,
        # status, now) -> fields naming the work for the letter; and what a retry of its
        # letter undoes: fn(tx, outbox id, now, **who) (gateway.ops.actions.retry).
        self.outbox_dead_hooks: dict[str, Any] = {}
        self.outbox_revive_hooks: dict[str, Any] = {}
        # Outbox kind -> (tx, outbox id) -> fields naming its work in a dead letter
        # written again at start-up (gateway.recovery.restore_letters): a BEPS package.
        self.outbox_letter_names: dict[str, Any] = {}
        self.extensions = [importlib.import_module(name).install(self)
                           for name in EXTENSIONS]
        status_hold.register()  # operators confirm the HVPS status after a refused notice
        internal_hold.register()  # supervisors pass or fail book transfers the review holds

    # Life cycle

    async def start(self, serve_http: bool = True) -> None:
        tune_collector()
        logs.follow_clock(self.clock)
        self.settings.data_path.mkdir(parents=True, exist_ok=True)
        write_keypair(self.settings.keys_path, self.settings.bank_code)
        self.keyring = KeyRing.load(self.settings.keys_path, [self.settings.bank_code],
                                    self.settings.signature_algorithm,
                                    frozenset(self.settings.unverified_senders))
        try:
            await self.store.open()
        except Exception as exc:
            refused = dbopen.refusal(self.settings, exc)
            if refused is None:
                raise
            await self.store.close()
            logs.unfollow_clock(self.clock)
            raise refused from None
        try:
            named = self.clock_source, source_of(self.settings, "clock")
            await self.store.run(lambda tx: check_clock(
                tx, self.work_date, self.hvps_status, self.clock.now().isoformat(), *named))
            await self.store.run(lambda tx: check_clock_time(tx, self.clock.now(), *named))
        except PaygateError:
            await self.store.close()
            logs.unfollow_clock(self.clock)
            raise
        self.store.on_commit = self._add_entries
        self.hvps_hold = await self.store.run(status_hold.read)
        # The status operators confirmed last is the window's when no notice changed it
        # since: a process started after the confirmation takes it, as one running
        # then did; else it only counts it as seen.
        confirmed, take = await self.store.run(
            lambda tx: status_hold.confirmed_at_start(tx, self.window.work_date))
        if confirmed is not None and take:
            await self._take_confirmed_status(confirmed)
            self.work_date = max(self.work_date, self.window.work_date)
            log.info("event=hvps_status_confirmed_taken_at_start status=%s work_date=%s "
                     "at=%s", confirmed["status"], confirmed["work_date"], confirmed["at"])
        self._confirmed_seq = confirmed["seq"] if confirmed else 0
        if self.hvps_hold is not None:
            log.warning("event=hvps_sending_held since=%s at_start=true",
                        self.hvps_hold["since"])
        # The database's identity, recorded in the Redis it is given (gateway.deployment).
        self.database_id = await self.store.run(
            lambda tx: deployment.database_id(tx, self.clock.now()))
        try:
            await self._open_redis()
        except PaygateError:
            await self._close_redis()
            await self.store.close()
            logs.unfollow_clock(self.clock)
            raise
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=LINK_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=DIRECT_MAX),
            cookie_jar=aiohttp.DummyCookieJar())
        # The link's own connections: its sends after commit (LINK_DIRECT_MAX) and the
        # stream workers' sends, apart from the webhook's, so that neither waits on the
        # other's connections.
        self.link_http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=LINK_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=LINK_CONNECTIONS_MAX),
            cookie_jar=aiohttp.DummyCookieJar())
        await self.cluster.start()
        self.link_share.start()
        if self.leading:
            await self.recover()
        self._start_workers()
        if self.embedded_redis is not None:
            self._tasks.append(asyncio.create_task(self.redis_watch.supervise(),
                                                   name="redis_supervisor"))
        for ext in self.extensions:
            if hasattr(ext, "start"):
                await ext.start()
        self._start_scheduler()
        if self.leading:
            await self.check_calendar()
            # The previous date's day end a stop over the cut-over left owed runs now, or
            # at the NPC's notice of leaving it, as a live cut-over; any other is alerted.
            await self.day_end.run_owed()
            await self.day_end.check_missing()
            # A closed date whose HVPS reconciliation a stopped process left owed (killed
            # between the cut-over's close and the NPC's answer) is asked for again.
            await self.day_end.finish_owed()
            await self.day_end.write_late_notes()
        if serve_http:
            from gateway.api import errors_middleware, make_app
            from gateway.http_errors import GatewayRunner
            self.runner = GatewayRunner(make_app(self), around=errors_middleware,
                                        access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, self.settings.host, self.settings.port)
            await site.start()
            port = self.runner.addresses[0][1]
            self.url = f"http://{self.settings.host}:{port}"
        log.info("event=gateway_started url=%s bank=%s hvps_status=%s work_date=%s",
                 self.url, self.settings.bank_code, self.hvps_status, self.work_date)

    async def _open_redis(self) -> None:
        """The configured Redis, or the embedded one started; a Redis that cannot be
        started or reached is a named refusal to start (the CLI ends with status 2)."""
        redis_url = self.settings.redis_url
        if not redis_url:
            self.embedded_redis = EmbeddedRedis(self.settings.data_path / "redis")
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, self.embedded_redis.start)
            except (RuntimeError, OSError, PaygateError) as exc:
                raise PaygateError(Problem(
                    "redis_start_failed", "redis_url", None,
                    "an embedded redis-server that starts, or PAYGATE_REDIS_URL",
                    "the embedded Redis did not start: " + (
                        exc.problems[0].message if isinstance(exc, PaygateError)
                        else str(exc))), 503) from None
            redis_url = self.embedded_redis.url
        # A blocking pool: a burst of requests waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, decode_responses=True, max_connections=REDIS_CONNECTIONS_MAX,
            timeout=REDIS_POOL_WAIT_S)
        self.redis = aioredis.Redis(connection_pool=pool)
        self.streams = Coalescer(self.redis)
        try:
            await self._redis_loaded()
            if self.settings.redis_url:  # an embedded Redis is this gateway's own
                await deployment.claim_redis(
                    self.redis, self.database_id,
                    deployment.described(self.store.url, self.store.dialect),
                    source_of(self.settings, "redis_url"), redis_url)
        except REDIS_DOWN_ERRORS as exc:
            raise PaygateError(Problem(
                "redis_unreachable", source_of(self.settings, "redis_url"), redis_url,
                "a Redis server answering at PAYGATE_REDIS_URL (or none set: the embedded "
                "one)", f"Redis at {redis_url} did not answer: {exc}"), 503) from None

    async def _close_redis(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            await self.redis.connection_pool.disconnect()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()

    async def _redis_loaded(self) -> None:
        """Wait while Redis loads its append-only file after a restart (it answers
        LOADING until then: recovery and the link login must not start before)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REDIS_LOADING_WAIT_S
        while True:
            try:
                await self.redis.ping()
                return
            except BusyLoadingError:
                if loop.time() > deadline:
                    raise
                log.info("event=redis_loading")
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None
        await _bounded("cluster", self.cluster.stop())
        await _bounded("link_share", self.link_share.stop())
        for ext in reversed(self.extensions):
            if hasattr(ext, "stop"):
                await _bounded(f"extension_{type(ext).__name__}", ext.stop())
        for worker in self.workers:
            worker.stop()
        for task in self._tasks:
            task.cancel()
        await _bounded("tasks", asyncio.gather(*self._tasks, return_exceptions=True))
        await _bounded("day_end", self.day_end.stop())
        await _bounded("workers", asyncio.gather(*(worker.drain() for worker in self.workers)))
        await _bounded("direct_sends", self.direct.drain())
        await _bounded("link_posts", self.link_poster.drain())
        if self.runner is not None:
            await _bounded("http_server", self.runner.cleanup())
        if self.http is not None:
            await self.http.close()
        if self.link_http is not None:
            await self.link_http.close()
        await self.store.close()
        await self._close_redis()
        log.info("event=gateway_stopped")
        logs.unfollow_clock(self.clock)

    def _start_scheduler(self) -> None:
        """APScheduler drives the local timetable in real (or scaled) time: every few
        seconds the window state catches up with the clock, so HVPS opens and closes on
        schedule even before or without the NPC's notices, and a notice that is overdue
        is raised to operators. A manual clock (the discrete-event day) is driven by its
        own events instead."""
        if isinstance(self.clock, ManualClock):
            return
        self.scheduler = AsyncIOScheduler()
        self.scheduler.add_job(self.window_tick, "interval", seconds=WINDOW_TICK_S,
                               id="window_tick", max_instances=1, coalesce=True)
        self.scheduler.start()

    async def check_calendar(self) -> None:
        """Raise the calendar's alerts: dates ahead with no calendar data (the coming year
        not yet published), which are assumed Monday to Friday meanwhile. One alert per
        missing period, named by its first date, whatever the days left or the restarts:
        the alerts already recorded say which dates were raised."""
        found = self.calendar.alerts(self.clock.today())
        if not found:
            return

        def work(tx: Any) -> None:
            raised = {json.loads(detail).get("date") for (detail,) in tx.query(
                "SELECT detail FROM alerts WHERE code = ?", (ALERT_DATA_MISSING,))}
            for a in found:
                if a["date"] not in raised:
                    self.alert(tx, a["code"], **{k: v for k, v in a.items() if k != "code"})
        await self.store.run(work)

    async def window_tick(self) -> None:
        """Every process keeps its window up to date; the leader alone records the
        changes and raises the alerts (and acts on them: the day end), and runs the
        extensions' periodic checks (`tick(now)`)."""
        now = self.clock.now()
        if not self.cluster.single:
            # A hold started or ended by another process whose word did not reach this
            # one (the cluster channel is not a queue): the table is the truth, and so
            # is the status operators confirmed when they ended it, taken first.
            changes_seen = self._hvps_hold_changes
            hold, confirmed = await self.store.run(lambda tx: (
                status_hold.read(tx), status_hold.read_confirmed(tx)))
            if confirmed is not None:
                await self._take_confirmed_status(confirmed)
            self._take_table_hold(hold, changes_seen)
            if self.hvps_hold is not None and self.leading:
                # A payment another process put on a lane before it heard of the hold.
                await self.store.run(status_hold.mark_held)
        if now.date() != self._calendar_checked_on and self.leading:
            self._calendar_checked_on = now.date()
            await self.check_calendar()
        changes, code, work_date = await self.store.run(
            lambda tx: self._window_to(tx, now, self.leading))
        if changes:
            self.apply_hvps_status(code, work_date)
        if self.leading:
            await self.check_recon_overdue(now)
            await self.day_end.check_awaited(now)
            if self._owed_check_at is None or now >= self._owed_check_at:
                self._owed_check_at = now + timedelta(seconds=RECON_OVERDUE_CHECK_S)
                await self.day_end.finish_owed(now)
                await self.day_end.write_late_notes()
            # The extensions' own periodic checks (BEPS: netting dates to reconcile).
            for ext in self.extensions:
                if hasattr(ext, "tick"):
                    await ext.tick(now)

    def _window_to(self, tx: Any, now: datetime, leading: bool) -> tuple[list, str, date]:
        """The window brought up to `now` by the timetable, in the store's work (see
        `self.window`); the leader records its changes and raises its alerts there. The
        changes, and the state in force after them."""
        changes = self.window.apply_schedule(now)
        alerts = self.window.alerts()
        if leading:
            for entry in changes:
                self.windows_record(tx, "HVPS", entry.from_code or "", entry.to_code,
                                    entry.work_date.isoformat(), now, entry.source)
            for alert in alerts:
                self.alert(tx, alert["code"], **{k: v for k, v in alert.items()
                                                 if k != "code"})
        return changes, self.window.code, self.window.work_date

    def _start_workers(self) -> None:
        s = self.settings
        specs = [
            ("hvps_sender", keys.HVPS_LANES, self._send_outbox),
            ("link_sender", (keys.OUT_LINK,), self._send_outbox),
            ("inbound", (keys.INBOUND,), self._process_inbound),
            ("webhook", (keys.WEBHOOK,), self._send_webhook),
        ]
        for ext in self.extensions:
            specs.extend(getattr(ext, "workers", lambda: [])())
        for name, streams, handler in specs:
            # Work that dies is marked so in the database, for an operator: a message to
            # the NPC held in the outbox, an inbound message's row failed.
            on_dead = self._inbound_dead if name == "inbound" else \
                self.outbox_dead if set(streams) <= set(keys.TO_NPC) else None
            worker = StreamWorker(self.redis, name, streams, handler,
                                  batch_max=s.worker_batch_max, retries_max=s.send_retries_max,
                                  acks=self.streams, on_dead=on_dead)
            self.workers.append(worker)
            if name == "hvps_sender":
                self._hvps_sender = worker
            self._tasks.append(asyncio.create_task(worker.run(), name=name))
        if not isinstance(self.clock, ManualClock):
            # On a manual clock (the discrete-event day) time jumps between events, so an
            # age-based sweep would fire at random real moments; start-up recovery remains.
            self._tasks.append(asyncio.create_task(self._sweep_forever(), name="sweeper"))

    @property
    def leading(self) -> bool:
        """Whether this process does the leader's work (gateway.cluster); always on SQLite."""
        return self.cluster.leading

    async def _sweep_forever(self) -> None:
        await recovery.sweep_forever(self)

    async def sweep(self) -> int:
        return await recovery.sweep(self)

    async def _add_entries(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """After a commit: its webhook rows are pushed by this process, those its work
        claimed always, the others while it has room (gateway.direct); every other entry,
        and the unclaimed webhook rows left over, go to their streams."""
        claimed = [webhook.Hook(int(fields["outbox"]), fields[payments.CLAIMED_BODY].encode(),
                                int(fields[payments.CLAIMED_EVENTS]))
                   for stream, fields in entries
                   if stream == keys.WEBHOOK and payments.CLAIMED_BODY in fields]
        if claimed:
            self.direct.push_claimed_webhooks(claimed)
            entries = [(stream, fields) for stream, fields in entries
                       if stream != keys.WEBHOOK or payments.CLAIMED_BODY not in fields]
        hooks = [int(fields["outbox"]) for stream, fields in entries
                 if stream == keys.WEBHOOK and "outbox" in fields]
        if hooks and self.settings.webhook_url:
            left = set(self.direct.push_webhooks(hooks))
            entries = [(stream, fields) for stream, fields in entries
                       if stream != keys.WEBHOOK or "outbox" not in fields
                       or int(fields["outbox"]) in left]
        await recovery.add_entries(self, entries)

    async def recover(self) -> None:
        await recovery.recover(self)
        if self.hvps_open:
            await self.release_waiting()

    # State that handlers update

    def alert(self, tx: Any, code: str, **detail: Any) -> int:
        alert_id = tx.query_one("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?) "
                                "RETURNING id", (self.clock.now().isoformat(), code,
                                                 json.dumps(detail, ensure_ascii=False,
                                                            default=str)))[0]
        store.log_after_commit(log, logging.WARNING, [
            f"event=alert code={code} "
            + " ".join(f"{k}={logs.value(jsontext.dumps(v) if isinstance(v, (list, dict)) else v)}"
                       for k, v in detail.items())])
        return int(alert_id)

    def ended_unsettled(self, tx: Any, payment: dict[str, Any], status: str,
                        reason: str | None, now: datetime) -> None:
        """An outgoing payment of ours ended without settling (`rejected`, `cancelled`)
        in this transaction, by the core's own handling (the NPC discarded its message,
        its message could not be built, an operator cancelled it): each extension that
        records more of such an ending is told (gateway.exceptions: a return of ours
        ends as the NPC's refusal of it does, outcomes.return_failed). `status` says
        how it ended (the history's event), `reason` why."""
        for ext in self.extensions:
            hook = getattr(ext, "payment_ended", None)
            if hook is not None:
                hook(tx, payment, status, reason, now)

    def windows_record(self, tx: Any, system: str, old: str, new: str, on: str,
                       now: datetime, source: str) -> None:
        """One change of a system's window, with what set it (`source`: the timetable,
        a ccms.801, operators): the state in force as every process reads it
        (`hvps_moved_on_by_notice`)."""
        tx.execute("INSERT INTO alerts (at, code, detail) VALUES (?, 'window_changed', ?)",
                   (now.isoformat(), json.dumps({"system": system, "from": old, "to": new,
                                                 "work_date": on, "source": source})))
        store.log_after_commit(log, logging.INFO, [(
            f"event=window_changed system={system} from={old} to={new} work_date={on} "
            f"source={source}")])

    @staticmethod
    def hvps_moved_on_by_notice(tx: Any, notice_date: str) -> bool:
        """Whether the NPC has moved on past `notice_date`, as stored: the date's ledger
        day is closed, and the last HVPS state the NPC stated as recorded
        (`window_changed` of a ccms.801, or of the status operators confirmed with it)
        is of a later work date. A notice of `notice_date` was then sent before a
        cut-over the NPC has made. Read from the tables, not from this process's window,
        so that a process started after the cut-over judges the notice as one that lived
        through it. A change the timetable alone made does not count (the NPC may be
        running late), nor one recorded without its source (before it was kept): the
        notice is then judged as any other, the NPC being the authority."""
        if tx.query_one("SELECT 1 FROM ledger_day WHERE work_date = ?",
                        (notice_date,)) is None:
            return False
        row = tx.query_one(
            "SELECT detail FROM alerts WHERE code = 'window_changed' AND detail LIKE ? "
            "AND (detail LIKE ? OR detail LIKE ?) ORDER BY id DESC LIMIT 1",
            ('%"system": "HVPS"%', f'%"source": "{SOURCE_NOTICE}"%',
             f'%"source": "{SOURCE_OPERATOR}"%'))
        return row is not None and str(json.loads(row[0]).get("work_date", "")) > notice_date

    def apply_hvps_status(self, status: str, work_date: date,
                          npc_date: date | None = None) -> None:
        """The window's state after a change (`npc_date`: the work date a ccms.801 the
        gateway took stated, None for the timetable's changes)."""
        old_date = self.work_date
        self.hvps_status = status
        self.work_date = max(work_date, old_date)
        # Every process: nothing more leaves the lanes (`_send_outbox`), and what is left
        # on them follows the closed window.
        self.follow_closed_hvps()
        if not self.leading:
            return
        self.day_end.on_hvps_status(status, work_date, old_date, self.work_date, npc_date)
        if status == "10":
            self._tasks.append(asyncio.create_task(self.release_waiting()))

    def hold_hvps(self, hold: dict[str, Any]) -> None:
        """A ccms.801 was refused: HVPS sending held in this process and the others."""
        self._take_hvps_hold(hold)
        self.cluster.publish(status_hold.CLUSTER_KIND, hold=hold)

    def release_hvps(self, how: str) -> None:
        """In step with the NPC again: HVPS sending resumes in this process and the
        others (told by a notice of their own, or by `confirm_hvps_status`'s word); the
        rows held on the lanes go back on them now, not at the sweeper's next pass."""
        self._take_hvps_hold(None, how)
        self.spawn(recovery.resume(self, keys.HVPS_LANES))

    async def confirm_hvps_status(self, confirmed: dict[str, Any]) -> None:
        """Operators confirmed the status to use (gateway.status_hold, committed, its
        record `confirmed`): the window takes it, every process is told, and HVPS sending
        resumes. With HVPS closed under it, a payment this process put on a lane since
        the confirmation committed (accepted as the window then said) is first treated
        as the window says now, as those of before were in the confirmation's own work.
        Whatever fails here, this process's state follows the committed hold's end
        (logged and alerted: `hvps_status_confirm_after_commit_failed`); a row left on a
        lane follows the window when its sender or the next change looks at it."""
        status = confirmed["status"]
        try:
            await self._take_confirmed_status(confirmed)
            if not self.hvps_open:
                await self._follow_closed_window(status_hold.CLOSED_REFUSED)
        except Exception as exc:
            await self._confirm_after_commit_failed(confirmed, exc)
        finally:
            self.release_hvps(f"status {status} confirmed by operators")
            self.cluster.publish(status_hold.CLUSTER_KIND, hold=None, confirmed=confirmed)

    async def _confirm_after_commit_failed(self, confirmed: dict[str, Any],
                                           exc: Exception) -> None:
        log.error("event=hvps_status_confirm_after_commit_failed status=%s work_date=%s "
                  "seq=%s error=%r", confirmed["status"], confirmed["work_date"],
                  confirmed["seq"], exc, exc_info=exc)
        try:
            await self.store.run(lambda tx: self.alert(
                tx, status_hold.ALERT_CONFIRM_AFTER_COMMIT, status=confirmed["status"],
                work_date=confirmed["work_date"], error=f"{type(exc).__name__}: {exc}"))
        except Exception as alert_exc:
            log.error("event=alert_not_recorded code=%s error=%r",
                      status_hold.ALERT_CONFIRM_AFTER_COMMIT, alert_exc, exc_info=alert_exc)

    async def _take_confirmed_status(self, confirmed: dict[str, Any]) -> bool:
        """The window takes the status operators confirmed (`hvps_status_confirmed`'s
        record, by the approval, another process's word or the table on a tick), once,
        and the gateway acts on it; not when the window has taken a notice since (the
        word came late). Unlike a notice's, it never moves the work date nor runs a day
        end (the date confirmed is the work date: status_hold.check_confirmable); the
        day end comes its own way (the NPC's cut-over notice, a late day end). True
        when taken. One at a time: a second way the same record arrives waits for the
        first to be taken, and finds it seen."""
        async with self._confirmed_taking:
            if confirmed["seq"] <= self._confirmed_seq:
                return False
            at = datetime.fromisoformat(confirmed["at"])
            status, day = confirmed["status"], date.fromisoformat(confirmed["work_date"])

            def take(tx: Any) -> datetime | None:
                last = self.window.last_notice_at
                if last is not None and last > at:
                    return last
                self.window.set_by_operator(status, day, at)
                return None
            passed_over_by = await self.store.run(take)
            self._confirmed_seq = confirmed["seq"]
        if passed_over_by is not None:
            log.info("event=hvps_status_confirmed_passed_over status=%s at=%s "
                     "window_since=%s", status, confirmed["at"], passed_over_by.isoformat())
            return False
        self.hvps_status = status
        return True

    def _take_table_hold(self, hold: dict[str, Any] | None, changes_seen: int,
                         how: str = "") -> None:
        """The hold the window tick read from the table, taken unless this process's
        hold changed since the tick began to read (`changes_seen`): a notice's work
        committed after the read, and told here before the tick applies it, is newer;
        taking the read would undo it until the next tick (a hold just begun lifted, HVPS
        sending resumed meanwhile, or one just ended held again). The next tick reads
        the table afresh."""
        if self._hvps_hold_changes != changes_seen:
            log.info("event=hvps_hold_tick_read_passed_over held_read=%s held_now=%s",
                     hold is not None, self.hvps_hold is not None)
            return
        self._take_hvps_hold(hold, how)

    def _take_hvps_hold(self, hold: dict[str, Any] | None, how: str = "") -> None:
        self._hvps_hold_changes += 1
        was, self.hvps_hold = self.hvps_hold, hold
        if was is None and hold is not None:
            log.warning("event=hvps_sending_held since=%s orig=%s cur=%s date=%s outcome=%s",
                        hold["since"], hold["orig"], hold["cur"], hold["notice_date"],
                        hold["outcome"])
        elif was is not None and hold is None:
            log.warning("event=hvps_sending_resumed since=%s how=%s", was["since"],
                        how or "told by the database")
            if self.hvps_open and self.leading:
                self.spawn(self.release_waiting())
            self.follow_closed_hvps()

    def follow_closed_hvps(self) -> None:
        """HVPS closed in this process's view, its sending not held: the payments left on
        the lanes (this process's, or another's it accepted before it heard) follow the
        window now (status_hold.follow_closed_window), as at the end of a hold with a
        closed status confirmed. Run by every process whenever its view changes (a
        ccms.801, the timetable, another process's word); each row is changed once,
        whichever process gets to it first."""
        if not self.hvps_open and self.hvps_hold is None:
            self.spawn(self._follow_closed_window())

    async def _follow_closed_window(self, event: str = status_hold.CLOSED_ON_LANE
                                    ) -> dict[str, int]:
        status = self.hvps_status
        counts = await self.store.run(lambda tx: status_hold.follow_closed_window(
            self, tx, self.clock.now(), event=event))
        if any(counts.values()):
            log.info("event=hvps_closed_lanes_followed status=%s waiting=%s refused=%s",
                     status, counts["waiting"], counts["refused"])
        return counts

    async def _on_peer_hvps_hold(self, event: dict[str, Any]) -> None:
        """Another gateway process held HVPS sending, or ended the hold; ended by
        operators, with the status they confirmed, which this process's window takes.

        The word says that the hold changed, not what it is now: by the time it is taken
        it can be older than the table (two processes' words crossing, or a hold begun
        and ended again before the first word arrives), and taken as it is it would hold
        or release sending wrongly until the next tick. So the hold is read again from
        the table, written before the word was sent, and taken as the tick takes it:
        not when this process's hold changed during the read (`_take_table_hold`)."""
        if event.get("confirmed"):
            await self._take_confirmed_status(event["confirmed"])
        changes_seen = self._hvps_hold_changes
        hold = await self.store.run(status_hold.read)
        self._take_table_hold(hold, changes_seen, "told by another gateway process")
        # Once not held: a payment this process put on a lane before it heard, or whose
        # hold ended by the table on its tick (no change of the hold seen here), follows
        # the window as the approving process's did.
        self.follow_closed_hvps()

    async def _on_peer_hvps_status(self, event: dict[str, Any]) -> None:
        """Another gateway process applied a ccms.801: apply it to this one's window (in
        the store's work, see `self.window`)."""
        def take(tx: Any) -> tuple[str, str, date]:
            # Published only when the receiving process did not find it of a past date.
            outcome = self.window.apply_notice(event["orig"], event["cur"], event["date"],
                                               datetime.fromisoformat(event["at"]))
            return outcome, self.window.code, self.window.work_date
        outcome, code, work_date = await self.store.run(take)
        log.info("event=peer_hvps_status cur=%s date=%s outcome=%s", event["cur"],
                 event["date"], outcome)
        stated = None if outcome in REFUSED_OUTCOMES else date.fromisoformat(event["date"])
        self.apply_hvps_status(code, work_date, stated)

    @property
    def hvps_open(self) -> bool:
        return self.hvps_status == "10"

    def hvps_sending_stopped(self) -> str | None:
        """Why an HVPS payment's message may not leave for the NPC now (the link's last
        look before its bytes go, gateway.linkpost): HVPS sending held
        (gateway.status_hold), or HVPS closed; None when it may go."""
        if self.hvps_hold is not None:
            return status_hold.HELD
        if not self.hvps_open:
            return f"{HVPS_CLOSED_AT_LINK} (status {self.hvps_status})"
        return None

    async def release_waiting(self) -> None:
        """HVPS is open: payments that waited for the window go onto their lanes. Run by
        the leader whenever its view of the status becomes open (a ccms.801, the
        timetable, another process's notice), at start and on taking the lead when HVPS
        is open then, and by the sweeper while it is open (a payment accepted as waiting
        while the status changed)."""
        if self.hvps_hold is not None:  # they wait on (gateway.status_hold)
            return
        now = self.clock.now().isoformat()

        def work(tx: Any) -> list:
            return tx.query("UPDATE outbox SET state = 'pending', updated_at = ? "
                            "WHERE state = 'waiting' RETURNING id, stream", (now,))
        rows = await self.store.run(work)
        for outbox_id, stream in rows:
            await self.redis.xadd(stream, {"outbox": str(outbox_id)})
        if rows:
            log.info("event=released_waiting count=%s", len(rows))

    async def check_recon_overdue(self, now: datetime) -> None:
        """Raise `reconciliation_overdue` for each hvps.710 or beps.720 the NPC left
        unanswered `recon_answer_overdue_s` (gateway.recon). No database work until the
        next ask falls due, or RECON_OVERDUE_CHECK_S when none waits (an ask made by
        another process)."""
        if self._recon_overdue_at is not None and now < self._recon_overdue_at:
            return
        after_s = self.settings.recon_answer_overdue_s
        due = await self.store.run(lambda tx: recon.raise_overdue(tx, self, now, after_s))
        self._recon_overdue_at = min(due or now + timedelta(seconds=RECON_OVERDUE_CHECK_S),
                                     now + timedelta(seconds=RECON_OVERDUE_CHECK_S))

    def recon_done(self, result: dict[str, Any]) -> None:
        recon.keep_day(self.recon_results, result["work_date"], result)
        waiter = self._recon_waiters.pop(result["work_date"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    # Core-system requests

    async def submit_transfer(self, client: str, idem_key: str | None, body: Any,
                              end_to_end_id: str | None = None, message: Any = None
                              ) -> tuple[int, dict[str, Any]]:
        """Accept one transfer. `end_to_end_id` keeps the core system's own id when it sent
        a ready message (POST /v1/messages, `message` its hvps111.CreditTransfer); JSON
        transfers get one from the gateway."""
        try:
            prepared = self._prepare(client, idem_key, body, end_to_end_id)._replace(
                message=message)
        except PaygateError as exc:
            # A key answered before gets its first answer, whatever the route says now
            # (HVPS closed since, with when_closed=refuse): the payment was taken. A key
            # taken by another request is refused for that (409), as a valid body would
            # be, before any field of this one: the key is what the core system mistook.
            stored = await self.answered_before(client, idem_key, body, message, exc)
            if stored is not None:
                return stored
            if exc.status != 422:
                raise
            # Refused for its fields or route: its account and funds are told too.
            raise PaygateError([*exc.problems, *await self.funds_problems(
                body, exc.problems, as_written=message is not None)], 422) from None
        try:
            await self._check_depth()
        except REDIS_DOWN_ERRORS as exc:
            refusal = unavailable(exc)
            if message is not None:
                stored = await self.store.run(lambda tx: ready.stored_answer(
                    tx, client, message, prepared.body_hash, body))
                if stored is None:
                    raise refusal from None
                return stored
            [(_, answer)] = await self.store.run(
                lambda tx: bulk.answer_stored(tx, [(0, prepared)], refusal))
            if isinstance(answer, PaygateError):
                raise answer from None
            return answer
        if prepared.decision.channel == "hvps" and self._may_send_now():
            prepared = prepared._replace(send_now=True)
        try:
            status, response, entries, sending = await self.store.run(
                lambda tx: self._accept_tx(tx, prepared))
        except BaseException:
            if prepared.send_now:
                self.direct.release_link()
            raise
        if sending is not None:
            self.direct.send_credit(*sending)
        elif prepared.send_now:
            self.direct.release_link()
        await self.hand_over(entries)
        return status, response

    async def answered_before(self, client: str, idem_key: str | None, body: Any,
                               message: Any, refusal: PaygateError | None = None
                               ) -> tuple[int, dict[str, Any]] | None:
        """The first answer to a transfer refused now (`refusal`, if any) when its key was
        taken before with the same body (or the same ready message); None otherwise, and
        when the key itself is refused. A transfer refused for its body (`refusal` given)
        under a key another request took is refused for the key instead (409, raised:
        key_reuse.refused_transfer), as it would be were its body valid; the lookup is
        made only for a refused body, never on the way to acceptance."""
        if not idem_key or refusal is not None and any(p.path == "Idempotency-Key"
                                                       for p in refusal.problems):
            return None
        body_hash = intake.transfer_sha256(body)

        def work(tx: Any) -> tuple[int, dict[str, Any]] | None:
            if message is not None:
                try:
                    return ready.stored_answer(tx, client, message, body_hash, body)
                except Conflict:  # another message under its MsgId: the refusal stands
                    return None
            stored = tx.query_one("SELECT body_sha256, status, response FROM idempotency "
                                  "WHERE client = ? AND key = ?", (client, idem_key))
            if stored is None:
                return None
            answer = payments.answer_of(tx, stored[2])
            if intake.same_transfer(stored[0], body_hash, body):
                return stored[1], answer
            if refusal is not None:
                raise key_reuse.refused_transfer(tx, client, idem_key, body, answer)
            return None
        return await self.store.run(work)

    async def transfer_problems(self, body: Any, as_written: bool = False) -> list[Problem]:
        """Every problem a transfer would be refused for, found without taking it: its
        fields and route (as `_prepare` checks them), its payer's account and funds
        (`as_written`: a ready message's, gateway.intake.payer_problems)."""
        try:
            self._prepare("check", "check", body, None)
        except PaygateError as exc:
            return [*exc.problems, *await self.funds_problems(body, exc.problems, as_written)]
        return await self.funds_problems(body, [], as_written)

    async def funds_problems(self, body: Any, found: list[Problem],
                             as_written: bool = False) -> list[Problem]:
        """The payer's account and funds as the hold would find them (account_not_found,
        payer_funds_insufficient, ...), for a transfer refused for other problems
        (`found`): its hold tried in a savepoint and undone, nothing kept. Nothing when
        the account is itself among the problems or unreadable; when the amount is, the
        account alone is checked (a hold of one fen, its funds not judged)."""
        return await self.store.run(lambda tx: self._funds_problems_tx(tx, body, found,
                                                                       as_written))

    def payers(self, tx: Any, transfers: list[Any], as_written: bool = False
               ) -> list[tuple[list[Problem], str | None]]:
        """For each transfer (an intake.Transfer or a request body), what its payer's own
        bank refuses (a payer name that is not the account holder's, a payer bank that is
        not the account's branch: intake.payer_problems; `as_written` for ready messages,
        whose name must be the holder's exactly) and the name its account is held under
        (None when it is no customer account of ours); one read for all of them."""
        fields = [(t.get("payer_account"), t.get("payer_name"), t.get("payer_bank"))
                  if isinstance(t, dict) else (t.payer_account, t.payer_name, t.payer_bank)
                  for t in transfers]
        accounts = [f[0] for f in fields if isinstance(f[0], str)]
        holders = self.ledger.holder_names(tx, accounts) if accounts else {}
        out = []
        for account, name, bank in fields:
            holder = holders.get(account) if isinstance(account, str) else None
            out.append((intake.payer_problems(account, name, bank, holder, self.account_bank,
                                              as_written), holder))
        return out

    def internal_payee_problems(self, tx: Any, transfer: intake.Transfer) -> list[Problem]:
        """What an internal transfer is refused for about its payee, whose account our
        own ledger keeps: a name that is not the holder's, a payee bank that is not the
        account's branch (intake.payee_problems)."""
        holder = self.ledger.holder_names(tx, [transfer.payee_account]).get(
            transfer.payee_account)
        return intake.payee_problems(transfer.payee_account, transfer.payee_name,
                                     transfer.payee_bank, holder, self.account_bank)

    def hold_for(self, tx: Any, transfer: intake.Transfer, payment_id: str, work_date: Any,
                 as_written: bool = False, also: list[Problem] | None = None
                 ) -> tuple[int, intake.Transfer]:
        """The payer's funds held for a payment of `transfer`, once its payer passes
        `payers` (`as_written` for a ready message) and nothing in `also` (other problems
        found about it) refuses it: every one of those told with the hold's own refusals.
        The hold's id and the transfer as it goes out: under the account holder's name as
        the books write it, never as typed (a name matches the holder's with spaces,
        width or case aside)."""
        named: dict[str, tuple[str, str]] = {}
        try:
            hold_id = self.ledger.hold(tx, f"{payment_id}:hold", transfer.payer_account,
                                       transfer.amount_fen, work_date, payment_id, named)
        except PaygateError as exc:
            payer, _ = self._payer_held(tx, transfer, as_written, named)
            raise PaygateError([*payer, *(also or ()),
                                *intake.as_request_fields(exc).problems], exc.status) from None
        payer, holder = self._payer_held(tx, transfer, as_written, named)
        payer = [*payer, *(also or ())]
        if payer:
            raise PaygateError(payer, 422)
        if holder is not None and holder != transfer.payer_name:
            transfer = transfer._replace(payer_name=holder)
        return hold_id, transfer

    def _payer_held(self, tx: Any, transfer: intake.Transfer, as_written: bool,
                    named: dict[str, tuple[str, str]]) -> tuple[list[Problem], str | None]:
        """`payers` of one transfer whose hold was tried, the holder's name taken from
        what the hold's own statement gave back (`named`: the account's name and role)
        when it did; read when it gave nothing back (that statement refused the amount)."""
        found = named.get(transfer.payer_account)
        if found is None:
            [(payer, holder)] = self.payers(tx, [transfer], as_written)
            return payer, holder
        holder = found[0] if found[1] == "customer" else None
        return intake.payer_problems(transfer.payer_account, transfer.payer_name,
                                     transfer.payer_bank, holder, self.account_bank,
                                     as_written), holder

    def payer_problems(self, tx: Any, transfers: list[Any], as_written: bool = False
                       ) -> list[list[Problem]]:
        """`payers` without the holders' names."""
        return [problems for problems, _ in self.payers(tx, transfers, as_written)]

    def _funds_problems_tx(self, tx: Any, body: Any, found: list[Problem],
                           as_written: bool = False) -> list[Problem]:
        """`funds_problems` inside a transaction (a batch's refused items share one), with
        what `payer_problems` finds that `found` does not name yet."""
        if not isinstance(body, dict) or any(p.path == "/payer_account" for p in found):
            return []
        account, text = body.get("payer_account"), body.get("amount")
        if not isinstance(account, str):
            return []
        told = {p.path for p in found}
        payer = [p for p in self.payer_problems(tx, [body], as_written)[0]
                 if p.path not in told]
        return payer + self._hold_problems_tx(tx, account, text, found)

    def _hold_problems_tx(self, tx: Any, account: str, text: Any, found: list[Problem]
                          ) -> list[Problem]:
        """The problems a hold of the amount `text` on `account` would be refused for."""
        amount = parse_yuan(text, "/amount") if isinstance(text, str) else None
        amount_known = isinstance(amount, int) and amount > 0 \
            and not any(p.path == "/amount" for p in found)
        held = amount if amount_known else 1
        try:
            with tx.savepoint():
                self.ledger.hold(tx, "check:hold", account, held, self.work_date, "check")
                raise _TriedOnly
        except _TriedOnly:
            return []
        except PaygateError as exc:
            problems = intake.as_request_fields(exc).problems
        return problems if amount_known else [p for p in problems if p.path != "/amount"]

    async def _with_funds_problems(self, requests: list[tuple[str | None, Any]],
                                   results: list[Any], refused: list[int]) -> None:
        """The batch items `refused` for their fields or route (422) also told their
        payer's account and funds, as `submit_transfer` tells a single transfer's; one
        transaction for all of them."""
        refused = [i for i in refused
                   if isinstance(results[i], PaygateError) and results[i].status == 422]
        if not refused:
            return

        def work(tx: Any) -> list[list[Problem]]:
            return [self._funds_problems_tx(tx, requests[i][1], results[i].problems)
                    for i in refused]
        for i, more in zip(refused, await self.store.run(work)):
            if more:
                results[i] = PaygateError([*results[i].problems, *more], 422)

    def _may_send_now(self) -> bool:
        """Whether a payment about to be accepted may skip its priority lane: only while
        the lane sender runs and has room to take more (it reads every entry waiting on
        the lanes while it has room, so none waits that the payment would overtake) and
        a link slot of gateway.direct is free (which this reserves). Never while the link
        is down: the lanes hold deliveries then (gateway.link)."""
        sender = self._hvps_sender
        if sender is None or sender.stopped or sender.in_flight >= sender.batch_max \
                or self.link.state == LINK_DOWN or self.hvps_hold is not None \
                or not self.hvps_open:
            return False
        return self.direct.reserve_link()

    async def hand_over(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Put committed work on its streams. Redis failing here changes nothing for the
        caller: the work is in the database, and the sweeper (gateway.recovery) puts
        every pending row older than SWEEP_AGE_S on its stream once Redis answers."""
        try:
            await self.streams.xadd_many(entries)
        except REDIS_DOWN_ERRORS as exc:
            self._hand_over_outage.failed(exc)
            self._depth_at = -1.0  # the next request asks Redis, and hears it is away
            return
        if entries:
            self._hand_over_outage.recovered()

    async def submit_transfers(self, client: str, requests: list[tuple[str | None, Any]],
                               hashes: list[str] | None = None
                               ) -> list[tuple[int, dict[str, Any]] | PaygateError]:
        """Accept many transfers in one transaction (POST /v1/transfers/batch): for each
        (idempotency key, body), its (status, view) or the error that refused it alone.
        `hashes` may give each body's intake.transfer_sha256, made already ("" for one
        not made).

        Each transfer is checked, routed, held and recorded as `submit_transfer` does; a
        refusal undoes only that one (gateway.bulk); they commit together (one fsync for
        the batch) and their stream entries go out in one pipeline, a nudge repeated by
        many of them sent once.
        """
        results: list[Any] = [None] * len(requests)
        try:
            await self._check_depth()
            refusal = None
        except REDIS_DOWN_ERRORS as exc:
            refusal = unavailable(exc)
        ready: list[tuple[int, Prepared]] = []
        # A key used again later in the batch gets what its first use got (a refusal
        # too), or 409 if the body differs, however early the first use was refused.
        first_use: dict[str, tuple[int, str]] = {}
        repeats: list[tuple[int, str, str]] = []
        checked: list[int] = []  # refused for their fields or route, before the database
        # The batch arrived at one instant: its transfers are accepted as of that instant
        # (read once, as they commit together).
        now = self.clock.now()
        for i, (key, body) in enumerate(requests):
            body_hash = (hashes and hashes[i] or intake.transfer_sha256(body)) if key else ""
            if key and key in first_use:
                repeats.append((i, key, body_hash))
                continue
            if key:
                first_use[key] = (i, body_hash)
            try:
                ready.append((i, self._prepare(client, key, body, None, body_hash, now)))
            except PaygateError as exc:
                results[i] = exc
                checked.append(i)
        # A key answered before gets its first answer, whatever the route says now (as
        # `submit_transfer`): the payment was taken; a key another request took, the
        # refusal for the key (409) rather than for the fields.
        refused = [(i, SimpleNamespace(client=client, idem_key=key, body=requests[i][1],
                                       body_hash=first_use[key][1]))
                   for i, (key, _) in enumerate(requests)
                   if key and isinstance(results[i], PaygateError)
                   and not any(p.path == "Idempotency-Key" for p in results[i].problems)]
        if refused:
            results_of = await self.store.run(lambda tx: bulk.replays(tx, refused))
            for i, outcome in results_of.items():
                results[i] = outcome
        await self._with_funds_problems(requests, results, checked)

        if ready and refusal is not None:
            for i, outcome in await self.store.run(
                    lambda tx: bulk.answer_stored(tx, ready, refusal)):
                results[i] = outcome
        elif ready:
            done, entries = await self.store.run(lambda tx: bulk.accept_many(self, tx, ready))
            for i, outcome in done:
                results[i] = outcome
            unique: dict[tuple, tuple[str, dict[str, str]]] = {}
            for stream, fields in entries:
                unique.setdefault((stream, tuple(fields.items())), (stream, fields))
            await self.hand_over(list(unique.values()))
        if refusal is not None and not any(isinstance(r, tuple) for r in results):
            raise refusal  # nothing answered: the whole request is refused (503)
        for i, key, body_hash in repeats:
            first, first_hash = first_use[key]
            results[i] = results[first] if body_hash == first_hash else key_reuse.refused(
                key, requests[i][1], key_reuse.of_body(requests[first][1]))
        return results

    def _prepare(self, client: str, idem_key: str | None, body: Any,
                 end_to_end_id: str | None, body_hash: str = "",
                 now: datetime | None = None) -> "Prepared":
        """Everything about a transfer that needs no database: its key, body, route (as of
        `now`, by default the clock's now)."""
        if not idem_key or len(idem_key) > 64 or not idem_key.isascii() \
                or not idem_key.isprintable():
            raise PaygateError(Problem(
                "idempotency_key_required" if not idem_key else "idempotency_key_malformed",
                "Idempotency-Key", idem_key,
                "a header Idempotency-Key of 1 to 64 printable ASCII characters"), 400)
        body_hash = body_hash or intake.transfer_sha256(body)
        transfer = intake.parse_transfer(body, self.own_banks)
        now = now or self.clock.now()
        hvps_open = self.hvps_open
        closed_status = None if hvps_open else self._closed_by_status(now)
        opening = None if hvps_open or closed_status else self._next_hvps_opening(now)
        try:
            decision = self.router.decide(
                RouteRequest(payer_bank=transfer.payer_bank, payee_bank=transfer.payee_bank,
                             amount_fen=transfer.amount_fen,
                             business_type=transfer.business_type,
                             business_kind=transfer.business_kind, urgency=transfer.urgency,
                             when_closed=transfer.when_closed),
                on_date=self.work_date, hvps_open=hvps_open, next_hvps_opening=opening,
                closed_status=closed_status)
        except PaygateError as exc:
            raise intake.defaults_told(intake.as_request_fields(exc), body) from None
        accept = self.channels.get(decision.channel)
        if accept is None:
            raise PaygateError(Problem(
                "channel_not_enabled", "/", decision.channel,
                "a channel this gateway runs: " + ", ".join(sorted(self.channels)),
                f"routed by rule {decision.rule}"))
        return Prepared(client, idem_key, body_hash, transfer, decision, accept,
                        self.work_date, now, end_to_end_id, body=body)

    def _closed_by_status(self, now: datetime) -> str | None:
        """The status in force when HVPS is closed although the timetable has it open at
        `now`: the NPC's notices, not the clock, keep it closed, and when it opens is up
        to the NPC (no next opening can be told). None when the clock closes it. The
        timetable's answer is kept for the last instant asked, as `_next_hvps_opening`
        keeps its own: a batch's transfers share the instant it arrived."""
        known = self._open_by_clock
        if known is None or known[0] != now or known[1] is not self.calendar \
                or known[2] is not self.timetable:
            phase = hvps_phase(now, self.calendar, self.timetable)
            known = self._open_by_clock = (now, self.calendar, self.timetable,
                                           phase.accepts_customer_payments)
        return self.hvps_status if known[3] else None

    def _next_hvps_opening(self, now: datetime) -> datetime:
        """When HVPS next accepts payments after `now`, kept for the last instant asked:
        a batch's transfers share the instant it arrived (submit_transfers), and finding
        the opening walks the calendar day by day (a millisecond or so, for each BEPS
        transfer of a batch taken while HVPS is closed)."""
        asked = (now, self.calendar, self.timetable)
        known = self._next_opening
        if known is not None and known[0] == now and known[1] is self.calendar \
                and known[2] is self.timetable:
            return known[3]
        opening = next_hvps_opening(*asked)
        self._next_opening = (*asked, opening)
        return opening

    def _accept_tx(self, tx: Any, p: "Prepared",
                   hold_of: Callable[[intake.Transfer], str | None] | None = None
                   ) -> tuple[int, dict[str, Any], list[tuple[str, dict[str, str]]],
                              tuple[int, bytes, str] | None]:
        """Inside the store's transaction: the idempotency check, the hold, the payment
        row, the channel's intake and the stored answer; (status, answer, entries, and
        with `p.send_now` the message claimed for sending: outbox id, bytes, lane).
        `hold_of` is the review hook for the transfers of one batch (`intake_holds`, its
        list looked up once for the batch); `intake_hold` when None."""
        if p.message is not None:
            replayed = ready.stored_answer(tx, p.client, p.message, p.body_hash, p.body)
            if replayed is not None:
                return *replayed, [], None
        else:
            stored = tx.query_one("SELECT body_sha256, status, response FROM idempotency "
                                  "WHERE client = ? AND key = ?", (p.client, p.idem_key))
            if stored is not None:
                answer = payments.answer_of(tx, stored[2])
                if not intake.same_transfer(stored[0], p.body_hash, p.body):
                    raise key_reuse.refused_transfer(tx, p.client, p.idem_key, p.body,
                                                     answer)
                return stored[1], answer, [], None
        transfer, work_date = p.transfer, p.work_date
        # Sent from this work only while HVPS is still open: closed since the route was
        # decided, the payment goes on its lane, where it follows the closed window.
        send_now = p.send_now and self.hvps_open
        payment_id, msg_id, e2e = intake.new_ids(tx, work_date, transfer.payer_bank)
        if p.end_to_end_id:
            ready.claim_end_to_end(tx, p.end_to_end_id, payment_id, p.client)
        else:
            # Undone with the work if the payment is refused.
            e2e = ready.claim_own_end_to_end_id(tx, payment_id, e2e)
        e2e = p.end_to_end_id or e2e
        payee = (self.internal_payee_problems(tx, transfer)
                 if p.decision.channel == "internal" else [])
        hold_id, transfer = self.hold_for(tx, transfer, payment_id, work_date,
                                          p.message is not None, payee)
        if p.message is not None:
            # A ready message's remittance lines go on as it writes them (tag lines,
            # gateway.ready_rules), not as a JSON transfer's free text is tagged.
            transfer = transfer._replace(remittance=tuple(p.message.remittance))
        # The review hook asked once, for the transfer as it goes out (under the holder's
        # name); the channel's intake acts on its answer.
        hold = (hold_of or self.intake_hold)(transfer)
        # An HVPS payment sent from this work, with nothing to wait for, is written sent
        # with its message claimed (outbound.claim_new) instead of written accepted and
        # pending, then claimed and moved on.
        at_once = send_now and p.accept == self._accept_hvps \
            and self._hvps_wait(hold, p.decision) is None
        row = intake.record_outgoing(tx, transfer, p.decision, work_date=work_date, now=p.now,
                                     hold_id=str(hold_id), state="accepted",
                                     payment_id=payment_id, msg_id=msg_id,
                                     end_to_end_id=e2e, client=p.client, insert=not at_once)
        # What a ready message says beyond the payment's row goes on into its hvps.111
        # (gateway.ready.CARRIED); a JSON transfer has nothing more to carry.
        row["carried"] = ready.carried(p.message) if p.message is not None else None
        row[intake.PAYER_NAME_TYPED] = p.transfer.payer_name
        sending = None
        claimed = None
        if at_once:
            lane = keys.lane_for_priority(p.decision.priority)
            claimed = outbound.claim_new(tx, row, lane, self.keyring, p.now, self.notifier)
            if claimed is None:  # cannot be built: accepted and pending, as below
                payments.insert(tx, row)
        if claimed is not None:
            outbox_id, envelope, _ = claimed
            sending, entries = (outbox_id, envelope, lane), []
        else:
            row, entries = p.accept(tx, row, transfer, p.decision, p.now, hold)
        # The answer shows the payment as accepted, whether or not it is sent already; a
        # ready message's, with the core system's MsgId and TxId beside those sent.
        response = payments.public_view(row)
        if p.message is not None:
            response = ready.with_core_ids(response, ready.core_ids(p.message))
        # A JSON transfer sent from this work was answered with its view as created: the
        # stored answer names the payment (tens of bytes, as a batch's do) instead of
        # holding the view's kilobyte, and a replay reads the view back from its row.
        answer = payments.answer_as_created(row) if claimed is not None \
            and p.message is None else payments.answer_text(response, p.decision.record_json)
        tx.execute("INSERT INTO idempotency (client, key, body_sha256, status, response, "
                   "created_at) VALUES (?, ?, ?, 201, ?, ?)",
                   (p.client, p.idem_key, p.body_hash, answer, texts(p.now).iso))
        if p.message is not None:
            ready.record(tx, p.client, p.message, row["id"])
        if send_now and not at_once and len(entries) == 1 \
                and entries[0][0] in keys.HVPS_LANES:
            lane, fields = entries[0]
            outbox_id = int(fields["outbox"])
            envelope = outbound.claim_accepted(tx, outbox_id, row, self.keyring, p.now,
                                               self.notifier)
            if envelope is not None:
                sending, entries = (outbox_id, envelope, lane), []
        return 201, response, entries, sending

    def _accept_internal(self, tx: Any, row: dict[str, Any], transfer: intake.Transfer,
                         decision: Any, now: datetime, hold: str | None
                         ) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
        """Payer and payee banks share a clearing account: a book transfer in our own
        ledger (hold → payee), settled at once, never sent to CNAPS; held instead, its
        funds held and nothing credited, when the review hook holds it (`hold`, its
        reason: gateway.internal_hold)."""
        if hold is not None:
            return internal_hold.held(tx, self, row, hold, now), []
        return internal_hold.settle(self, tx, row, now), []

    def _accept_hvps(self, tx: Any, row: dict[str, Any], transfer: intake.Transfer,
                     decision: Any, now: datetime, hold: str | None
                     ) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
        """An accepted HVPS payment goes on its priority lane, or waits for the window
        (when_closed=queue) or for a second person's review (`hold`, the review hook's
        reason)."""
        # A second person's review comes first: a reviewed payment taken while HVPS is
        # closed then waits for the window (the approval sends it to `waiting`).
        outbox_state = "review" if hold is not None else "pending"
        if hold is None and decision.action == "queue":
            hold, outbox_state = "waiting_for_hvps_window", "waiting"
        lane = keys.lane_for_priority(decision.priority)
        outbox_id = intake.add_outbox(tx, row["id"], decision.priority, outbox_state, now)
        if hold is not None:
            row = payments.transition(tx, row, "held", "held", now, self.notifier, reason=hold)
            return row, []
        if self.hvps_hold is not None:  # it stays on its lane (gateway.status_hold)
            tx.execute("UPDATE payments SET reason = ? WHERE id = ?",
                       (status_hold.HELD_REASON, row["id"]))
            row = dict(row, reason=status_hold.HELD_REASON)
        return row, [(lane, {"outbox": str(outbox_id)})]

    def intake_hold(self, transfer: intake.Transfer) -> str | None:
        """Why a new outgoing customer payment must wait for a second person before it
        is sent (the screening, the amount review: the `review` hook), None when it need
        not. Asked once a payment, before anything of it is sent, packed or settled: by
        `_accept_tx` for a transfer alone (its answer handed to the channel's intake),
        through `intake_holds` for the transfers of a batch (HVPS, BEPS and book
        transfers alike), and by the periodic credits and suspense returns of BEPS."""
        return self.review(transfer, self.settings) if self.review is not None else None

    def intake_holds(self) -> Callable[[intake.Transfer], str | None]:
        """`intake_hold` for the transfers of one batch: a hook that can (gateway.ops.
        review) reads its list once for them all."""
        review = self.review
        if review is None:
            return _no_hold
        for_batch = getattr(review, "for_batch", None)
        if for_batch is not None:
            return for_batch(self.settings)  # type: ignore[no-any-return]
        return lambda transfer: review(transfer, self.settings)

    @staticmethod
    def _hvps_wait(hold: str | None, decision: Any) -> str | None:
        """Whether an accepted HVPS payment waits (a second person's review, `hold` the
        review hook's reason; the HVPS window): the reason it is held, None when it goes
        at once (as `_accept_hvps` decides)."""
        if hold is None and decision.action == "queue":
            hold = "waiting_for_hvps_window"
        return hold

    async def _check_depth(self) -> None:
        """429 when the HVPS lanes hold more than queue_depth_max entries. The depth is
        read from Redis at most every DEPTH_CHECK_S, by one request at a time: the others
        go on with the last reading rather than each asking Redis again."""
        now = asyncio.get_running_loop().time()
        if now - self._depth_at >= DEPTH_CHECK_S and not self._depth_reading:
            self._depth_reading = True
            try:
                pipe = self.redis.pipeline(transaction=False)
                for stream in keys.HVPS_LANES:
                    pipe.xlen(stream)
                self._depth = sum(await pipe.execute())
                self._depth_at = now
            finally:
                self._depth_reading = False
        depth = self._depth
        if depth > self.settings.queue_depth_max:
            raise PaygateError(Problem("queues_full", "/", depth,
                                       f"at most {self.settings.queue_depth_max} waiting"),
                               status=429)

    async def get_transfer(self, payment_id: str, client: str | None = None
                           ) -> dict[str, Any]:
        """A payment as the core system sees it. With client credentials configured, a
        payment one client submitted is not shown to another (404, as if absent), but
        for a settled book transfer to an account the other's entry in
        api_balance_accounts covers (gateway.scope.credit_seen), shown as a credit: its
        history is its settlement alone, the payer's side of it (a review's hold and
        decision) staying with the client that submitted it."""
        def work(tx: Any) -> dict[str, Any]:
            payment = payments.get(tx, payment_id)
            if client is not None and not scope.shown(self.settings, client, payment,
                                                      self.own_banks):
                raise payments.not_found(payment_id)
            if client is not None:
                scope.refuse_unseen(tx, self.settings.api_balance_accounts, client,
                                    payment, self.own_banks, f"/v1/transfers/{payment_id}")
            events = payments.history(tx, payment_id)
            if client is not None and not scope.owns(self.settings, client, payment):
                events = [e for e in events if e["state"] == "settled"]
            view = payments.public_view(payment, events)
            # Here, not in public_view: the answer to a POST leaves it out.
            view["remittance_info"] = payments.remittance_as_carried(payment)
            for hook in self.view_hooks:
                hook(tx, view, client)
            return view
        return await self.store.run(work)

    # The link

    async def receive_link(self, raw: bytes) -> dict[str, Any]:
        """A message arrived from the NPC: check, store, acknowledge, process
        (`receive_link_many` with this one envelope); its refusal raised."""
        [outcome] = await self.receive_link_many([raw])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def receive_link_many(self, raws: list[bytes]
                                ) -> list[dict[str, Any] | Exception]:
        """The envelopes of one link POST: each checked, stored, acknowledged and
        processed; for each, in order, what its POST alone would be answered (a refusal:
        the exception).

        Each envelope is decoded and its signature and body checked on this loop,
        ENVELOPES_PER_TURN at a time (a customer's request waiting meanwhile is let in
        every few); a bad one is refused alone. The good ones are then taken in one piece
        of store work: when all are results (TAKEN_TOGETHER), together in one savepoint
        (gateway.store.scope), and should one of them fail, that savepoint undoes them
        all and they are taken again one by one; else one by one at once. One by one,
        each is taken in a savepoint of its own (`_take`), so that the one that fails is
        undone alone. An envelope's receipt, its ccms.990 in the outbox and its
        processing commit together (gateway.inbound), and the answer comes only after
        the commit. The 990s are then sent by this process itself while it has room
        (gateway.direct), else by the link stream."""
        now = self.clock.now()
        outcomes: list[Any] = [None] * len(raws)
        taking: list[tuple[int, Any, bytes, Any, bool]] = []
        refused: list[tuple[int, PaygateError]] = []
        receivers = self.own_banks | {self.settings.bank_code}  # made once a POST
        for i, raw in enumerate(raws):
            if i and i % ENVELOPES_PER_TURN == 0:
                await asyncio.sleep(0)
            try:
                env = env_mod.decode(raw)
                signature = self.keyring.verify(env, receivers)
            except PaygateError as exc:
                refused.append((i, exc))
                continue
            taking.append((i, env, raw, _read_body(env, signature), self.direct.reserve_ack()))
        if refused:  # their alerts go into one transaction together
            alerted = await asyncio.gather(
                *(self._link_refusal_alert(exc) for _, exc in refused), return_exceptions=True)
            for (i, exc), failed in zip(refused, alerted):
                if isinstance(failed, BaseException) and not isinstance(failed, Exception):
                    raise failed
                outcomes[i] = exc if failed is None else failed
        if not taking:
            return outcomes

        def work(tx: Any) -> list[Any]:
            alone = len(taking) == 1  # the work's own savepoint is the envelope's
            if not alone and all(env.header.mesg_type in TAKEN_TOGETHER
                                 for _, env, _, _, _ in taking):
                together = self._take_together(tx, taking, now)
                if together is not None:
                    return together
            received: list[Any] = []
            for _, env, raw, decoded, claim_ack in taking:
                try:
                    received.append(self._take(tx, env, raw, decoded, now, claim_ack,
                                               alone))
                except Exception as exc:
                    if alone or lost_race(exc):
                        # Alone, the work fails with it; a lost race runs the whole work
                        # again, in the store's next transaction.
                        raise
                    if not isinstance(exc, PaygateError):
                        # A bug in one envelope's work fails only that envelope.
                        log.exception("event=link_envelope_failed mesg_id=%s error=%s",
                                      env.header.mesg_id, exc)
                    received.append(exc)
            return received
        try:
            results = await self.store.run(work)
        except Exception as exc:  # nothing was taken: each envelope is refused with it
            results = [exc] * len(taking)
        except BaseException:
            for _, _, _, _, claim_ack in taking:
                if claim_ack:
                    self.direct.release_ack()
            raise
        entries = []
        for (i, _, _, _, claim_ack), received in zip(taking, results):
            if isinstance(received, Exception):
                if claim_ack:
                    self.direct.release_ack()
                outcomes[i] = received
                continue
            outcomes[i] = {"taken": True, "duplicate": received.duplicate}
            for action in received.processed.after_commit if received.processed else ():
                action()
            if received.inbox_id is not None and received.processed is None:
                entries.append((keys.INBOUND, {"inbox": str(received.inbox_id)}))
            if received.ack_envelope is not None:
                self.direct.send_ack(received.ack_outbox_id, received.ack_envelope)
            else:
                if claim_ack:
                    self.direct.release_ack()
                if received.ack_outbox_id is not None:
                    entries.append((keys.OUT_LINK, {"outbox": str(received.ack_outbox_id)}))
        await self.hand_over(entries)
        return outcomes

    async def _link_refusal_alert(self, exc: PaygateError) -> None:
        """An envelope refused at the link raises an alert. One from a sender whose key
        we do not hold is not taken now (503: the sender sends it again), and is told as
        `sender_key_unknown` naming the sender, once per sender per
        KEY_UNKNOWN_ALERT_EVERY_S however many retries come."""
        if exc.code == "signature_key_unknown":
            sender = exc.problems[0].value
            at = time.monotonic()
            last = self._key_unknown_alerted.get(sender)
            if last is not None and at - last < KEY_UNKNOWN_ALERT_EVERY_S:
                return
            if len(self._key_unknown_alerted) >= KEY_UNKNOWN_SENDERS_MAX:
                self._key_unknown_alerted.clear()
            self._key_unknown_alerted[sender] = at
            keys_dir = str(self.settings.keys_path)
            await self.store.run(lambda tx: self.alert(
                tx, "sender_key_unknown", sender=sender, keys_dir=keys_dir))
            return
        errors = exc.to_dict()["errors"][:3]
        await self.store.run(lambda tx: self.alert(
            tx, "inbound_message_rejected_at_link", errors=errors))

    def _take_together(self, tx: Any, taking: list[tuple[int, Any, bytes, Any, bool]],
                       now: datetime) -> list[Any] | None:
        """The envelopes of a link POST received and processed in one savepoint, in
        order: what `_take` makes of each when none fails, for two statements instead of
        two an envelope. None when one failed in any way (a processing that failed
        included, which `_take` keeps apart from its receipt): the savepoint has undone
        them all, for the caller to take them one by one: their rows (sequence numbers as
        `payments.next_seq` tells), gathered rows and stream entries, the lines they
        logged through `store.log_after_commit` (none is written), and the in-memory
        changes they registered with `store.on_undo`. A lost race fails the work, as
        there."""
        try:
            with store.scope(tx):
                return [self._receive_tx(tx, env, raw, decoded, now, claim_ack)
                        for _, env, raw, decoded, claim_ack in taking]
        except Exception as exc:
            if lost_race(exc):
                raise
            log.info("event=link_envelopes_taken_one_by_one envelopes=%s error=%r",
                     len(taking), exc)
            return None

    def _take(self, tx: Any, env: Any, raw: bytes, decoded: Any, now: datetime,
              claim_ack: bool, alone: bool) -> Any:
        """One envelope of a link POST, received and processed in a savepoint of its own
        (the work's own when it is `alone`), so that one that fails is undone alone. Its
        processing shares that savepoint: should it fail, both are undone and the
        envelope is received again alone, in a savepoint of its own, for the inbound
        stream to process (gateway.inbound.ProcessingFailed). A ccms.990's processing
        cannot fail apart from its receipt, nor can a body that could not be read be
        processed, so alone they need no savepoint."""
        if alone and (decoded is None or env.header.mesg_type == ccms990.MESSAGE_TYPE):
            return self._receive_tx(tx, env, raw, decoded, now, claim_ack)
        try:
            with store.scope(tx):
                return self._receive_tx(tx, env, raw, decoded, now, claim_ack)
        except ProcessingFailed as exc:
            failed = exc
        if alone:
            return receive_unprocessed_tx(tx, env, raw, now, self.settings.bank_code,
                                          claim_ack, failed)
        with store.scope(tx):
            return receive_unprocessed_tx(tx, env, raw, now, self.settings.bank_code,
                                          claim_ack, failed)

    def _receive_tx(self, tx: Any, env: Any, raw: bytes, decoded: Any, now: datetime,
                    claim_ack: bool) -> Any:
        """An envelope's receipt and processing (`_take`, inside its savepoint)."""
        if decoded is None:  # the body could not be read here: the stream processes it
            return receive_tx(tx, env, raw, now, self.settings.bank_code, claim_ack)
        return receive_and_process_tx(tx, env, raw, decoded, now, self.settings.bank_code,
                                      self.handler_table(), self.alert, claim_ack,
                                      in_savepoint=True)

    def handler_table(self) -> dict[str, Any]:
        """Message type -> handler, the extensions' included (made once)."""
        if self._handler_table is None:
            self._handler_table = self.handlers.table()
        return self._handler_table

    async def _send_outbox(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        if self.hvps_hold is not None and stream in keys.HVPS_LANES:
            # The NPC's HVPS status is not the gateway's (gateway.status_hold): the row
            # stays pending, unclaimed, and goes back on its lane when the hold ends.
            raise RetryLater(status_hold.HELD)
        outbox_id = int(fields["outbox"])
        now = self.clock.now()
        lane = stream in keys.HVPS_LANES

        def claim(tx: Any) -> bytes | None:
            if lane and not self.hvps_open:
                # HVPS closed (the timetable, the NPC's notice, operators): the row
                # follows the window instead of going to an NPC that would reject it.
                status_hold.follow_closed_window(self, tx, now, outbox_id)
                return None
            return outbound.claim(tx, outbox_id, self.keyring, now, self.notifier,
                                  credit=lane)
        try:
            envelope = await self.store.run(claim)
        except ValueError as exc:
            # The message cannot be built (text lxml refuses, say): retrying cannot help,
            # so the payment is refused and its hold released instead of being stuck.
            error = exc
            await self.store.run(lambda tx: self._refuse_unbuildable(tx, outbox_id, error))
            return
        if envelope is None:
            return
        try:
            await self.post_to_link(outbox_id, bytes(envelope), payment=lane)
        except LinkRefused as exc:
            # The same bytes would be refused again: held for an operator (`outbox_dead`).
            raise DeadNow(str(exc), exc.status) from exc
        except Exception as exc:
            # The claim is given back so that the retry (this entry reclaimed, or the
            # sweeper) can take the row again; the same bytes go out then.
            untaken = outbound.untaken_by(exc)
            kept_back = isinstance(exc, KeptBack)

            def give_back(tx: Any) -> None:
                at = self.clock.now()
                outbound.give_back_sent(tx, outbox_id, at, untaken, self.notifier)
                if kept_back and self.hvps_hold is None and not self.hvps_open:
                    # Kept back at the link by a close: it follows the window now.
                    status_hold.follow_closed_window(self, tx, at, outbox_id)
            await self.store.run(give_back)
            raise
        await self.mark_sent((outbox_id, self.clock.now()))

    async def post_to_link(self, outbox_id: int, envelope: bytes,
                           payment: bool = False) -> None:
        """POST one envelope to the NPC, with others ready at the same time under load
        (gateway.linkpost); RetryLater when the link is down or busy, which marks the
        link down at once, or when the link is down and another attempt is on its way or
        due later (gateway.link); RuntimeError when the NPC refused it. `payment`: an
        HVPS payment's message, kept back (KeptBack) when HVPS sending is held or closed
        by the time it would leave (`hvps_sending_stopped`)."""
        probe = self.link.admit()  # while the link is down, one attempt at a time
        try:
            await self.link_poster.post(outbox_id, envelope, payment)
        finally:
            if probe:
                self.link.attempt_over()

    def resume_held(self) -> None:
        """The link answers again: the deliveries held while it was down go now."""
        self.spawn(recovery.resume(self))

    async def outbox_dead(self, stream: str, entry_id: str, fields: dict[str, str],
                           reason: str, status: int | None) -> dict[str, str]:
        """A message to the NPC is dead-lettered (refused with a 4xx `status`, or failed
        `retries_max` times): its outbox row becomes `dead`, which the sweeper leaves (one
        dead letter per row), and an HVPS credit's payment is `held` with the reason,
        listed by `ops stuck`, until an operator retries the letter or cancels it
        (gateway.ops.actions); a row of another kind is told to its extension's hook
        (`outbox_dead_hooks`, by kind or message type: a BEPS package's items are held
        the same way; a query's reply refused at the link opens the query again). What
        names the row for the letter and its log line."""
        if "outbox" not in fields:
            return {}
        outbox_id = int(fields["outbox"])
        why = (f"{HELD_REFUSED_AT_LINK}: the NPC answered {status}" if status is not None
               else f"{HELD_DEAD_LETTERED}: {reason[:150]}")
        now = self.clock.now()

        # A refusal (4xx) of the attempt that claimed the row: the NPC did not take it.
        refused = int(status is not None)

        def work(tx: Any) -> dict[str, str]:
            row = tx.query_one("UPDATE outbox SET state = 'dead', updated_at = ?, untaken = "
                               "untaken + CASE WHEN state = 'sending' THEN ? ELSE 0 END "
                               "WHERE id = ? AND state IN ('pending', 'sending') "
                               "RETURNING kind, payment_id, mesg_type",
                               (now.isoformat(), refused, outbox_id))
            if row is None:
                row = tx.query_one("SELECT kind, payment_id FROM outbox WHERE id = ?",
                                   (outbox_id,))
            elif row[0] == "hvps_credit":
                payment = payments.get(tx, row[1])
                if payment["state"] in ("accepted", "sent"):
                    payments.transition(tx, payment, "held", "link_dead_lettered", now,
                                        self.notifier, reason=why, outbox=outbox_id,
                                        status=status)
            elif row[0] in self.outbox_dead_hooks or row[2] in self.outbox_dead_hooks:
                # By kind (a BEPS package) or by message type (a query's reply).
                hook = self.outbox_dead_hooks.get(row[0]) or self.outbox_dead_hooks[row[2]]
                return {"outbox": str(outbox_id), **hook(tx, outbox_id, why, status, now)}
            named = {"outbox": str(outbox_id)}
            if row is not None and row[1] is not None:
                named["payment"] = str(row[1])
            return named
        return await self.store.run(work)

    def _refuse_unbuildable(self, tx: Any, outbox_id: int, exc: Exception) -> None:
        row = tx.query_one("SELECT payment_id FROM outbox WHERE id = ?", (outbox_id,))
        tx.execute("UPDATE outbox SET state = 'failed', updated_at = ? WHERE id = ?",
                   (self.clock.now().isoformat(), outbox_id))
        if row is None or row[0] is None:
            return
        payment = payments.get(tx, row[0])
        if payment["state"] in ("accepted", "held"):
            now, reason = self.clock.now(), str(exc)[:200]
            # A return of money in suspense holds nothing: its item stays open.
            if payment["hold_id"]:
                self.ledger.release(tx, f"{payment['id']}:unbuildable:release",
                                    int(payment["hold_id"]), self.work_date.isoformat())
            payment = payments.transition(tx, payment, "rejected", "message_build_failed",
                                          now, self.notifier, reason=reason)
            self.ended_unsettled(tx, payment, "message_build_failed", reason, now)
        self.alert(tx, "message_build_failed", payment=payment["id"], error=str(exc)[:200])

    async def _process_inbound(self, stream: str, entry_id: str,
                               fields: dict[str, str]) -> None:
        inbox_id = int(fields["inbox"])
        table = self.handler_table()
        result = await self.store.run(lambda tx: process_tx(
            tx, inbox_id, self.clock.now(), table, self.alert))
        for action in result.after_commit:
            action()

    async def _inbound_dead(self, stream: str, entry_id: str, fields: dict[str, str],
                            reason: str, status: int | None) -> None:
        """An inbound message whose processing failed every delivery is marked `failed`
        (its error kept in the row) and raised to operators once, as it goes to the
        dead-letter stream: the sweeper and start-up recovery put back only `received`
        rows, so it is not tried again until an operator retries the dead letter."""
        inbox_id = int(fields["inbox"])
        now = self.clock.now()

        def work(tx: Any) -> None:
            row = tx.query_one("SELECT sender, mesg_type, mesg_id FROM inbox WHERE id = ? "
                               "AND state = 'received'", (inbox_id,))
            if row is None:  # processed meanwhile, or marked failed by an earlier entry
                return
            tx.execute("UPDATE inbox SET state = 'failed', outcome = ? WHERE id = ? AND "
                       "state = 'received'", (jsontext.dumps({"error": reason[:500]}),
                                              inbox_id))
            self.alert(tx, "inbound_processing_failed", inbox=inbox_id, sender=row[0],
                       mesg_type=row[1], mesg_id=row[2], error=reason[:200],
                       entry=entry_id, at=now.isoformat())
        await self.store.run(work)

    async def _send_webhook(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        await self.webhooks.push(int(fields["outbox"]))

    def spawn(self, coro: Any) -> None:
        """Start work that outlives its caller; it is awaited at stop, and once it has
        ended it is let go (a long-running gateway spawns one for each probe answer)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._spawned_ended)

    def _spawned_ended(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=task_failed task=%s error=%r", task.get_name(),
                      task.exception(), exc_info=task.exception())

    async def request_hvps_details(self, check_date: str, selectors: list[Any]) -> None:
        """hvps.712: the NPC's items behind totals that differ (answered by hvps.713)."""
        await self._ask_npc(hvps712.MESSAGE_TYPE, lambda group: hvps712.build(
            hvps712.DetailRequest(group, check_date, tuple(selectors), len(selectors))))

    async def _ask_npc(self, mesg_type: str, build: Any) -> None:
        """Queue one HVPS request to the NPC: `build(group header)` makes its body."""
        now = self.clock.now()

        def work(tx: Any) -> int:
            header = outbound.new_header(tx, now, self.settings.bank_code, outbound.NPC,
                                         mesg_type, "HVPS")
            day = now.strftime("%Y%m%d")
            msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
            body = build(GroupHeader(msg_id, now.strftime("%Y-%m-%dT%H:%M:%S"),
                                     self.settings.bank_code, self.settings.bank_code,
                                     outbound.NPC, outbound.NPC, "HVPS"))
            return outbound.queue_message(tx, header, body, self.keyring, now)
        outbox_id = await self.store.run(work)
        await self.streams.xadd(keys.OUT_LINK, {"outbox": str(outbox_id)})

    # Reconciliation

    async def reconcile_hvps(self, check_date: date, timeout_s: float = 30.0) -> dict[str, Any]:
        """Send hvps.710 for a date and wait for the NPC's 711 to be compared."""
        key = check_date.isoformat()
        pending = self._recon_waiters.get(key)
        if pending is not None and not pending.done():
            # A 710 for this date is already out: share its answer, send no second one.
            return await asyncio.wait_for(asyncio.shield(pending), timeout_s)
        waiter = asyncio.get_running_loop().create_future()
        self._recon_waiters[key] = waiter
        now = self.clock.now()
        await self.store.run(lambda tx: recon.asked(tx, "HVPS", key, now))
        self._recon_overdue_at = None  # looked at again at the next tick
        await self._ask_npc(hvps710.MESSAGE_TYPE, lambda group: hvps710.build(
            hvps710.ReconRequest(group, key)))
        return await asyncio.wait_for(waiter, timeout_s)


def _no_hold(transfer: intake.Transfer) -> None:
    """`Gateway.intake_holds` with no review hook: nothing waits."""
    return None


def _read_body(env: Any, signature: str) -> codec.Decoded | PaygateError | None:
    """An inbound message's body read against its schema and rules, before its piece of
    work: the reading, the error that refuses it, or None when reading failed in a way
    no refusal covers (the inbound stream's worker then retries and dead-letters it)."""
    try:
        return codec.decode_envelope(env, signature)
    except PaygateError as exc:
        return exc
    except Exception as exc:
        log.warning("event=inbound_body_unread mesg_type=%s mesg_id=%s error=%r",
                    env.header.mesg_type, env.header.mesg_id, exc)
        return None
