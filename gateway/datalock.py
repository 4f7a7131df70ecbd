"""One process per data directory: an exclusive lock on a file in it, held for the
process's life and released by the kernel however the process ends.

The gateway holds `paygate.lock` in its data directory (two gateways on one directory
would share one SQLite file and start two embedded Redis servers on one append-only
file); the simulated NPC holds `npc.lock` in its own (two simulators would share one
database and settle every payment twice).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any


def lock_data_dir(data: Path, lock_file: str, who: str, setting: str
                  ) -> IO[str] | dict[str, Any]:
    """The open lock file (keep it open), or the error to print (the error shape) when
    another process holds it or the directory cannot be made. `who` names the kind of
    process ("gateway"), `setting` where the directory is configured."""
    try:
        data.mkdir(parents=True, exist_ok=True)
        lock = open(data / lock_file, "a+")
    except OSError as exc:
        return {"errors": [{
            "code": "data_dir_unusable", "path": "data_dir", "value": str(data),
            "expected": f"a directory this user can create and write (set {setting})",
            "message": f"{data} cannot hold the {who}'s data: {exc.strerror or exc}"}]}
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        return {"errors": [{
            "code": "data_dir_in_use", "path": "data_dir", "value": str(data),
            "expected": f"a data directory no running {who} uses (set {setting})",
            "message": f"{data} is in use by {holder}"}]}
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    return lock
