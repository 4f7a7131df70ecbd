"""Incoming BEPS credit packages without processes: payee accounts in the books, a
beps.121 of credits to them as the NPC forwards it once netted (PR03), and the
item-by-item processing the bulk one replaced, kept as the reference it must equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway import payments
from gateway.beps import incoming, items
from gateway.messages.common import NpcProcessing
from gateway.messages.package import Package, PackageHeader, Transfer
from ledger.testing import customer_account
from tests.beps_support import NOW, ResultGateway, held_items
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH

CREDIT_TYPE = "beps.121.001.01"
NETTING = ("2026-12-12", "03")


def payee_books(tmp_path: Path, count: int, url: str = "sqlite:///:memory:"
                ) -> tuple[Any, ResultGateway]:
    """The gateway's tables and books with `count` open payee accounts, `payee(n)`."""
    db, gw = held_items(tmp_path, [], url=url)
    with db.transaction() as tx:
        for n in range(count):
            gw.ledger.open_customer_account(tx, customer_account(100 + n), payee_name(n),
                                            "personal", NOW.date())
    return db, gw


def payee_name(n: int) -> str:
    return f"收款人{n}"


def credit(n: int, account: str | None = None, name: str | None = None,
           tx_id: str | None = None) -> Transfer:
    """A credit of 1.00 yuan + n fen to payee n (or to the account and name given)."""
    return Transfer(tx_id or f"20261212{n:08d}", "他行客户", f"6222{n:012d}", None,
                    PEER_BRANCH, BRANCH, payee_name(n) if name is None else name,
                    customer_account(100 + n) if account is None else account, None,
                    100 + n, "A100", "02102", "货款" if n % 2 else None)


def package(msg_id: str, transfers: list[Transfer]) -> Any:
    """The decoded beps.121 forwarded once netted, as the handler is given it."""
    pkg = Package(PackageHeader(msg_id, "2026-12-12T22:00:00", PEER, BANK, len(transfers),
                                sum(t.amount_fen for t in transfers)),
                  tuple(transfers),
                  NpcProcessing("PR03", "NEZI0000", None, *NETTING))
    return type("Decoded", (), {
        "obj": pkg, "mtype": type("Type", (), {"code": CREDIT_TYPE})(),
        "header": type("Header", (), {"mesg_id": f"M{msg_id}"})()})()


def credit_one_by_one(tx: Any, gw: ResultGateway, d: Any) -> None:
    """What the handler did before it wrote a package in bulk: each credit recorded,
    posted and changed on its own (the package's row written as the handler writes it)."""
    h, package_id = d.obj.header, f"{d.obj.header.instg_direct}{d.obj.header.msg_id}"
    tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, receiver, "
               "count, total_fen, state, mesg_id, netting_date, netting_round, created_at, "
               "updated_at) VALUES (?, 'in', ?, ?, ?, ?, ?, ?, 'netted', ?, ?, ?, ?, ?)",
               (package_id, CREDIT_TYPE, h.msg_id, h.instg_direct, h.instd_direct, h.count,
                h.total_fen, d.header.mesg_id, *NETTING, NOW.isoformat(), NOW.isoformat()))
    sender = h.instg_direct
    for t in d.obj.transfers:
        if payments.find_by_message(tx, "in", sender, CREDIT_TYPE, t.tx_id) is not None:
            gw.alert(tx, "duplicate_incoming_payment", sender=sender, tx_id=t.tx_id)
            continue
        pid = f"I{sender}{t.tx_id}"
        row = incoming.incoming_row(gw, pid, CREDIT_TYPE, sender, t, NOW)
        payments.insert(tx, row)
        items.add(tx, pid, items.CREDIT_IN, sender, CREDIT_TYPE, t.amount_fen, NOW,
                  package_id=package_id, netting=NETTING)
        result = gw.ledger.credit_incoming_netted(
            tx, f"{pid}:credit", t.creditor_account, t.creditor_name, t.amount_fen,
            gw.work_date.isoformat(), pid,
            other_branch=t.creditor_bank != gw.account_bank)
        detail = {"package": package_id, "netting_date": NETTING[0],
                  "netting_round": NETTING[1]}
        if result.kind == "credited":
            payments.transition(tx, row, "credited", "beps_credited", NOW, gw.notifier,
                                account=result.account_no, **detail)
        else:
            payments.transition(tx, row, "suspense", "beps_to_suspense", NOW, gw.notifier,
                                pending_no=result.pending_no, reason=result.reason,
                                **detail)
