"""Acting on what the NPC says became of one of our HVPS payments.

The word comes from a ccms.900 (for our returns, whose settlement posts differently
from an ordinary credit's), a ccms.317 answering a status query, or a ccms.308 granting
a cancellation. Each status is acted on exactly as the NPC states it, never guessed:

| NPC status | the payment | ledger |
|---|---|---|
| PR04 settled | settled | hold → clearing account; a return from suspense: suspense → clearing |
| PR12 queued | queued | nothing yet |
| PR09 rejected, PR24 never accepted | rejected | hold released to the payer |
| PR08 cancelled | cancelled | hold released to the payer |

Only PR08, PR09 and PR24 say the payment never settled, so only they release money.
A payment already final is left alone when the word agrees with how it ended; one that
does not is acted on by gateway.late_results (a return we had ended unsettled and the
NPC settled is taken from its suspense item when that is still open, and its original
moves to `returned`). As in the core result handler, postings go on
the bank's current accounting date (the gateway's work date) and the NPC's date is
kept as the payment's settlement date, which reconciliation compares; the ledger's
event ids are the core handler's too (payment id, status, operation), so a result that
arrives by two roads is posted once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from gateway import critical, late_results, payments, screening
from gateway.exceptions import schema
from gateway.messages import ccms316
from gateway.messages.ccms900 import CANCELLED, QUEUED, REJECTED, SETTLED
from gateway.messages.package import RETURN_TYPE
from gateway.states import FINAL
from ledger import LedgerError

log = logging.getLogger("paygate.exceptions")

NOT_ACCEPTED = ccms316.NOT_ACCEPTED
# The NPC statuses that say a payment never settled, and the state each leads to.
NEVER_SETTLED = {REJECTED: "rejected", NOT_ACCEPTED: "rejected", CANCELLED: "cancelled"}


def outgoing_return(tx: Any, payment: dict[str, Any]) -> dict[str, Any] | None:
    """The return row when `payment` is a return (A105) we sent, else None."""
    if payment["direction"] != "out" or payment["business_type"] != RETURN_TYPE:
        return None
    row = schema.return_by_id(tx, payment["id"])
    return row if row is not None and row["direction"] == "out" else None


def apply(gw: Any, tx: Any, payment: dict[str, Any], status: str, npc_date: str | None,
          now: datetime, source: str, reason: str | None = None) -> str:
    """Act on one NPC status (`npc_date`: the NPC's processing or settlement date, when
    it gave one); what was done (settled, queued, rejected, cancelled or not_understood;
    for a payment already final, what gateway.late_results.act did)."""
    if payment["state"] in FINAL:
        return _late(gw, tx, payment, status, npc_date, now, source, reason)
    work_date = gw.work_date.isoformat()
    if status == SETTLED:
        _settle(gw, tx, payment, work_date, npc_date or work_date, now, source)
        done = "settled"
    elif status == QUEUED:
        if payment["state"] != "queued":
            payments.transition(tx, payment, "queued", f"{source}_queued", now, gw.notifier,
                                reason=reason or status)
        done = "queued"
    elif status in NEVER_SETTLED:
        done = _end(gw, tx, payment, status, work_date, now, source, reason)
    else:
        return "not_understood"
    tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE payment_id = ? "
               "AND kind = 'hvps_credit'", (now.isoformat(), payment["id"]))
    return done


def _late(gw: Any, tx: Any, payment: dict[str, Any], status: str, npc_date: str | None,
          now: datetime, source: str, reason: str | None) -> str:
    """The NPC's word on a payment already final (gateway.late_results)."""
    def from_suspense(tx: Any, payment: dict[str, Any], work_date: str
                      ) -> dict[str, Any] | None:
        ret = outgoing_return(tx, payment)
        if ret is None or ret["via"] != "suspense":
            return None
        original = payments.get(tx, ret["original_id"])
        try:
            with tx.savepoint():
                item = gw.ledger.return_suspense(
                    tx, f"{payment['id']}:late_settle:return_suspense",
                    original["pending_no"], work_date)
        except LedgerError:
            return None  # the item is no longer open: as any payment, from its payer
        return {"booked": "suspense", "suspense_item": item.pending_no,
                "said": f"from suspense item {item.pending_no}, which it returns"}

    done = late_results.act(gw, tx, payment, status, npc_date, now, source, reason,
                            booking=from_suspense)
    ret = outgoing_return(tx, payment)
    if done == "settled_after_end" and ret is not None:
        original = payments.get(tx, ret["original_id"])
        if original["state"] in ("suspense", "credited"):
            _original_returned(gw, tx, ret, now)
    return done


