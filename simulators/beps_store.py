"""The simulated NPC's BEPS records, in its SQLite file beside the HVPS ones.

- `beps_packages`: every BEPS package and debit receipt taken, with who pays whom in
  netting (`payer`, `payee`) and for how much: a credit package's control sum, a
  receipt's paid sum; a debit package (beps.127) is only forwarded and nets nothing.
  The totals are kept per package when it is taken (running totals), so a netting round
  reads one row per package, never one per transaction.
- `beps_txs`: the transactions of each package (for the record and for the bench).
- `beps_rounds` and `beps_positions`: each netting round and every participant's debit
  and credit in it; a round's settlement date once settled.
- `beps_caps`: net debit caps (净借记限额) set through the control API.
- `beps_tx_cancels`: transactions their sender withdrew (ccms.307) before their package
  was netted. Their amounts left the package's count and sum at that moment, so netting,
  forwarding and reconciliation never count them; a package left empty is PR08.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS beps_packages (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL, receiver TEXT NOT NULL,
    payer TEXT NOT NULL, payee TEXT NOT NULL,
    mesg_type TEXT NOT NULL, mesg_id TEXT NOT NULL, msg_id TEXT NOT NULL,
    count INTEGER NOT NULL, amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
    status TEXT NOT NULL, told_waiting INTEGER NOT NULL DEFAULT 0,
    netting_date TEXT, netting_round TEXT,
    received_on TEXT NOT NULL, received_at TEXT NOT NULL, raw BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS beps_packages_status ON beps_packages (status, id);
CREATE INDEX IF NOT EXISTS beps_packages_round ON beps_packages (netting_date, netting_round);
CREATE TABLE IF NOT EXISTS beps_txs (
    package_id INTEGER NOT NULL, tx_id TEXT NOT NULL, amount_fen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS beps_rounds (
    netting_date TEXT NOT NULL, netting_round TEXT NOT NULL, netted_at TEXT NOT NULL,
    settled_on TEXT, settled_at TEXT, PRIMARY KEY (netting_date, netting_round));
CREATE TABLE IF NOT EXISTS beps_positions (
    netting_date TEXT NOT NULL, netting_round TEXT NOT NULL, participant TEXT NOT NULL,
    debit_fen INTEGER NOT NULL, credit_fen INTEGER NOT NULL,
    PRIMARY KEY (netting_date, netting_round, participant));
CREATE TABLE IF NOT EXISTS beps_caps (participant TEXT PRIMARY KEY, cap_fen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS beps_tx_cancels (
    package_id INTEGER NOT NULL, tx_id TEXT NOT NULL, amount_fen INTEGER NOT NULL,
    cancelled_at TEXT NOT NULL, PRIMARY KEY (package_id, tx_id));
"""

# Package statuses (SPEC.md d.2): waiting for a round (PR11 once told so), netted,
# rejected, forwarded (a debit package, which nets nothing itself), and cancelled (every
# transaction withdrawn before netting).
WAITING, NETTED, REJECTED, FORWARDED, CANCELLED = "waiting", "PR03", "PR09", "PR00", "PR08"


@dataclass(frozen=True)
class PackageRow:
    id: int
    sender: str
    receiver: str
    payer: str
    payee: str
    mesg_type: str
    mesg_id: str
    msg_id: str
    count: int
    amount_fen: int
    status: str
    netting_date: str | None
    netting_round: str | None
    raw: bytes


_COLUMNS = ("id, sender, receiver, payer, payee, mesg_type, mesg_id, msg_id, count, "
            "amount_fen, status, netting_date, netting_round, raw")


