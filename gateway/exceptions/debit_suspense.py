"""Our BEPS debits whose collected money waits in suspense (待销账): applied to our
customer, or returned to the payer bank.

A debit of ours (beps.127) the payer bank paid leaves its money in suspense (2241),
under a pending write-off number on the debit, in two cases:

- paid after operators gave it up (`debit_give_up`; critical alert
  `debit_paid_after_end`): the debit is `rejected`, which the core system was told;
- paid while our customer's account could no longer take it (closed, or its holder
  renamed, between the request and the receipt; alert `debit_credit_to_suspense`): the
  debit is `netted` or `settled`, as any paid debit.

A person settles with the core system where the money goes, and an operator asks for
one of two actions, which a supervisor or director approves (DOMAIN.md §5):

Applying it (`suspense_apply`, the action that applies an incoming payment's item): the
note says why (the core system confirmed it did not collect the bill again, the
customer's new account, ...). In one transaction the ledger posts Dr suspense, Cr the
account (`clear_suspense`, write_off.clear) and the debit changes as the money did: a
given-up debit becomes `settled` when the netting round its payment went in has
settled, else `netted` (the payer bank paid, and our customer now has the money:
CONTRACT.md's states of a debit collected; a `netted` one settles with its round as any
other); a `netted` or `settled` debit keeps its state. Either way the event
`beps_debit_suspense_applied` (account, pending number, ledger entry, request, who,
note, the state it was in) goes to the core system's webhook and the debit's history.
The account and its holder's name are screened first, when asked and when approved, as
an incoming credit's are (write_off.check_holder_screened): a match is refused
(`account_screened`), the money staying in suspense. So is the debit's payer, the
debtor at the other bank whose money it is (`check_payer_screened`): applied, the money
is collected from that party into our customer's account, business with a listed party
whichever way it flows; its screening when the debit went may be long past, and the
list may have grown since. A match is refused (`debit_payer_screened`), and a return
to the payer bank is asked instead, which the screening holds for review as it holds
any return to a listed party; a hit a supervisor passed when the debit was held at
intake (`passed_at_review`) is not raised again, a new one is.

Returning it (`suspense_return`): the note is the reason. A beps.121 credit of business
type A105 (kind 02108) goes to the payer bank for the amount, paid by our suspense
account in our branch's name (write_off.suspense_payer: the money is the item's, not
our customer's; a directory name over the 60 characters a package takes goes out as
its first 60, build.our_name, the full one kept as `payer_name_listed`) back to the payer, its RtrInf naming the debit (our beps.127's MsgId and our bank,
the debit's TxId and type) with the reason in Cntt. It is an ordinary outgoing BEPS
credit from then on (screened, packed, sent, netted, settled with its round), except
that it holds nothing: the money stays in suspense until the NPC nets the return, which posts
Dr suspense, Cr BEPS netted obligations (4002; ledger `return_suspense`, netted), and
the debit becomes `returned` (event `returned_to_payer_bank` with the return's id and
reason). A return that ends unpaid, whichever way (the NPC rejects it, a rule refuses it
before packing, it is cancelled), leaves the money in suspense and the debit as it was
(event `return_failed`, alert `return_not_settled`, the return's record `failed`); a new
return may then be asked.

The return is screened as every outgoing credit is (the screening alone: `_screened`).
A match sets it aside as a BEPS credit the review holds (gateway.beps.review_hold): the
return `held` with the screening's reason, out of packing, the debit's
`return_requested` naming it (`held_for`). Passed (`review_approve`), it is packed and
goes on as above; failed (`review_reject`) or cancelled, it ends unpaid as above, the
money still in suspense.

Exactly once: each action locks the debit and checks the item again when it runs (it is
refused if applied or returned already, or while a return is under way); the ledger's
event ids are the debit's or the return's own, so a retry posts nothing twice; and the
whole runs in the console's one transaction, so a process dying half-way leaves nothing.

Once the item leaves suspense (applied, or returned) the alert that raised it
(`debit_paid_after_end` or `debit_credit_to_suspense`) is closed by the gateway: its
cause is gone (critical.close_by_gateway, the note saying where the money went).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway import critical, intake, payments, screening, states
from gateway.beps import build, items
from gateway.errors import Conflict, Problem, ValidationFailed
from gateway.exceptions import outcomes, returns, schema, write_off
from gateway.exceptions.outcomes import RETURN_TYPE
from gateway.exceptions.wire import Entry
from gateway.messages.common import OriginalRef, OriginalTx
from gateway.messages.package import ReturnInfo

ACTION_RETURN = "suspense_return"
EVENT_APPLIED = "beps_debit_suspense_applied"
EVENT_RETURNED = "returned_to_payer_bank"
# A paid debit applied keeps its state: the webhook tells the event all the same.
payments.TOLD_UNCHANGED.add(EVENT_APPLIED)
RETURN_MSG_TYPE = "beps.121.001.01"
# Our branch's name as the directory writes it, kept (in the return's route and the
# debit's `return_requested`) when the return carries it cut (build.our_name).
PAYER_NAME_LISTED = "payer_name_listed"
# The alerts that raise a debit's money in suspense, closed once it leaves suspense.
ALERTS = ("debit_paid_after_end", "debit_credit_to_suspense")
# States of a debit that ended unpaid (debits_out.ENDED_UNPAID): applied, it is collected.
ENDED_UNPAID = ("rejected", "cancelled")
RETURN_NOTE_EXPECTED = (f"the reason sent to the payer bank (RtrInf Cntt), 1 to "
                        f"{returns.REASON_LEN_MAX} characters: a note is required to "
                        "return a suspense item")


def is_debit_item(payment: dict[str, Any]) -> bool:
    """Whether the payment is our BEPS debit whose money went to suspense: the one kind
    of payment that may leave a final state for another (states.SUSPENSE_DEBIT_ONLY)."""
    return states.is_suspense_debit(payment)


def check_item(gw: Any, tx: Any, payment: dict[str, Any], pending_no: str | None) -> None:
    """Refuse acting on the debit's suspense item unless it is still open and no return
    of it is under way (reads only)."""
    write_off.check_open(gw, tx, payment, pending_no, "the payer bank")


# Applying (the console's suspense_apply, for an incoming payment or one of our debits)

def check_appliable(gw: Any, tx: Any, payment_id: str, params: dict[str, Any]) -> None:
    payment = payments.get(tx, payment_id)
    if not is_debit_item(payment):
        write_off.check_appliable(gw, tx, payment_id, params)
        return
    check_item(gw, tx, payment, params.get("pending_no"))
    if "account" in params:
        write_off.check_account(gw, tx, params["account"])
        write_off.check_holder_screened(gw, tx, payment, params["account"])
    # Whatever the account: a debit whose payer is listed is not offered for applying.
    check_payer_screened(gw, tx, payment)


def apply_tx(gw: Any, tx: Any, payment_id: str, params: dict[str, Any], by: str, note: str,
             request_id: int, now: datetime, approved_by: str | None = None
             ) -> dict[str, Any]:
    """Apply the suspense item of an incoming payment (write_off.apply_tx) or of our
    debit to the account the params name, checked again with the payment locked. `by`
    asked for it, `approved_by` approved it (both in the history)."""
    payment = payments.get(tx, payment_id, lock=True)
    if not is_debit_item(payment):
        return write_off.apply_tx(gw, tx, payment_id, params, by, note, request_id, now,
                                  approved_by)
    check_item(gw, tx, payment, params.get("pending_no"))
    write_off.check_account(gw, tx, params["account"])  # ours, before its holder's screening
    write_off.check_holder_screened(gw, tx, payment, params["account"])
    check_payer_screened(gw, tx, payment)
    pending_no, account, entry_id = write_off.clear(gw, tx, payment, params["account"], by,
                                                    note, now)
    state, settled_on = collected_state(tx, payment)
    payments.transition(tx, payment, state, EVENT_APPLIED, now, gw.notifier, account=account,
                        pending_no=pending_no, ledger_entry=entry_id, request=request_id,
                        by=by, **payments.approval(approved_by), note=note,
                        was=payment["state"],
                        **({"settled_on": settled_on} if settled_on else {}))
    close_alerts(tx, payment_id, f"suspense item {pending_no} applied to account {account} "
                                 f"(request {request_id})", now)
    return {"payment": payment_id, "state": state, "account": account,
            "pending_no": pending_no, "ledger_entry": entry_id}


def check_payer_screened(gw: Any, tx: Any, debit: dict[str, Any]) -> None:
    """The screening clears the debit's payer (its account and name at the other bank, as
    our beps.127 named them), read as the payer, before its money is applied to our
    customer: a match refuses the application (`debit_payer_screened`), unless it is a
    hit a supervisor passed already (`passed_at_review`)."""
    passes = passed_at_review(tx, debit["id"])
    found = next(((hit, value) for hit, value in screening.hits(
        gw, "payer", debit["payer_account"] or "", debit["payer_name"] or "")
        if not covered(gw, passes, hit, value)), None)
    if found is None:
        return
    matched, value = found
    raise Conflict(Problem(
        "debit_payer_screened", "/target", value,
        "a debit whose payer the screening does not match",
        f"the screening matches the payer of debit {debit['id']}, {debit['payer_name']} "
        f"(account {debit['payer_account']} at {debit['payer_bank']}; {matched}): its "
        "money in suspense is not applied to our customer; return it to the payer bank "
        "(suspense_return)"))


def passed_at_review(tx: Any, debit_id: str) -> list[dict[str, Any]]:
    """The screening's payer matches a supervisor passed when the debit was held at
    intake (its history's `review_approved`, dual control, `passed` the reason), each
    with what was passed: the digest of the list then in force and its entries that
    matched (gateway.screening.passed_entries)."""
    return [event["detail"] for event in payments.history(tx, debit_id)
            if event["event"] == "review_approved"
            and str(event["detail"].get("passed", "")).startswith("screening_match_payer_")]


def covered(gw: Any, passes: list[dict[str, Any]], hit: str, value: str) -> bool:
    """Whether a pass covers the hit `hit` on `value` now: the same reason passed while
    the same list was in force, or while the very same entries matched (a debit's payer
    never changes once it is taken; a list that gained an entry naming the payer is a
    new hit nobody passed). A pass recorded without its list (approved before passes
    recorded one) covers nothing: operators return the money or pass it again."""
    sha256, entries = screening.entries_now(gw, hit, value)
    return any(done["passed"] == hit and "list_sha256" in done
               and (done["list_sha256"] == sha256 or sorted(done["entries"]) == entries)
               for done in passes)


def collected_state(tx: Any, payment: dict[str, Any]) -> tuple[str, str | None]:
    """The state of our debit whose money reached our customer, and the day its round
    settled if it has: a debit that ended unpaid is `settled` once its round has, else
    `netted` (it settles with its round); a paid one keeps its state."""
    if payment["state"] not in ENDED_UNPAID:
        return payment["state"], None
    row = tx.query_one("SELECT settled_on FROM beps_items WHERE payment_id = ?",
                       (payment["id"],))
    settled_on = row[0] if row else None
    return ("settled" if settled_on else "netted"), settled_on


# Returning to the payer bank (the console's suspense_return)

def return_note_problems(note: str) -> list[Problem]:
    if not note.strip():
        return [Problem("note_required", "/note", note, RETURN_NOTE_EXPECTED)]
    if len(note.strip()) > returns.REASON_LEN_MAX:
        return [Problem("return_reason_malformed", "/note", note, RETURN_NOTE_EXPECTED,
                        f"the note is {len(note.strip())} characters; a return's reason "
                        f"is at most {returns.REASON_LEN_MAX}")]
    return []


def return_params_problems(params: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """A return takes only `pending_no` (the item's own, when named by its payment)."""
    clean: dict[str, Any] = {}
    return clean, write_off.pending_no_problems(params, clean)


def check_returnable(gw: Any, tx: Any, payment_id: str, params: dict[str, Any]) -> None:
    payment = payments.get(tx, payment_id)
    if not is_debit_item(payment):
        raise ValidationFailed(Problem(
            "payment_not_in_suspense", "/target", payment["state"],
            "a debit of ours whose money waits in suspense (an incoming payment is "
            "returned with the action `return`)"))
    check_item(gw, tx, payment, params.get("pending_no"))


def return_tx(gw: Any, tx: Any, payment_id: str, params: dict[str, Any], by: str,
              reason: str, request_id: int, now: datetime, approved_by: str | None = None
              ) -> tuple[dict[str, Any], list[Entry]]:
    """Record the return (a beps.121 A105 waiting to be packed) of the debit's money in
    suspense, checked again with the debit locked; nothing is posted until it nets.
    `by` asked for it (the return's `requested_by`), `approved_by` approved it."""
    debit = payments.get(tx, payment_id, lock=True)
    check_returnable(gw, tx, payment_id, params)
    msg_id, sender = tx.query_one(
        "SELECT k.msg_id, k.sender FROM beps_items i JOIN beps_packages k "
        "ON k.id = i.package_id WHERE i.payment_id = ?", (payment_id,))
    info = ReturnInfo(OriginalRef(msg_id, sender, debit["msg_type"]),
                      OriginalTx(debit["payer_bank"], debit["payee_bank"], debit["tx_id"],
                                 debit["business_type"]), reason)
    # The money leaves suspense, not our customer's account: the suspense account pays,
    # at the branch whose books hold it and in that branch's name.
    payer_bank, payer_account, listed = write_off.suspense_payer(gw)
    # A beps.121 names the payer in at most 60 characters: a longer directory name of
    # our branch goes out cut (build.our_name), the full one kept in the route and
    # the debit's history.
    payer_name = build.our_name(listed)
    as_listed = {} if payer_name == listed else {PAYER_NAME_LISTED: listed}
    rid, new_msg_id, e2e = intake.new_ids(tx, gw.work_date, payer_bank)
    row = {
        "id": rid, "direction": "out", "channel": "beps", "state": "accepted",
        "msg_type": RETURN_MSG_TYPE, "msg_id": new_msg_id, "tx_id": new_msg_id,
        "end_to_end_id": e2e, "sender_direct": gw.settings.bank_code,
        "receiver_direct": debit["receiver_direct"], "amount_fen": debit["amount_fen"],
        "currency": debit["currency"], "payer_account": payer_account,
        "payer_name": payer_name, "payer_bank": payer_bank,
        "payee_account": debit["payer_account"], "payee_name": debit["payer_name"],
        "payee_bank": debit["payer_bank"], "business_type": RETURN_TYPE,
        "business_kind": returns.RETURN_KIND, "urgency": "normal",
        "priority": returns.RETURN_PRIORITY, "remittance": [f"/H20/{reason}"],
        "route": {"channel": "beps", "rule": "return_to_payer_bank", "returns": payment_id,
                  build.RETURN_INFO: build.return_info_route(info), **as_listed},
        "work_date": gw.work_date.isoformat(), "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }
    # The payee's name (our debit's payer, as our beps.127 named it) is never cut.
    too_long = build.name_problems(row)
    if too_long:
        raise ValidationFailed(too_long)
    held_for = _screened(gw, row)
    payments.insert(tx, row)
    items.add(tx, rid, items.CREDIT_OUT, debit["receiver_direct"], RETURN_MSG_TYPE,
              debit["amount_fen"], now, package_id=None if held_for is None else items.HELD_OUT)
    schema.add_return(tx, rid, payment_id, "out", "suspense", "pending", reason, by, now,
                      approved_by)
    if held_for is not None:
        # Imported here: gateway.beps.review_hold reaches this module through the BEPS
        # debits (debit_review, debits_in, incoming, gateway.exceptions).
        from gateway.beps import review_hold
        review_hold.held(tx, gw, row, held_for, now)
    payments.transition(tx, debit, debit["state"], "return_requested", now, gw.notifier,
                        return_id=rid, by=by, **payments.approval(approved_by),
                        reason_given=reason, request=request_id, **as_listed, **({} if held_for is None else {"held_for": held_for}))
    return {"payment": payment_id, "return_id": rid, "pending_no": debit["pending_no"],
            **({} if held_for is None else {"return_held_for": held_for})}, []


def _screened(gw: Any, row: dict[str, Any]) -> str | None:
    """The screening's reason to hold the return (its payee, the payer bank's customer
    our debit named, or its payer, our suspense account), None when clear. The screening
    alone, as for a debit another bank sends us: the amount has had its second person
    already, the supervisor or director who approved the suspense_return."""
    return screening.reason(gw, row)


def on_unheld(tx: Any, gw: Any, ids: list[str], outcome: str, detail: dict[str, Any],
              now: datetime) -> None:
    """Our returns of a debit's money among these outgoing credits netted by the NPC
    (the money leaves suspense, the debit is `returned`) or ended unpaid (`outcome`
    rejected or cancelled, whichever way: the money stays, outcomes.return_failed)."""
    for rid in ids:
        ret = schema.return_by_id(tx, rid)
        if ret is None or ret["direction"] != "out" or ret["state"] != "pending":
            continue
        debit = payments.get(tx, ret["original_id"], lock=True)
        if not is_debit_item(debit):
            continue
        if outcome == "netted":
            _returned(gw, tx, debit, ret, detail, now)
        else:
            outcomes.return_failed(gw, tx, ret, outcome, detail.get("reason"), now, debit)


def _returned(gw: Any, tx: Any, debit: dict[str, Any], ret: dict[str, Any],
              detail: dict[str, Any], now: datetime) -> None:
    rid = ret["return_id"]
    item = gw.ledger.return_suspense(tx, f"{rid}:netted:return_suspense", debit["pending_no"],
                                     gw.work_date, netted=True)
    schema.set_return_state(tx, rid, "settled", now)
    payments.transition(tx, debit, "returned", EVENT_RETURNED, now, gw.notifier,
                        reason=f"returned by {rid}: {ret['reason']}", return_id=rid,
                        pending_no=item.pending_no, **detail)
    close_alerts(tx, debit["id"], f"suspense item {item.pending_no} returned to the payer "
                                  f"bank by {rid}", now)
    outcomes.close_not_settled(tx, ret, now)


def register_hooks() -> None:
    """Have the BEPS netting and rejection of an item that holds nothing told here
    (once, whatever the number of gateways in the process)."""
    if on_unheld not in items.UNHELD_HOOKS:
        items.UNHELD_HOOKS.append(on_unheld)


def close_alerts(tx: Any, payment_id: str, note: str, now: datetime) -> list[int]:
    """Close the alerts that raised the debit's money in suspense (ALERTS) and are still
    open: their cause is gone. Their ids."""
    return critical.close_where(tx, ALERTS, "payment", payment_id, note, now)
