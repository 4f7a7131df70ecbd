"""BEPS single-item amount caps, by business type and day.

BEPS takes ordinary credit transfers up to 50,000.00 yuan inclusive (5,000,000 fen);
real-time credits and debits (types C… and D…) have no such cap. The central bank has
raised the cap for a few weeks at a time (around the Spring Festival, to 500 million
yuan), so an entry may carry `effective_from` / `effective_to` (inclusive ISO dates).

The table is TOML-compatible: a list of tables with `name`, `types` (exact business
types such as "A100", letter prefixes such as "A*", or "*"), `cap_fen` (omitted for no
cap) and the optional dates. Dated entries in force on the day are tried before undated
ones; within each group the first entry whose types match wins. An undated "*" entry
must exist, so that every business type has an answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from gateway.errors import ProblemList
from routing.fields import cell_text, parse_iso_date, type_matches

BEPS_CAP_FEN = 5_000_000  # 50,000.00 yuan, inclusive.

DEFAULT_LIMITS: list[dict[str, Any]] = [
    {"name": "beps_realtime_no_cap", "types": ["C*", "D*"]},
    {"name": "beps_single_item", "types": ["*"], "cap_fen": BEPS_CAP_FEN},
]

LOOKUPS_REMEMBERED_MAX = 4096  # (business type, date) pairs; cleared when full
_KEYS = {"name", "types", "cap_fen", "effective_from", "effective_to"}


@dataclass(frozen=True)
class Limit:
    name: str
    types: tuple[str, ...]
    cap_fen: int | None
    effective_from: date | None = None
    effective_to: date | None = None

    @property
    def dated(self) -> bool:
        return self.effective_from is not None or self.effective_to is not None

    def matches(self, business_type: str, on_date: date) -> bool:
        if self.effective_from is not None and on_date < self.effective_from:
            return False
        if self.effective_to is not None and on_date > self.effective_to:
            return False
        return any(type_matches(pattern, business_type) for pattern in self.types)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cap_fen": self.cap_fen,
            "effective_from": self.effective_from.isoformat() if self.effective_from else None,
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
        }



class BepsLimits:
    """Answers "what is the BEPS cap for this business type on this day?"."""

    def __init__(self, entries: Sequence[Mapping[str, Any]] | None = None) -> None:
        problems = ProblemList()
        parsed = [_parse(i, entry, problems) for i, entry in enumerate(entries or DEFAULT_LIMITS)]
        self.entries = [entry for entry in parsed if entry is not None]
        if not any(not e.dated and "*" in e.types for e in self.entries):
            problems.add("routing_limits_need_a_catch_all", "routing.limits", None,
                         'an entry without dates whose types include "*"')
        problems.raise_if_any()
        self._governing: dict[tuple[str, date], Limit] = {}

    def limit_for(self, business_type: str, on_date: date) -> Limit:
        """The entry that governs `business_type` on `on_date` (remembered: the entries
        are fixed for the object's life, and every payment asks)."""
        key = (business_type, on_date)
        found = self._governing.get(key)
        if found is None:
            found = self._find(business_type, on_date)
            if len(self._governing) >= LOOKUPS_REMEMBERED_MAX:
                self._governing.clear()
            self._governing[key] = found
        return found

    def _find(self, business_type: str, on_date: date) -> Limit:
        ordered = [e for e in self.entries if e.dated] + [e for e in self.entries if not e.dated]
        for entry in ordered:
            if entry.matches(business_type, on_date):
                return entry
        raise AssertionError("the undated catch-all entry always matches")

    def over(self, amount_fen: int, business_type: str, on_date: date) -> bool:
        """True when BEPS may not carry this amount (the cap itself is still allowed)."""
        cap_fen = self.limit_for(business_type, on_date).cap_fen
        return cap_fen is not None and amount_fen > cap_fen


def _parse(index: int, entry: Mapping[str, Any], problems: ProblemList) -> Limit | None:
    path = f"routing.limits[{index}]"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        problems.add("routing_limit_key_unknown", path, unknown, ", ".join(sorted(_KEYS)))
    name, types, cap_fen = cell_text(entry.get("name")), entry.get("types"), entry.get("cap_fen")
    if not name:
        problems.add("routing_limit_needs_a_name", f"{path}/name", entry.get("name"), "a name")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        problems.add("routing_limit_types_invalid", f"{path}/types", types,
                     'a non-empty list such as ["A100", "A*", "*"]')
        types = []
    if cap_fen is not None and (type(cap_fen) is not int or cap_fen <= 0):
        problems.add("routing_limit_cap_fen_invalid", f"{path}/cap_fen", cap_fen,
                     "a whole number of fen above 0, or no cap_fen for no cap")
    start, end = (_date(entry, key, path, problems) for key in ("effective_from", "effective_to"))
    if start and end and end < start:
        problems.add("effective_to_must_not_precede_effective_from", f"{path}/effective_to",
                     end.isoformat(), f"a date on or after {start.isoformat()}")
    return Limit(name, tuple(types), cap_fen, start, end)


def _date(entry: Mapping[str, Any], key: str, path: str, problems: ProblemList) -> date | None:
    if entry.get(key) in (None, ""):
        return None
    value = parse_iso_date(entry[key])
    if value is None:
        problems.add(f"{key}_must_be_an_iso_date", f"{path}/{key}", cell_text(entry[key]),
                     "a date YYYY-MM-DD")
    return value