def install(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def add_package(conn: sqlite3.Connection, values: dict[str, object],
                txs: list[tuple[str, int]]) -> int:
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    cur = conn.execute(f"INSERT INTO beps_packages ({names}) VALUES ({marks})",
                       tuple(values.values()))
    package_id = int(cur.lastrowid)
    conn.executemany("INSERT INTO beps_txs (package_id, tx_id, amount_fen) VALUES (?, ?, ?)",
                     [(package_id, tx_id, fen) for tx_id, fen in txs])
    return package_id


def package(conn: sqlite3.Connection, package_id: int) -> PackageRow:
    row = conn.execute(f"SELECT {_COLUMNS} FROM beps_packages WHERE id = ?",
                       (package_id,)).fetchone()
    assert row is not None, f"BEPS package {package_id} exists"
    return PackageRow(*row)


def find(conn: sqlite3.Connection, sender: str, msg_id: str, mesg_type: str) -> int | None:
    row = conn.execute("SELECT id FROM beps_packages WHERE sender = ? AND msg_id = ? AND "
                       "mesg_type = ?", (sender, msg_id, mesg_type)).fetchone()
    return int(row[0]) if row else None


def transaction(conn: sqlite3.Connection, package_id: int, tx_id: str) -> int | None:
    """The amount of a transaction of the package, or None when it has none by that id."""
    row = conn.execute("SELECT amount_fen FROM beps_txs WHERE package_id = ? AND tx_id = ?",
                       (package_id, tx_id)).fetchone()
    return int(row[0]) if row else None


def cancelled_txs(conn: sqlite3.Connection, package_id: int) -> frozenset[str]:
    rows = conn.execute("SELECT tx_id FROM beps_tx_cancels WHERE package_id = ?",
                        (package_id,))
    return frozenset(tx_id for (tx_id,) in rows)


def withdrawn_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM beps_tx_cancels").fetchone()[0])


def cancel_tx(conn: sqlite3.Connection, package_id: int, tx_id: str, amount_fen: int,
              at: str) -> int:
    """Take a transaction out of a waiting package's count and sum; how many are left.
    A package left with none is cancelled (PR08): there is nothing of it to net."""
    conn.execute("INSERT INTO beps_tx_cancels (package_id, tx_id, amount_fen, cancelled_at) "
                 "VALUES (?, ?, ?, ?)", (package_id, tx_id, amount_fen, at))
    updated = conn.execute(
        "UPDATE beps_packages SET count = count - 1, amount_fen = amount_fen - ?, "
        "status = CASE WHEN count = 1 THEN ? ELSE status END WHERE id = ? AND status = ?",
        (amount_fen, CANCELLED, package_id, WAITING)).rowcount
    assert updated == 1, f"package {package_id} was waiting for netting"
    left = conn.execute("SELECT count FROM beps_packages WHERE id = ?",
                        (package_id,)).fetchone()[0]
    assert left >= 0, f"package {package_id} keeps a count of at least zero"
    return int(left)


def waiting(conn: sqlite3.Connection, received_before: str | None = None
            ) -> list[tuple[int, str, str, int, int]]:
    """(id, payer, payee, amount fen, told) of the packages waiting, oldest first; those
    taken before `received_before` (an ISO instant of the clock's zone) when given."""
    if received_before is None:
        return conn.execute("SELECT id, payer, payee, amount_fen, told_waiting FROM "
                            "beps_packages WHERE status = ? ORDER BY id", (WAITING,)).fetchall()
    return conn.execute("SELECT id, payer, payee, amount_fen, told_waiting FROM beps_packages "
                        "WHERE status = ? AND received_at < ? ORDER BY id",
                        (WAITING, received_before)).fetchall()


def first_waiting_received_at(conn: sqlite3.Connection) -> str | None:
    """When the package waiting longest was taken (ISO), or None when none waits."""
    return conn.execute("SELECT MIN(received_at) FROM beps_packages WHERE status = ?",
                        (WAITING,)).fetchone()[0]


def cap(conn: sqlite3.Connection, participant: str, default_fen: int) -> int:
    row = conn.execute("SELECT cap_fen FROM beps_caps WHERE participant = ?",
                       (participant,)).fetchone()
    return int(row[0]) if row else default_fen


def set_cap(conn: sqlite3.Connection, participant: str, cap_fen: int) -> None:
    conn.execute("INSERT INTO beps_caps (participant, cap_fen) VALUES (?, ?) ON CONFLICT "
                 "(participant) DO UPDATE SET cap_fen = excluded.cap_fen", (participant, cap_fen))


def outstanding(conn: sqlite3.Connection) -> dict[str, int]:
    """Each participant's net debit (debits minus credits) in rounds not yet settled."""
    rows = conn.execute(
        "SELECT p.participant, SUM(p.debit_fen - p.credit_fen) FROM beps_positions p "
        "JOIN beps_rounds r ON r.netting_date = p.netting_date AND "
        "r.netting_round = p.netting_round WHERE r.settled_on IS NULL GROUP BY p.participant")
    return {code: int(fen) for code, fen in rows}


def next_round(conn: sqlite3.Connection, netting_date: str) -> int:
    row = conn.execute("SELECT MAX(CAST(netting_round AS INTEGER)) FROM beps_rounds "
                       "WHERE netting_date = ?", (netting_date,)).fetchone()
    return int(row[0] or 0) + 1


def unsettled_rounds(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT netting_date, netting_round FROM beps_rounds WHERE settled_on "
                        "IS NULL ORDER BY netting_date, netting_round").fetchall()


def positions(conn: sqlite3.Connection, netting_date: str,
              netting_round: str) -> list[tuple[str, int, int]]:
    return conn.execute("SELECT participant, debit_fen, credit_fen FROM beps_positions WHERE "
                        "netting_date = ? AND netting_round = ? ORDER BY participant",
                        (netting_date, netting_round)).fetchall()


def round_packages(conn: sqlite3.Connection, netting_date: str,
                   netting_round: str) -> list[PackageRow]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM beps_packages WHERE netting_date = ? AND "
                        "netting_round = ? ORDER BY id", (netting_date, netting_round))
    return [PackageRow(*row) for row in rows]


