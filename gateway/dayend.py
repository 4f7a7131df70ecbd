"""The gateway's day end: reconcile when the NPC ends the day, close the ledger day at
the cut-over.

When HVPS enters end-of-day processing (ccms.801 status 40) the gateway reconciles that
work date over the link: hvps.710/711, and whatever the extensions reconcile at a day
end (`reconcile_at_day_end`: BEPS asks beps.720/721 for every netting date completed
since the last one reconciled, gateway.beps.netting_dates), and lists every difference
as an operator alert. When the work date moves on (the ccms.801 that starts the next
day's preparation), the ledger day of the old date is closed: trial balance checked,
detail ledgers agreeing with the general ledger, no more postings on that date (DOMAIN.md
§6), and the old date is reconciled then if nothing reconciled it yet (a gateway started
during its end of day never saw its 40), or reconciled again if HVPS payments joined it
after its reconciliation (`reconciliations`). Results are kept per work date, the newest
`recon.DAYS_KEPT` only, for the operators, the demo and `simulate-day`, which wait for
them.

Both steps run only in a gateway that sees the work date move. A gateway that was down
(or not leading) over a day end starts on a later work date and would never run them
for the date it missed: at start-up and on taking the lead it looks for such dates
(payments on them, their ledger day still open). The previous work date alone open, it
runs that day end itself once the NPC has left the date (`run_owed`: a later date the NPC
stated, recorded or in a notice that comes); otherwise, or when that notice is overdue,
it raises `day_end_missing` for a new date, naming every such date still open. An operator may then run that day end late (`paygate ops request day-end DATE`,
approved by a supervisor): `close_late` closes the ledger day and reconciles the date.
That is safe because every posting goes on the current work date, never on a past one,
so nothing would have been posted on the missed date had it been closed in time.

The HVPS reconciliation a closed date still needs is durable work (gateway.recon.owe):
recorded as owed in the transaction that closes the ledger day, done when the NPC's
hvps.711 for the date is compared. A process stopped between the two (killed at the
cut-over, before the hvps.710 went) leaves it owed, and `finish_owed`, run at start-up,
on taking the lead and at each tick of the timetable, asks again; a date owed longer than
`recon_answer_overdue_s` raises `day_end_reconciliation_owed` until its answer comes, and
an operator may ask again at once (`hvps_reconcile`, `ask_again`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway import critical, late_entries, recon
from gateway.calendar import BusinessCalendar
from gateway.errors import Conflict, PaygateError, Problem, ValidationFailed
from gateway.recon import DIFFERENCES_LISTED_MAX
from gateway.windows import SOURCE_NOTICE, SOURCE_OPERATOR

log = logging.getLogger("paygate.dayend")

RECON_TIMEOUT_S = 60.0
# How long (the gateway's clock) an owed reconciliation whose last try failed rests before
# `finish_owed` asks again: a link down or an NPC not answering gets one hvps.710 a while,
# not one a tick.
OWED_RETRY_S = 300.0
# The steps of a day end, as a failure names them, and what each waits for.
STEP_CLOSE = "close_ledger_day"
STEP_RECONCILE = "reconcile"
WAITS_FOR_CLOSE = "the database (ledger day close, its reports)"
WAITS_FOR_HVPS = "hvps.711 answer to our hvps.710"
# How far back of the newest stored time a clock may start (check_clock_time): a real-time
# clock stepped back by NTP moves a few seconds at most.
CLOCK_STEP_BACK_ALLOWED_S = 5.0
ALERT_DAY_END_MISSING = "day_end_missing"
LATE_COMMAND = "paygate ops request day-end {day}"
# Payments in these states need nothing more from anyone; the others are left open.
_DONE_STATES = ("settled", "rejected", "cancelled", "returned", "credited")


class DayEnd:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.results: dict[str, dict[str, Any]] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task] = set()
        self._reconciling: set[str] = set()  # dates a step of this run reconciles now
        # What each running step waits for now (a step's key: its name and work date),
        # for the log of its failure.
        self._waiting: dict[tuple[str, str], str] = {}
        # Owed dates whose last try in this run failed: not asked again before then.
        self._owed_retry_at: dict[str, datetime] = {}
        # The previous work date whose day end a restart found owed while the NPC, as
        # last stated, was still on it (`run_owed`): run at the NPC's notice of a later
        # date; `day_end_missing` names it only once the notice is overdue (the time).
        self._awaiting: dict[str, datetime] = {}
        self._awaited_alerted: set[str] = set()
        self._closing: set[str] = set()  # dates an owed day end of this run closes now

    def on_hvps_status(self, status: str, notice_date: date, old_date: date,
                       new_date: date, npc_date: date | None = None) -> None:
        """Called after a ccms.801 has been applied: `status` and `notice_date` as the
        notice announced them, `old_date` and `new_date` the gateway's work date before
        and after (which never goes back: a notice correcting the forecast to an earlier
        date leaves it as it was).

        At 40 the notice's own date is reconciled, never the gateway's later one. When the
        work date moves, the old date's ledger day closes, and the old date is reconciled
        then if nothing reconciled it yet (the gateway started during its end of day).
        `npc_date`: the work date a ccms.801 the gateway took stated (None for the
        timetable's changes): a date awaited since a restart (`run_owed`) before it has
        its day end run now."""
        due = [key for key in self._awaiting
               if npc_date is not None and _left(key, npc_date.isoformat(), status)]
        if due:
            for key in due:
                del self._awaiting[key]
            self._run_owed_now([date.fromisoformat(key) for key in sorted(due)],
                               f"the NPC's ccms.801 of {npc_date.isoformat()}")
        if status == "40":
            self._reconcile_once(notice_date)
        if new_date > old_date:
            self._spawn(self._close_and_catch_up(old_date), STEP_CLOSE, old_date,
                        WAITS_FOR_CLOSE)

    async def run_owed(self) -> list[str]:
        """At start-up and on taking the lead: run by itself the day end a stop over the
        cut-over left owed, as a cut-over seen live runs it (ledger day closed, reports,
        reconciliation), when the only date left open is the previous work date and the
        NPC has left it: the last HVPS status it stated (a ccms.801, or the status
        operators confirmed with it) is of a later date, or the cut-over (15) dated with
        that date (`_left`). When the gateway was following
        the NPC on that date (the last status stated is of that date or before), its
        timetable's cut-over is only a forecast, and the day end waits for the NPC's
        notice of a later date (`on_hvps_status`), as a live one does. Several dates
        open (down over more than a day end) are left to `check_missing` and the
        operators. The timetable alone never runs it: without a status of the NPC
        recorded, the date is alerted at once (and still run by the NPC's notice, should
        it come). The dates run now."""
        current = self.gw.work_date

        def read(tx: Any) -> tuple[list[str], tuple[str, str] | None]:
            return ([d["work_date"] for d in missing_day_ends(tx, current)],
                    npc_stated(tx))
        missing, said = await self.gw.store.run(read)
        previous = self.gw.calendar.previous_working_day(current).isoformat()
        if missing != [previous] or previous in self._closing:
            return []
        window = self.gw.window
        if window.last_notice_at is not None and window.source == SOURCE_NOTICE:
            said = (window.work_date.isoformat(), window.code)  # a notice this run took
        stated = said[0] if said else None
        if said is None or not _left(previous, *said):
            # Only the timetable says HVPS left the date: the NPC may be running late.
            # Following the NPC on that date, its notice is awaited a while before the
            # date is alerted; without a status of the NPC recorded at all, it is alerted
            # at once. Either way its notice, when it comes, runs the day end.
            grace = 0.0 if stated is None else self.gw.window.notice_grace_s
            self._awaiting.setdefault(previous,
                                      self.gw.clock.now() + timedelta(seconds=grace))
            log.info("event=day_end_awaits_npc work_date=%s npc_work_date=%s "
                     "missing_alert_after=%s", previous, stated or "none",
                     self._awaiting[previous].isoformat())
            return []
        self._run_owed_now([date.fromisoformat(previous)], f"the NPC's status of {stated}")
        return [previous]

    def _run_owed_now(self, days: list[date], how: str) -> None:
        """Run the owed day ends of `days`, oldest first, in the background."""
        days = [day for day in days if day.isoformat() not in self._closing]
        if not days:
            return
        self._closing.update(day.isoformat() for day in days)
        log.warning("event=day_end_owed_run work_dates=%s left_by=%s",
                    ",".join(day.isoformat() for day in days), _quoted(how))
        self._spawn(self._close_owed(days, how), STEP_CLOSE, days[-1], WAITS_FOR_CLOSE)

    async def _close_owed(self, days: list[date], how: str) -> None:
        try:
            for day in days:
                await self._close_and_catch_up(day)
                await self.gw.store.run(self._closing_alerts(day, how))
        finally:
            self._closing.difference_update(day.isoformat() for day in days)

    def _closing_alerts(self, day: date, how: str) -> Any:
        """The work closing the `day_end_missing` alerts an owed day end ran out."""
        now = self.gw.clock.now()
        return lambda tx: close_missing_alerts(
            tx, day, f", by the gateway at a restart ({how} left the date)", now)

    async def check_awaited(self, now: datetime) -> None:
        """At each tick: a date awaited since a restart whose notice has not come in time
        is named by `day_end_missing` (once; its day end still runs when the notice
        comes)."""
        overdue = [key for key, at in self._awaiting.items()
                   if now >= at and key not in self._awaited_alerted]
        if overdue:
            self._awaited_alerted.update(overdue)
            await self.check_missing()

    def _reconcile_once(self, day: date) -> None:
        if day.isoformat() not in self._reconciling:
            self._reconciling.add(day.isoformat())
            self._spawn(self.reconcile(day), STEP_RECONCILE, day, WAITS_FOR_HVPS)

    async def _close_and_catch_up(self, day: date) -> None:
        await self.close(day)
        done = await self.gw.store.run(lambda tx: reconciliations(tx, day.isoformat()))
        if any(joined for _, joined in done.values()):
            # Reconciled before HVPS payments joined the date (received, or settled for
            # us, after it ran): the date closes now, and is reconciled again with
            # everything it holds.
            self._forget(day)
        if not done or any(joined for _, joined in done.values()):
            self._reconcile_once(day)

    def _forget(self, day: date) -> None:
        """Drop this run's result of reconciling `day`: it no longer covers the date."""
        key = day.isoformat()
        self.results.pop(key, None)
        self._done.pop(key, None)
        self._reconciling.discard(key)

    def _spawn(self, coro: Any, step: str, day: date, waits_for: str) -> None:
        """Run one step of `day`'s day end in the background; `waits_for` says what it
        waits for first (a step says what it waits for next through `_wait`)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        self._waiting[(step, day.isoformat())] = waits_for
        task.add_done_callback(lambda done: self._ended(done, step, day))

    async def stop(self) -> None:
        """Cancel the steps still running (a reconciliation waiting for the NPC)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait for the steps running now (a close, its reports, a reconciliation) and
        any they start, to end."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _ended(self, task: asyncio.Task, step: str, day: date) -> None:
        self._tasks.discard(task)
        waited_for = self._waiting.pop((step, day.isoformat()), "")
        if step == STEP_RECONCILE:
            # No step reconciles the date now: should it be owed again later (an
            # operator's hvps-reconcile whose hvps.710 another process sent, a close
            # committing after the answer's comparison), `finish_owed` asks for it. Its
            # result stays (`results`): a repeated 40 asks the NPC nothing.
            self._reconciling.discard(day.isoformat())
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if step == STEP_RECONCILE:
            # Not reconciled in this run: the owed date is asked again later
            # (`finish_owed`), not at the next tick.
            self._owed_retry_at[day.isoformat()] = self.gw.clock.now() + timedelta(
                seconds=OWED_RETRY_S)
        cause = (f"no answer within {RECON_TIMEOUT_S:g} s"
                 if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) else str(exc))
        log.error("event=day_end_step_failed step=%s work_date=%s waited_for=%s link=%s "
                  "cause=%s error=%r", step, day.isoformat(), _quoted(waited_for),
                  self.gw.link.state, _quoted(cause or type(exc).__name__), exc)

    def _wait(self, step: str, day: date, what: str) -> None:
        """Step `step` of `day` waits for `what` now (named by its failure's log)."""
        self._waiting[(step, day.isoformat())] = what

    def _event(self, day: date) -> asyncio.Event:
        return self._done.setdefault(day.isoformat(), asyncio.Event())

    async def reconcile(self, day: date) -> dict[str, Any]:
        key = day.isoformat()
        if key in self.results:
            return self.results[key]
        self._wait(STEP_RECONCILE, day, WAITS_FOR_HVPS)
        parts = {"hvps": await self.gw.reconcile_hvps(day, timeout_s=RECON_TIMEOUT_S)}
        for ext in self.gw.extensions:
            if hasattr(ext, "reconcile_at_day_end"):
                self._wait(STEP_RECONCILE, day, f"{ext.__class__.__name__}'s reconciliation "
                                                "at the day end")
                parts[ext.__class__.__name__] = await ext.reconcile_at_day_end(day)
        reconciled = all(bool(p.get("reconciled")) for p in parts.values())
        result = {"work_date": key, "reconciled": reconciled, "parts": parts}
        recon.keep_day(self.results, key, result)
        await self.gw.store.run(lambda tx: self._record(tx, result))
        self._event(day).set()
        recon.forget_old_days(self._done)
        log.info("event=day_reconciled work_date=%s reconciled=%s", key, reconciled)
        return result

    def _record(self, tx: Any, result: dict[str, Any]) -> None:
        for name, part in result["parts"].items():
            # A part that raised its own alerts (BEPS: one per netting date, with its
            # answer) is not raised again, nor closed here.
            if part.get("alerted"):
                continue
            if part.get("reconciled"):
                # Agreeing now (asked again, `ask_again`): the date's differences are gone.
                recon.close_differences(tx, name, "work_date", result["work_date"],
                                        self.gw.clock.now())
            else:
                differences = part.get("differences", [])
                self.gw.alert(tx, recon.ALERT_DIFFERENCES, work_date=result["work_date"],
                              system=name, count=len(differences),
                              differences=differences[:DIFFERENCES_LISTED_MAX])

    async def close(self, day: date) -> None:
        now = self.gw.clock.now()

        def work(tx: Any) -> Any:
            closed = tx.query_one("SELECT 1 FROM ledger_day WHERE work_date = ?",
                                  (day.isoformat(),))
            if closed:
                return None
            closed = self.gw.ledger.close_day(tx, day)
            owe_reconciliation(tx, day, now)
            return closed
        try:
            closed = await self.gw.store.run(work)
        except PaygateError as exc:
            reason = exc.code
            await self.gw.store.run(lambda tx: self.gw.alert(
                tx, "ledger_day_not_closed", work_date=day.isoformat(), reason=reason))
            return
        if closed is not None:
            log.info("event=ledger_day_closed work_date=%s entries=%s", day, closed.entries)
            await self.write_reports(day)

    async def write_reports(self, day: date) -> list[str]:
        """Write a closed date's daily statement and subject day sheets into the data
        folder's `reports/` (docs/ledger.md §9); a failure is an alert, since the day is
        closed all the same and `paygate ops day-reports` gets them from the books."""
        folder = reports_folder(self.gw.settings)
        try:
            paths = await self.gw.store.run(
                lambda tx: self.gw.ledger.write_day_reports(tx, day, folder))
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.error("event=day_reports_not_written work_date=%s error=%r", day, exc)
            await self.gw.store.run(lambda tx: self.gw.alert(
                tx, "day_reports_not_written", work_date=day.isoformat(), folder=str(folder),
                reason=reason))
            return []
        log.info("event=day_reports_written work_date=%s folder=%s", day, folder)
        return [str(path) for path in paths]

    async def check_missing(self) -> list[dict[str, Any]]:
        """Raise `day_end_missing` when a work date before the current one is found whose
        day end never ran and which no alert named yet (each date is new once, whatever
        the number of restarts). The alert names every such date still open, those named
        before included, oldest first, since each must be run late in that order; the
        dates found new are returned."""
        current = self.gw.work_date
        now = self.gw.clock.now()
        # Run by the gateway itself at the NPC's notice, not named before it is overdue.
        held_back = {key for key, at in self._awaiting.items() if now < at} | self._closing

        def work(tx: Any) -> list[dict[str, Any]]:
            alerted = alerted_dates(tx)
            missing = [d for d in missing_day_ends(tx, current)
                       if d["work_date"] not in held_back]
            found = [d for d in missing if d["work_date"] not in alerted]
            if found:
                self.gw.alert(tx, ALERT_DAY_END_MISSING, **missing_alert(missing, found))
            return found
        return await self.gw.store.run(work)

    def close_late(self, tx: Any, day: date, how: str = "") -> dict[str, Any]:
        """Close a missed date's ledger day (inside the caller's transaction) and, once
        committed, reconcile it: the day end an operator runs late (`check_late` first).
        Each `day_end_missing` whose dates are all closed now is closed by the gateway,
        its note saying so and `how` (the request that ran it)."""
        check_late(tx, day, self.gw.work_date, self.gw.calendar)
        closed = self.gw.ledger.close_day(tx, day)
        recon.owe(tx, day.isoformat(), self.gw.clock.now())
        log.info("event=ledger_day_closed_late work_date=%s entries=%s", day, closed.entries)
        close_missing_alerts(tx, day, how, self.gw.clock.now())
        return {"work_date": day.isoformat(), "ledger_entries": closed.entries,
                "digest": closed.digest, "reconciliation": "requested"}

    def reconcile_later(self, day: date) -> None:
        """Reconcile `day` in the background; differences are alerts as at a day end."""
        self._forget(day)
        self._reconcile_once(day)

    def ask_again(self, tx: Any, day: date) -> dict[str, Any]:
        """An operator asks the NPC again for a closed date's HVPS totals (inside the
        caller's transaction; `reconcile_later` once committed): the date is owed its
        reconciliation again, so that a stop before the answer leaves it to the next
        start as at a day end."""
        key = day.isoformat()
        check_reconcilable(tx, key)
        row = tx.query_one("SELECT owed_at, done_at FROM recon_owed WHERE work_date = ?",
                           (key,))
        recon.owe(tx, key, self.gw.clock.now())
        return {"work_date": key, "reconciliation": "requested",
                "owed_before": None if row is None else
                {"owed_at": row[0], "done_at": row[1]}}

    async def write_late_notes(self) -> list[str]:
        """Write beside a closed date's reports the settlements booked after it closed
        (gateway.late_entries), for the dates whose note is not written yet."""
        return await late_entries.write_notes(self.gw, reports_folder(self.gw.settings))

    async def finish_owed(self, now: datetime | None = None) -> list[str]:
        """Ask again for each closed date still owed its HVPS reconciliation that no step
        of this run is reconciling (a process stopped between the close and the answer,
        a try that failed and has rested OWED_RETRY_S), and raise
        `day_end_reconciliation_owed` for each owed longer than `recon_answer_overdue_s`.
        The dates asked for now."""
        now = now or self.gw.clock.now()
        after_s = self.gw.settings.recon_answer_overdue_s

        def work(tx: Any) -> list[tuple[str, str]]:
            recon.raise_owed(tx, self.gw, now, after_s)
            return recon.owed(tx)
        asked = []
        owed = await self.gw.store.run(work)
        # A date owed no more (answered, perhaps through another process) rests no more.
        for key in set(self._owed_retry_at) - {key for key, _ in owed}:
            del self._owed_retry_at[key]
        for key, since in owed:
            retry_at = self._owed_retry_at.get(key)
            if key in self._reconciling or (retry_at is not None and now < retry_at):
                continue
            self._owed_retry_at.pop(key, None)
            log.warning("event=day_end_reconciliation_resumed work_date=%s owed_since=%s",
                        key, since)
            day = date.fromisoformat(key)
            self._forget(day)
            self._reconcile_once(day)
            asked.append(key)
        return asked

    async def wait_reconciled(self, day: date, timeout_s: float = RECON_TIMEOUT_S
                              ) -> dict[str, Any]:
        await asyncio.wait_for(self._event(day).wait(), timeout_s)
        return self.results[day.isoformat()]


