"""Messages we put on the link: headers, message ids, building and claiming.

A message is built once, signed once and its exact bytes stored in the outbox before it
is sent. Every later attempt (a retry after a timeout, a restart after a crash) sends
those same bytes under the same message id, which the NPC recognises as a duplicate: a
payment is never sent again under a new message id (CONTRACT.md §4).

One exception: an operator's new priority for a payment whose message the NPC provably
never had (`rebuild_credit`). Its bytes are built again under the same ids with the new
priority, and the old ones are gone before anything can send them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import orjson

from gateway import clock, keys, payments, ready
from gateway.errors import Conflict, Problem
from gateway.messages import codec, hvps111, hvps112
from gateway.messages.envelope import Header
from gateway.messages.signing import KeyRing
from gateway.store import NOT_READ, Contended, answered, gather, reading_once, rows_by_id

NPC = "0000"

log = logging.getLogger("paygate.outbound")


def new_header(tx: Any, now: datetime, sender: str, receiver: str, mesg_type: str,
               system: str, priority: int = 3) -> Header:
    """A bank-sent header with a fresh 20-digit MesgID (date + 12-digit daily sequence)."""
    written = clock.texts(now)
    day = written.day
    seq = payments.next_seq(tx, f"mesg:{day}")
    mesg_id = f"{day}{seq:012d}"
    return Header(orig_sender=sender, orig_sender_sid=system, orig_receiver=receiver,
                  orig_receiver_sid=system, send_date=day, send_time=written.time,
                  mesg_type=mesg_type, mesg_id=mesg_id, mesg_ref_id=mesg_id,
                  priority=str(priority), direction="U")


def credit_transfer_of(p: dict[str, Any], created_at: str) -> hvps111.CreditTransfer:
    """The hvps.111 of payment `p`. A payment that came as a ready message carries what
    that message said beyond the payment's row (`p["carried"]`, gateway.ready.CARRIED):
    the agents' names, the address lines, the charge bearer."""
    return hvps111.CreditTransfer(
        msg_id=p["msg_id"], created_at=created_at, end_to_end_id=p["end_to_end_id"],
        tx_id=p["tx_id"], business_type=p["business_type"], business_kind=p["business_kind"],
        amount_fen=p["amount_fen"], currency=p["currency"],
        priority={1: "URGT", 2: "HIGH", 3: "NORM"}[p["priority"]],
        instg_direct=p["sender_direct"], instg_branch=p["payer_bank"],
        instd_direct=p["receiver_direct"], instd_branch=p["payee_bank"],
        debtor_name=p["payer_name"], debtor_account=p["payer_account"],
        debtor_agent=p["payer_bank"], creditor_agent=p["payee_bank"],
        creditor_name=p["payee_name"], creditor_account=p["payee_account"],
        remittance=tuple(p["remittance"]), **(p.get("carried") or {}),
    )


# The route key naming the payee institution's own member code when it is not the bank
# holding its account (payee_bank): our return of an incoming hvps.112 names the
# original's debtor institution so (gateway.exceptions.returns), from the key
# PAYER_INSTITUTION the incoming payment keeps (gateway.handlers).
PAYEE_INSTITUTION = "payee_institution"
PAYER_INSTITUTION = "payer_institution"


def institution_transfer_of(p: dict[str, Any], created_at: str
                            ) -> hvps112.InstitutionTransfer:
    """The hvps.112 (pacs.009 FinInstnCdtTrf) of a payment whose business type the
    router sends as an institution transfer (A103, A104, A106, A107, A200: SPEC.md d.4).
    Its field list is hvps.111's without the business kind (SPEC.md c, hvps.112): payer
    and payee are each named by the bank that holds the account (member code), their
    name and account, as in the shared sample (the payee institution by its own code
    when the route names one, PAYEE_INSTITUTION; what a party lacks, a name or an
    account, left out); the business type travels in LclInstrm/Prtry and the kind as a
    /F25/ line before the remittance lines."""
    return hvps112.InstitutionTransfer(
        msg_id=p["msg_id"], created_at=created_at, end_to_end_id=p["end_to_end_id"],
        tx_id=p["tx_id"], business_type=p["business_type"], amount_fen=p["amount_fen"],
        priority={1: "URGT", 2: "HIGH", 3: "NORM"}[p["priority"]],
        instg_direct=p["sender_direct"], instg_branch=p["payer_bank"],
        instd_direct=p["receiver_direct"], instd_branch=p["payee_bank"],
        debtor=hvps112.Institution(p["payer_bank"], p["payer_name"]),
        creditor=hvps112.Institution(
            (p.get("route") or {}).get(PAYEE_INSTITUTION) or p["payee_bank"], p["payee_name"]),
        debtor_account=p["payer_account"], creditor_account=p["payee_account"],
        debtor_agent=hvps112.Institution(p["payer_bank"]),
        creditor_agent=hvps112.Institution(p["payee_bank"]),
        remittance=(f"/{hvps112.KIND_TAG}/{p['business_kind']}", *p["remittance"]),
        currency=p["currency"],
    )


