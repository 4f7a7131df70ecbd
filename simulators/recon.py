"""Reconciliation: hvps.710 from a bank is answered with an hvps.711 summary file.

The totals come from the simulator's own payment records for the checking date and the
asking participant (SPEC.md c, reconciliation):

- ChckPmtInfDtls, per (message type, business type) of the credits settled (PR04) that
  day: how many the participant sent and for how much, how many it received and for how
  much;
- ChckMsg, per (message type, business type, status) of the credits taken that day: how
  many messages the participant sent, and how many were forwarded to it.

`POST /sim/recon-skew` adds a count and an amount to the participant's sent side on
purpose, so that the gateway's reconciliation can be shown to list a difference.
"""

from __future__ import annotations

import logging

from gateway.messages import hvps710, hvps712
from gateway.messages.common import NpcProcessing, OriginalRef, Partition
from gateway.messages.envelope import Header
from simulators.logfmt import event
from simulators.notices import Notices
from simulators.store import SETTLED, Store

log = logging.getLogger("npc.recon")

DEFAULT_MT = "hvps.111.001.01"
DEFAULT_BUSINESS_TYPE = "A100"


def payment_totals(store: Store, participant: str,
                   day: str) -> list[hvps710.PaymentTotals]:
    rows = [hvps710.PaymentTotals(mt, tx_type, int(sc), int(sf), int(rc), int(rf), SETTLED)
            for mt, tx_type, sc, sf, rc, rf in store.payment_totals(participant, day)]
    count, amount_fen = store.skew(participant)
    if not count and not amount_fen:
        return rows
    if not rows:
        rows.append(hvps710.PaymentTotals(DEFAULT_MT, DEFAULT_BUSINESS_TYPE, 0, 0, 0, 0,
                                          SETTLED))
    first = rows[0]
    rows[0] = hvps710.PaymentTotals(first.mt, first.tx_type, first.sent_count + count,
                                    first.sent_fen + amount_fen, first.received_count,
                                    first.received_fen, first.status)
    return rows


def message_totals(store: Store, participant: str, day: str) -> list[hvps710.MessageTotals]:
    return [hvps710.MessageTotals(mt, tx_type, int(sent), int(received), status)
            for mt, tx_type, status, sent, received in store.message_totals(participant, day)]


def answer(store: Store, notices: Notices, header: Header,
           request: hvps710.ReconRequest) -> str:
    """Send the 711 for a 710; returns the 711's header MesgID."""
    participant = header.orig_sender
    payments = tuple(payment_totals(store, participant, request.check_date))
    messages = tuple(message_totals(store, participant, request.check_date))
    original = OriginalRef(msg_id=request.header.msg_id, instg_party=participant,
                           mt=header.mesg_type)
    mesg_id = notices.summary(participant, original, request.check_date, payments, messages)
    event(log, "summary_sent", participant=participant, check_date=request.check_date,
          payment_rows=len(payments), message_rows=len(messages), mesg_id=mesg_id)
    return mesg_id


def answer_details(store: Store, notices: Notices, header: Header,
                   request: hvps712.DetailRequest) -> str:
    """hvps.712 → hvps.713: the settled payments behind each asked-for total, one row per
    selector (message type, business type, sent SR00 or received SR01)."""
    participant = header.orig_sender
    rows = []
    for selector in request.rows:
        side = "sender" if selector.side == "SR00" else "receiver"
        found = store.conn.execute(
            f"SELECT msg_id, sender, mesg_type, amount_fen FROM payments WHERE status = ? "
            f"AND settled_on = ? AND mesg_type = ? AND business_type = ? AND {side} = ? "
            "ORDER BY id", (SETTLED, request.check_date, selector.mt, selector.tx_type,
                            participant)).fetchall()
        direction = "DBIT" if selector.side == "SR00" else "CRDT"
        messages = tuple(hvps712.CheckedMessage(OriginalRef(msg_id, sender, mt), amount_fen,
                                                direction)
                         for msg_id, sender, mt, amount_fen in found)
        rows.append(hvps712.DetailRows(selector, len(messages), messages))
    original = OriginalRef(msg_id=request.header.msg_id, instg_party=participant,
                           mt=header.mesg_type)
    mesg_id = notices.originate(
        participant, hvps712.RESPONSE_TYPE, "HVPS",
        lambda g: hvps712.build_response(hvps712.DetailResponse(
            header=g, partition=Partition(1, 1, 1), request=original,
            check_date=request.check_date, npc=NpcProcessing("PR04", "HV0I0000"),
            rows=tuple(rows), count=len(rows))))
    event(log, "details_sent", participant=participant, check_date=request.check_date,
          rows=len(rows), mesg_id=mesg_id)
    return mesg_id
