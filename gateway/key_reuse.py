"""The refusal of a JSON transfer sent under an Idempotency-Key that an earlier request
with another body took: 409 `idempotency_key_reused_with_other_body`, naming the fields
that differ, as a ready message's refusal names the fields that differ from the first
message under its MsgId (gateway.ready).

The idempotency record keeps the first request's hash only. What that request asked for
is read back from the payment it made, whose row keeps every field a transfer takes
but `when_closed` (in the route's record only as the route used it), and from its
history for the urgency (an operator's new priority changes the payment's). A request
inside the same batch is compared with the other's body itself. Fields are compared by
meaning (gateway.intake.transfer_meaning: an amount of 100.0 is 100.00, a default spelt
out is the default, a payer name as the holder's is matched); a request that differs in
nothing compared (`when_closed` alone) is refused as before, under the key alone.

Other endpoints taking a key (queries, free text, debits, periodic credits) keep the
first request's body with the key and are refused the same way (`of_stored`, by the
endpoint's `Kind`): fields
compared by that endpoint's meaning of a request, each differing one named with the
first request's value as it wrote it, or the endpoint's default when it left it out.
A key kept before the body was kept with it is refused under the key alone.

Transfers, debits, periodic credits, and mandates and stop-payments (registered,
revoked, lifted: gateway.beps.mandates) share one key space per client. A request under
a key first taken by another of these kinds is refused with 409
`idempotency_key_used_for_other_kind`, naming the kind that took it (`first_kind`) and
the request's own (`kind`): their fields are not comparable, so none are named. The kind
is kept with the key (`kind`, null for a transfer). A debit's or periodic credit's key
kept before kinds were (a body kept, no kind) is known by the payment it made: its
message type says which (`kind_of`). Queries and free text keep their keys apart by
kind (gateway.queries.idempotency) and never meet these.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import jsontext, payments
from gateway.errors import Conflict, PaygateError, Problem
from gateway.intake import DEFAULTS, transfer_meaning
from gateway.messages import beps125, beps127
from gateway.money import format_yuan
from ledger.incoming import name_key

CODE = "idempotency_key_reused_with_other_body"
OTHER_KIND_CODE = "idempotency_key_used_for_other_kind"
TRANSFER = "transfer"
# A key whose body was kept without a kind, and whose payment is not found: a debit or a
# periodic credit (transfers keep no body), not known which.
NOT_RECORDED = "debit_or_periodic_credit"
# What each kind of request is called in a refusal (Kind.name, and TRANSFER).
KIND_LABELS = {TRANSFER: "a transfer (POST /v1/transfers)",
               "debit": "a debit (POST /v1/debits)",
               "periodic_credit": "a periodic credit (POST /v1/periodic-credits)",
               "debit_mandate": "a debit mandate (POST /v1/debit-mandates)",
               "debit_mandate_revoke": "a mandate's revocation "
                                       "(POST /v1/debit-mandates/revoke)",
               "debit_stop": "a stop-payment (POST /v1/debit-stops)",
               "debit_stop_lift": "the lift of a stop-payment (POST /v1/debit-stops/lift)",
               NOT_RECORDED: "a debit or a periodic credit (its kind was not recorded with "
                             "the key, and the payment it made is not found)"}
# The kind of request that made a payment, by the message type it goes out as (a
# transfer is never routed to either).
KIND_BY_MESSAGE_TYPE = {beps127.MESSAGE_TYPE: "debit",
                        beps125.MESSAGE_TYPE: "periodic_credit"}
# The fields of a transfer request that its payment keeps, in the order they are named;
# a request of the same batch is compared on `when_closed` too.
KEPT = ("payer_account", "payer_name", "payer_bank", "payee_account", "payee_name",
        "payee_bank", "amount", "currency", "business_type", "business_kind",
        "remittance_info", "urgency")
ALL = (*KEPT, "when_closed")
# The urgency a payment was asked with, by the priority its route gave it (an operator's
# new priority changes both; its history keeps the first).
URGENCY_BY_PRIORITY = {1: "extra_urgent", 2: "urgent", 3: "normal"}


@dataclass(frozen=True)
class First:
    """The first request under a key: what it asked for (`meaning`, as
    `transfer_meaning` writes a request), its fields as written (`written`), the fields
    known of it (`compared`) and the payment it made."""

    meaning: dict[str, Any]
    written: dict[str, Any]
    compared: tuple[str, ...] = KEPT
    payment_id: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=lambda: DEFAULTS)  # a field left out


def refused(key: str, body: Any, first: First | None,
            meaning: Callable[[Any], Any] = transfer_meaning,
            thing: str = "payment") -> Conflict:
    """The refusal of `body` under `key`, first taken by `first` (None: not known);
    `meaning` reads what a request asks for, `thing` names what it makes."""
    names = _differing(meaning(body), first) if first is not None else []
    made = f" for payment {first.payment_id}" if first and first.payment_id else ""
    head = Problem(CODE, "Idempotency-Key", key,
                   "the same body as the first request with this key",
                   f"Idempotency-Key {key} was taken{made} by a request that "
                   + (f"differs in {', '.join(names)}" if names else
                      f"asked for another {thing}")
                   + f"; a retry sends the same request, and a new {thing} needs a new key")
    if not names:
        return Conflict(head)
    asked = body if isinstance(body, dict) else {}
    problems = [head]
    for name in names:
        was = _shown(first.written.get(name, first.defaults.get(name)))
        problems.append(Problem(CODE, f"/{name}", asked.get(name),
                                f"{was}, as in the first request with this key",
                                f"the first request with Idempotency-Key {key}{made} asked "
                                f"for {name} {was}"))
    return Conflict(problems)


def kind_of(tx: Any, kind: str | None, request: str | None, answer: Any) -> str:
    """The kind of request that took a key, from its idempotency row: the kind kept with
    it; without one, a transfer when no body was kept either (transfers keep none), else
    (a debit or periodic credit kept before kinds were) the kind of the payment its
    stored `answer` names, read from the payment's message type; NOT_RECORDED when that
    payment is not found."""
    if kind is not None:
        return kind
    if request is None:
        return TRANSFER
    payment_id = answer.get("id") if isinstance(answer, dict) else None
    row = tx.query_one("SELECT msg_type FROM payments WHERE id = ?", (payment_id,)) \
        if isinstance(payment_id, str) else None
    if row is None:
        return NOT_RECORDED
    return KIND_BY_MESSAGE_TYPE.get(row[0], TRANSFER)


def other_kind(key: str, first: str, now: str, answer: Any = None) -> Conflict:
    """The refusal of a request of kind `now` under `key`, taken by one of kind `first`
    (whose stored `answer` names the payment it made)."""
    payment_id = answer.get("id") if isinstance(answer, dict) else None
    made = f" for payment {payment_id}" if isinstance(payment_id, str) else ""
    was, asked = KIND_LABELS.get(first, first), KIND_LABELS.get(now, now)
    return Conflict(Problem(
        OTHER_KIND_CODE, "Idempotency-Key", key,
        f"a key not taken by another kind of request; this one was taken by {was}",
        f"Idempotency-Key {key} was taken{made} by {was}, and this request is {asked}: "
        f"a key stands for one request of one kind, so this one needs a new key",
        (("first_kind", first), ("kind", now))))


async def refused_or_replayed(store: Any, refusal: PaygateError,
                              replay: Callable[[Any], Any]) -> Any:
    """What a request refused for its body (`refusal`) under its checked key answers: the
    answer stored for it when `replay(tx)` finds the same request kept under the key
    (the request was taken, whatever is refused in it now); the key's refusal (409) when
    `replay` raises it, another request having taken the key, as a valid body would be
    refused; else `refusal`, raised. Looked up only for a refused body: a request taken
    meets its key in its own transaction, and nothing is added on that way."""
    stored = await store.run(replay)
    if stored is None:
        raise refusal
    return stored


def refused_transfer(tx: Any, client: str, key: str, body: Any, answer: Any) -> Conflict:
    """The refusal of a transfer under `key` whose first request asked for something
    else: another kind of request (`other_kind`), or another transfer (`refused`, naming
    the fields that differ from the payment it made)."""
    row = tx.query_one("SELECT kind, request FROM idempotency WHERE client = ? AND key = ?",
                       (client, key))
    first = kind_of(tx, *row, answer) if row is not None else TRANSFER
    if first != TRANSFER:
        return other_kind(key, first, TRANSFER, answer)
    return refused(key, body, of_payment(tx, answer))


def _differing(now: Any, first: First) -> list[str]:
    if not isinstance(now, dict):
        return []
    defaults = first.defaults
    return [name for name in first.compared
            if now.get(name, defaults.get(name)) != first.meaning.get(name, defaults.get(name))]


def _shown(value: Any) -> str:
    """A first value as the request writes it: text as it is, anything else in JSON's
    spelling (a list of remittance lines); none for a field left out."""
    if value is None:
        return "none"
    return value if isinstance(value, str) else jsontext.dumps(value)


def of_body(body: Any, meaning: Callable[[Any], Any] = transfer_meaning,
            compared: tuple[str, ...] = ALL,
            defaults: Mapping[str, Any] = DEFAULTS) -> First:
    """The first request under the key read from its body (one of the same batch, or
    one kept with its key), as `meaning` reads it; `compared` its fields in the order
    they are named, `defaults` what those left out ask for."""
    written = body if isinstance(body, dict) else {}
    found = meaning(body)
    return First(found if isinstance(found, dict) else {}, written, compared,
                 defaults=defaults)


@dataclass(frozen=True)
class Kind:
    """A kind of request kept by key with its first body: its name, what a request of
    it asks for (`meaning`), its fields in the order a refusal names them, what those
    left out ask for, and what a request makes."""

    name: str
    meaning: Callable[[Any], Any]
    fields: tuple[str, ...]
    defaults: Mapping[str, Any]
    thing: str


def of_stored(kind: Kind, key: str, body: Any, stored: str | None) -> Conflict:
    """The refusal of `body` under `key`, whose first request of this kind was kept
    with it as `stored` (`kept`; None: kept without it, refused under the key alone)."""
    first = None if stored is None else of_body(json.loads(stored), kind.meaning,
                                                kind.fields, kind.defaults)
    return refused(key, body, first, kind.meaning, kind.thing)


def kept(body: Any) -> str:
    """A request's body as it is kept with its key, for `of_stored`."""
    return jsontext.dumps(body)