def credit_body(p: dict[str, Any], created_at: str) -> bytes:
    """The XML body of an HVPS payment's message, of the type its route chose: hvps.112
    for an institution transfer, hvps.111 for the rest. The body must be of the type its
    header names: the NPC discards a message whose header and body disagree (ccms.911)."""
    if p["msg_type"] == hvps112.MESSAGE_TYPE:
        return hvps112.build(institution_transfer_of(p, created_at))
    assert p["msg_type"] == hvps111.MESSAGE_TYPE, f"an HVPS credit, not {p['msg_type']}"
    return hvps111.build(credit_transfer_of(p, created_at))


def stored_bytes(outbox: str) -> str:
    """The SQL of an outbox row's bytes, `outbox` naming the row's table in the statement.

    A message's bytes are written once, in the archive; its outbox row names the message
    (type and MesgID) and carries no copy. A row updated four to six times on its way
    out (claimed, sent, acknowledged, done) then rewrites a small record instead of a
    page holding a 2 KB signed message. Rows that carry bytes themselves (webhook rows,
    and messages put in the outbox before the bytes were kept only in the archive) are
    read as they are."""
    return (f"COALESCE({outbox}.envelope, (SELECT a.envelope FROM archive a WHERE "
            f"a.mesg_id = {outbox}.mesg_id AND a.direction = 'out' AND "
            f"a.mesg_type = {outbox}.mesg_type LIMIT 1))")


_ARCHIVED = ("SELECT envelope FROM archive WHERE mesg_id = ? AND direction = 'out' AND "
             "mesg_type = ? LIMIT 1")


def archived_bytes(tx: Any, mesg_type: str, mesg_id: str) -> bytes:
    """The bytes of a message we built, from the archive (`stored_bytes`)."""
    row = tx.query_one(_ARCHIVED, (mesg_id, mesg_type))
    assert row is not None, f"{mesg_type} {mesg_id} is archived"
    return row[0]


def archive(tx: Any, direction: str, header: Header, envelope: bytes, at: datetime,
            payment_id: str | None = None) -> None:
    tx.execute("INSERT INTO archive (direction, mesg_type, mesg_id, sender, receiver, at, "
               "payment_id, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (direction, header.mesg_type, header.mesg_id, header.orig_sender,
                header.orig_receiver, clock.texts(at).iso, payment_id, envelope))


_ARCHIVE_ROWS = ("INSERT INTO archive (direction, mesg_type, mesg_id, sender, receiver, at, "
                 "payment_id, envelope) VALUES")
# What `archive_later` gathers under (gateway.store.gather).
ARCHIVE_LATER = "archive"


def archive_later(tx: Any, direction: str, header: Header, envelope: bytes, at: datetime,
                  payment_id: str | None = None) -> None:
    """`archive`, written once every piece of work of the transaction has run, with the
    other messages archived so, in multi-row INSERTs (gateway.store.gather): a link
    POST's results and the 990s answering them, two or three rows a payment, cost a
    statement each otherwise. A piece of work undone takes its rows with it. For a
    message nothing reads back from the archive in the same transaction: what this
    process sends or processes again reads it after the commit."""
    gather(tx, ARCHIVE_LATER, [(direction, header.mesg_type, header.mesg_id,
                                header.orig_sender, header.orig_receiver,
                                clock.texts(at).iso, payment_id, envelope)], _archive_rows)


def _archive_rows(tx: Any, rows: list[tuple[Any, ...]]) -> None:
    tx.insert_rows(_ARCHIVE_ROWS, rows)


def queue_message(tx: Any, header: Header, body: bytes, keyring: KeyRing, now: datetime,
                  payment_id: str | None = None, sign: bool = True) -> int:
    """Build, sign, archive and put one message in the outbox for the link sender."""
    envelope = codec.encode(header, body, keyring, sign=sign)
    return put_message(tx, header, envelope, now, payment_id)


