"""Every item of a BEPS package an operator cancels whole leaves the package, a finished
one too, keeping what was filed under the package (its history rows and the webhook rows
that told its changes, `payments.told`); the rows are read once for the whole package,
not once for each item (payments.leave_group)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway import payments
from gateway.beps import items, packer, stops
from gateway.beps.settings import BepsSettings
from tests.beps_support import NOW, held_items
from tests.test_beps_debit_overdue import work

WHO = {"request": 1, "by": "op1"}
EVENTS_MAX = 7  # webhook events in one row: a package's change takes several rows


def held_for_cancel(tmp_path: Path, size: int) -> tuple[Any, Any, str]:
    """A package of `size` credits sent, its attempts provably untaken by the NPC, the
    first item withdrawn alone (finished: cancelled) and the package held by an
    operator; every change told by webhook rows, the package's filed under it."""
    db, gw = held_items(tmp_path, [100 + n for n in range(size)])
    gw.notifier = payments.Notifier(webhook=True, events_max=EVENTS_MAX)
    with work(db) as tx:
        outbox = packer.seal_due(tx, gw, BepsSettings(), "stream", NOW, force=True)
        packer.claim(tx, gw, outbox[0], NOW)
        package_id = tx.query_one("SELECT id FROM beps_packages", ())[0]
        tx.execute("UPDATE outbox SET state = 'pending', attempts = 3, untaken = 3 WHERE id = "
                   "(SELECT outbox_id FROM beps_packages WHERE id = ?)", (package_id,))
        first = items.package_payments(tx, package_id)[0]
        payments.transition(tx, first, "cancelled", "npc_withdrawn", NOW, gw.notifier)
        stops.hold_package(gw, tx, package_id, WHO, NOW)
    return db, gw, package_id


def members(tx: Any, package_id: str) -> list[str]:
    return [p["id"] for p in items.package_payments(tx, package_id)]


def told_and_history(tx: Any, ids: list[str]) -> dict[str, Any]:
    """What `told` answers for each payment, and its history rows (as a list sorted by
    content: the order is the next test's)."""
    return {pid: (payments.told(tx, pid),
                  sorted(payments.history(tx, pid), key=lambda e: repr(sorted(e.items()))))
            for pid in ids}


def test_each_item_keeps_what_was_told_of_it_the_finished_one_too(tmp_path):
    """After the cancel, each item is told of what it was told of before, in the same
    rows, and of its cancellation after, and keeps every history row; the item finished
    before (withdrawn) keeps its package's rows too, though nothing more happens to it."""
    db, gw, package_id = held_for_cancel(tmp_path, 12)
    with work(db) as tx:
        ids = members(tx, package_id)
        before = told_and_history(tx, ids)
        done = stops.cancel_package(gw, tx, package_id, WHO, NOW)
        after = told_and_history(tx, ids)

    finished, *cancelled = ids
    assert done["cancelled"] == len(cancelled)
    assert [t["state"] for t in before[finished][0]] == ["sent", "cancelled"]
    assert after[finished] == before[finished]
    for pid in cancelled:
        told_before, history_before = before[pid]
        told_after, history_after = after[pid]
        assert [t["state"] for t in told_before] == ["sent", "held"]
        assert told_after[:-1] == told_before
        assert told_after[-1]["state"] == "cancelled"
        assert [e for e in history_after if e["event"] != "ops_package_cancelled"] == \
            history_before
        assert len(history_after) == len(history_before) + 1


