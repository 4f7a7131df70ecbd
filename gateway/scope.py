"""Which of our customer accounts a core-system client may use (`api_balance_accounts`).

The setting maps a client to account numbers, prefixes ending in `*`, or `*`. Empty, it
limits no one. Set, a client reads the balance of, and pays from, only the accounts its
entry covers; a client without an entry covers none. A request naming an account outside
the client's entry is refused 403 before the ledger or a stored answer is read, so that
no answer (a balance, a funds refusal naming the balance, account_not_found,
account_frozen...) tells the client about an account it may not use. The endpoints check
it (gateway.api, gateway.beps.api): payments the gateway makes itself (demo, day
simulation, the operators' test transfers) are no client's and are not limited.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.errors import Forbidden, Problem

log = logging.getLogger(__name__)

# The code of a payment refused for naming an account outside the client's scope.
ACCOUNT_OUT_OF_SCOPE = "account_outside_client_scope"


def covers(scopes: dict[str, list[str]], client: str, account_no: str) -> bool:
    """Whether `client` may use `account_no` under `scopes`: always while the setting is
    empty; else only when its entry has the number, a prefix of it ending in `*`, or `*`."""
    if not scopes:
        return True
    return any(account_no == e or (e.endswith("*") and account_no.startswith(e[:-1]))
               for e in scopes.get(client, ()))


def why_not(scopes: dict[str, list[str]], client: str, account_no: str,
            use: str) -> str:
    """The message of a refusal of `account_no` to `client` (`use`: what it asked for,
    "read the balance of", "pay from"...)."""
    if client not in scopes:
        return (f"client {client!r} has no entry in api_balance_accounts: it may "
                f"{use} no account")
    return (f"account {account_no} is not among those api_balance_accounts lets client "
            f"{client!r} {use}")


def payment_problem(scopes: dict[str, list[str]], client: str, body: Any,
                    path: str = "/payer_account", use: str = "pay from") -> Problem | None:
    """Why a payment `client` asks for may not name the account at `path` (a JSON pointer
    to a top-level field of the request `body`), or None when it may, or when there is
    no account there (the request's own field checks tell that)."""
    account = body.get(path[1:]) if isinstance(body, dict) else None
    if not isinstance(account, str) or covers(scopes, client, account):
        return None
    log.warning("event=payment_account_forbidden client=%s account=%s path=%s",
                client, account, path)
    return Problem(ACCOUNT_OUT_OF_SCOPE, path, account,
                   "an account the client's entry in api_balance_accounts covers",
                   why_not(scopes, client, account, use))


def refuse_payment(scopes: dict[str, list[str]], client: str, body: Any,
                   path: str = "/payer_account", use: str = "pay from") -> None:
    """Raise 403 `account_outside_client_scope` when `payment_problem` finds one."""
    found = payment_problem(scopes, client, body, path, use)
    if found is not None:
        raise Forbidden(found)
