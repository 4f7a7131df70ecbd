"""The write-ahead log copied back into a SQLite database file apart from its writer.

SQLite's writer copies the log back (a checkpoint) in the COMMIT that finds it past
`wal_autocheckpoint` pages: in the gateway that COMMIT is a group of payments being
accepted, and the copy (some 8,000 pages, 30 MB, 25 to 190 ms with its fsync of the
database file) holds every payment of that group and of the groups queued behind it.
`Checkpointer` does the copy on a thread and a connection of its own instead, with
`wal_checkpoint(PASSIVE)`: it takes no lock the writer needs, so the writer goes on
committing to the log while the pages are copied.

Durability is SQLite's as before: the checkpointing connection runs with
`synchronous=FULL` as the writer does (the log is synced before its pages are copied and
the database file after), and a commit is durable once its frames are in the synced log,
whoever copies them later.

The log stays bounded:
- the checkpointer starts when `at_pages` frames wait to be copied, and goes on at once
  while a pass leaves frames behind that came in during it, so that the log is copied to
  its end and the writer starts it again from its beginning (SQLite does so in the first
  write after a complete checkpoint);
- the writer keeps its own automatic checkpoint at a higher bound (`Database.checkpoint_apart`):
  should this thread stall or fail, the writer copies the log itself as before.

When it starts: the wal-index (the `-shm` file beside the database, SQLite's documented
"WAL-index format") holds, in the first header, the number of the last valid frame of
the log (`mxFrame`, bytes 16 to 20) and, in the checkpoint information after the two
headers, how many of them have been copied (`nBackfill`, bytes 96 to 100), in the
machine's byte order. Reading them takes a few microseconds and no lock; a value read
while SQLite changes it is at most one decision early or late, the next look corrects it.
The writer wakes the thread after its commits (`committed`), at most once every
`LOOK_INTERVAL_S`; an idle database costs nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
import time
from typing import Any

log = logging.getLogger("paygate.ledger")

# Shortest time between two looks at the log's length while commits come: at 1,000
# payments a second (some 8 pages each) the log grows by about 800 pages in that time.
LOOK_INTERVAL_S = 0.1
# How long `close` waits for a pass in progress (a pass of the gateway's 8,000 pages
# takes 25 to 200 ms) before leaving the daemon thread to end with the process.
CLOSE_WAIT_S = 10.0
# The wal-index header: mxFrame at byte 16 of the first copy, nBackfill at byte 96
# (the checkpoint information follows the two 48-byte copies of the header).
_MX_FRAME = struct.Struct("=I")
_MX_FRAME_AT = 16
_BACKFILL_AT = 96
_INDEX_HEAD_BYTES = 100
# Frames left after a pass that the checkpointer copies with the writer held off (the
# RESTART mode takes the write lock, waiting for the transaction running): a megabyte of
# 4 KiB pages, a few milliseconds with the database file's fsync. A PASSIVE pass copies
# what was in the log when it began, and the log starts again from its beginning only in
# a write that finds every frame copied, which under steady writes a PASSIVE pass never
# leaves; without the restart the log would grow to the writer's bound.
RESTART_FRAMES_MAX = 256
# How long the RESTART waits for the writer's transaction to end: a few tries in the
# gaps between its transactions; when it finds none, the next look tries again. (Waiting
# longer would hold the checkpoint lock, and with it the writer's own bound, meanwhile.)
RESTART_WAIT_MS = 5


class Checkpointer:
    """Copies the log of the database at `path` back into its file on a thread of its
    own, whenever `at_pages` frames wait (module docstring)."""

    def __init__(self, path: str, at_pages: int,
                 look_interval_s: float = LOOK_INTERVAL_S) -> None:
        assert at_pages > 0, "a checkpoint starts past a positive number of pages"
        self.path = path
        self.at_pages = at_pages
        self.look_interval_s = look_interval_s
        self.restart_frames_max = min(RESTART_FRAMES_MAX, at_pages // 4)
        self.passes = 0  # checkpoint passes run, for tests and figures
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
        self._index = os.open(f"{path}-shm", os.O_RDONLY)
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="db-checkpoint",
                                        daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """The writer committed: look at the log's length soon (at most once every
        `look_interval_s`). Called on the writer's thread after each COMMIT."""
        if not self._wake.is_set():
            self._wake.set()

    def frames(self) -> tuple[int, int]:
        """(frames in the log, frames of it copied back), from the wal-index."""
        head = os.pread(self._index, _INDEX_HEAD_BYTES, 0)
        if len(head) < _INDEX_HEAD_BYTES:  # no log written yet
            return 0, 0
        return (_MX_FRAME.unpack_from(head, _MX_FRAME_AT)[0],
                _MX_FRAME.unpack_from(head, _BACKFILL_AT)[0])

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop the thread (after a pass in progress) and close its connection."""
        self._closing = True
        self._wake.set()
        self._thread.join(wait_s)
        if self._thread.is_alive():
            log.warning("event=wal_checkpointer_still_running path=%s", self.path)
            return
        self._conn.close()
        os.close(self._index)

    def _loop(self) -> None:
        try:
            while True:
                self._wake.wait()
                if self._closing:
                    return
                self._wake.clear()
                self._copy_while_due()
                # Commits in the meantime set the event again; look no sooner than this.
                time.sleep(self.look_interval_s)
        except Exception:  # the writer's own bound takes over (module docstring)
            log.exception("event=wal_checkpointer_failed path=%s", self.path)

    def _copy_while_due(self) -> None:
        """Copy the log back once `at_pages` frames wait, or while an earlier pass left
        the log to be started again; again as long as a pass leaves frames behind (written
        during it) and fewer than the pass before; the last `restart_frames_max` or fewer
        with the writer held off, so that the next write starts the log again."""
        frames, copied = self.frames()
        if frames - copied < self.at_pages and not 0 < copied < frames:
            return
        left = frames - copied
        while not self._closing:
            if left <= self.restart_frames_max:
                # Busy (the writer's transaction ran past RESTART_WAIT_MS): SQLite copied
                # what it could as a PASSIVE pass would; the next look tries again.
                self._pass("RESTART")
                return
            busy, frames, copied = self._pass("PASSIVE")
            if busy or frames - copied >= left:
                # Busy: another checkpoint was running (the writer's own, at its bound).
                # No progress: the log grows faster than this copies it; the next commit
                # wakes the thread again and the writer's bound holds the log meanwhile.
                return
            left = frames - copied

    def _pass(self, mode: str) -> tuple[Any, int, int]:
        """One checkpoint: (busy, frames in the log, frames copied)."""
        row = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        self.passes += 1
        return row[0], row[1], row[2]
