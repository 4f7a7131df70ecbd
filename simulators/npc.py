"""`paygate simulate npc`: the simulated central-bank node as its own process.

It prints one JSON line, {"npc": "http://127.0.0.1:P"}, on standard output once it is
listening, logs key=value lines on standard error, and stops cleanly on SIGTERM or
SIGINT: the server closes, deliveries in flight end, the database is closed. Whatever
was taken but not yet delivered is delivered at the next start. A second simulator on
a data directory in use is refused (`data_dir_in_use`, status 2).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from gateway import signals
from gateway.clock import clock_from_spec
from gateway.collector import tune_collector
from gateway.datalock import lock_data_dir
from gateway.errors import PaygateError
from simulators import logfmt
from simulators import settings as settings_mod
from simulators.app import Simulator
from simulators.logfmt import event

log = logging.getLogger("npc.main")

# One simulator per data directory: a second one would share the database and settle
# every payment twice (gateway.datalock).
LOCK_FILE = "npc.lock"


async def _serve(settings: settings_mod.Settings) -> int:
    with signals.kept(signal.SIGTERM, signal.SIGINT):
        return await _run(settings)


async def _run(settings: settings_mod.Settings) -> int:
    sim = Simulator(settings, clock_from_spec(settings.clock_spec))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await sim.start()
    tune_collector()  # the simulator makes as many short-lived objects per payment
    print(json.dumps({"npc": sim.url}), flush=True)
    try:
        await stop.wait()
    finally:
        event(log, "stopping")
        await sim.stop()
    return 0


def _lean_log_records() -> None:
    """The key=value lines show no source line, thread or process, so this process does
    not collect them for every record (the logging HOWTO's advice for busy programs):
    under load the simulator writes about seven lines per payment."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def main(argv: list[str]) -> int:
    """Run the simulator until SIGTERM or SIGINT; returns the process exit status."""
    _lean_log_records()
    logfmt.configure(libraries=True)
    try:
        settings = settings_mod.load(argv)
    except SystemExit as exc:  # argparse's usage errors and --help
        return int(exc.code or 0)
    except PaygateError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False), file=sys.stderr)
        return 2
    held = lock_data_dir(settings.data_dir, LOCK_FILE, "simulator",
                         "--data or the simulator's data_dir")
    if isinstance(held, dict):
        print(json.dumps(held, ensure_ascii=False), file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(settings))
    except PaygateError as exc:  # a calendar file or key directory refused at start
        print(json.dumps(exc.to_dict(), ensure_ascii=False), file=sys.stderr)
        return 2
    finally:
        held.close()  # the lock goes with the file (and with the process, however it ends)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
