"""Our debits (beps.127): collecting for our customers from payers at other banks.

The core system asks with POST /v1/debits: the creditor is our customer, the debtor an
account at another bank, under an agreement (AgrmtNb) the payer signed with its bank.
The debit is recorded as an outgoing BEPS payment (no hold: no money leaves us), packed
into beps.127 packages per payer bank, and sent. It is screened first (`_screened`): a
match sets it aside, `held` with the screening's reason, until a supervisor passes it
(packed as any other) or fails it (`cancelled`), as a BEPS credit the review holds
(gateway.beps.review_hold). The payer bank answers with a beps.128
receipt, which the NPC forwards to us once the paid items are netted (NPCPrcInf PR03):
a paid debit is then final and our customer is credited (state `netted`, `settled`
when its round settles); a refused one is `rejected` with the payer bank's reason.

A package whose receipt has not come by its return deadline (PKGRtrLtd days after
sealing) is not an answer: its debits stay waiting, marked overdue, until the receipt
comes or operators give them up (gateway.beps.debit_deadline). A debit paid after it
ended unpaid is never credited to our customer, whom the core system was told was not
paid: the money goes to suspense for operators (`_paid`). One refused after it ended
keeps its state, and the payer bank's code is kept in its history (the proof that
giving it up was right).

Every line of a receipt is kept as it came, with what it did (`beps_receipt_lines`,
OUTCOMES): the receipt's package view lists them (`receipt_lines`), and a debit's view
shows the last line that answered it (`last_receipt_line`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway import critical, intake, key_reuse, payments, screening
from gateway.beps import build, items, review_hold
from gateway.errors import PaygateError, Problem, ProblemList, ValidationFailed
from gateway.inbound import Processed
from gateway.messages import beps128, codec
from gateway.money import AMOUNT_TEXT_EXPECTED, parse_yuan
from ledger.incoming import names_match
from ledger.types import CreditResult

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.debits")

DEBIT_BUSINESS_TYPE = "B100"          # 普通借记 ordinary debit
DEFAULT_DEBIT_KIND = "01400"          # 缴费 bill payment
PAID = "PR02"
# States of our debit while it waits for its receipt: a receipt's line acts only on
# these. `sent` once its package left; `queued` is kept for a package the NPC made wait.
WAITING = ("sent", "queued")
# States of a debit of a package past its deadline still unanswered (one not yet sent
# among them): while one is, its package's `debit_receipt_overdue` stays open.
UNANSWERED = ("accepted", *WAITING)
# The reason of a debit whose receipt has not come by its package's return deadline:
# shown while it still waits (`sent`), and kept if operators give it up (`rejected`).
RECEIPT_OVERDUE = "debit_receipt_overdue"
# States in which the core system was told our debit ended unpaid (given up by
# operators, or refused): a paid line for one is parked in suspense, never credited.
ENDED_UNPAID = ("rejected", "cancelled")
# The suspense reason of a debit paid after it ended unpaid (ledger_suspense.reason).
PAID_AFTER_END = "debit_paid_after_end"
# What a receipt line did to the debit it names (beps_receipt_lines.outcome).
OUTCOMES = {
    "netted": "paid: the debit netted and our customer credited",
    "paid_after_end": "paid after the debit ended unpaid: the money parked in suspense",
    "rejected": "refused: the debit rejected with the payer bank's code",
    "refused_after_end": "refused after the debit ended unpaid (given up): it keeps its "
                         "state, the refusal kept in its history",
    "not_applied": "about a debit answered already: nothing moved",
    "unknown": "names no debit of the package",
}
FIELDS = {"creditor_account": True, "creditor_name": True, "creditor_bank": True,
          "debtor_account": True, "debtor_name": True, "debtor_bank": True, "amount": True,
          "agreement": True, "business_kind": False, "remittance_info": False}
OPTIONAL = intake.optional(FIELDS)  # null on one is the field left out
ACCOUNT_PATTERN = re.compile(r"[0-9A-Za-z-]{1,32}")
_BANK = re.compile(r"[0-9]{12}")
_KIND = re.compile(r"[0-9]{5}")
AGREEMENT_LEN_MAX = 60  # AgrmtNb is Max60Text


@dataclass(frozen=True)
class Debit:
    creditor_account: str
    creditor_name: str
    creditor_bank: str
    debtor_account: str
    debtor_name: str
    debtor_bank: str
    amount_fen: int
    agreement: str
    business_kind: str
    remark: str | None


def parse_debit(body: Any, own_banks: frozenset[str]) -> Debit:
    """A collection request's own fields, with every problem reported at once; an
    optional field given null is read as left out (intake.nulls_left_out)."""
    body = intake.nulls_left_out(body, OPTIONAL)
    p = intake.check_shape(body, FIELDS, {**_TEXT_EXPECTED, "amount": AMOUNT_TEXT_EXPECTED})
    _texts(body, p)
    amount = parse_yuan(body.get("amount"), "/amount") \
        if not intake.blank(body.get("amount")) else 0
    if not isinstance(amount, int):
        p.items.append(amount)
    kind = body.get("business_kind", DEFAULT_DEBIT_KIND)
    if isinstance(kind, str) and not _KIND.fullmatch(kind):
        p.add("business_kind_malformed", "/business_kind", kind,
              _TEXT_EXPECTED["business_kind"])
    creditor_bank = body.get("creditor_bank")
    if isinstance(creditor_bank, str) and not intake.blank(creditor_bank) \
            and creditor_bank not in own_banks:
        p.add("creditor_bank_not_ours", "/creditor_bank", body.get("creditor_bank"),
              "one of our bank codes: " + ", ".join(sorted(own_banks)))
    remark = body.get("remittance_info")
    if isinstance(remark, str) and len(remark) > build.REMARK_LEN_MAX:
        p.add("remittance_info_malformed", "/remittance_info", remark,
              _TEXT_EXPECTED["remittance_info"])
    p.raise_if_any(ValidationFailed)
    return Debit(body["creditor_account"], body["creditor_name"], body["creditor_bank"],
                 body["debtor_account"], body["debtor_name"], body["debtor_bank"], amount,
                 body["agreement"], kind, remark)


def meaning(body: Any) -> Any:
    """What a collection request asks for, the same for every spelling of it
    (intake.same_transfer compares a retry so): the amount in its usual form, the
    default business kind spelt out, null on an optional field, and an empty remark as
    if left out (no remark goes out for either). Names and accounts go out as written,
    so their spelling counts."""
    if type(body) is not dict:
        return body
    out = intake.without(body, {"business_kind": DEFAULT_DEBIT_KIND, "remittance_info": ""},
                         nullable=OPTIONAL)
    intake.amount_meaning(out)
    return out


# A debit request as kept by its Idempotency-Key (gateway.key_reuse).
KIND = key_reuse.Kind("debit", meaning, tuple(FIELDS), {"business_kind": DEFAULT_DEBIT_KIND},
                      "debit")


ACCOUNT_EXPECTED = "1 to 32 ASCII letters, digits or -"
# What each text field of a debit must hold (its amount is checked by parse_yuan).
_TEXT_EXPECTED = {
    "creditor_account": ACCOUNT_EXPECTED, "debtor_account": ACCOUNT_EXPECTED,
    "creditor_name": build.NAME_EXPECTED, "debtor_name": build.NAME_EXPECTED,
    "creditor_bank": "12 ASCII digits", "debtor_bank": "12 ASCII digits",
    "agreement": f"text of at most {AGREEMENT_LEN_MAX} characters",
    "business_kind": "five digits, e.g. 01400",
    "remittance_info": f"text of at most {build.REMARK_LEN_MAX} characters",
}


def _texts(body: dict[str, Any], p: ProblemList) -> None:
    intake.text_types(p, body, _TEXT_EXPECTED)
    for name in ("creditor_name", "debtor_name"):
        value = body.get(name)
        if isinstance(value, str) and len(value) > build.NAME_LEN_MAX:
            p.add("name_too_long_for_beps", f"/{name}", value, build.NAME_EXPECTED)
    for name in ("creditor_account", "debtor_account"):
        value = body.get(name)
        if isinstance(value, str) and not intake.blank(value) \
                and not ACCOUNT_PATTERN.fullmatch(value):
            p.add("account_malformed", f"/{name}", value, ACCOUNT_EXPECTED)
    for name in ("creditor_bank", "debtor_bank"):
        value = body.get(name)
        if isinstance(value, str) and not intake.blank(value) and not _BANK.fullmatch(value):
            p.add("bank_code_must_be_12_ascii_digits", f"/{name}", value, "12 ASCII digits")
    agreement = body.get("agreement")
    if isinstance(agreement, str) and len(agreement) > AGREEMENT_LEN_MAX:
        p.add("agreement_malformed", "/agreement", agreement, _TEXT_EXPECTED["agreement"])
    # The names are screened and go out in the beps.125 with the agreement and remark:
    # refused with what a transfer's names may not hold (intake.text_problem).
    for name in ("creditor_name", "debtor_name", "agreement", "remittance_info"):
        intake.text_problem(p, f"/{name}", body.get(name))


def creditor_problems(tx: Any, gw: "Gateway", debit: Debit) -> list[Problem]:
    """What our bank refuses about the customer a debit collects for, checked as an
    incoming credit's payee is (ledger.incoming), since the payer bank's money will be
    credited to it: a customer account of ours that is not closed, held under the name
    given (width, case and spaces aside: ledger.incoming.names_match), kept at the branch
    given (intake.kept_elsewhere). Refused here rather than sent: a debit the payer bank
    pays is final, and its money would otherwise wait in suspense for an owner. The
    holder's name is shown: the account is the requesting customer's own."""
    try:
        account = gw.ledger.account(tx, debit.creditor_account, gw.work_date)
    except PaygateError:
        account = None
    if account is None or account.role != "customer":
        return [Problem("account_not_found", "/creditor_account", debit.creditor_account,
                        "a customer account of ours: a debit collects for our customer")]
    if account.status == "closed":
        return [Problem("account_closed", "/creditor_account", debit.creditor_account,
                        "an open account to credit when the payer bank pays")]
    problems = []
    if not names_match(account.name, debit.creditor_name):
        problems.append(Problem(
            "creditor_name_differs_from_account_holder", "/creditor_name",
            debit.creditor_name, f"{account.name}, the name account "
            f"{debit.creditor_account} is held under",
            f"account {debit.creditor_account} is held by {account.name}; the money "
            "collected is credited only to the account of the creditor the debit names"))
    if intake.kept_elsewhere(debit.creditor_bank, gw.account_bank):
        problems.append(Problem(
            "creditor_bank_not_account_branch", "/creditor_bank", debit.creditor_bank,
            f"{gw.account_bank}, the bank code of the branch that keeps account "
            f"{debit.creditor_account}",
            f"account {debit.creditor_account} is kept at {gw.account_bank}; a debit "
            f"collecting for it names that branch, not {debit.creditor_bank}"))
    return problems


def record(tx: Any, gw: "Gateway", debit: Debit, receiver: str, now: datetime,
           client: str | None = None) -> dict[str, Any]:
    """The outgoing debit as a payment and a BEPS item waiting to be packed, once its
    creditor passes `creditor_problems`; set aside, `held`, when the screening matches
    its payer or its creditor (`_screened`)."""
    problems = creditor_problems(tx, gw, debit)
    if problems:
        raise ValidationFailed(problems)
    work_date = gw.work_date
    payment_id, msg_id, e2e = intake.new_ids(tx, work_date, debit.creditor_bank)
    row = {
        "id": payment_id, "direction": "out", "channel": "beps", "state": "accepted",
        "msg_type": build.DEBIT_TYPE, "msg_id": msg_id, "tx_id": msg_id,
        "end_to_end_id": e2e, "sender_direct": gw.settings.bank_code,
        "receiver_direct": receiver, "amount_fen": debit.amount_fen, "currency": "CNY",
        "payer_account": debit.debtor_account, "payer_name": debit.debtor_name,
        "payer_bank": debit.debtor_bank, "payee_account": debit.creditor_account,
        "payee_name": debit.creditor_name, "payee_bank": debit.creditor_bank,
        "business_type": DEBIT_BUSINESS_TYPE, "business_kind": debit.business_kind,
        "urgency": "normal", "priority": 3,
        "remittance": [debit.remark] if debit.remark else [],
        "route": {"rule": "beps_debit", "channel": "beps", "message_type": build.DEBIT_TYPE,
                  "receiver_direct": receiver, "agreement": debit.agreement},
        "work_date": work_date.isoformat(), "created_at": now.isoformat(),
        "updated_at": now.isoformat(), "client": client,
    }
    held_for = _screened(gw, row)
    payments.insert(tx, row)
    items.add(tx, payment_id, items.DEBIT_OUT, receiver, build.DEBIT_TYPE, debit.amount_fen,
              now, agreement=debit.agreement,
              package_id=None if held_for is None else items.HELD_OUT)
    if held_for is not None:
        row = review_hold.held(tx, gw, row, held_for, now)
    return row


def _screened(gw: Gateway, row: dict[str, Any]) -> str | None:
    """The screening's reason to hold our debit, None when clear. No money leaves the
    bank, but a debit is business with both its parties: collecting from a listed payer
    takes a listed party's money into our customer's account, and collecting for a
    listed customer pays a listed party; either is dealing with a sanctioned
    counterparty, which the screening exists to stop before it happens. So the debit is
    screened as an outgoing credit is (its payer and payee: the debtor at the other
    bank and our creditor), before its beps.127 carries it. The screening alone: the
    amount review (复核) is a second look at money leaving the bank, and none does."""
    return screening.reason(gw, row)


def on_receipt(tx: Any, gw: "Gateway", d: codec.Decoded, now: datetime) -> Processed:
    """A payer bank's beps.128 for one of our beps.127, forwarded once netted."""
    r: beps128.DebitReceipt = d.obj
    original = f"{r.original.instg_party}{r.original.msg_id}"
    receipt_id = f"{r.header.instg_direct}{r.header.msg_id}"
    pkg = tx.query_one("SELECT state, deadline_at FROM beps_packages WHERE id = ? AND "
                       "direction = 'out' AND msg_type = ?", (original, build.DEBIT_TYPE))
    npc = r.npc
    if pkg is None or npc is None or npc.status != "PR03" or not npc.netting_round:
        gw.alert(tx, "debit_receipt_not_usable", receipt=receipt_id, original=original,
                 status=npc.status if npc else None)
        return Processed({"refused": True, "receipt": receipt_id})
    if tx.query_one("SELECT 1 FROM beps_packages WHERE id = ?", (receipt_id,)):
        return Processed({"duplicate_of": receipt_id})
    netting = (npc.netting_date or now.date().isoformat(), npc.netting_round)
    _record_receipt(tx, r, receipt_id, original, netting, now)
    paid, refused = _answered(tx, gw, r, receipt_id, original, netting, now)
    items.set_round(tx, paid, *netting)
    items.settle_if_round_settled(tx, gw, *netting, now)
    if pkg[0] == "overdue":
        # The answer operators were told was missing has come: what it did is in each
        # debit's history and the receipt's lines; given-up debits paid are raised on
        # their own (`_paid`). The refusals of debits given up are named with their
        # code: they show that giving up was right.
        after_end = [{"payment": pid, "reject_code": code, "reject_info": info}
                     for pid, code, info, outcome in refused
                     if outcome == "refused_after_end"]
        gw.alert(tx, "debit_receipt_after_deadline", package=original, receipt=receipt_id,
                 paid=len(paid), refused=len(refused), refused_after_end=after_end)
    tx.execute("UPDATE beps_packages SET state = 'answered', updated_at = ? WHERE id = ?",
               (now.isoformat(), original))
    if pkg[1] is not None and pkg[1] < now.isoformat():
        # Past its deadline, the package may have been raised overdue (by this receipt's
        # package state or an earlier receipt's, answered since): over once none waits.
        close_overdue_alert(tx, original, f"the last answered by receipt {receipt_id} at "
                                          f"{now.isoformat()}", now)
    return Processed({"receipt": receipt_id, "paid": len(paid),
                      "refused": len(r.lines) - len(paid)})


