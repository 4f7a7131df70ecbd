"""A gateway on its own event loop in a background thread, for tests that talk to it
over real HTTP from synchronous code (requests-style clients, schemathesis)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import requests

from gateway.api import sign_request
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.ops.testing import LoopThread
from ledger.testing import customer_account

CLIENT, SECRET = "core", "s3cret-core-client"
OTHER, OTHER_SECRET = "branch-app", "s3cret-branch-client"


@dataclass
class LiveGateway:
    data_dir: Path
    api_keys: dict[str, str] = field(default_factory=dict)
    loop: LoopThread = field(default_factory=LoopThread)
    gw: Gateway | None = None
    payer: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # others than the defaults
    payer_name: str = "示例客户"  # the name the payer's account is held under

    def start(self) -> "LiveGateway":
        clock = ManualClock(datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI))
        self.gw = Gateway(Settings(data_dir=str(self.data_dir), port=0,
                                   npc_url="http://127.0.0.1:9/link/inbound",
                                   api_keys=dict(self.api_keys), **self.settings),
                          clock=clock)
        self.loop.run(self.gw.start())
        self.payer = customer_account(1, "corporate")

        def setup(tx: Any) -> None:
            self.gw.ledger.open_customer_account(tx, self.payer, self.payer_name, "corporate",
                                                 "2026-12-07")
            self.gw.ledger.deposit(tx, "test:deposit", self.payer, 10**10, "2026-12-07")
        self.loop.run(self.gw.store.run(setup))
        return self

    @property
    def url(self) -> str:
        return self.gw.url

    def query(self, sql: str, params: tuple = ()) -> Any:
        return self.loop.run(self.gw.store.run(lambda tx: tx.query(sql, params)))

    def execute(self, sql: str, params: tuple = ()) -> int:
        """A statement that returns no rows (an UPDATE, say); the rows it changed."""
        return self.loop.run(self.gw.store.run(lambda tx: tx.execute(sql, params)))

    def entries(self) -> int:
        return self.loop.run(self.gw.store.run(self.gw.ledger.entry_count))

    def stop(self) -> None:
        if self.gw is not None:
            self.loop.run(self.gw.stop())
        self.loop.close()


def two_clients(tmp_path_factory: Any, name: str, payer_name: str = "示例客户"
                ) -> Iterator["LiveGateway"]:
    """A gateway process with two core-system clients (CLIENT and OTHER), for a module's
    tests (a module-scoped fixture yields from it); its payer's account held under
    `payer_name`."""
    g = LiveGateway(tmp_path_factory.mktemp(name), payer_name=payer_name,
                    api_keys={CLIENT: SECRET, OTHER: OTHER_SECRET}).start()
    try:
        yield g
    finally:
        g.stop()


EXAMPLE_HOLDER = "示例一号贸易有限公司"  # the payer of `ready_example`


def example_payer(tmp_path_factory: Any, name: str) -> Iterator["LiveGateway"]:
    """A gateway process whose payer's account is held under the name the example
    hvps.111 (`ready_example`) gives its payer, for a module's tests (a module-scoped
    fixture yields from it)."""
    g = LiveGateway(tmp_path_factory.mktemp(name), payer_name=EXAMPLE_HOLDER).start()
    try:
        yield g
    finally:
        g.stop()


def signed_headers(client: str, secret: str, method: str, path: str, body: bytes,
                   stamp: str | None = None, idempotency_key: str | None = None
                   ) -> dict[str, str]:
    """A request's credentials, signed over its Idempotency-Key too (sent by the caller);
    the timestamp carries microseconds, so two requests alike still sign differently."""
    stamp = stamp or f"{time.time():.6f}"
    return {"X-Client-Id": client, "X-Timestamp": stamp,
            "X-Signature": sign_request(secret, stamp, method, path, body, idempotency_key)}


def post_signed(base: str, path: str, body: bytes, client: str = CLIENT,
                secret: str = SECRET, **headers: str) -> requests.Response:
    all_headers = signed_headers(client, secret, "POST", path, body,
                                 idempotency_key=headers.get("Idempotency-Key"))
    all_headers.update(headers)
    all_headers.setdefault("Content-Type", "application/json")
    return requests.post(base + path, data=body, headers=all_headers, timeout=10)


def ready_example(msg_id: str, *swaps: tuple[bytes, bytes]) -> bytes:
    """The example hvps.111 (payer customer_account(1), 150,000.00 yuan) under MsgId
    `msg_id`, with an EndToEndId of its own and each (old, new) of `swaps` made."""
    raw = resources.files("gateway").joinpath(
        "examples", "hvps.111_urgent-goods-payment.xml").read_bytes()
    raw = raw.replace(b"<MsgId>2026120790000001</MsgId>", f"<MsgId>{msg_id}</MsgId>".encode())
    raw = raw.replace(b"<EndToEndId>99910000002720261207900000000001",
                      f"<EndToEndId>999100000027202612079{msg_id[-11:]}".encode())
    for old, new in swaps:
        assert old in raw, old
        raw = raw.replace(old, new)
    return raw
