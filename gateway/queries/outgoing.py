"""What we send: queries (opened by the core system or an operator), chases, our replies
and free text. Each function runs inside one store transaction and returns what to put
on the streams after the commit.

A query about one of our payments takes everything it names from the payment: the
original message, the transaction, the amount and the counterparty (the payee's bank for
a payment we sent, the payer's bank for one we received). The original message of an
HVPS payment is its own; that of a BEPS payment is the package that carried it (its
MsgId, sender and type), the payment being the transaction named by its TxId. A query about a payment we do
not have (a customer expects money that never came) names the original message and its
sending bank; the counterparty is that bank's direct participant in the directory.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import critical, payments, scope
from gateway.errors import Conflict, NotFound, Problem, ValidationFailed
from gateway.messages import beps127, ccms314
from gateway.messages.common import OriginalRef, OriginalTx
from gateway.money import format_yuan
from gateway.queries import answers, deadlines, records, wire
from gateway.queries.requests import FreeFormatRequest, QueryRequest

log = logging.getLogger(__name__)

_TX_ID = re.compile(r"[0-9]{1,16}")
CHASE_PREFIX = "催查："
ALERT_SENT_LATE = "query_sent_after_deadline"
# The alerts that put a bank's query before an operator (incoming.ALERT_NEEDS_OPERATOR,
# refusals.ALERT_REPLY_REFUSED, spelt here: both modules import this one): closed by the
# gateway once the query is answered.
OPERATOR_ALERTS = ("query_needs_operator", "query_reply_refused_by_npc")


@dataclass(frozen=True)
class Resolved:
    parties: wire.Parties
    subject: OriginalRef
    subject_tx: OriginalTx | None
    amount_fen: int
    payment: dict[str, Any] | None


def open_query(tx: Any, desk: Any, req: QueryRequest, client: str,
               now: datetime) -> tuple[dict[str, Any], wire.Pushes]:
    resolved = _resolve(tx, desk, req, client)
    ask_due = (deadlines.ask_due(desk.gw.calendar, req.doubt_at, desk.policy)
               if req.doubt_at is not None else None)
    source, by = ("operator", req.operator) if req.operator else ("core", client)
    row, pushes = _send(tx, desk, resolved, req.content, req.query_type, now, source, by,
                        doubt_at=req.doubt_at, ask_due_at=ask_due, client=client)
    if ask_due is not None and now > ask_due:
        desk.gw.alert(tx, ALERT_SENT_LATE, query=row["id"], payment=row["payment_id"],
                      doubt_at=req.doubt_at.isoformat(), due=ask_due.isoformat())
    return records.view(row, now), pushes


def chase(tx: Any, desk: Any, query_id: str, content: str | None, operator: str | None,
          now: datetime, client: str | None = None) -> tuple[dict[str, Any], wire.Pushes]:
    """A follow-up query (催查) about the same payment, linked to the one it chases
    (`client`: the core-system client asking, who must see the query it chases, and
    whose the chase is; None for the gateway's own use: the chased query's client's)."""
    first = records.get(tx, query_id)
    refuse_hidden_query(tx, desk, first, client)
    if first["direction"] != "out":
        raise Conflict(Problem("query_not_ours_to_chase", "/id", query_id,
                               "a query this bank sent"))
    if first["state"] != "open":
        raise Conflict(Problem("query_not_open", "/state", first["state"], "open"))
    resolved = Resolved(_stored_parties(desk, first), *_stored_subject(first),
                        first["amount_fen"],
                        payments.get(tx, first["payment_id"]) if first["payment_id"] else None)
    # A chase of a chase asks what the family's first query asked: its text, prefixed
    # once (never 催查：催查：...).
    origin = records.get(tx, first["chase_of"]) if first["chase_of"] else first
    text = content or (CHASE_PREFIX + origin["content"])[:answers.CONTENT_LEN_MAX]
    source = "operator" if operator else "core"
    row, pushes = _send(tx, desk, resolved, text, first["query_type"], now, source,
                        operator or first["requested_by"], chase_of=first["chase_of"]
                        or first["id"], client=first["client"] if client is None else client)
    return records.view(row, now), pushes


def ask_about_package(tx: Any, desk: Any, package: dict[str, Any], msg_type: str,
                      content: str, now: datetime) -> tuple[dict[str, Any], wire.Pushes]:
    """A query the gateway opens by itself about a BEPS package of ours as a whole (a
    beps.127 whose receipt is overdue, gateway.beps.debit_deadline): the package is the
    original message, with no transaction and its sum as the amount; the counterparty
    is its receiver. Recorded with source `gateway`; no payment is its own."""
    parties = wire.Parties(our_direct=desk.gw.settings.bank_code,
                           our_party=package["sender"], their_direct=package["receiver"],
                           their_party=package["receiver"], system="BEPS")
    subject = OriginalRef(package["msg_id"], package["sender"], msg_type)
    resolved = Resolved(parties, subject, None, package["total_fen"], None)
    return _send(tx, desk, resolved, content, None, now, "gateway", "gateway")


def _send(tx: Any, desk: Any, r: Resolved, content: str, query_type: str | None,
          now: datetime, source: str, requested_by: str | None,
          **extra: Any) -> tuple[dict[str, Any], wire.Pushes]:
    payment_id = r.payment["id"] if r.payment else None
    sent = wire.send_query(tx, desk.gw, now, r.parties, r.subject, r.subject_tx,
                           r.amount_fen, content, query_type, payment_id)
    tx_ref = r.subject_tx
    row = records.insert(tx, {
        "id": f"Q{sent.msg_id}", "direction": "out", "state": "open",
        "system": r.parties.system, "counterparty": r.parties.their_direct,
        "our_party": r.parties.our_party, "their_party": r.parties.their_party,
        "msg_id": sent.msg_id, "mesg_id": sent.mesg_id, "query_type": query_type,
        "content": content, "amount_fen": r.amount_fen, "currency": "CNY",
        "orig_msg_id": r.subject.msg_id, "orig_instg_party": r.subject.instg_party,
        "orig_mt": r.subject.mt, "orig_tx_id": tx_ref.tx_id if tx_ref else None,
        "orig_instg_indirect": tx_ref.instg_indirect if tx_ref else None,
        "orig_instd_indirect": tx_ref.instd_indirect if tx_ref else None,
        "orig_tx_type": tx_ref.business_type if tx_ref else None,
        "payment_id": payment_id, "source": source, "requested_by": requested_by,
        "asked_at": now.isoformat(),
        "reply_due_at": deadlines.reply_due(desk.gw.calendar, now, desk.policy).isoformat(),
        "created_at": now.isoformat(), "updated_at": now.isoformat(),
        **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in extra.items()},
    })
    if r.payment is not None:
        payments.transition(tx, r.payment, r.payment["state"], "query_sent", now, None,
                            query=row["id"])
    return row, [wire.link_push(sent)]


