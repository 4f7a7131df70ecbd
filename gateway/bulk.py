"""Accepting a batch of transfers in one transaction with a few writes per kind of row.

`Gateway.submit_transfers` hands the checked and routed transfers of a batch here. A
transfer whose channel has a bulk intake (BEPS: the item waits to be packed) is
accepted in three steps that together do what `Gateway._accept_tx` does for one:

1. in order, for each: its idempotency record (read for the whole batch at once; a key
   repeated inside the batch is answered by the caller, from its first use), its ids (from one block of
   the day's sequence), its payer against the account (the name it goes out under being
   the holder's), the channel's own checks, and its hold in the ledger. A refusal
   leaves nothing behind: the checks write nothing, and a hold the ledger refuses
   leaves the transaction as it found it (ledger.postings.post);
2. the payment rows, their first history rows, the channel's rows and the stored
   answers of all accepted transfers, each kind with a few multi-row INSERTs
   (Transaction.insert_rows);
3. one log line per payment, as `payments.insert` writes.

A transfer the screening or the amount review holds (`Gateway.intake_holds`, its list
looked up once for the batch) is accepted with the others and its channel's intake sets
it aside, `held` with the reason, as `Gateway._accept_tx` does one alone.

Other transfers (HVPS, internal book transfers) take the one-by-one path, each in its
own savepoint, in the same transaction, screened with the same batch's look-up of the
list (`Gateway._accept_tx`'s `hold_of`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gateway import key_reuse, payments
from gateway import ready as ready_messages
from gateway.errors import PaygateError
from gateway.intake import PAYER_NAME_TYPED, as_request_fields, same_transfer

if TYPE_CHECKING:
    from gateway.app import Prepared

log = logging.getLogger("paygate.payments")

Entry = tuple[str, dict[str, str]]
KEYS_PER_QUERY = 500  # idempotency keys looked up in one statement


def accept_many(gw: Any, tx: Any, ready: list[tuple[int, "Prepared"]]
                ) -> tuple[list[tuple[int, Any]], list[Entry]]:
    """(index, (status, answer) or the error refusing it) for each, and stream entries.
    Each idempotency key appears once in `ready` (Gateway.submit_transfers answers a key
    repeated inside a batch from its first use)."""
    stored = stored_answers(tx, ready)
    bulk = [(i, p) for i, p in ready if getattr(p.accept, "bulk", None) is not None]
    seq = _reserve(tx, bulk)
    work_date = bulk[0][1].work_date if bulk else None
    day = (work_date.strftime("%Y%m%d"), work_date.isoformat()) if work_date else ("", "")
    waiting: list[tuple[int, "Prepared", dict[str, Any], Any]] = []  # checked, to hold
    stamps: dict[Any, str] = {}  # instants as text (a batch's transfers share one)
    done: list[tuple[int, Any]] = []
    entries: list[Entry] = []
    # The screening and the amount review (Gateway.intake_hold), the list looked up once
    # for the batch, whatever the channels of its transfers.
    hold_of = gw.intake_holds()
    for i, p in ready:
        try:
            if p.idem_key in stored:
                result = _replay(tx, p, *stored[p.idem_key])
            elif getattr(p.accept, "bulk", None) is None:
                with tx.savepoint():
                    status, response, more, _ = gw._accept_tx(tx, p, hold_of)
                entries.extend(more)
                result = (status, response)
            else:
                row = _new_row(p, seq, day, stamps)
                seq += 1
                waiting.append((i, p, row, p.accept.bulk))
                continue
        except PaygateError as exc:
            result = exc
        done.append((i, result))

    # The payers' names and banks, against their accounts, before any is held.
    waiting = _payers_checked(gw, tx, waiting, done)
    # A transfer the screening or the amount review holds is accepted and set aside, as
    # one alone is.
    reasons = {row["id"]: reason for _, p, row, _ in waiting
               if (reason := hold_of(_as_sent(p.transfer, row))) is not None}
    ready_messages.own_end_to_end_ids(
        tx, [row for _, p, row, _ in waiting if not p.end_to_end_id])
    holds = gw.ledger.hold_many(tx, [
        (f"{row['id']}:hold", p.transfer.payer_account, p.transfer.amount_fen, p.work_date,
         row["id"]) for _, p, row, _ in waiting])
    rows: list[dict[str, Any]] = []
    own_ids: list[dict[str, Any]] = []  # rows taken whose EndToEndId the gateway gave
    by_intake: dict[Any, list[dict[str, Any]]] = {}
    answers: list[tuple] = []
    held: list[tuple[int, "Prepared", dict[str, Any]]] = []  # answered once held
    for (i, p, row, intake), hold in zip(waiting, holds):
        if isinstance(hold, PaygateError):
            result: Any = as_request_fields(hold)
        else:
            row["hold_id"] = str(hold)
            rows.append(row)
            if not p.end_to_end_id:
                own_ids.append(row)
            by_intake.setdefault(intake, []).append(row)
            if row["id"] in reasons:
                held.append((i, p, row))
                continue
            answers.append((p.client, p.idem_key, p.body_hash, 201,
                            payments.answer_as_created(row), row["created_at"]))
            result = (201, payments.public_view(row))
        done.append((i, result))

    if rows:
        ready_messages.claim_own_end_to_end_ids(tx, own_ids)
        payments.insert_many(tx, rows)
        now = waiting[0][1].now  # a batch's transfers share the instant it arrived
        for intake, its_rows in by_intake.items():
            entries.extend(intake.insert_many(tx, its_rows, reasons, now))
        for i, p, row in held:  # each row `held` now, with its reason
            response = payments.public_view(row)
            answers.append((p.client, p.idem_key, p.body_hash, 201,
                            payments.answer_text(response, p.decision.record_json),
                            row["created_at"]))
            done.append((i, (201, response)))
        tx.insert_rows("INSERT INTO idempotency (client, key, body_sha256, status, response, "
                       "created_at) VALUES", answers)
    return done, entries


def _payers_checked(gw: Any, tx: Any, waiting: list[tuple[int, "Prepared", dict[str, Any], Any]],
                    done: list[tuple[int, Any]]
                    ) -> list[tuple[int, "Prepared", dict[str, Any], Any]]:
    """The transfers of `waiting` whose payer's own bank takes them (Gateway.payers) and
    whose channel's checks pass, each row under its account holder's name as the books
    write it (a name typed with other spaces, width or case goes out as the holder's,
    as `Gateway._accept_tx` sends it, and is checked as such); the others are refused
    into `done`."""
    kept = []
    for (i, p, row, intake), (problems, holder) in zip(
            waiting, gw.payers(tx, [p.transfer for _, p, _, _ in waiting])):
        if problems:
            done.append((i, PaygateError(problems, 422)))
            continue
        if holder is not None:
            row[PAYER_NAME_TYPED], row["payer_name"] = row["payer_name"], holder
        try:
            intake.check(row)
        except PaygateError as exc:
            done.append((i, exc))
            continue
        kept.append((i, p, row, intake))
    return kept


def _as_sent(transfer: Any, row: dict[str, Any]) -> Any:
    """The transfer under the payer's name its row goes out under (the holder's)."""
    if transfer.payer_name == row["payer_name"]:
        return transfer
    return transfer._replace(payer_name=row["payer_name"])


def stored_answers(tx: Any, ready: list[tuple[int, "Prepared"]]
                    ) -> dict[str, tuple[str, Any]]:
    """The idempotency records already stored for the batch's keys (one client)."""
    found: dict[str, tuple[str, Any]] = {}
    by_client: dict[str, list[str]] = {}
    for _, p in ready:
        by_client.setdefault(p.client, []).append(p.idem_key)
    for client, keys in by_client.items():
        for start in range(0, len(keys), KEYS_PER_QUERY):
            chunk = keys[start:start + KEYS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            for key, body_hash, status, response in tx.query(
                    "SELECT key, body_sha256, status, response FROM idempotency "
                    f"WHERE client = ? AND key IN ({marks})", (client, *chunk)):
                found[key] = (body_hash, (status, payments.answer_of(tx, response)))
    return found


def replays(tx: Any, refused: list[tuple[int, Any]]) -> dict[int, Any]:
    """For the batch's transfers refused for their body, under keys taken before (each
    with `client`, `idem_key`, `body`, `body_hash` as a Prepared has them): the first
    answer of each sent again, the key's refusal (409) of each that asks for another
    payment, by index; nothing for a key not taken."""
    stored = stored_answers(tx, refused)
    return {i: _replay(tx, p, *stored[p.idem_key]) for i, p in refused
            if p.idem_key in stored}


def _replay(tx: Any, p: "Prepared", body_hash: str, answer: Any) -> Any:
    """The first answer given under this key, or the refusal of a different body, naming
    the fields that differ from what the first asked for."""
    if not same_transfer(body_hash, p.body_hash, p.body):
        return key_reuse.refused_transfer(tx, p.client, p.idem_key, p.body, answer[1])
    return answer


def _reserve(tx: Any, bulk: list) -> int:
    """The first of a block of daily sequence numbers for the bulk transfers (numbers of
    refused ones are not reused: message ids must be unique, not gapless)."""
    if not bulk:
        return 0
    days = {p.work_date for _, p in bulk}
    assert len(days) == 1, "a batch is accepted on one work date"
    day = next(iter(days)).strftime("%Y%m%d")
    return payments.reserve_seq(tx, f"msg:{day}", len(bulk))


def _new_row(p: "Prepared", seq: int, day: tuple[str, str],
             stamps: dict[Any, str]) -> dict[str, Any]:
    """The payment row of a transfer numbered `seq` on the work date `day` (as YYYYMMDD
    and as YYYY-MM-DD); `stamps` keeps the text of each instant written so far."""
    t = p.transfer
    day, work_date = day
    msg_id = f"{day}{seq:08d}"
    decision = p.decision
    now = stamps.get(p.now)
    if now is None:
        now = stamps[p.now] = p.now.isoformat()
    return {
        "id": f"P{msg_id}", "direction": "out", "channel": decision.channel,
        "state": "accepted", "msg_type": decision.message_type or "internal",
        "msg_id": msg_id, "tx_id": msg_id,
        "end_to_end_id": p.end_to_end_id or f"{t.payer_bank}{day}{seq:012d}",
        "sender_direct": decision.sender_direct, "receiver_direct": decision.receiver_direct,
        "amount_fen": t.amount_fen, "currency": t.currency, "payer_account": t.payer_account,
        "payer_name": t.payer_name, "payer_bank": t.payer_bank,
        "payee_account": t.payee_account, "payee_name": t.payee_name,
        "payee_bank": t.payee_bank, "business_type": t.business_type,
        "business_kind": t.business_kind, "urgency": t.urgency,
        "priority": decision.priority, "remittance": list(t.remittance), "hold_id": None,
        "pending_no": None, "reason": None, "settled_on": None,
        "route": decision.record(), "route_json": decision.record_json or None,
        "work_date": work_date, "created_at": now, "updated_at": now,
        "client": p.client,
    }


def answer_stored(tx: Any, ready: list[tuple[int, "Prepared"]], refusal: PaygateError
                  ) -> list[tuple[int, Any]]:
    """While no new transfer can be taken (Redis is unreachable, gateway.redisstate):
    a key seen before gets its stored answer, read from the database alone; the others
    get `refusal`."""
    stored = stored_answers(tx, ready)
    return [(i, _replay(tx, p, *stored[p.idem_key]) if p.idem_key in stored else refusal)
            for i, p in ready]
