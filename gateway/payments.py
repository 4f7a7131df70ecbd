"""Reading and writing payments and their history, inside a store transaction.

Every state change goes through `transition`, which checks it against gateway.states,
records it in the payment's history, logs one structured line, and, when a webhook is
configured, adds the status change to the outbox in the same transaction (so a change
the core system must hear about cannot be lost between commit and push).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson

from gateway import jsontext, keys, logs, operator_names
from gateway.clock import texts
from gateway.messages import hvps112
from gateway.config import Settings
from gateway.errors import NotFound, Problem
from gateway.states import (HVPS_SENDING_HELD, REVIEW_REASON_PREFIXES, check_transition,
                            held_for_review, parked_by_screening)
from gateway.store import (NOT_READ, Contended, after_commit, answered, gather, id_chunks,
                           log_after_commit, reading_once)

log = logging.getLogger("paygate.payments")

COLUMNS = ("id", "direction", "channel", "state", "msg_type", "msg_id", "tx_id",
           "end_to_end_id", "sender_direct", "receiver_direct", "amount_fen", "currency",
           "payer_account", "payer_name", "payer_bank", "payee_account", "payee_name",
           "payee_bank", "business_type", "business_kind", "urgency", "priority",
           "remittance", "hold_id", "pending_no", "reason", "settled_on", "route", "work_date",
           "created_at", "updated_at", "client")
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM payments"
# A payment's columns but its route (a record of about a kilobyte of JSON, read whole for
# every row that carries it): what is read of payments that are acted on, never shown.
ROUTELESS = tuple(c for c in COLUMNS if c != "route")
_INSERT_HEAD = f"INSERT INTO payments ({', '.join(COLUMNS)}) VALUES"
_INSERT = f"{_INSERT_HEAD} ({', '.join('?' for _ in COLUMNS)})"


_NEXT_SEQ = ("INSERT INTO sequences (name, value) VALUES (?, 1) ON CONFLICT (name) "
             "DO UPDATE SET value = sequences.value + 1 RETURNING value")


def next_seq(tx: Any, name: str) -> int:
    """The next number of sequence `name` (message ids, payment ids), from 1.

    One statement that locks the row while it counts: gateway processes sharing a
    PostgreSQL database each get a number of their own, never the same one twice. On
    PostgreSQL the count is committed at once, outside the caller's transaction, so that
    no process waits for another's whole group of work to commit before it can number
    its own (and two groups cannot deadlock on the counter). A number taken by work that
    then rolls back is skipped: ids stay unique, not gapless.

    On SQLite (one writing process) a transaction that takes more than one number of a
    sequence takes them SEQUENCE_BLOCK at a time and hands them out in order; before it commits it gives
    back those it did not hand out, so numbers run on without gaps from one transaction
    to the next, as if taken one by one. A savepoint rolled back gives back the numbers
    taken inside it; numbers taken ahead by work that then fails are skipped.
    """
    if tx.dialect == "postgresql":
        return tx.committed_at_once(_NEXT_SEQ, (name,))[0]
    blocks = tx.cache.get(_BLOCKS)
    if blocks is None:
        blocks = tx.cache[_BLOCKS] = {}
        tx.keep_across_rollback(_BLOCKS)
        tx.on_flush(_give_back)
    taken = blocks.get(name)
    if taken is not None and taken[0] <= taken[1]:
        blocks[name] = (taken[0] + 1, taken[1])
        return taken[0]
    # A transaction that numbers one thing takes one number; one that numbers more
    # takes them SEQUENCE_BLOCK at a time from its second on.
    count = 1 if taken is None else SEQUENCE_BLOCK
    first = reserve_seq(tx, name, count)
    blocks[name] = (first + 1, first + count - 1)
    return first


# Numbers of a sequence a SQLite transaction takes at once (`next_seq`), and where it
# keeps them: sequence name -> (next to hand out, last taken).
SEQUENCE_BLOCK = 32
_BLOCKS = "gateway.sequence_blocks"


def _give_back(tx: Any) -> None:
    """Before a commit (or a read of balances): give back the numbers taken ahead and
    not handed out, when nothing else has taken numbers of that sequence since."""
    blocks = tx.cache.get(_BLOCKS)
    while blocks:
        name, (next_number, last) = blocks.popitem()
        if next_number <= last:
            tx.execute("UPDATE sequences SET value = ? WHERE name = ? AND value = ?",
                       (next_number - 1, name, last))


_RESERVE_SEQ = ("INSERT INTO sequences (name, value) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value = sequences.value + excluded.value RETURNING value")


def reserve_seq(tx: Any, name: str, count: int) -> int:
    """The first of `count` consecutive numbers of the sequence, taken at once.

    On PostgreSQL one statement, committed at once outside the caller's transaction, as
    in `next_seq`: two gateway processes never get overlapping blocks, and neither waits
    for the other's group of work to commit first."""
    if tx.dialect == "postgresql":
        return tx.committed_at_once(_RESERVE_SEQ, (name, count))[0] - count + 1
    row = tx.query_one("UPDATE sequences SET value = value + ? WHERE name = ? "
                       "RETURNING value", (count, name))
    if row is None:
        tx.execute("INSERT INTO sequences (name, value) VALUES (?, ?)", (name, count))
        return 1
    return row[0] - count + 1


# Route records by reference (table route_records). A payment routed by the router names
# its class's record as "#<hash>"; other payments (incoming, returns) keep their small
# route JSON in the row. Records never change once stored, so texts are cached by hash.
ROUTE_REF = "#"
_ROUTES_CACHED_MAX = 4096
_route_hashes: dict[str, str] = {}   # record text -> hash
_route_texts: dict[str, str] = {}    # hash -> record text


