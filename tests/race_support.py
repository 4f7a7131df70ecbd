"""Two gateway processes on one PostgreSQL database, one of them in a thread: a test
holds its own transaction open at the moment that matters and lets the other process's
work run into it (and wait for its rows, as it would)."""

from __future__ import annotations

import threading
import time
from typing import Any

import ledger

BLOCKED_WAIT_S = 10.0  # how long a test waits for the other process to reach the lock


class Other:
    """The other gateway process: its own connection, its work in a thread, in one
    transaction."""

    def __init__(self, url: str, work: Any) -> None:
        self.db = ledger.connect(url)
        with self.db.transaction() as tx:
            self.pid = tx.query_one("SELECT pg_backend_pid()", ())[0]
        self.result: list[Any] = []
        self.thread = threading.Thread(target=self._run, args=(work,))

    def _run(self, work: Any) -> None:
        try:
            with self.db.transaction() as tx:
                self.result.append(work(tx))
        except Exception as exc:  # handed to the test, which asserts on it
            self.result.append(exc)

    def start_and_wait_for_lock(self, url: str) -> None:
        """Start the work and return once it waits for a row lock, or has ended."""
        self.thread.start()
        watcher = ledger.connect(url)
        deadline = time.monotonic() + BLOCKED_WAIT_S
        try:
            while self.thread.is_alive() and time.monotonic() < deadline:
                # Each look in a transaction of its own: pg_stat_activity is read once per
                # transaction and would otherwise never change.
                with watcher.transaction() as tx:
                    waiting = tx.query_one("SELECT wait_event_type FROM pg_stat_activity "
                                           "WHERE pid = ?", (self.pid,))
                if waiting is not None and waiting[0] == "Lock":
                    return
                time.sleep(0.01)
            assert not self.thread.is_alive(), "the other process neither waits nor ends"
        finally:
            watcher.close()

    def finish(self) -> Any:
        self.thread.join(BLOCKED_WAIT_S)
        assert not self.thread.is_alive(), "the other process still waits"
        self.db.close()
        return self.result[0]
