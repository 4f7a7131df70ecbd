"""Reconciliation with the central bank's records (对账), over the link.

At day end the gateway asks the NPC for its totals (hvps.710) and compares the answer
(hvps.711) with its own records of the same date: outgoing payments the NPC settled
(PR04), and incoming payments it forwarded to us, per message type and business type,
by count and by sum. Every difference is listed; reconciled means there is none.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from gateway.messages.hvps710 import ReconSummary

SETTLED = "PR04"


def our_hvps_totals(tx: Any, check_date: str) -> dict[tuple[str, str], list[int]]:
    """(mt, business type) -> [sent count, sent fen, received count, received fen]."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    rows = tx.query("SELECT msg_type, business_type, COUNT(*), SUM(amount_fen) FROM payments "
                    "WHERE direction = 'out' AND channel = 'hvps' AND settled_on = ? "
                    "GROUP BY msg_type, business_type", (check_date,))
    for mt, kind, count, total in rows:
        totals[(mt, kind)][0:2] = [count, total]
    rows = tx.query("SELECT msg_type, business_type, COUNT(*), SUM(amount_fen) FROM payments "
                    "WHERE direction = 'in' AND channel = 'hvps' AND work_date = ? "
                    "GROUP BY msg_type, business_type", (check_date,))
    for mt, kind, count, total in rows:
        totals[(mt, kind)][2:4] = [count, total]
    return totals


def compare_hvps(tx: Any, summary: ReconSummary, now: datetime) -> dict[str, Any]:
    ours = our_hvps_totals(tx, summary.check_date)
    theirs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in summary.payments:
        if row.status == SETTLED:
            theirs[(row.mt, row.tx_type)] = [row.sent_count, row.sent_fen, row.received_count,
                                             row.received_fen]
    differences = []
    labels = ("sent_count", "sent_fen", "received_count", "received_fen")
    for key in sorted(set(ours) | set(theirs)):
        for i, label in enumerate(labels):
            if ours[key][i] != theirs[key][i]:
                differences.append({"mt": key[0], "business_type": key[1], "field": label,
                                    "ours": ours[key][i], "npc": theirs[key][i]})
    result = {"work_date": summary.check_date, "system": "HVPS",
              "reconciled": not differences, "differences": differences,
              "rows": {f"{k[0]}/{k[1]}": ours[k] for k in sorted(ours)}}
    tx.execute("INSERT INTO recon (work_date, system, at, reconciled, differences) "
               "VALUES (?, ?, ?, ?, ?)", (summary.check_date, "HVPS", now.isoformat(),
                                          int(not differences), json.dumps(differences)))
    return result