def _check_client(tx: Any, desk: Any, payment: dict[str, Any], client: str) -> None:
    """A client queries only the payments it sees (GET /v1/transfers/{id}): with client
    credentials configured, its own and incoming ones; with its entry in
    api_balance_accounts, those on an account of ours the entry covers (gateway.scope).
    Another is refused as an id never given is, at /payment_id: called as soon as the
    payment is found, before anything else reads it, so that no answer tells of it. A
    book transfer it sees only as a credit to its account is its submitter's to ask
    about (403 `payment_submitted_by_another_client`)."""
    gw = desk.gw
    if scope.sees(tx, gw.settings, client, payment, gw.own_banks):
        # Seen as a credit to its account (another client's book transfer): asking about
        # it is its submitter's, told so at /payment_id.
        scope.refuse_unowned(gw.settings, client, payment, gw.own_banks, "/v1/queries",
                             "/payment_id")
        return
    log.warning("event=payment_outside_client_scope client=%s payment=%s path=%s",
                client, payment["id"], "/v1/queries")
    raise NotFound([p.at("/payment_id")
                    for p in payments.not_found(payment["id"]).problems])


def refuse_hidden_query(tx: Any, desk: Any, query: dict[str, Any],
                        client: str | None) -> None:
    """Refuse a query `client` may not see as a query id never given (404
    query_not_found), so that reading, answering or chasing it tells nothing of it: one
    about a payment the client may not see (`scope.sees`), or that another client asked
    about a payment it sees (`scope.sees_owned`), or one about no payment of ours that
    another client asked, or that no client asked (a bank's, the gateway's own) when
    the client is limited to some accounts (`scope.sees_unattached`). None, the gateway
    and its operators, are not limited."""
    if client is None:
        return
    gw = desk.gw
    if query["payment_id"] is None:
        if scope.sees_unattached(gw.settings, client, query["client"]):
            return
    elif scope.sees_owned(gw.settings, client, query["client"]) and scope.sees(
            tx, gw.settings, client, payments.get(tx, query["payment_id"]), gw.own_banks):
        return
    log.warning("event=query_outside_client_scope client=%s query=%s payment=%s",
                client, query["id"], query["payment_id"])
    raise records.not_found(query["id"])


