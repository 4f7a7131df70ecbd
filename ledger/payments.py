"""Outgoing payments: hold the payer's money, then release it, settle it or net it.

Postings (Dr = debit, Cr = credit):

| event | entry |
|---|---|
| deposit | Dr cash in vault, Cr customer account |
| fund_clearing | Dr clearing account at the central bank, Cr paid-in capital |
| hold | Dr payer account, Cr holds in transit (4001) |
| release | Dr holds in transit, Cr payer account |
| settle (HVPS) | Dr holds in transit, Cr clearing account at the central bank |
| net (BEPS) | Dr holds in transit, Cr BEPS netted obligations (4002) |
| net_many (BEPS) | `net` for each hold of a netted package, written in bulk |
| net_together (BEPS) | Dr holds in transit, Cr 4002, one entry for the sum of many holds |
| release_many (BEPS) | `release` for each hold of a refused package, written in bulk |
| settle_net | Dr 4002, Cr clearing (what we owe); Dr clearing, Cr 4003 (what we get) |
| charge_fee | Dr customer account, Cr fee income |

The bank never advances money: a hold needs the payer's balance to cover it now.
"""

from __future__ import annotations

import hashlib
from datetime import date

from ledger import chart
from ledger.balances import Line, apply_lines, apply_sums, debit_refusal, defer_lines, undo_lines
from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.holds import (
    HELD, end_hold, end_holds, end_holds_with, find_hold, find_holds, held_total,
)
from ledger.postings import (
    CREDIT, DEBIT, VOUCHER_CASH, VOUCHER_FEE, VOUCHER_REMITTANCE, VOUCHER_SPECIAL_TRANSFER,
    Posting, check_amount, check_work_date_open, fingerprint, insert_entries, post,
    post_many, replay, replays, transfer, work_date_text,
)
from ledger.settings import Context

def deposit(ctx: Context, tx: Transaction, event_id: str, account_no: str, amount_fen: int,
            work_date: date | str) -> int:
    """Cash paid in at the counter: opening money for tests and the demo."""
    lines = transfer(ctx.accounts[chart.CASH], _customer(ctx, account_no),
                     check_amount(amount_fen))
    return _simple(ctx, tx, event_id, "deposit", VOUCHER_CASH, lines, work_date, account_no)


def fund_clearing(ctx: Context, tx: Transaction, event_id: str, amount_fen: int,
                  work_date: date | str) -> int:
    """The opening balance of our clearing account at the central bank, against equity."""
    lines = transfer(ctx.accounts.clearing, ctx.accounts[chart.CAPITAL],
                     check_amount(amount_fen))
    return _simple(ctx, tx, event_id, "fund_clearing", VOUCHER_SPECIAL_TRANSFER, lines, work_date)


def charge_fee(ctx: Context, tx: Transaction, event_id: str, account_no: str,
               business: str, amount_fen: int, work_date: date | str, ref: str = "") -> int:
    """Charge the tariff's fee for a payment of `amount_fen`; 0 when the fee is zero."""
    fee_fen = ctx.settings.tariff.fee_fen(business, check_amount(amount_fen))
    if fee_fen == 0:
        return 0
    lines = transfer(_customer(ctx, account_no), ctx.accounts[chart.FEE_INCOME], fee_fen)
    return _simple(ctx, tx, event_id, "fee", VOUCHER_FEE, lines, work_date, business,
                   amount_fen, ref=ref, insufficient_code="payer_funds_insufficient")


def hold(ctx: Context, tx: Transaction, event_id: str, account_no: str, amount_fen: int,
         work_date: date | str, ref: str,
         named: dict[str, tuple[str, str]] | None = None) -> int:
    """Take the payment's amount off the payer's account into transit; the hold id.
    `named`, when given, gets the payer account's (name, role) from the statement that
    takes the amount off it (nothing when that statement refused it:
    ledger.balances.apply_lines)."""
    check_amount(amount_fen)
    day = work_date_text(work_date)
    content = f"hold|{account_no}|{amount_fen}|{day}|{ref}"
    lines = transfer(_customer(ctx, account_no), ctx.accounts.holds, amount_fen)
    posting = Posting(event_id, "hold", content, VOUCHER_REMITTANCE, day, lines, ref=ref)

    return post(tx, posting, ctx.accounts.rules, insufficient_code="payer_funds_insufficient",
                named=named).entry_id


