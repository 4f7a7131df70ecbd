"""The posting engine: one balanced journal entry per business event.

Every operation of the ledger ends here. `post` checks that the work date is still
open, applies the lines to the running balances (ledger.balances), and inserts the
entry and, with one multi-row INSERT, its lines. The entry's `event_id` is unique:
an event already posted is found instead of posted again, so posting it twice has no
second effect and returns the first result.

A refusal raises LedgerError and leaves the caller's transaction as it found it.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import NamedTuple

from ledger.balances import Line, Rules, apply_lines, apply_sum, defer_lines, undo_lines
from ledger.db import Transaction
from ledger.errors import LedgerError

DEBIT = "D"
CREDIT = "C"

# Voucher kinds (the first two digits of a voucher number): which paper a teller would
# have filled in for the posting.
VOUCHER_CASH = "10"  # cash deposit slip (现金存款凭条)
VOUCHER_SPECIAL_TRANSFER = "20"  # special transfer voucher (特种转账传票)
VOUCHER_REMITTANCE = "30"  # remittance voucher (汇兑凭证), outgoing payments
VOUCHER_INCOMING = "40"  # incoming electronic remittance voucher (电子汇划收款补充凭证)
VOUCHER_FEE = "50"  # fee voucher (收费凭证)
VOUCHER_CORRECTION = "90"  # correction voucher (冲正传票)
VOUCHER_KINDS = {
    VOUCHER_CASH: "cash deposit slip", VOUCHER_SPECIAL_TRANSFER: "special transfer voucher",
    VOUCHER_REMITTANCE: "remittance voucher", VOUCHER_INCOMING: "incoming remittance voucher",
    VOUCHER_FEE: "fee voucher", VOUCHER_CORRECTION: "correction voucher",
}

_INSERT_ENTRY_HEAD = (
    "INSERT INTO ledger_entry (event_id, op, fingerprint, voucher_kind, work_date, ref,"
    " depends_on, reverses, teller, result) VALUES"
)
_INSERT_ENTRY = (
    _INSERT_ENTRY_HEAD + " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING entry_id"
)
_INSERT_LINES = "INSERT INTO ledger_line (entry_id, line_no, account_no, side, amount_fen) VALUES "


class Posting(NamedTuple):
    """What one business event posts; `fingerprint` identifies its content.

    Named tuples rather than dataclasses: a posting is built on every payment, and a
    tuple is several times cheaper to create.
    """

    event_id: str
    op: str
    fingerprint: str
    voucher_kind: str
    work_date: str
    lines: tuple[Line, ...]
    ref: str = ""
    depends_on: int | None = None
    reverses: int | None = None
    teller: str = "gateway"


def transfer(debit_account: str, credit_account: str, amount_fen: int) -> tuple[Line, Line]:
    """The two lines moving `amount_fen` from one account to another, debit first."""
    return Line(debit_account, DEBIT, amount_fen), Line(credit_account, CREDIT, amount_fen)


def work_date_text(work_date: date | str) -> str:
    """The ISO form of a work date given as a `date` or an ISO string."""
    if type(work_date) is date:  # a datetime is a date too, but not a work date
        return work_date.isoformat()
    if isinstance(work_date, str):
        try:
            return date.fromisoformat(work_date).isoformat()
        except ValueError:
            pass
    raise LedgerError("work_date_invalid", str(work_date), "a date, YYYY-MM-DD", "work_date")


def check_amount(amount_fen: object, path: str = "amount_fen") -> int:
    """An amount in fen must be a positive integer (never a float, never a bool)."""
    if type(amount_fen) is not int or amount_fen <= 0:
        raise LedgerError("amount_must_be_positive_fen", amount_fen,
                          "a positive integer number of fen", path)
    return amount_fen


def fingerprint(op: str, *parts: object) -> str:
    """The content of an event, to tell a replay from a reused event id."""
    return "|".join([op, *(str(part) for part in parts)])


def check_event_id(event_id: object) -> str:
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        raise LedgerError("event_id_invalid", event_id, "a non-empty string of at most 200",
                          "event_id")
    return event_id


def replay(tx: Transaction, event_id: str, fingerprint: str) -> tuple[int, str] | None:
    """(entry id, stored result) of an event already posted with the same content."""
    row = tx.query_one(
        "SELECT entry_id, fingerprint, result FROM ledger_entry WHERE event_id = ?",
        (check_event_id(event_id),),
    )
    if row is None:
        return None
    if row[1] != fingerprint:
        raise LedgerError("event_id_reused_for_other_posting", event_id,
                          f"the posting first made under it: {row[1]}", "event_id",
                          status=409)
    return int(row[0]), str(row[2])


def replays(tx: Transaction, events: list[tuple[str, str]]) -> dict[str, int]:
    """`replay` for many (event id, fingerprint): the entry id of each event already
    posted, read a few hundred a query; an event id posted with other content refused."""
    return {event_id: entry_id for event_id, (entry_id, _) in replayed(tx, events).items()}


def replayed(tx: Transaction, events: list[tuple[str, str]]) -> dict[str, tuple[int, str]]:
    """`replays` with each event's stored result: (entry id, result) by event id."""
    wanted = dict(events)
    found: dict[str, tuple[int, str]] = {}
    ids = [check_event_id(event_id) for event_id in wanted]
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start:start + IDS_PER_QUERY]
        for event_id, entry_id, stored, result in tx.query(
                "SELECT event_id, entry_id, fingerprint, result FROM ledger_entry WHERE "
                f"event_id IN ({', '.join('?' * len(chunk))})", chunk):
            if stored != wanted[event_id]:
                raise LedgerError("event_id_reused_for_other_posting", event_id,
                                  f"the posting first made under it: {stored}", "event_id",
                                  status=409)
            found[event_id] = (int(entry_id), str(result))
    return found


