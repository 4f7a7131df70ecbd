"""What the gateway does with each inbound message type.

Each handler runs inside the store transaction that marks the inbox row processed, and
returns what happened plus any work to do after the commit (such as releasing payments
that waited for the HVPS window). Handlers are idempotent: a result for a payment that
is already final changes nothing when it agrees with how the payment ended (a result
that does not, such as a settlement of a payment we had rejected, is booked and raised
by gateway.late_results), and every ledger posting carries an event id derived from the
message, so it can never be posted twice.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Callable

from gateway import intake, late_results, outbound, payments, recon, screening, status_hold
from gateway.inbound import Processed
from gateway.messages import ccms900, ccms911, codec, hvps112
from gateway.states import FINAL
from gateway.windows import (
    CHANGING_OUTCOMES,
    OUTCOME_PAST_DATE,
    REFUSED_OUTCOMES,
    SOURCE_NOTICE,
)
from gateway.workstate import log_after_commit

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.handlers")


def handler_before(gw: Any, ext: Any, mesg_type: str,
                   own: Callable[[], dict[str, Any]], found: dict[str, Any]) -> Any:
    """The handler of `mesg_type` as it was before extension `ext` was installed: the
    gateway's own (by type, as `own()` gives them) as the extensions installed earlier
    changed them. Kept in `found` (the extension's): the extensions are fixed once the
    gateway is made, and the table was built again for every result the extension passed
    on; `own` is called only when `found` does not know the type yet, since making its
    table (bound methods in a dict) for every message handed on costs as much as the
    look-up itself."""
    handler = found.get(mesg_type)
    if handler is None:
        table = dict(own())
        for earlier in gw.extensions:
            if earlier is ext:
                break
            table.update(getattr(earlier, "handlers", dict)())
        handler = found[mesg_type] = table[mesg_type]
    return handler


class Handlers:
    def __init__(self, gw: "Gateway") -> None:
        self.gw = gw

    def table(self) -> dict[str, Any]:
        table = self._base()
        for ext in self.gw.extensions:
            table.update(getattr(ext, "handlers", dict)())
        return table

    def _base(self) -> dict[str, Any]:
        return {
            "ccms.990.001.02": self.on_comm_ack,
            "ccms.900.001.02": self.on_result,
            "ccms.801.001.02": self.on_system_status,
            "ccms.911.001.02": self.on_discarded,
            "hvps.111.001.01": self.on_credit_in,
            hvps112.MESSAGE_TYPE: self.on_fi_credit_in,
            "hvps.711.001.01": self.on_recon_summary,
            "hvps.713.001.01": self.on_recon_details,
        }

    # Link-level

    def on_comm_ack(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        conf = d.obj
        updated = tx.execute("UPDATE outbox SET state = 'acked', updated_at = ? "
                             "WHERE mesg_id = ? AND state IN ('sending', 'sent')",
                             (now.isoformat(), conf.msg_id))
        if not conf.accepted:
            self.gw.alert(tx, "link_ack_refused", mesg_id=conf.msg_id, mt=conf.mt,
                          code=conf.code)
        outcome = {"acked": conf.msg_id, "rows": updated, "code": conf.code}
        if conf.accepted and (self.gw.link.discards or self.gw.link_share.discarding):
            # The NPC took a message of ours again: a discard episode (this process's,
            # the cluster's) may be over.
            return Processed(outcome, [lambda: self.gw.link.acknowledged(conf.msg_id)])
        return Processed(outcome)

    def on_discarded(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        """A ccms.911: the NPC threw a message of ours away unprocessed (a signature or
        format check failed), so nothing more will come about it. It names the message
        by its header's MesgID. A payment's message discarded ends the payment:
        `rejected` with the NPC's code and reason, its hold released (sending the same
        bytes again would be discarded again; a return of ours is reported as any return
        ending unsettled, Gateway.ended_unsettled). Anything else discarded (a package, a
        query) is for operators (alert `message_discarded_by_npc`, raised in every
        case). Once committed, the discard is counted into the link's state
        (gateway.link: `degraded` until the NPC acknowledges a message of ours again)."""
        notice: ccms911.Discarded = d.obj
        reason = f"discarded by the NPC: {notice.code}" + (
            f" {notice.reject_info}" if notice.reject_info else "")
        self.gw.alert(tx, "message_discarded_by_npc", mesg_id=notice.msg_id, mt=notice.mt,
                      npc_code=notice.code, reason=notice.reject_info or "")
        counted = [lambda: self.gw.link.discarded(notice.msg_id, notice.mt, notice.code,
                                                  notice.reject_info or "")]
        row = tx.query_one("SELECT id, payment_id FROM outbox WHERE mesg_id = ? AND "
                           "mesg_type = ? AND kind = 'hvps_credit'",
                           (notice.msg_id, notice.mt))
        if row is None or row[1] is None:
            return Processed({"discarded": notice.msg_id, "mt": notice.mt}, counted)
        tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE id = ?",
                   (now.isoformat(), row[0]))
        payment = payments.get(tx, row[1])
        if payment["state"] in FINAL:
            log_after_commit(log, logging.INFO, [(
                f"event=late_discard payment={payment['id']} state={payment['state']} "
                f"npc_code={notice.code}")])
            return Processed({"payment": payment["id"], "ignored": "discarded"}, counted)
        if payment["hold_id"]:
            self.gw.ledger.release(tx, f"{payment['id']}:discarded:release",
                                   int(payment["hold_id"]), self.gw.work_date.isoformat())
        payment = payments.transition(tx, payment, "rejected", "discarded_by_npc", now,
                                      self.gw.notifier, reason=reason[:200],
                                      npc_code=notice.code)
        self.gw.ended_unsettled(tx, payment, "discarded_by_npc", reason[:200], now)
        return Processed({"payment": payment["id"], "discarded": notice.msg_id}, counted)

    # HVPS results

    def on_result(self, tx: Any, d: codec.Decoded, now: datetime,
                  found: tuple[dict[str, Any] | None] | None = None) -> Processed:
        """`found`: the payment the result is about (or None), when an extension that
        handled the result first has read it in this work already."""
        conf: ccms900.CommonConf = d.obj
        payment = payments.find_out_by_msg_id(tx, conf.original.msg_id) \
            if found is None else found[0]
        if payment is None:
            # A result about something other than a payment (a query, a free-format
            # message, a BEPS package): the extension that sent it may claim it.
            for ext in self.gw.extensions:
                claimed = getattr(ext, "claim_result", lambda *a: None)(tx, d, now)
                if claimed is not None:
                    return claimed
            self.gw.alert(tx, "result_for_unknown_payment", msg_id=conf.original.msg_id,
                          mt=conf.original.mt, status=conf.status)
            return Processed({"unknown_payment": conf.original.msg_id})
        if payment["state"] in FINAL:
            # A repeat changes nothing; a word that differs from how the payment ended
            # here (settled at the NPC after we rejected it, say) is booked or raised.
            done = late_results.act(self.gw, tx, payment, conf.status, conf.processed_on,
                                    now, "hvps", conf.reject_info or conf.code)
            return Processed({"payment": payment["id"], "late": conf.status, "done": done})
        tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE payment_id = ? "
                   "AND kind = 'hvps_credit'", (now.isoformat(), payment["id"]))
        # Postings go on the bank's current accounting date; the NPC's processing date is
        # what reconciliation compares (settled_on).
        work_date = self.gw.work_date.isoformat()
        npc_date = conf.processed_on or work_date
        event = f"{payment['id']}:{conf.status}"
        note = self.gw.notifier
        if conf.status == ccms900.SETTLED:
            self.gw.ledger.settle(tx, f"{event}:settle", int(payment["hold_id"]), work_date)
            payments.transition(tx, payment, "settled", "hvps_settled", now, note,
                                settled_on=npc_date)
        elif conf.status == ccms900.QUEUED:
            if payment["state"] != "queued":
                payments.transition(tx, payment, "queued", "hvps_queued_at_npc", now, note,
                                    reason=conf.reject_info or conf.code or conf.status,
                                    npc_code=conf.code)
        elif conf.status in (ccms900.REJECTED, ccms900.CANCELLED):
            self.gw.ledger.release(tx, f"{event}:release", int(payment["hold_id"]), work_date)
            new_state = "rejected" if conf.status == ccms900.REJECTED else "cancelled"
            payments.transition(tx, payment, new_state, f"hvps_{new_state}", now, note,
                                reason=conf.reject_info or conf.code or conf.status)
        else:
            self.gw.alert(tx, "result_status_not_handled", payment=payment["id"],
                          status=conf.status)
        return Processed({"payment": payment["id"], "status": conf.status})

    # HVPS inbound credit

    def on_credit_in(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        """An hvps.111 (a customer credit transfer, pacs.008) another bank sent us."""
        ct = d.obj
        return self._credit_in(tx, d, now, {
            "payer_account": ct.debtor_account, "payer_name": ct.debtor_name,
            "payer_bank": ct.debtor_agent, "payee_account": ct.creditor_account,
            "payee_name": ct.creditor_name, "payee_bank": ct.creditor_agent})

    def on_fi_credit_in(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        """An hvps.112 (an institution credit transfer, pacs.009) another bank sent us.
        Like an hvps.111 it comes only after the NPC settled it (CONTRACT.md §4): the
        money is in our clearing account already, and is booked, screened and
        acknowledged as an hvps.111 is (docs/messages.md, "Incoming hvps.112"). Its
        parties are institutions; read as our own hvps.112 names them
        (outbound.institution_transfer_of): each side's account, the institution's
        name, and the bank holding the account (the agent's member code, else the
        institution's, else the instructing or instructed branch)."""
        t: hvps112.InstitutionTransfer = d.obj
        payer_name, payee_name = self._named(t.debtor), self._named(t.creditor)
        # An institution named by its member code alone, one the directory does not know
        # either, cannot be screened: its money waits in suspense for operators.
        unnamed = ("payer" if not payer_name else "payee" if not payee_name else None)
        # The member code is the institution's identity, its Nm free text the sender
        # writes: the directory's name for the code is screened besides the message's.
        listed = self._listed_by_code(t.debtor, "payer") or \
            self._listed_by_code(t.creditor, "payee")
        # The debtor institution's own code, kept apart from the bank holding its
        # account: our return of this money names it as its creditor.
        route = {outbound.PAYER_INSTITUTION: t.debtor.member} if t.debtor.member else {}
        return self._credit_in(tx, d, now, {
            "payer_account": t.debtor_account or "", "payer_name": payer_name,
            "payer_bank": _bank_of(t.debtor_agent, t.debtor, t.instg_branch),
            "payee_account": t.creditor_account or "", "payee_name": payee_name,
            "payee_bank": _bank_of(t.creditor_agent, t.creditor, t.instd_branch)},
            unscreened=f"{UNNAMED_PREFIX}{unnamed}" if unnamed is not None else listed,
            route=route)

    def _named(self, party: hvps112.Institution) -> str:
        """The name an hvps.112's institution is screened and kept under: the one the
        message gives, else the one the CNAPS directory in force gives its member code
        (pacs.009 may name an institution by its code alone), else '' (unknown)."""
        if party.name:
            return party.name
        listed = (self.gw.router.directory.find(party.member, self.gw.work_date)
                  if party.member else None)
        return listed.name if listed is not None else ""

    def _listed_by_code(self, party: hvps112.Institution, side: str) -> str | None:
        """The screening's reason to park an hvps.112 whose institution (`side`, payer
        or payee) the message names under its own Nm while the directory's name for its
        member code is listed (`screening_match_<side>_directory_name`), else None. An
        institution named by its code alone is screened under the directory's name
        already (`_named`)."""
        if not party.name or not party.member:
            return None
        known = self.gw.router.directory.find(party.member, self.gw.work_date)
        if known is None or not known.name or known.name == party.name:
            return None
        if not screening.hits(self.gw, side, "", known.name):
            return None
        return f"{screening.SCREENING_PREFIX}{side}_directory_name"

    def _credit_in(self, tx: Any, d: codec.Decoded, now: datetime,
                   parties: dict[str, str], unscreened: str | None = None,
                   route: dict[str, str] | None = None) -> Processed:
        """Book an HVPS credit another bank sent us (`parties`: its payer's and payee's
        account, name and bank, as the message's type names them): credited to the
        payee, or parked in suspense (the ledger's reason, or the screening's; or
        `unscreened`, the screening's reason for a party it could not read, or whose
        directory name it matched, when the row's names are clear; `route` what
        the row keeps of its message besides its parties)."""
        ct = d.obj
        h = d.header
        work_date = self.gw.work_date.isoformat()
        pid = f"I{h.orig_sender}{h.mesg_id}"
        row = {
            "id": pid, "direction": "in", "channel": "hvps", "state": "received",
            "msg_type": d.mtype.code, "msg_id": ct.msg_id, "tx_id": ct.tx_id,
            "end_to_end_id": ct.end_to_end_id, "sender_direct": ct.instg_direct,
            "receiver_direct": ct.instd_direct, "amount_fen": ct.amount_fen,
            "currency": ct.currency, **parties, "business_type": ct.business_type,
            "business_kind": ct.business_kind or "", "urgency": _urgency(ct.priority),
            "priority": {"URGT": 1, "HIGH": 2}.get(ct.priority, 3),
            "remittance": list(ct.remittance), "route": route or {}, "work_date": work_date,
            "created_at": now.isoformat(), "updated_at": now.isoformat(),
        }
        if payments.find_by_message(tx, "in", ct.instg_direct, d.mtype.code, ct.msg_id):
            # The same payment under another header message id: credited once only.
            self.gw.alert(tx, "duplicate_incoming_payment", sender=ct.instg_direct,
                          msg_id=ct.msg_id)
            return Processed({"duplicate_of": ct.msg_id})
        payments.insert(tx, row)
        # Checked as an internal transfer's payee is (intake.payee_problems), but not
        # refused: the money has moved already, so what fails goes to suspense. A party
        # the screening matches parks it there too, for operators to decide; the NPC's
        # settlement stands either way (the ccms.990 says only that we received it).
        held_for = screening.parked(self.gw, [row]).get(pid) or unscreened
        result = self.gw.ledger.credit_incoming(
            tx, f"{pid}:credit", row["payee_account"], row["payee_name"], ct.amount_fen,
            work_date, pid,
            other_branch=intake.kept_elsewhere(row["payee_bank"], self.gw.account_bank),
            parked=held_for)
        if result.kind == "credited":
            payments.transition(tx, row, "credited", "hvps_credited", now, self.gw.notifier,
                                account=result.account_no)
        else:
            row = payments.transition(tx, row, "suspense", "hvps_to_suspense", now,
                                      self.gw.notifier, pending_no=result.pending_no,
                                      reason=result.reason)
            if held_for is not None:
                screening.tell_held(self.gw, tx, [row])
        return Processed({"payment": pid, "credit": result.kind})

    # System status and reconciliation

    def on_system_status(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        """A ccms.801. Only a change is recorded as `window_changed`: a notice announcing
        the state in force (orig = cur, or the same notice again) is kept in the inbox and
        the window's history, and raises nothing."""
        s = d.obj
        system = d.obj.header.system or "HVPS"
        if system != "HVPS":
            if (s.orig_status, s.orig_date) != (s.cur_status, s.cur_date):
                self.gw.windows_record(tx, system, s.orig_status, s.cur_status, s.cur_date,
                                       now, SOURCE_NOTICE)
            return Processed({"system": system, "status": s.cur_status, "date": s.cur_date})
        window = self.gw.window
        before = window.code
        held = status_hold.read(tx)
        outcome = window.apply_notice(
            s.orig_status, s.cur_status, s.cur_date, now, s.orig_date,
            moved_on_by_notice=self.gw.hvps_moved_on_by_notice(tx, str(s.cur_date)),
            refused_status=None if held is None else held["cur"])
        if outcome == OUTCOME_PAST_DATE:
            # Sent before a cut-over the gateway has gone through: kept (the inbox, the
            # window's history), logged, applied never; no hold, no peer told.
            log.warning("event=hvps_status_notice_past_work_date orig=%s cur=%s "
                        "notice_work_date=%s status_in_force=%s work_date=%s",
                        s.orig_status, s.cur_status, s.cur_date, window.code,
                        window.work_date.isoformat())
            return Processed({"system": system, "status": s.cur_status,
                              "date": s.cur_date, "outcome": outcome})
        if outcome in CHANGING_OUTCOMES:
            self.gw.windows_record(tx, system, before, s.cur_status, s.cur_date, now,
                                   SOURCE_NOTICE)
        after: list[Any] = []
        if outcome in REFUSED_OUTCOMES:
            # The gateway and the NPC now disagree on HVPS's status: a critical alert,
            # and HVPS sending held in every process until they agree again
            # (gateway.status_hold).
            hold = status_hold.begin(tx, s.orig_status, s.cur_status, s.cur_date, outcome,
                                     window.code, window.work_date, now)
            self.gw.alert(tx, status_hold.ALERT, orig=s.orig_status,
                          cur=s.cur_status, date=s.cur_date, outcome=outcome)
            after.append(lambda: self.gw.hold_hvps(hold))
        else:
            if outcome == "gap":
                self.gw.alert(tx, "hvps_status_notice_missed", orig=s.orig_status,
                              cur=s.cur_status, date=s.cur_date)
            how = f"ccms.801 {s.orig_status} to {s.cur_status} on {s.cur_date} {outcome}"
            if status_hold.end(tx, how, now) is not None:
                after.append(lambda: self.gw.release_hvps(how))
            if not window.accepts_customer_payments:
                # HVPS closed by the notice (or still closed): the payments left on the
                # lanes follow the window in the notice's own work, before any sender
                # could take one on to an NPC that would reject it.
                status_hold.follow_closed_window(self.gw, tx, now)
        code, day = window.code, window.work_date
        # The NPC's own word on the date it is on, unless the notice was refused.
        stated = None if outcome in REFUSED_OUTCOMES else date.fromisoformat(str(s.cur_date))
        return Processed({"system": system, "status": s.cur_status, "date": s.cur_date,
                          "outcome": outcome},
                         [*after, lambda: self.gw.apply_hvps_status(code, day, stated),
                          lambda: self.gw.cluster.publish(
                              "hvps_status", orig=s.orig_status, cur=s.cur_status,
                              date=str(s.cur_date), at=now.isoformat())])

    def on_recon_details(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        result = recon.compare_details(tx, d.obj, now)
        if result["differences"]:
            self.gw.alert(tx, "reconciliation_item_differences", work_date=result["work_date"],
                          items=result["differences"][:50])
        return Processed({"details": len(d.obj.rows), "items": len(result["differences"])},
                         [lambda: recon.keep_day(self.gw.recon_details, result["work_date"],
                                                 result)])

    def on_recon_summary(self, tx: Any, d: codec.Decoded, now: datetime) -> Processed:
        result = recon.compare_hvps(tx, d.obj, now)
        after = [lambda: self.gw.recon_done(result),
                 lambda: self.gw.cluster.publish("hvps_recon", result=result)]
        selectors = recon.detail_selectors(result)
        if selectors:
            after.append(lambda: self.gw.spawn(self.gw.request_hvps_details(
                d.obj.check_date, selectors)))
        return Processed({"reconciled": result["reconciled"],
                          "differences": len(result["differences"])}, after)


# The screening's reason parking an hvps.112 whose payer or payee institution has no
# name, in the message or in the directory for its member code: `..._payer`, `..._payee`.
UNNAMED_PREFIX = "screening_unnamed_"


def _bank_of(agent: hvps112.Institution | None, party: hvps112.Institution,
             branch: str) -> str:
    """The bank holding a party's account in an hvps.112: its agent's member code, else
    the institution's own, else the branch of the clearing bank the message names."""
    return (agent.member if agent is not None else None) or party.member or branch


def _urgency(priority: str) -> str:
    return {"URGT": "extra_urgent", "HIGH": "urgent"}.get(priority, "normal")
