"""Reading and writing queries, replies and free-format messages inside a transaction.

A query has three states: `open` (waiting for its reply: the counterparty's when we
asked, ours when we were asked), `answered`, and `refused` (ours only: the NPC refused
or discarded our ccms.314, so it never reached the bank and no reply will come). A query
a bank sent us goes from `answered` back to `open` when the NPC refuses or discards our
ccms.315: the bank never had the answer, so it is owed again; the query keeps the NPC's
refusal (`refused_at`, ...) and the refused reply keeps it too. Whether
it is late is not a state but a fact kept beside it: when it was due (`reply_due_at`),
when operators were warned (`warned_at`) and told it was overdue (`overdue_at`), and
when it was done (`replied_at`). A second reply to an answered query is stored and
shown, and changes nothing. A free-format message of ours the NPC refused keeps its
refusal beside it too (`refused_at`, ...).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import Conflict, NotFound, Problem
from gateway.money import format_yuan
from gateway.queries.answers import AUTO
from gateway.store import Contended

log = logging.getLogger("paygate.queries")

TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"answered", "refused"}),
    "answered": frozenset({"open"}),  # theirs only: the NPC refused our reply (`reopen`)
    "refused": frozenset(),
}
# Why an operator (or the core system) must answer a query again: its `handling`.
HANDLING_REPLY_REFUSED = "reply_refused_by_npc"
STATES = tuple(TRANSITIONS)

# What the NPC's refusal of a message of ours left: when, by which message type (ccms.900
# or ccms.911), its processing code and reject text. Queries and free text keep the same.
REFUSAL_COLUMNS = ("refused_at", "refused_with", "refusal_code", "refusal_reason")
COLUMNS = ("id", "direction", "state", "system", "counterparty", "our_party", "their_party",
           "msg_id", "mesg_id",
           "query_type", "content", "amount_fen", "currency", "orig_msg_id",
           "orig_instg_party", "orig_mt", "orig_tx_id", "orig_instg_indirect",
           "orig_instd_indirect", "orig_tx_type", "payment_id", "chase_of", "source",
           "requested_by", "doubt_at", "ask_due_at", "asked_at", "reply_due_at",
           "replied_at", "reply_msg_id", "reply_content", "replied_by", "handling",
           "warned_at", "overdue_at", "created_at", "updated_at", *REFUSAL_COLUMNS,
           "handling_before_refusal", "client")
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM queries"
REPLY_COLUMNS = ("id", "feed_seq", "query_id", "direction", "sender", "msg_id", "mesg_id",
                 "answered_msg_id", "content", "replied_by", "at", "late", "kind", "code",
                 *REFUSAL_COLUMNS)
FREE_COLUMNS = ("id", "feed_seq", "direction", "sender", "receiver", "system", "msg_id",
                "mesg_id", "content", "requested_by", "at", *REFUSAL_COLUMNS, "client")
LIST_LIMIT_MAX = 500  # one page of a listing; the caller pages with `after`
Condition = tuple[str, list[Any]]  # an SQL condition and its parameters


@dataclass(frozen=True)
class Seen:
    """What one core-system client sees of the desk's records (gateway.scope), as SQL
    with its parameters: `payments`, a subquery of the ids of the payments it sees
    (`scope.seen_ids`; None: every one); `owned`, a condition on the `client` column of a
    query about one of them (`scope.owned_condition`: its own, a bank's, the gateway's;
    None: every one); `unattached`, a condition on the `client` column of a query or
    free text naming no payment of ours (`scope.unattached_condition`; None: every one);
    `unowned`, whether it sees what names none and that no client made
    (`scope.sees_unattached`: a bank's reply to no query of ours)."""

    payments: Condition | None
    unattached: Condition | None
    unowned: bool
    owned: Condition | None = None

    def queries(self) -> Condition | None:
        """The queries it sees, as a condition on the queries table; None: every one."""
        if self.payments is None and self.unattached is None and self.owned is None:
            return None
        about, params = "payment_id IS NOT NULL", []
        if self.payments is not None:
            about, params = f"payment_id IN {self.payments[0]}", list(self.payments[1])
        if self.owned is not None:
            about += f" AND {self.owned[0]}"
            params += self.owned[1]
        unattached = "payment_id IS NULL"
        if self.unattached is not None:
            unattached += f" AND {self.unattached[0]}"
            params += self.unattached[1]
        return f"({about} OR ({unattached}))", params


def insert(tx: Any, row: dict[str, Any]) -> dict[str, Any]:
    data = {c: row.get(c) for c in COLUMNS}
    tx.execute(f"INSERT INTO queries ({', '.join(COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in COLUMNS)})", tuple(data.values()))
    log.info("event=query_recorded query=%s direction=%s counterparty=%s msg_id=%s "
             "payment=%s due=%s", data["id"], data["direction"], data["counterparty"],
             data["msg_id"], data["payment_id"], data["reply_due_at"])
    return data


def not_found(query_id: str) -> NotFound:
    """The refusal of a query id the gateway does not know (or, told alike, one about a
    payment the client may not see)."""
    return NotFound(Problem("query_not_found", "/id", query_id, "an existing query"))


def get(tx: Any, query_id: str) -> dict[str, Any]:
    values = tx.query_one(f"{_SELECT} WHERE id = ?", (query_id,))
    if values is None:
        raise not_found(query_id)
    return dict(zip(COLUMNS, values))


def find_by_message(tx: Any, direction: str, counterparty: str,
                    msg_id: str) -> dict[str, Any] | None:
    values = tx.query_one(f"{_SELECT} WHERE direction = ? AND counterparty = ? "
                          "AND msg_id = ?", (direction, counterparty, msg_id))
    return dict(zip(COLUMNS, values)) if values else None


def find_ours(tx: Any, msg_id: str) -> dict[str, Any] | None:
    """Our query with XML MsgId `msg_id` (ours are unique: one sequence per day)."""
    values = tx.query_one(f"{_SELECT} WHERE direction = 'out' AND msg_id = ?", (msg_id,))
    return dict(zip(COLUMNS, values)) if values else None


def find_ours_sent_as(tx: Any, mesg_id: str) -> dict[str, Any] | None:
    """Our query whose envelope had header MesgID `mesg_id` (as a ccms.911 names it)."""
    values = tx.query_one(f"{_SELECT} WHERE direction = 'out' AND mesg_id = ?", (mesg_id,))
    return dict(zip(COLUMNS, values)) if values else None


def chase_family(tx: Any, root_id: str) -> list[dict[str, Any]]:
    """Our open queries about one matter: the first and the chases that followed it."""
    rows = tx.query(f"{_SELECT} WHERE direction = 'out' AND state = 'open' "
                    "AND (id = ? OR chase_of = ?) ORDER BY id", (root_id, root_id))
    return [dict(zip(COLUMNS, r)) for r in rows]


def search(tx: Any, state: str | None = None, direction: str | None = None,
           payment_id: str | None = None, limit: int = 100,
           seen: Seen | None = None) -> list[dict[str, Any]]:
    """Queries, the soonest due first; open ones are the operators' work list. `seen`:
    what a client sees, when given: a query about a payment it does not see is left
    out, and one about no payment of ours that is not its own (`Seen`)."""
    where, params = [], []
    for column, value in (("state", state), ("direction", direction),
                          ("payment_id", payment_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    shown = None if seen is None else seen.queries()
    if shown is not None:
        where.append(shown[0])
        params += shown[1]
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY reply_due_at, id LIMIT ?"
    rows = tx.query(sql, (*params, min(limit, LIST_LIMIT_MAX)))
    return [dict(zip(COLUMNS, r)) for r in rows]


def answer(tx: Any, query: dict[str, Any], now: datetime, reply_msg_id: str, content: str,
           replied_by: str) -> dict[str, Any]:
    """Mark an open query answered; the caller has stored the reply itself."""
    if "answered" not in TRANSITIONS[query["state"]]:
        raise Conflict(Problem("query_not_open", "/state", query["state"], "open",
                               f"query {query['id']} is already {query['state']}"))
    at = now.isoformat()
    late = is_late(query, now)
    # A reply that comes after its due time counts as overdue even when the timer did
    # not pass in between, so the record and the summary never miss a late one.
    overdue_at = query["overdue_at"] or (at if late else None)
    # Answered, it no longer waits for a new answer after the NPC refused our reply: it
    # takes back the handling it had before the refusal (kept by `reopen`).
    handling = handling_before_refusal(query) or query["handling"]
    # Conditional on the query still being open: an operator at another gateway process
    # (or the bank's reply handled there) may have answered it since it was read; the
    # work is then undone and runs again on what that process did.
    if tx.execute("UPDATE queries SET state = 'answered', replied_at = ?, reply_msg_id = ?, "
                  "reply_content = ?, replied_by = ?, overdue_at = ?, handling = ?, "
                  "updated_at = ? WHERE id = ? AND state = ?",
                  (at, reply_msg_id, content, replied_by, overdue_at, handling, at,
                   query["id"], query["state"])) != 1:
        raise Contended(f"query {query['id']} no longer {query['state']}")
    log.info("event=query_answered query=%s by=%s late=%s handling=%s", query["id"],
             replied_by, late, handling)
    return dict(query, state="answered", replied_at=at, reply_msg_id=reply_msg_id,
                reply_content=content, replied_by=replied_by, overdue_at=overdue_at,
                handling=handling, updated_at=at)


def handling_before_refusal(query: dict[str, Any]) -> str | None:
    """The handling the query had before the NPC refused our reply to it: the one kept
    beside the refusal's mark while it carries that mark, else its own."""
    if query["handling"] == HANDLING_REPLY_REFUSED:
        return query["handling_before_refusal"]
    return query["handling"]


def refuse(tx: Any, query: dict[str, Any], now: datetime, refused_with: str, code: str,
           reason: str | None) -> dict[str, Any]:
    """Mark our open query refused by the NPC: it never reached the bank, so no reply is
    due and it is neither chased nor overdue from now on."""
    if "refused" not in TRANSITIONS[query["state"]]:
        raise Conflict(Problem("query_not_open", "/state", query["state"], "open",
                               f"query {query['id']} is already {query['state']}"))
    at = now.isoformat()
    # Conditional as in `answer`: the bank's reply handled at another gateway process
    # meanwhile makes this work run again on what that process did.
    if tx.execute("UPDATE queries SET state = 'refused', refused_at = ?, refused_with = ?, "
                  "refusal_code = ?, refusal_reason = ?, updated_at = ? "
                  "WHERE id = ? AND state = ?",
                  (at, refused_with, code, reason, at, query["id"], query["state"])) != 1:
        raise Contended(f"query {query['id']} no longer {query['state']}")
    log.info("event=query_refused query=%s refused_with=%s npc_code=%s", query["id"],
             refused_with, code)
    return dict(query, state="refused", refused_at=at, refused_with=refused_with,
                refusal_code=code, refusal_reason=reason, updated_at=at)


def reopen(tx: Any, query: dict[str, Any], reply: dict[str, Any], now: datetime,
           refused_with: str, code: str, reason: str | None) -> dict[str, Any] | None:
    """Open again a query a bank sent us whose answer was `reply`, which the NPC refused:
    the bank never had it, so the query is owed an answer again and waits for an
    operator or the core system (`handling`), the NPC's refusal kept on it. None when
    `reply` is not what answered the query (a refusal of an earlier reply, come after
    the query was answered again): nothing changes then."""
    assert query["direction"] == "in", "only a query a bank sent us is answered by us"
    if query["state"] != "answered" or query["reply_msg_id"] != reply["msg_id"]:
        return None
    at = now.isoformat()
    # The handling taken back once it is answered anew (`answer`): the first one's, when
    # an answer given after a refusal is refused in turn.
    before = handling_before_refusal(query)
    # Conditional as in `answer`, and on the answer being that reply.
    if tx.execute("UPDATE queries SET state = 'open', replied_at = NULL, reply_msg_id = NULL, "
                  "reply_content = NULL, replied_by = NULL, handling = ?, refused_at = ?, "
                  "refused_with = ?, refusal_code = ?, refusal_reason = ?, updated_at = ?, "
                  "handling_before_refusal = ? "
                  "WHERE id = ? AND state = 'answered' AND reply_msg_id = ?",
                  (HANDLING_REPLY_REFUSED, at, refused_with, code, reason, at, before,
                   query["id"], reply["msg_id"])) != 1:
        raise Contended(f"query {query['id']} no longer answered by {reply['msg_id']}")
    log.info("event=query_reopened query=%s refused_reply=%s refused_with=%s npc_code=%s",
             query["id"], reply["msg_id"], refused_with, code)
    return dict(query, state="open", replied_at=None, reply_msg_id=None, reply_content=None,
                replied_by=None, handling=HANDLING_REPLY_REFUSED, refused_at=at,
                refused_with=refused_with, refusal_code=code, refusal_reason=reason,
                updated_at=at, handling_before_refusal=before)


def restore_handling(tx: Any) -> list[str]:
    """Mend the queries older code left with the mark of a refused reply: those the NPC
    refused our reply to before `reopen` kept their handling get it kept beside the mark
    (`handling_before_refusal`): the reason of the alert that put the query before
    operators when it came (incoming.ALERT_NEEDS_OPERATOR), else `auto`, the gateway
    having answered it by itself (a query gets the one or the other, and alerts are never
    deleted). Those answered again since take it back, as `answer` does now. Run at every
    start: once done, no query is left to mend. The ids of the queries mended."""
    from gateway.queries.incoming import ALERT_NEEDS_OPERATOR  # it imports this module

    kept = [query_id for (query_id,) in tx.query(
        "SELECT id FROM queries WHERE refused_at IS NOT NULL AND direction = 'in' "
        "AND handling = ? AND handling_before_refusal IS NULL ORDER BY id",
        (HANDLING_REPLY_REFUSED,))]
    for query_id in kept:
        details = [json.loads(detail) for (detail,) in tx.query(
            "SELECT detail FROM alerts WHERE code = ? AND detail LIKE ? ORDER BY id",
            (ALERT_NEEDS_OPERATOR, f"%{query_id}%"))]
        reasons = [d.get("reason") for d in details if d.get("query") == query_id]
        before = reasons[0] if reasons else AUTO
        tx.execute("UPDATE queries SET handling_before_refusal = ? WHERE id = ? "
                   "AND handling_before_refusal IS NULL", (before, query_id))
        log.info("event=query_handling_kept query=%s handling_before_refusal=%s",
                 query_id, before)
    answered = [query_id for (query_id,) in tx.query(
        "UPDATE queries SET handling = handling_before_refusal WHERE refused_at IS NOT NULL "
        "AND direction = 'in' AND state = 'answered' AND handling = ? RETURNING id",
        (HANDLING_REPLY_REFUSED,))]
    for query_id in answered:
        log.info("event=query_handling_restored query=%s", query_id)
    return sorted({*kept, *answered})


def is_late(query: dict[str, Any], at: datetime) -> bool:
    return at > datetime.fromisoformat(query["reply_due_at"])


def answered_late(query: dict[str, Any]) -> bool | None:
    """Whether the reply came after its due time; None while there is no reply (the
    query open, or refused by the NPC)."""
    if query["replied_at"] is None:
        return None
    return is_late(query, datetime.fromisoformat(query["replied_at"]))


def is_overdue(query: dict[str, Any], now: datetime) -> bool:
    """Late, as the closing summary counts it: the reply came after its due time, or it
    has not come and the due time has passed (whether or not the deadline timer has
    marked it yet, `overdue_at`). An answered query stays overdue when it was late, so
    that operations see which deadlines were missed, not only which are missed now. A
    query the NPC refused never reached the bank: no reply was due, so it is not overdue,
    even where the timer had marked it before the refusal came."""
    if query["state"] == "refused":
        return False
    if query["overdue_at"] is not None:
        return True
    if query["replied_at"] is not None:
        return bool(answered_late(query))
    return is_late(query, now)


def add_reply(tx: Any, reply: dict[str, Any]) -> dict[str, Any]:
    """A reply, or (`kind` "refusal") the NPC's refusal of our query, in the feed."""
    data = {c: reply.get(c) for c in REPLY_COLUMNS}
    data["kind"] = data["kind"] or "reply"
    tx.execute(f"INSERT INTO query_replies ({', '.join(REPLY_COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in REPLY_COLUMNS)})", tuple(data.values()))
    return data


def find_our_reply(tx: Any, *, msg_id: str | None = None,
                   mesg_id: str | None = None) -> dict[str, Any] | None:
    """Our reply (ccms.315) by its XML MsgId (as a ccms.900 names it) or its header's
    MesgID (as a ccms.911 does)."""
    return _ours_by(tx, "query_replies", REPLY_COLUMNS, msg_id, mesg_id)


def _ours_by(tx: Any, table: str, columns: tuple[str, ...], msg_id: str | None,
             mesg_id: str | None) -> dict[str, Any] | None:
    """A message we sent, kept in `table`, by its XML MsgId, else its header's MesgID."""
    column, value = ("msg_id", msg_id) if msg_id is not None else ("mesg_id", mesg_id)
    values = tx.query_one(f"SELECT {', '.join(columns)} FROM {table} "
                          f"WHERE direction = 'out' AND {column} = ?", (value,))
    return dict(zip(columns, values)) if values else None


def refuse_reply(tx: Any, reply: dict[str, Any], now: datetime, refused_with: str,
                 code: str, reason: str | None) -> dict[str, Any] | None:
    """Mark our reply refused by the NPC; None when it was refused already (the same
    notice again)."""
    at = now.isoformat()
    if tx.execute("UPDATE query_replies SET refused_at = ?, refused_with = ?, "
                  "refusal_code = ?, refusal_reason = ? WHERE id = ? AND refused_at IS NULL",
                  (at, refused_with, code, reason, reply["id"])) != 1:
        return None
    log.info("event=query_reply_refused reply=%s query=%s refused_with=%s npc_code=%s",
             reply["id"], reply["query_id"], refused_with, code)
    return dict(reply, refused_at=at, refused_with=refused_with, refusal_code=code,
                refusal_reason=reason)


def reply_exists(tx: Any, reply_id: str) -> bool:
    return tx.query_one("SELECT 1 FROM query_replies WHERE id = ?", (reply_id,)) is not None


def replies_of(tx: Any, query_id: str) -> list[dict[str, Any]]:
    """The replies to a query (its refusal, if any, is shown as the query's `refusal`)."""
    rows = tx.query(f"SELECT {', '.join(REPLY_COLUMNS)} FROM query_replies "
                    "WHERE query_id = ? AND kind = 'reply' ORDER BY feed_seq", (query_id,))
    return [reply_view(dict(zip(REPLY_COLUMNS, r))) for r in rows]


def reply_feed(tx: Any, after: int, limit: int,
               seen: Seen | None = None) -> list[dict[str, Any]]:
    """Replies received from counterparties and the NPC's refusals of our queries, in
    arrival order after position `after`. `seen`: what a client sees, when given: a
    reply to a query it does not see is left out, as its query is from `search`, and
    one answering no query of ours unless it sees what no client made (`Seen`)."""
    where, params = "direction = 'in' AND feed_seq > ?", [after]
    shown = None if seen is None else seen.queries()
    if shown is not None:
        unmatched = "query_id IS NULL OR " if seen.unowned else ""
        where += (f" AND ({unmatched}query_id IN (SELECT id FROM queries"
                  f" WHERE {shown[0]}))")
        params += shown[1]
    rows = tx.query(f"SELECT {', '.join(REPLY_COLUMNS)} FROM query_replies "
                    f"WHERE {where} ORDER BY feed_seq LIMIT ?",
                    (*params, min(limit, LIST_LIMIT_MAX)))
    return [reply_view(dict(zip(REPLY_COLUMNS, r))) for r in rows]


def reply_view(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "seq": r["feed_seq"], "query_id": r["query_id"],
            "direction": r["direction"], "sender": r["sender"], "msg_id": r["msg_id"],
            "answers_msg_id": r["answered_msg_id"], "content": r["content"],
            "replied_by": r["replied_by"], "at": r["at"], "late": bool(r["late"]),
            "kind": r["kind"], "code": r["code"], "refusal": refusal_view(r)}


def add_free_format(tx: Any, row: dict[str, Any]) -> dict[str, Any]:
    data = {c: row.get(c) for c in FREE_COLUMNS}
    tx.execute(f"INSERT INTO free_format ({', '.join(FREE_COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in FREE_COLUMNS)})", tuple(data.values()))
    log.info("event=free_format_recorded id=%s direction=%s sender=%s receiver=%s",
             data["id"], data["direction"], data["sender"], data["receiver"])
    return data


def find_free_format_ours(tx: Any, *, msg_id: str | None = None,
                          mesg_id: str | None = None) -> dict[str, Any] | None:
    """Our free-format message by its XML MsgId (as a ccms.900 names it) or its header's
    MesgID (as a ccms.911 does)."""
    return _ours_by(tx, "free_format", FREE_COLUMNS, msg_id, mesg_id)


def refuse_free_format(tx: Any, item: dict[str, Any], now: datetime, refused_with: str,
                       code: str, reason: str | None, feed_seq: int) -> dict[str, Any] | None:
    """Mark our free-format message refused by the NPC, moved to `feed_seq` at the end of
    the feed so that a client paging it sees the message again, refused. None when it was
    refused already (the same notice again)."""
    at = now.isoformat()
    if tx.execute("UPDATE free_format SET refused_at = ?, refused_with = ?, "
                  "refusal_code = ?, refusal_reason = ?, feed_seq = ? "
                  "WHERE id = ? AND refused_at IS NULL",
                  (at, refused_with, code, reason, feed_seq, item["id"])) != 1:
        return None
    log.info("event=free_format_refused id=%s refused_with=%s npc_code=%s", item["id"],
             refused_with, code)
    return dict(item, feed_seq=feed_seq, refused_at=at, refused_with=refused_with,
                refusal_code=code, refusal_reason=reason)


def free_format_exists(tx: Any, item_id: str) -> bool:
    return tx.query_one("SELECT 1 FROM free_format WHERE id = ?", (item_id,)) is not None


def free_format_list(tx: Any, direction: str | None, after: int, limit: int,
                     seen: Seen | None = None) -> list[dict[str, Any]]:
    """Free-format messages both ways, in feed order after position `after`. `seen`:
    what a client sees, when given: free text names no payment, so it sees what it sent
    and, when it sees what no client made, the banks' (`Seen`)."""
    sql = f"SELECT {', '.join(FREE_COLUMNS)} FROM free_format WHERE feed_seq > ?"
    params: list[Any] = [after]
    if direction is not None:
        sql += " AND direction = ?"
        params.append(direction)
    if seen is not None and seen.unattached is not None:
        sql += f" AND {seen.unattached[0]}"
        params += seen.unattached[1]
    rows = tx.query(sql + " ORDER BY feed_seq LIMIT ?", (*params, min(limit, LIST_LIMIT_MAX)))
    return [free_format_view(dict(zip(FREE_COLUMNS, r))) for r in rows]


def free_format_view(item: dict[str, Any]) -> dict[str, Any]:
    """A free-format message as listed: its fields (not the client that sent it, which
    only that client sees it), `seq`, and `refusal` (null unless the NPC refused it)."""
    shown = {c: item[c] for c in FREE_COLUMNS if c not in (*REFUSAL_COLUMNS, "client")}
    return dict(shown, seq=item["feed_seq"], refusal=refusal_view(item))


def refusal_view(row: dict[str, Any]) -> dict[str, Any] | None:
    if row.get("refused_at") is None:
        return None
    return {"message_type": row["refused_with"], "code": row["refusal_code"],
            "reason": row["refusal_reason"], "at": row["refused_at"]}


def answered_anew(q: dict[str, Any]) -> bool:
    """A bank's query answered again after the NPC refused our earlier reply: the
    refusal is over for it (kept on the refused reply, and in the console's list of
    refusals), and so is the reason it was open again."""
    return q["direction"] == "in" and q["state"] == "answered" and \
        q["refused_at"] is not None


def handling(q: dict[str, Any]) -> str | None:
    """How the query is handled, as shown: `reply_refused_by_npc` only while it waits
    for its new answer; once answered anew, the handling it had before the refusal
    (kept beside it when it was opened again, `reopen`)."""
    if answered_anew(q) and q["handling"] == HANDLING_REPLY_REFUSED:
        return q["handling_before_refusal"] or q["handling"]
    return q["handling"]


def view(q: dict[str, Any], now: datetime | None = None,
         replies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the core system and operators see of a query."""
    out = {
        "id": q["id"], "direction": q["direction"], "state": q["state"],
        "system": q["system"], "counterparty": q["counterparty"],
        "message": {"type": "ccms.314.001.01", "msg_id": q["msg_id"],
                    "mesg_id": q["mesg_id"]},
        "query_type": q["query_type"], "content": q["content"],
        "amount": format_yuan(q["amount_fen"]), "amount_fen": q["amount_fen"],
        "original": {"msg_id": q["orig_msg_id"], "sending_bank": q["orig_instg_party"],
                     "message_type": q["orig_mt"], "tx_id": q["orig_tx_id"]},
        "payment_id": q["payment_id"], "chase_of": q["chase_of"], "source": q["source"],
        "requested_by": q["requested_by"], "handling": handling(q),
        "doubt_at": q["doubt_at"], "ask_due_at": q["ask_due_at"], "asked_at": q["asked_at"],
        "reply_due_at": q["reply_due_at"], "replied_at": q["replied_at"],
        "reply": None if q["replied_at"] is None else {
            "msg_id": q["reply_msg_id"], "content": q["reply_content"],
            "replied_by": q["replied_by"]},
        "warned_at": q["warned_at"], "overdue_at": q["overdue_at"],
        "refusal": None if answered_anew(q) else refusal_view(q),
    }
    out["answered_late"] = answered_late(q)
    if now is not None:
        out["overdue"] = is_overdue(q, now)
    if replies is not None:
        out["replies"] = replies
    return out
