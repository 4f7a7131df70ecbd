"""The console's HTTP face: the page at `/ops/`, its JSON routes, live events and
`/metrics`.

Wiring: `add_routes(app, gw)` before the application starts. Every route but the
page's own files, `POST /ops/login` and `GET /ops/session` (whether this browser is
signed in) needs an operator: a session cookie from the
sign-in, or HTTP Basic credentials (the command line). The page's files hold no data:
without a session the page shows only its sign-in form.

Requests that change something are POSTs with a JSON body; with the SameSite=Strict
cookie and a check of the Origin header, another site cannot make a signed-in
browser send them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from importlib import resources
from typing import Any, Awaitable, Callable

from aiohttp import web

from gateway import jsontext
from gateway.errors import PaygateError, Problem, ValidationFailed, not_text
from gateway.ops import control, metrics, sessions
from gateway.ops.console import Console
from gateway.ops.data_routes import DataRoutes, checked_query
from gateway.ops.live import PUSH_EVERY_S, Hub
from gateway.ops.operators import Directory, Operator
from gateway.ops.replies import SECURITY_HEADERS, error_response, json_response, read_json
from gateway.ops.snapshot import Snapshots

log = logging.getLogger("paygate.ops")

STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript",
                "app.css": "text/css", "i18n.js": "text/javascript",
                "favicon.svg": "image/svg+xml"}
REFUSALS_AUDITED = ("sign_in_refused", "sign_in_locked_after_failures")

Guarded = Callable[[web.Request, Operator], Awaitable[web.StreamResponse]]


class Ops:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.directory = Directory(gw.settings.operators_file or None)
        self.auth = sessions.Auth(gw, self.directory)
        self.hub = Hub(gw)
        self.console = Console(gw, self.hub)
        self.snapshots = Snapshots(self.console)
        if self.directory.is_demo:
            log.warning("event=ops_demo_operators file=%s note=demo passwords are public; "
                        "set operators_file", self.directory.path)

    def guard(self, handler: Guarded) -> Callable[[web.Request], Awaitable[Any]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                operator = await self.auth.operator(request)
                return await handler(request, operator)
            except PaygateError as exc:
                if exc.code in REFUSALS_AUDITED:
                    user = _basic_user(request)
                    await self.console.session_audit(user, "sign_in_refused", "basic")
                return error_response(exc)
        return guarded

    # The page

    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES or name == "index.html":
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        text = (resources.files("gateway") / "web" / name).read_text(encoding="utf-8")
        response = web.Response(text=text, content_type=STATIC_FILES[name], charset="utf-8")
        response.headers.update(SECURITY_HEADERS)
        return response

    # Signing in and out

    async def login(self, request: web.Request) -> web.StreamResponse:
        user: Any = ""
        try:
            body = await sign_in_body(request)
            problems = sign_in_problems(body)
            if problems:
                raise ValidationFailed(problems)
            user, password = body["user"], body["password"]
            operator = await self.auth.check_password(user, password)
        except PaygateError as exc:
            if exc.code in REFUSALS_AUDITED:
                await self.console.session_audit(str(user), "sign_in_refused", "page")
            return error_response(exc)
        token = await self.auth.start_session(operator)
        await self.console.session_audit(operator, "sign_in", "page")
        response = json_response(operator.public())
        sessions.set_cookie(response, request, token)
        return response

    async def logout(self, request: web.Request, operator: Operator) -> web.StreamResponse:
        await read_json(request)
        await self.auth.end_session(request)
        await self.console.session_audit(operator, "sign_out", "page")
        response = json_response({"signed_out": operator.user})
        sessions.clear_cookie(response)
        return response

    async def session(self, request: web.Request) -> web.StreamResponse:
        """Whether this browser is signed in, and as whom: answered 200 either way, so
        the page, which cannot read its HttpOnly cookie, asks at start and after a broken
        event stream without a failed (401) request."""
        try:
            checked_query(request)
            token = request.cookies.get(sessions.COOKIE)
            operator = await self.auth.session_operator(token) if token else None
        except PaygateError as exc:
            if exc.code != "operator_not_signed_in":
                return error_response(exc)
            operator = None
        if operator is None:
            return json_response({"signed_in": False})
        return json_response({"signed_in": True, "operator": operator.public()})

    async def me(self, request: web.Request, operator: Operator) -> web.StreamResponse:
        checked_query(request)
        return json_response(operator.public())

    async def actions(self, request: web.Request, operator: Operator) -> web.StreamResponse:
        """Every action: its human names (the page's buttons and tables), target kind
        and approval rule."""
        checked_query(request)
        return json_response({"actions": control.catalogue()})

    # Live events

    async def events(self, request: web.Request, operator: Operator) -> web.StreamResponse:
        """Server-sent events: a snapshot now, then every second and after every change."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        token = request.cookies.get(sessions.COOKIE)
        try:
            while not self.hub.stopping:
                seen = self.hub.version
                snap = await self.snapshots.get()
                await response.write(_event("snapshot", snap))
                await self.hub.wait(seen, PUSH_EVERY_S)
                if token:
                    await self.auth.session_operator(token)
        except PaygateError as exc:
            await response.write(_event("signed_out", exc.to_dict()))
        except ConnectionResetError:
            log.debug("event=ops_events_closed user=%s", operator.user)
        return response

    async def metrics(self, request: web.Request, operator: Operator) -> web.StreamResponse:
        text = await metrics.render(self.gw, self.console)
        return web.Response(text=text, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def on_shutdown(self, app: web.Application) -> None:
        await self.hub.stop()


SIGN_IN_FIELDS = ("user", "password")


async def sign_in_body(request: web.Request) -> dict[str, Any]:
    """A sign-in's JSON object, read as every console body is (`read_json`), but a body
    that is not JSON is refused without its first characters, which may hold the
    password (`{"user": "op1", "password": "hunter2"` cut short)."""
    try:
        return await read_json(request)
    except PaygateError as exc:
        if exc.code != "body_must_be_json":
            raise
        raise PaygateError([replace(p, value=None, message=(
            "the sign-in body must be a JSON document in UTF-8; its text is not shown, as "
            "it may hold the password")) for p in exc.problems], exc.status) from None


def sign_in_problems(body: dict[str, Any]) -> list[Problem]:
    """A sign-in's body, every problem at once: user and password as text
    (`credentials_required` when one is left out or null, `field_must_be_text` when
    given as another JSON type, as the API refuses a text field so, but a password's
    value never shown), and no other member (`field_unknown`, naming the member only:
    `{"Password": "hunter2"}` is a password misspelt, its value as secret as one
    spelt right)."""
    only = "only: " + ", ".join(SIGN_IN_FIELDS)
    problems = [Problem("field_unknown", f"/{name}", None, only,
                        f"the sign-in takes only user and password, not a member {name!r};"
                        " its value is not shown")
                for name in body if name not in SIGN_IN_FIELDS]
    for name in SIGN_IN_FIELDS:
        value = body.get(name)
        wrong_type = not_text(f"/{name}", value, "text")
        if wrong_type is not None and name == "password":
            wrong_type = replace(wrong_type, value=None, message=(
                "password must be a JSON string (text in double quotes), not a JSON "
                f"{jsontext.type_name(value)}; its value is not shown"))
        if wrong_type is not None:
            problems.append(wrong_type)
        elif value is None:
            problems.append(Problem("credentials_required", f"/{name}", None,
                                    "user and password as text",
                                    f"the sign-in has no {name}: user and password are "
                                    "required, as text"))
    return problems


def _event(name: str, data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    return f"event: {name}\ndata: {text}\n\n".encode()


def _basic_user(request: web.Request) -> str:
    try:
        return sessions.parse_basic(request.headers.get("Authorization", ""))[0]
    except PaygateError:
        return ""


async def _to_page(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ops/")


async def _to_favicon(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/ops/static/favicon.svg")


OPS_KEY = web.AppKey("paygate_ops", Ops)


def add_routes(app: web.Application, gw: Any) -> None:
    """Add `/ops/` (page), `/ops/...` (JSON, events, sign-in) and `/metrics` to `app`."""
    ops = Ops(gw)
    app[OPS_KEY] = ops
    data = DataRoutes(ops.console, ops.snapshots)
    app.on_shutdown.append(ops.on_shutdown)
    add = app.router
    add.add_get("/ops", _to_page)
    add.add_get("/ops/", ops.page)
    add.add_get("/ops/static/{name}", ops.static)
    add.add_get("/favicon.ico", _to_favicon)  # asked for by browsers on other pages
    add.add_post("/ops/login", ops.login)
    add.add_post("/ops/logout", ops.guard(ops.logout))
    add.add_get("/ops/events", ops.guard(ops.events))
    add.add_get("/ops/session", ops.session)
    add.add_get("/ops/api/me", ops.guard(ops.me))
    add.add_get("/ops/api/actions", ops.guard(ops.actions))
    for method, path, handler in data.routes():
        add.add_route(method, path, ops.guard(handler))
    add.add_get("/metrics", ops.guard(ops.metrics))