# The earliest work date a PostgreSQL transaction posted to (`check_work_date_open`),
# checked again as it commits (`check_posted_dates_still_open`).
POSTED_FROM = "posted_from"


def check_work_date_open(tx: Transaction, work_date: str, posting: bool = True) -> None:
    """A work date at or before the last closed one takes no postings.

    On SQLite a write transaction holds the database's only write lock from its BEGIN,
    so no close can commit between this check and the posting's commit. On PostgreSQL
    one can: a posting that read the date open may insert its entry only once a close
    of that date has committed (the close's lock on the entries makes it wait). There
    the earliest date posted to is kept and checked again at commit."""
    last_closed = tx.cache.get("last_closed")
    if last_closed is None:
        row = tx.query_one("SELECT MAX(work_date) FROM ledger_day")
        last_closed = (row[0] if row else None) or ""
        tx.cache["last_closed"] = last_closed
    if work_date <= last_closed:
        raise LedgerError("work_date_closed", work_date, f"a date after {last_closed}",
                          "work_date")
    if posting and tx.dialect == "postgresql":
        posted = tx.cache.get(POSTED_FROM)
        if posted is None:
            tx.cache[POSTED_FROM] = {"date": work_date}
            tx.keep_across_rollback(POSTED_FROM)
            tx.at_piece_end(check_posted_dates_still_open)
        elif work_date < posted["date"]:
            posted["date"] = work_date


def check_posted_dates_still_open(tx: Transaction) -> None:
    """As a piece of work of a PostgreSQL transaction ends, and before its commit: refuse
    it (`work_date_closed`) when a close of a date it posted to committed after the
    posting read the date open. Once the check passes, the transaction holds its lock on
    the entries, so no close can commit before it does; the date closed last is kept
    fresh for the pieces after it."""
    posted = tx.cache.get(POSTED_FROM)
    if not posted:
        return
    row = tx.query_one("SELECT MAX(work_date) FROM ledger_day")
    last_closed = (row[0] if row else None) or ""
    if posted["date"] <= last_closed:
        raise LedgerError("work_date_closed", posted["date"],
                          f"a date after {last_closed} (closed while this posting ran)",
                          "work_date")
    tx.cache.pop(POSTED_FROM, None)
    tx.cache["last_closed"] = last_closed


