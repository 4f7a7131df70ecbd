"""The simulated NPC's own CPU per HVPS payment, without HTTP and without the gateway.

    .venv/bin/python -m benchmarks.npc_work [--payments 3000]

In `bench e2e` the NPC's CPU per payment follows how busy the machine is and how fast the
gateway sends (fewer envelopes share a POST and a commit when fewer come), so a change of
a few per cent in the NPC's own work is lost in those swings. This drives one simulator
in this process, on a manual clock, through the work an HVPS payment gives it, in the
batches the benchmark's load makes: signed hvps.111 taken 32 to a transaction, each in
its savepoint, as the intake takes a framed POST; the simulated payee handed what was
forwarded to it (its check, its ccms.990 and the NPC's taking of that 990); the NPC's
ccms.990 and ccms.900 to the bank marked delivered in one commit; and the bank's ccms.990
for each ccms.900 taken as the next batch. Only those calls are timed (process CPU): the
bank's messages are made beforehand or outside the timing, with the codec's builders,
so that the figure is the NPC's work alone. It prints the microseconds per payment.

Run it for the code before and after a change in turns (a checkout each, PYTHONPATH set
to it), several times: the machine's other work still moves single runs by several per
cent.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.clock import ManualClock
from gateway.messages import ccms900, ccms990, codec
from gateway.messages import envelope as envelope_mod
from simulators.app import Simulator
from simulators.link import _Ended
from simulators.settings import OUR_BANK
from simulators.store import SENT, SETTLED
from simulators.testing import MONDAY_0900, PEER, BankSender, make_settings

BATCH = 32  # payments in flight at once in the benchmark's load, and a framed POST's share


def _acks_for(sender: BankSender, raws: list[bytes]) -> list[bytes]:
    """The bank's ccms.990 for each ccms.900 among the NPC's messages, built by the codec."""
    acks = []
    for raw in raws:
        header = envelope_mod.decode_header(raw[:envelope_mod.HEADER_LEN])
        if header.mesg_type != ccms900.MESSAGE_TYPE:
            continue
        body = ccms990.build(ccms990.CommConf(
            orig_sender=header.orig_sender, orig_send_date=header.send_date,
            mt=header.mesg_type, msg_id=header.mesg_id, msg_ref_id=header.mesg_ref_id))
        acks.append(codec.encode(sender.header(ccms990.MESSAGE_TYPE), body, None, sign=False))
    return acks


def _take(sim: Simulator, raws: list[bytes]) -> None:
    """Envelopes taken as the intake takes a POST's: one transaction, a savepoint each."""
    with sim.store.transaction():
        for raw in raws:
            sim.intake._take_one(raw)


async def measure(payments: int) -> float:
    """The NPC's process CPU per payment, in microseconds."""
    root = Path(tempfile.mkdtemp(prefix="npc-work-"))
    clock = ManualClock(MONDAY_0900)
    settings = make_settings(root, banks={OUR_BANK: "http://127.0.0.1:9/link/inbound"})
    sim = Simulator(settings, clock)
    sim._initialise()
    sender = BankSender(settings.keys_dir, clock)
    sim.keys.ring.reread_public()
    credits = [sender.credit(100) for _ in range(payments)]
    payee = sim._peer_handler(sim.peers[PEER])
    cpu_s, acks = 0.0, []
    for start in range(0, payments, BATCH):
        began = time.process_time()
        _take(sim, acks + credits[start:start + BATCH])
        sim.link._hand_over(payee, sim.store.due(PEER, BATCH * 2, 0.0))
        rows = sim.store.due(OUR_BANK, BATCH * 8, 0.0)
        sim.link._mark([_Ended(row.seq, SENT, row.attempts + 1) for row in rows])
        cpu_s += time.process_time() - began
        acks = _acks_for(sender, [row.raw for row in rows])
    began = time.process_time()
    _take(sim, acks)
    cpu_s += time.process_time() - began
    settled = sim.store.count_status(SETTLED)
    sim.store.close()
    assert settled == payments, f"{settled} of {payments} settled"
    return cpu_s / payments * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=3000)
    args = parser.parse_args()
    print(f"{asyncio.run(measure(args.payments)):.0f}")


if __name__ == "__main__":
    main()