# A row put in the outbox already claimed by the work that wrote it, which sends it
# itself once committed (no stream entry, no separate claim). The claim is an ordinary
# one: counted as an attempt, and on PostgreSQL owned by this session, so that a
# process that dies before sending leaves a claim that start-up recovery or the sweeper
# ends (`orphaned`), as for any other.
_PUT = {(dialect, claimed): "INSERT INTO outbox (payment_id, kind, stream, state, mesg_type, "
        "mesg_id, receiver, attempts, created_at, updated_at"
        + (", claimed_by" if claimed and dialect == "postgresql" else "")
        + ") VALUES (?, 'message', ?, " + ("'sending'" if claimed else "'pending'")
        + ", ?, ?, ?, " + ("1" if claimed else "0") + ", ?, ?"
        + (", pg_backend_pid()" if claimed and dialect == "postgresql" else "")
        + ") RETURNING id"
        for dialect in ("sqlite", "postgresql") for claimed in (True, False)}


def put_message(tx: Any, header: Header, envelope: bytes, now: datetime,
                payment_id: str | None = None, claimed: bool = False) -> int:
    """Archive a built message and put it in the outbox (by name, `stored_bytes`): pending
    for the link sender, or `claimed` by the caller, who sends it after commit and marks
    it sent."""
    archive(tx, "out", header, envelope, now, payment_id)
    row = tx.query_one(_PUT[tx.dialect, claimed],
                       (payment_id, keys.OUT_LINK, header.mesg_type, header.mesg_id,
                        header.orig_receiver, now.isoformat(), now.isoformat()))
    return row[0]


_PUT_ROWS = ("INSERT INTO outbox (payment_id, kind, stream, state, mesg_type, mesg_id, "
             "receiver, attempts, created_at, updated_at) VALUES")
# What `put_later` gathers under (gateway.store.gather).
PUT_LATER = "outbox_messages"


def put_later(tx: Any, header: Header, envelope: bytes, now: datetime, claimed: bool,
              numbered: Callable[[int], None]) -> None:
    """`put_message` for a message no payment names (a ccms.990 answering the NPC),
    archived by `archive_later` and its outbox row written with the transaction's other
    such rows once its pieces of work have run: a multi-row INSERT for a link POST's
    990s instead of one each. `numbered` is given the row's id then (before the commit,
    and so before anything could send the row). On PostgreSQL a claimed row records the
    claiming session (`_PUT`), and the row is written at once."""
    archive_later(tx, "out", header, envelope, now)
    at = now.isoformat()
    if tx.dialect != "sqlite":
        numbered(tx.query_one(_PUT[tx.dialect, claimed], (
            None, keys.OUT_LINK, header.mesg_type, header.mesg_id, header.orig_receiver,
            at, at))[0])
        return
    gather(tx, PUT_LATER, [((None, "message", keys.OUT_LINK,
                             "sending" if claimed else "pending", header.mesg_type,
                             header.mesg_id, header.orig_receiver, 1 if claimed else 0,
                             at, at), numbered)], _put_rows)


def _put_rows(tx: Any, items: list[tuple[tuple[Any, ...], Callable[[int], None]]]) -> None:
    ids = dict((mesg_id, outbox_id) for outbox_id, mesg_id in tx.insert_rows(
        _PUT_ROWS, [row for row, _ in items], " RETURNING id, mesg_id"))
    for row, numbered in items:
        numbered(ids[row[5]])


# How long a claim to send an outbox row stands before the sweeper may give the row to
# another attempt: well past the link's timeout (gateway.app.LINK_TIMEOUT_S) and the
# commit of the outcome. On PostgreSQL a claim also ends at once with the database
# session of the process that made it (a gateway process that died).
CLAIM_LEASE_S = 30.0

# pending → sending, only if still pending: of two processes that both read the stream
# entry, one sends. PostgreSQL also records the claiming session. (Webhook rows count
# their attempts when the push ends, so their claim does not.)
_CLAIMER = {"sqlite": "", "postgresql": ", claimed_by = pg_backend_pid()"}
_TAKE = {(dialect, counted): "UPDATE outbox SET state = 'sending', updated_at = ?"
         + (", attempts = attempts + 1" if counted else "") + claimer
         + " WHERE id = ? AND state = 'pending'"
         for dialect, claimer in _CLAIMER.items() for counted in (True, False)}
# Claims whose sender is gone: SQLite has one process, so a claim older than the cut-off
# (the lease, or every claim at start-up) is orphaned; PostgreSQL also knows at once
# that the claiming session has ended.
_ORPHANED = {
    "sqlite": "UPDATE outbox SET state = 'pending', updated_at = ? WHERE state = 'sending' "
              "AND updated_at < ? RETURNING id, stream",
    "postgresql": "UPDATE outbox SET state = 'pending', updated_at = ? WHERE state = 'sending' "
                  "AND (updated_at < ? OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
                  "WHERE a.pid = outbox.claimed_by)) RETURNING id, stream",
}


