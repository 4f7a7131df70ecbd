"""`Store.run(urgent=True)`: a customer's payment being accepted is taken in a
transaction of its own ahead of the ordinary work waiting at the same moment, and
answered as soon as that transaction commits; an ordinary transaction that has run its
slice commits early for urgent work waiting, and what it did not run is taken next, in
order, so no work starves; the write-ahead log's checkpoint falls to ordinary
transactions."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ledger
from gateway import store as store_mod
from gateway.store import Store
from ledger import Ledger


async def _store(tmp_path: Any) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}", Ledger())
    await store.open()
    await store.run(lambda tx: tx.execute(
        "CREATE TABLE IF NOT EXISTS steps (n INTEGER PRIMARY KEY AUTOINCREMENT, "
        "name TEXT NOT NULL)", ()))
    return store


def _step(name: str, seen: list[tuple[str, int]], commits: Any,
          hold: threading.Event | None = None) -> Any:
    """Work that notes its name and the commit count it ran under (a transaction's
    works share one), waiting on `hold` first if given."""
    def work(tx: Any) -> str:
        if hold is not None:
            assert hold.wait(5)
        tx.execute("INSERT INTO steps (name) VALUES (?)", (name,))
        seen.append((name, commits()))
        return name
    return work


def test_urgent_work_runs_ahead_in_its_own_transaction_and_is_answered_first(tmp_path):
    seen: list[tuple[str, int]] = []
    answered: list[str] = []

    async def scenario() -> None:
        store = await _store(tmp_path)
        commits = lambda: store.commits
        hold = threading.Event()
        try:
            async def run(name: str, urgent: bool, held: bool = False) -> None:
                await store.run(_step(name, seen, commits, hold if held else None),
                                urgent=urgent)
                answered.append(name)
            # The first keeps the thread busy while the others queue behind it.
            first = asyncio.ensure_future(run("first", False, held=True))
            await asyncio.sleep(0.05)
            waiting = [asyncio.ensure_future(run(name, urgent))
                       for name, urgent in (("results", False), ("accept-1", True),
                                            ("webhook", False), ("accept-2", True))]
            await asyncio.sleep(0.05)
            hold.set()
            await asyncio.gather(first, *waiting)
            rows = await store.run(lambda tx: tx.query("SELECT name FROM steps ORDER BY n"))
        finally:
            await store.close()
        assert [name for (name,) in rows] == [name for name, _ in seen]

    asyncio.run(scenario())
    order = [name for name, _ in seen]
    assert order == ["first", "accept-1", "accept-2", "results", "webhook"]
    commit_of = dict(seen)
    # The acceptances share a transaction; the ordinary work the next one.
    assert commit_of["accept-1"] == commit_of["accept-2"]
    assert commit_of["results"] == commit_of["webhook"] == commit_of["accept-1"] + 1
    # ... and they are answered before the ordinary work's transaction commits.
    assert answered.index("accept-2") < answered.index("results")


def test_an_ordinary_transaction_is_cut_for_urgent_work_and_nothing_starves(
        tmp_path, monkeypatch):
    """Past its slice, an ordinary transaction commits early when urgent work waits;
    the ordinary work it left runs next, in order, at least one piece a transaction."""
    monkeypatch.setattr(store_mod, "ORDINARY_SLICE_S", 0.0)
    seen: list[tuple[str, int]] = []

    async def scenario() -> None:
        store = await _store(tmp_path)
        commits = lambda: store.commits
        loop = asyncio.get_running_loop()
        urgent_done: list[asyncio.Future] = []

        def slow_and_add_urgent(name: str) -> Any:
            inner = _step(name, seen, commits)

            def work(tx: Any) -> str:
                time.sleep(0.01)
                # An acceptance arrives while this ordinary work runs.
                loop.call_soon_threadsafe(lambda: urgent_done.append(
                    asyncio.ensure_future(store.run(_step(f"accept-{name}", seen, commits),
                                                    urgent=True))))
                time.sleep(0.01)
                return inner(tx)
            return work
        try:
            await asyncio.gather(*(store.run(slow_and_add_urgent(f"o{i}"))
                                   for i in range(4)))
            while len(urgent_done) < 4:
                await asyncio.sleep(0.01)
            await asyncio.gather(*urgent_done)
        finally:
            await store.close()

    asyncio.run(scenario())
    ordinary = [(name, commit) for name, commit in seen if name.startswith("o")]
    assert [name for name, _ in ordinary] == ["o0", "o1", "o2", "o3"]
    # Each ordinary piece ran, and each transaction of them was cut after one piece for
    # the acceptance that arrived meanwhile, which ran in the transaction between.
    assert len({commit for _, commit in ordinary}) == 4
    for name, commit in ordinary[:-1]:
        assert (f"accept-{name}", commit + 1) in seen


def test_the_checkpoint_falls_to_ordinary_transactions(tmp_path):
    bounds: list[tuple[str, int]] = []

    async def scenario() -> None:
        store = await _store(tmp_path)
        at = store._db.checkpoint_at

        def noted(pages: int) -> None:
            bounds.append((threading.current_thread().name, pages))
            at(pages)
        store._db.checkpoint_at = noted
        try:
            await store.run(lambda tx: None, urgent=True)
            await store.run(lambda tx: None)
            page_bound = await store.run(
                lambda tx: tx.query_one("PRAGMA wal_autocheckpoint")[0])
        finally:
            await store.close()
        assert page_bound == ledger.db.WAL_CHECKPOINT_PAGES

    asyncio.run(scenario())
    assert [pages for _, pages in bounds] == [
        store_mod.URGENT_CHECKPOINT_PAGES, ledger.db.WAL_CHECKPOINT_PAGES,
        ledger.db.WAL_CHECKPOINT_PAGES]
