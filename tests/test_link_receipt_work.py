"""What one link POST of results costs the store and what it leaves: the envelopes'
receipts and processings share one savepoint (none nested for each envelope nor for a
processing) while none fails, the messages received and the 990s answering them are archived by one multi-row INSERT for
the transaction (the 990s' outbox rows by one more), and an envelope whose processing
fails is undone with its receipt and received again alone, left to the inbound stream,
while the others are processed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import Settings
from gateway.messages import ccms900, codec
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.messages.envelope import Header
from simulators.testing import post_envelopes

pytestmark = pytest.mark.sqlite_only(
    "counts the statements the database runs through SQLite's trace hook "
    "(sqlite3 set_trace_callback), which a PostgreSQL connection does not have")

BANK, NPC = "999100000019", "0000"
ACK_TYPE = "ccms.990.001.02"


def _result(n: int) -> bytes:
    """An unsigned ccms.900 from the NPC about a message of ours no payment made."""
    mesg_id = f"20261207{n:012d}"
    header = Header(orig_sender=NPC, orig_sender_sid="HVPS", orig_receiver=BANK,
                    orig_receiver_sid="HVPS", send_date="20261207", send_time="100000",
                    mesg_type=ccms900.MESSAGE_TYPE, mesg_id=mesg_id, mesg_ref_id=mesg_id,
                    direction="D")
    body = ccms900.build(ccms900.CommonConf(
        header=GroupHeader(msg_id=mesg_id, created_at="2026-12-07T10:00:00",
                           instg_direct=NPC, instg_party=NPC, instd_direct=BANK,
                           instd_party=BANK, system="HVPS"),
        original=OriginalRef(msg_id=f"X{n}", instg_party=BANK, mt="hvps.111.001.01"),
        status="PR04", processed_on="2026-12-07"))
    return codec.encode(header, body, None, sign=False)


def _post_traced(tmp_path: Path, envelopes: list[bytes], failing: set[str]) -> tuple:
    """POST `envelopes` to a gateway whose result handler fails for the originals named
    in `failing`; the answer, every statement the database ran meanwhile, the inbox
    and the archive."""
    async def scenario() -> tuple:
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0,
                              npc_url="http://127.0.0.1:9/x", unverified_senders=[NPC]))
        await gw.start()
        try:
            table = gw.handler_table()
            on_result = table[ccms900.MESSAGE_TYPE]

            def handler(tx: Any, decoded: Any, now: Any) -> Any:
                if decoded.obj.original.msg_id in failing:
                    raise RuntimeError("handler fault")
                return on_result(tx, decoded, now)
            table[ccms900.MESSAGE_TYPE] = handler
            seen: list[str] = []
            conn = gw.store._db._conn
            await gw.store.run(lambda tx: conn.set_trace_callback(seen.append))
            answer = await post_envelopes(gw.url, envelopes)
            await gw.store.run(lambda tx: conn.set_trace_callback(None))
            inbox = await gw.store.run(lambda tx: tx.query(
                "SELECT mesg_id, state, length(envelope) FROM inbox WHERE mesg_type = ? "
                "ORDER BY mesg_id", (ccms900.MESSAGE_TYPE,)))
            archive = await gw.store.run(lambda tx: tx.query(
                "SELECT direction, mesg_type, mesg_id, envelope FROM archive "
                "WHERE mesg_type IN (?, ?) ORDER BY id", (ccms900.MESSAGE_TYPE, ACK_TYPE)))
            acks = await gw.store.run(lambda tx: tx.query(
                "SELECT mesg_id FROM outbox WHERE mesg_type = ? ORDER BY id", (ACK_TYPE,)))
            return answer, seen, inbox, archive, [m for (m,) in acks]
        finally:
            await gw.stop()
    return asyncio.run(scenario())


def test_a_posts_results_take_one_savepoint_together_and_one_archive_insert(tmp_path: Path):
    envelopes = [_result(n) for n in (1, 2, 3)]

    (status, body), seen, inbox, archive, acks = _post_traced(tmp_path, envelopes, set())

    assert status == 200 and body == {"taken": 3}
    assert [state for _, state, _ in inbox] == ["processed"] * 3
    # One savepoint for the three inside the work's own (sp1), none inside it.
    savepoints = [sql for sql in seen if sql.startswith("SAVEPOINT")]
    assert savepoints.count("SAVEPOINT sp2") == 1
    assert not [sql for sql in seen if sql.startswith("ROLLBACK")]
    assert not [sql for sql in savepoints if sql not in ("SAVEPOINT sp1", "SAVEPOINT sp2")]
    # The three results and their three 990s archived by one INSERT, the 990s' outbox
    # rows by one more.
    assert len([sql for sql in seen if sql.startswith("INSERT INTO archive")]) == 1
    assert len([sql for sql in seen if sql.startswith("INSERT INTO outbox")]) == 1
    # Each result archived once with its bytes, and each answered by a 990 archived once.
    received = [(m, bytes(e)) for d, t, m, e in archive if d == "in"]
    assert received == [(f"20261207{n:012d}", envelopes[n - 1]) for n in (1, 2, 3)]
    assert [t for d, t, _, _ in archive if d == "out"] == [ACK_TYPE] * 3
    assert sorted(acks) == sorted(m for d, _, m, _ in archive if d == "out")


def test_a_result_whose_processing_fails_is_received_again_alone(tmp_path: Path):
    """The second of three fails in its handler: it is taken, left received without a
    copy of its bytes (the archive keeps them, once) for the inbound stream, and
    answered by its 990; the others are processed."""
    envelopes = [_result(n) for n in (1, 2, 3)]

    (status, body), seen, inbox, archive, acks = _post_traced(tmp_path, envelopes, {"X2"})

    assert status == 200 and body == {"taken": 3}
    assert [(state, size) for _, state, size in inbox] == [
        ("processed", 0), ("received", 0), ("processed", 0)]
    # Taken together first, undone whole by the failure, then taken one by one: the
    # failing one's receipt and processing undone alone and it received again alone.
    assert seen.count("ROLLBACK TO SAVEPOINT sp2") == 2
    assert seen.count("SAVEPOINT sp2") == 1 + 3 + 1
    # Each row once: the first try left nothing behind.
    assert len([sql for sql in seen if sql.startswith("INSERT INTO archive")]) == 1
    received = [m for d, _, m, _ in archive if d == "in"]
    assert received == [f"20261207{n:012d}" for n in (1, 2, 3)]
    assert [t for d, t, _, _ in archive if d == "out"] == [ACK_TYPE] * 3
    assert sorted(acks) == sorted(m for d, _, m, _ in archive if d == "out")