# `take`, counted, reading what the sender needs of the row in the same statement.
# (The bytes are read by a statement of their own, `archived_bytes`: SQLite 3.40 gave one
# row's bytes for another when a RETURNING clause read them through a subquery.)
_TAKE_READ = {dialect: _TAKE[dialect, True] + " RETURNING kind, envelope, payment_id, "
              "mesg_type, mesg_id" for dialect in _CLAIMER}


def take(tx: Any, outbox_id: int, now: datetime, count_attempt: bool = True) -> bool:
    """Claim one outbox row for sending; False when it is not pending (another process
    has it, it was sent already, it was cancelled or waits for the window)."""
    sql = _TAKE[tx.dialect, count_attempt]
    return tx.execute(sql, (now.isoformat(), outbox_id)) == 1


def give_back(tx: Any, outbox_id: int, now: datetime, untaken: bool = False) -> None:
    """A send that failed gives its claim back: the row is pending again, for the retry.
    `untaken`: the NPC provably did not take the message in this attempt (the failure's
    own `untaken`, gateway.worker.RetryLater); counted on the row (`Delivery`)."""
    tx.execute(_GIVE_BACK[untaken], (now.isoformat(), outbox_id))


# The event of a payment `sent` whose first delivery attempt provably did not give the
# NPC its message (a 503, no connection, the link held while down, kept back at the
# link): its state stays, and the core system is told by the webhook (`previous` equal
# to `state`) that the NPC has not taken it; GET /v1/transfers/{id} shows `delivery`.
NOT_TAKEN_EVENT = "hvps_not_taken_by_npc"
payments.TOLD_UNCHANGED.add(NOT_TAKEN_EVENT)


def give_back_sent(tx: Any, outbox_id: int, now: datetime, untaken: bool,
                   notifier: payments.Notifier) -> None:
    """`give_back` of a message the link sender or a send after commit claimed: for an
    HVPS payment `sent` whose first attempt this was, provably untaken, the payment's
    history and the webhook say so (NOT_TAKEN_EVENT), once: later attempts, and a
    first one that may have reached the NPC, tell nothing (its result, or GET's
    `delivery`, does)."""
    if not untaken:
        give_back(tx, outbox_id, now)
        return
    row = tx.query_one(_GIVE_BACK[True] + " RETURNING kind, payment_id, attempts, untaken",
                       (now.isoformat(), outbox_id))
    if row is None or row[0] != "hvps_credit" or (int(row[2]), int(row[3])) != (1, 1):
        return
    payment = payments.get(tx, row[1])
    if payment["state"] == "sent":
        payments.transition(tx, payment, "sent", NOT_TAKEN_EVENT, now, notifier,
                            outbox=outbox_id)


_GIVE_BACK = {untaken: "UPDATE outbox SET state = 'pending', updated_at = ?"
              + (", untaken = untaken + 1" if untaken else "")
              + " WHERE id = ? AND state = 'sending'" for untaken in (False, True)}


def untaken_by(exc: BaseException) -> bool:
    """Whether a failed delivery provably did not give the NPC the message."""
    return bool(getattr(exc, "untaken", False))


# Outbox states of a message the NPC took: it answered 2xx for it (sent), its ccms.990
# came (acked), or a result about it ended the row (done). `done` also ends a row that
# never left (its payment cancelled before sending, or no longer sendable when claimed):
# for one payment's message `Delivery.taken` tells the two apart by its attempts.
TAKEN = ("sent", "acked", "done")