def _resolve(tx: Any, desk: Any, req: QueryRequest, client: str) -> Resolved:
    if req.payment_id is not None:
        try:
            payment = payments.get(tx, req.payment_id)
        except NotFound as exc:  # named at the request's own field
            raise NotFound([p.at("/payment_id") for p in exc.problems]) from None
    else:
        payment = answers.find_payment(tx, req.subject)
    if payment is not None:
        _check_client(tx, desk, payment, client)
        resolved = _from_payment(tx, desk, payment)
        if req.amount_fen is not None and req.amount_fen != resolved.amount_fen:
            raise ValidationFailed(Problem(
                "amount_differs_from_payment", "/amount", req.amount_text,
                f"the payment's amount, {format_yuan(resolved.amount_fen)}"))
        return resolved
    return _from_subject(desk, req)


def _from_payment(tx: Any, desk: Any, p: dict[str, Any]) -> Resolved:
    if p["channel"] not in ("hvps", "beps"):
        raise ValidationFailed(Problem("payment_not_sent_through_cnaps", "/payment_id",
                                       p["id"], "a payment that went by HVPS or BEPS"))
    outgoing = p["direction"] == "out"
    # The bank that sent the payment is the payer's for a credit and the creditor's
    # (the payee's) for a debit (beps.127), which collects: ours is the sending bank for
    # a payment we sent, the receiving one for a payment we received.
    sending, receiving = ((p["payee_bank"], p["payer_bank"])
                          if p["msg_type"] == beps127.MESSAGE_TYPE
                          else (p["payer_bank"], p["payee_bank"]))
    ours, their_party = (sending, receiving) if outgoing else (receiving, sending)
    parties = wire.Parties(
        our_direct=desk.gw.settings.bank_code,
        our_party=ours if ours in desk.gw.own_banks else desk.gw.settings.bank_code,
        their_direct=p["receiver_direct"] if outgoing else p["sender_direct"],
        their_party=their_party, system=p["channel"].upper())
    subject = (_package_of(tx, p) if p["channel"] == "beps"
               else OriginalRef(p["msg_id"], p["sender_direct"], p["msg_type"]))
    subject_tx = None
    if _TX_ID.fullmatch(p["tx_id"] or ""):
        subject_tx = OriginalTx(p["payer_bank"], p["payee_bank"], p["tx_id"],
                                p["business_type"])
    return Resolved(parties, subject, subject_tx, p["amount_fen"], p)


def _package_of(tx: Any, p: dict[str, Any]) -> OriginalRef:
    """The package that carried a BEPS payment, as a query names it (OrgnlGrpHdr); one
    not in a package (waiting to be packed, set aside by an operator, cancelled before
    packing) was on no message the other bank could look up."""
    row = tx.query_one("SELECT k.msg_id, k.sender, k.msg_type FROM beps_items i "
                       "JOIN beps_packages k ON k.id = i.package_id WHERE i.payment_id = ?",
                       (p["id"],))
    if row is None:
        raise Conflict(Problem(
            "beps_item_not_in_a_package", "/payment_id", p["id"],
            "a BEPS payment sealed in a package",
            "a query names the package that carried the payment, and this one is in none "
            "(waiting to be packed, set aside, or cancelled before packing)"))
    return OriginalRef(*row)


def _from_subject(desk: Any, req: QueryRequest) -> Resolved:
    s = req.subject
    gw = desk.gw
    if s.sending_bank in gw.own_banks:
        raise NotFound(Problem("original_payment_not_found", "/original", s.msg_id,
                               "a payment this bank sent, by its message id"))
    if req.amount_fen is None:
        raise ValidationFailed(Problem("amount_required_without_payment", "/amount", None,
                                       "the amount of the payment asked about"))
    row = gw.router.directory.lookup(s.sending_bank, gw.work_date, "/original/sending_bank")
    system = "BEPS" if s.message_type.startswith("beps.") else "HVPS"
    parties = wire.Parties(gw.settings.bank_code, gw.settings.bank_code,
                           row.direct_participant, s.sending_bank, system)
    subject = OriginalRef(s.msg_id, row.direct_participant, s.message_type)
    subject_tx = (OriginalTx(s.sending_bank, gw.settings.bank_code, s.tx_id, s.business_type)
                  if s.tx_id else None)
    return Resolved(parties, subject, subject_tx, req.amount_fen, None)


