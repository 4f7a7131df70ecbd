"""`serve --simulate` on a virtual clock: the simulated NPC's clock against the gateway's.

The two start from one clock spec (its start, anchor and rate) and so read alike. `POST
<npc>/sim/clock` moves the simulated NPC's clock only: `paygate demo` moves the
gateway's own alongside, but nothing moves a running `serve --simulate` gateway's, so
after such a move the NPC announces its phases (ccms.801) by its time while the gateway
closes its day by its own, and a restart on the folder may be refused (a clock before
the stored work date). The gateway's clock is not moved from outside on purpose; this
check says when the two part, one warning line per parting, naming both instants and
the difference, so the operator knows to start both again on one clock.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import aiohttp

from gateway import logs

# Between looks. A look asks the simulator once, on loopback.
LOOK_EVERY_S = 5.0
# Business seconds the two clocks may differ by before a warning: a look's round trip
# on a fast clock (60 times real time: one real second is a business minute).
DIFFERENCE_MAX_S = 120.0
log = logging.getLogger("paygate.sim_clock")


async def look(harness: Any) -> tuple[datetime, datetime, float]:
    """The simulated NPC's now, the gateway's (read as the answer came) and how many
    business seconds the NPC's is ahead (negative: behind)."""
    answer = await harness.sim("GET", "/sim/stats")
    gateway_now = harness.gateway.clock.now()
    npc_now = datetime.fromisoformat(answer["now"])
    return npc_now, gateway_now, (npc_now - gateway_now).total_seconds()


async def watch(harness: Any) -> None:
    """Look every LOOK_EVERY_S until cancelled; warn once each time the clocks part
    (and say when they read alike again). A failed look is logged and tried again."""
    parted = False
    while True:
        await asyncio.sleep(LOOK_EVERY_S)
        try:
            npc_now, gateway_now, ahead_s = await look(harness)
        except (TimeoutError, OSError, RuntimeError, ValueError, KeyError,
                aiohttp.ClientError) as exc:
            log.warning("event=sim_clock_check_failed error=%s", logs.value(repr(exc)))
            continue
        if abs(ahead_s) > DIFFERENCE_MAX_S and not parted:
            log.warning("event=simulated_npc_clock_differs npc_now=%s gateway_now=%s "
                        "npc_ahead_s=%d message=%s", npc_now.isoformat(),
                        gateway_now.isoformat(), round(ahead_s), logs.value(
                            "the simulated NPC's clock was moved (POST /sim/clock) and "
                            "the gateway's was not: its phases and the gateway's day no "
                            "longer agree; start both again on one clock"))
        elif abs(ahead_s) <= DIFFERENCE_MAX_S and parted:
            log.info("event=simulated_npc_clock_agrees npc_now=%s gateway_now=%s",
                     npc_now.isoformat(), gateway_now.isoformat())
        parted = abs(ahead_s) > DIFFERENCE_MAX_S
