"""Query and reply (查询查复) and free-format messages: ccms.314, ccms.315, ccms.303.

"Every doubt gets a query, every query a reply, every reply in full" (DOMAIN.md §2). The
query desk plugs into the gateway as an extension (`install(gw)`):

- outgoing: the core system or an operator opens a query about a payment; the desk sends
  ccms.314 to the counterparty, keeps it linked to the payment and waits for the reply
  (outgoing.py);
- incoming: a bank's query is linked to our payment, answered at once from our records
  when the policy allows, or put before an operator with its due time; a bank's reply is
  matched to our query and pushed to the core system (incoming.py, answers.py,
  notify.py);
- deadlines on the business calendar, watched by a timer that raises what nears or
  passes its due time (deadlines.py);
- free text both ways (ccms.303);
- the NPC's refusal of a query or free text of ours, a ccms.900 PR09 or a ccms.911
  (refusals.py);
- the HTTP routes (api.py) and the "queries" section of the closing summary.

docs/queries.md describes the behaviour, the settings and the endpoints.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable

from gateway import intake, key_reuse, outbound, scope, store
from gateway.errors import Conflict, PaygateError
from gateway.handlers import handler_before
from gateway.inbound import Processed
from gateway.messages import ccms303, ccms314, ccms911, codec
from gateway.queries import (api, deadlines, idempotency, incoming, outgoing, records,
                             refusals, requests, schema, wire)
from gateway.queries import policy as policy_mod
from gateway.queries.policy import QueryPolicy

log = logging.getLogger("paygate.queries")

# The requests kept by Idempotency-Key, each compared by what it asks for.
QUERIES = key_reuse.Kind("queries", requests.query_meaning, requests.QUERY_FIELDS,
                         requests.QUERY_DEFAULTS, "query")
FREE_FORMAT = key_reuse.Kind("free_format", requests.free_format_meaning,
                             requests.FREE_FORMAT_FIELDS, requests.FREE_FORMAT_DEFAULTS,
                             "free-format message")
# A chase is kept with the query it chases (requests.chase_request): the same key on
# another query is another request.
CHASE = key_reuse.Kind("chase", requests.chase_meaning, requests.CHASE_FIELDS,
                       requests.CHASE_DEFAULTS, "chase")
# A reply too is kept with the query it answers (requests.reply_request).
REPLY = key_reuse.Kind("reply", requests.reply_meaning, requests.REPLY_FIELDS,
                       requests.REPLY_DEFAULTS, "reply")
KINDS = {kind.name: kind for kind in (QUERIES, FREE_FORMAT, CHASE, REPLY)}


def install(gw: Any) -> "QueryDesk":
    return QueryDesk(gw)


def desk_of(gw: Any) -> "QueryDesk":
    """The query desk installed in a gateway."""
    return next(ext for ext in gw.extensions if isinstance(ext, QueryDesk))


class QueryDesk:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.policy = policy_mod.from_settings(gw.settings)
        self._timer: asyncio.Task | None = None
        self._pushes: set[asyncio.Task] = set()
        self._before: dict[str, Any] = {}  # handlers this extension passes messages on to
        self._show_queries_on_transfers()
        for mt in refusals.OUR_TYPES:  # our messages the NPC refuses at the link
            gw.outbox_dead_hooks[mt] = self._dead

    # The extension interface (gateway/app.py)

    def handlers(self) -> dict[str, Callable[[Any, codec.Decoded, Any], Processed]]:
        return {ccms314.MESSAGE_TYPE: self._handler(incoming.on_query),
                ccms314.RESPONSE_TYPE: self._handler(incoming.on_reply),
                ccms303.MESSAGE_TYPE: self._handler(incoming.on_free_format),
                ccms911.MESSAGE_TYPE: self._on_discarded}

    def _own(self) -> dict[str, Any]:
        """The gateway's own handler of the type this extension handles first."""
        return {ccms911.MESSAGE_TYPE: self.gw.handlers.on_discarded}

    def claim_result(self, tx: Any, d: codec.Decoded, now: Any) -> Processed | None:
        """A ccms.900 about no payment: ours when it refuses our query or free text."""
        outcome = refusals.on_result(tx, self, d, now)
        return None if outcome is None else self._processed(*outcome)

    def _on_discarded(self, tx: Any, d: codec.Decoded, now: Any) -> Processed:
        """A ccms.911: told to operators (and a payment's handled) by the handler before
        this one; our query or free text discarded is refused as well."""
        told = handler_before(self.gw, self, ccms911.MESSAGE_TYPE, self._own,
                              self._before)(tx, d, now)
        outcome = refusals.on_discarded(tx, self, d, now)
        if outcome is None:
            return told
        processed = self._processed(*outcome)
        return Processed(processed.outcome, told.after_commit + processed.after_commit)

    def _dead(self, tx: Any, outbox_id: int, why: str, status: int | None,
              now: Any) -> dict[str, str]:
        """Our query, reply or free text dead-lettered (gateway.app.Gateway.outbox_dead).
        Refused at the link (a 4xx `status`) with every attempt provably untaken, it is
        refused as by the NPC's notice: a reply's query is open again for a new answer.
        One that failed every delivery otherwise, or was refused after an earlier attempt
        that may have reached the NPC (a timeout), keeps its letter for an operator's
        retry of the same bytes. The fields naming it in the letter."""
        if status is None:
            return {}
        row = tx.query_one("SELECT mesg_type, mesg_id, state, attempts, untaken FROM outbox "
                           "WHERE id = ?", (outbox_id,))
        sent = outbound.Delivery(outbox_id, row[2], int(row[3]), int(row[4]))
        if not sent.provably_untaken:
            return refusals.kept_maybe_taken(tx, self, row[0], row[1], status, sent)
        outcome = refusals.on_link_refused(tx, self, row[0], row[1], status, now)
        if outcome is None:
            return {}
        processed, pushes = outcome
        for stream, pushed in pushes:
            store.after_commit(tx, stream, {"outbox": str(pushed)})
        return {name: str(processed.outcome[name]) for name in ("query", "free_format")
                if name in processed.outcome}

    def add_routes(self, app: Any) -> None:
        api.add_routes(app, self)

    async def start(self) -> None:
        await self.gw.store.run(schema.install)
        self._timer = asyncio.create_task(self._watch(), name="query_deadlines")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        await asyncio.gather(*self._pushes, return_exceptions=True)

    def summary(self, tx: Any) -> dict[str, Any]:
        # The section has the keys CONTRACT.md §8 gives it. A query the NPC refused was
        # sent, but never reached the bank: no reply was due, so it is neither replied
        # nor overdue (even when the refusal came after its due time).
        sent, received, replied, overdue = tx.query_one(
            "SELECT COALESCE(SUM(CASE WHEN direction = 'out' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN direction = 'in' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN replied_at IS NOT NULL THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN overdue_at IS NOT NULL AND state <> 'refused' "
            "THEN 1 ELSE 0 END), 0) FROM queries", ())
        return {"queries": {"sent": sent, "received": received, "replied": replied,
                            "overdue": overdue}}

    def simulate_day_events(self, run: Any) -> list[tuple[Any, str, Any]]:
        """Queries both ways for `paygate simulate-day` (demo.py)."""
        # Imported here because the demo module finds the desk through this package.
        from gateway.queries import demo
        return demo.day_events(run)

    def set_policy(self, policy: QueryPolicy) -> None:
        """Change the policy while running; the deadline timer restarts with it."""
        policy_mod.check(policy)
        self.policy = policy
        if self._timer is not None:
            self._timer.cancel()
            self._timer = asyncio.create_task(self._watch(), name="query_deadlines")

    def tune(self, **changes: Any) -> None:
        self.set_policy(replace(self.policy, **changes))

    # Requests from the core system and operators

    async def open_query(self, client: str, key: str | None,
                         body: Any) -> tuple[int, dict[str, Any]]:
        key = idempotency.check_key(key)
        now = self.gw.clock.now()
        try:
            req = requests.parse_query(body, now)
        except PaygateError as exc:
            return await self._refused(QUERIES, client, key, body, exc)
        return await self._kept(QUERIES, client, key, body, now, 201, lambda tx: (
            outgoing.open_query(tx, self, req, client, now)))

    async def answered_before(self, kind_name: str, client: str, key: str,
                              body: Any) -> tuple[int, dict[str, Any]] | None:
        """The answer stored under `key` for this same kind of request (one of KINDS, by
        name; a chase's `body` as requests.chase_request makes it), read only; None for
        a new key or another request under it."""
        kind = KINDS[kind_name]
        body_hash = intake.meaning_sha256(kind.meaning(body))

        def work(tx: Any) -> tuple[int, dict[str, Any]] | None:
            try:
                return idempotency.replay(tx, client, kind, key, body, body_hash)
            except Conflict:
                return None
        return await self.gw.store.run(work)

    # `client` below: the core-system client asking, who reads and acts on only the
    # queries about payments it sees, and of those about no payment of ours its own
    # (gateway.scope, `_seen`); None for the gateway's own use and its operators.

    async def reply(self, query_id: str, body: Any,
                    client: str | None = None) -> dict[str, Any]:
        """An answer to a bank's query, kept by no key (the gateway's own use: the demo's
        operator); the core system's comes by `reply_under_key`."""
        content, operator = requests.parse_reply(body)
        now = self.gw.clock.now()
        return await self._run(lambda tx: outgoing.operator_reply(
            tx, self, query_id, content, operator, now, client))

    async def reply_under_key(self, client: str, key: str | None, query_id: str,
                              body: Any) -> tuple[int, dict[str, Any]]:
        """A reply asked by a core-system client under its Idempotency-Key, as a chase
        is: the same key, query and answer again get the stored answer, 200, even though
        the query is answered now (no second ccms.315 to the other bank), another request
        under the key a 409."""
        key = idempotency.check_key(key)
        try:
            content, operator = requests.parse_reply(body)
        except PaygateError as exc:
            return await self._refused(REPLY, client, key,
                                       requests.reply_request(query_id, body), exc)
        now = self.gw.clock.now()
        return await self._kept(REPLY, client, key, requests.reply_request(query_id, body),
                                now, 200, lambda tx: outgoing.operator_reply(
                                    tx, self, query_id, content, operator, now, client))

    async def chase(self, client: str, key: str | None, query_id: str,
                    body: Any) -> tuple[int, dict[str, Any]]:
        """A chase asked by a core-system client under its Idempotency-Key, as a query
        is: the same key, query and request again get the stored answer (no second
        ccms.314 to the other bank), another request under the key a 409."""
        key = idempotency.check_key(key)
        try:
            content, operator = requests.parse_chase(body)
        except PaygateError as exc:
            return await self._refused(CHASE, client, key,
                                       requests.chase_request(query_id, body), exc)
        now = self.gw.clock.now()
        return await self._kept(CHASE, client, key, requests.chase_request(query_id, body),
                                now, 201, lambda tx: outgoing.chase(
                                    tx, self, query_id, content, operator, now, client))

    async def send_free_format(self, client: str, key: str | None,
                               body: Any) -> tuple[int, dict[str, Any]]:
        key = idempotency.check_key(key)
        try:
            req = requests.parse_free_format(body)
        except PaygateError as exc:
            return await self._refused(FREE_FORMAT, client, key, body, exc)
        now = self.gw.clock.now()
        return await self._kept(FREE_FORMAT, client, key, body, now, 201, lambda tx: (
            outgoing.send_free_format(tx, self, req, client, now)))

    async def _refused(self, kind: key_reuse.Kind, client: str, key: str, request: Any,
                       refusal: PaygateError) -> tuple[int, dict[str, Any]]:
        """A request of `kind` whose body is refused (`refusal`) under its checked key:
        the answer stored for the same request, the key's refusal (409) when another
        request took it, else `refusal` raised (key_reuse.refused_or_replayed)."""
        body_hash = intake.meaning_sha256(kind.meaning(request))
        return await key_reuse.refused_or_replayed(
            self.gw.store, refusal,
            lambda tx: idempotency.replay(tx, client, kind, key, request, body_hash))

    async def _kept(self, kind: key_reuse.Kind, client: str, key: str, request: Any,
                    now: datetime, status: int,
                    act: Callable[[Any], tuple[dict[str, Any], wire.Pushes]]
                    ) -> tuple[int, dict[str, Any]]:
        """A request of `kind` under its (checked) Idempotency-Key: the answer stored
        under the key for this same request (compared by what it asks for), with nothing
        done again; else `act` (its view and pushes), its answer stored with `status`;
        another request under the key is refused (409, naming what differs)."""
        body_hash = intake.meaning_sha256(kind.meaning(request))

        def work(tx: Any) -> tuple[tuple[int, dict[str, Any]], wire.Pushes]:
            stored = idempotency.replay(tx, client, kind, key, request, body_hash)
            if stored is not None:
                return stored, []
            view, pushes = act(tx)
            idempotency.remember(tx, client, kind, key, request, body_hash, status, view,
                                 now)
            return (status, view), pushes
        return await self._run(work)

    async def get(self, query_id: str, client: str | None = None) -> dict[str, Any]:
        now = self.gw.clock.now()

        def work(tx: Any) -> dict[str, Any]:
            query = records.get(tx, query_id)
            outgoing.refuse_hidden_query(tx, self, query, client)
            return records.view(query, now, records.replies_of(tx, query_id))
        return await self.gw.store.run(work)

    async def search(self, state: str | None = None, direction: str | None = None,
                     payment_id: str | None = None, limit: int = 100,
                     client: str | None = None) -> list[dict[str, Any]]:
        now = self.gw.clock.now()
        seen = self._seen(client)
        return await self.gw.store.run(lambda tx: [
            records.view(q, now) for q in records.search(tx, state, direction, payment_id,
                                                         limit, seen)])

    async def reply_feed(self, after: int, limit: int,
                         client: str | None = None) -> list[dict[str, Any]]:
        seen = self._seen(client)
        return await self.gw.store.run(lambda tx: records.reply_feed(tx, after, limit,
                                                                     seen))

    async def free_format_feed(self, direction: str | None, after: int, limit: int,
                               client: str | None = None) -> list[dict[str, Any]]:
        seen = self._seen(client)
        return await self.gw.store.run(lambda tx: records.free_format_list(
            tx, direction, after, limit, seen))

    def _seen(self, client: str | None) -> records.Seen | None:
        """What `client` sees of the desk's records (gateway.scope): the queries about
        the payments it sees; of what names no payment of ours, what it made, and what
        no client made when it is limited to no accounts in particular. None: all."""
        if client is None:
            return None
        settings = self.gw.settings
        return records.Seen(scope.seen_ids(settings, client, self.gw.own_banks),
                            scope.unattached_condition(settings, client),
                            scope.sees_unattached(settings, client, None),
                            scope.owned_condition(settings, client))

    async def check_deadlines(self) -> dict[str, int]:
        """One pass of the deadline timer (also run by the timer every interval)."""
        now = self.gw.clock.now()
        return await self.gw.store.run(lambda tx: deadlines.scan(tx, now, self.policy,
                                                                 self.gw.alert))

    # Plumbing

    async def _run(self, work: Callable[[Any], tuple[Any, wire.Pushes]]) -> Any:
        result, pushes = await self.gw.store.run(work)
        await self._push(pushes)
        return result

    async def _push(self, pushes: wire.Pushes) -> None:
        for stream, outbox_id in pushes:
            await self.gw.redis.xadd(stream, {"outbox": str(outbox_id)})

    def _handler(self, fn: Callable[..., tuple[Processed, wire.Pushes]]
                 ) -> Callable[[Any, codec.Decoded, Any], Processed]:
        def handle(tx: Any, decoded: codec.Decoded, now: Any) -> Processed:
            return self._processed(*fn(tx, self, decoded, now))
        return handle

    def _processed(self, processed: Processed, pushes: wire.Pushes) -> Processed:
        """What a handler did, with its rows put on their streams after the commit."""
        if pushes:
            processed.after_commit.append(lambda: self._push_soon(pushes))
        return processed

    def _push_soon(self, pushes: wire.Pushes) -> None:
        """Put committed outbox rows on their streams from a handler's after-commit step.

        A push that fails leaves the rows pending in the outbox, where start-up recovery
        finds them; the failure is logged for operators."""
        task = asyncio.get_running_loop().create_task(self._push(pushes))
        self._pushes.add(task)
        task.add_done_callback(self._pushed)

    def _pushed(self, task: asyncio.Task) -> None:
        self._pushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=query_push_failed error=%r", task.exception())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.policy.check_interval_s)
            if not self.gw.leading:  # one deadline watch for all gateway processes
                continue
            try:
                raised = await self.check_deadlines()
            except Exception as exc:  # the timer outlives one failed pass; logged in full
                log.exception("event=query_deadline_check_failed error=%r", exc)
                continue
            if raised["due_soon"] or raised["overdue"]:
                log.info("event=query_deadlines_checked due_soon=%s overdue=%s",
                         raised["due_soon"], raised["overdue"])

    def _show_queries_on_transfers(self) -> None:
        """Add each payment's queries to GET /v1/transfers/{id} under "queries": those the
        client asking sees (the payment is one it sees: its own queries about it, a
        bank's and the gateway's, never another client's; all for no client)."""
        def add_queries(tx: Any, view: dict[str, Any], client: str | None) -> None:
            now = self.gw.clock.now()
            seen = None if client is None else records.Seen(
                None, None, True, scope.owned_condition(self.gw.settings, client))
            view["queries"] = [records.view(q, now, records.replies_of(tx, q["id"]))
                               for q in records.search(tx, payment_id=view["id"],
                                                       seen=seen)]
        self.gw.view_hooks.append(add_queries)
