"""BEPS test support without processes: a stub gateway with the books, keys and clock
the BEPS modules use, payments as the intake stores them, and a package of held credits
sealed (and sent) the way the packer does it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway import critical, dialect, payments, store
from gateway.beps import build, items, packer, results, schema
from gateway.beps.settings import BepsSettings
from gateway.clock import SHANGHAI
from gateway.exceptions import schema as exc_schema
from gateway.messages.ccms900 import CommonConf
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.messages.package import Transfer
from gateway.messages.signing import KeyRing, write_keypair
from ledger.testing import customer_account, fresh_books
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH

NOW = datetime(2026, 12, 12, 23, 0, tzinfo=SHANGHAI)


@dataclass
class StubSettings:
    bank_code: str = BANK
    queued_query_after_s: float = 600.0   # the exceptions sweep's, as gateway.config has them
    queued_queries_per_sweep_max: int = 20


@dataclass
class StubGateway:
    keyring: KeyRing
    settings: StubSettings = field(default_factory=StubSettings)
    notifier: payments.Notifier = field(default_factory=payments.Notifier)
    account_bank: str | None = BRANCH  # the branch keeping the ledger's accounts


class ResultGateway(StubGateway):
    """A stub with what the result handler needs: books, a clock, alerts."""

    def __init__(self, keyring: KeyRing, led: Any) -> None:
        super().__init__(keyring)
        self.ledger, self.work_date, self.alerts = led, NOW.date(), []
        self.endings: list[tuple[str, str]] = []
        self.clock = type("Fixed", (), {"now": staticmethod(lambda: NOW)})()

    def alert(self, tx: Any, code: str, **detail: Any) -> None:
        self.alerts.append(code)

    def ended_unsettled(self, tx: Any, payment: dict[str, Any], status: str,
                        reason: str | None, now: datetime) -> None:
        """Gateway.ended_unsettled tells its extensions; this stub has none, and notes
        the ending."""
        self.endings.append((payment["id"], status))


def credit_row(n: int, at: datetime, msg_type: str = "beps.121.001.01",
               state: str = "accepted") -> dict[str, Any]:
    tx_id = f"20261212{n:08d}"
    return {
        "id": f"P{tx_id}", "direction": "out", "channel": "beps", "state": state,
        "msg_type": msg_type, "msg_id": tx_id, "tx_id": tx_id, "end_to_end_id": tx_id,
        "sender_direct": BANK, "receiver_direct": PEER, "amount_fen": 100 + n,
        "currency": "CNY", "payer_account": "11000000000000000801", "payer_name": "示例客户",
        "payer_bank": BRANCH, "payee_account": f"6222{n:012d}", "payee_name": "对手客户",
        "payee_bank": PEER_BRANCH, "business_type": "A100", "business_kind": "02102",
        "urgency": "normal", "priority": 3, "remittance": ["/H01/货款"], "route": {},
        "work_date": "2026-12-11", "created_at": at.isoformat(), "updated_at": at.isoformat()}


def transfers_of(rows: list[dict[str, Any]]) -> list[Transfer]:
    """The transactions the packer makes of these payments (rows as `credit_row` gives
    them, with the item's agreement if any), read as it reads them from the database."""
    return build.transfers_of([
        tuple(json.dumps(row["remittance"], ensure_ascii=False) if column == "p.remittance"
              else row.get(column[2:]) for column in build.COLUMNS) for row in rows])


def held_package(tmp_path: Path, amounts: list[int], send: bool = True,
                 url: str = "sqlite:///:memory:") -> tuple[Any, ResultGateway, str]:
    """A sealed package of credits whose payer's funds are held, claimed for sending
    unless `send` is false, on a new database at `url`."""
    db, gw = held_items(tmp_path, amounts, url)
    with db.transaction() as tx:
        outbox = packer.seal_due(tx, gw, BepsSettings(), "stream", NOW, force=True)
        if send:
            packer.claim(tx, gw, outbox[0], NOW)
        package_id = tx.query_one("SELECT id FROM beps_packages", ())[0]
    return db, gw, package_id


def held_items(tmp_path: Path, amounts: list[int],
               url: str = "sqlite:///:memory:") -> tuple[Any, ResultGateway]:
    """Credits accepted as the intake stores them, their payer's funds held, waiting to
    be packed, on a new database at `url`."""
    db, led = fresh_books(url, clearing_fen=10**9)
    write_keypair(tmp_path, BANK)
    gw = ResultGateway(KeyRing.load(tmp_path, [BANK]), led)
    payer = customer_account(1)
    with db.transaction() as tx:
        dialect.install(tx, store.SCHEMA)
        critical.install(tx)  # alerts the gateway closes itself
        schema.install(tx)
        exc_schema.create_tables(tx)
        led.open_customer_account(tx, payer, "示例客户", "personal", NOW.date())
        led.deposit(tx, "open", payer, 10**6, NOW.date())
        for n, amount in enumerate(amounts):
            row = dict(credit_row(n, NOW), payer_account=payer, amount_fen=amount)
            row["hold_id"] = str(led.hold(tx, f"{row['id']}:hold", payer, amount,
                                          NOW.date(), row["id"]))
            payments.insert(tx, row)
            items.add(tx, row["id"], items.CREDIT_OUT, PEER, row["msg_type"], amount, NOW)
    return db, gw


def answer(db: Any, gw: ResultGateway, package_id: str, status: str) -> None:
    """The NPC's ccms.900 about the package (PR03 in round 03), handled."""
    with db.transaction() as tx:
        answer_in(tx, gw, package_id, status)


def answer_in(tx: Any, gw: ResultGateway, package_id: str, status: str) -> None:
    """`answer`, handled in the caller's transaction."""
    conf = CommonConf(GroupHeader("1", "", "0000", "0000", BANK, BANK, "BEPS"),
                      OriginalRef(package_id[12:], BANK, "beps.121.001.01"), status,
                      code="NEZI0000", processed_on="2026-12-12", netting_round="03",
                      reject_info=None if status == "PR03" else "why")
    decoded = type("Decoded", (), {"obj": conf})()
    results.on_result(tx, gw, decoded, NOW)