@dataclass(frozen=True)
class Delivery:
    """Where a payment's message stands between us and the NPC, as its outbox row says.

    Every claim of the row for sending counts an attempt (`attempts`); an attempt that
    ended without the NPC taking the message, provably, counts in `untaken` too: no
    connection made, the link held while down, a 503, or a 4xx refusal. Anything else (a
    timeout, a connection lost mid-request, an unreadable answer, a process that died
    while sending) may have left the message with the NPC. So the NPC never had it when
    the row is not taken and the two counts are equal."""

    outbox_id: int
    state: str
    attempts: int
    untaken: int

    @property
    def taken(self) -> bool:
        """On evidence: the NPC answered 2xx (sent), its ccms.990 came (acked), or the row
        ended (done) after an attempt that may have given it the message. A row ended
        with every attempt provably untaken, or none made (a payment cancelled before
        it was sent), was never taken."""
        if self.state == "done":
            return self.attempts > self.untaken
        return self.state in TAKEN

    @property
    def provably_untaken(self) -> bool:
        """Not taken, and no attempt that may have given it to the NPC: a row being sent
        now (`sending`) is not, whatever its past attempts."""
        return not self.taken and self.state != "sending" and self.attempts == self.untaken

    def public(self) -> dict[str, Any]:
        """What the payment's view shows of it (`delivery`, GET /v1/transfers/{id} and
        the console): whether the NPC took the message (it answered 2xx for it, its
        ccms.990 came, or a result about it), the link attempts so far (an attempt under
        way counted), and how many of them provably did not give it to the NPC. A
        payment `sent` with the NPC not taking it is one handed to the link that the NPC
        has not taken yet (it refused each attempt with 503, say)."""
        return {"taken_by_npc": self.taken, "attempts": self.attempts,
                "attempts_not_taken": self.untaken}

    def describe(self) -> str:
        """The row's state for people: what operators read in a refusal."""
        under_way = 1 if self.state == "sending" else 0
        # A taken row's last attempt is the one the NPC took (or may have: `done` after
        # one that may have given it the message): it did not fail.
        took = 1 if self.taken and self.attempts else 0
        failed = self.attempts - under_way - took
        head = f"outbox row {self.outbox_id} {self.state}"
        if not self.attempts:
            return f"{head}, no delivery attempt yet"
        counts = [f"{failed} failed, of which {self.untaken} provably never reached the NPC"
                  if failed else "none failed"]
        if took:
            counts.append("the last taken by the NPC")
        if under_way:
            counts.append("1 under way now")
        plural = "s" if self.attempts != 1 else ""
        return f"{head}, {self.attempts} delivery attempt{plural}: {', '.join(counts)}"


def refuse_if_maybe_taken(tx: Any, payment_id: str, path: str) -> None:
    """Refuse to take back (hold out of sending, or end with its hold released) a
    payment whose message is not taken but an earlier delivery attempt may have given
    to the NPC: the NPC may settle it. Refused with what to do instead."""
    sent = delivery(tx, payment_id)
    if sent is None or sent.taken or sent.attempts == sent.untaken:
        return
    raise Conflict(Problem(
        "payment_maybe_taken_by_npc", path, sent.attempts - sent.untaken,
        "every delivery attempt ended without the NPC taking the message (no connection, "
        "link held while down, 503, a 4xx refusal)",
        f"payment {payment_id}: {sent.describe()}; an attempt ended without proof that the "
        "NPC did not take the message (a timeout, a connection lost mid-request), so the "
        "NPC may have it and settle it. Send it again instead (the NPC takes the same "
        "message as a repeat: wait for the link, release the payment or retry its dead "
        "letter) and act on its result, its status (status-query) or an NPC cancellation "
        "once it is queued there"))


def delivery(tx: Any, payment_id: str) -> Delivery | None:
    """The delivery of an HVPS payment's message (None for a payment without one)."""
    row = credit_outbox(tx, payment_id)
    return None if row is None else Delivery(int(row[0]), row[1], int(row[3]), int(row[4]))


_CREDIT_OUTBOX = "id, state, stream, attempts, untaken"
# The key in a transaction's `cache` of the rows `credit_outboxes_read_once` read.
_CREDITS_READ_ONCE = "outbound.credit_outboxes"


def credit_outbox(tx: Any, payment_id: str) -> tuple[int, str, str, int, int] | None:
    """The outbox row of an HVPS payment's own message, its latest (a message built
    again keeps its row): id, state, stream, attempts, untaken; None for a payment
    without one. Inside `credit_outboxes_read_once`, answered from that read."""
    read = answered(tx, _CREDITS_READ_ONCE, payment_id)
    if read is not NOT_READ:
        return read
    return tx.query_one(f"SELECT {_CREDIT_OUTBOX} FROM outbox WHERE payment_id = ? "
                        "AND kind = 'hvps_credit' ORDER BY id DESC", (payment_id,))


def credit_outboxes_read_once(tx: Any, payment_ids: Iterable[str]
                              ) -> AbstractContextManager[dict[Any, Any]]:
    """`credit_outbox` of each of these payments read in one statement (a few for a long
    list), and within the block answered from that read (store.reading_once): for
    checks that only read (the console's row actions)."""
    return reading_once(tx, _CREDITS_READ_ONCE, rows_by_id(
        tx, payment_ids, f"SELECT payment_id, {_CREDIT_OUTBOX} FROM outbox WHERE "
        "kind = 'hvps_credit' AND payment_id IN ({ids}) ORDER BY id"))  # the latest last


