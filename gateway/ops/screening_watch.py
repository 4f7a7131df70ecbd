"""The screening file watched while the gateway runs: a change that cannot be read is
the bank's own fault, told to the operators, never to the core system.

gateway.ops.review reads the list file again when it changes and, when the change
cannot be read, keeps the last list read well in force (payments are screened against
it, not refused). Nobody would know the list in force is no longer the file's, so this
watch looks at the file every CHECK_EVERY_S (a payment screened looks at it too) and:

- raises the critical alert `screening_file_refused` (gateway.critical: /health says
  `attention`, `paygate ops status` and the page count it) naming the file, the host
  whose copy it read and its problems (the TOML parser's line and column, the list's
  field), once a problem: a restart, another process on the same host or a check after
  a new change of the same fault does not raise a second one; an alert of an earlier
  problem of the same copy is closed as the gateway when another problem replaces it;
- closes its alerts (as the gateway, critical.close_by_gateway) once a good file is
  read again;
- shows the file's state in /health and `ops status` (`view`): `ok`, or `degraded`
  with the problems, since when, and which list stays in force; `ops status` also the
  list in force (counts, since when, its file's sha256);
- raises the critical alert `screening_list_emptied` when a list with no entries is
  taken in place of one with entries: while the gateway runs, or at its start in place
  of the copy of the last good list the data folder keeps (the file emptied while the
  gateway was down: gateway.ops.review.keep_last_good); closed once a list with entries
  is in force again, by any process reading that copy (one started after the alert
  was raised, whose watch never saw the emptying, included).

Each process reads the file at its own path on its own host: processes on several hosts
each have a copy, which can differ (one host's copy mended, another's not yet). So each
alert names its copy (`file` and `host`, the host's name) and is raised, replaced and
closed only by a process reading that copy: one whose copy is good never closes the
alert of a host whose copy is broken, which stays open until that host's copy is read
well (or a supervisor acknowledges it, for a host gone for good). An alert raised before
alerts named their host (no `host`) is closed by any process reading its file well.

A restart while the file is broken starts with the copy of the last good list the data
folder keeps (gateway.ops.review.keep_last_good) and raises the same alert; without a
copy it is refused (gateway.config_values). Either way the alert asks for the file to be
mended, not for a restart.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from gateway import critical
from gateway.errors import PaygateError, Problem
from gateway.ops import review

log = logging.getLogger("paygate.ops")

ALERT_SCREENING_FILE = "screening_file_refused"
# A list emptied while the gateway runs (no name and no account, where the list before
# had some): screening is switched off, every payment passes. Critical, as the refusal
# of a file is, and more so: a refused file still screens with the last good list, an
# emptied one screens nothing. A supervisor acknowledges it (an emptying meant is so
# confirmed by a second person), or the gateway closes it once a list with entries is
# in force again.
ALERT_SCREENING_EMPTIED = "screening_list_emptied"
CHECK_EVERY_S = 1.0  # a payment screened looks at the file too: this is for quiet times


def _told(problems: list[Problem]) -> str:
    return "; ".join(p.to_dict()["message"] for p in problems)


class ScreeningWatch:
    def __init__(self, gw: Any, host: str | None = None) -> None:
        self.gw = gw
        # The host whose copy of the file this process reads (module doc).
        self.host = host if host is not None else socket.gethostname()
        self.raised: tuple[str, str] | None = None  # (file, problem) of the alert raised
        self.since: str | None = None  # the gateway's time the file was first seen bad
        self.checked = False  # whether open alerts of a good file were closed yet
        self.emptied: str | None = None  # the digest of the emptied list alerted for
        # The list with entries (digest, taken since) whose taking closed the open
        # `screening_list_emptied` alerts of this copy.
        self.filled: tuple[str, str] | None = None
        self.clock_given: str | None = None  # the file this gateway's clock was given for

    def give_clock(self) -> None:
        """The gateway's clock tells when a list of the file in force is taken."""
        path = review.list_path(self.gw.settings)
        if self.clock_given != path:
            review.use_clock(path, self.gw.clock.now)
            self.clock_given = path

    def view(self) -> dict[str, Any]:
        """The file's state: `ok` while the list in force is the file's, `degraded` while
        a change of it is refused (with the problems and which list screens meanwhile)."""
        path = review.list_path(self.gw.settings)
        looked = review.looked_at(path)
        # The list in force, since when (the gateway's time) and its file's digest:
        # operators see a list swapped or emptied here, /health (no credentials) shows
        # none of it.
        taken = {"list": looked.taken.view()} \
            if looked is not None and looked.taken is not None else {}
        if looked is None or not looked.problems:
            return {"state": "ok", "file": path, **taken}
        problems, kept = looked.problems, looked.blocked
        return {"state": "degraded", "file": path, "since": self.since, **taken,
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
        self.give_clock()
        path = review.list_path(self.gw.settings)
        try:
            # In a thread: a changed list of ENTRIES_MAX names takes a while to fold, and
            # the event loop serves payments meanwhile.
            await asyncio.get_running_loop().run_in_executor(
                None, review.BlockedList.for_path, path)
        except PaygateError:
            pass  # no list read well yet: its problems are told below
        looked = review.looked_at(path)
        await self._check_emptied(path, looked)
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

    async def _check_emptied(self, path: str, looked: review.ListFile | None) -> None:
        """Raise `screening_list_emptied` once for an emptied list taken into force (by
        its file's digest: a restart or another process raises no second one), and
        close it once the list in force has entries again."""
        taken = looked.taken if looked is not None else None
        if taken is not None and taken.emptied:
            if self.emptied != taken.sha256:
                await self.gw.store.run(lambda tx: self._raise_emptied(tx, path, taken))
                self.emptied = taken.sha256
                # Committed: the copy kept no longer says the list was emptied unalerted.
                await asyncio.to_thread(review.emptied_alerted, path, taken.sha256)
            return
        if taken is not None and (taken.names or taken.accounts) and (
                self.emptied is not None or self.filled != (taken.sha256, taken.since)):
            # Each list with entries taken closes the open alerts of this copy once,
            # whoever raised them: a process started after the alert (its watch never
            # saw the emptying) closes it when the file is refilled.
            await self.gw.store.run(lambda tx: self._close_emptied(tx, path))
            self.filled = (taken.sha256, taken.since)
        self.emptied = None

    def _of_this_copy(self, detail: dict[str, Any], path: str) -> bool:
        """Whether an alert is about the copy of the file this process reads: its file,
        on this host (or on no host named: an alert raised before hosts were)."""
        return detail.get("file") == path and detail.get("host", self.host) == self.host

    def _open_of(self, tx: Any, code: str, path: str) -> list[tuple[int, dict[str, Any]]]:
        return [(alert_id, detail) for alert_id, detail in critical.unclosed(tx, (code,))
                if self._of_this_copy(detail, path)]

    def _raise_emptied(self, tx: Any, path: str, taken: review.Taken) -> None:
        if any(detail.get("sha256") == taken.sha256
               for _, detail in self._open_of(tx, ALERT_SCREENING_EMPTIED, path)):
            return
        self.gw.alert(tx, ALERT_SCREENING_EMPTIED, file=path, host=self.host,
                      sha256=taken.sha256,
                      since=taken.since, previous_names=taken.previous_names,
                      previous_accounts=taken.previous_accounts,
                      problem="the screening list in force is empty: no payment is "
                              "screened against any name or account")

    def _close_emptied(self, tx: Any, path: str) -> None:
        self._close_of(tx, ALERT_SCREENING_EMPTIED, path,
                       "a screening list with entries is in force again")

    def _raise(self, tx: Any, path: str, told: str, problems: list[Problem]) -> None:
        open_ = self._open_of(tx, ALERT_SCREENING_FILE, path)
        if any(detail.get("problem") == told for _, detail in open_):
            return  # raised before (another process on this host, before a restart)
        alert_id = self.gw.alert(
            tx, ALERT_SCREENING_FILE, file=path, host=self.host, problem=told,
            problems=[p.to_dict() for p in problems],
            kept="the last good list screens payments until the file is mended")
        superseded = [i for i, _ in open_]
        if superseded:
            critical.close_by_gateway(tx, superseded, f"the file changed again: alert "
                                      f"{alert_id} tells its problem now",
                                      self.gw.clock.now())

    def _close(self, tx: Any, path: str) -> None:
        self._close_of(tx, ALERT_SCREENING_FILE, path, "the screening file was read well again")

    def _close_of(self, tx: Any, code: str, path: str, note: str) -> None:
        closed = [alert_id for alert_id, _ in self._open_of(tx, code, path)]
        if closed:
            critical.close_by_gateway(tx, closed, f"{note} on host {self.host}",
                                      self.gw.clock.now())
            log.info("event=screening_alerts_closed code=%s file=%s host=%s alerts=%s", code,
                     path, self.host, ",".join(map(str, closed)))
