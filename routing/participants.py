"""Rows of the participant directory (行名行号) and how they are read and checked.

One row says what a 12-digit CNAPS bank code means over a range of days: its name,
the direct participant (清算行) whose clearing account at the central bank settles its
payments, its city node (CCPC) and whether it is active. A bank code may have several
rows with ranges that do not overlap; the row in force on a day answers lookups for
that day. `effective_to` is the last day a row is in force (inclusive); empty means
"until replaced".
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from gateway.errors import Problem, ProblemList, ValidationFailed
from routing.fields import cell_text, is_ascii_digits, parse_iso_date

COLUMNS = (
    "bank_code", "name", "direct_participant", "city_node", "kind", "status",
    "effective_from", "effective_to", "version",
)
KINDS = ("direct", "indirect")
STATUSES = ("active", "inactive")
BANK_CODE_EXPECTED = "12 ASCII digits"
NAME_LENGTH_MAX = 140  # The longest participant name CNAPS2 messages carry (Max140Text).


@dataclass(frozen=True)
class Participant:
    bank_code: str
    name: str
    direct_participant: str
    city_node: str
    kind: str
    status: str
    effective_from: date
    effective_to: date | None
    version: int

    def in_force(self, on_date: date) -> bool:
        """True when this row answers lookups made for `on_date`."""
        if on_date < self.effective_from:
            return False
        return self.effective_to is None or on_date <= self.effective_to

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-able values, as decisions explain it."""
        return {
            "bank_code": self.bank_code,
            "name": self.name,
            "direct_participant": self.direct_participant,
            "city_node": self.city_node,
            "kind": self.kind,
            "status": self.status,
            "effective_from": self.effective_from.isoformat(),
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
            "version": self.version,
        }


def read_rows(source: str | Path | Iterable[Mapping[str, Any]]) -> tuple[str, list]:
    """The raw rows of a CSV path or of an iterable of mappings, with a name for errors."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            _check_columns(path.name, reader.fieldnames or [])
            return path.name, list(reader)
    return "rows", [dict(row) for row in source]


def _check_columns(source: str, found: list[str]) -> None:
    missing = [name for name in COLUMNS if name not in found]
    if missing:
        raise ValidationFailed(Problem(
            "participants_csv_columns_missing", source, ",".join(missing),
            "a header with " + ",".join(COLUMNS),
        ))


def parse_participants(source: str, rows: list[Mapping[str, Any]]) -> list[Participant]:
    """Check every row and build participants; all broken rows are reported together."""
    problems = ProblemList()
    parsed: list[Participant] = []
    for index, row in enumerate(rows):
        # A CSV file's first data row is its line 2, after the header.
        where = f"{source}:{index + 2}" if source != "rows" else f"{source}[{index}]"
        before = len(problems.items)
        participant = _parse_row(where, row, problems)
        if participant is not None and len(problems.items) == before:
            parsed.append(participant)
    problems.extend(check_ranges(source, parsed))
    problems.raise_if_any()
    return parsed


def _parse_row(where: str, row: Mapping[str, Any], problems: ProblemList) -> Participant | None:
    text = {name: cell_text(row.get(name)) for name in COLUMNS}
    _check_codes(where, text, problems)
    _check_words(where, text, problems)
    start = parse_iso_date(row.get("effective_from"))
    end = parse_iso_date(row.get("effective_to")) if text["effective_to"] else None
    if start is None:
        problems.add("effective_from_must_be_an_iso_date", f"{where}/effective_from",
                     text["effective_from"], "a date YYYY-MM-DD")
    if text["effective_to"] and end is None:
        problems.add("effective_to_must_be_an_iso_date", f"{where}/effective_to",
                     text["effective_to"], "a date YYYY-MM-DD or empty")
    if start is not None and end is not None and end < start:
        problems.add("effective_to_must_not_precede_effective_from", f"{where}/effective_to",
                     text["effective_to"], f"a date on or after {start.isoformat()}")
    if not is_ascii_digits(text["version"], len(text["version"])) or not text["version"]:
        problems.add("participant_version_must_be_an_integer", f"{where}/version",
                     text["version"], "a whole number")
        return None
    if start is None:
        return None
    return Participant(
        bank_code=text["bank_code"], name=text["name"],
        direct_participant=text["direct_participant"], city_node=text["city_node"],
        kind=text["kind"], status=text["status"], effective_from=start,
        effective_to=end, version=int(text["version"]),
    )


def _check_codes(where: str, text: Mapping[str, str], problems: ProblemList) -> None:
    if not is_ascii_digits(text["bank_code"], 12):
        problems.add("bank_code_must_be_12_ascii_digits", f"{where}/bank_code",
                     text["bank_code"], BANK_CODE_EXPECTED)
    if not is_ascii_digits(text["direct_participant"], 12):
        problems.add("direct_participant_must_be_12_ascii_digits",
                     f"{where}/direct_participant", text["direct_participant"],
                     BANK_CODE_EXPECTED)
    if not is_ascii_digits(text["city_node"], 4):
        problems.add("city_node_must_be_4_ascii_digits", f"{where}/city_node",
                     text["city_node"], "4 ASCII digits (the CCPC code)")
    own = text["direct_participant"] == text["bank_code"]
    if text["kind"] == "direct" and not own:
        problems.add("direct_participant_must_settle_through_itself",
                     f"{where}/direct_participant", text["direct_participant"],
                     f"the row's own bank code {text['bank_code']}")
    if text["kind"] == "indirect" and own:
        problems.add("indirect_participant_must_settle_through_a_direct_one",
                     f"{where}/direct_participant", text["direct_participant"],
                     "the bank code of a direct participant other than itself")


def _check_words(where: str, text: Mapping[str, str], problems: ProblemList) -> None:
    if not text["name"] or len(text["name"]) > NAME_LENGTH_MAX:
        problems.add("participant_name_must_have_1_to_140_characters", f"{where}/name",
                     text["name"], "a name of 1 to 140 characters")
    if text["kind"] not in KINDS:
        problems.add("participant_kind_unknown", f"{where}/kind", text["kind"],
                     " or ".join(KINDS))
    if text["status"] not in STATUSES:
        problems.add("participant_status_unknown", f"{where}/status", text["status"],
                     " or ".join(STATUSES))


def check_ranges(source: str, rows: list[Participant]) -> list[Problem]:
    """Rows of one bank code must not be in force on the same day."""
    problems: list[Problem] = []
    by_code: dict[str, list[Participant]] = {}
    for row in rows:
        by_code.setdefault(row.bank_code, []).append(row)
    for code, group in by_code.items():
        group.sort(key=lambda row: row.effective_from)
        for earlier, later in zip(group, group[1:]):
            if earlier.effective_to is None or earlier.effective_to >= later.effective_from:
                problems.append(Problem(
                    "participant_ranges_must_not_overlap", f"{source}/{code}",
                    later.effective_from.isoformat(),
                    f"a start after the previous row's end "
                    f"({earlier.effective_to.isoformat() if earlier.effective_to else 'open'})",
                ))
    return problems


def check_direct_participants(source: str, rows: list[Participant]) -> list[Problem]:
    """Every row's direct participant must appear in the directory as a direct participant."""
    directs = {row.bank_code for row in rows if row.kind == "direct"}
    return [
        Problem("direct_participant_unknown", f"{source}/{row.bank_code}/direct_participant",
                row.direct_participant, "the bank code of a direct participant in the directory")
        for row in rows
        if row.direct_participant not in directs
    ]
