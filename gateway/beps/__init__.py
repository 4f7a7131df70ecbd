"""BEPS (小额批量支付系统) for the gateway: intake 7x24, packing, results, netting,
settlement, incoming credits, debits both ways, reconciliation (docs/beps.md).

`install(gw)` registers the BEPS channel and returns the extension, which offers the
gateway its message handlers, API routes, stream workers, start and stop, the "beps"
section of the summary, the BEPS part of the day end and a periodic check (`tick`),
both reconciling the netting dates complete since the last one reconciled
(netting_dates.py), and their state for `paygate ops status` (`ops_status`), with
our packages the NPC has not netted in time (not_netted.py).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway import intake, key_reuse, keys, payments
from gateway.beps import (api, build, debit_deadline, debit_review, debits_in, debits_out,
                          incoming, items, mandates, netting_dates, not_netted, packer,
                          periodic, recon, requests, results, review_hold, schema,
                          settlement_watch, stops)
from gateway.beps.packer import Packer
from gateway.beps.settings import BepsSettings
from gateway.errors import PaygateError, Problem, ValidationFailed
from gateway.handlers import handler_before
from gateway.inbound import Processed
from gateway.messages import ccms911, codec

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps")

# Sealed packages waiting to be sent; the items waiting to be packed use keys.BEPS_TX.
PACKAGES_STREAM = keys.BEPS_PACKAGES
RESULT_TYPE = "ccms.900.001.02"
# Real seconds a day end waits for the beps.721 of the netting dates it asked for.
RECON_WAIT_S = 30.0
# Real seconds the periodic check rests after a pass that failed.
RECON_CHECK_BACKOFF_S = 60.0
# The console's action that asks for a netting date again (gateway.ops).
CONSOLE_ACTION = "beps_reconcile"
CONSOLE_LABEL = {"en": "Reconcile a BEPS netting date", "zh": "小额轧差日对账"}


def install(gw: "Gateway") -> "BepsExtension":
    ext = BepsExtension(gw)
    gw.channels["beps"] = CreditIntake(ext)
    gw.cluster.listeners["beps_recon"] = lambda event: ext._recon_done(event["outcome"])
    gw.view_hooks.append(ext.show_on_transfer)
    # A package the NPC refused is held as an HVPS credit is (docs/operations.md).
    gw.outbox_dead_hooks[packer.PACKAGE_KIND] = functools.partial(packer.dead, gw)
    gw.outbox_revive_hooks[packer.PACKAGE_KIND] = functools.partial(packer.revive, gw)
    gw.outbox_letter_names[packer.PACKAGE_KIND] = packer.letter_names
    _register_console_action()
    stops.register()  # operators stop packages and items the NPC never took
    review_hold.register()  # supervisors pass or fail credits the review hook holds
    debit_deadline.register()  # operators give up our debits past their receipt deadline
    return ext


def _register_console_action() -> None:
    """Operators ask for a netting date again through the console (no second person: it
    only asks the NPC); nothing to add when the product has no console."""
    if importlib.util.find_spec("gateway.ops.control") is None:
        return
    from gateway.ops import actions, control

    def execute(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        detail = netting_dates.ask_again(tx, c.gw, target, c.now)

        async def push() -> None:
            await c.gw.redis.xadd(keys.OUT_LINK, {"outbox": str(detail["outbox_id"])})
        return actions.Outcome(detail, [push])

    control.RULES.setdefault(CONSOLE_ACTION, control.Rule("netting_date", needs_approval=False))
    control.LABELS.setdefault(CONSOLE_ACTION, CONSOLE_LABEL)
    actions.EXECUTORS.setdefault(CONSOLE_ACTION, execute)
    actions.PRECONDITIONS.setdefault(
        CONSOLE_ACTION, lambda tx, target, params: netting_dates.check_complete(tx, target))


def extension_of(gw: "Gateway") -> "BepsExtension":
    for ext in gw.extensions:
        if isinstance(ext, BepsExtension):
            return ext
    raise PaygateError(Problem("channel_not_enabled", "/", "beps", "gateway.beps installed"))


def _check_names(row: dict[str, Any]) -> None:
    """The names the credit goes out under fit a package (build.name_problems), told
    at the name the request typed (`intake.PAYER_NAME_TYPED`), as a periodic credit's."""
    if len(row["payer_name"]) <= build.NAME_LEN_MAX \
            and len(row["payee_name"]) <= build.NAME_LEN_MAX:
        return  # nearly always: nothing to collect
    typed = row.get(intake.PAYER_NAME_TYPED)
    raise ValidationFailed(build.name_problems(
        row, None if typed is None else {"payer_name": typed}))