class Posted(NamedTuple):
    """The outcome of `post`: the entry, its stored result, and whether it was a replay."""

    entry_id: int
    result: str
    replayed: bool


def post(tx: Transaction, posting: Posting, rules: Rules, result: str = "",
         insufficient_code: str = "account_balance_insufficient",
         named: dict[str, tuple[str, str]] | None = None) -> Posted:
    """Apply and record one balanced entry, or find the event already posted.

    The common case runs no SELECT: the lines are applied by conditional UPDATEs and
    the entry is inserted unless its event id exists. Only when something refuses does
    the engine look further: an event already posted is a replay and returns the first
    result (even if the day has closed or the money has moved since); anything else
    raises LedgerError with every applied line undone.
    """
    _assert_balanced(posting.lines)
    check_event_id(posting.event_id)
    try:
        check_work_date_open(tx, posting.work_date)
        apply_lines(tx, posting.lines, posting.work_date, insufficient_code, rules, named)
    except LedgerError:
        found = replay(tx, posting.event_id, posting.fingerprint)
        if found is None:
            raise
        return Posted(found[0], found[1], replayed=True)

    row = tx.query_one(_INSERT_ENTRY, (
        posting.event_id, posting.op, posting.fingerprint, posting.voucher_kind,
        posting.work_date, posting.ref, posting.depends_on, posting.reverses,
        posting.teller, result,
    ))
    if row is None:
        undo_lines(tx, posting.lines, rules)
        found = replay(tx, posting.event_id, posting.fingerprint)
        assert found is not None, "an entry insert is skipped only for a known event id"
        return Posted(found[0], found[1], replayed=True)
    entry_id = int(row[0])
    tx.execute(_insert_lines_sql(len(posting.lines)), _line_rows(entry_id, posting.lines))
    return Posted(entry_id, result, replayed=False)


def _line_rows(entry_id: int, lines: tuple[Line, ...]) -> list[object]:
    params: list[object] = []
    for line_no, line in enumerate(lines, start=1):
        params += (entry_id, line_no, line.account_no, line.side, line.amount_fen)
    return params


@cache
def _insert_lines_sql(count: int) -> str:
    """One INSERT for all the lines of an entry: one statement instead of `count`."""
    return _INSERT_LINES + ", ".join(["(?, ?, ?, ?, ?)"] * count)


def _assert_balanced(lines: tuple[Line, ...]) -> None:
    net_fen = 0
    for _, side, amount_fen in lines:
        assert amount_fen > 0, "every line moves money"
        net_fen += amount_fen if side == DEBIT else -amount_fen
    assert lines and net_fen == 0, "a journal entry balances"