def route_hash(record_json: str) -> str:
    """The hash a route record is stored under (128 bits of its SHA-256)."""
    found = _route_hashes.get(record_json)
    if found is None:
        found = hashlib.sha256(record_json.encode()).hexdigest()[:32]
        if len(_route_hashes) >= _ROUTES_CACHED_MAX:
            _route_hashes.clear()
        _route_hashes[record_json] = found
    return found


def _store_routes(tx: Any, records: dict[str, str]) -> None:
    """Store route records (hash -> text) unless stored already. Done in the caller's
    transaction, so a payment never names a record that a rolled-back transaction was to
    store: once a transaction, for the records its works name (the forty payments of a
    group commit share a few classes), since what it wrote stays until it ends unless a
    savepoint rolls back, which forgets what the transaction knew (Transaction.cache)."""
    stored = tx.cache.get(_ROUTES_STORED)
    if stored is None:
        stored = tx.cache[_ROUTES_STORED] = set()
    new = [(digest, text) for digest, text in records.items() if digest not in stored]
    if new:
        tx.executemany("INSERT INTO route_records (hash, record) VALUES (?, ?) "
                       "ON CONFLICT (hash) DO NOTHING", new)
        stored.update(digest for digest, _ in new)


# The key in Transaction.cache of the route records stored in this transaction.
_ROUTES_STORED = "gateway.route_records_stored"


def _route_column(data: dict[str, Any], records: dict[str, str]) -> str:
    text = data.get("route_json")
    if text:
        digest = route_hash(text)
        records[digest] = text
        return ROUTE_REF + digest
    return jsontext.dumps(data.get("route", {}))


def route_of(tx: Any, value: str) -> dict[str, Any]:
    """A payment's route column (or a stored answer's route) as a dict of its own."""
    if not value.startswith(ROUTE_REF):
        return orjson.loads(value)
    digest = value[len(ROUTE_REF):]
    text = _route_texts.get(digest)
    if text is None:
        found = tx.query_one("SELECT record FROM route_records WHERE hash = ?", (digest,))
        if found is None:
            raise AssertionError(f"route record {digest} is missing")
        text = found[0]
        if len(_route_texts) >= _ROUTES_CACHED_MAX:
            _route_texts.clear()
        _route_texts[digest] = text
    return orjson.loads(text)


def answer_text(view: dict[str, Any], route_json: str | None) -> str:
    """A public view as stored for an idempotent replay: its route by reference when
    the route is a stored record (a kilobyte less per stored answer)."""
    if route_json:
        view = dict(view, route=ROUTE_REF + route_hash(route_json))
    return jsontext.dumps(view)


# A stored answer that was the view of a new payment as created names the payment and
# what of its view may change later (state, urgency), instead of holding the whole view:
# the rest of the view is the payment's row, which never changes (a new payment's
# updated_at is its created_at, and it has no reason or write-off number yet).
AS_CREATED = "as_created"


def answer_as_created(payment: dict[str, Any]) -> str:
    """The stored answer of a request that created this payment, answered with its view
    as created (gateway.bulk): tens of bytes instead of the view's kilobyte."""
    assert payment.get("reason") is None and payment.get("pending_no") is None \
        and payment["updated_at"] == payment["created_at"], \
        f"payment {payment['id']} is as created"
    return jsontext.dumps({AS_CREATED: payment["id"], "state": payment["state"],
                           "urgency": payment["urgency"]})


def answer_of(tx: Any, text: str) -> dict[str, Any]:
    """A stored answer as first given (its route record put back in place)."""
    view = orjson.loads(text)
    if isinstance(view, dict) and AS_CREATED in view:
        payment = get(tx, view[AS_CREATED])
        return public_view(dict(payment, state=view["state"], urgency=view["urgency"],
                                updated_at=payment["created_at"], reason=None,
                                pending_no=None))
    route = view.get("route") if isinstance(view, dict) else None
    if isinstance(route, str):
        view["route"] = route_of(tx, route)
    return view


def row_of(tx: Any, values: tuple) -> dict[str, Any]:
    """A payment from the values of its COLUMNS, read by a query of the caller's."""
    return _row(tx, values)


def _row(tx: Any, values: tuple) -> dict[str, Any]:
    row = dict(zip(COLUMNS, values))
    row["remittance"] = orjson.loads(row["remittance"])
    row["route"] = route_of(tx, row["route"])
    return row


def insert(tx: Any, row: dict[str, Any]) -> None:
    data = dict(row)
    data["remittance"] = jsontext.dumps(list(data.get("remittance", [])))
    records: dict[str, str] = {}
    data["route"] = _route_column(data, records)
    if records:
        _store_routes(tx, records)
    for optional in ("hold_id", "pending_no", "reason", "settled_on", "client"):
        data.setdefault(optional, None)
    tx.execute(_INSERT, tuple(data[c] for c in COLUMNS))
    tx.execute("INSERT INTO payment_events (payment_id, at, state, event, detail) "
               "VALUES (?, ?, ?, ?, ?)", (data["id"], data["created_at"], data["state"],
                                          "created", "{}"))
    log_after_commit(log, logging.INFO, [_created_line(data)])


def insert_moved(tx: Any, row: dict[str, Any], new_state: str, event: str, now: datetime,
                 notifier: Notifier | None = None, **detail: Any) -> dict[str, Any]:
    """`insert` of a new payment and, in the same work, its `transition` to `new_state`
    (an HVPS payment accepted and sent at once): the row written in the later state and
    both history rows with one statement, the log lines and the status change for the
    webhook as the two steps would give them. The payment as changed."""
    check_transition(row["id"], row["state"], new_state, row)
    moved = _as_changed(row, new_state, texts(now).iso, detail)
    data = _OPTIONAL | moved
    value = list(_VALUES(data))
    remittance = data.get("remittance")
    value[_REMITTANCE_AT] = jsontext.dumps(list(remittance)) if remittance else "[]"
    records: dict[str, str] = {}
    value[_ROUTE_AT] = _route_column(data, records)
    if records:
        _store_routes(tx, records)
    tx.execute(_INSERT, value)
    at = moved["updated_at"]
    tx.insert_rows("INSERT INTO payment_events (payment_id, at, state, event, detail) VALUES",
                   [(row["id"], row["created_at"], row["state"], "created", "{}"),
                    (row["id"], at, new_state, event, jsontext.dumps(detail))])
    if log.isEnabledFor(logging.INFO):  # the line is not even written out otherwise
        log_after_commit(log, logging.INFO, [_created_line(row)])
    _told(tx, [(row["id"], row["state"])], new_state, event, at, notifier, detail)
    return moved