def totals(conn: sqlite3.Connection, participant: str,
           netting_date: str) -> list[tuple[str, str, int, int, int, int, int]]:
    """(round, mt, sent count, sent fen, received count, received fen, settled) of the
    packages netted on `netting_date` where the participant paid or was paid."""
    return conn.execute(
        "SELECT b.netting_round, b.mesg_type,"
        " SUM(CASE WHEN b.payer = :p THEN b.count ELSE 0 END),"
        " SUM(CASE WHEN b.payer = :p THEN b.amount_fen ELSE 0 END),"
        " SUM(CASE WHEN b.payee = :p THEN b.count ELSE 0 END),"
        " SUM(CASE WHEN b.payee = :p THEN b.amount_fen ELSE 0 END),"
        " MAX(r.settled_on IS NOT NULL)"
        " FROM beps_packages b JOIN beps_rounds r ON r.netting_date = b.netting_date"
        " AND r.netting_round = b.netting_round"
        " WHERE b.status = :s AND b.netting_date = :d AND (b.payer = :p OR b.payee = :p)"
        " GROUP BY b.netting_round, b.mesg_type ORDER BY b.netting_round, b.mesg_type",
        {"p": participant, "s": NETTED, "d": netting_date}).fetchall()


def message_counts(conn: sqlite3.Connection, participant: str,
                   day: str) -> list[tuple[str, int, int]]:
    """(mt, sent, received) BEPS messages taken on `day` by or for the participant."""
    return conn.execute(
        "SELECT mesg_type, SUM(sender = :p), SUM(receiver = :p) FROM beps_packages"
        " WHERE received_on = :d AND (sender = :p OR receiver = :p)"
        " GROUP BY mesg_type ORDER BY mesg_type", {"p": participant, "d": day}).fetchall()


def counts_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, COUNT(*) FROM beps_packages GROUP BY status")
    return {status: int(n) for status, n in rows}