def show_delivery(tx: Any, view: dict[str, Any], client: str | None = None) -> None:
    """A view hook (GET /v1/transfers/{id}): an outgoing HVPS payment's `delivery`
    (`Delivery.public`; no attempt yet while it waits on its lane, for its window or a
    review), null for a payment without a message of its own to the NPC (a BEPS item,
    which goes in a package; an incoming payment; a book transfer)."""
    sent = delivery(tx, view["id"]) if view.get("direction") == "out" \
        and view.get("channel") == "hvps" else None
    view["delivery"] = sent.public() if sent is not None else None


def orphaned(tx: Any, now: datetime, older_than: datetime | None) -> list[tuple[int, str]]:
    """Put back to pending the claims of senders that are gone (claimed before
    `older_than`, or, on PostgreSQL, by a session that has ended); their ids and streams.
    `older_than` None: every claim (a single process starting: nobody else sends)."""
    if older_than is None:
        return tx.query("UPDATE outbox SET state = 'pending', updated_at = ? "
                        "WHERE state = 'sending' RETURNING id, stream", (now.isoformat(),))
    return tx.query(_ORPHANED[tx.dialect], (now.isoformat(), older_than.isoformat()))


def claim(tx: Any, outbox_id: int, keyring: KeyRing, now: datetime,
          notifier: payments.Notifier, credit: bool = False) -> bytes | None:
    """Take one outbox row for sending; build the HVPS credit on first claim.

    Returns the bytes to send, or None when there is nothing to send (already sent and
    acknowledged, cancelled meanwhile, waiting for the window, or claimed by another
    gateway process). `credit`: the row is likely an HVPS credit (it came by a priority
    lane), read with its payment before it is claimed (`_claim_credit`).
    """
    if credit:
        read = tx.query_one(_CLAIM_READ, (outbox_id,))
        if read is not None and read[0] == "hvps_credit" and read[1] == "pending":
            return _claim_credit(tx, outbox_id, read, keyring, now, notifier)
    taken = tx.query_one(_TAKE_READ[tx.dialect], (now.isoformat(), outbox_id))
    if taken is None:
        return None
    kind, envelope, payment_id, mesg_type, mesg_id = taken
    if envelope is None and mesg_id is not None:
        envelope = archived_bytes(tx, mesg_type, mesg_id)
    if kind == "hvps_credit":
        payment = payments.get(tx, payment_id)
        if payment["state"] not in ("accepted", "held", "sent", "unknown"):
            # No longer sendable (cancelled, say): the message does not leave, so the
            # claim just made is no delivery attempt.
            tx.execute("UPDATE outbox SET state = 'done', attempts = attempts - 1, "
                       "updated_at = ? WHERE id = ?", (now.isoformat(), outbox_id))
            return None
        if envelope is None:
            envelope = _build_credit(tx, outbox_id, payment, keyring, now)
        if payment["state"] in ("accepted", "held"):
            payments.transition(tx, payment, "sent", "hvps_sent", now, notifier,
                                outbox=outbox_id)
    return envelope


def _claim_credit(tx: Any, outbox_id: int, read: tuple, keyring: KeyRing, now: datetime,
                  notifier: payments.Notifier) -> bytes | None:
    """`claim` of a pending HVPS credit read with its payment (`_CLAIM_READ`): a credit
    not yet built is built first and claimed with its bytes in one statement, instead of
    claimed and then updated with them. Conditional as every claim: when another process
    took the row meanwhile, nothing built here is kept but a message number."""
    envelope = read[2]
    payment = payments.row_of(tx, read[_PAYMENT_READ])
    payment["carried"] = orjson.loads(read[-1]) if read[-1] is not None else None
    if payment["state"] not in ("accepted", "held", "sent", "unknown"):
        tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE id = ? "
                   "AND state = 'pending'", (now.isoformat(), outbox_id))
        return None
    if envelope is None:
        header, envelope = _credit_envelope(tx, payment, keyring, now)
        if tx.execute(_TAKE_BUILT[tx.dialect], (
                header.mesg_type, header.mesg_id, header.orig_receiver,
                now.isoformat(), outbox_id)) != 1:
            return None
        archive(tx, "out", header, envelope, now, payment["id"])
    elif not take(tx, outbox_id, now):
        return None
    # Read before the claim: on PostgreSQL another process's change committed in between
    # (an operator's new priority, which leaves the payment's state as it was) would go
    # unseen, and the message would carry what the payment no longer says. Read again
    # now that the row is ours: any change runs the work again, on what that change
    # left. (SQLite writes one transaction at a time: nothing comes in between.)
    if tx.dialect == "postgresql" and tuple(
            tx.query_one(_PAYMENT_AGAIN, (payment["id"],))) != tuple(read[_PAYMENT_READ]):
        raise Contended(f"payment {payment['id']} changed between its read and its claim")
    if payment["state"] in ("accepted", "held"):
        payments.transition(tx, payment, "sent", "hvps_sent", now, notifier,
                            outbox=outbox_id)
    return envelope


