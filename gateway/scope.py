"""Which of our customer accounts a core-system client may use (`api_balance_accounts`).

The setting maps a client to account numbers, prefixes ending in `*`, or `*`. Empty, it
limits no one. Set, a client reads the balance of, and moves money on, only the accounts
its entry covers; a client without an entry covers none. Moving money is paying from
the account, collecting into it, returning an incoming payment from it (the account
credited, or our suspense account: gateway.exceptions.returns), cancelling a payment
from it (`refuse_payer_outside`), and registering, revoking, stopping or lifting the
debit mandates that let other banks take from it (gateway.beps.mandates). A request
naming an account outside the client's entry is refused 403 before the ledger or a
stored answer is read, so that no answer (a balance, a funds refusal naming the
balance, account_not_found, account_frozen...) tells the client about an account it
may not use. The endpoints check it (gateway.api, gateway.beps.api): payments the
gateway makes itself (demo, day simulation, the operators' test transfers) are no
client's and are not limited.

Which payments a client sees starts from who made them (`shown`): with client
credentials (`api_keys`), those it submitted and those no client submitted (`owns`),
and another client's book transfer once settled to an account its entry covers, seen
as a credit to that account as an incoming payment is (`credit_seen`), acted on only by
its submitter (`refuse_unowned`).

A client with an entry sees of those only the payments with an account of ours the entry
covers (`sees_payment`), an incoming payment judged by the account its money is on: the
one its message named, the one an operator applied it to from suspense (销账,
`CREDITED_SQL`), which a return takes the money back from, or our suspense account
while the money waits there (挂账) and once it was returned from there
(`IN_SUSPENSE_SQL`). The suspense account is no customer's: only an entry of `*`
(every account) covers it, so that a client scoped to some customers' accounts neither
sees nor returns money that may belong to none of them (the account the message named
may not exist, or be held under another name) until an operator applies it to one.
Another is answered as an id never given (404, the same body), on GET
/v1/transfers/{id} and the exception flows' routes, and left out of the listing by its
query (`payments_condition`), so that its pages stay full. A client without an entry
keeps what it saw before the setting there: its own payments and incoming ones (it
sees them, but returns or cancels none: it may move money on no account). The
same rules hold for the queries a client opens about a payment (gateway.queries).

What names no payment of ours (a query about a payment we do not have, free text, a
bank's reply to no query of ours) is judged by who made it (`sees_unattached`): with
client credentials, the client that made it sees it and no other; what no client made
(a bank's, the gateway's own) is seen by a client `unlimited` by the setting (no entry,
or `*`), since it may concern any account, and by operators.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from gateway import payments
from gateway.errors import Forbidden, NotFound, Problem

log = logging.getLogger(__name__)

# The account of ours an incoming payment's money was moved to when it is not the one its
# message named (gateway.exceptions: a suspense item applied to a customer account, 销账):
# an SQL expression over the payment's id, `payments.id`, NULL when the money was not
# moved. Set by the module that moves it; None: the money is on the account named.
CREDITED_SQL: str | None = None
# Whether an incoming payment's money is in our suspense account (not applied to a
# customer's), or was when it was returned from there (gateway.exceptions): an SQL
# condition over the row `payments`, never NULL. Set by the module that keeps suspense
# items; None: no payment's money is judged so.
IN_SUSPENSE_SQL: str | None = None

# The code of a payment refused for naming an account outside the client's scope.
ACCOUNT_OUT_OF_SCOPE = "account_outside_client_scope"
# The code of an action on a payment a client sees only as a credit to its account (a
# book transfer another client submitted, `credit_seen`): it is the submitter's to act on.
OTHER_CLIENTS = "payment_submitted_by_another_client"
# The channel of a book transfer (系统内, gateway.internal_hold): both accounts ours.
BOOK_TRANSFER_CHANNEL = "internal"


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
    if not names_outside(scopes, client, body, path):
        return None
    account = body[path[1:]]
    log.warning("event=payment_account_forbidden client=%s account=%s path=%s",
                client, account, path)
    return Problem(ACCOUNT_OUT_OF_SCOPE, path, account,
                   "an account the client's entry in api_balance_accounts covers",
                   why_not(scopes, client, account, use))


def money_place(tx: Any, payment: dict[str, Any]) -> tuple[str | None, bool]:
    """Where an incoming `payment`'s money is when not on the account its message named:
    (the account it was applied to, `CREDITED_SQL`, or None; whether it is in our
    suspense account, `IN_SUSPENSE_SQL`). (None, False) for an outgoing one."""
    if payment.get("direction") != "in":
        return None, False
    credited = "NULL" if CREDITED_SQL is None else CREDITED_SQL
    in_suspense = "1 = 0" if IN_SUSPENSE_SQL is None else IN_SUSPENSE_SQL
    row = tx.query_one(f"SELECT {credited}, CASE WHEN {in_suspense} THEN 1 ELSE 0 END "
                       "FROM payments WHERE id = ?", (payment["id"],))
    return (row[0], bool(row[1])) if row else (None, False)


def own_accounts(payment: dict[str, Any], own_banks: frozenset[str],
                 credited: str | None = None, in_suspense: bool = False) -> list[str]:
    """A payment's customer accounts that are ours: its payer's when the payer's bank is
    one of ours; the account its money was `credited` to (`money_place`) when given,
    none while the money is `in_suspense` (our suspense account, no customer's), else
    its payee's when the payee's bank is one of ours (both sides, for a book transfer)."""
    accounts = [payment["payer_account"]] if payment.get("payer_bank") in own_banks else []
    if credited is not None:
        accounts.append(credited)
    elif not in_suspense and payment.get("payee_bank") in own_banks:
        accounts.append(payment["payee_account"])
    return accounts


def unlimited(scopes: dict[str, list[str]], client: str) -> bool:
    """Whether `client` sees payments whatever their accounts: it has no entry (see
    `sees_payment`), or its entry covers every account (`*`). Only such a client sees
    money in our suspense account, and what names no payment of ours and no client made
    (`sees_unattached`)."""
    return client not in scopes or "*" in scopes[client]


def sees_payment(scopes: dict[str, list[str]], client: str, payment: dict[str, Any],
                 own_banks: frozenset[str], credited: str | None = None,
                 in_suspense: bool = False) -> bool:
    """Whether `client` may see (read, list, return, query) `payment` under `scopes`:
    its entry covers every account (`*`), or one of the payment's accounts of ours
    (`own_accounts`; `credited`, `in_suspense`: where its money is, `money_place`). A
    client without an entry is not limited here (it sees what it saw before the
    setting: its own payments and the incoming ones), unlike for balances and paying,
    where it covers no account."""
    if unlimited(scopes, client):
        return True
    return any(covers(scopes, client, account)
               for account in own_accounts(payment, own_banks, credited, in_suspense))


def refuse_unseen(tx: Any, scopes: dict[str, list[str]], client: str,
                  payment: dict[str, Any], own_banks: frozenset[str], where: str) -> None:
    """Refuse `payment` to `client` when `sees_payment` says no (its money's account read
    in `tx`): 404 as for an id never given (payments.not_found), the same answer in every
    field, so that the refusal tells nothing of it; logged (`where`: the request's path)."""
    if unlimited(scopes, client) or sees_payment(scopes, client, payment, own_banks,
                                                 *money_place(tx, payment)):
        return
    log.warning("event=payment_outside_client_scope client=%s payment=%s path=%s",
                client, payment["id"], where)
    raise payments.not_found(payment["id"])


def owns(settings: Any, client: str, payment: dict[str, Any]) -> bool:
    """Whether `payment` is `client`'s to see and act on by who made it: with client
    credentials configured (`api_keys`), one it submitted or one no client submitted
    (an incoming payment; the gateway's own: a return operators or the gateway made, a
    demo's or an operator's test transfer); without them, every payment."""
    return not settings.api_keys or payment.get("client") in (None, client)


def credit_seen(settings: Any, client: str, payment: dict[str, Any],
                own_banks: frozenset[str]) -> bool:
    """Whether `client`, with an entry in api_balance_accounts, sees `payment` as a
    credit to an account of ours its entry covers although another client submitted
    it: a book transfer (系统内) once settled, its money on the payee's account, as an
    incoming payment to that account is seen. One held for review, cancelled or refused
    credited nothing and stays its submitter's alone. Only seen: acting on it is its
    submitter's (`refuse_unowned`)."""
    scopes = settings.api_balance_accounts
    return (client in scopes and payment.get("channel") == BOOK_TRANSFER_CHANNEL
            and payment.get("state") == "settled" and payment.get("payee_bank") in own_banks
            and covers(scopes, client, payment["payee_account"]))


def refuse_unowned(settings: Any, client: str, payment: dict[str, Any],
                   own_banks: frozenset[str], where: str, path: str = "/id") -> None:
    """Refuse `client` an action (a return, a cancel, a query) on a payment it does not
    `own`: 403 `payment_submitted_by_another_client` for one it sees as a credit
    (`credit_seen`: telling so tells it nothing it cannot read), else 404 as for an id
    never given (payments.not_found); `path` names the payment's id in the request."""
    if owns(settings, client, payment):
        return
    log.warning("event=payment_of_another_client client=%s payment=%s path=%s", client,
                payment["id"], where)
    if credit_seen(settings, client, payment, own_banks):
        raise Forbidden(Problem(
            OTHER_CLIENTS, path, payment["id"], "a payment this client submitted, or an "
            "incoming one", f"payment {payment['id']} is a book transfer another client "
            "submitted, shown to this one as a credit to an account its entry in "
            "api_balance_accounts covers: only the client that submitted it acts on it"))
    raise NotFound([replace(p, path=path)
                    for p in payments.not_found(payment["id"]).problems])


def refuse_payer_outside(scopes: dict[str, list[str]], client: str,
                         payment: dict[str, Any], own_banks: frozenset[str],
                         use: str = "cancel payments from") -> None:
    """403 `account_outside_client_scope` at `/payer/account` (the payment's field as
    GET /v1/transfers/{id} shows it) when `client` acts on an outgoing payment whose
    payer account of ours its entry does not cover, or when it has no entry: a cancel
    moves the payer's money as paying does, and is bounded as paying is."""
    account = payment["payer_account"]
    if payment.get("direction") != "out" or payment.get("payer_bank") not in own_banks \
            or covers(scopes, client, account):
        return
    log.warning("event=payment_account_forbidden client=%s account=%s payment=%s",
                client, account, payment["id"])
    raise Forbidden(Problem(ACCOUNT_OUT_OF_SCOPE, "/payer/account", account,
                            "an account the client's entry in api_balance_accounts covers",
                            why_not(scopes, client, account, use)))


def shown(settings: Any, client: str, payment: dict[str, Any],
          own_banks: frozenset[str]) -> bool:
    """Whether `payment` is one `client` may see by who made it: one it `owns`, or one
    it sees as a credit to its account (`credit_seen`)."""
    return owns(settings, client, payment) or credit_seen(settings, client, payment,
                                                          own_banks)


def sees(tx: Any, settings: Any, client: str, payment: dict[str, Any],
         own_banks: frozenset[str]) -> bool:
    """Whether `client` may see `payment` at all: by who made it (`shown`) and, with its
    entry in api_balance_accounts, by its accounts (`sees_payment`, its money's account
    read in `tx`)."""
    if not shown(settings, client, payment, own_banks):
        return False
    scopes = settings.api_balance_accounts
    return unlimited(scopes, client) or sees_payment(scopes, client, payment, own_banks,
                                                     *money_place(tx, payment))


def owner_condition(settings: Any, client: str, own_banks: frozenset[str]
                    ) -> tuple[str, list[Any]] | None:
    """`shown` as an SQL condition on the payments table, with its parameters; None
    when the client sees every payment by who made it (no `api_keys`)."""
    if not settings.api_keys:
        return None
    parts, params = ["client = ?", "client IS NULL"], [client]
    entries = settings.api_balance_accounts.get(client)
    if entries:
        tests, values = _entry_tests("payee_account", entries)
        banks = sorted(own_banks)
        parts.append(f"(channel = ? AND state = 'settled' AND payee_bank IN "
                     f"({', '.join('?' for _ in banks)}) AND ({' OR '.join(tests)}))")
        params += [BOOK_TRANSFER_CHANNEL, *banks, *values]
    return "(" + " OR ".join(parts) + ")", params


def listing_condition(settings: Any, client: str, own_banks: frozenset[str]
                      ) -> tuple[str, list[Any]] | None:
    """`sees` as an SQL condition on the payments table, with its parameters (both
    `owner_condition` and `payments_condition`); None when the client sees every
    payment."""
    found = [c for c in (owner_condition(settings, client, own_banks),
                         payments_condition(settings.api_balance_accounts, client,
                                            own_banks)) if c is not None]
    if not found:
        return None
    return " AND ".join(c[0] for c in found), [v for c in found for v in c[1]]


def seen_ids(settings: Any, client: str, own_banks: frozenset[str]
             ) -> tuple[str, list[Any]] | None:
    """`sees` as an SQL subquery of the ids of the payments `client` sees, with its
    parameters, for a column holding a payment id to be tested `IN` it (a package's
    items, the queries about payments); None when it sees every payment."""
    condition = listing_condition(settings, client, own_banks)
    if condition is None:
        return None
    return f"(SELECT id FROM payments WHERE {condition[0]})", condition[1]


def _entry_tests(column: str, entries: list[str]) -> tuple[list[str], list[Any]]:
    """SQL tests of `column` against each entry of a client (`covers`), with their
    parameters: equal to a number, starting with a prefix, anything for `*`."""
    tests, values = [], []
    for entry in entries:
        if entry.endswith("*"):
            tests.append(f"substr({column}, 1, {len(entry) - 1}) = ?")
            values.append(entry[:-1])
        else:
            tests.append(f"{column} = ?")
            values.append(entry)
    return tests, values


def payments_condition(scopes: dict[str, list[str]], client: str,
                       own_banks: frozenset[str]) -> tuple[str, list[Any]] | None:
    """`sees_payment` as an SQL condition on the payments table, with its parameters,
    for a listing to page on the payments the client sees; None when it sees every one
    (no entry, or `*`)."""
    if unlimited(scopes, client):
        return None
    entries = scopes[client]
    banks = sorted(own_banks)
    ours = ", ".join("?" for _ in banks)
    sides, params = [], []
    for side in ("payer", "payee"):
        account, bank_ok = f"{side}_account", f"{side}_bank IN ({ours})"
        if side == "payee" and CREDITED_SQL is not None:
            account = f"COALESCE({CREDITED_SQL}, payee_account)"
            bank_ok = f"({CREDITED_SQL} IS NOT NULL OR {bank_ok})"
        if side == "payee" and IN_SUSPENSE_SQL is not None:
            bank_ok = f"(NOT {IN_SUSPENSE_SQL} AND {bank_ok})"
        tests, values = _entry_tests(account, entries)
        if tests:
            sides.append(f"({bank_ok} AND ({' OR '.join(tests)}))")
            params += [*banks, *values]
    return ("(" + " OR ".join(sides) + ")" if sides else "1 = 0"), params


def sees_owned(settings: Any, client: str, owner: str | None) -> bool:
    """Whether `client`, who sees the payment an item is about (a query, its chases and
    the replies to it), may see the item, made by the client `owner` or by none: with
    client credentials (`api_keys`), what a client made is that client's alone, since its
    text is the client's own words about its customer; what no client made (a bank's
    query, one the gateway opened) goes with the payment, to every client that sees it.
    Operators, who are no client, see everything."""
    return owner is None or not settings.api_keys or owner == client


def owned_condition(settings: Any, client: str,
                    column: str = "client") -> tuple[str, list[Any]] | None:
    """`sees_owned` as an SQL condition on the `column` holding an item's client (NULL: no
    client made it), with its parameters; None when the client sees every one."""
    if not settings.api_keys:
        return None
    return f"({column} IS NULL OR {column} = ?)", [client]


def sees_unattached(settings: Any, client: str, owner: str | None) -> bool:
    """Whether `client` may see an item that names no payment of ours (a query about a
    payment we do not have or about a package, free text, a bank's reply to no query of
    ours), made by the client `owner`, or by none (a bank's, the gateway's own): with
    client credentials (`api_keys`), one a client made is that client's alone; one no
    client made may concern any account, and is seen by a client `unlimited` by
    api_balance_accounts (and by operators, who are no client)."""
    if owner is not None:
        return sees_owned(settings, client, owner)
    return unlimited(settings.api_balance_accounts, client)


def unattached_condition(settings: Any, client: str,
                         column: str = "client") -> tuple[str, list[Any]] | None:
    """`sees_unattached` as an SQL condition on the `column` holding an item's client
    (NULL: no client made it), with its parameters; None when the client sees every
    one."""
    everything = unlimited(settings.api_balance_accounts, client)
    if not settings.api_keys:
        return None if everything else (f"{column} IS NOT NULL", [])
    if everything:
        return f"({column} = ? OR {column} IS NULL)", [client]
    return f"{column} = ?", [client]


def names_outside(scopes: dict[str, list[str]], client: str, body: Any,
                  path: str = "/payer_account") -> bool:
    """Whether the request `body` names at `path` an account outside `client`'s scope
    (not logged: `payment_problem` tells and logs the refusal)."""
    account = body.get(path[1:]) if isinstance(body, dict) else None
    return isinstance(account, str) and not covers(scopes, client, account)


def refuse_payment(scopes: dict[str, list[str]], client: str, body: Any,
                   path: str = "/payer_account", use: str = "pay from") -> None:
    """Raise 403 `account_outside_client_scope` when `payment_problem` finds one."""
    found = payment_problem(scopes, client, body, path, use)
    if found is not None:
        raise Forbidden(found)
