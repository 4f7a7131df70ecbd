"""The closing summary of `demo` and `simulate-day` (CONTRACT.md §8).

Counts come from the gateway's own records; `reconciled` comes from the comparison with
the central bank's records over the link (hvps.710/711) and from the agreement of our
clearing account in the ledger with the NPC's balance for us. The digests cover every
ledger entry and every message id on the wire, so two runs can be compared exactly.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway import payments


def _count(tx: Any, sql: str, params: tuple = ()) -> int:
    return tx.query_one(sql, params)[0]


def _ever(tx: Any, channel: str, direction: str, state: str) -> int:
    return payments.ever_count(tx, channel, direction, state)


def _now(tx: Any, channel: str, direction: str, state: str) -> int:
    return _count(tx, "SELECT COUNT(*) FROM payments WHERE channel = ? AND direction = ? "
                      "AND state = ?", (channel, direction, state))


def wire_digest(tx: Any) -> tuple[int, str]:
    rows = tx.query("SELECT direction, mesg_type, sender, mesg_id FROM archive ORDER BY id", ())
    h = hashlib.sha256()
    for row in rows:
        h.update(("|".join(row) + "\n").encode())
    return len(rows), "sha256:" + h.hexdigest()


def build(tx: Any, ledger: Any, work_date: str, reconciled: bool,
          alerts: list[dict[str, Any]] | None = None,
          extensions: list[Any] = ()) -> dict[str, Any]:
    trial = ledger.trial_balance(tx)
    messages, digest = wire_digest(tx)
    if alerts is None:
        alerts = [{"code": code, "detail": detail} for code, detail in tx.query(
            "SELECT code, detail FROM alerts WHERE code != 'window_changed' ORDER BY id", ())]
    out = {
        "work_date": work_date,
        "hvps": {
            "sent": _ever(tx, "hvps", "out", "sent"),
            "settled": _now(tx, "hvps", "out", "settled"),
            # Still queued at the NPC when the summary is made (at day end: none, once
            # the NPC cancelled what it held); those queued at some point of the day,
            # settled or cancelled since, apart.
            "queued": _now(tx, "hvps", "out", "queued"),
            "queued_at_some_point": _ever(tx, "hvps", "out", "queued"),
            "rejected": _now(tx, "hvps", "out", "rejected"),
            "cancelled": _now(tx, "hvps", "out", "cancelled"),
            "received": _count(tx, "SELECT COUNT(*) FROM payments WHERE channel = 'hvps' "
                                   "AND direction = 'in'"),
            "to_suspense": _ever(tx, "hvps", "in", "suspense"),
        },
        "beps": {
            "packages": 0, "sent": _ever(tx, "beps", "out", "sent"),
            "netted": _ever(tx, "beps", "out", "netted"),
            "settled": _now(tx, "beps", "out", "settled"),
            "rejected": _now(tx, "beps", "out", "rejected"),
            "received": _count(tx, "SELECT COUNT(*) FROM payments WHERE channel = 'beps' "
                                   "AND direction = 'in'"),
            "to_suspense": _ever(tx, "beps", "in", "suspense"),
        },
        "queries": {"sent": 0, "received": 0, "replied": 0, "overdue": 0},
        "ledger": {"balanced": bool(trial.balanced), "reconciled": reconciled,
                   "entries": ledger.entry_count(tx), "digest": ledger.digest(tx)},
        "wire": {"messages": messages, "digest": digest},
        "alerts": alerts,
    }
    for ext in extensions:
        if hasattr(ext, "summary"):
            out.update(ext.summary(tx))
    return out
