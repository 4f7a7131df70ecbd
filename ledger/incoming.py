"""Incoming credits and the suspense (待销账) they fall into when they cannot be credited.

Money from another bank is credited only once received (他行票据,收妥进账): an HVPS
credit arrives after settlement, a BEPS credit once netted (final). When the named
account is unknown or closed, the name does not match its holder, or the payee bank the
message names is not the branch that keeps the account (the caller knows bank codes, the
ledger does not: it says so with `other_branch`), the money is parked in suspense under
a 9-digit pending write-off number (kind 1, MMDD, daily sequence from 0001), then
cleared to the right account or returned to the sender.

| event | entry |
|---|---|
| credit_incoming (HVPS) | Dr clearing account at the central bank, Cr payee or suspense |
| credit_incoming_netted (BEPS) | Dr BEPS netted receivables (4003), Cr payee or suspense |
| credit_incoming_many | each credit as above, a package's written in bulk |
| clear_suspense | Dr suspense, Cr the account found for the money |
| return_suspense | Dr suspense, Cr clearing account (the gateway sends the return) |
| return_suspense, netted | Dr suspense, Cr BEPS netted obligations (4002): a BEPS return |
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Collection, Iterator, Mapping
from dataclasses import replace
from datetime import date

from ledger import chart, numbers
from ledger.balances import apply_sums, defer_lines
from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.postings import (
    CREDIT, IDS_PER_QUERY, VOUCHER_INCOMING, VOUCHER_SPECIAL_TRANSFER, Posting, check_amount,
    check_work_date_open, fingerprint, insert_entries, post, replay, replayed, transfer,
    work_date_text,
)
from ledger.settings import Context
from ledger.types import CreditResult, SuspenseItem

_INSERT_SUSPENSE = (
    "INSERT INTO ledger_suspense (pending_no, entry_id, amount_fen, account_no, payee_name,"
    " reason, ref, work_date, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open')"
)
_NEXT_PENDING = (
    "INSERT INTO ledger_counter (name, value) VALUES (?, ?) ON CONFLICT (name)"
    " DO UPDATE SET value = ledger_counter.value + excluded.value"
    " WHERE ledger_counter.value + excluded.value <= ? RETURNING value"
)
_SUSPENSE_COLUMNS = (
    "pending_no, amount_fen, account_no, payee_name, reason, ref, work_date, state, entry_id"
)


def credit_incoming(ctx: Context, tx: Transaction, event_id: str, account_no: str,
                    payee_name: str, amount_fen: int, work_date: date | str,
                    ref: str, netted: bool = False, other_branch: bool = False,
                    parked: str | None = None) -> CreditResult:
    """Credit the payee, or park the money in suspense and say why. `other_branch`: the
    payee bank the message names is not the branch that keeps the account. `parked`:
    the money goes to suspense with this reason whatever its account (the screening
    matched a party: the bank must not credit it on its own)."""
    check_amount(amount_fen)
    day = work_date_text(work_date)
    op = "credit_netted" if netted else "credit"
    content = _content(op, account_no, payee_name, amount_fen, day, ref, other_branch,
                       parked)
    found = replay(tx, event_id, content)
    if found is not None:
        return replace(CreditResult.from_json(found[1]), entry_id=found[0])

    source = ctx.accounts[chart.BEPS_NETTED_IN] if netted else ctx.accounts.clearing
    reason = parked or _why_not_creditable(ctx, tx, account_no, payee_name, other_branch)
    if reason is None:
        return _credit_payee(ctx, tx, event_id, op, content, source, account_no,
                             amount_fen, day, ref)
    return _credit_suspense(ctx, tx, event_id, op, content, source, account_no,
                            payee_name, amount_fen, day, ref, reason)


def _credit_payee(ctx: Context, tx: Transaction, event_id: str, op: str, content: str, source: str,
                  account_no: str, amount_fen: int, day: str, ref: str) -> CreditResult:
    # The result names the entry, which exists only after the insert; the stored result
    # carries entry_id 0 and a replay fills it in from the row it finds.
    stored = CreditResult("credited", account_no=account_no)
    lines = transfer(source, account_no, amount_fen)
    posting = Posting(event_id, op, content, VOUCHER_INCOMING, day, lines, ref=ref)
    entry_id = post(tx, posting, ctx.accounts.rules, result=stored.to_json()).entry_id
    return CreditResult("credited", account_no=account_no, entry_id=entry_id)


def _credit_suspense(ctx: Context, tx: Transaction, event_id: str, op: str, content: str,
                     source: str, account_no: str, payee_name: str, amount_fen: int,
                     day: str, ref: str, reason: str) -> CreditResult:
    pending_no = _next_pending_no(tx, day)
    stored = CreditResult("suspense", pending_no=pending_no, reason=reason)
    lines = transfer(source, ctx.accounts.suspense, amount_fen)
    posting = Posting(event_id, op, content, VOUCHER_INCOMING, day, lines, ref=ref)
    entry_id = post(tx, posting, ctx.accounts.rules, result=stored.to_json()).entry_id
    tx.execute(_INSERT_SUSPENSE, (pending_no, entry_id, amount_fen, account_no, payee_name,
                                  reason, ref, day))
    return CreditResult("suspense", pending_no=pending_no, reason=reason, entry_id=entry_id)


def _content(op: str, account_no: str, payee_name: str, amount_fen: int, day: str,
             ref: str, other_branch: bool, parked: str | None = None) -> str:
    """The credit's fingerprint; a credit naming another branch says so, and one parked
    whatever its account names the reason, while one naming the account's own is
    written as every credit was before the branch was checked."""
    flag = ("other_branch",) if other_branch else ()
    kept = (f"parked:{parked}",) if parked else ()
    return fingerprint(op, account_no, payee_name, amount_fen, day, ref, *flag, *kept)


def _why_not_creditable(ctx: Context, tx: Transaction, account_no: str,
                        payee_name: str, other_branch: bool) -> str | None:
    """None when the payee's account takes the credit, else the suspense reason."""
    if account_no in ctx.accounts.numbers:
        return "account_not_found"
    row = tx.query_one("SELECT name, status FROM ledger_account WHERE account_no = ?"
                       " AND role = 'customer'", (account_no,))
    return _reason(row, payee_name, other_branch)