def _leave_one_by_one(tx: Any, payment_ids: list[str], group: str) -> None:
    """What leave_group did before it took many payments: the group's rows read again,
    and every webhook row's events parsed again, for each payment (the reference the
    rows written must equal)."""
    for payment_id in payment_ids:
        # Its own rows after the package's first are written again, each where its id
        # came among the package's.
        first = tx.query_one("SELECT MIN(id) FROM payment_events WHERE payment_id = ?",
                             (group,))[0]
        rows = tx.query("SELECT id, at, state, event, detail FROM payment_events WHERE "
                        "payment_id = ? OR (payment_id = ? AND id > ?) ORDER BY id",
                        (group, payment_id, first))
        tx.execute("DELETE FROM payment_events WHERE payment_id = ? AND id > ?",
                   (payment_id, first))
        tx.executemany("INSERT INTO payment_events (payment_id, at, state, event, detail) "
                       "VALUES (?, ?, ?, ?, ?)", [(payment_id, *row[1:]) for row in rows])
        tx.insert_rows("INSERT INTO webhook_events (outbox_id, payment_id, state) VALUES", [
            (outbox_id, payment_id, state) for outbox_id, state, body in tx.query(
                "SELECT e.outbox_id, e.state, o.envelope FROM webhook_events e JOIN outbox "
                "o ON o.id = e.outbox_id WHERE e.payment_id = ? ORDER BY e.outbox_id",
                (group,))
            if payments.carries(body, payment_id, state)])


def _cancelled_rows(tmp_path: Path, monkeypatch: Any, leave: Any) -> dict[str, Any]:
    monkeypatch.setattr(payments, "leave_group", leave)
    db, gw, package_id = held_for_cancel(tmp_path, 30)
    with work(db) as tx:
        stops.cancel_package(gw, tx, package_id, WHO, NOW)
        return {"history": tx.query("SELECT id, payment_id, at, state, event, detail FROM "
                                    "payment_events ORDER BY id", ()),
                "told": tx.query("SELECT outbox_id, payment_id, state FROM webhook_events "
                                 "ORDER BY rowid", ())}


def test_the_rows_written_are_those_one_payment_at_a_time_wrote(tmp_path, monkeypatch):
    """Row for row, in the same order, what reading the package's rows again for each
    item wrote."""
    leave = payments.leave_group
    once = _cancelled_rows(tmp_path / "once", monkeypatch, leave)
    each = _cancelled_rows(tmp_path / "each", monkeypatch, _leave_one_by_one)

    assert once == each
    assert len(once["told"]) > 2 * 30  # sent and held of every item were copied


class CountedCalls:
    """A transaction that counts the statements asked of it (a multi-row INSERT once)."""

    def __init__(self, tx: Any) -> None:
        self.tx, self.count = tx, 0

    def __getattr__(self, name: str) -> Any:
        if name not in ("execute", "executemany", "query", "query_one", "insert_rows"):
            return getattr(self.tx, name)

        def run(*args: Any) -> Any:
            self.count += 1
            return getattr(self.tx, name)(*args)
        return run


def _leave_calls(tmp_path: Path, size: int) -> int:
    db, _, package_id = held_for_cancel(tmp_path / str(size), size)
    with work(db) as tx:
        counted = CountedCalls(tx)
        payments.leave_group(counted, members(tx, package_id),
                             items.package_subject(package_id))
    return counted.count


def test_the_package_s_rows_are_read_once_whatever_its_size(tmp_path):
    """Two reads and two multi-row INSERTs for 3 items or 120, where each item read the
    package's webhook rows again before; and the items' own rows after the package's
    read and deleted once for all (the first item's, withdrawn alone, are written again
    after the package's)."""
    assert _leave_calls(tmp_path, 3) == _leave_calls(tmp_path, 120) == 6


def test_a_payment_s_history_reads_in_the_order_written_once_it_left(tmp_path):
    """Each item's own rows written after the package's (the first withdrawn alone, the
    others held by the operator) still come after the package's packing and sending
    once those are copied to it: the history reads as before, then the cancellation."""
    db, gw, package_id = held_for_cancel(tmp_path, 3)
    with work(db) as tx:
        ids = members(tx, package_id)
        before = {pid: payments.history(tx, pid) for pid in ids}
        stops.cancel_package(gw, tx, package_id, WHO, NOW)
        after = {pid: payments.history(tx, pid) for pid in ids}

    finished, *cancelled = ids
    assert [e["event"] for e in before[finished]] == [
        "created", "beps_packed", "beps_sent", "npc_withdrawn"]
    assert after[finished] == before[finished]
    for pid in cancelled:
        assert [e["event"] for e in before[pid]] == [
            "created", "beps_packed", "beps_sent", "ops_held"]
        assert after[pid][:-1] == before[pid]
        assert after[pid][-1]["event"] == "ops_package_cancelled"
