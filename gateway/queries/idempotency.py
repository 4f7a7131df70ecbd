"""Idempotency of the core system's query and free-format requests (ARCHITECTURE.md §2).

The same client, key and request replays the stored answer; the same key with another
request is refused with 409. A retry is compared by what it asks for, not by its text
(the request's meaning, gateway.queries.requests; intake.same_transfer), as transfers
are, and refused naming each field that differs, with the first request's value, as a
transfer is (gateway.key_reuse: the first body is kept with its key). Keys are kept per
kind of request, so a key the client used for a transfer or a query never collides
with one used for free text.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway import intake, key_reuse
from gateway.errors import PaygateError, Problem

KEY_LEN_MAX = 64


def check_key(key: str | None) -> str:
    if not key or len(key) > KEY_LEN_MAX:
        raise PaygateError(Problem("idempotency_key_required", "Idempotency-Key", key,
                                   f"a header Idempotency-Key of 1 to {KEY_LEN_MAX} "
                                   "characters"), 400)
    return key


def replay(tx: Any, client: str, kind: key_reuse.Kind, key: str, body: Any,
           body_sha256: str) -> tuple[int, dict[str, Any]] | None:
    """The answer stored under the key for this request (`body`, whose hash by meaning is
    `body_sha256`), None for a new key; another request under it is refused (409),
    naming each field that differs from the first request's."""
    stored = tx.query_one("SELECT body_sha256, status, response, request FROM "
                          "query_requests WHERE client = ? AND key = ?",
                          (client, f"{kind.name}:{key}"))
    if stored is None:
        return None
    if not intake.same_transfer(stored[0], body_sha256, body):
        raise key_reuse.of_stored(kind, key, body, stored[3])
    return stored[1], json.loads(stored[2])


def remember(tx: Any, client: str, kind: key_reuse.Kind, key: str, body: Any, body_sha256: str,
             status: int, response: dict[str, Any], now: datetime) -> None:
    tx.execute("INSERT INTO query_requests (client, key, body_sha256, status, response, "
               "request, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (client, f"{kind.name}:{key}", body_sha256, status,
                json.dumps(response, ensure_ascii=False), key_reuse.kept(body),
                now.isoformat()))