def close_overdue_alert(tx: Any, package_id: str, how: str, now: datetime) -> list[int]:
    """Close, as the gateway, the package's `debit_receipt_overdue` once none of its
    debits waits for an answer any more (each netted, rejected, or given up): its cause
    is over; `how` says what resolved the last one. The ids closed."""
    if any(p["state"] in UNANSWERED for p in items.package_payments(tx, package_id)):
        return []
    return critical.close_where(tx, (RECEIPT_OVERDUE,), "package", package_id,
                                f"every debit of package {package_id} is resolved: {how}",
                                now)


def _answered(tx: Any, gw: "Gateway", r: beps128.DebitReceipt, receipt_id: str,
              original: str, netting: tuple[str, str], now: datetime
              ) -> tuple[list[str], list[tuple[str, str | None, str | None, str]]]:
    """Each line of the receipt applied to our debit it answers, in a few statements
    whatever their number: a paid debit's creditor credited (or the money parked in
    suspense), all of them with ledger.credit_incoming_netted_many, its payment netted,
    overdue or not (or, paid after it ended unpaid, parked in suspense whatever its
    account: `_paid`); a refused one rejected with the payer bank's reason, or, ended
    unpaid already (given up), left in its state with the refusal in its history. Every
    line is kept with what it did (`_record_lines`). The ids of those paid, and the
    refusals applied: (payment id, code, information, outcome)."""
    by_tx = {p["tx_id"]: p for p in items.package_payments(tx, original)}
    known = [(line, by_tx.get(line.tx_id)) for line in r.lines]
    credits = {p["id"]: (f"{p['id']}:credit", p["payee_account"], p["payee_name"],
                         p["amount_fen"], gw.work_date.isoformat(), p["id"])
               for line, p in known if p is not None and line.status == PAID
               and p["state"] in WAITING + ENDED_UNPAID}
    parked = {f"{p['id']}:credit": PAID_AFTER_END for line, p in known
              if p is not None and line.status == PAID and p["state"] in ENDED_UNPAID}
    credited = dict(zip(credits, gw.ledger.credit_incoming_netted_many(
        tx, list(credits.values()), parked=parked)))
    changes, paid, refused, outcomes = [], [], [], []
    for line, p in known:
        if p is None:
            gw.alert(tx, "debit_receipt_line_unknown", receipt=receipt_id, tx_id=line.tx_id)
            outcome = "unknown"
        elif line.status == PAID and p["id"] in credited:
            changes.append(_paid(tx, gw, p, credited[p["id"]], receipt_id, netting))
            paid.append(p["id"])
            outcome = "netted" if p["state"] in WAITING else "paid_after_end"
        elif p["state"] in WAITING + ENDED_UNPAID and line.status != PAID:
            changes.append(_refused(p, line, receipt_id))
            outcome = "rejected" if p["state"] in WAITING else "refused_after_end"
            refused.append((p["id"], line.reject_code, line.reject_info, outcome))
        else:
            # Paid already (netted or settled): a second word about it, paid or refused,
            # moves nothing; the round's booking notice shows whether the NPC netted it
            # twice.
            gw.alert(tx, "debit_receipt_line_not_applied", receipt=receipt_id,
                     payment=p["id"], state=p["state"], status=line.status)
            outcome = "not_applied"
        outcomes.append(outcome)
    payments.transition_each(tx, changes, now, gw.notifier)
    _record_lines(tx, receipt_id, known, outcomes)
    return paid, refused


