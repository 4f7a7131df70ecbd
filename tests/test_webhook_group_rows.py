"""A change every payment of a package makes at once (sent, netted, settled) is told in
webhook rows filed under the package, one webhook_events row for each webhook row its
events went into, not one for each payment (payments._write_webhooks); `payments.told`
still answers, payment by payment, which row told which change, and a payment that
leaves its package keeps what was told of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson

import ledger
from gateway import payments
from gateway.beps import items
from gateway.beps import schema as beps_schema
from gateway.store import Store

AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
PACKAGE = "999100000019P1"
MEMBERS = [f"P{n:04d}" for n in range(1, 6)]
OTHER = "Q0001"  # a payment of no package, changed in the same transaction


def _fill(tx: Any) -> None:
    beps_schema.install(tx)
    for pid in [*MEMBERS, OTHER]:
        tx.execute(
            "INSERT INTO payments (id, direction, channel, state, msg_type, msg_id, tx_id, "
            "end_to_end_id, sender_direct, receiver_direct, amount_fen, currency, "
            "payer_account, payer_name, payer_bank, payee_account, payee_name, payee_bank, "
            "business_type, business_kind, urgency, priority, work_date, created_at, "
            "updated_at) VALUES (?, 'out', 'beps', 'accepted', 'beps.121.001.01', ?, ?, ?, "
            "'999100000019', '888200000015', 100, 'CNY', 'a', 'n', 'b', 'a', 'n', 'b', "
            "'A100', '02102', 'normal', 3, '2026-12-07', ?, ?)",
            (pid, pid, pid, pid, AT.isoformat(), AT.isoformat()))
        tx.execute("INSERT INTO beps_items (payment_id, kind, side, counterparty, msg_type, "
                   "amount_fen, package_id, created_at) VALUES (?, 'credit_out', 'D', "
                   "'888200000015', 'beps.121.001.01', 100, ?, ?)",
                   (pid, PACKAGE if pid != OTHER else None, AT.isoformat()))


def _scenario(tmp_path, events_max: int) -> dict[str, Any]:
    notifier = payments.Notifier(webhook=True, events_max=events_max)
    group = items.package_group(PACKAGE, len(MEMBERS))

    async def run() -> dict[str, Any]:
        store = Store(f"sqlite:///{tmp_path / 'gateway.db'}", ledger.Ledger())
        await store.open()
        try:
            await store.run(_fill)

            def sent(tx: Any) -> None:
                payments.transition_group(tx, group, "accepted", "sent", "beps_sent", AT,
                                          notifier)
                other = payments.get(tx, OTHER)
                payments.transition(tx, other, "sent", "beps_sent", AT, notifier)
            await store.run(sent)
            # One member moves on alone: the package's next change is not whole.
            await store.run(lambda tx: payments.transition(
                tx, payments.get(tx, MEMBERS[0]), "cancelled", "npc_withdrawn", AT,
                notifier))
            await store.run(lambda tx: payments.transition_group(
                tx, group, "sent", "netted", "beps_netted", AT, notifier))

            def leave(tx: Any) -> None:  # as an item taken out of its package leaves it
                payments.leave_group(tx, [MEMBERS[1]], items.package_subject(PACKAGE))
                tx.execute("UPDATE beps_items SET package_id = ? WHERE payment_id = ?",
                           (items.VOID, MEMBERS[1]))
            await store.run(leave)

            def read(tx: Any) -> dict[str, Any]:
                return {
                    "named": tx.query("SELECT outbox_id, payment_id, state FROM "
                                      "webhook_events ORDER BY rowid"),
                    "bodies": {oid: [(e["id"], e["state"]) for e in orjson.loads(body)]
                               for oid, body in tx.query(
                                   "SELECT id, envelope FROM outbox WHERE kind = 'webhook'")},
                    "told": {pid: [(t["state"], t["outbox"])
                                   for t in payments.told(tx, pid)]
                             for pid in [*MEMBERS, OTHER]}}
            return await store.run(read)
        finally:
            await store.close()
    return asyncio.run(run())


def test_a_whole_package_change_takes_a_row_for_each_webhook_row_not_each_payment(tmp_path):
    """Five members sent together with a payment of no package, three events to a
    webhook row: the package's change is named twice (once in each row its events went
    into), the other payment once; the netting of the four members left is not the whole
    package's and is named member by member."""
    out = _scenario(tmp_path, events_max=3)
    subject = items.package_subject(PACKAGE)
    sent_rows = sorted(oid for oid, events in out["bodies"].items()
                       if any(state == "sent" for _, state in events))
    assert len(sent_rows) == 2
    named = out["named"][:-1]  # the last: copied by leave_group (below)
    assert [(oid, pid, state) for oid, pid, state in named if state == "sent"] == [
        (sent_rows[0], subject, "sent"), (sent_rows[1], subject, "sent"),
        (sent_rows[1], OTHER, "sent")]
    netted = [pid for _, pid, state in named if state == "netted"]
    assert netted == MEMBERS[1:]


def test_told_finds_each_payments_own_row_among_its_packages(tmp_path):
    """Each member is told of `sent` by the one row whose events name it; the member
    that left the package afterwards keeps its rows as its own."""
    out = _scenario(tmp_path, events_max=3)
    carrying = {(pid, state): oid for oid, events in out["bodies"].items()
                for pid, state in events}
    for pid in MEMBERS[1:]:
        assert out["told"][pid] == [("sent", carrying[pid, "sent"]),
                                    ("netted", carrying[pid, "netted"])]
    assert out["told"][MEMBERS[0]] == [("sent", carrying[MEMBERS[0], "sent"]),
                                       ("cancelled", carrying[MEMBERS[0], "cancelled"])]
    assert out["told"][OTHER] == [("sent", carrying[OTHER, "sent"])]
    assert (out["named"][-1][1:]) == (MEMBERS[1], "sent")  # copied by leave_group


def test_one_row_holds_a_whole_package_change(tmp_path):
    """Events enough for the package in one row: one row named for the five members."""
    out = _scenario(tmp_path, events_max=500)
    sent = [(pid, state) for _, pid, state in out["named"] if state == "sent"]
    assert sent[:2] == [(items.package_subject(PACKAGE), "sent"), (OTHER, "sent")]
    assert all(out["told"][pid][0][0] == "sent" for pid in MEMBERS)