def post_many(tx: Transaction, postings: list[Posting], rules: Rules,
              insufficient_code: str = "account_balance_insufficient"
              ) -> list[Posted | LedgerError]:
    """`post` for many postings at once, each with its own outcome, in order.

    For new events whose debited customer accounts cover all of them, the balances move
    with one UPDATE per account and the entries and lines are written with multi-row
    INSERTs (Transaction.insert_rows); the outcome is what `post` one by one would give. Whatever does not
    fit that case (an event already posted, an account that cannot cover its total)
    goes through `post`, in order, so that a refusal is exact to the posting.
    """
    if not postings:
        return []
    for posting in postings:
        _assert_balanced(posting.lines)
        check_event_id(posting.event_id)
    days = {posting.work_date for posting in postings}
    try:
        for day in days:
            check_work_date_open(tx, day)
    except LedgerError:
        return [_post_or_error(tx, p, rules, insufficient_code) for p in postings]
    known = _known_events(tx, [p.event_id for p in postings])
    # New postings with one line the rules can refuse (a customer debit), summed per
    # account and day; an account that cannot cover its sum is left to `post`, which
    # refuses exactly the postings that do not fit. Anything else goes to `post` too.
    fresh: list[tuple[int, tuple[str, str, str], Line, list[Line]]] = []
    for i, p in enumerate(postings):
        if p.event_id in known:
            continue
        known.add(p.event_id)  # the same event twice in one call: the second replays
        checked: list[Line] = []
        free: list[Line] = []
        for line in p.lines:
            (checked if _checked(line, rules) else free).append(line)
        if len(checked) == 1:
            line = checked[0]
            fresh.append((i, (line.account_no, line.side, p.work_date), line, free))

    totals: dict[tuple[str, str, str], int] = {}
    for _, key, line, _ in fresh:
        totals[key] = totals.get(key, 0) + line.amount_fen
    slow = {k for k, total_fen in totals.items() if not _apply_sum(tx, *k, total_fen, rules)}
    bulk = [(i, free) for i, key, _, free in fresh if key not in slow]
    # Lines that cannot be refused are deferred, as `post` does: summed per account.
    defer_lines(tx, [line for _, free in bulk for line in free], rules)
    ids = insert_entries(tx, [postings[i] for i, _ in bulk])
    out: list[Posted | LedgerError | None] = [None] * len(postings)
    for i, _ in bulk:
        out[i] = Posted(ids[postings[i].event_id], "", replayed=False)
    for i, posting in enumerate(postings):
        if out[i] is None:
            out[i] = _post_or_error(tx, posting, rules, insufficient_code)
    return out  # type: ignore[return-value]


def _post_or_error(tx: Transaction, posting: Posting, rules: Rules,
                   insufficient_code: str) -> Posted | LedgerError:
    try:
        return post(tx, posting, rules, insufficient_code=insufficient_code)
    except LedgerError as error:
        return error


def _checked(line: Line, rules: Rules) -> bool:
    """A line the balance rules can refuse (see ledger.balances.apply_lines)."""
    rule = rules.get(line.account_no)
    return rule is None or not (rule.negative_ok or rule.normal_side == line.side)


def _apply_sum(tx: Transaction, account_no: str, side: str, day: str, total_fen: int,
               rules: Rules) -> bool:
    """Apply many lines on one side of a customer account as one, if its rules allow the
    whole sum (a debit needs the balance to cover all of them)."""
    if rules.get(account_no) is not None:
        return False  # an internal account that can refuse: posted one by one
    return apply_sum(tx, account_no, side, total_fen, day)


def _known_events(tx: Transaction, event_ids: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(event_ids), IDS_PER_QUERY):
        chunk = event_ids[start:start + IDS_PER_QUERY]
        known.update(row[0] for row in tx.query(
            "SELECT event_id FROM ledger_entry WHERE event_id IN "
            f"({', '.join('?' * len(chunk))})", chunk))
    return known


def insert_entries(tx: Transaction, postings: list[Posting],
                   results: dict[str, str] | None = None) -> dict[str, int]:
    """Insert new entries and their lines, whose balances the caller has applied, each
    with multi-row INSERTs that return the entries' ids; the entry id of each event id.
    `results` holds the stored result of events that have one (what a replay returns),
    by event id."""
    if not postings:
        return {}
    results = results or {}
    ids = {event_id: int(entry_id) for entry_id, event_id in tx.insert_rows(
        _INSERT_ENTRY_HEAD, [(p.event_id, p.op, p.fingerprint, p.voucher_kind, p.work_date,
                              p.ref, p.depends_on, p.reverses, p.teller,
                              results.get(p.event_id, "")) for p in postings],
        "ON CONFLICT (event_id) DO NOTHING RETURNING entry_id, event_id")}
    assert len(ids) == len(postings), "every new entry was inserted"
    tx.insert_rows(_INSERT_LINES.removesuffix(" "),
                   [(ids[p.event_id], n, line.account_no, line.side, line.amount_fen)
                    for p in postings for n, line in enumerate(p.lines, start=1)])
    return ids


IDS_PER_QUERY = 500