def check_hold(ctx: Context, tx: Transaction, account_no: str, amount_fen: int,
               work_date: date | str) -> None:
    """Refuse, as `hold` would, a hold that could not be taken now; writes nothing."""
    check_amount(amount_fen)
    refusal = debit_refusal(tx, _customer(ctx, account_no), amount_fen,
                            work_date_text(work_date), "payer_funds_insufficient")
    if refusal is not None:
        raise refusal


def hold_many(ctx: Context, tx: Transaction, holds: list[tuple[str, str, int, str, str]]
              ) -> list[int | LedgerError]:
    """`hold` for many payments at once, each (event id, payer account, amount in fen,
    work date, ref): the hold id of each, or the LedgerError refusing it alone."""
    postings: list[Posting | LedgerError] = []
    days: dict[date | str, str] = {}  # a batch's holds share their work date
    for event_id, account_no, amount_fen, work_date, ref in holds:
        try:
            check_amount(amount_fen)
            day = days.get(work_date) or days.setdefault(work_date, work_date_text(work_date))
            lines = transfer(_customer(ctx, account_no), ctx.accounts.holds, amount_fen)
        except LedgerError as error:
            postings.append(error)
            continue
        postings.append(Posting(event_id, "hold", f"hold|{account_no}|{amount_fen}|{day}|{ref}",
                                VOUCHER_REMITTANCE, day, lines, ref=ref))
    valid = [p for p in postings if isinstance(p, Posting)]
    posted = iter(post_many(tx, valid, ctx.accounts.rules,
                            insufficient_code="payer_funds_insufficient"))
    out: list[int | LedgerError] = []
    for p in postings:
        if isinstance(p, LedgerError):
            out.append(p)
            continue
        result = next(posted)
        out.append(result if isinstance(result, LedgerError) else result.entry_id)
    return out


def release(ctx: Context, tx: Transaction, event_id: str, hold_id: int,
            work_date: date | str) -> int:
    """Give held money back to the payer (payment rejected or cancelled)."""
    return _close_hold(ctx, tx, event_id, hold_id, work_date, "release")


def settle(ctx: Context, tx: Transaction, event_id: str, hold_id: int,
           work_date: date | str) -> int:
    """The central bank settled the payment gross (HVPS): transit to the clearing account."""
    return _close_hold(ctx, tx, event_id, hold_id, work_date, "settle")


def settle_internal(ctx: Context, tx: Transaction, event_id: str, hold_id: int,
                    payee_account: str, work_date: date | str) -> int:
    """A book transfer between two of our institutions that share a clearing account
    (系统内): the held money goes straight to the payee's account, never via CNAPS."""
    return _close_hold(ctx, tx, event_id, hold_id, work_date, "internal", payee_account)


def net(ctx: Context, tx: Transaction, event_id: str, hold_id: int,
        work_date: date | str) -> int:
    """The central bank netted the payment (BEPS, final): transit to netted obligations."""
    return _close_hold(ctx, tx, event_id, hold_id, work_date, "net")


def net_many(ctx: Context, tx: Transaction, nets: list[tuple[str, int]],
             work_date: date | str) -> list[int]:
    """`net` for many holds at once (the items of a netted BEPS package), each (event
    id, hold id); the entry id of each, in order.

    Each hold still ends with an entry of its own, the one `net` would post under the
    same event id (its hold named, so it is traced and reversed alone, and `net` replays
    it): only the writing is shared. Holds in transit go down by their sum with one
    conditional UPDATE, the entries and their lines with multi-row INSERTs
    (postings.insert_entries), the holds' ends with one statement. An event posted before replays; a refusal of any hold (not
    found, ended, a closed day) raises before anything is written.
    """
    return _close_holds_many(ctx, tx, "net", nets, work_date)


NET_TOGETHER = "net_together"


