"""What the BEPS endpoints of their own share: idempotency by key and finding the direct
participant that receives a package for a bank of another participant.

Idempotency works as for POST /v1/transfers (ARCHITECTURE.md, decision 2): the same key
and request answers the stored result, the same key with another request is a 409; a
retry is compared by what it asks for, not by its text (intake.same_transfer).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

from gateway import intake, key_reuse, payments
from gateway.errors import Conflict, PaygateError, Problem, ValidationFailed
from gateway.money import format_yuan


def submit_once(tx: Any, client: str, idem_key: str, body: Any, kind: key_reuse.Kind,
                now: datetime, make: Callable[[Any], dict[str, Any]], status: int = 201
                ) -> tuple[int, dict[str, Any], bool]:
    """(status, view, created): the stored answer for this key, or `make(tx)`'s, stored
    with the request's body and answered with `status`. The request is compared by what
    it asks for (`kind`'s meaning, its hash intake.meaning_sha256); another request
    under the key is refused naming each field that differs (gateway.key_reuse); a key
    first taken by another kind of request (a transfer, a debit, a periodic credit, a
    mandate or stop and their withdrawal) is refused saying so."""
    body_hash = intake.meaning_sha256(kind.meaning(body))
    replayed = _replay(tx, client, idem_key, body, kind, body_hash)
    if replayed is not None:
        return *replayed, False
    view = make(tx)
    tx.execute("INSERT INTO idempotency (client, key, body_sha256, status, response, "
               "request, kind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (client, idem_key, body_hash, status, json.dumps(view, ensure_ascii=False),
                key_reuse.kept(body), kind.name, now.isoformat()))
    return status, view, True


def _replay(tx: Any, client: str, idem_key: str, body: Any, kind: key_reuse.Kind,
            body_hash: str) -> tuple[int, dict[str, Any]] | None:
    """The answer stored under the key for this request, None for a new key; another
    request, or another kind of request, under it is refused (409)."""
    stored = tx.query_one("SELECT body_sha256, status, response, request, kind "
                          "FROM idempotency WHERE client = ? AND key = ?", (client, idem_key))
    if stored is None:
        return None
    answer = payments.answer_of(tx, stored[2])
    first = key_reuse.kind_of(tx, stored[4], stored[3], answer)
    # Not recorded (its payment not found): compared as this kind, as before kinds
    # were kept; the same request again is a repeat.
    if first not in (kind.name, key_reuse.NOT_RECORDED):
        raise key_reuse.other_kind(idem_key, first, kind.name, answer)
    if not intake.same_transfer(stored[0], body_hash, body):
        raise key_reuse.of_stored(kind, idem_key, body, stored[3])
    return stored[1], answer


def replay(tx: Any, client: str, idem_key: str, body: Any, kind: key_reuse.Kind
           ) -> tuple[int, dict[str, Any]] | None:
    """The answer stored under the key for this same request (`kind`), read only; None
    for a new key; another request, or another kind of request, under it is refused
    (409)."""
    return _replay(tx, client, idem_key, body, kind, intake.meaning_sha256(kind.meaning(body)))


def stored_answer(tx: Any, client: str, idem_key: str, body: Any, kind: key_reuse.Kind
                  ) -> tuple[int, dict[str, Any]] | None:
    """`replay`, None for another request under the key too (whose refusal is not told
    here)."""
    try:
        return replay(tx, client, idem_key, body, kind)
    except Conflict:
        return None


async def refused(gw: Any, client: str, idem_key: str, body: Any, kind: key_reuse.Kind,
                  refusal: PaygateError) -> tuple[int, dict[str, Any]]:
    """The answer to a request of `kind` whose body is refused (`refusal`) under its
    checked key: the answer stored for the same request, the key's refusal (409) when
    another request took it, else `refusal` raised (key_reuse.refused_or_replayed)."""
    return await key_reuse.refused_or_replayed(
        gw.store, refusal, lambda tx: replay(tx, client, idem_key, body, kind))


KEY_LEN_MAX = 64  # as POST /v1/transfers takes it (gateway.app, openapi.yaml)


def require_key(idem_key: str | None) -> str:
    """The request's Idempotency-Key, refused as POST /v1/transfers refuses it: missing,
    longer than KEY_LEN_MAX, or not printable ASCII."""
    expected = f"a header Idempotency-Key of 1 to {KEY_LEN_MAX} printable ASCII characters"
    if not idem_key:
        raise PaygateError(Problem("idempotency_key_required", "Idempotency-Key", None,
                                   expected), 400)
    if len(idem_key) > KEY_LEN_MAX or not idem_key.isascii() or not idem_key.isprintable():
        raise PaygateError(Problem("idempotency_key_malformed", "Idempotency-Key", idem_key,
                                   expected), 400)
    return idem_key


# The refusal when the other bank settles through our own clearing account, by role.
SHARED_ACCOUNT_CODES = {"/debtor_bank": "debtor_bank_shares_our_clearing_account",
                        "/payee_bank": "payee_bank_shares_our_clearing_account"}


def receiving_direct(gw: Any, bank: str, path: str, business_type: str,
                     amount_fen: int, amount: Any) -> str:
    """The direct participant of another bank, within the BEPS cap for the type; an
    amount over it is refused showing `amount` as the request wrote it, and the cap."""
    row = gw.router.directory.lookup(bank, gw.work_date, path)
    if row.direct_participant == gw.settings.bank_code:
        raise ValidationFailed(Problem(
            SHARED_ACCOUNT_CODES[path], path, bank,
            "a bank of another direct participant (ours are book transfers)"))
    if gw.router.limits.over(amount_fen, business_type, gw.work_date):
        cap = format_yuan(gw.router.limits.limit_for(business_type, gw.work_date).cap_fen)
        raise ValidationFailed(Problem(
            "amount_over_beps_limit", "/amount", amount,
            f"an amount within the BEPS cap of {cap} yuan for {business_type}",
            f"{format_yuan(amount_fen)} yuan is above the BEPS cap of {cap} yuan for "
            f"{business_type}"))
    return row.direct_participant
