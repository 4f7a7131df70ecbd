"""Critical alerts: open until a supervisor acknowledges them.

Most alerts record something that happened and that the gateway has dealt with. Two say
that money moved at the NPC against what the gateway had decided (gateway.late_results):
`npc_settled_payment_we_ended` (the NPC settled a payment we had rejected or cancelled:
booked at once, but the payer may owe us now) and `npc_did_not_settle_payment_we_settled`
(the NPC's word contradicts a settlement of ours: nothing is moved on it). Each needs a
person to look at the books and act, so each stays open until a supervisor or director
acknowledges it (console action `alert_acknowledge`, recorded with who, when and the
note in `alert_acks` and in the audit trail). A third is of the same kind:
`debit_paid_after_end` (gateway.beps.debits_out), a debit of ours the core system was
told ended unpaid (given up by operators at its receipt deadline) that the payer bank
paid after all: the money is in suspense, and a person must settle with the core system
whether it goes to our customer or back to the payer. It closes by itself (the gateway
acknowledges it, close_by_gateway) once the item is applied or its return netted
(gateway.exceptions.debit_suspense). A fourth is not about money
moved but about money about to be refused: `hvps_status_notice_refused`
(gateway.status_hold), a ccms.801 the gateway refused, after which the gateway and the
NPC disagree on HVPS's status and HVPS sending is held until a person confirms the
status with the NPC or a later notice brings the two back in step (which closes it).
A fifth is about the screening: `screening_file_refused` (gateway.ops.screening_watch),
a change of the screening list file that cannot be read, the last good list screening
meanwhile; the gateway closes it once the file is read well again. A sixth,
`screening_list_emptied`, says a list with no name and no account replaced one that had
some while the gateway runs: screening is switched off until a supervisor acknowledges
it (an emptying meant) or a list with entries is in force again.

While one is open, /health says `attention` and counts the open ones by code, without
their detail: the route needs no credentials, so payments and amounts stay on the
console. `ok` is left to the machinery (link, Redis): a restart or another gateway cures
nothing here, and a monitor that restarts an instance that is not `ok` must not restart
this one for it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from gateway import dialect
from gateway.errors import Conflict, NotFound, Problem

CODES = ("npc_settled_payment_we_ended", "npc_did_not_settle_payment_we_settled",
         "debit_paid_after_end", "hvps_status_notice_refused", "screening_file_refused",
         "screening_list_emptied")
_IN = ", ".join(f"'{code}'" for code in CODES)

# The critical alerts' own index, which `_OPEN` (/health, `ops status`, the page) reads
# without touching the table: each alert's code, when it was raised, and its id, by which
# its acknowledgement is looked up. The planner takes a partial index only for a query
# naming the same codes, so the index's name carries a digest of its definition: a list
# of codes that grew makes an index of another name, and `install` drops the ones made
# with an earlier list (a CREATE INDEX IF NOT EXISTS of the same name would keep the old
# list, and the query would read the index of every alert's code instead).
INDEX_PREFIX = "alerts_critical"
_INDEXED = f"alerts (code, at, id) WHERE code IN ({_IN})"
INDEX = f"{INDEX_PREFIX}_{hashlib.sha256(_INDEXED.encode()).hexdigest()[:12]}"

TABLES = [
    f"CREATE INDEX IF NOT EXISTS {INDEX} ON {_INDEXED}",
    """CREATE TABLE IF NOT EXISTS alert_acks (
        alert_id INTEGER PRIMARY KEY,
        by TEXT NOT NULL, at TEXT NOT NULL, note TEXT NOT NULL
    )""",
]


def install(tx: Any) -> None:
    """Make the tables and the index above, dropping the critical alerts' indexes made
    with another definition (an earlier list of codes) by the gateway before."""
    for name in dialect.table_indexes(tx, "alerts"):
        if name.startswith(INDEX_PREFIX) and name != INDEX:
            tx.execute(f"DROP INDEX IF EXISTS {name}", ())
    dialect.install(tx, TABLES)


_OPEN = (f"SELECT a.code, COUNT(*), MIN(a.at) FROM alerts a WHERE a.code IN ({_IN}) AND "
         "NOT EXISTS (SELECT 1 FROM alert_acks k WHERE k.alert_id = a.id) GROUP BY a.code "
         "ORDER BY a.code")


def open_alerts(tx: Any) -> dict[str, Any]:
    """The critical alerts not yet acknowledged: how many, since when (the oldest), and
    how many of each code."""
    rows = tx.query(_OPEN, ())
    return {"open": sum(n for _, n, _ in rows), "since": min((at for *_, at in rows),
                                                             default=None),
            "codes": {code: n for code, n, _ in rows}}


def check_acknowledgeable(tx: Any, target: str) -> tuple[int, str]:
    """The alert `target` names (its id and code), when it is critical and still open;
    refused saying why otherwise."""
    row = tx.query_one("SELECT a.code, k.by, k.at FROM alerts a LEFT JOIN alert_acks k "
                       "ON k.alert_id = a.id WHERE a.id = ?", (int(target),))
    if row is None:
        raise not_found(target)
    code, by, at = row
    if code not in CODES:
        raise Conflict(Problem("alert_not_critical", "/target", code,
                               "a critical alert: " + ", ".join(CODES),
                               f"alert {target} ({code}) is not critical: an operator "
                               "closes it (alert_close)"))
    if by is not None:
        raise already_acknowledged(target, by, at)
    return int(target), code


def not_found(target: str) -> NotFound:
    return NotFound(Problem("alert_not_found", "/target", target,
                            "the id of an alert (`paygate ops alerts`)"))


def already_acknowledged(target: str, by: str, at: str) -> Conflict:
    return Conflict(Problem("alert_already_acknowledged", "/target", target,
                            "an alert not yet acknowledged or closed",
                            f"alert {target} was acknowledged by {by} at {at}"))


def acknowledge(tx: Any, target: str, by: str, note: str, now: datetime) -> dict[str, Any]:
    """Close the critical alert `target`: /health no longer counts it."""
    alert_id, code = check_acknowledgeable(tx, target)
    tx.execute("INSERT INTO alert_acks (alert_id, by, at, note) VALUES (?, ?, ?, ?)",
               (alert_id, by, now.isoformat(), note))
    return {"alert": alert_id, "code": code, "acknowledged_by": by}


GATEWAY = "gateway"  # who closed an alert whose cause the gateway found gone


def close_by_gateway(tx: Any, alert_ids: list[int], note: str, now: datetime) -> None:
    """The gateway closes alerts whose cause it found gone (gateway.ops.attention), each
    left as it is when someone closed it first."""
    tx.executemany("INSERT INTO alert_acks (alert_id, by, at, note) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (alert_id) DO NOTHING",
                   [(alert_id, GATEWAY, now.isoformat(), note) for alert_id in alert_ids])


def unclosed(tx: Any, codes: tuple[str, ...], containing: str = "", lock: bool = False
             ) -> list[tuple[int, dict]]:
    """The alerts of `codes` nobody (nor the gateway) has closed yet, each with its
    detail; with `containing`, only those whose detail's text holds it (a payment's or a
    query's id, read back by the caller from the detail itself). With `lock`
    (PostgreSQL), their rows are held until the transaction ends: another process
    deciding whether to close them waits, and what it reads next, in later statements,
    includes what this transaction committed."""
    rows = tx.query(f"SELECT a.id, a.detail FROM alerts a LEFT JOIN alert_acks k "
                    f"ON k.alert_id = a.id WHERE a.code IN ({', '.join('?' * len(codes))}) "
                    "AND k.alert_id IS NULL AND a.detail LIKE ? ORDER BY a.id"
                    + (" FOR UPDATE OF a" if lock and tx.dialect == "postgresql" else ""),
                    (*codes, f"%{containing}%"))
    return [(int(alert_id), json.loads(detail)) for alert_id, detail in rows]


def close_where(tx: Any, codes: tuple[str, ...], key: str, value: Any, note: str,
                now: datetime) -> list[int]:
    """Close, as the gateway, the open alerts of `codes` whose detail's `key` is `value`:
    their cause is gone (`note` says how). Their ids."""
    ids = [alert_id for alert_id, detail in unclosed(tx, codes, str(value))
           if detail.get(key) == value]
    if ids:
        close_by_gateway(tx, ids, note, now)
    return ids
