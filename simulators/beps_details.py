"""BEPS detail check at the simulated NPC: beps.722 → beps.723.

For each row the bank asks about (sent SR00 or received SR01, netting date, round and
message type), the NPC lists the netted packages behind its total: the package's
original group header, its transaction count and control sum. The bank compares them
with its own packages to name the one that makes a total differ.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.messages import beps722, codec
from gateway.messages.common import NpcProcessing, OriginalRef, Partition
from simulators.beps_store import NETTED
from simulators.logfmt import event

log = logging.getLogger("npc.beps_details")

REQUEST_TYPES = frozenset({beps722.MESSAGE_TYPE})


def answer(node: Any, decoded: codec.Decoded) -> str:
    header = decoded.header
    request: beps722.DetailCheckRequest = decoded.obj
    participant = header.orig_sender
    conn = node.store.conn
    details = []
    for row in request.payments:
        side = "payer" if row.side == "SR00" else "payee"
        found = conn.execute(
            f"SELECT msg_id, sender, mesg_type, count, amount_fen FROM beps_packages WHERE "
            f"status = ? AND netting_date = ? AND netting_round = ? AND mesg_type = ? AND "
            f"{side} = ? ORDER BY id", (NETTED, row.netting_date, row.netting_round, row.mt,
                                       participant)).fetchall()
        packages = tuple(beps722.PackageTotal(OriginalRef(msg_id, sender, mt), int(count),
                                              int(amount_fen))
                         for msg_id, sender, mt, count, amount_fen in found)
        details.append(beps722.PaymentDetails(row, packages))
    original = OriginalRef(request.header.msg_id, participant, beps722.MESSAGE_TYPE)
    mesg_id = node.notices.originate(
        participant, beps722.RESPONSE_TYPE, "BEPS",
        lambda g: beps722.build_response(beps722.DetailCheckResponse(
            header=g, partition=Partition(1, 1, 1), request=original,
            check_date=request.check_date, npc=NpcProcessing("PR03", "NEZI0000"),
            payments=tuple(details))))
    event(log, "detail_check_sent", participant=participant, rows=len(details),
          mesg_id=mesg_id)
    return "answered"
