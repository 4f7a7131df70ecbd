"""Our debit (beps.127) past its receipt deadline is never told final and then paid.

At the package's return deadline (PKGRtrLtd) a debit without its beps.128 stays `sent`:
the deadline is the payer bank's, not the outcome, and a receipt may still come. It is
marked (reason `debit_receipt_overdue`, history `beps_debit_receipt_overdue`), raised to
operators, and a late receipt settles it as any receipt would: paid, it is `netted` and
our customer credited once; refused, it is `rejected`. Only operators give it up
(`debit_give_up`, a second person approving, the note saying why): then it is `rejected`,
and a paid receipt arriving after that goes to suspense under a pending write-off
number, never to the customer the core system was told was not paid, with a critical
alert (docs/beps.md, "Debits")."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway import critical, dialect, payments, store
from gateway.beps import build, debit_deadline, debits_out, items, packer, schema
from gateway.beps.settings import BepsSettings
from gateway.exceptions import schema as exc_schema
from gateway.messages import beps128
from gateway.messages.common import NpcProcessing, OriginalRef
from gateway.messages.package import PackageHeader
from gateway.messages.signing import KeyRing, write_keypair
from ledger.testing import customer_account, fresh_books
from tests.beps_support import NOW, ResultGateway
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH

CREDITOR_NAME = "示例燃气公司"
DEADLINE_PASSED = NOW + timedelta(days=3, minutes=1)
LATE = DEADLINE_PASSED + timedelta(hours=2)


class DebitGateway(ResultGateway):
    """The stub gateway, alerts kept with their detail and status changes told to the
    core system's webhook (written to the outbox as the gateway writes them)."""

    def __init__(self, keyring: KeyRing, led: Any) -> None:
        super().__init__(keyring, led)
        self.notifier = payments.Notifier(webhook=True)
        self.raised: list[tuple[str, dict[str, Any]]] = []
        self.own_banks = frozenset({BANK, BRANCH})

    def alert(self, tx: Any, code: str, **detail: Any) -> int:
        super().alert(tx, code, **detail)
        self.raised.append((code, detail))
        return int(tx.query_one("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?) "
                                "RETURNING id", (NOW.isoformat(), code,
                                                 json.dumps(detail, default=str)))[0])


@contextlib.contextmanager
def work(db: Any) -> Iterator[Any]:
    """A transaction as Store.run gives one: stream entries wanted after its commit (the
    webhook rows' pushes) are collected, and dropped here, where no Redis runs."""
    store._local.entries = []
    try:
        with db.transaction() as tx:
            yield tx
    finally:
        del store._local.entries


def debits_sent(tmp_path: Path, amounts: list[int]) -> tuple[Any, DebitGateway, str, list[str]]:
    """Our debits for one creditor, packed into one beps.127 and sent at NOW."""
    db, led = fresh_books("sqlite:///:memory:", clearing_fen=10**9)
    write_keypair(tmp_path, BANK)
    gw = DebitGateway(KeyRing.load(tmp_path, [BANK]), led)
    creditor = customer_account(4, "corporate")
    ids = []
    with work(db) as tx:
        dialect.install(tx, store.SCHEMA + critical.TABLES)
        schema.install(tx)
        exc_schema.create_tables(tx)
        led.open_customer_account(tx, creditor, CREDITOR_NAME, "corporate", NOW.date())
        for n, amount in enumerate(amounts):
            debit = debits_out.Debit(creditor, CREDITOR_NAME, BRANCH, f"62220000000{n:05d}",
                                     "对手客户", PEER_BRANCH, amount, f"XY-{n}", "01400", None)
            ids.append(debits_out.record(tx, gw, debit, PEER, NOW)["id"])
        outbox = packer.seal_due(tx, gw, BepsSettings(), "stream", NOW, force=True)
        packer.claim(tx, gw, outbox[0], NOW)
        package_id = tx.query_one("SELECT id FROM beps_packages WHERE msg_type = ?",
                                  (build.DEBIT_TYPE,))[0]
    return db, gw, package_id, ids


