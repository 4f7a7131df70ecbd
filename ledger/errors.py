"""The ledger's one refusal type.

A `LedgerError` names the broken bookkeeping rule with a stable snake_case code
(`payer_funds_insufficient`, `work_date_closed`, ...). It is a `PaygateError`, so the
API answers it with the product's one error shape and status 422 (409 for an event id
reused for a different posting, a conflict like a reused idempotency key). The codes are listed
in docs/ledger.md; they are never renamed or reused.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import PaygateError, Problem


class LedgerError(PaygateError):
    """A posting or account action the books refuse; nothing was written."""

    status = 422

    def __init__(self, code: str, value: Any = None, expected: str = "", path: str = "",
                 message: str = "", status: int | None = None) -> None:
        super().__init__(Problem(code, path, value, expected, message), status)
