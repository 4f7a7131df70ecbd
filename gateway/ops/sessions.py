"""Signing operators in and recognising them on every request.

A browser signs in once (`POST /ops/login`) and then carries a session cookie: random,
HttpOnly (page scripts cannot read it), SameSite=Strict (another site cannot make the
browser send it). The command line sends HTTP Basic credentials with every request
instead. Sessions live in Redis under the SHA-256 of their token, so that several
gateway processes share them and a copy of Redis holds no usable token; a session ends
after `SESSION_IDLE_S` without use, after `SESSION_LIFE_MAX_S` in any case, or at
sign-out. Repeated wrong passwords lock a user name for `LOCKOUT_S`.

Passwords and tokens are never logged; the operator's level is read from the
operators file on every request, so a demotion takes effect at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import secrets
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.errors import Problem, Unauthorized
from gateway.ops import operators
from gateway.ops.operators import Directory, Operator, check_unknown_user, verify_password

COOKIE = "paygate_ops"
SESSION_IDLE_S = 30 * 60            # half an hour without a request signs the operator out
SESSION_LIFE_MAX_S = 10 * 60 * 60   # a long shift; then sign in again
SIGN_IN_FAILURES_MAX = 5            # wrong passwords in a row before the user is locked
LOCKOUT_S = 15 * 60
TOKEN_BYTES = 32

SESSION_PREFIX = keys.OPS_SESSION_PREFIX
FAILURES_PREFIX = keys.OPS_SIGN_IN_FAILURES_PREFIX


def _token_key(token: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def not_signed_in(detail: str = "") -> Unauthorized:
    return Unauthorized(Problem("operator_not_signed_in", "/ops", None,
                                "a session cookie from POST /ops/login, or HTTP Basic "
                                "credentials of an operator", detail))


def refused() -> Unauthorized:
    return Unauthorized(Problem("sign_in_refused", "/password", None,
                                "a known user and that user's password"))


class Auth:
    """Sign-in, sign-out and the operator behind a request."""

    def __init__(self, gw: Any, directory: Directory) -> None:
        self.gw = gw
        self.directory = directory

    async def check_password(self, user: str, password: str) -> Operator:
        """The operator whose password this is; refuses and counts a failure otherwise."""
        r = self.gw.redis
        loop = asyncio.get_running_loop()
        if not operators.USER_PATTERN.fullmatch(user):
            # No operator has such a name; nothing is counted, so junk names cannot
            # fill Redis, but the refusal takes as long as any other.
            await loop.run_in_executor(None, check_unknown_user, password)
            raise refused()
        failures = int(await r.get(FAILURES_PREFIX + user) or 0)
        if failures >= SIGN_IN_FAILURES_MAX:
            raise Unauthorized(Problem(
                "sign_in_locked_after_failures", "/user", user,
                f"fewer than {SIGN_IN_FAILURES_MAX} wrong passwords in a row",
                f"try again after {LOCKOUT_S // 60} minutes, or ask a supervisor"))
        operator = self.directory.get(user)
        if operator is None:
            ok = await loop.run_in_executor(None, check_unknown_user, password)
        else:
            ok = await loop.run_in_executor(None, verify_password, password,
                                            operator.password_hash)
        if not ok or operator is None:
            pipe = r.pipeline()
            pipe.incr(FAILURES_PREFIX + user)
            pipe.expire(FAILURES_PREFIX + user, LOCKOUT_S)
            await pipe.execute()
            raise refused()
        await r.delete(FAILURES_PREFIX + user)
        return operator

    async def start_session(self, operator: Operator) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        started_s, _ = await self.gw.redis.time()
        value = json.dumps({"user": operator.user, "started_s": int(started_s)})
        await self.gw.redis.set(_token_key(token), value, ex=SESSION_IDLE_S)
        return token

    async def end_session(self, request: web.Request) -> None:
        token = request.cookies.get(COOKIE)
        if token:
            await self.gw.redis.delete(_token_key(token))

    async def operator(self, request: web.Request) -> Operator:
        """The operator behind this request, from its session cookie or Basic credentials."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, password = parse_basic(header)
            return await self.check_password(user, password)
        token = request.cookies.get(COOKIE)
        if not token:
            raise not_signed_in()
        return await self.session_operator(token)

    async def session_operator(self, token: str) -> Operator:
        r = self.gw.redis
        raw = await r.get(_token_key(token))
        if raw is None:
            raise not_signed_in("the session has ended; sign in again")
        data = json.loads(raw)
        now_s, _ = await r.time()
        operator = self.directory.get(data["user"])
        if operator is None or now_s - data["started_s"] > SESSION_LIFE_MAX_S:
            await r.delete(_token_key(token))
            raise not_signed_in("the session has ended; sign in again")
        await r.expire(_token_key(token), SESSION_IDLE_S)
        return operator


def set_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        max_age=SESSION_LIFE_MAX_S, secure=request.secure)


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def parse_basic(header: str) -> tuple[str, str]:
    """User and password of an `Authorization: Basic ...` header."""
    if not header.startswith("Basic "):
        raise not_signed_in("the Authorization header is not Basic")
    try:
        text = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise not_signed_in("the Basic credentials are not base64 of user:password") \
            from None
    user, sep, password = text.partition(":")
    if not sep:
        raise not_signed_in("the Basic credentials are not base64 of user:password")
    return user, password