def receipt(db: Any, package_id: str, statuses: list[str], msg_id: str = "2026121599000001",
            netting_round: str = "05") -> Any:
    """The payer bank's beps.128 answering every debit of the package in order, as the
    NPC forwards it once netted (PR03, in `netting_round`)."""
    with db.transaction() as tx:
        debits = items.package_payments(tx, package_id)
    lines = tuple(
        beps128.ReceiptLine(p["tx_id"], PEER_BRANCH, BRANCH, p["amount_fen"], status,
                            None if status == beps128.PAID else "RJ02",
                            None if status == beps128.PAID else "余额不足")
        for p, status in zip(debits, statuses))
    paid = [line for line in lines if line.status == beps128.PAID]
    obj = beps128.DebitReceipt(
        PackageHeader(msg_id, LATE.isoformat(), PEER, BANK, len(lines),
                      sum(line.amount_fen for line in lines)),
        OriginalRef(package_id[12:], BANK, build.DEBIT_TYPE), len(paid),
        sum(line.amount_fen for line in paid), lines,
        NpcProcessing("PR03", "NEZI0000", netting_date=LATE.date().isoformat(),
                      netting_round=netting_round))
    return type("Decoded", (), {"obj": obj})()


def handle(db: Any, gw: DebitGateway, decoded: Any, at: datetime) -> Any:
    with work(db) as tx:
        return debits_out.on_receipt(tx, gw, decoded, at)


def expire(db: Any, gw: DebitGateway, at: datetime) -> int:
    with work(db) as tx:
        return debit_deadline.mark_overdue(tx, gw, at)


def told(db: Any, payment_id: str) -> list[str]:
    """The states the core system's webhook was given for the payment, in order."""
    with db.transaction() as tx:
        return [t["state"] for t in payments.told(tx, payment_id)]


def history(db: Any, payment_id: str) -> list[tuple[str, str]]:
    with db.transaction() as tx:
        p = payments.get(tx, payment_id)
        return [(e["state"], e["event"]) for e in payments.history(tx, p["id"])]


def books(db: Any, gw: DebitGateway, account: str) -> tuple[int, bool, list[Any]]:
    """The account's balance, whether the books balance, and the open suspense items."""
    with db.transaction() as tx:
        balance = gw.ledger.account(tx, account, gw.work_date).balance_fen
        return (balance, gw.ledger.trial_balance(tx).balanced,
                gw.ledger.open_suspense(tx, gw.work_date))


def test_deadline_keeps_the_debit_sent_and_a_late_paid_receipt_credits_once(tmp_path):
    """The deadline passes: the debit stays `sent` with the reason debit_receipt_overdue,
    operators are told, and the core system hears nothing final. The payer bank's paid
    receipt then arrives: the debit is netted, the creditor credited once, the books
    balance, and the core system was never told `rejected`."""
    db, gw, package_id, (pid,) = debits_sent(tmp_path, [120_00])
    creditor = customer_account(4, "corporate")

    overdue = expire(db, gw, DEADLINE_PASSED)
    with db.transaction() as tx:
        at_deadline = payments.public_view(payments.get(tx, pid))
        package_state = tx.query_one("SELECT state FROM beps_packages WHERE id = ?",
                                     (package_id,))[0]
    again = expire(db, gw, DEADLINE_PASSED + timedelta(minutes=5))

    assert overdue == 1 and again == 0
    assert at_deadline["state"] == "sent"
    assert at_deadline["reason"] == "debit_receipt_overdue"
    assert package_state == "overdue"
    assert [c for c, _ in gw.raised] == ["debit_receipt_overdue"]
    assert told(db, pid) == ["sent"]

    handle(db, gw, receipt(db, package_id, [beps128.PAID]), LATE)
    handle(db, gw, receipt(db, package_id, [beps128.PAID]), LATE)  # delivered twice
    balance, balanced, suspense = books(db, gw, creditor)
    with db.transaction() as tx:
        after = payments.public_view(payments.get(tx, pid))

    assert after["state"] == "netted" and after["reason"] is None
    assert balance == 120_00 and balanced and suspense == []
    assert told(db, pid) == ["sent", "netted"]
    assert ("sent", "beps_debit_receipt_overdue") in history(db, pid)
    assert "rejected" not in [state for state, _ in history(db, pid)]


def test_a_late_refusal_rejects_the_overdue_debit_with_the_payer_banks_reason(tmp_path):
    """A refusal arriving after the deadline ends the debit as any refusal does, with
    the payer bank's code: the first final state the core system hears of."""
    db, gw, package_id, (paid, refused) = debits_sent(tmp_path, [50_00, 70_00])
    expire(db, gw, DEADLINE_PASSED)

    handle(db, gw, receipt(db, package_id, [beps128.PAID, "PR09"]), LATE)
    balance, balanced, _ = books(db, gw, customer_account(4, "corporate"))
    with db.transaction() as tx:
        views = {pid: payments.public_view(payments.get(tx, pid)) for pid in (paid, refused)}

    assert views[paid]["state"] == "netted"
    assert views[refused]["state"] == "rejected"
    assert views[refused]["reason"].startswith("RJ02")
    assert told(db, refused) == ["sent", "rejected"]
    assert balance == 50_00 and balanced