def _refused(p: dict[str, Any], line: beps128.ReceiptLine, receipt_id: str
             ) -> tuple[dict[str, Any], str, str, dict[str, Any]]:
    """The change of a debit the payer bank refused. One still waiting is `rejected`
    with the payer bank's code and reason. One that ended unpaid already (given up by
    operators) keeps its state and its reason (why it ended): the refusal is written to
    its history, where the payer bank's code shows the give-up was right; the core
    system, told `rejected` already, hears nothing new."""
    refusal = (f"{line.reject_code}: {line.reject_info}" if line.reject_info
               else line.reject_code)
    if p["state"] in WAITING:
        return (p, "rejected", "beps_debit_refused", {"reason": refusal, "receipt": receipt_id})
    return (p, p["state"], "beps_debit_refused_after_end",
            {"receipt": receipt_id, "refusal": refusal, "reject_code": line.reject_code,
             "reject_info": line.reject_info})


_LINE_COLUMNS = ("line_no", "tx_id", "payment_id", "status", "reject_code", "reject_info",
                 "amount_fen", "outcome")


def _record_lines(tx: Any, receipt_id: str,
                  known: list[tuple[beps128.ReceiptLine, dict[str, Any] | None]],
                  outcomes: list[str]) -> None:
    tx.executemany(
        f"INSERT INTO beps_receipt_lines (receipt_id, {', '.join(_LINE_COLUMNS)}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(receipt_id, n, line.tx_id, p["id"] if p else None, line.status, line.reject_code,
          line.reject_info, line.amount_fen, outcome)
         for n, ((line, p), outcome) in enumerate(zip(known, outcomes), start=1)])