class CreditIntake:
    """The BEPS channel's intake, one transfer at a time (a call) or a batch at once
    (gateway.bulk: `check` each, then `insert_many` for all those the ledger held)."""

    def __init__(self, ext: Any) -> None:
        self.ext = ext
        self.bulk = self

    def __call__(self, tx: Any, row: dict[str, Any], transfer: intake.Transfer,
                 decision: Any, now: datetime, hold: str | None
                 ) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
        return self.ext.accept(tx, row, transfer, decision, now, hold)

    def check(self, row: dict[str, Any]) -> None:
        _check_names(row)

    def insert_many(self, tx: Any, rows: list[dict[str, Any]], holds: dict[str, str],
                    now: datetime) -> list[tuple[str, dict[str, str]]]:
        """The items of `rows`, waiting to be packed; those `holds` names (payment id:
        the reason the screening or the amount review gave) set aside until a supervisor
        passes them, their payments `held`."""
        items.add_many(tx, [(row["id"], items.CREDIT_OUT, row["receiver_direct"],
                             row["msg_type"], row["amount_fen"], row["created_at"])
                            for row in rows])
        held = [row for row in rows if row["id"] in holds]
        if held:
            review_hold.set_aside(tx, self.ext.gw, held, holds, now)
        if len(held) == len(rows):
            return []
        return [(keys.BEPS_TX, {"items": str(len(rows) - len(held))})]


