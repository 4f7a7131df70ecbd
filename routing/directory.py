"""The participant directory: which bank code is which, on which day.

Lookups take a business date and answer with the row in force that day, so a change
published today for tomorrow never alters today's routing. Updates are never
retroactive: each new row takes effect at the start of its `effective_from` day
(Asia/Shanghai), which must still lie ahead of the moment the update is applied.
From that day on the new row replaces whatever the directory said about its bank code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from gateway.clock import SHANGHAI, Clock, SystemClock
from gateway.errors import Problem, ProblemList, ValidationFailed
from routing.fields import is_ascii_digits
from routing.participants import (
    BANK_CODE_EXPECTED, Participant, check_direct_participants, check_ranges,
    parse_participants, read_rows,
)

log = logging.getLogger("paygate.routing.directory")

Source = str | Path | Iterable[Mapping[str, Any]]


class Directory:
    """The participant directory (行名行号), loaded from a CSV file or from rows."""

    def __init__(self, rows: list[Participant], source: str = "rows",
                 clock: Clock | None = None) -> None:
        problems = check_ranges(source, rows) + check_direct_participants(source, rows)
        if problems:
            raise ValidationFailed(problems)
        self.source = source
        self.clock = clock or SystemClock()
        self._rows = _index(rows)

    @classmethod
    def load(cls, path_or_rows: Source, clock: Clock | None = None) -> Directory:
        """Read a directory from a CSV path or from mappings with the CSV's columns."""
        source, raw = read_rows(path_or_rows)
        return cls(parse_participants(source, raw), source, clock)

    def rows(self) -> list[Participant]:
        """Every row, ordered by bank code and start date."""
        return [row for code in sorted(self._rows) for row in self._rows[code]]

    def find(self, bank_code: str, on_date: date) -> Participant | None:
        """The row in force for `bank_code` on `on_date`, whatever its status, or None."""
        for row in self._rows.get(bank_code, ()):
            if row.in_force(on_date):
                return row
        return None

    def lookup(self, bank_code: object, on_date: date, path: str = "bank_code") -> Participant:
        """The active row in force on `on_date`; refuses malformed, unknown, inactive codes."""
        if not is_ascii_digits(bank_code, 12):
            raise ValidationFailed(Problem(
                "bank_code_must_be_12_ascii_digits", path, bank_code, BANK_CODE_EXPECTED))
        assert isinstance(bank_code, str)
        row = self.find(bank_code, on_date)
        if row is None:
            raise ValidationFailed(self._unknown(bank_code, on_date, path))
        if row.status != "active":
            raise ValidationFailed(Problem(
                "bank_code_inactive", path, bank_code,
                f"a participant active on {on_date.isoformat()}",
                f"bank code {bank_code} ({row.name}) is inactive on {on_date.isoformat()}",
            ))
        return row

    def _unknown(self, bank_code: str, on_date: date, path: str) -> Problem:
        later = [row for row in self._rows.get(bank_code, ()) if row.effective_from > on_date]
        message = f"bank code {bank_code} is not in the directory on {on_date.isoformat()}"
        if later:
            message += f"; its entry takes effect on {later[0].effective_from.isoformat()}"
        return Problem("bank_code_unknown", path, bank_code,
                       f"a bank code in the directory in force on {on_date.isoformat()}",
                       message)

    def apply_update(self, rows: Iterable[Mapping[str, Any]], logged_by: str,
                     now: datetime | None = None) -> list[Participant]:
        """Add dated rows; each replaces its bank code's entries from its start day on.

        The whole update is refused if any row is malformed or starts on a day that has
        already begun (`directory_update_retroactive`). Returns the rows applied.
        """
        if not logged_by.strip():
            raise ValidationFailed(Problem(
                "directory_update_needs_logged_by", "logged_by", logged_by,
                "the operator or job that applies the update"))
        now = (now or self.clock.now()).astimezone(SHANGHAI)
        new_rows = parse_participants("update", [dict(row) for row in rows])
        _refuse_retroactive(new_rows, now)
        merged = dict(self._rows)
        for row in sorted(new_rows, key=lambda item: item.effective_from):
            merged[row.bank_code] = _supersede(merged.get(row.bank_code, []), row)
        flat = [row for group in merged.values() for row in group]
        problems = check_ranges("update", flat) + check_direct_participants("update", flat)
        if problems:
            raise ValidationFailed(problems)
        self._rows = merged
        for row in new_rows:
            _log_applied(row, logged_by, now)
        return new_rows

    def apply_file(self, path_or_rows: Source, logged_by: str,
                   now: datetime | None = None) -> list[Participant]:
        """Load a new directory file as an update: only rows that differ are applied.

        Rows identical to rows already held are kept as they are, even when they started
        in the past; every new or changed row must start on a day still ahead.
        """
        source, raw = read_rows(path_or_rows)
        held = set(self.rows())
        changed = [row for row in parse_participants(source, raw) if row not in held]
        if not changed:
            log.info("event=directory_file_unchanged source=%s logged_by=%s", source, logged_by)
            return []
        return self.apply_update([_as_mapping(row) for row in changed], logged_by, now)


def _index(rows: Iterable[Participant]) -> dict[str, list[Participant]]:
    index: dict[str, list[Participant]] = {}
    for row in rows:
        index.setdefault(row.bank_code, []).append(row)
    for group in index.values():
        group.sort(key=lambda item: item.effective_from)
    return index


def _refuse_retroactive(rows: list[Participant], now: datetime) -> None:
    problems = ProblemList()
    for row in rows:
        starts_at = datetime.combine(row.effective_from, time.min, tzinfo=SHANGHAI)
        if starts_at < now:
            problems.add(
                "directory_update_retroactive", f"update/{row.bank_code}/effective_from",
                row.effective_from.isoformat(),
                f"a day after {now.date().isoformat()} (updates are never retroactive)",
            )
    problems.raise_if_any()


def _supersede(held: list[Participant], new: Participant) -> list[Participant]:
    """Cut held rows at the day before `new` starts and drop those starting later."""
    kept: list[Participant] = []
    for row in held:
        if row.effective_from >= new.effective_from:
            continue
        if row.effective_to is None or row.effective_to >= new.effective_from:
            row = replace(row, effective_to=new.effective_from - timedelta(days=1))
        kept.append(row)
    return kept + [new]


def _as_mapping(row: Participant) -> dict[str, Any]:
    out = row.to_dict()
    out["effective_to"] = out["effective_to"] or ""
    return out


def _log_applied(row: Participant, logged_by: str, now: datetime) -> None:
    log.info(
        "event=directory_row_applied bank_code=%s effective_from=%s effective_to=%s "
        "status=%s direct_participant=%s version=%d logged_by=%s applied_at=%s",
        row.bank_code, row.effective_from.isoformat(),
        row.effective_to.isoformat() if row.effective_to else "open", row.status,
        row.direct_participant, row.version, logged_by, now.isoformat(),
    )
