"""The data folder of a one-off run: `paygate demo` and `paygate simulate-day`.

Without `--data` a run works in a new folder under the system's temporary directory
(`paygate-demo-*`, `paygate-day-*`). At the end of a successful run that folder is
removed, unless the run was given `--keep`; a failed run keeps it, so that its logs and
databases can be read. A folder named with `--data` is the operator's own and is never
removed. Either way the run's last progress line says where the data is, or that it was
removed.

A run starts its virtual day afresh (the demo's next working day from 08:40, the
simulated day's date from 07:00), so it cannot go on from the data an earlier run left:
the gateway refuses to start on payments and closed work dates later than its clock. A
folder given with `--data` that holds an earlier run's data is refused before anything
starts (`data_folder_holds_earlier_run`), in the error shape of every command.

A run's refusals go to standard error (`print_errors`), as its progress lines do:
standard output carries its summary alone, so `paygate demo > summary.json` never
catches an error in place of one.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import Conflict, Problem


def print_errors(errors: dict[str, Any]) -> None:
    """A run's refusal, in the error shape, on standard error (module doc)."""
    print(json.dumps(errors, ensure_ascii=False), file=sys.stderr, flush=True)


KEEP_HELP = ("keep the temporary data folder at the end (by default it is removed after "
             "a successful run; a failed run, or a folder given with --data, is kept)")
DATA_HELP = ("data folder, new or empty, kept at the end (default: a new temporary one, see "
             "--keep)")
# The parts of a run's folder that the next run would read back: the gateway's data and
# the simulated NPC's, each with its database.
RUN_PARTS = ("gateway", "npc")


@dataclass(frozen=True)
class RunFolder:
    path: Path
    temporary: bool
    keep: bool

    @classmethod
    def open(cls, given: str | None, prefix: str, keep: bool) -> RunFolder:
        """The folder named by `--data`, made if missing, or a new temporary one."""
        path = Path(given or tempfile.mkdtemp(prefix=prefix)).resolve()
        if given is not None:
            refuse_earlier_run(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, given is None, keep)

    def close(self, succeeded: bool) -> str:
        """Remove the folder when the run is done with it; the line that tells the
        operator where the data is, or that it is gone and how to keep it next time."""
        if self.temporary and succeeded and not self.keep:
            shutil.rmtree(self.path)
            return (f"data folder {self.path} removed (give --keep, or --data DIR, to keep "
                    "the logs and databases)")
        if not self.temporary:
            return f"data in {self.path} (the folder given with --data)"
        why = "kept, as --keep asked" if succeeded else "kept, since the run failed"
        return f"data in {self.path} ({why}); remove it with: rm -r {self.path}"


def refuse_earlier_run(path: Path) -> None:
    """Refuse a folder that holds what an earlier run left (`RUN_PARTS`, not empty)."""
    found = [name for name in RUN_PARTS
             if (path / name).is_dir() and any((path / name).iterdir())]
    if not found:
        return
    raise Conflict(Problem(
        "data_folder_holds_earlier_run", "--data", str(path),
        "a new or empty folder, or no --data (a new temporary folder)",
        f"{path} holds the data of an earlier run ({', '.join(f'{n}/' for n in found)}): "
        "a run starts its virtual day afresh and cannot go on from another's, whose "
        "payments and closed work dates are later than its clock. Give a new folder with "
        "--data, or leave --data out (a new temporary folder, kept with --keep); the "
        f"earlier run's logs and databases stay as they are (remove them with: rm -r "
        f"{path})"))
