"""What a piece of database work keeps beside its rows until its transaction commits.

All database work runs on the store's one thread (gateway.store), so what the work in
progress keeps lives in that thread's local storage: the stream entries to add once it
commits, the log lines to write then, the rows it gathers, and the changes it made to
state held in memory, with how to set each back (`on_undo`). The store sets these up
for each piece of work, forgets the first three when the work (or a `scope` inside it)
is undone, and runs the last ones then. This module imports nothing of the gateway's
but its logs, so that a module the store imports (gateway.windows) can use it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway import logs

log = logging.getLogger("paygate.store")

_local = threading.local()


def log_after_commit(logger: logging.Logger, level: int, messages: list[str]) -> None:
    """Log these events once the current transaction commits, and not at all if it
    rolls back: the log never tells of a payment that the database does not hold.
    Outside work run by Store.run (tools, tests on a bare database) they are logged now."""
    lines = getattr(_local, "lines", None)
    if lines is None:
        logs.log_lines(logger, level, messages)
    elif messages and logger.isEnabledFor(level):
        lines.append((logger, level, messages))


def on_undo(undo: Callable[[], None]) -> None:
    """Set an in-memory change back should the current work's changes be undone: `undo`
    runs (the latest first) when the `scope` it was made in is undone, when the piece of
    work fails (its savepoint rolled back), or when its whole transaction fails, before
    the commit or at it; it is dropped once the transaction commits. A state in memory
    that work changes (the HVPS window a ccms.801 moves) so stays what the database
    says. Outside work run by Store.run nothing can be undone, and it is dropped now."""
    undos = getattr(_local, "undo", None)
    if undos is not None:
        undos.append(undo)


def in_work() -> bool:
    """Whether this thread is running a piece of work of the store (Store.run)."""
    return getattr(_local, "undo", None) is not None


def run_undo(undos: list[Callable[[], None]], mark: int = 0) -> None:
    """Run the undos registered since `mark`, the latest first, and forget them. One that
    fails is logged and the others still run: each sets back a change of its own."""
    for undo in reversed(undos[mark:]):
        try:
            undo()
        except Exception:  # the traceback says what failed
            log.exception("event=in_memory_undo_failed undo=%r", undo)
    del undos[mark:]