_OPTIONAL = dict.fromkeys(("hold_id", "pending_no", "reason", "settled_on", "client"))
_VALUES = itemgetter(*COLUMNS)  # a row's values in COLUMNS order
_REMITTANCE_AT, _ROUTE_AT = COLUMNS.index("remittance"), COLUMNS.index("route")


def insert_many(tx: Any, rows: list[dict[str, Any]]) -> None:
    """`insert` for many new payments: one statement per table for all of them."""
    values, events = [], []
    records: dict[str, str] = {}
    remarks: dict[tuple[str, ...], str] = {}  # a remittance's text, written once a batch
    for row in rows:
        data = row if _OPTIONAL.keys() <= row.keys() else _OPTIONAL | row
        remittance = data.get("remittance")
        value = list(_VALUES(data))
        if remittance:
            lines = tuple(remittance)
            text = remarks.get(lines)
            if text is None:
                text = remarks[lines] = jsontext.dumps(list(lines))
            value[_REMITTANCE_AT] = text
        else:
            value[_REMITTANCE_AT] = "[]"
        value[_ROUTE_AT] = _route_column(data, records)
        values.append(value)
        events.append((data["id"], data["created_at"], data["state"], "created", "{}"))
    if records:
        _store_routes(tx, records)
    tx.insert_rows(_INSERT_HEAD, values)
    tx.insert_rows("INSERT INTO payment_events (payment_id, at, state, event, detail) VALUES",
                   events)
    if log.isEnabledFor(logging.INFO):  # a batch's lines are not even written out otherwise
        log_after_commit(log, logging.INFO, [_created_line(row) for row in rows])


def _created_line(row: dict[str, Any]) -> str:
    return (f"event=payment_created payment={row['id']} direction={row['direction']} "
            f"channel={row['channel']} state={row['state']} amount_fen={row['amount_fen']} "
            f"msg_id={row['msg_id']}")


def get(tx: Any, payment_id: str, lock: bool = False) -> dict[str, Any]:
    """The payment; with `lock` (PostgreSQL) its row is held until the transaction ends.

    Lock it before checking what else is recorded about it (an open return, a waiting
    cancellation request) when the change that follows keeps its state: a state kept is
    no guard, since another process's change that keeps it too would pass the same
    check. Under the lock a second process waits, then reads what the first committed.
    Inside `read_once`, a payment it read is answered from that read (a copy of it).
    """
    if not lock:
        read = answered(tx, _READ_ONCE, payment_id)
        if read is not NOT_READ:
            return dict(read)
    values = tx.query_one(f"{_SELECT} WHERE id = ?"
                          + (" FOR UPDATE" if lock and tx.dialect == "postgresql" else ""),
                          (payment_id,))
    if values is None:
        raise not_found(payment_id)
    return _row(tx, values)


# The key in a transaction's `cache` of the payments `read_once` read.
_READ_ONCE = "payments.read_once"


def read_once(tx: Any, payment_ids: Iterable[str]
              ) -> AbstractContextManager[dict[str, dict[str, Any]]]:
    """The payments of `payment_ids` read in one statement (a few for a long list), and
    within the block `get` without a lock answers each of them from that read
    (store.reading_once): for checks that only read and ask `get` for the same payment
    many times, over many payments at once (the console's row actions). A payment not
    found is left out, and `get` refuses it as ever. Gives the rows read, by id."""
    rows: dict[str, dict[str, Any]] = {}
    for chunk in id_chunks(list(dict.fromkeys(payment_ids))):
        for values in tx.query(f"{_SELECT} WHERE id IN ({', '.join('?' * len(chunk))})",
                               chunk):
            row = _row(tx, values)
            rows[row["id"]] = row
    return reading_once(tx, _READ_ONCE, rows)


def not_found(payment_id: str) -> NotFound:
    """The refusal of a payment id the gateway does not know (or, told alike, one the
    client may not see, gateway.scope)."""
    return NotFound(Problem("payment_not_found", "/id", payment_id, "an existing payment"))


def find_by_message(tx: Any, direction: str, sender: str, msg_type: str,
                    msg_id: str) -> dict[str, Any] | None:
    values = tx.query_one(f"{_SELECT} WHERE direction = ? AND sender_direct = ? "
                          "AND msg_type = ? AND msg_id = ?",
                          (direction, sender, msg_type, msg_id))
    return _row(tx, values) if values else None


_SELECT_OUT_BY_MSG_ID = ("SELECT " + ", ".join(ROUTELESS) +
                         " FROM payments WHERE direction = 'out' AND msg_id = ?")


def find_out_by_msg_id(tx: Any, msg_id: str) -> dict[str, Any] | None:
    """Our payment whose message is `msg_id`, as an NPC result about it is handled
    (gateway.handlers, gateway.exceptions): without its route, which no handling of a
    result reads (`ROUTELESS`); `get` reads it whole."""
    values = tx.query_one(_SELECT_OUT_BY_MSG_ID, (msg_id,))
    if values is None:
        return None
    row = dict(zip(ROUTELESS, values))
    row["remittance"] = orjson.loads(row["remittance"])
    return row