# An HVPS credit's outbox row with its payment, read before the claim (`_claim_credit`),
# and what the payment's ready message carries into its hvps.111 (none for a payment
# that came as JSON).
_CLAIM_READ = ("SELECT o.kind, o.state, " + stored_bytes("o") + ", "
               + ", ".join(f"p.{c}" for c in payments.COLUMNS)
               + ", r.carried FROM outbox o JOIN payments p ON p.id = o.payment_id "
               "LEFT JOIN ready_payments r ON r.payment_id = p.id WHERE o.id = ?")
_PAYMENT_READ = slice(3, 3 + len(payments.COLUMNS))  # the payment's columns in a read
_PAYMENT_AGAIN = "SELECT " + ", ".join(payments.COLUMNS) + " FROM payments WHERE id = ?"


def _credit_envelope(tx: Any, payment: dict[str, Any], keyring: KeyRing,
                     now: datetime) -> tuple[Header, bytes]:
    """The signed envelope of a payment's hvps.111 (or hvps.112) under a fresh header."""
    header = new_header(tx, now, payment["sender_direct"], payment["receiver_direct"],
                        payment["msg_type"], "HVPS", payment["priority"])
    body = credit_body(payment, clock.texts(now).seconds)
    return header, codec.encode(header, body, keyring)


def _build_credit(tx: Any, outbox_id: int, payment: dict[str, Any], keyring: KeyRing,
                  now: datetime) -> bytes:
    payment = {**payment, "carried": ready.carried_of(tx, payment["id"])}
    header, envelope = _credit_envelope(tx, payment, keyring, now)
    tx.execute("UPDATE outbox SET mesg_type = ?, mesg_id = ?, receiver = ? WHERE id = ?",
               (header.mesg_type, header.mesg_id, header.orig_receiver, outbox_id))
    archive(tx, "out", header, envelope, now, payment["id"])
    return envelope


def rebuild_credit(tx: Any, payment: dict[str, Any], keyring: KeyRing, now: datetime
                   ) -> str | None:
    """The built hvps.111 (or hvps.112) of `payment` built again from what the payment
    says now (an operator's new priority: SttlmPrty in the body, the header's priority),
    signed again, in place of the old bytes; its MesgID, or None when no message is built
    yet (the sender builds it from the payment when it first claims the row).

    Only for a message the NPC provably never had: its row not taken and not being sent,
    every delivery attempt provably untaken (`Delivery.provably_untaken`), which the
    caller has checked. The same MsgId and header MesgID, send time and CreDtTm are kept:
    the NPC has seen neither (it remembers a message by its MesgID only once it took it),
    and should the old bytes still reach it somehow, it would take the two as one message
    and settle at most one. The archive row holds the new bytes, what goes on the wire;
    the old ones are not kept anywhere a sender reads. Conditional on the row being as
    checked: a sender that claimed it meanwhile (another gateway process) makes the work
    run again, and the check then refuses."""
    row = tx.query_one("SELECT id, state, mesg_type, mesg_id FROM outbox WHERE payment_id = ? "
                       "AND kind = 'hvps_credit' ORDER BY id DESC", (payment["id"],))
    if row is None or row[3] is None:
        return None
    outbox_id, state, mesg_type, mesg_id = row
    old = codec.reread(tx.query_one(f"SELECT {stored_bytes('o')} FROM outbox o WHERE o.id = ?",
                                    (outbox_id,))[0])
    assert (old.header.mesg_id, old.obj.msg_id) == (mesg_id, payment["msg_id"]), \
        f"outbox row {outbox_id} holds the message of payment {payment['id']}"
    header = dataclasses.replace(old.header, priority=str(payment["priority"]))
    body = credit_body({**payment, "carried": ready.carried_of(tx, payment["id"])},
                       old.obj.created_at)
    envelope = codec.encode(header, body, keyring)
    if not tx.execute("UPDATE outbox SET envelope = CASE WHEN envelope IS NULL THEN NULL "
                      "ELSE ? END, updated_at = ? WHERE id = ? AND state = ? AND "
                      "attempts = untaken", (envelope, now.isoformat(), outbox_id, state)):
        raise Contended(f"outbox row {outbox_id} was claimed for sending meanwhile")
    tx.execute("UPDATE archive SET envelope = ? WHERE direction = 'out' AND mesg_type = ? "
               "AND mesg_id = ?", (envelope, mesg_type, mesg_id))
    log.info("event=hvps_message_rebuilt payment=%s outbox=%s mesg_id=%s priority=%s",
             payment["id"], outbox_id, mesg_id, header.priority)
    return mesg_id


