"""Idempotency of the core system's query and free-format requests (ARCHITECTURE.md §2).

The same client, key and request replays the stored answer; the same key with another
request is refused with 409. A retry is compared by what it asks for, not by its text
(the request's meaning, gateway.queries.requests; intake.same_transfer), as transfers
are. Keys are kept per kind of request, so a key the client used for a transfer or a
query never collides with one used for free text.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway import intake
from gateway.errors import Conflict, PaygateError, Problem

KEY_LEN_MAX = 64


def check_key(key: str | None) -> str:
    if not key or len(key) > KEY_LEN_MAX:
        raise PaygateError(Problem("idempotency_key_required", "Idempotency-Key", key,
                                   f"a header Idempotency-Key of 1 to {KEY_LEN_MAX} "
                                   "characters"), 400)
    return key


def replay(tx: Any, client: str, kind: str, key: str, body: Any,
           body_sha256: str) -> tuple[int, dict[str, Any]] | None:
    """The answer stored under the key for this request (`body`, whose hash by meaning is
    `body_sha256`), None for a new key; another request under it is refused (409)."""
    stored = tx.query_one("SELECT body_sha256, status, response FROM query_requests "
                          "WHERE client = ? AND key = ?", (client, f"{kind}:{key}"))
    if stored is None:
        return None
    if not intake.same_transfer(stored[0], body_sha256, body):
        raise Conflict(Problem("idempotency_key_reused_with_other_body", "Idempotency-Key",
                               key, "the same body as the first request with this key"))
    return stored[1], json.loads(stored[2])


def remember(tx: Any, client: str, kind: str, key: str, body_sha256: str, status: int,
             response: dict[str, Any], now: datetime) -> None:
    tx.execute("INSERT INTO query_requests (client, key, body_sha256, status, response, "
               "created_at) VALUES (?, ?, ?, ?, ?, ?)",
               (client, f"{kind}:{key}", body_sha256, status,
                json.dumps(response, ensure_ascii=False), now.isoformat()))