REPORTS_FOLDER = "reports"


def _quoted(text: str) -> str:
    """A log value that may hold spaces, quoted as the log lines' other texts are."""
    return '"' + text.replace('"', "'") + '"'


def owe_reconciliation(tx: Any, day: date, now: datetime) -> None:
    """At the close of `day`'s ledger day, in its transaction: the date is owed its HVPS
    reconciliation unless one that still covers it is recorded (run at its end of day,
    no HVPS payment joining the date after)."""
    done = reconciliations(tx, day.isoformat())
    if not done or any(joined for _, joined in done.values()):
        recon.owe(tx, day.isoformat(), now)


def check_reconcilable(tx: Any, text: str) -> None:
    """An operator's ask for a date's HVPS reconciliation: a work date whose ledger day
    is closed (an open one is reconciled by its day end, or late by `day_end`)."""
    if tx.query_one("SELECT 1 FROM ledger_day WHERE work_date = ?", (text,)) is None:
        never = _never_a_work_date(tx, text)
        raise Conflict(Problem("work_date_not_closed", "/target", text,
                               "a work date whose ledger day is closed",
                               never or f"the ledger day of {text} is open: its day end "
                               "reconciles it, at the cut-over, or late for a past date "
                               f"(`{LATE_COMMAND.format(day=text)}`)"))