def _reason(row: tuple | None, payee_name: str, other_branch: bool) -> str | None:
    """Why a customer account (its name and status, None when there is none) does not
    take a credit to `payee_name` at the payee bank named (`other_branch`: not the one
    keeping the account); None when it does. The first rule broken is the reason, in
    this order: the account, its state, its holder, its branch."""
    if row is None:
        return "account_not_found"
    if row[1] == "closed":
        return "account_closed"
    if not names_match(row[0], payee_name):
        return "name_mismatch"
    if other_branch:
        # Whose money goes into whose account (DOMAIN.md §3): a credit addressed to a
        # branch that does not keep the account is not the bank's to apply on guess.
        return "branch_mismatch"
    return None


def credit_incoming_many(ctx: Context, tx: Transaction,
                         credits: list[tuple[str, str, str, int, date | str, str]],
                         netted: bool = False, other_branch: Collection[str] = (),
                         parked: Mapping[str, str] | None = None) -> list[CreditResult]:
    """`credit_incoming` for many credits at once (the items of a BEPS package), each
    (event id, account, payee name, amount in fen, work date, ref), those whose event id
    is in `other_branch` naming a payee bank that does not keep the account: the result
    of each, in order, the same entries, suspense items and pending numbers as one by
    one. Those whose event id is in `parked` go to suspense whatever their account, with
    the reason it gives: money the bank must not credit on its own (a debit of ours paid
    after operators gave it up, whose customer the core system was told is not paid).

    Each credit is still an entry of its own under its event id (traced, reversed and
    replayed alone); only the reading and writing are shared: the payees' accounts are
    read at once, each credited account goes up by its sum with one UPDATE, the pending
    numbers are taken as one block, and entries, lines and suspense items are written
    with one statement each. Events posted before replay their first result.
    """
    op = "credit_netted" if netted else "credit"
    source = ctx.accounts[chart.BEPS_NETTED_IN] if netted else ctx.accounts.clearing
    contents: dict[str, str] = {}
    days: dict[date | str, str] = {}
    elsewhere = frozenset(other_branch)
    parked = parked or {}
    for event_id, account_no, payee_name, amount_fen, work_date, ref in credits:
        check_amount(amount_fen)
        day = days.get(work_date) or days.setdefault(work_date, work_date_text(work_date))
        contents[event_id] = _content(op, account_no, payee_name, amount_fen, day, ref,
                                      event_id in elsewhere, parked.get(event_id))
    assert len(contents) == len(credits), "each event is named once"
    results = {event_id: replace(CreditResult.from_json(stored), entry_id=entry_id)
               for event_id, (entry_id, stored)
               in replayed(tx, list(contents.items())).items()}
    fresh = [c for c in credits if c[0] not in results]
    if not fresh:
        return [results[c[0]] for c in credits]
    for day in {days[c[4]] for c in fresh}:
        check_work_date_open(tx, day)
    found = holders(ctx, tx, [c[1] for c in fresh])
    reasons = [parked.get(c[0]) or _reason(found.get(c[1]), c[2], c[0] in elsewhere)
               for c in fresh]
    pending = _pending_blocks(tx, [days[c[4]] for c, r in zip(fresh, reasons) if r])
    postings, stored, free, sums, to_suspense = [], {}, [], {}, []
    for (event_id, account_no, payee_name, amount_fen, work_date, ref), reason in zip(
            fresh, reasons):
        day = days[work_date]
        if reason is None:
            result = CreditResult("credited", account_no=account_no)
            lines = transfer(source, account_no, amount_fen)
            sums[account_no, day] = sums.get((account_no, day), 0) + amount_fen
            free.append(lines[0])
        else:
            result = CreditResult("suspense", pending_no=next(pending[day]), reason=reason)
            lines = transfer(source, ctx.accounts.suspense, amount_fen)
            free += lines
            to_suspense.append((event_id, result.pending_no, amount_fen, account_no,
                                payee_name, reason, ref, day))
        postings.append(Posting(event_id, op, contents[event_id], VOUCHER_INCOMING, day,
                                lines, ref=ref))
        stored[event_id] = result.to_json()
        results[event_id] = result
    apply_sums(tx, sums, CREDIT, "account_balance_insufficient")
    defer_lines(tx, free, ctx.accounts.rules)
    entry_ids = insert_entries(tx, postings, stored)
    tx.executemany(_INSERT_SUSPENSE, [(pending_no, entry_ids[event_id], *rest)
                                      for event_id, pending_no, *rest in to_suspense])
    for event_id, entry_id in entry_ids.items():
        results[event_id] = replace(results[event_id], entry_id=entry_id)
    return [results[c[0]] for c in credits]


