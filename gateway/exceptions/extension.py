"""The exceptions extension as the gateway sees it: handlers, routes, the sweep, summary.

Message handlers:

- ccms.900: a result about one of our returns (A105) is acted on here, because its
  settlement posts differently (outcomes.py); a refusal of one of our ccms.307 or
  ccms.316 is recorded on its request; every other result goes to the handler installed
  before this extension (the core one: settle, queue, release).
- hvps.111: an incoming return (A105) is credited by the handler installed before this
  extension and then matched to our payment (returns.py); other credits go straight on.
- ccms.308 (cancel answers, cancels.py) and ccms.317 (status answers, status.py).

A payment of ours the core ends unsettled itself (its message discarded by the NPC or
not buildable, an operator's cancel) is told here too (`payment_ended`): one of our
returns then ends as the NPC's refusal of it does (outcomes.return_failed).

The sweep runs every `sweep_interval_s` of real time (or at once when nudged) and reads
the gateway's clock, so a test with a fast clock or a short `result_timeout_s` and a
short interval sees it act at once. Each pass moves overdue payments to `unknown` and
asks about them, repeats unanswered queries, asks about payments queued at the NPC too
long (a bounded number per pass, status.py), and starts the automatic returns that are
due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway import payments
from gateway.exceptions import (
    cancels,
    debit_suspense,
    ops,
    outcomes,
    returns,
    routes,
    schema,
    status,
    suspense,
)
from gateway.exceptions.wire import Entry
from gateway.handlers import handler_before
from gateway.inbound import Processed
from gateway.messages import ccms307, ccms316, ccms900, codec, hvps111, hvps112
from gateway.waiting import wait_set

log = logging.getLogger("paygate.exceptions")

# Between two passes of the sweep; against a result timeout of minutes and returns after
# days, half a minute costs nothing in promptness and keeps the database quiet.
SWEEP_INTERVAL_S = 30.0
OUR_REQUEST_TYPES = (ccms307.MESSAGE_TYPE, ccms316.MESSAGE_TYPE)
Handler = Callable[[Any, codec.Decoded, Any], Processed]


class Exceptions:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.return_after_working_days = suspense.check_days(
            getattr(gw.settings, "suspense_return_working_days", suspense.DEFAULT_DAYS))
        self.sweep_interval_s = float(getattr(gw.settings, "exceptions_sweep_interval_s",
                                              SWEEP_INTERVAL_S))
        self.console_actions = ops.register()
        debit_suspense.register_hooks()
        self._sweeper: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._pushes: set[asyncio.Task] = set()
        self._before: dict[str, Handler] = {}  # handlers this extension passes messages on to

    # Extension hooks

    def handlers(self) -> dict[str, Handler]:
        return {ccms900.MESSAGE_TYPE: self.on_result, hvps111.MESSAGE_TYPE: self.on_credit_in,
                hvps112.MESSAGE_TYPE: self.on_credit_in,
                ccms307.RESPONSE_TYPE: self.on_cancel_response,
                ccms316.RESPONSE_TYPE: self.on_status_response}

    def add_routes(self, app: web.Application) -> None:
        routes.add_routes(app, self)

    async def start(self) -> None:
        await self.gw.store.run(schema.create_tables)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="exceptions_sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await asyncio.gather(*self._pushes, return_exceptions=True)

    def summary(self, tx: Any) -> dict[str, Any]:
        def count(sql: str) -> int:
            return tx.query_one(sql, ())[0]
        returns_out = "SELECT COUNT(*) FROM exc_returns WHERE direction = 'out'"
        requests = "SELECT COUNT(*) FROM exc_requests WHERE kind = "
        return {"exceptions": {
            "returns_sent": count(returns_out),
            "returns_settled": count(returns_out + " AND state = 'settled'"),
            "returns_received": count("SELECT COUNT(*) FROM exc_returns "
                                      "WHERE direction = 'in'"),
            "cancels_requested": count(requests + "'cancel'"),
            "cancels_granted": count(requests + "'cancel' AND state = 'granted'"),
            "cancels_refused": count(requests + "'cancel' AND state = 'refused'"),
            "status_queries": count(requests + "'status'"),
            "unknown": count("SELECT COUNT(*) FROM payments WHERE state = 'unknown'"),
            "suspense_kept": count("SELECT COUNT(*) FROM exc_suspense_keep"),
        }}

    # Inbound messages

    def _previous(self, mesg_type: str) -> Handler:
        """The handler of `mesg_type` as it was before this extension was installed."""
        return handler_before(self.gw, self, mesg_type, self._own, self._before)

    def _own(self) -> dict[str, Handler]:
        """The gateway's own handlers of the types this extension handles first."""
        return {ccms900.MESSAGE_TYPE: self.gw.handlers.on_result,
                hvps111.MESSAGE_TYPE: self.gw.handlers.on_credit_in,
                hvps112.MESSAGE_TYPE: self.gw.handlers.on_fi_credit_in}

    def on_result(self, tx: Any, d: codec.Decoded, now: Any) -> Processed:
        conf: ccms900.CommonConf = d.obj
        if conf.original.mt in OUR_REQUEST_TYPES:
            req = schema.request_by_msg_id(tx, conf.original.msg_id)
            if req is not None:
                return self._request_refused(tx, req, conf, now)
        payment = payments.find_out_by_msg_id(tx, conf.original.msg_id)
        if payment is None or outcomes.outgoing_return(tx, payment) is None:
            previous = self._previous(ccms900.MESSAGE_TYPE)
            if previous == self.gw.handlers.on_result:  # it need not read it again
                return previous(tx, d, now, found=(payment,))
            return previous(tx, d, now)
        done = outcomes.apply(self.gw, tx, payment, conf.status, conf.processed_on, now,
                              "hvps", conf.reject_info or conf.code)
        if done == "not_understood":
            self.gw.alert(tx, "result_status_not_handled", payment=payment["id"],
                          status=conf.status)
        return Processed({"payment": payment["id"], "status": conf.status, "done": done})

    def _request_refused(self, tx: Any, req: dict[str, Any], conf: ccms900.CommonConf,
                         now: Any) -> Processed:
        """The NPC refused our ccms.307 or ccms.316 itself (a ccms.900 about it)."""
        answer = {"status": conf.status, "code": conf.code, "info": conf.reject_info}
        schema.answer_request(tx, req["id"], "failed", answer, now)
        payment = payments.get(tx, req["payment_id"])
        payments.transition(tx, payment, payment["state"], f"{req['kind']}_request_failed",
                            now, self.gw.notifier, request=req["id"], code=conf.code)
        cancels.request_failed(self.gw, tx, req, now)
        self.gw.alert(tx, f"{req['kind']}_request_refused_by_npc", payment=payment["id"],
                      request=req["id"], npc_code=conf.code, reason=conf.reject_info)
        return Processed({"request": req["id"], "failed": conf.status})

    def payment_ended(self, tx: Any, payment: dict[str, Any], status: str,
                      reason: str | None, now: Any) -> None:
        """The core ended an outgoing payment unsettled (Gateway.ended_unsettled): one of
        our returns ends as the NPC's refusal of it does (outcomes.return_ended)."""
        outcomes.return_ended(self.gw, tx, payment, status, reason, now)

    def on_credit_in(self, tx: Any, d: codec.Decoded, now: Any) -> Processed:
        """An incoming hvps.111 or hvps.112: credited by the handler before this one; a
        return (A105) also marks the payment of ours it names `returned`."""
        credit = self._previous(d.mtype.code)
        if d.obj.business_type != outcomes.RETURN_TYPE:
            return credit(tx, d, now)
        return returns.receive(self.gw, tx, d, now, credit)

    def on_cancel_response(self, tx: Any, d: codec.Decoded, now: Any) -> Processed:
        return cancels.on_response(self.gw, tx, d, now, self.push)

    def on_status_response(self, tx: Any, d: codec.Decoded, now: Any) -> Processed:
        return status.on_response(self.gw, tx, d, now)

    # Requests from the core system and operators

    async def request_return(self, payment_id: str, reason: Any, by: str,
                             client: str | None = None) -> dict[str, Any]:
        reason = returns.check_reason(reason)
        now = self.gw.clock.now()

        def work(tx: Any) -> tuple[dict[str, Any], list[Entry]]:
            row, entries = returns.request_tx(self.gw, tx, payment_id, reason, by, now,
                                              client, core=True)
            return {"return": payments.public_view(payments.get(tx, row["id"])),
                    "original": payments.public_view(payments.get(tx, payment_id))}, entries
        return await self._run(work)

    async def request_cancel(self, payment_id: str, reason: Any, by: str) -> dict[str, Any]:
        reason = cancels.check_reason(reason)
        now = self.gw.clock.now()
        return await self._run(lambda tx: cancels.request_tx(self.gw, tx, payment_id, reason,
                                                             by, now))

    async def request_status(self, payment_id: str, by: str) -> dict[str, Any]:
        now = self.gw.clock.now()
        return await self._run(lambda tx: status.request_tx(self.gw, tx, payment_id, by, now))

    async def keep_suspense(self, payment_id: str, by: str, note: str) -> dict[str, Any]:
        now = self.gw.clock.now()
        return await self.gw.store.run(lambda tx: suspense.keep_tx(self.gw, tx, payment_id,
                                                                   by, note, now))

    async def release_suspense(self, payment_id: str, by: str) -> dict[str, Any]:
        now = self.gw.clock.now()
        return await self.gw.store.run(lambda tx: suspense.unkeep_tx(self.gw, tx, payment_id,
                                                                     by, now))

    async def _run(self, work: Callable[[Any], tuple[dict[str, Any], list[Entry]]]
                   ) -> dict[str, Any]:
        result, entries = await self.gw.store.run(work)
        await self.xadd(entries)
        return result

    # Stream work after a commit

    async def xadd(self, entries: list[Entry]) -> None:
        for stream, fields in entries:
            await self.gw.redis.xadd(stream, fields)

    def push(self, entries: list[Entry]) -> None:
        """Put entries on their streams from synchronous code (after a handler's commit).

        Should Redis fail, the outbox rows stay `pending` and the next start-up puts
        them back on their streams (gateway recovery), so the failure is logged only.
        """
        task = asyncio.get_running_loop().create_task(self.xadd(entries))
        self._pushes.add(task)
        task.add_done_callback(self._pushed)

    def _pushed(self, task: asyncio.Task) -> None:
        self._pushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=stream_push_failed error=%r", task.exception())

    # The sweep

    async def sweep_once(self) -> int:
        """One pass of the sweep; how many messages it queued."""
        now = self.gw.clock.now()
        timeout_s = self.gw.settings.result_timeout_s
        days = self.return_after_working_days

        def work(tx: Any) -> list[Entry]:
            entries = status.sweep_tx(self.gw, tx, now, timeout_s)
            return entries + suspense.sweep_tx(self.gw, tx, now, days)
        entries = await self.gw.store.run(work)
        await self.xadd(entries)
        return len(entries)

    def nudge(self) -> None:
        """Run the next pass now rather than at the end of the interval."""
        self._wake.set()

    async def _pause(self) -> None:
        # The interval's end is the normal way out of the wait, not an error.
        await wait_set(self._wake, self.sweep_interval_s)
        self._wake.clear()

    async def _sweep_forever(self) -> None:
        while True:
            await self._pause()
            if not self.gw.leading:  # one sweep for all gateway processes
                continue
            try:
                await self.sweep_once()
            except Exception as exc:  # a failed pass is logged; the next one tries again
                log.exception("event=exceptions_sweep_failed error=%r", exc)
