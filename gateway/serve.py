"""`paygate serve`: run the gateway until interrupted.

With `--simulate`, the simulated NPC runs beside it as its own process and Redis is the
embedded one, so that a core system (or curl) can talk to a complete system on loopback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from gateway.app import Gateway
from gateway.clock import clock_from_spec
from gateway.config import Settings
from gateway.harness import Harness


async def serve(settings: Settings, simulate: bool = False) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if simulate:
        data = Path(settings.data_dir).resolve()
        harness = Harness(data, clock_spec=settings.clock, gateway_port=settings.port,
                          settings_overrides={k: v for k, v in asdict(settings).items()
                                              if k not in ("data_dir", "port", "npc_url",
                                                           "keys_dir", "clock")})
        await harness.start()
        gw = harness.gateway
        print(json.dumps({"api": gw.url, "npc": harness.sim_url, "data": str(data)}),
              flush=True)
        await stop.wait()
        await harness.stop()
        return 0
    gw = Gateway(settings, clock=clock_from_spec(settings.clock))
    await gw.start()
    print(json.dumps({"api": gw.url}), flush=True)
    await stop.wait()
    await gw.stop()
    return 0
