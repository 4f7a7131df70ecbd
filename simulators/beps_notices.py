"""The messages the simulated NPC sends about BEPS, built with the shared codec.

- ccms.900 (system BEPS): PR03 netted with the round (NetgRnd) and the netting date
  (PrcDt), PR11 waiting for netting, PR09 rejected.
- The netted package (or debit receipt) forwarded to its receiver with NPCPrcInf filled
  in: PR03, NEZI0000, netting date and round, receive and forward times, and without
  the transactions its sender withdrew before netting (NbOfTxs and CtrlSum those of
  the rest, as the NPC netted it). Adding the
  block changes the body, and this product's signature covers the whole body
  (gateway/messages/signing.py), so the NPC sends the forwarded package as its own
  ("0000", signed by the NPC). A real NPC keeps the sender's signature, since CNAPS2
  signs selected business fields only; the package header still names the sender.
- saps.606: a round's net settled on a participant's clearing account.
- beps.721: a participant's BEPS totals of a netting date (answer to beps.720).
"""

from __future__ import annotations

from dataclasses import replace

from gateway.messages import (beps121, beps122, beps125, beps720, ccms900, codec, package,
                              saps606)
from gateway.messages import envelope as env_mod
from gateway.messages.common import NpcProcessing, OriginalRef
from simulators import codes
from simulators.notices import Notices, result_chain

NETTED = codes.Reason("NEZI0000", "netted")
# PR11 says only that the package waits for netting (SPEC.md: 已轧差排队); the processing
# code and RjctInf say which of the payer's two limits it would break (simulators.netting).
WAITING_CAP = codes.Reason("NEZQ0001", "waiting for netting: the sender's net debit cap "
                           "would be exceeded")
WAITING_BALANCE = codes.Reason("NEZQ0002", "waiting for netting: the sender's clearing "
                               "balance would not cover its net debit position")
RULE_BROKEN = codes.Reason("NEZB0004", "business rule broken")
RECEIVER_UNKNOWN = codes.Reason("NEZB0002", "the receiving participant is not known")
SENDER_NOT_INSTRUCTING = codes.Reason("NEZB0003", "the sender is not the package's "
                                      "instructing participant")
SETTLED = codes.Reason("NEZI0000", "settled")
# A round's settlement carries no business type of its own; the notice names the most
# common one, as the captured saps.606 does for a round of ordinary credits.
ROUND_TX_TYPE, ROUND_KIND = "A100", "02102"


# The package families the NPC forwards with its block added (package.with_npc).
_LAYOUTS = {m.LAYOUT.code: m.LAYOUT for m in (beps121, beps122, beps125)
            if m.LAYOUT.npc_block}


class BepsNotices(Notices):
    def result(self, dest: str, original: OriginalRef, status: str, reason: codes.Reason,
               processed_on: str, detail: str = "", system: str = "BEPS",
               netting_round: str | None = None) -> str:
        """ccms.900 about a BEPS package; only a refusal or a wait carries RjctInf."""
        reject = None if status == ccms900.NETTED else codes.reject_text(reason, detail)
        body = ccms900.build(ccms900.CommonConf(
            header=self._group_header(dest, system), original=original, status=status,
            code=reason.code, reject_info=reject, processed_on=processed_on,
            netting_round=netting_round))
        return self._send(dest, ccms900.MESSAGE_TYPE, system, body,
                          chain=result_chain(original))

    def forward_netted(self, dest: str, raw: bytes, npc: NpcProcessing,
                       withdrawn: frozenset[str] = frozenset()) -> str:
        """The package or receipt `raw`, with its NPCPrcInf and less the transactions
        `withdrawn` (TxIds), to its receiver."""
        if not withdrawn:
            # The block written into the package's own text when it is laid out as our
            # writer lays one out (package.with_npc): the bytes building it would give.
            envelope = env_mod.decode(raw)
            code = envelope.header.mesg_type
            layout = _LAYOUTS.get(code)
            body = package.with_npc(layout, envelope.body, npc) if layout else None
            if body is not None:
                return self._send(dest, code, "BEPS", body)
        # `raw` passed the schema and the checks when the NPC took it: parsed only.
        decoded = codec.reread(raw)
        code = decoded.mtype.code
        obj = package.without(decoded.obj, withdrawn) if withdrawn else decoded.obj
        body = codec.build_body(code, replace(obj, npc=npc))
        return self._send(dest, code, "BEPS", body)

    def booking(self, dest: str, original: OriginalRef, npc: NpcProcessing, net_fen: int,
                balance_fen: int, netting_round: str) -> str:
        """saps.606 for a participant's net of one round: + received, - paid."""
        body = saps606.build(saps606.Booking(
            header=self._group_header(dest, "SAPS"), original=original, npc=npc,
            tx_type=ROUND_TX_TYPE, kind=ROUND_KIND,
            direction="CRDT" if net_fen >= 0 else "DBIT", amount_fen=abs(net_fen),
            booking_id=f"{npc.netting_date or ''}{netting_round}".replace("-", ""),
            netting_round=netting_round, balance_fen=balance_fen))
        return self._send(dest, saps606.MESSAGE_TYPE, "SAPS", body)

    def total_check(self, dest: str, original: OriginalRef, check_date: str,
                    payments: tuple[beps720.RoundTotals, ...],
                    messages: tuple[beps720.MessageCounts, ...]) -> str:
        body = beps720.build_result(beps720.TotalCheck(
            header=self._group_header(dest, "BEPS"), original=original,
            check_date=check_date, payments=payments, messages=messages,
            payment_count=len(payments), message_count=len(messages)))
        return self._send(dest, beps720.RESPONSE_TYPE, "BEPS", body)