def _never_a_work_date(tx: Any, text: str) -> str | None:
    """Why `text`, without a closed ledger day, is not an open one either: before the
    last closed work date, it was never a work date of these books (a weekend, a
    holiday, a day before the first): said so, rather than sending operators to a day
    end that would refuse it as closed. None for a date after it (open, or to come)."""
    row = tx.query_one("SELECT MAX(work_date) FROM ledger_day", ())
    last = row[0] if row else None
    if last is None or text > last:
        return None
    return (f"{text} is not a work date of these books: no ledger day of it was closed, "
            f"and a day end closes only dates after the last closed work date, {last}")


def reports_folder(settings: Any) -> Path:
    """Where the day's reports go: `reports/` in the gateway's data folder."""
    return settings.data_path / REPORTS_FOLDER


def check_reportable(tx: Any, text: str) -> date:
    """The work date `text` names, when its ledger day is closed: the reports of a day
    still open would change with its next posting."""
    try:
        if not (text.isascii() and len(text) == 10):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(Problem("date_malformed", "/work_date", text,
                                       "a date written YYYY-MM-DD")) from None
    if tx.query_one("SELECT 1 FROM ledger_day WHERE work_date = ?", (text,)) is None:
        raise Conflict(Problem("work_date_not_closed", "/work_date", text,
                               "a work date whose ledger day is closed",
                               _never_a_work_date(tx, text)
                               or "its reports are written when its ledger day closes"))
    return day


