"""The data folder of a one-off run: `paygate demo` and `paygate simulate-day`.

Without `--data` a run works in a new folder under the system's temporary directory
(`paygate-demo-*`, `paygate-day-*`). At the end of a successful run that folder is
removed, unless the run was given `--keep`; a failed run keeps it, so that its logs and
databases can be read. A folder named with `--data` is the operator's own and is never
removed. Either way the run's last progress line says where the data is, or that it was
removed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

KEEP_HELP = ("keep the temporary data folder at the end (by default it is removed after "
             "a successful run; a failed run, or a folder given with --data, is kept)")
DATA_HELP = "data folder, kept at the end (default: a new temporary one, see --keep)"


@dataclass(frozen=True)
class RunFolder:
    path: Path
    temporary: bool
    keep: bool

    @classmethod
    def open(cls, given: str | None, prefix: str, keep: bool) -> RunFolder:
        """The folder named by `--data`, made if missing, or a new temporary one."""
        path = Path(given or tempfile.mkdtemp(prefix=prefix)).resolve()
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