def overdue_alerts(db: Any) -> list[tuple[str | None, str | None]]:
    """Who closed each `debit_receipt_overdue` (None: open), with the note."""
    with db.transaction() as tx:
        return [tuple(r) for r in tx.query(
            "SELECT k.by, k.note FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
            "WHERE a.code = 'debit_receipt_overdue' ORDER BY a.id", ())]


def test_the_overdue_alert_closes_once_every_debit_of_its_package_is_answered(tmp_path):
    """A receipt answering one debit of two leaves the alert open; the one answering the
    other closes it, by the gateway, the note naming that receipt."""
    db, gw, package_id, _ = debits_sent(tmp_path, [50_00, 70_00])
    expire(db, gw, DEADLINE_PASSED)

    handle(db, gw, receipt(db, package_id, [beps128.PAID]), LATE)
    after_one = overdue_alerts(db)
    handle(db, gw, receipt(db, package_id, [beps128.PAID, "PR09"], "2026121599000002", "06"),
           LATE)
    after_both = overdue_alerts(db)

    assert after_one == [(None, None)]
    [(by, note)] = after_both
    assert by == "gateway" and package_id in note and "2026121599000002" in note


def test_a_second_paid_receipt_for_a_debit_paid_already_moves_nothing(tmp_path):
    """Another receipt (under another MsgId) paying a debit netted already credits
    nothing again and does not move the debit to another round; operators are told."""
    db, gw, package_id, (pid,) = debits_sent(tmp_path, [30_00])
    handle(db, gw, receipt(db, package_id, [beps128.PAID]), LATE)

    handle(db, gw, receipt(db, package_id, [beps128.PAID], "2026121599000002", "06"), LATE)
    balance, balanced, suspense = books(db, gw, customer_account(4, "corporate"))
    with db.transaction() as tx:
        rounds = tx.query("SELECT netting_round FROM beps_items WHERE payment_id = ?", (pid,))

    assert balance == 30_00 and balanced and suspense == []
    assert rounds == [("05",)]
    assert [c for c, _ in gw.raised] == ["debit_receipt_line_not_applied"]
    assert told(db, pid) == ["sent", "netted"]


def test_every_receipt_line_is_kept_with_what_it_did(tmp_path):
    """The receipt's lines, as the package view lists them: paid and netted, refused and
    rejected with the payer bank's code. A later receipt refusing both moves neither:
    the debit paid already is not refused (its line says so and operators are told),
    the one rejected already keeps its state with the second refusal in its history."""
    db, gw, package_id, (paid, refused) = debits_sent(tmp_path, [50_00, 70_00])
    expire(db, gw, DEADLINE_PASSED)
    handle(db, gw, receipt(db, package_id, [beps128.PAID, "PR09"]), LATE)
    handle(db, gw, receipt(db, package_id, ["PR09", "PR09"], "2026121599000002"), LATE)
    first, second = (f"{PEER}2026121599000001", f"{PEER}2026121599000002")
    with db.transaction() as tx:
        lines = {r: [(line["payment_id"], line["status"], line["reject_code"],
                      line["outcome"]) for line in debits_out.receipt_lines(tx, r, 10)]
                 for r in (first, second)}
        last = debits_out.last_receipt_line(tx, paid)

    assert lines[first] == [(paid, "PR02", None, "netted"),
                            (refused, "PR09", "RJ02", "rejected")]
    assert lines[second] == [(paid, "PR09", "RJ02", "not_applied"),
                             (refused, "PR09", "RJ02", "refused_after_end")]
    assert last == {"receipt": second, "status": "PR09", "reject_code": "RJ02",
                    "reject_info": "余额不足", "outcome": "not_applied"}
    assert [d["payment"] for c, d in gw.raised
            if c == "debit_receipt_line_not_applied"] == [paid]
    assert history(db, refused)[-1] == ("rejected", "beps_debit_refused_after_end")
    assert told(db, paid) == ["sent", "netted"] and told(db, refused) == ["sent", "rejected"]
