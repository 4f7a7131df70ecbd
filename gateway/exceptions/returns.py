"""Returns (退汇): sending back an incoming payment, and receiving back one of ours.

Sending. An incoming HVPS credit in suspense (it could not be credited) or already
credited (the customer asks for it to go back) is returned as a new hvps.111 of business
type A105 (kind 02108), an institution credit transfer (hvps.112) as a new hvps.112 of
the same type and kind (SPEC.md, hvps.112: A105 returns), from us to the original sender, for the same amount, carrying
the original's identifiers as tag lines (SPEC.md d.6): /F40/ its message type, /E50/ its
message id, /A70/ its instructing participant, and /H20/ the reason. A BEPS original
travelled as one transaction of a package: /E50/ names the package's MsgId (the message
that carried it) and /E51/ the transaction's TxId, by our reading of SPEC.md's "E50 / E51:
original message id" (which of a package's transactions is meant needs both). The return is an
ordinary outgoing payment from then on (lanes, window, results, status queries). Its
payer is the party the money leaves: from suspense our suspense account, in our
branch's name (write_off.suspense_payer); from a credited account that account's
holder. Either way the payer's bank is the branch whose books hold the account (the
ledger's institution's bank code), not the bank the original named as its payee. One
difference in the ledger:

- from suspense nothing is held: when the NPC settles the return, the suspense item is
  posted out to the clearing account (`return_suspense`); until then it stays open;
- from a credited account the payee's money is held at once, like any payer's, and
  settles to the clearing account when the NPC settles the return.

Only when the return settles does the original move to `returned`; a refused return
leaves it where it was, with the refusal in its history and an alert. A payment that is
itself a return (A105) is never returned, and a payment is returned at most once.

Screened. A return pays the original's payer: money going to a party the screening
lists is held as an outgoing HVPS payment the review holds (gateway.ops.review), for
whoever asked (the core system, operators, the automatic return): the return `held`
with the screening's reason (`screening_match_payee_name`, ...), its outbox row in
`review`, the original's `return_requested` naming it (`held_for`). The screening alone
(its payer, the account the money leaves, and its payee, the original's payer), not the
amount review: the amount came in already and goes back unchanged. Passed
(`review_approve`), it goes on its lane (or waits for the window); failed
(`review_reject`) or cancelled, it ends unsettled as any return does (the original
stays, its reason too, `return_failed`: a credit the screening parked stays parked).
Holding fits every way a return is asked (each makes an ordinary outgoing payment,
which the review machinery holds and decides); refusing would leave the money with no
way back once a person decided it should go.

A credit the screening parked in suspense (gateway.screening.parked) is returned only
by operators, under dual control (the console's `return`): the core system's return is
refused (`payment_held_for_review`), as the automatic return never takes it
(gateway.exceptions.suspense).

Receiving. An incoming A105 naming (by /A70/, /F40/, /E50/) a payment of ours that
settled, for the same amount, is credited to the account it names like any incoming
credit (normally our payer's), and our payment moves to `returned`. One that names
nothing of ours, or a payment not settled, or a return of ours, is credited like any
other payment and raised to the operators. A return of a BEPS payment of ours may name
it by its TxId in /E50/ (as our own returns did before) or by the package's MsgId in
/E50/ with the TxId in /E51/; naming only the package, it matches the one transaction
of that package for the same amount paid to the account the return comes from, and
none when several do (`original_not_unique_in_package`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from gateway import intake, keys, outbound, payments, scope, screening, states, status_hold
from gateway.errors import Conflict, Forbidden, PaygateError, Problem, ValidationFailed
from gateway.exceptions import schema, write_off
from gateway.exceptions.outcomes import RETURN_TYPE
from gateway.exceptions.wire import Entry
from gateway.inbound import Processed
from gateway.messages import codec, hvps111, hvps112
from gateway.ops import control

log = logging.getLogger(__name__)

RETURN_KIND = "02108"
RETURN_PRIORITY = 3  # NORM: a return has no urgency of its own
REASON_LEN_MAX = 100  # "/H20/" and the reason stay within a Max140Text Ustrd line
RETURNABLE_STATES = ("suspense", "credited")
# A return's hold refused by the ledger (the account short of the amount, frozen, closed)
# is named at the returned payment's own fields, as GET /v1/transfers/{id} shows them:
# the request itself carries only a reason.
_PAYMENT_FIELDS = {"amount_fen": "/amount", "account_no": "/payee/account"}


def check_reason(reason: Any) -> str:
    return intake.reason_text(reason, "return_reason_malformed", REASON_LEN_MAX)


# Incoming credits we can send back: HVPS customer and institution credits and BEPS
# ordinary credits (a return travels as an hvps.111 A105 whichever way the original
# came, naming its type; an institution's as an hvps.112 A105: `return_type`).
RETURNABLE_TYPES = (hvps111.MESSAGE_TYPE, hvps112.MESSAGE_TYPE, "beps.121.001.01",
                    "beps.122.001.01")


def return_type(original: dict[str, Any]) -> str:
    """The message type our return of `original` travels as: an hvps.112 for an
    institution credit transfer (its parties institutions, its payee maybe with no
    account), an hvps.111 for every other."""
    return (hvps112.MESSAGE_TYPE if original["msg_type"] == hvps112.MESSAGE_TYPE
            else hvps111.MESSAGE_TYPE)


def check_returnable(tx: Any, original: dict[str, Any]) -> None:
    """Refuse a return that could not be made now (reads only)."""
    pid = original["id"]
    if original["direction"] != "in":
        raise Conflict(Problem("return_only_for_incoming_payments", "/id", pid,
                               "an incoming payment", "a payment we sent can be cancelled "
                               "while queued; once settled only the payee's bank returns it"))
    if original["business_type"] == RETURN_TYPE:
        raise ValidationFailed(Problem("return_of_a_return_not_allowed", "/id", pid,
                                       "a payment that is not itself a return (A105)"))
    if original["msg_type"] not in RETURNABLE_TYPES:
        raise ValidationFailed(Problem("return_message_type_not_supported", "/id",
                                       original["msg_type"], ", ".join(RETURNABLE_TYPES)))
    if original["state"] not in RETURNABLE_STATES:
        raise Conflict(Problem("payment_not_returnable", "/state", original["state"],
                               "an incoming payment in suspense or credited"))
    open_return = schema.open_return_of(tx, pid)
    if open_return is not None:
        raise Conflict(Problem("return_already_requested", "/id", pid,
                               "a payment whose return is not under way",
                               f"return {open_return['return_id']} is {open_return['state']}"))


def check_requestable(gw: Any, tx: Any, original: dict[str, Any]) -> None:
    """Refuse, with the error `request_tx` would give, a return that could not be made
    now, its hold included: a credited payment's account must cover the amount (not
    closed, not frozen). Reads only."""
    check_returnable(tx, original)
    if original["state"] == "suspense":
        return
    payer_account, _ = write_off.party_credited(gw, tx, original)
    try:
        gw.ledger.check_hold(tx, payer_account, original["amount_fen"], gw.work_date)
    except PaygateError as exc:
        raise intake.as_request_fields(exc, _PAYMENT_FIELDS) from None


def request_tx(gw: Any, tx: Any, payment_id: str, reason: str, by: str, now: datetime,
               client: str | None = None, core: bool = False,
               approved_by: str | None = None) -> tuple[dict[str, Any], list[Entry]]:
    """Record and queue the return of an incoming payment, held for review when the
    screening matches a party of it; (return row, stream entries).

    `by` is who asked for it; `approved_by` the second person who approved it under
    dual control (operators' returns), recorded beside `by` on the original's
    `return_requested`.

    `client` is the core-system client that asked, who alone may then see the return
    when client credentials are configured; None for the gateway and its operators.
    `core`: the core system asked (a credit the screening parked is not its to return)."""
    # Locked before the open-return check: the request keeps the original's state, so
    # two requests at once (two gateway processes, or one and the automatic return)
    # would otherwise both find no return and both send one.
    original = payments.get(tx, payment_id, lock=True)
    check_returnable(tx, original)
    if core:
        control.refuse_core_overtaking(tx, payment_id, "return", now)
    work_date = gw.work_date
    via = "suspense" if original["state"] == "suspense" else "account"
    hold_id = None
    if via == "suspense":
        # Our suspense account pays, at the branch whose books hold it and in its name.
        our_branch, payer_account, payer_name = write_off.suspense_payer(gw)
        _refuse_outside_scope(gw, client, original, payer_account, suspense=True)
        if core:
            refuse_if_screened(original)
    else:
        # The account the money went to, under its holder's name, at the branch whose
        # books keep it: an item applied from suspense (销账) may have gone to another
        # account than its message named, at another of our banks than it named. Only
        # when the ledger's institution has no bank code does the original's payee bank
        # (when ours) stand for it.
        our_branch = gw.account_bank or (
            original["payee_bank"] if original["payee_bank"] in gw.own_banks
            else gw.settings.bank_code)
        payer_account, payer_name = write_off.party_credited(gw, tx, original)
        _refuse_outside_scope(gw, client, original, payer_account)
    rid, msg_id, e2e = intake.new_ids(tx, work_date, our_branch)
    if via == "account":
        try:
            hold_id = str(gw.ledger.hold(tx, f"{rid}:hold", payer_account,
                                         original["amount_fen"], work_date, rid))
        except PaygateError as exc:
            raise intake.as_request_fields(exc, _PAYMENT_FIELDS) from None
    row = _return_row(gw, original, _original_ids(tx, original), rid, msg_id, e2e,
                      our_branch, reason, hold_id, now)
    row["payer_account"], row["payer_name"] = payer_account, payer_name
    row["client"] = client
    held_for = screening.reason(gw, row)
    payments.insert(tx, row)
    schema.add_return(tx, rid, payment_id, "out", via, "pending", reason, by, now,
                      approved_by)
    payments.transition(tx, original, original["state"], "return_requested", now,
                        gw.notifier, return_id=rid, by=by, reason_given=reason,
                        **payments.approval(approved_by),
                        **({} if held_for is None else {"held_for": held_for}))
    return row, _queue(gw, tx, row, now, held_for)


def refuse_if_screened(original: dict[str, Any]) -> None:
    """A credit the screening parked in suspense waits for operators' decision, under
    dual control: refused to the core system (409 `payment_held_for_review`)."""
    if not states.parked_by_screening(original):
        return
    raise Conflict(Problem(
        "payment_held_for_review", "/id", original["reason"],
        "a payment the screening does not hold",
        f"payment {original['id']} is parked in suspense by the screening "
        f"({original['reason']}): operators apply it to an account or return it, under "
        "dual control (the console's suspense_apply or return)"))


def _refuse_outside_scope(gw: Any, client: str | None, original: dict[str, Any],
                          account_no: str, suspense: bool = False) -> None:
    """A return takes the money from `account_no` (our `suspense` account, or the
    account the payment was credited to) as paying from it would: a client may return
    it only when api_balance_accounts lets it pay from that account (gateway.scope:
    the suspense account, no customer's, only under an entry of `*`). Refused before
    anything is held, whatever the route let it see: to a client with an entry, which
    then does not see the payment either, as an id never given (404); to a client
    without one, which sees it but may pay from no account, 403
    `account_outside_client_scope` at the payment's `/payee/account`, with the account
    the client sees there (the one the payment names) as its value, and the message
    saying where the money is when that is elsewhere (in suspense, or applied to
    another account)."""
    if client is None:
        return
    scopes = gw.settings.api_balance_accounts
    if not scopes or client in scopes and (
            "*" in scopes[client] if suspense else scope.covers(scopes, client, account_no)):
        return
    log.warning("event=return_account_outside_client_scope client=%s payment=%s "
                "account=%s", client, original["id"], "suspense" if suspense else account_no)
    if client in scopes:
        raise payments.not_found(original["id"])
    shown = original["payee_account"]
    why = scope.why_not(scopes, client, account_no, "return money from")
    if suspense:
        why += (f"; the money of payment {original['id']} waits in our suspense account "
                f"(挂账), not on account {shown} it names, and a return takes it from there")
    elif account_no != shown:
        why += (f"; the money of payment {original['id']} was applied to account "
                f"{account_no}, not to account {shown} it names, and a return takes it "
                "from there")
    raise Forbidden(Problem(scope.ACCOUNT_OUT_OF_SCOPE, "/payee/account", shown,
                            "an account the client's entry in api_balance_accounts covers",
                            why))


def _return_row(gw: Any, original: dict[str, Any], original_ids: list[str], rid: str,
                msg_id: str, e2e: str, our_branch: str, reason: str, hold_id: str | None,
                now: datetime) -> dict[str, Any]:
    tags = [f"/F40/{original['msg_type']}", *original_ids,
            f"/A70/{original['sender_direct']}", f"/H20/{reason}"]
    return {
        "id": rid, "direction": "out", "channel": "hvps", "state": "accepted",
        "msg_type": return_type(original), "msg_id": msg_id, "tx_id": msg_id,
        "end_to_end_id": e2e, "sender_direct": gw.settings.bank_code,
        "receiver_direct": original["sender_direct"], "amount_fen": original["amount_fen"],
        "currency": original["currency"], "payer_bank": our_branch,
        "payee_account": original["payer_account"], "payee_name": original["payer_name"],
        "payee_bank": original["payer_bank"], "business_type": RETURN_TYPE,
        "business_kind": RETURN_KIND, "urgency": "normal", "priority": RETURN_PRIORITY,
        "remittance": tags, "hold_id": hold_id,
        "route": {"channel": "hvps", "rule": "return_to_sender", "returns": original["id"],
                  **({outbound.PAYEE_INSTITUTION: debtor} if (debtor := original["route"].get(
                      outbound.PAYER_INSTITUTION)) else {})},
        "work_date": gw.work_date.isoformat(), "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }


def _original_ids(tx: Any, original: dict[str, Any]) -> list[str]:
    """The tag lines naming the message that brought `original` (its package and
    transaction for BEPS, see the module's docstring)."""
    if original["channel"] == "beps":
        package = tx.query_one("SELECT k.msg_id FROM beps_items i JOIN beps_packages k "
                               "ON k.id = i.package_id WHERE i.payment_id = ?",
                               (original["id"],))
        if package is not None:
            return [f"/E50/{package[0]}", f"/E51/{original['tx_id']}"]
    return [f"/E50/{original['msg_id']}"]


def _queue(gw: Any, tx: Any, row: dict[str, Any], now: datetime,
           held_for: str | None = None) -> list[Entry]:
    """On its lane when HVPS is open; otherwise waiting for the window, as at intake. A
    return is a payment: while HVPS sending is held (gateway.status_hold) it stays on
    its lane with the reason `hvps_sending_held`, as a customer's payment does. One the
    screening matched (`held_for`, its reason) waits for the review first, as an HVPS
    payment held at intake does (its outbox row in `review`; the approval puts it on
    its lane, or waiting for the window)."""
    if held_for is not None:
        intake.add_outbox(tx, row["id"], row["priority"], "review", now)
        payments.transition(tx, row, "held", "held", now, gw.notifier, reason=held_for)
        log.info("event=return_held_for_review payment=%s returns=%s reason=%s", row["id"],
                 row["route"]["returns"], held_for)
        return []
    state = "pending" if gw.hvps_open else "waiting"
    outbox_id = intake.add_outbox(tx, row["id"], row["priority"], state, now)
    if state == "waiting":
        payments.transition(tx, row, "held", "held", now, gw.notifier,
                            reason="waiting_for_hvps_window")
        return []
    if gw.hvps_hold is not None:
        tx.execute("UPDATE payments SET reason = ? WHERE id = ?",
                   (status_hold.HELD_REASON, row["id"]))
    return [(keys.lane_for_priority(row["priority"]), {"outbox": str(outbox_id)})]


Handler = Callable[[Any, codec.Decoded, Any], Processed]


def receive(gw: Any, tx: Any, d: codec.Decoded, now: datetime, credit: Handler) -> Processed:
    """An incoming A105: credit it with `credit` (the plain credit handler), then mark
    the payment of ours it returns."""
    ct: hvps111.CreditTransfer = d.obj
    named = Named(ct.tag("A70") or "", ct.tag("F40") or "", ct.tag("E50") or "",
                  ct.tag("E51"))
    original, unmatched = original_of(tx, named, ct.amount_fen, ct.debtor_account)
    processed = credit(tx, d, now)
    rid = processed.outcome.get("payment")
    if rid is None:
        return processed
    unmatched = link(gw, tx, rid, named, original, unmatched, ct.tag("H20"), ct.instg_direct,
                     now)
    if unmatched is not None:
        return Processed(dict(processed.outcome, return_unmatched=unmatched),
                         processed.after_commit)
    return Processed(dict(processed.outcome, returned=original["id"]),
                     processed.after_commit)


def link(gw: Any, tx: Any, rid: str, named: "Named", original: dict[str, Any] | None,
         unmatched: str | None, reason: str | None, sender: str, now: datetime
         ) -> str | None:
    """After an incoming return `rid` was credited: mark the payment of ours it returns
    `returned`, or raise to operators why it names none (the rule, returned)."""
    credited = payments.get(tx, rid)
    unmatched = unmatched or _why_unmatched(original, credited["amount_fen"])
    if unmatched is not None:
        gw.alert(tx, "incoming_return_not_matched", payment=rid, rule=unmatched,
                 original_msg_id=named.msg_id, original_sender=named.sender)
        return unmatched
    assert original is not None
    reason = reason or "returned"
    schema.add_return(tx, rid, original["id"], "in", credited["state"], "settled", reason,
                      sender, now)
    payments.transition(tx, original, "returned", "returned_by_payee_bank", now, gw.notifier,
                        reason=f"returned by {rid}: {reason}", return_id=rid)
    return None


BEPS_PACKAGE_TYPES = ("beps.121.001.01", "beps.122.001.01")


@dataclass(frozen=True)
class Named:
    """What a return says of the payment it returns: the original's instructing
    participant, message type and message id, and for a transaction of a BEPS package
    its TxId (an hvps.111's /A70/, /F40/, /E50/, /E51/; a BEPS return's RtrInf)."""

    sender: str
    msg_type: str
    msg_id: str
    tx_id: str | None = None


def original_of(tx: Any, named: Named, amount_fen: int, returned_from: str
                ) -> tuple[dict[str, Any] | None, str | None]:
    """The payment of ours a return names, and why none when the names fit several: by
    message id (an HVPS payment, or a BEPS one named by its TxId), else for a BEPS type
    by the package's MsgId and the transaction's TxId, or with no TxId the package's one
    transaction of the same amount paid to the account the return comes from."""
    original = payments.find_by_message(tx, "out", named.sender, named.msg_type,
                                        named.msg_id)
    if original is not None or named.msg_type not in BEPS_PACKAGE_TYPES \
            or not named.msg_id:
        return original, None
    rows = tx.query("SELECT i.payment_id FROM beps_packages k JOIN beps_items i "
                    "ON i.package_id = k.id WHERE k.direction = 'out' AND k.msg_id = ? "
                    "AND k.msg_type = ? AND k.sender = ?",
                    (named.msg_id, named.msg_type, named.sender))
    candidates = [payments.get(tx, pid) for (pid,) in rows]
    if named.tx_id:
        candidates = [p for p in candidates if p["tx_id"] == named.tx_id]
    else:
        candidates = [p for p in candidates if p["amount_fen"] == amount_fen
                      and p["payee_account"] == returned_from]
    if len(candidates) > 1:
        return None, "original_not_unique_in_package"
    return (candidates[0] if candidates else None), None


def _why_unmatched(original: dict[str, Any] | None, amount_fen: int) -> str | None:
    """None when the return names a settled payment of ours for the same amount."""
    if original is None:
        return "original_not_found"
    if original["business_type"] == RETURN_TYPE:
        return "return_of_a_return"
    if original["state"] != "settled":
        return "original_not_settled"
    if original["amount_fen"] != amount_fen:
        return "amount_differs_from_original"
    return None