def day_reports(tx: Any, ledger: Any, text: str) -> dict[str, Any]:
    """The reports of the closed work date `text`, made from the books as at its close
    (no later posting can be dated on it): each file's name and text, as the day end
    wrote them into the data folder."""
    day = check_reportable(tx, text)
    with tempfile.TemporaryDirectory(prefix="paygate-day-reports-") as folder:
        paths = ledger.write_day_reports(tx, day, folder)
        files = [{"name": path.name, "text": path.read_text(encoding="utf-8")}
                 for path in paths]
    late = late_entries.note_text(tx, day.isoformat())
    if late is not None:
        # Settlements of the date booked on a later ledger day: what makes the statement
        # differ from the NPC's position for the date.
        files.append({"name": late_entries.note_name(day.isoformat()), "text": late})
    return {"work_date": day.isoformat(), "files": files}


def check_clock(tx: Any, current: date, status: str, now_text: str,
                source: str = "the clock", path: str = "clock") -> None:
    """Refuse a start whose clock gives a work date earlier than the data already holds.

    A closed ledger day takes no more postings, and payments of a later work date would
    be reconciled and closed out of order, so such a clock (PAYGATE_CLOCK set to an
    earlier date, a machine whose time went back) would otherwise answer every transfer
    with 422 work_date_closed. The last closed date itself is allowed in end of day (40,
    `status`): the NPC may cut over before the local timetable says, and the next notice
    or the timetable moves the gateway on within minutes. `source` names what set the
    clock in words (gateway.config.clock_source) and `path` the setting as the user set
    it, for the refusal to say what to change."""
    last_closed = _last_closed(tx)
    row = tx.query_one("SELECT MAX(work_date) FROM payments", ())
    latest = (row[0] if row else None) or ""
    text = current.isoformat()
    if last_closed and (text < last_closed or (text == last_closed and status != "40")):
        stored, rule = last_closed, f"a work date after {last_closed}, the last closed one"
    elif latest and text < latest:
        stored, rule = latest, f"a work date on or after {latest}, the latest of a payment"
    else:
        return
    raise PaygateError(Problem(
        "clock_before_stored_work_date", path, now_text, rule,
        f"the clock ({now_text}, from {source}) gives work date {text}, but the data "
        f"directory holds work date {stored}: set {source} to a later time"),
        status=409)


