"""The lines about work put back on the streams (`event=recovered` at start-up or on
taking the lead, `event=swept`) name it: the payments and message ids of the outbox rows,
those taken back from a sender that is gone (sent again: the NPC may acknowledge them as
duplicates), and the inbox rows' messages, at most NAMED_MAX each with the rest counted."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

import pytest

from gateway import dialect, recovery
from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.redisproc import free_port
from gateway.store import SCHEMA
from ledger import connect

MORNING = datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)
# A stream no worker reads: the rows put back on it stay there.
NOWHERE = "paygate:test:nowhere"


def add_outbox(tx, n: int, state: str = "pending") -> int:
    tx.execute("INSERT INTO outbox (payment_id, kind, stream, state, mesg_type, mesg_id, "
               "created_at, updated_at) VALUES (?, 'message', ?, ?, 'hvps.111.001.01', ?, "
               "?, ?)", (f"P{n:02d}", NOWHERE, state, f"M{n:02d}", MORNING.isoformat(),
                         MORNING.isoformat()))
    return tx.query_one("SELECT max(id) FROM outbox", ())[0]


def test_the_rows_put_back_are_named_and_a_long_list_is_cut(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'gateway.db'}")
    with db.transaction() as tx:
        dialect.install(tx, SCHEMA)
        ids = [add_outbox(tx, n) for n in range(1, 13)]
        tx.execute("INSERT INTO inbox (sender, mesg_type, mesg_id, state, envelope, "
                   "received_at) VALUES ('999100000001', 'hvps.111.001.01', 'I01', "
                   "'received', x'00', ?)", (MORNING.isoformat(),))
        inbox = tx.query("SELECT id FROM inbox", ())
        named = recovery.named_work(tx, [(i, NOWHERE) for i in ids], inbox,
                                    [(ids[2], NOWHERE)])
    db.close()

    first = ",".join(f"P{n:02d}" for n in range(1, 11))
    messages = ",".join(f"M{n:02d}" for n in range(1, 11))
    assert named == (f" payments={first},+2 msg_ids={messages},+2 reclaimed=1 "
                     "reclaimed_payments=P03 reclaimed_msg_ids=M03 inbox_msg_ids=I01")


def test_start_up_recovery_names_the_message_a_gone_sender_had_claimed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        gw = Gateway(Settings(data_dir=str(tmp_path / "gw"), port=0,
                              npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                     clock=ManualClock(MORNING))
        await gw.start(serve_http=False)
        try:
            await gw.store.run(lambda tx: add_outbox(tx, 7, state="sending"))
            with caplog.at_level(logging.INFO, logger="paygate.recovery"):
                await recovery.recover(gw)
        finally:
            await gw.stop()

    asyncio.run(scenario())

    line = [r.getMessage() for r in caplog.records if "event=recovered" in r.getMessage()][-1]
    assert " reclaimed=1 reclaimed_payments=P07 reclaimed_msg_ids=M07" in line, line
    # Beside the gateway's own login to the NPC, still pending: the outbox's rows.
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    assert fields["payments"] == "P07", line
    assert "M07" in fields["msg_ids"].split(","), line