def of_payment(tx: Any, answer: Any) -> First | None:
    """The first request under a key, read back from the payment its stored `answer`
    names; None when the answer names no payment of ours."""
    payment_id = answer.get("id") if isinstance(answer, dict) else None
    if not isinstance(payment_id, str) or tx.query_one(
            "SELECT 1 FROM payments WHERE id = ?", (payment_id,)) is None:
        return None
    p = payments.get(tx, payment_id)
    written: dict[str, Any] = {name: p[name] for name in (
        "payer_account", "payer_name", "payer_bank", "payee_account", "payee_name",
        "payee_bank", "currency", "business_type", "business_kind")}
    written.update(amount=format_yuan(p["amount_fen"]), urgency=_asked_urgency(tx, p),
                   remittance_info=list(p["remittance"]) or None)
    meaning = {**written, "payer_name": name_key(p["payer_name"])}
    return First(meaning, written, KEPT, payment_id)


def _asked_urgency(tx: Any, p: dict[str, Any]) -> str:
    changed = [e["detail"] for e in payments.history(tx, p["id"])
               if e["event"] == "ops_priority_changed"]
    if changed and changed[0].get("priority_from") in URGENCY_BY_PRIORITY:
        return URGENCY_BY_PRIORITY[changed[0]["priority_from"]]
    return p["urgency"]