def check_clock_time(tx: Any, now: datetime, source: str = "the clock",
                     path: str = "clock") -> None:
    """Refuse a start whose clock is earlier than the newest time the data holds (a
    payment taken or a payment's event), by more than CLOCK_STEP_BACK_ALLOWED_S: a
    restart with PAYGATE_CLOCK set earlier in the same work date would otherwise record
    new payments as older than earlier ones. The allowance covers a real-time clock
    stepped back a little by NTP, which is no reason to stay down."""
    newest = _newest_stored_time(tx)
    if newest is None or (newest - now).total_seconds() <= CLOCK_STEP_BACK_ALLOWED_S:
        return
    behind = (newest - now).total_seconds()
    raise PaygateError(Problem(
        "clock_before_stored_time", path, now.isoformat(),
        f"a time no more than {CLOCK_STEP_BACK_ALLOWED_S:g} s before {newest.isoformat()}, "
        "the newest time of a stored payment or event",
        f"the clock ({now.isoformat()}, from {source}) is {behind:.0f} s before "
        f"{newest.isoformat()}, the newest time the data directory holds (a payment or "
        f"its event): set {source} to that time or later"), status=409)


def _newest_stored_time(tx: Any) -> datetime | None:
    """The latest of the newest payment's creation and the newest event's time (both
    read through an index: no table scan at start). The newest event is not the last
    row: a payment leaving its BEPS package is given copies of the package's rows, with
    their times, after every other (payments.leave_group)."""
    times = []
    row = tx.query_one("SELECT MAX(created_at) FROM payments", ())
    if row and row[0]:
        times.append(datetime.fromisoformat(row[0]))
    row = tx.query_one("SELECT MAX(at) FROM payment_events", ())
    if row and row[0]:
        times.append(datetime.fromisoformat(row[0]))
    return max(times) if times else None