# pending → sending with the built message named (its bytes are archived), in one
# statement (`claim`, `claim_accepted`).
_TAKE_BUILT = {dialect: "UPDATE outbox SET state = 'sending', attempts = attempts + 1, "
               "mesg_type = ?, mesg_id = ?, receiver = ?, updated_at = ?"
               + claimer + " WHERE id = ? AND state = 'pending'"
               for dialect, claimer in _CLAIMER.items()}


def claim_accepted(tx: Any, outbox_id: int, payment: dict[str, Any], keyring: KeyRing,
                   now: datetime, notifier: payments.Notifier) -> bytes | None:
    """`claim` for a payment in the work that accepts it (`payment` is the row just
    written, its outbox row pending): the hvps.111 built, signed and archived, the row
    claimed and the payment sent, without reading back what that work wrote. The caller
    sends the bytes after commit (gateway.direct). None when the message cannot be built:
    the row stays pending for the lane's sender, which refuses the payment."""
    try:
        header, envelope = _credit_envelope(tx, payment, keyring, now)
    except ValueError:
        return None
    taken = tx.execute(_TAKE_BUILT[tx.dialect], (
        header.mesg_type, header.mesg_id, header.orig_receiver, now.isoformat(), outbox_id))
    assert taken == 1, f"outbox row {outbox_id} was written pending by the same work"
    archive(tx, "out", header, envelope, now, payment["id"])
    payments.transition(tx, payment, "sent", "hvps_sent", now, notifier, outbox=outbox_id)
    return envelope


# A payment's hvps.111 put in the outbox built and claimed, by the work that accepts the
# payment (`claim_new`): one INSERT where a pending row was written and then claimed.
_PUT_CREDIT = {dialect: "INSERT INTO outbox (payment_id, kind, stream, state, mesg_type, "
               "mesg_id, receiver, attempts, created_at, updated_at"
               + (", claimed_by" if dialect == "postgresql" else "")
               + ") VALUES (?, 'hvps_credit', ?, 'sending', ?, ?, ?, 1, ?, ?"
               + (", pg_backend_pid()" if dialect == "postgresql" else "") + ") RETURNING id"
               for dialect in _CLAIMER}


def claim_new(tx: Any, payment: dict[str, Any], lane: str, keyring: KeyRing, now: datetime,
              notifier: payments.Notifier) -> tuple[int, bytes, dict[str, Any]] | None:
    """A payment not yet written, accepted and sent in the same work: its hvps.111 built,
    signed, archived and put in the outbox claimed (as `claim_accepted` leaves it), the
    payment written already sent. (outbox id, bytes to send after commit, the payment as
    sent); None when the message cannot be built, with nothing written: the caller
    writes the payment accepted and its row pending, for the lane's sender, which
    refuses the payment."""
    try:
        header, envelope = _credit_envelope(tx, payment, keyring, now)
    except ValueError:
        return None
    at = clock.texts(now).iso
    outbox_id = tx.query_one(_PUT_CREDIT[tx.dialect], (
        payment["id"], lane, header.mesg_type, header.mesg_id, header.orig_receiver,
        at, at))[0]
    archive(tx, "out", header, envelope, now, payment["id"])
    sent = payments.insert_moved(tx, payment, "sent", "hvps_sent", now, notifier,
                                 outbox=outbox_id)
    return outbox_id, envelope, sent


_MARK_SENT = "UPDATE outbox SET state = 'sent', updated_at = ? WHERE id = ? AND state = 'sending'"


def mark_sent(tx: Any, outbox_id: int, now: datetime) -> None:
    tx.execute(_MARK_SENT, (now.isoformat(), outbox_id))


def mark_sent_many(tx: Any, sent: list[tuple[int, datetime]]) -> list[None]:
    """`mark_sent` for many (outbox id, time sent) at once (gateway.batcher)."""
    tx.executemany(_MARK_SENT, [(at.isoformat(), outbox_id) for outbox_id, at in sent])
    return [None] * len(sent)


def unfinished(tx: Any) -> list[tuple[int, str]]:
    """Outbox rows to put back on the streams at start-up (claims of a sender that is gone
    are pending again by then)."""
    return tx.query("SELECT id, stream FROM outbox WHERE state = 'pending' ORDER BY id", ())
