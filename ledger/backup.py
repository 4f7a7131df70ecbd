"""Backing up and restoring the SQLite database the ledger shares with the gateway.

`backup` copies the live database with SQLite's online backup API: it may run while
the gateway keeps working (between its transactions), and the copy is a consistent
snapshot that includes what sits in the WAL file. `restore` copies a backup into a
database file that no process has open (stop the gateway first), and `verify` opens a
file and says whether its books balance and what their digest is, so a restore can be
checked against the digest recorded at backup time.

PostgreSQL is backed up with its own tools (pg_dump, or base backups with WAL
archiving); see docs/ledger.md.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ledger.db import Database
from ledger.reports import digest, entry_count, trial_balance

# Pages copied per step of the backup API; between steps other connections may write.
BACKUP_PAGES_PER_STEP = 1_024


@dataclass(frozen=True)
class BookCheck:
    entries: int
    digest: str
    balanced: bool


def backup(db: Database, dest_path: str | Path) -> BookCheck:
    """Copy the live database to `dest_path`; the check of what was copied."""
    target = Path(dest_path)
    if target.exists():
        raise FileExistsError(f"backup target {target} exists; back up to a new file")
    db.backup(target)
    return verify(target)


def restore(backup_path: str | Path, target_path: str | Path) -> BookCheck:
    """Copy a backup into `target_path`, which must not be open anywhere."""
    source_path, target = Path(backup_path), Path(target_path)
    if not source_path.is_file():
        raise FileNotFoundError(f"no backup at {source_path}")
    for leftover in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        if leftover.exists():
            raise FileExistsError(f"{leftover} exists: stop every process using {target}")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    destination = sqlite3.connect(str(target))
    try:
        source.backup(destination, pages=BACKUP_PAGES_PER_STEP)
    finally:
        destination.close()
        source.close()
    return verify(target)


def verify(path: str | Path) -> BookCheck:
    """Open a database file and check its books."""
    db = Database(str(path))
    try:
        with db.transaction() as tx:
            return BookCheck(entry_count(tx), digest(tx), trial_balance(tx).balanced)
    finally:
        db.close()