def _first_work_date(tx: Any) -> str | None:
    """The first work date the gateway's data holds: of its first payment, or of its
    first closed ledger day (each read through an index)."""
    dates = [row[0] for row in (
        tx.query_one("SELECT MIN(work_date) FROM payments", ()),
        tx.query_one("SELECT MIN(work_date) FROM ledger_day", ())) if row and row[0]]
    return min(dates) if dates else None


def _last_closed(tx: Any) -> str:
    row = tx.query_one("SELECT MAX(work_date) FROM ledger_day", ())
    return (row[0] if row else None) or ""


def missing_day_ends(tx: Any, current: date) -> list[dict[str, Any]]:
    """The work dates before `current` on which payments were taken or received and whose
    ledger day is still open, oldest first, each with what it left open: the ledger day,
    its reconciliation with the NPC (systems reconciled, true or with differences), and
    its payments not yet final, counted by channel, direction and state."""
    rows = tx.query(
        "SELECT work_date, channel, direction, state, COUNT(*) FROM payments "
        "WHERE work_date > ? AND work_date < ? GROUP BY work_date, channel, direction, state "
        "ORDER BY work_date, channel, direction, state", (_last_closed(tx), current.isoformat()))
    days: dict[str, dict[str, Any]] = {}
    for day, channel, direction, state, count in rows:
        found = days.setdefault(day, {"work_date": day, "ledger_day": "open",
                                      "reconciled": {}, "payments": 0, "not_final": {}})
        found["payments"] += count
        if state not in _DONE_STATES:
            found["not_final"][f"{channel} {direction} {state}"] = count
    for day, found in days.items():
        for system, (reconciled, joined) in reconciliations(tx, day).items():
            # True only when it is: a reconciliation that payments joined after is stale.
            found["reconciled"][system] = reconciled and not joined
            if joined:
                found.setdefault("joined_after_reconciliation", {})[system] = joined
    return list(days.values())


