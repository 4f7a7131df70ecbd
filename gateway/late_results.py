"""A final word from the NPC about one of our HVPS payments that the gateway has already
ended (docs/exceptions.md, "A final result for a payment ended otherwise").

The NPC's books are the clearing account's truth. When its word (a ccms.900, a ccms.317
answering a status query, a ccms.308) agrees with how the payment ended here, it is a
repeat and changes nothing. When it does not, it is never only logged:

- rejected or cancelled here, PR04 settled there: money left our clearing account. It
  is booked at once (below), the payment goes `settled` and the critical alert
  `npc_settled_payment_we_ended` names it and its amount.
- rejected or cancelled here, PR12 queued there: it may still settle (then as above);
  alert `npc_queued_payment_we_ended`.
- settled or returned here, PR09, PR24 or PR08 there: the critical alert
  `npc_did_not_settle_payment_we_settled`; nothing is moved on a word that contradicts
  a settlement, people decide.

A payment the NPC settled after we had ended it had its hold released (its payer has
the money back) or never held anything. The settlement is booked again from the payer:
a new hold and its settlement (Dr payer, Cr 4001; Dr 4001, Cr clearing account) when the
payer's account covers the amount now; else the amount goes to other receivables
(1221, 其他应收款-待销账: Dr 1221, Cr clearing account) under a pending write-off number,
for operators to collect from the payer (ledger.receivables) or write off. Either way
our clearing account moves exactly as the NPC's did. The postings carry event ids of
the payment (`<id>:late_settle:...`), so the same word twice books once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from gateway import payments
from gateway.messages.ccms316 import NOT_ACCEPTED
from gateway.messages.ccms900 import CANCELLED, QUEUED, REJECTED, SETTLED
from gateway.money import format_yuan
from ledger import LedgerError

log = logging.getLogger("paygate.late_results")

NEVER_SETTLED = (REJECTED, NOT_ACCEPTED, CANCELLED)
ENDED_UNSETTLED = ("rejected", "cancelled")
ENDED_SETTLED = ("settled", "returned")
ALERT_SETTLED_AFTER_END = "npc_settled_payment_we_ended"
ALERT_QUEUED_AFTER_END = "npc_queued_payment_we_ended"
ALERT_CONTRADICTS_SETTLEMENT = "npc_did_not_settle_payment_we_settled"

# Books a late settlement another way than from the payer (a return of money held in
# suspense, gateway.exceptions.outcomes); the history's detail of what it booked, or
# None to book it from the payer after all.
Booking = Callable[[Any, dict[str, Any], str], "dict[str, Any] | None"]


def act(gw: Any, tx: Any, payment: dict[str, Any], status: str, npc_date: str | None,
        now: datetime, source: str, reason: str | None = None,
        booking: Booking | None = None) -> str:
    """Act on the NPC's `status` for a payment in a final state; what was done:
    `already_final` (the word agrees, or says nothing new), `settled_after_end`,
    `queued_after_end` or `contradicts_settlement`."""
    state = payment["state"]
    if status == SETTLED and state in ENDED_UNSETTLED:
        settled_after_end(gw, tx, payment, npc_date, now, source, reason, booking)
        return "settled_after_end"
    if status == QUEUED and state in ENDED_UNSETTLED:
        gw.alert(tx, ALERT_QUEUED_AFTER_END, payment=payment["id"],
                 amount_fen=payment["amount_fen"], amount=format_yuan(payment["amount_fen"]),
                 state=state, source=source,
                 message="the NPC holds in its queue a payment the gateway ended: should it "
                         "settle, the gateway books it from the payer again")
        return "queued_after_end"
    if status in NEVER_SETTLED and state in ENDED_SETTLED:
        gw.alert(tx, ALERT_CONTRADICTS_SETTLEMENT, payment=payment["id"],
                 amount_fen=payment["amount_fen"], amount=format_yuan(payment["amount_fen"]),
                 state=state, npc_status=status, source=source, reason=reason,
                 severity="critical",
                 message="the NPC says a payment the gateway settled did not settle; nothing "
                         "was moved: compare with the NPC's reconciliation and correct")
        log.critical("event=npc_did_not_settle_payment_we_settled payment=%s state=%s "
                     "status=%s amount_fen=%s source=%s", payment["id"], state, status,
                     payment["amount_fen"], source)
        return "contradicts_settlement"
    log.info("event=late_result payment=%s state=%s status=%s source=%s", payment["id"],
             state, status, source)
    return "already_final"


def settled_after_end(gw: Any, tx: Any, payment: dict[str, Any], npc_date: str | None,
                      now: datetime, source: str, reason: str | None,
                      booking: Booking | None = None) -> dict[str, Any]:
    """Book a settlement the NPC made of a payment we had ended unsettled, move the
    payment to `settled` and raise the critical alert; the payment as settled."""
    work_date = gw.work_date.isoformat()
    booked = booking(tx, payment, work_date) if booking is not None else None
    if booked is None:
        booked = _book_from_payer(gw, tx, payment, work_date)
    amount_fen = payment["amount_fen"]
    was = payment["state"]
    said = _booked_text(booked)
    settled = payments.transition(
        tx, payment, "settled", "npc_settled_after_end", now, gw.notifier,
        settled_on=npc_date or work_date, hold_id=booked.get("hold"), was=was,
        source=source, npc_reason=reason, amount_fen=amount_fen,
        reason=f"settled by the NPC after the gateway had {was} it; booked {said}"[:200],
        **{k: v for k, v in booked.items() if k != "hold"})
    gw.alert(tx, ALERT_SETTLED_AFTER_END, payment=payment["id"], amount_fen=amount_fen,
             amount=format_yuan(amount_fen), was=was, source=source, severity="critical",
             payer_account=payment["payer_account"], **booked,
             message=f"the NPC settled {format_yuan(amount_fen)} yuan for a payment the "
                     f"gateway had {was}: booked {said}")
    log.critical("event=npc_settled_payment_we_ended payment=%s was=%s amount_fen=%s "
                 "booked=%s source=%s", payment["id"], was, amount_fen, booked["booked"],
                 source)
    return settled


def _booked_text(booked: dict[str, Any]) -> str:
    if booked["booked"] == "payer":
        return "from the payer's account"
    if booked["booked"] == "receivables":
        return (f"to other receivables (1221) as {booked['receivable']}: collect it from "
                "the payer or write it off")
    return booked.get("said", booked["booked"])


def _book_from_payer(gw: Any, tx: Any, payment: dict[str, Any],
                     work_date: str) -> dict[str, Any]:
    """A new hold on the payer and its settlement when the account covers the amount;
    else other receivables. What was booked, for the history and the alert."""
    pid, amount_fen, account = payment["id"], payment["amount_fen"], payment["payer_account"]
    try:
        with tx.savepoint():
            hold_id = gw.ledger.hold(tx, f"{pid}:late_settle:hold", account, amount_fen,
                                     work_date, pid)
            entry = gw.ledger.settle(tx, f"{pid}:late_settle:settle", hold_id, work_date)
    except LedgerError as exc:
        item = gw.ledger.book_receivable(
            tx, f"{pid}:late_settle:receivable", account, amount_fen, work_date, pid,
            f"settled by the NPC after the payment ended; payer not debited: {exc.code}")
        return {"booked": "receivables", "receivable": item.pending_no,
                "payer_refused": exc.code, "ledger_entry": item.entry_id}
    return {"booked": "payer", "hold": hold_id, "ledger_entry": entry}
