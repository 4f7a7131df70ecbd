"""A gateway that stops after marking a message dead (its outbox row `dead`, its payment
held) and before writing its dead letter leaves work no sweeper takes and no letter to
retry. Start-up recovery (and, later, the sweeper) finds such rows and writes their
letters once; the retry of such a letter sends the payment once."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import keys, recovery
from gateway.ops.web import OPS_KEY
from tests.e2e_support import YUAN, open_account, started, transfer, until, wait_state
from tests.test_link_refused import letters_of, outbox_of

pytestmark = pytest.mark.e2e


def letter_lost_once(gw: Any) -> list[int]:
    """Make the next write of a payment's letter to the dead-letter stream fail, as a
    gateway stopping (or Redis going away) between the commit that marks the work dead
    and the letter does; how many were lost."""
    real = gw.redis.xadd
    lost: list[int] = []

    async def xadd(name: str, fields: dict, *args: Any, **kwargs: Any) -> Any:
        if name == keys.DEAD and fields.get("stream") in keys.HVPS_LANES and not lost:
            lost.append(1)
            raise RedisConnectionError("stopped before the dead letter was written")
        return await real(name, fields, *args, **kwargs)
    gw.redis.xadd = xadd
    return lost


async def outbox_row(gw: Any, outbox_id: int) -> tuple:
    return tuple(await gw.store.run(lambda tx: tx.query_one(
        "SELECT state, attempts FROM outbox WHERE id = ?", (outbox_id,))))


def test_a_dead_message_without_its_letter_gets_one_at_start_up_and_is_sent_once(
        tmp_path, caplog):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            ops = gw.runner.app[OPS_KEY]
            payer = await open_account(h, 1, 1_000 * YUAN)
            lost = letter_lost_once(gw)
            await h.sim("POST", "/sim/faults", {"error_status": 400})
            _, answer = await gw.submit_transfer("core", "lost-letter-1",
                                                 transfer(payer, "100.00"))
            pid = answer["id"]
            await wait_state(h, pid, "held", timeout_s=30)
            await until(lambda: lost, "the letter lost")
            outbox_id, _ = await outbox_of(gw, pid)
            await asyncio.sleep(0.5)
            seen: dict[str, Any] = {"pid": pid, "before": await letters_of(gw, pid),
                                    "row_before": await outbox_row(gw, outbox_id)}
            # The sweeper leaves work dead for less than LETTER_AGE_S: its letter may be
            # on its way from the process that marked it.
            seen["young"] = await recovery.restore_letters(
                gw, "by the sweeper", gw.clock.now() - timedelta(
                    seconds=recovery.LETTER_AGE_S))
            await recovery.recover(gw)  # what a gateway starting again does
            await recovery.recover(gw)  # and once more: still one letter
            seen["after"] = await letters_of(gw, pid)
            await h.sim("POST", "/sim/faults", {"error_status": None})
            letter = seen["after"][0][0]
            seen["retry"] = await ops.console.request(ops.directory.get("op1"), "retry",
                                                      letter)
            await wait_state(h, pid, "settled", timeout_s=30)
            await asyncio.sleep(0.5)
            seen["row_after"] = await outbox_row(gw, outbox_id)
            seen["balance"] = (await gw.store.run(lambda tx: gw.ledger.customer_balance(
                tx, payer, gw.work_date))).available_fen
            return seen

    with caplog.at_level(logging.INFO):
        seen = asyncio.run(scenario())
    pid = seen["pid"]

    assert seen["before"] == [] and seen["row_before"][0] == "dead"
    assert seen["young"] == 0
    assert len(seen["after"]) == 1
    fields = seen["after"][0][1]
    assert fields["payment"] == pid and fields["stream"] in keys.HVPS_LANES
    assert fields["reason"].startswith("refused_at_link: the NPC answered 400")
    assert "written at start-up" in fields["reason"]
    assert seen["retry"]["state"] == "executed"
    assert seen["balance"] == 900 * YUAN  # debited once
    # One attempt refused with the 400, one after the retry: the letter restored twice
    # over is still one letter, and its retry one delivery.
    assert seen["row_after"] == (seen["row_after"][0], 2)
    assert seen["row_after"][0] in ("sent", "acked", "done")
    assert any(r.getMessage().startswith("event=dead_letter_restored") and pid in
               r.getMessage() for r in caplog.records)


def test_an_inbound_message_failed_without_its_letter_gets_one_and_only_that_one(tmp_path):
    """An inbox row marked failed (its processing failed every delivery) whose letter was
    never written gets one at start-up, carrying the error kept in the row; a failed row
    that has its letter is left with that one."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            at = gw.clock.now().isoformat()

            def failed_rows(tx: Any) -> list[int]:
                ids = []
                for n, error in ((1, "ValueError('no such account')"), (2, "lettered")):
                    ids.append(tx.query_one(
                        "INSERT INTO inbox (sender, mesg_type, mesg_id, state, envelope, "
                        "received_at, outcome) VALUES ('0000', 'hvps.111.001.01', ?, "
                        "'failed', ?, ?, ?) RETURNING id",
                        (f"2026120799{n:06d}", b"", at, json.dumps({"error": error})))[0])
                return ids
            lost, lettered = await gw.store.run(failed_rows)
            await gw.redis.xadd(keys.DEAD, {"inbox": str(lettered), "stream": keys.INBOUND,
                                            "entry": "1-1", "reason": "lettered",
                                            "deliveries": "5"})
            await recovery.recover(gw)
            letters = [f for _, f in await gw.redis.xrange(keys.DEAD)]
            return {"lost": [f for f in letters if f.get("inbox") == str(lost)],
                    "lettered": [f for f in letters if f.get("inbox") == str(lettered)]}

    seen = asyncio.run(scenario())

    assert len(seen["lost"]) == 1 and len(seen["lettered"]) == 1
    assert seen["lost"][0]["stream"] == keys.INBOUND
    assert seen["lost"][0]["reason"].startswith("ValueError('no such account'); letter "
                                                "written at start-up")
    assert seen["lettered"][0]["reason"] == "lettered"
