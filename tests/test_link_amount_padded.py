"""A message from the NPC whose amount is written after thousands of zeros is refused by
name (amount_too_long), as every other malformed amount is: taken, acknowledged and
refused with its alert, never left unread for the inbound stream to retry and
dead-letter (Python reads no more than 4,300 digits as a number)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from gateway.app import Gateway
from gateway.config import Settings
from gateway.messages import examples, hvps111
from gateway.messages.envelope import Envelope, Header

OURS, PEER = examples.OUR_BANK, examples.PEER_BANK
PADDED = b"0" * 5_000


def credit_to_us() -> bytes:
    """An hvps.111 another bank sends us, its amount 150000.00 after 5,000 zeros."""
    credit = dataclasses.replace(
        examples.credit_transfer(), instg_direct=PEER, instg_branch=examples.PEER_BRANCH,
        instd_direct=OURS, instd_branch=examples.OUR_BRANCH,
        debtor_agent=examples.PEER_BRANCH, creditor_agent=examples.OUR_BRANCH)
    body = hvps111.build(credit)
    assert body.count(b">150000.00<") == 1
    body = body.replace(b">150000.00<", b">" + PADDED + b"150000.00<")
    header = Header(PEER, "HVPS", OURS, "HVPS", "20240520", "101530", hvps111.MESSAGE_TYPE,
                    "20240520000000000101", "20240520000000000101", direction="D")
    # A placeholder signature: the sender is configured as unverified (CONTRACT.md §1).
    return Envelope(header, "c2lnbmF0dXJl", body).encode()


def test_a_padded_amount_from_the_npc_is_refused_by_name(tmp_path):
    """The credit is taken and refused at once with amount_too_long and its alert."""
    async def scenario() -> tuple[dict[str, Any], list[tuple], list[tuple]]:
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0, npc_url="http://127.0.0.1:9/x",
                              unverified_senders=[PEER]))
        await gw.start()
        try:
            answer = await gw.receive_link(credit_to_us())
            inbox = await gw.store.run(lambda tx: tx.query(
                "SELECT state, outcome FROM inbox WHERE mesg_type = ?",
                (hvps111.MESSAGE_TYPE,)))
            alerts = await gw.store.run(lambda tx: tx.query(
                "SELECT code, detail FROM alerts WHERE code = 'inbound_message_refused'", ()))
            return answer, inbox, alerts
        finally:
            await gw.stop()

    answer, inbox, alerts = asyncio.run(scenario())

    assert answer["taken"] is True
    [(state, outcome)] = inbox
    assert state == "refused"
    assert [e["code"] for e in json.loads(outcome)["errors"]] == ["amount_too_long"]
    assert len(alerts) == 1