def search(tx: Any, state: str | None = None, limit: int = 100,
           older_than: tuple[str, str] | None = None,
           client: str | None = None,
           condition: tuple[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Payments newest first, by creation time and then id (both descending, a total
    order), at most `limit`: in `state` if given, submitted by `client` or incoming (which
    belong to no client) if given, and after `older_than`, the (created_at, id) of the
    last payment of a previous page, in that order. A payment created later can only
    come before that key, so paging on never repeats or skips one. `condition`: an SQL
    condition more, with its parameters (the client's scope, gateway.scope)."""
    where, params = [], []
    if state:
        where.append("state = ?")
        params.append(state)
    if client is not None:
        where.append("(client = ? OR client IS NULL)")
        params.append(client)
    if condition is not None:
        where.append(condition[0])
        params += condition[1]
    if older_than is not None:
        where.append("created_at <= ? AND (created_at < ? OR id < ?)")
        params += [older_than[0], older_than[0], older_than[1]]
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    rows = tx.query(f"{sql} ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit))
    return [_row(tx, r) for r in rows]


# Payments that move together (the thousand transactions of a BEPS package, packed and
# sent at once) share the history rows of what happens to all of them: one row under the
# group's subject instead of one per payment. A channel whose payments travel in groups
# names here, as an SQL expression over the payment's id `p.id`, the subject of the group
# the payment is in (NULL: none yet). Rows of one payment and of its group share the
# table's numbering, so a payment's history reads in the order it was written.
GROUP_SUBJECT_SQL: dict[str, str] = {}


def subjects(tx: Any, payment_id: str) -> tuple[str, ...]:
    """Under what payment_events are filed for this payment: its id, and its group's
    subject when it is in a group."""
    row = tx.query_one("SELECT channel FROM payments WHERE id = ?", (payment_id,))
    expression = GROUP_SUBJECT_SQL.get(row[0]) if row else None
    if expression is None:
        return (payment_id,)
    group = tx.query_one(f"SELECT {expression} FROM payments p WHERE p.id = ?",
                         (payment_id,))[0]
    return (payment_id,) if group is None else (payment_id, group)


def history(tx: Any, payment_id: str) -> list[dict[str, Any]]:
    """The payment's history, oldest first; an operator written the old way
    (`operator:op1`) read as the plain name the console writes (gateway.operator_names)."""
    filed = subjects(tx, payment_id)
    marks = ", ".join("?" for _ in filed)
    rows = tx.query("SELECT at, state, event, detail FROM payment_events "
                    f"WHERE payment_id IN ({marks}) ORDER BY id", filed)
    return [{"at": at, "state": state, "event": event,
             "detail": operator_names.plain_event(event, json.loads(detail))}
            for at, state, event, detail in rows]


def reached_at(tx: Any, payment_id: str, state: str) -> str | None:
    """When the payment last entered `state` (None: never): the first row in `state`
    after its last row in another. Rows that note something while the state stays (a
    query received or answered, a cancel requested) do not move it."""
    filed = subjects(tx, payment_id)
    marks = ", ".join("?" for _ in filed)
    row = tx.query_one(
        f"SELECT at FROM payment_events WHERE payment_id IN ({marks}) AND state = ? "
        "AND id > COALESCE((SELECT MAX(id) FROM payment_events WHERE payment_id IN "
        f"({marks}) AND state != ?), 0) ORDER BY id LIMIT 1", (*filed, state, *filed, state))
    return row[0] if row else None


def ever_count(tx: Any, channel: str, direction: str, state: str) -> int:
    """How many payments of a channel and direction were ever in `state`."""
    own = "EXISTS (SELECT 1 FROM payment_events e WHERE e.payment_id = p.id AND e.state = ?)"
    params: tuple[Any, ...] = (channel, direction, state)
    expression = GROUP_SUBJECT_SQL.get(channel)
    if expression is not None:
        own = (f"({own} OR EXISTS (SELECT 1 FROM payment_events e WHERE "
               f"e.payment_id = {expression} AND e.state = ?))")
        params += (state,)
    return tx.query_one("SELECT COUNT(*) FROM payments p WHERE p.channel = ? AND "
                        f"p.direction = ? AND {own}", params)[0]


def leave_group(tx: Any, payment_ids: Sequence[str], group: str) -> None:
    """The payments leave their group (a BEPS item taken out of its package, or every
    item of a package cancelled whole): the group's rows so far become each one's own, so
    that its history still tells what happened to it, and so do the group's webhook rows
    that told of its changes (`told`).

    A payment's history reads in id order (`history`, `reached_at`), which is the order
    its rows and its group's were written in while it was in the group. The copies take
    new ids, so a payment's own rows written after the group's first row (a cancel
    requested of it alone, an item withdrawn by itself) are written again after the
    copies, each where it came among the group's: the history keeps the order things
    happened in.

    The group's rows are read, and each webhook row's events parsed, once for all the
    payments leaving: four statements, and two more when some have own rows to write
    again (more only past a multi-row INSERT's size or READ_ONCE_IDS_MAX payments),
    whether one item leaves or a package's thousand, where reading them again for each
    payment made a cancelled package's work grow with the square of its size."""
    if not payment_ids:
        return
    shared = tx.query("SELECT id, at, state, event, detail FROM payment_events "
                      "WHERE payment_id = ? ORDER BY id", (group,))
    later = _own_rows_after(tx, payment_ids, shared[0][0]) if shared else {}
    tx.insert_rows("INSERT INTO payment_events (payment_id, at, state, event, detail) VALUES",
                   [(pid, *row[1:]) for pid in payment_ids
                    for row in sorted(shared + later.get(pid, []), key=itemgetter(0))])
    told_of: dict[str, list[tuple[int, str]]] = {}
    events_of: dict[int, list[dict[str, Any]]] = {}
    for outbox_id, state, body in tx.query(
            "SELECT e.outbox_id, e.state, o.envelope FROM webhook_events e JOIN outbox o "
            "ON o.id = e.outbox_id WHERE e.payment_id = ? ORDER BY e.outbox_id", (group,)):
        if outbox_id not in events_of:  # one webhook row may tell the group twice
            events_of[outbox_id] = orjson.loads(body)
        named = dict.fromkeys(e.get("id") for e in events_of[outbox_id]
                              if e.get("state") == state)
        for pid in named:
            told_of.setdefault(pid, []).append((outbox_id, state))
    tx.insert_rows("INSERT INTO webhook_events (outbox_id, payment_id, state) VALUES",
                   [(outbox_id, pid, state) for pid in payment_ids
                    for outbox_id, state in told_of.get(pid, ())])


def _own_rows_after(tx: Any, payment_ids: Sequence[str], first: int
                    ) -> dict[str, list[tuple[Any, ...]]]:
    """The rows filed under each payment itself with an id above `first` (its group's
    first row), (id, at, state, event, detail) each, deleted to be written again after
    its group's: read through the index of payment ids, a statement for each
    READ_ONCE_IDS_MAX payments, and one more to delete them when there are any."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for chunk in id_chunks(list(dict.fromkeys(payment_ids))):
        for row_id, pid, *row in tx.query(
                "SELECT id, payment_id, at, state, event, detail FROM payment_events WHERE "
                f"payment_id IN ({', '.join('?' * len(chunk))}) AND id > ?", (*chunk, first)):
            found.setdefault(pid, []).append((row_id, *row))
    ids = [row[0] for rows in found.values() for row in rows]
    for chunk in id_chunks(ids):
        tx.execute(f"DELETE FROM payment_events WHERE id IN ({', '.join('?' * len(chunk))})",
                   tuple(chunk))
    return found


# The status changes of one transaction are written as few webhook rows as they fit in
# (gateway.store.gather): a package's thousand payments sent, netted or settled, or the
# forty HVPS payments of one group commit, make one row per `webhook_events_max` changes,
# not one each, and each row is one POST's events.
# A row holds the JSON array of its events; which payment's change it tells is in
# webhook_events. It is written already claimed by the process whose work made the
# changes, which pushes it after commit (gateway.direct) with the body it was given: no
# stream entry, no claim read back. The claim is an ordinary one (on PostgreSQL owned by
# this session): a process that dies before pushing leaves a claim that start-up recovery
# or the sweeper ends, and the row then goes by the webhook stream (gateway.recovery).
_WEBHOOK_ROW = {dialect: "INSERT INTO outbox (payment_id, kind, stream, state, envelope, "
                "created_at, updated_at" + (", claimed_by" if dialect == "postgresql" else "")
                + ") VALUES (?, 'webhook', ?, 'sending', ?, ?, ?"
                + (", pg_backend_pid()" if dialect == "postgresql" else "") + ") RETURNING id"
                for dialect in ("sqlite", "postgresql")}
# The fields of an after-commit webhook entry that carry its claimed row's events (a JSON
# array) and how many they are.
CLAIMED_BODY = "claimed_body"
CLAIMED_EVENTS = "claimed_events"


@dataclass
class Notifier:
    """Decides whether a state change is also queued for the core system's webhook, and
    how many changes one webhook row (one POST) carries at most."""

    webhook: bool = False
    events_max: int = Settings.webhook_events_max


def approval(approved_by: str | None) -> dict[str, str]:
    """The `approved_by` of a history event beside its `by` (who asked): the second
    person who approved an operators' request under dual control; nothing for a change
    nobody had to approve."""
    return {} if approved_by is None else {"approved_by": approved_by}


def transition(tx: Any, payment: dict[str, Any], new_state: str, event: str, now: datetime,
               notifier: Notifier | None = None, **detail: Any) -> dict[str, Any]:
    return transition_many(tx, [payment], new_state, event, now, notifier, **detail)[0]


def transition_many(tx: Any, rows: list[dict[str, Any]], new_state: str, event: str,
                    now: datetime, notifier: Notifier | None = None,
                    **detail: Any) -> list[dict[str, Any]]:
    """The same change for several payments (a package netted, say): one statement per
    kind of write for all of them, one log line and history row each."""
    if not rows:
        return []
    for payment in rows:
        check_transition(payment["id"], payment["state"], new_state, payment)
    at = now.isoformat()
    same = all(payment["state"] == new_state for payment in rows)
    # A credit the screening parked is parked by its reason (states.parked_by_screening):
    # an event that keeps its state names its own reasons apart (`reason_given`,
    # `reason_failed`), or the credit would leave the operators' hands unseen.
    assert not (same and detail.get("reason") is not None
                and any(parked_by_screening(p) for p in rows)), \
        f"{event} would overwrite the screening's reason of {[p['id'] for p in rows][:5]}"
    sets, params = _sets(same, new_state, at, detail)
    # Conditional on the state this work read: when another gateway process changed a
    # payment meanwhile, the work is undone and runs again on what that process did.
    changed = tx.executemany(f"UPDATE payments SET {sets} WHERE id = ? AND state = ?",
                             [(*params, p["id"], p["state"]) for p in rows])
    if changed != len(rows):
        raise Contended(f"{len(rows) - changed} of payments {[p['id'] for p in rows][:5]} "
                        f"no longer in the state read")
    detail_json = jsontext.dumps(detail)
    tx.executemany("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                   "VALUES (?, ?, ?, ?, ?)",
                   [(payment["id"], at, new_state, event, detail_json) for payment in rows])
    _told(tx, [(p["id"], p["state"]) for p in rows], new_state, event, at, notifier, detail)
    return [_as_changed(payment, new_state, at, detail) for payment in rows]


def _as_changed(payment: dict[str, Any], new_state: str, at: str, detail: dict[str, Any]
                ) -> dict[str, Any]:
    """The payment as a change to `new_state` with `detail` leaves it (one copy)."""
    changed = dict(payment, state=new_state, updated_at=at)
    if payment["state"] != new_state:
        changed["reason"] = None  # as `_sets` writes it, unless given anew
    for column in ("reason", "pending_no", "hold_id", "settled_on"):
        if detail.get(column) is not None:
            changed[column] = detail[column]
    return changed


@dataclass(frozen=True)
class Group:
    """Payments that move together (GROUP_SUBJECT_SQL): the subject their shared history
    rows are filed under, how many they are, and a query of their ids (its parameters)."""

    subject: str
    size: int
    members_sql: str
    members_params: tuple[Any, ...]


def transition_group(tx: Any, group: Group, old_state: str, new_state: str, event: str,
                     now: datetime, notifier: Notifier | None = None,
                     members: list[str] | None = None, known: Sequence[str] | None = None,
                     **detail: Any) -> list[str]:
    """The same change for every member of a group that is in `old_state` (a package's
    payments packed, or sent): one statement for all of them, one log line each, and one
    history row for the group when every member changed (a row each otherwise). The ids
    of those changed, in order.

    One conditional statement reads and changes them at once: a member that left
    `old_state` before it (a BEPS item cancelled) is left as it is, whichever gateway
    process changed it. A change that keeps the state (packed) may give the `members`
    changed instead, when a change of the same transaction writes their rows at `now`
    right after it and checks them (a package packed and sent in one transaction): its
    history row and log lines are written, and no statement rewrites the rows for it.
    A caller that has read every member of the group in this transaction (a package's
    items, each once) may give their ids as `known`, which spares reading them again to
    tell that the change moved the whole group (`_whole_group_moved`)."""
    check_transition(group.subject, old_state, new_state)
    at = now.isoformat()
    if members is not None:
        assert old_state == new_state, "only a change that keeps the state names members"
        ids = sorted(members)
    else:
        sets, params = _sets(old_state == new_state, new_state, at, detail)
        # SQLite would otherwise read the index on state (every payment in it) rather
        # than look each member up by id: `+state` keeps the condition off that index.
        state = "+state" if tx.dialect == "sqlite" else "state"
        update = ((f"UPDATE payments SET {sets} WHERE id IN ({group.members_sql}) AND "
                   f"{state} = ?"), (*params, *group.members_params, old_state))
        ids = _whole_group_moved(tx, group, update, known)
        if ids is None:
            ids = sorted(row[0] for row in tx.query(f"{update[0]} RETURNING id", update[1]))
    if not ids:
        return ids
    whole = len(ids) == group.size
    filed = [group.subject] if whole else ids
    detail_json = jsontext.dumps(detail)
    tx.executemany("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                   "VALUES (?, ?, ?, ?, ?)",
                   [(subject, at, new_state, event, detail_json) for subject in filed])
    _told(tx, [(pid, old_state) for pid in ids], new_state, event, at, notifier, detail,
          group.subject if whole else None)
    return ids


class _NotWhole(Exception):
    """A group's UPDATE changed only some of its members: undone, to be run again with
    the ids it changes read back (`_whole_group_moved`)."""


def _whole_group_moved(tx: Any, group: Group, update: tuple[str, tuple[Any, ...]],
                       known: Sequence[str] | None = None) -> list[str] | None:
    """The ids of the group's members, in order, once `update` (the group's conditional
    UPDATE) has changed every one of them; None, with nothing changed, when it would
    change only some (a member that left the old state) or the group's members are not
    its size: the caller then runs it reading back the ids it changes.

    A package's thousand payments moving together (sent, netted, settled) nearly always
    move whole. Their ids (`known`, as the caller read them, else read from the package's
    items) and the UPDATE's count of rows changed tell that, where reading the ids back from the UPDATE itself (RETURNING)
    made SQLite keep every changed row in a table of its own first: about a microsecond a
    payment of each change, a quarter of the statement. Only on SQLite, where the
    transaction is the only writer between the read and the UPDATE, and only inside a
    piece of work (a savepoint open), which the savepoint undoing a partial change must
    nest in (at the outermost level it would end a piece and run its checks)."""
    if tx.dialect != "sqlite" or tx.savepoint_depth == 0:
        return None
    ids = sorted(known if known is not None else
                 (row[0] for row in tx.query(group.members_sql, group.members_params)))
    if len(ids) != group.size:
        return None
    try:
        with tx.savepoint():
            if tx.execute(*update) != len(ids):
                raise _NotWhole(group.subject)
    except _NotWhole:
        return None
    return ids


def _sets(same: bool, new_state: str, at: str, detail: dict[str, Any]
          ) -> tuple[str, list[Any]]:
    """The SET clause of a state change and its parameters. A payment's state index is
    left alone when its state stays (a package packed).

    A reason says why the payment is in its state: a payment that leaves its state
    without a reason for the new one leaves the old reason behind (to its history),
    rather than keep, say, `waiting_for_hvps_window` once sent and queued at the NPC.
    The test is on each row's own state, the expressions of SET reading the row as it
    was: a payment of the lot already in `new_state` keeps its reason."""
    sets = ["updated_at = ?"] if same else ["state = ?", "updated_at = ?"]
    params: list[Any] = [at] if same else [new_state, at]
    for column in ("reason", "pending_no", "hold_id", "settled_on"):
        if column in detail and detail[column] is not None:
            sets.append(f"{column} = ?")
            params.append(detail[column])
    if not same and detail.get("reason") is None:
        sets.append("reason = CASE WHEN state = ? THEN reason END")
        params.append(new_state)
    return ", ".join(sets), params


def _told(tx: Any, changed: list[tuple[str, str]], new_state: str, event: str, at: str,
          notifier: Notifier | None, detail: dict[str, Any], subject: str | None = None
          ) -> None:
    """A log line for each (payment id, old state) changed, once committed, and its
    status change queued for the webhook when one is configured (filed under the
    group's `subject` when the whole group changed: `_write_webhooks`)."""
    if log.isEnabledFor(logging.INFO):  # the lines are not even written out otherwise
        said = " ".join(f"{k}={logs.value(v)}" for k, v in detail.items())
        log_after_commit(log, logging.INFO, [
            f"event={event} payment={pid} from={old} to={new_state} {said}"
            for pid, old in changed])
    _queue_webhook(tx, [(pid, old, new_state, event) for pid, old in changed], at, notifier,
                   subject)


# Events the core system is told of although the state stays: money moved for a
# payment whose state already says where it ended (our BEPS debit's money applied from
# suspense to our customer, its state `netted` or `settled` before and after:
# gateway.exceptions.debit_suspense). Its webhook event has `previous` equal to `state`.
TOLD_UNCHANGED: set[str] = set()


def _queue_webhook(tx: Any, changed: list[tuple[str, str, str, str]], at: str,
                   notifier: Notifier | None, subject: str | None = None) -> None:
    """Each (payment id, old state, new state, event) that changed the state, or whose
    event is in TOLD_UNCHANGED, queued for the core system's webhook, when one is
    configured; filed under `subject` (a group's, when every member of the group made
    this change) instead of each payment's id (`_write_webhooks`)."""
    if notifier is None or not notifier.webhook:
        return
    texts: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}
    changes = []
    for pid, old, new, event in changed:
        if new == old and event not in TOLD_UNCHANGED:
            continue
        cut = texts.get((old, new, event))
        if cut is None:
            cut = texts[old, new, event] = _event_text(old, new, event, at)
        if _PLAIN_ID.fullmatch(pid):
            changes.append((pid, new, cut[0] + pid.encode() + cut[1], at, subject or pid))
        else:
            changes.append((pid, new, jsontext.dumps_bytes({
                "id": pid, "state": new, "previous": old, "event": event, "at": at}), at,
                subject or pid))
    if changes:
        events_max = notifier.events_max
        gather(tx, keys.WEBHOOK, changes,
               lambda tx, items: _write_webhooks(tx, items, events_max))


# A payment id that JSON writes as it is (no escaping): ours always are.
_PLAIN_ID = re.compile(r"[A-Za-z0-9:._-]+")
_ID_MARK = "@payment-id@"


def _event_text(old: str, new: str, event: str, at: str) -> tuple[bytes, bytes]:
    """The JSON of a webhook event with these states, event and time, cut around its id:
    the same bytes jsontext.dumps_bytes writes, with a plain id put in between. A
    package's thousand changes share one text instead of a dict and a dump each."""
    text = jsontext.dumps_bytes({"id": _ID_MARK, "state": new, "previous": old,
                                 "event": event, "at": at})
    head, mark, tail = text.partition(f'"{_ID_MARK}"'.encode())
    assert mark and _ID_MARK.encode() not in tail, "the id's mark is found once"
    return head + b'"', b'"' + tail


def transition_each(tx: Any, changes: list[tuple[dict[str, Any], str, str, dict[str, Any]]],
                    now: datetime, notifier: Notifier | None = None) -> list[dict[str, Any]]:
    """Changes of many payments that differ from one to the next (the credits of an
    incoming package, each credited to its payee or parked under its own pending number),
    (payment, new state, event, detail) each: what `transition` does for each, written
    with one statement per kind of write (one per set of columns changed); the payments
    as changed, in order."""
    if not changes:
        return []
    at = now.isoformat()
    updates: dict[str, list[tuple[Any, ...]]] = {}
    for payment, new_state, _, detail in changes:
        check_transition(payment["id"], payment["state"], new_state, payment)
        sets, params = _sets(payment["state"] == new_state, new_state, at, detail)
        updates.setdefault(sets, []).append((*params, payment["id"], payment["state"]))
    # Conditional on the state this work read, as in `transition_many`.
    changed = sum(tx.executemany(f"UPDATE payments SET {sets} WHERE id = ? AND state = ?",
                                 params) for sets, params in updates.items())
    if changed != len(changes):
        raise Contended(f"{len(changes) - changed} of payments "
                        f"{[c[0]['id'] for c in changes][:5]} no longer in the state read")
    tx.executemany("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                   "VALUES (?, ?, ?, ?, ?)",
                   [(payment["id"], at, new_state, event, jsontext.dumps(detail))
                    for payment, new_state, event, detail in changes])
    if log.isEnabledFor(logging.INFO):
        log_after_commit(log, logging.INFO, [
            f"event={event} payment={payment['id']} from={payment['state']} to={new_state} "
            + " ".join(f"{k}={logs.value(v)}" for k, v in detail.items())
            for payment, new_state, event, detail in changes])
    _queue_webhook(tx, [(payment["id"], payment["state"], new_state, event)
                        for payment, new_state, event, _ in changes], at, notifier)
    return [_as_changed(payment, new_state, at, detail)
            for payment, new_state, _, detail in changes]


def _write_webhooks(tx: Any, changes: list[tuple[str, str, bytes, str, str]],
                    events_max: int) -> None:
    """The status changes of a piece of work, (payment id, state, event JSON, time, filed
    under) each, as webhook rows of at most `events_max` events, claimed for this process
    and pushed after commit. A row of one payment's changes names it, as rows always did.

    Which row tells which change is written to webhook_events under what each change is
    filed under: the payment's id, or the subject of its group when the whole group made
    the change (a package's thousand payments sent, netted or settled), as its history
    row is (GROUP_SUBJECT_SQL). Such a change takes one webhook_events row for each
    webhook row its group's events went into, not one for each payment; `told` finds a
    payment's event in the body of its group's rows."""
    named: list[tuple[int, str, str]] = []
    for start in range(0, len(changes), events_max):
        chunk = changes[start:start + events_max]
        body = b"[" + b",".join([change[2] for change in chunk]) + b"]"
        own = chunk[0][0] if all(change[0] == chunk[0][0] for change in chunk) else None
        at = chunk[-1][3]
        outbox_id = tx.query_one(_WEBHOOK_ROW[tx.dialect],
                                 (own, keys.WEBHOOK, body, at, at))[0]
        groups: set[tuple[str, str]] = set()  # (subject, state) named in this row
        for pid, state, _, _, filed in chunk:
            if filed == pid:
                named.append((outbox_id, pid, state))
            elif (filed, state) not in groups:
                groups.add((filed, state))
                named.append((outbox_id, filed, state))
        after_commit(tx, keys.WEBHOOK, {"outbox": str(outbox_id), CLAIMED_BODY: body.decode(),
                                        CLAIMED_EVENTS: str(len(chunk))})
    # Multi-row INSERTs: a package's changes in one statement, not a run of one each
    # (Transaction.insert_rows).
    tx.insert_rows("INSERT INTO webhook_events (outbox_id, payment_id, state) VALUES", named)


def told(tx: Any, payment_id: str) -> list[dict[str, Any]]:
    """Whether the core system was told of each of this payment's status changes: the
    state told of, the webhook row that carries it and that row's state (`done` once the
    core system answered 2xx to a POST that held it), oldest first. A change the whole
    group made is filed under the group's subject (`_write_webhooks`): of those rows,
    the ones whose events name this payment are its own."""
    filed = subjects(tx, payment_id)
    marks = ", ".join("?" for _ in filed)
    rows = tx.query("SELECT e.state, o.id, o.state, o.attempts, e.payment_id, "
                    "CASE WHEN e.payment_id = ? THEN NULL ELSE o.envelope END "
                    "FROM webhook_events e JOIN outbox o ON o.id = e.outbox_id "
                    f"WHERE e.payment_id IN ({marks}) ORDER BY o.id",
                    (payment_id, *filed))
    return [{"state": state, "outbox": outbox_id, "delivery": delivery, "attempts": attempts}
            for state, outbox_id, delivery, attempts, filed_as, body in rows
            if filed_as == payment_id or carries(body, payment_id, state)]


def carries(body: Any, payment_id: str, state: str) -> bool:
    """Whether a webhook row's body (its JSON array of events) tells of this payment's
    change to `state`."""
    return any(e.get("id") == payment_id and e.get("state") == state
               for e in orjson.loads(body))


# States whose `reason` says why the payment is there (held, waiting at the NPC, refused,
# taken back, parked); once it has moved on (released, sent, settled), the reason of an
# earlier state is left to its history rather than shown as if it still held.
REASON_STATES = frozenset({"held", "queued", "unknown", "rejected", "cancelled", "returned",
                           "suspense"})


# Reasons a payment still `sent` shows: why it waits longer than it should, while it
# still may end either way (our BEPS debit past its receipt deadline, gateway.beps).
# Any other reason a sent payment carries is an earlier state's, and stays in the history.
SENT_REASONS = frozenset({"debit_receipt_overdue"})
# Reasons a payment still `accepted` shows: why it has not left for the NPC yet.
ACCEPTED_REASONS = frozenset({HVPS_SENDING_HELD})
# Reasons a payment still `received` shows (by prefix): a debit another bank sent us
# that the screening holds, unpaid until operators decide (gateway.beps.debit_review).
RECEIVED_REASON_PREFIXES = REVIEW_REASON_PREFIXES


def shown_reason(payment: dict[str, Any]) -> str | None:
    """The payment's reason where it explains its state (REASON_STATES, or one of
    SENT_REASONS while sent, of ACCEPTED_REASONS while accepted, of
    RECEIVED_REASON_PREFIXES while received), else None: the same for the core system's
    view, the console's page and its command line."""
    reason = payment.get("reason")
    state = payment["state"]
    if state in REASON_STATES or (state == "sent" and reason in SENT_REASONS) \
            or (state == "accepted" and reason in ACCEPTED_REASONS) \
            or (state == "received" and reason
                and reason.startswith(RECEIVED_REASON_PREFIXES)):
        return reason
    return None


def remittance_as_carried(payment: dict[str, Any]) -> list[str]:
    """The remittance lines of an HVPS payment's message (RmtInf/Ustrd), as it went or goes
    out, or came in: a ready message's as it wrote them, a JSON transfer's free text
    tagged /H01/, and an hvps.112's led by the /F25/ line carrying its business kind
    (gateway.outbound). A BEPS transaction's single remark is the BEPS extension's to
    show (gateway.beps: `show_on_transfer`)."""
    lines = list(payment["remittance"])
    if payment["direction"] == "out" and payment["msg_type"] == hvps112.MESSAGE_TYPE:
        return [f"/{hvps112.KIND_TAG}/{payment['business_kind']}", *lines]
    return lines


def public_view(payment: dict[str, Any], events: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    """What the core system sees of a payment (GET /v1/transfers/{id})."""
    view = {
        "id": payment["id"], "direction": payment["direction"],
        "channel": payment["channel"], "state": payment["state"],
        "amount": f"{payment['amount_fen'] // 100}.{payment['amount_fen'] % 100:02d}",
        "amount_fen": payment["amount_fen"], "currency": payment["currency"],
        "payer": {"account": payment["payer_account"], "name": payment["payer_name"],
                  "bank": payment["payer_bank"]},
        "payee": {"account": payment["payee_account"], "name": payment["payee_name"],
                  "bank": payment["payee_bank"]},
        "business_type": payment["business_type"], "business_kind": payment["business_kind"],
        "urgency": payment["urgency"], "message": {"type": payment["msg_type"],
                                                  "msg_id": payment["msg_id"],
                                                  "end_to_end_id": payment["end_to_end_id"]},
        "reason": shown_reason(payment),
        # Held by the amount review or the screening: an outgoing payment `held`, a
        # debit another bank sent us still `received`, or a credit it sent us parked in
        # `suspense` (states.held_for_review).
        "held_for_review": held_for_review(payment),
        "pending_write_off_no": payment.get("pending_no"),
        "route": payment["route"], "work_date": payment["work_date"],
        "created_at": payment["created_at"], "updated_at": payment["updated_at"],
    }
    if events is not None:
        view["history"] = events
    return view
