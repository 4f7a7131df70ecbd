"""Answers of the console's routes: JSON with the product's error shape, safe headers,
and the checks every changing request passes before it is read.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.api import parse_json, refuse_other_media_type
from gateway.errors import Forbidden, PaygateError, Problem, ValidationFailed

BODY_LEN_MAX = 64 * 1024  # an action or a sign-in is a few hundred bytes
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def json_response(data: Any, status: int = 200) -> web.Response:
    response = web.Response(text=json.dumps(data, ensure_ascii=False, default=str),
                            status=status, content_type="application/json")
    response.headers.update(SECURITY_HEADERS)
    return response


def error_response(exc: PaygateError) -> web.Response:
    return json_response(exc.to_dict(), exc.status)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object of a changing request, from this site only."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise Forbidden(Problem("cross_site_request_refused", "Origin", origin,
                                f"a request from the console's own site, {request.host}"))
    refuse_other_media_type(request)  # 415, as on every JSON endpoint
    if request.content_length is not None and request.content_length > BODY_LEN_MAX:
        # 413, as the core system's API answers it (gateway.api.read_body).
        raise PaygateError(Problem("body_too_large", "/", request.content_length,
                                   f"at most {BODY_LEN_MAX} bytes"), 413)
    # Read as the core system's API reads its bodies (gateway.api.parse_json): a member
    # name given twice is refused (`json_key_duplicate`), never taken last, so that
    # {"action": "hold", "action": "cancel"} cannot be recorded as either.
    body = parse_json(await request.read())
    if not isinstance(body, dict):
        raise ValidationFailed(Problem("body_must_be_a_json_object", "/", None,
                                       "a JSON object"))
    return body
