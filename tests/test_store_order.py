"""The store's group commit: work a client waits for (urgent) goes into the next
transaction before other work, and other work waiting meanwhile goes in a few at a time
beside it, so that a burst of the NPC's results does not hold up a customer's payment."""

from __future__ import annotations

import asyncio
import threading

import ledger
from gateway import store as store_mod
from gateway.store import Store


def test_urgent_work_goes_first_and_later_work_waits_in_small_groups(tmp_path):
    async def scenario() -> list[list[str]]:
        store = Store(f"sqlite:///{tmp_path / 'gateway.db'}", ledger.Ledger())
        await store.open()
        seen: list[tuple[int, str]] = []  # (commits before the work's transaction, name)
        gate = threading.Event()

        def work(name):
            def run(tx):
                if name == "blocker":
                    gate.wait(5)  # holds the database thread while the rest queue up
                seen.append((store.commits, name))
            return run
        try:
            first = asyncio.ensure_future(store.run(work("blocker")))
            await asyncio.sleep(0.05)
            later = [asyncio.ensure_future(store.run(work(f"later{i}")))
                     for i in range(store_mod.LATER_PER_BATCH * 2 + 3)]
            urgent = [asyncio.ensure_future(store.run(work(f"urgent{i}"), urgent=True))
                      for i in range(3)]
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.gather(first, *later, *urgent)
        finally:
            await store.close()
        transactions: dict[int, list[str]] = {}
        for commits, name in seen:
            transactions.setdefault(commits, []).append(name)
        return [transactions[k] for k in sorted(transactions)]

    transactions = asyncio.run(scenario())
    assert transactions[0] == ["blocker"]
    after = transactions[1:]
    # The urgent work, queued last, is in the first transaction after the blocker, with
    # only LATER_PER_BATCH of the work queued before it.
    assert after[0][:3] == ["urgent0", "urgent1", "urgent2"]
    assert len(after[0]) == 3 + store_mod.LATER_PER_BATCH
    # With no urgent work left, the rest goes together.
    assert len(after) == 2
    assert len(after[1]) == store_mod.LATER_PER_BATCH + 3
    assert [n for t in after for n in t if n.startswith("later")] == \
        [f"later{i}" for i in range(store_mod.LATER_PER_BATCH * 2 + 3)]