def net_together(ctx: Context, tx: Transaction, event_id: str, hold_ids: list[int],
                 work_date: date | str, ref: str) -> int:
    """The central bank netted many payments at once (a BEPS package): their holds'
    sum moves from transit to netted obligations in one entry (Dr 4001, Cr 4002, `ref`
    naming what was netted), and every hold ends netted by that entry; its entry id.

    What `net_many` does with an entry per hold, in one entry: holds in transit and
    netted obligations show one line for the package instead of one per payment (the
    payers' accounts are untouched: their money left at the hold). The holds are checked
    with one aggregate query per few hundred (each a hold, still held, not void) rather
    than read back one by one. Replays under the same event id and the same holds; a
    hold not held, or an event id used for other content, refuses the whole call before
    anything is written. Reversing the entry puts every one of its holds back on hold.
    """
    day = work_date_text(work_date)
    assert hold_ids and len(set(hold_ids)) == len(hold_ids), "each hold is named once"
    digest = hashlib.sha256(",".join(map(str, hold_ids)).encode()).hexdigest()[:32]
    content = fingerprint(NET_TOGETHER, day, ref, len(hold_ids), digest)
    found = replay(tx, event_id, content)
    if found is not None:
        return found[0]
    check_work_date_open(tx, day)
    total_fen = held_total(tx, hold_ids)
    lines = transfer(ctx.accounts.holds, ctx.accounts[chart.BEPS_NETTED_OUT], total_fen)
    posting = Posting(event_id, NET_TOGETHER, content, VOUCHER_SPECIAL_TRANSFER, day, lines,
                      ref=ref)
    entry_id = post(tx, posting, ctx.accounts.rules).entry_id
    end_holds_with(tx, hold_ids, entry_id, "netted")
    return entry_id


def release_many(ctx: Context, tx: Transaction, releases: list[tuple[str, int]],
                 work_date: date | str) -> list[int]:
    """`release` for many holds at once (the items of a package the NPC refused), each
    (event id, hold id); the entry id of each, in order. Written as `net_many` writes,
    each payer's account credited once with the sum of its holds; a payer's account
    that takes no credit (closed since) refuses them all, nothing written."""
    return _close_holds_many(ctx, tx, "release", releases, work_date)


def _close_holds_many(ctx: Context, tx: Transaction, op: str, ends: list[tuple[str, int]],
                      work_date: date | str) -> list[int]:
    day = work_date_text(work_date)
    contents = {event_id: fingerprint(op, hold_id, day) for event_id, hold_id in ends}
    assert len(contents) == len(ends) == len({hold_id for _, hold_id in ends}), \
        "each event and each hold is named once"
    posted = replays(tx, list(contents.items()))
    fresh = [(event_id, hold_id) for event_id, hold_id in ends if event_id not in posted]
    if fresh:
        check_work_date_open(tx, day)
        held = find_holds(tx, [hold_id for _, hold_id in fresh])
        for h in held:
            if h.state != HELD:
                raise LedgerError("hold_already_ended", h.state, "a hold still held",
                                  "hold_id")
        target, new_state = _HOLD_ENDINGS[op]
        assert target != "payee", "each hold of a bulk ending goes to one place"
        holds, rules = ctx.accounts.holds, ctx.accounts.rules
        targets = [h.account_no if target == "payer" else ctx.accounts[target] for h in held]
        total = Line(holds, DEBIT, sum(h.amount_fen for h in held))
        apply_lines(tx, (total,), day, "account_balance_insufficient", rules)
        if target == "payer":
            sums: dict[tuple[str, str], int] = {}
            for account_no, h in zip(targets, held):
                sums[account_no, day] = sums.get((account_no, day), 0) + h.amount_fen
            try:
                apply_sums(tx, sums, CREDIT, "account_balance_insufficient")
            except LedgerError:
                undo_lines(tx, (total,), rules)
                raise
        else:
            defer_lines(tx, [Line(targets[0], CREDIT, total.amount_fen)], rules)
        postings = [Posting(event_id, op, contents[event_id], VOUCHER_SPECIAL_TRANSFER,
                            day, transfer(holds, account_no, h.amount_fen), ref=h.ref,
                            depends_on=h.hold_id)
                    for (event_id, _), h, account_no in zip(fresh, held, targets)]
        entry_ids = insert_entries(tx, postings)
        end_holds(tx, [(h.hold_id, entry_ids[event_id]) for (event_id, _), h
                       in zip(fresh, held)], new_state)
        posted.update(entry_ids)
    return [posted[event_id] for event_id, _ in ends]