def _stored_parties(desk: Any, q: dict[str, Any]) -> wire.Parties:
    return wire.Parties(desk.gw.settings.bank_code, q["our_party"], q["counterparty"],
                        q["their_party"], q["system"])


def _stored_subject(q: dict[str, Any]) -> tuple[OriginalRef, OriginalTx | None]:
    subject = OriginalRef(q["orig_msg_id"], q["orig_instg_party"], q["orig_mt"])
    subject_tx = None
    if q["orig_tx_id"]:
        subject_tx = OriginalTx(q["orig_instg_indirect"], q["orig_instd_indirect"],
                                q["orig_tx_id"], q["orig_tx_type"])
    return subject, subject_tx


def send_our_reply(tx: Any, desk: Any, q: dict[str, Any], content: str, replied_by: str,
                   now: datetime) -> tuple[dict[str, Any], wire.Pushes]:
    """Answer a query a bank sent us (automatically or for an operator) with ccms.315."""
    if q["direction"] != "in":
        raise Conflict(Problem("query_not_ours_to_answer", "/id", q["id"],
                               "a query another bank sent us"))
    if q["state"] != "open":
        raise Conflict(Problem("query_not_open", "/state", q["state"], "open"))
    subject, subject_tx = _stored_subject(q)
    asked = OriginalRef(q["msg_id"], q["counterparty"], ccms314.MESSAGE_TYPE)
    sent = wire.send_reply(tx, desk.gw, now, _stored_parties(desk, q), asked, subject,
                           subject_tx, q["amount_fen"], content, q["query_type"],
                           q["payment_id"])
    late = records.is_late(q, now)
    records.add_reply(tx, {
        "id": f"A{desk.gw.settings.bank_code}{sent.msg_id}",
        "feed_seq": payments.next_seq(tx, "query_feed"), "query_id": q["id"],
        "direction": "out", "sender": desk.gw.settings.bank_code, "msg_id": sent.msg_id,
        "mesg_id": sent.mesg_id, "answered_msg_id": q["msg_id"], "content": content,
        "replied_by": replied_by, "at": now.isoformat(), "late": int(late)})
    answered = records.answer(tx, q, now, sent.msg_id, content, replied_by)
    # What asked operators to answer (the query itself, or our refused reply) is over.
    critical.close_where(tx, OPERATOR_ALERTS, "query", q["id"],
                         f"query answered by {replied_by} at {now.isoformat()} "
                         f"(reply {sent.msg_id})", now)
    if q["payment_id"]:
        payment = payments.get(tx, q["payment_id"])
        payments.transition(tx, payment, payment["state"], "query_answered", now, None,
                            query=q["id"], by=replied_by)
    return answered, [wire.link_push(sent)]


def operator_reply(tx: Any, desk: Any, query_id: str, content: str, operator: str,
                   now: datetime, client: str | None = None
                   ) -> tuple[dict[str, Any], wire.Pushes]:
    q = records.get(tx, query_id)
    refuse_hidden_query(tx, desk, q, client)
    answered, pushes = send_our_reply(tx, desk, q, content, f"operator:{operator}", now)
    return records.view(answered, now), pushes


def send_free_format(tx: Any, desk: Any, req: FreeFormatRequest, client: str,
                     now: datetime) -> tuple[dict[str, Any], wire.Pushes]:
    gw = desk.gw
    row = gw.router.directory.lookup(req.receiver, gw.work_date, "/receiver")
    if row.direct_participant == gw.settings.bank_code:
        raise ValidationFailed(Problem("receiver_must_be_another_bank", "/receiver",
                                       req.receiver, "a bank outside this one"))
    parties = wire.Parties(gw.settings.bank_code, gw.settings.bank_code,
                           row.direct_participant, req.receiver, req.system)
    sent = wire.send_free_format(tx, gw, now, parties, req.content)
    item = records.add_free_format(tx, {
        "id": f"F{sent.msg_id}", "feed_seq": payments.next_seq(tx, "free_format_feed"),
        "direction": "out", "sender": gw.settings.bank_code,
        "receiver": row.direct_participant, "system": req.system, "msg_id": sent.msg_id,
        "mesg_id": sent.mesg_id, "content": req.content,
        "requested_by": req.operator or client, "at": now.isoformat(), "client": client})
    return records.free_format_view(item), [wire.link_push(sent)]