def reconciliations(tx: Any, day: str) -> dict[str, tuple[bool, int]]:
    """The last HVPS reconciliation of work date `day` (its totals, its details): whether
    it agreed with the NPC, and how many HVPS payments joined the date after it ran, so
    that it no longer covers them (one received after it, or one of ours the NPC settled
    on the date after it; one taken after the date's day end and held for the next window
    settles on a later date and leaves it standing, since HVPS counts our payments by the
    day the NPC settled them, gateway.recon). BEPS is reconciled by netting date once each
    is complete (gateway.beps.netting_dates), not by work date: a BEPS row of the recon
    table names a netting date, and none is the day end's."""
    last: dict[str, tuple[bool, str]] = {}
    for system, reconciled, at in tx.query("SELECT system, reconciled, at FROM recon "
                                           "WHERE work_date = ? AND system IN "
                                           "('HVPS', 'HVPS-detail') ORDER BY id", (day,)):
        last[system] = (bool(reconciled), at)
    out = {}
    for system, (reconciled, at) in last.items():
        joined = tx.query_one(
            "SELECT COUNT(*) FROM payments WHERE work_date = ? AND channel = 'hvps' "
            "AND ((direction = 'in' AND created_at > ?) OR (direction = 'out' AND "
            "settled_on = ? AND updated_at > ?))", (day, at, day, at))[0]
        out[system] = (reconciled, int(joined))
    return out


def npc_stated(tx: Any) -> tuple[str, str] | None:
    """The work date and status of the last HVPS status recorded, when the NPC stated it
    (a ccms.801, or the status operators confirmed with it); None when the timetable set
    the last one, or none is recorded."""
    row = tx.query_one("SELECT detail FROM alerts WHERE code = 'window_changed' AND "
                       "detail LIKE ? ORDER BY id DESC LIMIT 1", ('%"system": "HVPS"%',))
    if row is None:
        return None
    detail = json.loads(row[0])
    if detail.get("source") not in (SOURCE_NOTICE, SOURCE_OPERATOR) or \
            not detail.get("work_date"):
        return None
    return str(detail["work_date"]), str(detail.get("to", ""))


def _left(day: str, stated_date: str, stated_status: str) -> bool:
    """Whether the NPC, stating `stated_status` on `stated_date`, has left work date
    `day`: a later date, or the cut-over (15) dated with `day` itself (whether the NPC
    dates its 15 with the old date or the new one is not known: gateway.windows)."""
    return stated_date > day or (stated_date == day and stated_status == "15")


def alerted_dates(tx: Any) -> set[str]:
    """The work dates `day_end_missing` has named already (one alert per date)."""
    out: set[str] = set()
    rows = tx.query("SELECT detail FROM alerts WHERE code = ?", (ALERT_DAY_END_MISSING,))
    for (detail,) in rows:
        out.update(json.loads(detail).get("work_dates", []))
    return out