def holders(ctx: Context, tx: Transaction, account_nos: list[str]) -> dict[str, tuple]:
    """(name, status) of each of these that is a customer account, read a few hundred
    a query; our internal accounts are none."""
    wanted = [a for a in dict.fromkeys(account_nos) if a not in ctx.accounts.numbers]
    found: dict[str, tuple] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start:start + IDS_PER_QUERY]
        found.update((row[0], row[1:]) for row in tx.query(
            "SELECT account_no, name, status FROM ledger_account WHERE role = 'customer'"
            f" AND account_no IN ({', '.join('?' * len(chunk))})", chunk))
    return found


def _pending_blocks(tx: Transaction, days: list[str]) -> dict[str, Iterator[str]]:
    """The pending write-off numbers of suspense items on these days (one a day named),
    each day's taken as one block, in the order given."""
    counts: dict[str, int] = {}
    for day in days:
        counts[day] = counts.get(day, 0) + 1
    return {day: iter(_next_pending_nos(tx, day, count)) for day, count in counts.items()}


def names_match(holder: str, given: object) -> bool:
    """Whether the payee name in a message names the holder of the account.

    Full-width and half-width forms compare equal (NFKC), as do letters of either case;
    spaces are ignored, since Chinese names are written with or without them.
    """
    if not isinstance(given, str):
        return False
    return name_key(holder) == name_key(given) and bool(name_key(given))


@functools.lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """A name as `names_match` compares it: NFKC, case folded, without spaces (two names
    with one key match the same holders)."""
    # Cached: a payer's name is compared with its holder's at every transfer, and the
    # same few names come again and again.
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in folded if not ch.isspace())


def _next_pending_no(tx: Transaction, day: str) -> str:
    return _next_pending_nos(tx, day, 1)[0]


def _next_pending_nos(tx: Transaction, day: str, count: int) -> list[str]:
    """The next `count` pending write-off numbers of the day, consecutive, in one
    statement; refused, nothing taken, when the day's sequence cannot hold them all."""
    counter = f"pending:{numbers.PENDING_KIND_INCOMING}:{day}"
    row = (tx.query_one(_NEXT_PENDING, (counter, count, numbers.PENDING_SEQUENCE_MAX))
           if count <= numbers.PENDING_SEQUENCE_MAX else None)
    if row is None:
        raise LedgerError("pending_sequence_exhausted", day,
                          f"at most {numbers.PENDING_SEQUENCE_MAX} suspense items a day",
                          "work_date")
    on = date.fromisoformat(day)
    last = int(row[0])
    return [numbers.make_pending_no(on, n) for n in range(last - count + 1, last + 1)]


def clear_suspense(ctx: Context, tx: Transaction, event_id: str, pending_no: str,
                   account_no: str, work_date: date | str) -> int:
    """Post a suspense item to the account it belongs to."""
    day = work_date_text(work_date)
    content = fingerprint("clear_suspense", pending_no, account_no, day)
    _lock_item(tx, pending_no)
    found = replay(tx, event_id, content)
    if found is not None:
        return found[0]
    if account_no in ctx.accounts.numbers:
        raise LedgerError("account_not_found", account_no, "a customer account", "account_no")
    item = _open_item(tx, pending_no)
    lines = transfer(ctx.accounts.suspense, account_no, item.amount_fen)
    return _end_item(ctx, tx, event_id, "clear_suspense", content, day, lines, item, "cleared")