def _settle(gw: Any, tx: Any, payment: dict[str, Any], work_date: str, settled_on: str,
            now: datetime, source: str) -> None:
    event = f"{payment['id']}:{SETTLED}"
    ret = outgoing_return(tx, payment)
    if payment["hold_id"]:
        gw.ledger.settle(tx, f"{event}:settle", int(payment["hold_id"]), work_date)
    else:
        # A return of money in suspense holds nothing: the money leaves suspense for the
        # clearing account only now that the NPC has settled the return.
        assert ret is not None and ret["via"] == "suspense", \
            f"outgoing payment {payment['id']} has neither a hold nor a suspense item"
        original = payments.get(tx, ret["original_id"])
        gw.ledger.return_suspense(tx, f"{event}:return_suspense", original["pending_no"],
                                  work_date)
    payments.transition(tx, payment, "settled", f"{source}_settled", now, gw.notifier,
                        settled_on=settled_on)
    if ret is not None:
        _original_returned(gw, tx, ret, now)


def _original_returned(gw: Any, tx: Any, ret: dict[str, Any], now: datetime) -> None:
    schema.set_return_state(tx, ret["return_id"], "settled", now)
    original = payments.get(tx, ret["original_id"])
    payments.transition(tx, original, "returned", "returned_to_sender", now, gw.notifier,
                        reason=f"returned by {ret['return_id']}: {ret['reason']}",
                        return_id=ret["return_id"])
    screening.close_decided(tx, original, f"payment {original['id']} returned by "
                                          f"{ret['return_id']}", now)
    close_not_settled(tx, ret, now)


def close_not_settled(tx: Any, ret: dict[str, Any], now: datetime) -> list[int]:
    """Close, as the gateway, the open `return_not_settled` alerts of the payment our
    return `ret` (its row) returns, once that return has settled: the payment is
    returned after all, by this later return (or by this one, settled after we ended
    it), so nothing is left for operators to do. Their ids."""
    return critical.close_where(
        tx, ("return_not_settled",), "payment", ret["original_id"],
        f"payment {ret['original_id']} returned after all: return {ret['return_id']} "
        "settled", now)


def _end(gw: Any, tx: Any, payment: dict[str, Any], status: str, work_date: str,
         now: datetime, source: str, reason: str | None) -> str:
    new_state = NEVER_SETTLED[status]
    released = None
    if payment["hold_id"]:
        released = gw.ledger.release(tx, f"{payment['id']}:{status}:release",
                                     int(payment["hold_id"]), work_date)
    payments.transition(tx, payment, new_state, f"{source}_{new_state}", now, gw.notifier,
                        reason=reason or status, released_entry=released)
    return_ended(gw, tx, payment, status, reason, now)
    return new_state


def return_ended(gw: Any, tx: Any, payment: dict[str, Any], status: str,
                 reason: str | None, now: datetime) -> None:
    """When `payment` is one of our returns that ended unsettled: `return_failed`."""
    ret = outgoing_return(tx, payment)
    if ret is not None:
        return_failed(gw, tx, ret, status, reason, now)


def return_failed(gw: Any, tx: Any, ret: dict[str, Any], status: str, reason: str | None,
                  now: datetime, original: dict[str, Any] | None = None) -> None:
    """Our return `ret` (its row) ended unsettled, whichever way (the NPC's refusal, a
    rule refusing it before packing, a cancel, an operator's, its message discarded by
    the NPC or not buildable: Gateway.ended_unsettled): the return's record
    `failed`, `return_failed` in the original's history (the original, read here unless
    given, stays where it was) and the operators' alert `return_not_settled`, each
    once: a return no longer pending is left as it is.

    The original stays as it was, its reason too: the failure's reason is the event's
    (`reason_failed`), never the original's own, which says why it is where it is. A
    credit the screening parked keeps its screening reason, so it stays parked (held for
    review, out of the core system's and the automatic return's reach) for operators to
    decide again, whatever ended its return: the NPC's refusal, a review's fail, a cancel
    by operators or by the core system."""
    if ret["state"] != "pending":
        return
    schema.set_return_state(tx, ret["return_id"], "failed", now)
    original = original or payments.get(tx, ret["original_id"])
    payments.transition(tx, original, original["state"], "return_failed", now, gw.notifier,
                        return_id=ret["return_id"], status=status, reason_failed=reason)
    gw.alert(tx, "return_not_settled", payment=ret["original_id"], return_id=ret["return_id"],
             status=status, reason=reason)
