"""How a record names the operator who did something, and how readers show old names.

Operators are named by their user name in the console (`op1`; docs/operations.md,
"Operators file"): in a payment's history (`by`, `approved_by`, `requested_by`), in the
exception flows' tables (a return's `requested_by` and `approved_by`, an NPC request's
`requested_by`, a kept item's `kept_by`, an applied one's `applied_by`) and in the
ledger's `teller` of a reversal. Other actors keep their own names beside them: the
core system's `core:<client>`, the gateway's `gateway`, the automatic return's
`auto_return`.

Until the console's requests were all written so, the exception flows and the
receivables named the same operators `operator:op1`. Those rows are kept as written (a
history is never edited); every reader shows such a name as the plain one, so an
operator reads as one person whichever road recorded them. The query desk's
`operator:<name>` is another namespace (the core system's staff) and is left as it is.
"""

from __future__ import annotations

from typing import Any

OLD_PREFIX = "operator:"
# The members of a history event or a row that name who asked, approved, kept or applied.
WHO_FIELDS = frozenset({"by", "approved_by", "requested_by", "kept_by", "applied_by"})
# History events whose `by` is in another desk's words, read as written: a reply to a
# bank's query names who answered as the query desk does (`auto`, `operator:<name>` for
# the core system's staff, whom the console does not know; docs/queries.md).
OWN_WORDS_EVENTS = frozenset({"query_answered"})


def operator_name(who: Any) -> Any:
    """An operator's plain name, from either way of writing it (`operator:op1` or
    `op1`); any other value as it is."""
    if isinstance(who, str) and who.startswith(OLD_PREFIX):
        return who[len(OLD_PREFIX):]
    return who


def plain_event(event: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A history event's detail with its operators named plainly (`plain`), but for an
    event of OWN_WORDS_EVENTS, as written."""
    return detail if event in OWN_WORDS_EVENTS else plain(detail)


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with the operators of its WHO_FIELDS named plainly; the same record when
    none was written the old way."""
    if not any(operator_name(record.get(f)) != record.get(f) for f in WHO_FIELDS):
        return record
    return {k: operator_name(v) if k in WHO_FIELDS else v for k, v in record.items()}
