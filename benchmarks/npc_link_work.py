"""The simulated NPC's CPU per HVPS payment with its link running, without the gateway.

    .venv/bin/python -m benchmarks.npc_link_work [--payments 1000] [--group 32]

`benchmarks/npc_work.py` times the NPC's own calls and leaves its delivery workers out;
this one runs a whole simulator on a manual clock (simulators.testing.simulated: its
delivery workers, the fake bank it POSTs to over HTTP on 127.0.0.1, the simulated payee),
submits signed hvps.111 to its intake `--group` at a time, as the envelopes of one framed
POST, and waits after each group until everything it caused is delivered (`drain`): the
ccms.990 and ccms.900 POSTed to the bank, the credit forwarded to the payee and the
payee's ccms.990 taken. What is timed is the process's CPU over those groups (the fake
bank's share included, the same on both sides of a comparison); the credits are made
beforehand. It prints the microseconds per payment. Run it for the code before and after
a change in turns, several times.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from simulators.testing import simulated


async def measure(payments: int, group: int) -> float:
    """The process CPU per payment, in microseconds."""
    async with simulated(Path(tempfile.mkdtemp(prefix="npc-link-work-"))) as w:
        w.sim.keys.ring.reread_public()
        credits = [w.sender.credit(100) for _ in range(payments)]
        await w.sim.drain()
        began = time.process_time()
        for start in range(0, payments, group):
            await w.sim.intake.submit_many(credits[start:start + group])
            await w.sim.drain()
        cpu_s = time.process_time() - began
        settled = w.sim.stats()["settled"]
    assert settled == payments, f"{settled} of {payments} settled"
    return cpu_s / payments * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--group", type=int, default=32)
    args = parser.parse_args()
    print(f"{asyncio.run(measure(args.payments, args.group)):.0f}")


if __name__ == "__main__":
    main()
