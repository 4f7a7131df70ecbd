"""The shared CNAPS2 samples addressed to us go through the gateway's link inbound as
real input: taken, acknowledged with a ccms.990, and processed by their handler.

The samples carry placeholder signatures, so the gateway is configured as CONTRACT.md §1
says for tests: those senders' signatures are marked unverified. Context checks (work
date, duplicates) are not set, as the samples are dated 2024-05-20."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import Settings
from gateway.messages import envelope as env_mod

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "cnaps" / "samples"
OURS = "999100000019"


def inbound_samples() -> list[Path]:
    if not SAMPLES.exists():
        return []
    found = []
    for path in sorted(SAMPLES.glob("*.xml")):
        header = env_mod.decode(path.read_bytes()).header
        if header.orig_receiver == OURS and header.direction == "D":
            found.append(path)
    return found


@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/cnaps/samples is not beside "
                    "the checkout")
def test_inbound_samples_are_taken_and_processed(tmp_path):
    """Every inbound sample for our bank is taken, acknowledged and processed or, for a
    type the gateway does not handle, refused by name, never crashing anything."""
    samples = inbound_samples()
    assert len(samples) >= 4, samples

    async def scenario():
        gw = Gateway(Settings(data_dir=str(tmp_path), port=0, npc_url="http://127.0.0.1:9/x",
                              unverified_senders=["888200000015", "0000"]))
        await gw.start()
        try:
            for path in samples:
                answer = await gw.receive_link(path.read_bytes())
                assert answer["taken"] is True, path.name
            for _ in range(100):
                left = await gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM inbox WHERE state = 'received'", ())[0])
                if left == 0:
                    break
                await asyncio.sleep(0.05)
            handled = set(gw.handlers.table())
            return handled, await gw.store.run(lambda tx: tx.query(
                "SELECT mesg_type, state, outcome FROM inbox ORDER BY id", ())), \
                await gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM outbox WHERE mesg_type = 'ccms.990.001.02'", ())[0])
        finally:
            await gw.stop()

    handled, rows, acks = asyncio.run(scenario())
    assert len(rows) == len(samples)
    for mesg_type, state, outcome in rows:
        if mesg_type in handled:
            assert state == "processed", (mesg_type, outcome)
        else:
            assert state == "refused" and "message_type_not_handled" in outcome
    non_acks = sum(1 for m, _, _ in rows if m != "ccms.990.001.02")
    assert acks == non_acks
