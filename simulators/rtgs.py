"""Real-time gross settlement of HVPS credits and the central queue (DOMAIN.md §1, §7).

A credit settles at once when the payer's clearing account covers it: the payer is
debited, the payee credited, the payer gets ccms.900 PR04 and the payee the payer's own
message. Otherwise it waits in the central queue (PR12). The queue releases a payer's
items while the balance covers them, extra-urgent (URGT) before urgent (HIGH) before
normal (NORM), first come first within a priority; it stops at the first item the
balance does not cover, so a large urgent payment is never overtaken by smaller later
ones. A new payment does not overtake queued items of the same payer with the same or a
higher priority either. Whatever is still queued when the clearing window closes
(status 30 -> 40) is cancelled with PR08.

Settlement happens in phases 10 (daytime) and 30 (clearing window); new customer
payments are taken only in phase 10.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.clock import Clock
from gateway.errors import PaygateError, Problem
from gateway.messages.common import OriginalRef
from simulators import codes
from simulators.logfmt import event
from simulators.notices import Notices
from simulators.store import CANCELLED, QUEUED, REJECTED, SETTLED, PaymentRow, Store

log = logging.getLogger("npc.rtgs")

PRIORITY_RANKS = {"URGT": 0, "HIGH": 1, "NORM": 2}
ACCEPTING_PHASES = frozenset({"10"})
SETTLING_PHASES = frozenset({"10", "30"})


class Payment(NamedTuple):
    """What the NPC needs of an HVPS credit (hvps.111 or hvps.112)."""

    sender: str          # the header's OrigSender
    payer_bank: str      # InstgAgt: the payer's clearing bank
    receiver: str        # InstdAgt: the payee's clearing bank
    mesg_type: str
    mesg_id: str         # the header's MesgID
    msg_id: str          # GrpHdr/MsgId
    end_to_end_id: str
    tx_id: str
    business_type: str
    priority: str
    amount_fen: int


class Rtgs:
    def __init__(self, store: Store, notices: Notices, clock: Clock,
                 participants: frozenset[str], phase: Callable[[], tuple[str, str]]) -> None:
        self.store = store
        self.notices = notices
        self.clock = clock
        self.participants = participants
        self.phase = phase  # () -> (status, work date)

    def submit(self, p: Payment, raw: bytes) -> str:
        """Take one credit; returns the status it got (PR04, PR12 or PR09)."""
        status, work_date = self.phase()
        if status not in ACCEPTING_PHASES:
            return self.reject(p, raw, codes.OUTSIDE_HOURS, f"HVPS status {status}")
        if p.receiver not in self.participants:
            return self.reject(p, raw, codes.RECEIVER_UNKNOWN, p.receiver)
        if p.sender != p.payer_bank:
            return self.reject(p, raw, codes.SENDER_NOT_PAYER, p.payer_bank)
        rank = PRIORITY_RANKS.get(p.priority, PRIORITY_RANKS["NORM"])
        if self._may_settle_now(p.sender, p.amount_fen, rank):
            # Recorded settled at once: one row written, not queued and then settled.
            row = self._record(p, raw, SETTLED, work_date)
            self._pay(row, work_date)
            self._release([row.receiver], work_date)
            return SETTLED
        row = self._record(p, raw, QUEUED, work_date)
        self.notices.result(p.sender, _original(row), QUEUED, codes.QUEUED, work_date)
        event(log, "queued", sender=p.sender, receiver=p.receiver, mesg_id=p.mesg_id,
              tx_id=p.tx_id, priority=p.priority, amount_fen=p.amount_fen,
              balance_fen=self.store.balance(p.sender))
        return QUEUED

    def reject(self, p: Payment, raw: bytes, reason: codes.Reason, detail: str = "") -> str:
        """Refuse a credit with ccms.900 PR09; it is recorded for reconciliation."""
        _, work_date = self.phase()
        row = self._record(p, raw, REJECTED, work_date)
        self.store.add("rejected")
        self.notices.result(p.sender, _original(row), REJECTED, reason, work_date, detail)
        event(log, "rejected", sender=p.sender, mesg_id=p.mesg_id, tx_id=p.tx_id,
              reason=reason.code, detail=detail)
        return REJECTED

    def fund(self, participant: str, amount_fen: int) -> int:
        """Move money into (or out of) a clearing account and release what it covers."""
        if participant not in self.participants:
            raise PaygateError(Problem("participant_unknown", "/participant", participant,
                                       "a configured participant"), status=404)
        if self.store.balance(participant) + amount_fen < 0:
            raise PaygateError(Problem(
                "balance_must_not_go_below_zero", "/amount_fen", amount_fen,
                f"at least -{self.store.balance(participant)}"), status=422)
        balance_fen = self.store.move(participant, amount_fen)
        event(log, "funded", participant=participant, amount_fen=amount_fen,
              balance_fen=balance_fen)
        status, work_date = self.phase()
        if status in SETTLING_PHASES:
            self._release([participant], work_date)
        return self.store.balance(participant)

    def release_all(self) -> None:
        """Try every payer with queued credits, as when settlement opens again."""
        _, work_date = self.phase()
        self._release(sorted({row.sender for row in self.store.queued()}), work_date)

    def release_payer(self, payer: str) -> None:
        """Settle what the payer's balance now covers (after a cancellation, say)."""
        status, work_date = self.phase()
        if status in SETTLING_PHASES:
            self._release([payer], work_date)

    def cancel_queue(self) -> int:
        """End of the clearing window: every queued credit is cancelled with PR08."""
        _, work_date = self.phase()
        rows = self.store.queued()
        for row in rows:
            self.store.set_status(row.id, CANCELLED)
            self.notices.result(row.sender, _original(row), CANCELLED,
                                codes.CANCELLED_AT_DAY_END, work_date)
            event(log, "cancelled", sender=row.sender, tx_id=row.tx_id,
                  amount_fen=row.amount_fen)
        return len(rows)

    def _record(self, p: Payment, raw: bytes, status: str, work_date: str) -> PaymentRow:
        """Record a credit taken (settled on `work_date` when `status` says so); the row
        as stored."""
        now = self.clock.now().isoformat()
        settled_on = work_date if status == SETTLED else None
        values: dict[str, Any] = {
            "sender": p.sender, "receiver": p.receiver, "mesg_type": p.mesg_type,
            "mesg_id": p.mesg_id, "msg_id": p.msg_id, "end_to_end_id": p.end_to_end_id,
            "tx_id": p.tx_id, "business_type": p.business_type,
            "priority_rank": PRIORITY_RANKS.get(p.priority, PRIORITY_RANKS["NORM"]),
            "amount_fen": p.amount_fen, "status": status, "received_on": work_date,
            "settled_on": settled_on, "received_at": now,
            "settled_at": now if settled_on else None, "raw": raw}
        payment_id = self.store.insert_payment(values)
        del values["received_at"], values["settled_at"]
        return PaymentRow(id=payment_id, **values)

    def _may_settle_now(self, payer: str, amount_fen: int, rank: int) -> bool:
        """A new credit settles at once when the payer's balance covers it and no queued
        credit of the payer with the same or a higher priority waits."""
        if self.store.balance(payer) < amount_fen:
            return False
        return not self.store.queued_ahead(payer, rank)

    def _settle(self, row: PaymentRow, work_date: str) -> None:
        """Settle a credit recorded queued."""
        self.store.set_status(row.id, SETTLED, work_date, self.clock.now().isoformat())
        self._pay(row, work_date)

    def _pay(self, row: PaymentRow, work_date: str) -> None:
        """Move the money of a credit recorded settled and tell both banks."""
        self.store.move(row.sender, -row.amount_fen)
        self.store.move(row.receiver, row.amount_fen)
        self.notices.result(row.sender, _original(row), SETTLED, codes.SETTLED, work_date)
        self.notices.forward(row.receiver, row.raw, (row.mesg_type, row.mesg_id))
        event(log, "settled", sender=row.sender, receiver=row.receiver,
              mesg_id=row.mesg_id, tx_id=row.tx_id, end_to_end_id=row.end_to_end_id,
              amount_fen=row.amount_fen)

    def _release(self, participants: list[str], work_date: str) -> None:
        """Settle queued items of these payers while they are covered; money that reaches
        a payee may release the payee's own queue in turn."""
        todo = list(participants)
        while todo:
            payer = todo.pop(0)
            for row in self.store.queued(payer):
                if self.store.balance(payer) < row.amount_fen:
                    break
                self._settle(row, work_date)
                todo.append(row.receiver)


def _original(row: PaymentRow) -> OriginalRef:
    return OriginalRef(msg_id=row.msg_id, instg_party=row.sender, mt=row.mesg_type)