# Where held money goes for each way a hold ends, and the hold's state afterwards.
_HOLD_ENDINGS = {
    "release": ("payer", "released"),
    "settle": (chart.CENTRAL_BANK, "settled"),
    "net": (chart.BEPS_NETTED_OUT, "netted"),
    "internal": ("payee", "settled"),
}


def _close_hold(ctx: Context, tx: Transaction, event_id: str, hold_id: int,
                work_date: date | str, op: str, payee_account: str | None = None) -> int:
    day = work_date_text(work_date)
    content = (fingerprint(op, hold_id, day, payee_account) if payee_account
               else fingerprint(op, hold_id, day))
    # The hold is read first and the event looked up only when the hold is no longer
    # held (an event posted before ended it): a hold still held is the common case, and
    # for it `post` itself tells a replay (its entry's INSERT finds the event id taken),
    # so a settlement runs one SELECT fewer. What is refused, and with which error, is
    # as when the event was looked up first.
    try:
        held = find_hold(tx, hold_id)
    except LedgerError:
        found = replay(tx, event_id, content)
        if found is None:
            raise
        return found[0]
    if held.state != HELD:
        found = replay(tx, event_id, content)
        if found is not None:
            return found[0]
        raise LedgerError("hold_already_ended", held.state, "a hold still held", "hold_id")

    target, new_state = _HOLD_ENDINGS[op]
    if target == "payer":
        credit_account = held.account_no
    elif target == "payee":
        assert payee_account is not None, "an internal transfer names its payee"
        credit_account = payee_account
    else:
        credit_account = ctx.accounts[target]
    lines = transfer(ctx.accounts.holds, credit_account, held.amount_fen)
    posting = Posting(event_id, op, content, VOUCHER_SPECIAL_TRANSFER, day, lines,
                      ref=held.ref, depends_on=hold_id)
    posted = post(tx, posting, ctx.accounts.rules)
    if not posted.replayed:  # a replay's hold was ended by the entry first posted
        end_hold(tx, hold_id, posted.entry_id, new_state)
    return posted.entry_id


def settle_net(ctx: Context, tx: Transaction, event_id: str, round_key: str, debit_fen: int,
               credit_fen: int, work_date: date | str) -> int:
    """Settle one BEPS netting round on the clearing account; 0 when both sides are 0.

    `debit_fen` is what we owe for the round (our netted outgoing payments),
    `credit_fen` what we receive (netted incoming ones).
    """
    for path, value in (("debit_fen", debit_fen), ("credit_fen", credit_fen)):
        if type(value) is not int or value < 0:
            raise LedgerError("amount_must_be_zero_or_positive_fen", value,
                              "a non-negative integer number of fen", path)
    lines: list[Line] = []
    if debit_fen:
        lines += transfer(ctx.accounts[chart.BEPS_NETTED_OUT], ctx.accounts.clearing, debit_fen)
    if credit_fen:
        lines += transfer(ctx.accounts.clearing, ctx.accounts[chart.BEPS_NETTED_IN], credit_fen)
    if not lines:
        return 0
    return _simple(ctx, tx, event_id, "settle_net", VOUCHER_SPECIAL_TRANSFER, tuple(lines),
                   work_date, round_key, debit_fen, credit_fen, ref=round_key)


def _simple(ctx: Context, tx: Transaction, event_id: str, op: str, voucher_kind: str,
            lines: tuple[Line, ...], work_date: date | str, *content_parts: object,
            ref: str = "", insufficient_code: str = "account_balance_insufficient") -> int:
    """Post an entry that needs nothing beyond its lines; its entry id."""
    day = work_date_text(work_date)
    content = fingerprint(op, day, ref, *content_parts,
                          *(f"{x.account_no}{x.side}{x.amount_fen}" for x in lines))
    posting = Posting(event_id, op, content, voucher_kind, day, lines, ref=ref)
    return post(tx, posting, ctx.accounts.rules, insufficient_code=insufficient_code).entry_id


def _customer(ctx: Context, account_no: str) -> str:
    """A customer account number; our own internal accounts cannot be named by callers."""
    if account_no in ctx.accounts.numbers:
        raise LedgerError("account_not_found", account_no, "a customer account", "account_no")
    return account_no