def receipt_lines(tx: Any, receipt_id: str, limit: int,
                  seen: tuple[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """The lines of a beps.128 we received, in its order, with what each did; only
    those answering a payment `seen` holds (an SQL subquery of payment ids,
    gateway.scope.seen_ids), when given."""
    only, params = (f" AND payment_id IN {seen[0]}", seen[1]) if seen else ("", [])
    return [dict(zip(_LINE_COLUMNS, row)) for row in tx.query(
        f"SELECT {', '.join(_LINE_COLUMNS)} FROM beps_receipt_lines WHERE receipt_id = ?"
        f"{only} ORDER BY line_no LIMIT ?", (receipt_id, *params, limit))]


def last_receipt_line(tx: Any, payment_id: str) -> dict[str, Any] | None:
    """The last receipt line that answered our debit (the receipt, its status, the payer
    bank's code and reason, and what it did), None before any came."""
    row = tx.query_one(
        "SELECT l.receipt_id, l.status, l.reject_code, l.reject_info, l.outcome "
        "FROM beps_receipt_lines l JOIN beps_packages k ON k.id = l.receipt_id "
        "WHERE l.payment_id = ? ORDER BY k.created_at DESC, l.receipt_id DESC LIMIT 1",
        (payment_id,))
    if row is None:
        return None
    return dict(zip(("receipt", "status", "reject_code", "reject_info", "outcome"), row))


def _record_receipt(tx: Any, r: beps128.DebitReceipt, receipt_id: str, original: str,
                    netting: tuple[str, str], now: datetime) -> None:
    h = r.header
    tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, receiver, "
               "count, total_fen, state, netting_date, netting_round, answers, created_at, "
               "updated_at) VALUES (?, 'in', ?, ?, ?, ?, ?, ?, 'netted', ?, ?, ?, ?, ?)",
               (receipt_id, beps128.MESSAGE_TYPE, h.msg_id, h.instg_direct, h.instd_direct,
                h.count, r.paid_fen, *netting, original, now.isoformat(), now.isoformat()))


def _paid(tx: Any, gw: "Gateway", p: dict[str, Any], result: CreditResult, receipt_id: str,
          netting: tuple[str, str]) -> tuple[dict[str, Any], str, str, dict[str, Any]]:
    """The change of a debit paid and credited as `result` says.

    A debit still waiting is netted, its return deadline passed or not: the deadline is
    the payer bank's to answer by, and a late answer is still the answer. One that
    ended unpaid (given up by operators, gateway.beps.debit_deadline) was told to the
    core system as `rejected`, final, and the core system may have collected the bill
    another way since: crediting our customer now could pay it twice. The money is
    final at the NPC and ours, so it is booked, but to suspense under a pending
    write-off number (the credit parked by `_answered`), the debit keeping its state,
    and a critical alert asks a person to find out with the core system whether it goes
    to the customer or back to the payer.
    """
    detail = {"receipt": receipt_id, "netting_date": netting[0], "netting_round": netting[1],
              "credit": result.kind, "pending_no": result.pending_no}
    if p["state"] in WAITING:
        if result.kind != "credited":
            gw.alert(tx, "debit_credit_to_suspense", payment=p["id"], reason=result.reason)
        return (p, "netted", "beps_debit_paid", detail)
    gw.alert(tx, "debit_paid_after_end", payment=p["id"], amount_fen=p["amount_fen"],
             pending_no=result.pending_no, receipt=receipt_id, state=p["state"],
             reason=p.get("reason"))
    return (p, p["state"], "beps_debit_paid_after_end", detail)