def return_suspense(ctx: Context, tx: Transaction, event_id: str, pending_no: str,
                    work_date: date | str, netted: bool = False) -> SuspenseItem:
    """Send a suspense item back out through the clearing account (an HVPS return,
    settled gross), or with `netted` into the BEPS netted obligations (a BEPS return
    the NPC netted); the item returned.

    The gateway sends the return message (business type A105) for it.
    """
    day = work_date_text(work_date)
    content = fingerprint("return_suspense", pending_no, day, *(("netted",) if netted else ()))
    _lock_item(tx, pending_no)
    found = replay(tx, event_id, content)
    if found is not None:
        return find_item(tx, pending_no)
    item = _open_item(tx, pending_no)
    out = ctx.accounts[chart.BEPS_NETTED_OUT] if netted else ctx.accounts.clearing
    lines = transfer(ctx.accounts.suspense, out, item.amount_fen)
    _end_item(ctx, tx, event_id, "return_suspense", content, day, lines, item, "returned")
    return find_item(tx, pending_no)


def _lock_item(tx: Transaction, pending_no: str) -> None:
    """Lock the suspense item's rows before reading its state. On PostgreSQL two gateway
    processes may clear and return the same item at once: the second waits here, then
    sees the first one's posting and state, and cannot post the money out twice. SQLite
    has taken the database's write lock already (BEGIN IMMEDIATE)."""
    if tx.dialect == "postgresql":
        tx.query("SELECT 1 FROM ledger_suspense WHERE pending_no = ? FOR UPDATE",
                 (pending_no,))


def _end_item(ctx: Context, tx: Transaction, event_id: str, op: str, content: str, day: str,
              lines: tuple, item: SuspenseItem, state: str) -> int:
    posting = Posting(event_id, op, content, VOUCHER_SPECIAL_TRANSFER, day, lines,
                      ref=item.pending_no, depends_on=item.entry_id)
    entry_id = post(tx, posting, ctx.accounts.rules).entry_id
    tx.execute("UPDATE ledger_suspense SET state = ? WHERE pending_no = ? AND work_date = ?",
               (state, item.pending_no, item.work_date))
    return entry_id


def find_item(tx: Transaction, pending_no: str) -> SuspenseItem:
    """The newest suspense item under `pending_no` (numbers repeat only a year apart)."""
    row = tx.query_one(f"SELECT {_SUSPENSE_COLUMNS} FROM ledger_suspense"
                       " WHERE pending_no = ? ORDER BY work_date DESC", (pending_no,))
    if row is None:
        raise LedgerError("suspense_item_not_found", pending_no,
                          "a pending write-off number we issued", "pending_no")
    return _item(row)


def find_items(tx: Transaction, pending_nos: list[str]) -> dict[str, SuspenseItem]:
    """`find_item` of each of `pending_nos` in one statement, by pending number (those
    we issued none under left out): for checks of many items at once."""
    if not pending_nos:
        return {}
    rows = tx.query(f"SELECT {_SUSPENSE_COLUMNS} FROM ledger_suspense WHERE pending_no "
                    f"IN ({', '.join('?' * len(pending_nos))}) ORDER BY work_date",
                    tuple(pending_nos))
    return {row[0]: _item(row) for row in rows}  # the newest of a number last


def _open_item(tx: Transaction, pending_no: str) -> SuspenseItem:
    item = find_item(tx, pending_no)
    if item.state != "open":
        raise LedgerError("suspense_item_not_open", item.state, "an open item", "pending_no")
    return item


def open_suspense(tx: Transaction, as_of: date | str) -> list[SuspenseItem]:
    """Every open suspense item with its age in days on `as_of`, oldest first."""
    day = date.fromisoformat(work_date_text(as_of))
    rows = tx.query(f"SELECT {_SUSPENSE_COLUMNS} FROM ledger_suspense WHERE state = 'open'"
                    " ORDER BY work_date, pending_no")
    return [_item(row, day) for row in rows]


def _item(row: tuple, as_of: date | None = None) -> SuspenseItem:
    age_days = 0 if as_of is None else (as_of - date.fromisoformat(row[6])).days
    return SuspenseItem(
        pending_no=row[0], amount_fen=int(row[1]), account_no=row[2], payee_name=row[3],
        reason=row[4], ref=row[5], work_date=row[6], state=row[7], entry_id=int(row[8]),
        age_days=age_days,
    )
