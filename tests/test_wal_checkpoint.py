"""The write-ahead log copied back apart from the writer (ledger.checkpoint): no COMMIT of
the writing connection carries a checkpoint while the checkpointer keeps up, the log
stays bounded (by the checkpointer, else by the writer's own bound), nothing committed is
lost, and the gateway's store on SQLite runs its database so (not on PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.store import Store
from ledger import Ledger
from ledger.checkpoint import Checkpointer
from ledger.db import WAL_CHECKPOINT_BOUND_PAGES, Database
from ledger.fixtures import postgres_schema_or_skip

AT_PAGES = 200
BOUND_PAGES = 2_000
ROW_BYTES = 20_000  # a row of about five 4 KiB pages: a commit writes some seven frames
# What one commit's thread writes without a checkpoint: its frames of 4 KiB and a header.
COMMIT_BYTES_MAX = 16 * 4_120
THREAD_IO = Path("/proc/thread-self/io")


def _database(tmp_path: Path, look_interval_s: float = 0.001) -> Database:
    db = Database(str(tmp_path / "g.db"))
    assert db.checkpoint_apart(AT_PAGES, BOUND_PAGES, look_interval_s)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB NOT NULL)")
    return db


def _write(db: Database, n: int) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO t (n, b) VALUES (?, randomblob(?))", (n, ROW_BYTES))


def _written_bytes() -> int:
    """Bytes this thread has written so far (the kernel's count)."""
    for line in THREAD_IO.read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar line in {THREAD_IO}")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not THREAD_IO.exists(), reason="needs Linux's per-thread I/O counts")
def test_no_commit_of_the_writer_copies_the_log_back_and_the_log_stays_short(tmp_path):
    """Under writes without pause (ten times the checkpoint's pages), every COMMIT writes
    only its own frames, and the checkpointer keeps the log far below the writer's bound
    (started again from its beginning, not grown to the bound)."""
    db = _database(tmp_path)
    commit_bytes, frames_max = [], 0
    for n in range(300):
        before = _written_bytes()
        _write(db, n)
        commit_bytes.append(_written_bytes() - before)
        frames_max = max(frames_max, db.checkpointer.frames()[0])
    passes = db.checkpointer.passes
    db.close()

    assert max(commit_bytes) < COMMIT_BYTES_MAX
    assert passes > 0
    assert frames_max < BOUND_PAGES // 2


def test_the_writer_copies_the_log_itself_past_its_bound(tmp_path, monkeypatch):
    """With the checkpointer stalled, the writer leaves the database file as it is below
    its bound (past the checkpointer's), and copies the log back itself at the bound."""
    monkeypatch.setattr(Checkpointer, "_copy_while_due", lambda self: None)
    db = _database(tmp_path)
    path = tmp_path / "g.db"
    file_before = _file_digest(path)
    rows_below_bound = AT_PAGES * 3 // 7  # some 600 frames: three times the checkpoint's
    for n in range(rows_below_bound):
        _write(db, n)
    file_below_bound = _file_digest(path)
    frames_seen = []
    for n in range(rows_below_bound, rows_below_bound + BOUND_PAGES // 4):
        _write(db, n)
        frames_seen.append(db.checkpointer.frames()[0])
    db.close()

    assert file_below_bound == file_before
    assert max(frames_seen) < BOUND_PAGES + 16
    assert frames_seen[-1] < BOUND_PAGES // 2


def test_every_committed_row_is_in_the_database_after_close(tmp_path):
    """The checkpointer's passes lose nothing: all rows are read back from the file after
    the database closes (the log copied back and removed by the last connection)."""
    db = _database(tmp_path)
    for n in range(150):
        _write(db, n)
    db.close()

    conn = sqlite3.connect(tmp_path / "g.db")
    count, = conn.execute("SELECT count(*) FROM t").fetchone()
    conn.close()
    assert count == 150
    assert not (tmp_path / "g.db-wal").exists()


def test_a_database_in_memory_keeps_its_own_checkpoints():
    """No log to copy: nothing is started."""
    db = Database(":memory:")

    assert db.checkpoint_apart() is False
    assert db.checkpointer is None
    db.close()


def test_the_gateway_store_on_sqlite_leaves_checkpoints_to_the_checkpointer(tmp_path):
    """The gateway's store checkpoints apart; its writer's own bound is the high one."""
    async def scenario() -> tuple[Any, int, str]:
        store = Store(f"sqlite:///{tmp_path / 'gateway.db'}", Ledger())
        await store.open()
        try:
            bound = await store.run(lambda tx: tx.query_one("PRAGMA wal_autocheckpoint")[0])
            sync = await store.run(lambda tx: tx.query_one("PRAGMA synchronous")[0])
            return store._db.checkpointer, bound, sync
        finally:
            await store.close()
    checkpointer, bound, sync = asyncio.run(scenario())

    assert checkpointer is not None
    assert bound == WAL_CHECKPOINT_BOUND_PAGES
    assert sync == 2  # FULL, as before


def test_the_gateway_store_on_postgresql_starts_no_checkpointer():
    """PostgreSQL has no log of SQLite's to copy: its database is opened as before."""
    async def scenario(url: str) -> Any:
        store = Store(url, Ledger())
        await store.open()
        try:
            return getattr(store._db, "checkpointer", None)
        finally:
            await store.close()

    with postgres_schema_or_skip("wal_checkpoint") as url:
        checkpointer = asyncio.run(scenario(url))

    assert checkpointer is None