class BepsExtension:
    def __init__(self, gw: "Gateway") -> None:
        self.gw = gw
        self.settings = BepsSettings.from_settings(gw.settings)
        self.packer = Packer(gw, self.settings, PACKAGES_STREAM)
        self._tasks: list[asyncio.Task] = []
        self._recon_waiters: dict[str, asyncio.Future] = {}
        self.details: dict[str, dict[str, Any]] = {}  # beps.723 comparisons by date
        self._recon_next_check: datetime | None = None  # the periodic check's next pass
        self._before: dict[str, Any] = {}  # handlers this extension passes messages on to

    def configure(self, **changes: Any) -> None:
        """Change settings while running (tests and the demo shorten the package age)."""
        self.settings = replace(self.settings, **changes)
        self.packer.settings = self.settings

    def show_on_transfer(self, tx: Any, view: dict[str, Any],
                         client: str | None = None) -> None:
        """GET /v1/transfers/{id} of a BEPS transaction: its package, round, settlement."""
        if view["channel"] == "beps":
            view["beps"] = items.view_of(tx, view["id"])
            if view["beps"] is not None and view["beps"]["kind"] == items.DEBIT_OUT:
                view["beps"]["receipt_due_at"] = debit_deadline.receipt_due(tx, view["id"])
                view["beps"]["receipt"] = debits_out.last_receipt_line(tx, view["id"])
            if view["direction"] == "out" and "remittance_info" in view:
                # One remark (AddtlInf): the lines untagged, joined, as the package has it.
                remark = build.remark_of(view["remittance_info"])
                view["remittance_info"] = [remark] if remark else []

    # Intake

    def accept(self, tx: Any, row: dict[str, Any], transfer: intake.Transfer, decision: Any,
               now: datetime, hold: str | None
               ) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
        """An accepted, held BEPS credit waits to be packed (the channel intake); one the
        screening or the amount review holds (`hold`, the reason Gateway.intake_hold gave)
        is set aside, out of packing, until a supervisor passes it."""
        _check_names(row)
        carried = row.get("carried") or {}
        items.add(tx, row["id"], items.CREDIT_OUT, decision.receiver_direct, row["msg_type"],
                  row["amount_fen"], now, addresses=(carried.get("debtor_address"),
                                                     carried.get("creditor_address")),
                  package_id=None if hold is None else items.HELD_OUT)
        if hold is not None:
            return review_hold.held(tx, self.gw, row, hold, now), []
        return row, [(keys.BEPS_TX, {"item": row["id"]})]

    async def submit_debit(self, client: str, idem_key: str | None,
                           body: Any) -> tuple[int, dict[str, Any]]:
        """POST /v1/debits: record a collection (beps.127), idempotent by key."""
        gw = self.gw
        key = requests.require_key(idem_key)
        try:
            debit = debits_out.parse_debit(body, gw.own_banks)
            receiver = requests.receiving_direct(gw, debit.debtor_bank, "/debtor_bank",
                                                 debits_out.DEBIT_BUSINESS_TYPE,
                                                 debit.amount_fen, body.get("amount"))
        except PaygateError as exc:
            return await requests.refused(gw, client, key, body, debits_out.KIND, exc)
        now = gw.clock.now()
        return await self._once(client, key, body, debits_out.KIND, now,
                                lambda tx: payments.public_view(
                                    debits_out.record(tx, gw, debit, receiver, now, client)))

    async def submit_periodic(self, client: str, idem_key: str | None,
                              body: Any) -> tuple[int, dict[str, Any]]:
        """POST /v1/periodic-credits: a periodic credit (beps.125), idempotent by key."""
        gw = self.gw
        key = requests.require_key(idem_key)
        try:
            transfer, agreement = periodic.parse(body, gw.own_banks)
            receiver = requests.receiving_direct(gw, transfer.payee_bank, "/payee_bank",
                                                 periodic.PERIODIC_TYPE, transfer.amount_fen,
                                                 body.get("amount"))
        except PaygateError as exc:
            return await requests.refused(gw, client, key, body, periodic.KIND, exc)
        now = gw.clock.now()
        return await self._once(client, key, body, periodic.KIND, now,
                                lambda tx: periodic.record(tx, gw, transfer, agreement,
                                                           receiver, now, client))

    async def answered_before(self, kind: key_reuse.Kind, client: str, key: str,
                              body: Any) -> tuple[int, dict[str, Any]] | None:
        """The answer stored under `key` for this same `kind` of request, or None."""
        return await self.gw.store.run(lambda tx: requests.stored_answer(tx, client, key,
                                                                         body, kind))

    async def _once(self, client: str, key: str, body: Any, kind: key_reuse.Kind,
                    now: datetime, make: Any) -> tuple[int, dict[str, Any]]:
        """`make`'s answer stored under the key, or the answer stored before for the same
        request (compared by what the body asks for, as `kind` reads it)."""
        status, view, created = await self.gw.store.run(lambda tx: requests.submit_once(
            tx, client, key, body, kind, now, make))
        if created:
            await self.gw.redis.xadd(keys.BEPS_TX, {"item": view["id"]})
        return status, view

    async def add_mandate(self, body: Any) -> dict[str, Any]:
        """A mandate {"account", "agreement"} the gateway registers itself (the demo's);
        the core system's go through POST /v1/debit-mandates (mandates.py)."""
        return (await mandates.change(self.gw, "mandate", body))[1]

    async def stop_debit(self, body: Any) -> dict[str, Any]:
        """A stop-payment {"account", "agreement", "tx_id"?, "reason"} the gateway
        records itself; the core system's go through POST /v1/debit-stops."""
        return (await mandates.change(self.gw, "stop", body))[1]

    # What the gateway asks of an extension

    def handlers(self) -> dict[str, Any]:
        gw = self.gw

        def bind(fn: Any) -> Any:
            return lambda tx, d, now: fn(tx, gw, d, now)
        table = {t: bind(incoming.on_credit_package) for t in build.CREDIT_TYPES}
        table.update({
            RESULT_TYPE: self._on_result,
            ccms911.MESSAGE_TYPE: self._on_discarded,
            build.DEBIT_TYPE: bind(debits_in.on_debit_package),
            "beps.128.001.01": bind(debits_out.on_receipt),
            "saps.606.001.01": bind(incoming.on_booking),
            "beps.721.001.01": self._on_recon_result,
            "beps.723.001.01": self._on_recon_details,
        })
        return table

    def _on_result(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        if d.obj.original.mt in results.ANSWERED_TYPES:
            return results.on_result(tx, self.gw, d, now)
        return self._previous(RESULT_TYPE)(tx, d, now)

    def _on_discarded(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        """A discard notice: told to operators and, for a payment, handled by the handler
        before this one; for one of our packages, the package rejected as well."""
        told = self._previous(ccms911.MESSAGE_TYPE)(tx, d, now)
        outcome = results.on_discarded(tx, self.gw, d.obj, now)
        return told if outcome is None else Processed(outcome, told.after_commit)

    def _previous(self, mesg_type: str) -> Any:
        """The handler of `mesg_type` registered before this extension's."""
        return handler_before(self.gw, self, mesg_type, self._own, self._before)

    def _own(self) -> dict[str, Any]:
        """The gateway's own handlers of the types this extension handles first."""
        return {RESULT_TYPE: self.gw.handlers.on_result,
                ccms911.MESSAGE_TYPE: self.gw.handlers.on_discarded}

    def add_routes(self, app: Any) -> None:
        api.add_routes(app)

    def workers(self) -> list[tuple[str, tuple[str, ...], Any]]:
        return [("beps_packer", (keys.BEPS_TX,), self.packer.nudge),
                ("beps_sender", (PACKAGES_STREAM,), self.packer.send)]

    async def start(self) -> None:
        await self.gw.store.run(schema.install)
        # Collectors' packages a gateway before the review's package states left wrong.
        await self.gw.store.run(lambda tx: debit_review.correct_package_states(
            tx, self.gw.clock.now()))
        self._tasks = [asyncio.create_task(self.packer.run(), name="beps-packer"),
                       asyncio.create_task(self._deadlines(), name="beps-deadlines")]

    async def stop(self) -> None:
        self.packer.stopped = True  # the loops end even if a cancellation is lost
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deadlines(self) -> None:
        while not self.packer.stopped:
            await asyncio.sleep(self.settings.deadline_check_s)
            if not self.gw.leading:
                continue
            # Each check on its own: one that fails (logged in full; the timer outlives
            # it) keeps neither of the others from its pass.
            for check, step in (
                    (lambda: self.gw.store.run(lambda tx: debit_deadline.mark_overdue(
                        tx, self.gw, self.gw.clock.now())), "receipts_overdue"),
                    (self.expire_debit_reviews, "debit_reviews_expired"),
                    (self.check_not_netted, "not_netted")):
                try:
                    await check()
                except Exception as exc:
                    log.exception("event=beps_deadline_check_failed step=%s error=%r",
                                  step, exc)

    async def expire_debit_reviews(self) -> int:
        """Debits other banks sent us that the screening holds, undecided when their
        answer falls due: refused (debit_review.py). Run with the receipt deadlines, by
        the leading process."""
        return await self.gw.store.run(lambda tx: debit_review.expire(
            tx, self.gw, self.gw.clock.now()))

    async def check_not_netted(self) -> bool:
        """Our packages the NPC has not netted in time: the alert, once per episode
        (not_netted.py). Run with the receipt deadlines, by the leading process."""
        return await self.gw.store.run(lambda tx: not_netted.check(
            tx, self.gw, self.settings, self.gw.clock.now()))

    def simulate_day_events(self, run: Any) -> list[tuple[Any, str, Any]]:
        """BEPS traffic and netting rounds for `paygate simulate-day`."""
        from gateway.beps import demo
        return demo.day_events(run)

    def summary(self, tx: Any) -> dict[str, Any]:
        def count(sql: str, *params: Any) -> int:
            return int(tx.query_one(sql, params)[0])

        def ever(direction: str, state: str) -> int:
            return payments.ever_count(tx, "beps", direction, state)
        now = ("SELECT COUNT(*) FROM payments WHERE channel = 'beps' AND direction = ? "
               "AND state = ?")
        return {"beps": {
            "packages": count("SELECT COUNT(*) FROM beps_packages WHERE direction = 'out' "
                              "AND msg_type <> 'beps.128.001.01'"),
            "sent": ever("out", "sent"), "netted": ever("out", "netted"),
            "settled": count(now, "out", "settled"), "rejected": count(now, "out", "rejected"),
            "received": count("SELECT COUNT(*) FROM payments WHERE channel = 'beps' AND "
                              "direction = 'in'"),
            "to_suspense": ever("in", "suspense"),
        }}

    # Reconciliation

    async def reconcile(self, check_date: date, timeout_s: float = 30.0) -> dict[str, Any]:
        """Send beps.720 for a netting date and wait for the NPC's 721 to be compared.

        Any date, complete or not: the answer to a date not complete yet is an early
        look, stored but not the date's reconciliation (netting_dates.py)."""
        key = check_date.isoformat()
        pending = self._recon_waiters.get(key)
        if pending is not None and not pending.done():
            # Someone asked for this date already (the day end, say): share the answer.
            return await asyncio.wait_for(asyncio.shield(pending), timeout_s)
        waiter = asyncio.get_running_loop().create_future()
        self._recon_waiters[key] = waiter
        now = self.gw.clock.now()
        outbox_id = await self.gw.store.run(lambda tx: recon.request(tx, self.gw, key, now))
        await self.gw.redis.xadd(keys.OUT_LINK, {"outbox": str(outbox_id)})
        return await asyncio.wait_for(waiter, timeout_s)

    async def reconcile_at_day_end(self, day: date) -> dict[str, Any]:
        """The BEPS part of the day end of work date `day`: every complete netting date
        not reconciled yet (a weekend's, a holiday's, the rounds after the last day end),
        at most `recon_dates_per_pass`, the oldest first, asked for and waited for. The
        netting date `day` itself still nets until midnight: a later pass takes it.

        First, the rounds that stayed unsettled through the HVPS day just ended
        (settlement_watch): raised at once, and listed as `rounds_not_settled`."""
        gw = self.gw
        unsettled = await gw.store.run(
            lambda tx: settlement_watch.check_at_day_end(tx, gw, day))
        return dict(await self.reconcile_due(RECON_WAIT_S), work_date=day.isoformat(),
                    rounds_not_settled=unsettled)

    async def reconcile_due(self, timeout_s: float = RECON_WAIT_S) -> dict[str, Any]:
        """One pass over the netting dates (netting_dates.claim), waiting up to
        `timeout_s` for the answers. Differences are alerts already (raised with each
        answer), so the part says `alerted`."""
        now = self.gw.clock.now()
        claimed = await self.gw.store.run(
            lambda tx: netting_dates.claim(tx, self.gw, self.settings, now))
        self._recon_next_check = claimed.next_check
        waiters = {}
        for day, _ in claimed.dates:
            pending = self._recon_waiters.get(day)
            if pending is None or pending.done():
                pending = self._recon_waiters[day] = \
                    asyncio.get_running_loop().create_future()
            waiters[day] = pending
        await self._push(claimed)
        if waiters:
            await asyncio.wait([asyncio.shield(w) for w in waiters.values()],
                               timeout=timeout_s)
        answered = [w.result() for w in waiters.values() if w.done() and not w.cancelled()]
        unanswered = sorted(day for day, w in waiters.items() if not w.done())
        for day in unanswered:
            if self._recon_waiters.get(day) is waiters[day]:
                self._recon_waiters.pop(day).cancel()
        left = await self.gw.store.run(lambda tx: netting_dates.status(
            tx, self.gw.clock.now(), self.settings.recon_delay_s))
        differences = [d for o in answered for d in o["differences"]]
        rows = {k: v for o in answered for k, v in o.get("rows", {}).items()}
        if unanswered:
            log.warning("event=beps_netting_dates_unanswered dates=%s waited_s=%s",
                        ",".join(unanswered), timeout_s)
        return {"system": "BEPS", "reconciled": not differences and not unanswered,
                "differences": differences, "alerted": True,
                "netting_dates": [{"netting_date": o["work_date"],
                                   "reconciled": o["reconciled"],
                                   "differences": len(o["differences"])}
                                  for o in sorted(answered, key=lambda o: o["work_date"])],
                "unanswered": unanswered,
                "not_reconciled": [w["netting_date"] for w in left["waiting"]],
                "rows": rows}

    async def tick(self, now: datetime) -> None:
        """The periodic check, at each window tick of the leading process: a pass once a
        netting date may have become complete, or an answer may be overdue, or the last
        pass left dates over; nothing (no database work) in between."""
        if self._recon_next_check is not None and now < self._recon_next_check:
            return
        try:
            claimed = await self.gw.store.run(
                lambda tx: netting_dates.claim(tx, self.gw, self.settings, now))
            self._recon_next_check = claimed.next_check
            await self._push(claimed)
        except Exception as exc:  # the check outlives one failed pass; logged in full
            self._recon_next_check = now + timedelta(seconds=RECON_CHECK_BACKOFF_S)
            log.exception("event=beps_recon_check_failed error=%r", exc)

    async def _push(self, claimed: netting_dates.Claimed) -> None:
        for _, outbox_id in claimed.dates:
            await self.gw.redis.xadd(keys.OUT_LINK, {"outbox": str(outbox_id)})

    def ops_status(self, tx: Any) -> dict[str, Any]:
        """`paygate ops status` and the console: which netting dates are reconciled."""
        now = self.gw.clock.now()
        return {"beps_reconciliation": netting_dates.status(tx, now, self.settings.recon_delay_s),
                "beps_not_netted": not_netted.status(tx, self.settings, now)}

    def _on_recon_result(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        outcome = recon.compare(tx, d.obj, now)
        tracked = netting_dates.record_answer(tx, self.gw, outcome, now)
        after = [lambda: self._recon_done(outcome),
                 lambda: self.gw.cluster.publish("beps_recon", outcome=outcome)]
        rows = recon.detail_rows(outcome)
        if rows:
            outbox_id = recon.request_details(tx, self.gw, d.obj.check_date, rows, now)
            after.append(lambda: self.gw.spawn(self.gw.redis.xadd(
                keys.OUT_LINK, {"outbox": str(outbox_id)})))
        return Processed({"reconciled": outcome["reconciled"],
                          "differences": len(outcome["differences"]),
                          "netting_date_complete": tracked}, after)

    def _on_recon_details(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        outcome = recon.compare_details(tx, d.obj, now)
        if outcome["differences"]:
            self.gw.alert(tx, "reconciliation_package_differences",
                          work_date=outcome["work_date"],
                          packages=outcome["differences"][:50])
        return Processed({"packages_differing": len(outcome["differences"])},
                         [lambda: self.details.__setitem__(outcome["work_date"], outcome)])

    def _recon_done(self, outcome: dict[str, Any]) -> None:
        waiter = self._recon_waiters.pop(outcome["work_date"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)
