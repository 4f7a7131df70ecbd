"""`store.on_undo`: an in-memory change made by database work is set back when the work's
rows are undone (a `scope`, the work's own savepoint, the whole transaction) and kept
once the transaction commits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import store as store_mod
from gateway.errors import Conflict, Problem
from gateway.store import Store
from ledger import Ledger


def _moved(state: dict[str, Any], key: str, value: Any) -> None:
    """Work's change of `state[key]`, registered to be set back with the work."""
    before = state.get(key)
    state[key] = value
    store_mod.on_undo(lambda: state.__setitem__(key, before))


async def _store(tmp_path: Any) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}", Ledger())
    await store.open()
    return store


def test_committed_work_keeps_its_change_and_an_undone_scope_sets_its_own_back(tmp_path):
    """Only the part undone by its scope is set back; the rest of the work commits."""
    state: dict[str, Any] = {"code": "10"}

    def work(tx: Any) -> None:
        _moved(state, "code", "20")
        with pytest.raises(RuntimeError), store_mod.scope(tx):
            _moved(state, "code", "30")
            _moved(state, "date", "2026-12-08")
            raise RuntimeError("part fails")
        assert state == {"code": "20", "date": None}

    async def scenario() -> None:
        store = await _store(tmp_path)
        try:
            await store.run(work)
        finally:
            await store.close()
    asyncio.run(scenario())

    assert state == {"code": "20", "date": None}


@pytest.mark.parametrize("error", [RuntimeError("bug"),
                                   Conflict(Problem("refused", "/x", 1, "a rule"))],
                         ids=["bug", "refusal"])
def test_a_failing_work_sets_its_changes_back_the_latest_first(tmp_path, error):
    """The work's savepoint rolled back, its changes are set back, in reverse order;
    another work of the same transaction keeps its own."""
    state: dict[str, Any] = {"code": "10"}
    other: dict[str, Any] = {}

    def failing(tx: Any) -> None:
        _moved(state, "code", "20")
        _moved(state, "code", "30")
        raise error

    async def scenario() -> list[Any]:
        store = await _store(tmp_path)
        try:
            return await asyncio.gather(store.run(failing),
                                        store.run(lambda tx: _moved(other, "a", 1)),
                                        return_exceptions=True)
        finally:
            await store.close()
    results = asyncio.run(scenario())

    assert results == [error, None]
    assert state == {"code": "10"}
    assert other == {"a": 1}


def test_a_transaction_failing_after_its_works_sets_every_change_back(tmp_path, monkeypatch):
    """The works succeeded, then the transaction failed (its gathered rows here, as a
    commit may): each work's change is set back, none kept."""
    state: dict[str, Any] = {"code": "10"}

    def work(tx: Any) -> None:
        _moved(state, "code", "20")
        store_mod.gather(tx, "rows", [1], lambda tx, items: None)

    def failing_write(tx: Any, gathered: Any) -> None:
        raise RuntimeError("disk full")
    monkeypatch.setattr(store_mod, "_write_gathered", failing_write)

    async def scenario() -> list[Any]:
        store = await _store(tmp_path)
        try:
            return await asyncio.gather(store.run(work),
                                        store.run(lambda tx: _moved(state, "date", "d")),
                                        return_exceptions=True)
        finally:
            await store.close()
    results = asyncio.run(scenario())

    assert [str(r) for r in results] == ["disk full", "disk full"]
    assert state == {"code": "10", "date": None}


def test_outside_store_work_nothing_is_registered():
    """A change made outside Store.run (a tool, the event loop) has nothing to follow."""
    state: dict[str, Any] = {"code": "10"}

    _moved(state, "code", "20")

    assert state == {"code": "20"}
