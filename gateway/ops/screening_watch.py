"""The screening file watched while the gateway runs: a change that cannot be read is
the bank's own fault, told to the operators, never to the core system.

gateway.ops.review reads the list file again when it changes and, when the change
cannot be read, keeps the last list read well in force (payments are screened against
it, not refused). Nobody would know the list in force is no longer the file's, so this
watch looks at the file every CHECK_EVERY_S (a payment screened looks at it too) and:

- raises the critical alert `screening_file_refused` (gateway.critical: /health says
  `attention`, `paygate ops status` and the page count it) naming the file and its
  problems (the TOML parser's line and column, the list's field), once a problem: a
  restart, another process or a check after a new change of the same fault does not
  raise a second one; an alert of an earlier problem of the same file is closed as the
  gateway when another problem replaces it;
- closes its alerts (as the gateway, critical.close_by_gateway) once a good file is
  read again;
- shows the file's state in /health and `ops status` (`view`): `ok`, or `degraded`
  with the problems, since when, and which list stays in force.

A restart while the file is broken is refused (gateway.config_values: a screening file
that cannot be read is refused at start), so the alert asks for the file to be mended,
not for a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway import critical
from gateway.errors import PaygateError, Problem
from gateway.ops import review

log = logging.getLogger("paygate.ops")

ALERT_SCREENING_FILE = "screening_file_refused"
CHECK_EVERY_S = 1.0  # a payment screened looks at the file too: this is for quiet times


def _told(problems: list[Problem]) -> str:
    return "; ".join(p.to_dict()["message"] for p in problems)


class ScreeningWatch:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.raised: tuple[str, str] | None = None  # (file, problem) of the alert raised
        self.since: str | None = None  # the gateway's time the file was first seen bad
        self.checked = False  # whether open alerts of a good file were closed yet

    def view(self) -> dict[str, Any]:
        """The file's state: `ok` while the list in force is the file's, `degraded` while
        a change of it is refused (with the problems and which list screens meanwhile)."""
        path = review.list_path(self.gw.settings)
        looked = review.looked_at(path)
        if looked is None or not looked.problems:
            return {"state": "ok", "file": path}
        problems, kept = looked.problems, looked.blocked
        return {"state": "degraded", "file": path, "since": self.since,
                "problems": [p.to_dict() for p in problems],
                "in_force": ("none: payments screened are refused (503) until the file "
                             "is mended") if kept is None else
                            (f"the last good list ({len(kept.names)} names, "
                             f"{len(kept.accounts)} accounts)")}

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:  # logged; the next check tries again
                log.error("event=screening_watch_failed error=%r", exc, exc_info=exc)
            await asyncio.sleep(CHECK_EVERY_S)

    async def check(self) -> None:
        """Look at the file (reading a change), then raise or close the alert."""
        path = review.list_path(self.gw.settings)
        try:
            # In a thread: a changed list of ENTRIES_MAX names takes a while to fold, and
            # the event loop serves payments meanwhile.
            await asyncio.get_running_loop().run_in_executor(
                None, review.BlockedList.for_path, path)
        except PaygateError:
            pass  # no list read well yet: its problems are told below
        looked = review.looked_at(path)
        problems = (looked.problems if looked is not None else None) or []
        if problems:
            told = _told(problems)
            if self.raised != (path, told):
                self.since = self.since or self.gw.clock.now().isoformat()
                await self.gw.store.run(lambda tx: self._raise(tx, path, told, problems))
                self.raised = (path, told)
            return
        if self.raised is not None or not self.checked:
            await self.gw.store.run(lambda tx: self._close(tx, path))
        self.raised, self.since, self.checked = None, None, True

    def _raise(self, tx: Any, path: str, told: str, problems: list[Problem]) -> None:
        open_ = [(alert_id, detail) for alert_id, detail
                 in critical.unclosed(tx, (ALERT_SCREENING_FILE,))
                 if detail.get("file") == path]
        if any(detail.get("problem") == told for _, detail in open_):
            return  # raised before (another process, before a restart)
        alert_id = self.gw.alert(
            tx, ALERT_SCREENING_FILE, file=path, problem=told,
            problems=[p.to_dict() for p in problems],
            kept="the last good list screens payments until the file is mended")
        superseded = [i for i, _ in open_]
        if superseded:
            critical.close_by_gateway(tx, superseded, f"the file changed again: alert "
                                      f"{alert_id} tells its problem now",
                                      self.gw.clock.now())

    def _close(self, tx: Any, path: str) -> None:
        closed = critical.close_where(tx, (ALERT_SCREENING_FILE,), "file", path,
                                      "the screening file was read well again",
                                      self.gw.clock.now())
        if closed:
            log.info("event=screening_file_alerts_closed file=%s alerts=%s", path,
                     ",".join(map(str, closed)))