def close_missing_alerts(tx: Any, day: date, how: str, now: datetime) -> list[int]:
    """Close each open `day_end_missing` naming `day` whose every date's ledger day is
    closed (`day`'s just now, late): nothing it named is missing any more. Their ids."""
    closed_days = {d for (d,) in tx.query("SELECT work_date FROM ledger_day", ())}
    done = [(alert_id, detail["work_dates"]) for alert_id, detail
            in critical.unclosed(tx, (ALERT_DAY_END_MISSING,), day.isoformat())
            if day.isoformat() in detail.get("work_dates", [])
            and closed_days.issuperset(detail["work_dates"])]
    for alert_id, days in done:
        critical.close_by_gateway(
            tx, [alert_id], f"the day end of {', '.join(days)} ran late, the last "
                            f"({day.isoformat()}) at {now.isoformat()}{how}", now)
    return [alert_id for alert_id, _ in done]


def missing_alert(missing: list[dict[str, Any]], new: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    """The alert's detail: every missed date still open (`work_dates`, those `new` to
    this alert among them), what each left open, and the command that runs each late,
    oldest first (a date's day end is refused while an earlier one is open)."""
    days = [d["work_date"] for d in missing]
    commands = "; then ".join(f"`{LATE_COMMAND.format(day=day)}`" for day in days)
    message = (f"the day end of {', '.join(days)} did not run (the gateway did not see the "
               f"work date move): {'; '.join(_left_open(d) for d in missing)}; run each "
               f"late, oldest first: {commands} (a supervisor approves each); "
               "`paygate ops stuck` lists the payments in flight")
    return {"work_dates": days, "new_work_dates": [d["work_date"] for d in new],
            "dates": missing, "message": message}


def _left_open(found: dict[str, Any]) -> str:
    reconciled = found["reconciled"]
    joined = found.get("joined_after_reconciliation")
    if not reconciled:
        recon = "not reconciled with the NPC"
    elif joined:
        recon = ("reconciled before " + ", ".join(
            f"{n} {system} payments" for system, n in joined.items())
            + " joined it (its day end reconciles it again)")
    elif all(reconciled.values()):
        recon = "reconciled"
    else:
        recon = "reconciled with differences"
    waiting = ", ".join(f"{what} {n}" for what, n in found["not_final"].items())
    return (f"{found['work_date']}: ledger day open, {recon}, "
            + (f"payments not final: {waiting}" if waiting else "every payment final"))


def check_late(tx: Any, day: date, current: date, calendar: BusinessCalendar) -> None:
    """Whether `day`'s day end may run now: a past work date of the business calendar,
    not before the first work date the gateway's data holds (a gateway holding none has
    nothing to close), its ledger day still open, and no earlier date left open (closing
    a date closes every earlier one with it)."""
    text = day.isoformat()
    if day >= current:
        raise Conflict(Problem("day_end_work_date_not_past", "/target", text,
                               f"a work date before the current one, {current.isoformat()}"))
    last_closed = _last_closed(tx)
    if text <= last_closed:
        raise Conflict(Problem("work_date_closed", "/target", text,
                               f"a date after {last_closed}, the last closed work date"))
    if not calendar.is_working_day(day):
        raise Conflict(Problem("day_end_not_work_date", "/target", text,
                               "a work date of the business calendar, such as "
                               f"{calendar.previous_working_day(day).isoformat()}"))
    first = _first_work_date(tx)
    if first is None:
        # No payment and no closed ledger day: no date before the current one has
        # anything to close or reconcile, and the gateway's first day end is the current
        # date's own, at its cut-over. Said as such, not as a date before a first one.
        raise Conflict(Problem("day_end_nothing_to_close", "/target", text,
                               "a gateway holding payments or closed ledger days of a past "
                               "work date",
                               "this gateway holds no payment and no closed ledger day: "
                               f"nothing of {text} to close or reconcile; its first day end "
                               f"is that of {current.isoformat()}, at the cut-over"))
    if text < first:
        raise Conflict(Problem("day_end_before_first_work_date", "/target", text,
                               f"a work date from {first}, the first this gateway's data "
                               "holds"))
    earlier = tx.query_one("SELECT MIN(work_date) FROM payments WHERE work_date > ? AND "
                           "work_date < ?", (last_closed, text))
    if earlier and earlier[0]:
        raise Conflict(Problem("day_end_earlier_date_open", "/target", text,
                               f"the oldest open work date first, {earlier[0]}"))
