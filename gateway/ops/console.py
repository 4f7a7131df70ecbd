"""The console's actions as the web routes and the command line call them.

Each call checks the request, runs its database work in one store transaction
(request, decision, execution and audit rows together), then does the Redis work the
execution asked for, and finally tells every open page that something changed.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import Conflict, PaygateError, ValidationFailed
from gateway.ops import actions, control, schema
from gateway.ops.live import Hub
from gateway.ops.operators import Operator


class Console:
    def __init__(self, gw: Any, hub: Hub) -> None:
        self.gw = gw
        self.hub = hub
        self._installed = False

    async def ready(self) -> None:
        """Create the console's tables on first use."""
        if not self._installed:
            await schema.install(self.gw)
            self._installed = True

    async def request(self, operator: Operator, action: Any, target: Any,
                      params: Any = None, note: Any = "",
                      body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record a request; actions that need no second person run at once. `body`:
        the JSON body it came as, when it did (control.check_request)."""
        await self.ready()
        note = "" if note is None else note  # null is the note left out, never 0 or []
        clean = control.check_request(operator, action, target, params, note, body)
        target = control.clean_target(action, target)
        if action == "retry":
            clean = await actions.read_dead_letter(self.gw.redis, target)
        now = self.gw.clock.now()
        rule = control.RULES[action]

        def work(tx: Any) -> tuple[dict[str, Any], list[actions.AfterCommit]]:
            named, params = target, clean
            if action in control.TARGET_READERS:
                named, params = control.TARGET_READERS[action](self.gw, tx, target, clean)
            actions.check_target(self.gw, tx, action, named, params)
            request_id = control.create(tx, operator, action, named, params, note, now)
            after: list[actions.AfterCommit] = []
            if not rule.needs_approval:
                after = control.execute(tx, self.gw, operator,
                                        control.load(tx, request_id), now)
            return control.load(tx, request_id), after
        try:
            return await self._run(work)
        except PaygateError as exc:
            raise control.at_request_fields(exc) from None

    async def decide(self, operator: Operator, request_id: int, approve: bool,
                     note: Any = "", body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Approve (and execute), reject, or withdraw one pending request. `body`: the
        JSON body the decision came as, when it did (a member other than `note` is
        refused with the note's own problems)."""
        await self.ready()
        note = "" if note is None else note
        problems = control.unknown_members(body, ("note",)) if body is not None else []
        problems += control.note_problems(note)
        if problems:
            raise ValidationFailed(problems)
        now = self.gw.clock.now()

        def work(tx: Any) -> tuple[dict[str, Any], list[actions.AfterCommit]]:
            req, what = control.decide(tx, operator, request_id, approve, note, now)
            after: list[actions.AfterCommit] = []
            if what == "approve":
                after = control.execute(tx, self.gw, operator, req, now)
            return control.load(tx, request_id), after
        req = await self._run(work)
        if req["state"] == "expired":
            raise Conflict(control.expired_problem(req))
        return req

    async def session_audit(self, who: Operator | str, what: str, source: str) -> None:
        """Record a sign-in, a refused sign-in or a sign-out."""
        await self.ready()
        now = self.gw.clock.now()
        if isinstance(who, Operator):
            user, level = who.user, who.level
        else:
            user, level = who[:32], ""
        await self.gw.store.run(lambda tx: schema.audit(tx, now, user, level, what,
                                                        source=source))
        await self.hub.changed()

    async def _run(self, work: Any) -> dict[str, Any]:
        req, after = await self.gw.store.run(work)
        for step in after:
            await step()
        await self.hub.changed()
        return req
