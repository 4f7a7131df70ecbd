"""BEPS netting rounds and the settlement of net positions (DOMAIN.md §1, §7).

A round takes every package waiting, oldest first, and admits one when its payer's net
debit position stays within the payer's limit: the net debit cap (净借记限额, set with
`POST /sim/beps/cap`), and never more than the payer's clearing balance, since a netted
position must be covered when it settles. A position starts from what the participant
owes in rounds netted but not yet settled; credits admitted in the round lower it, so
the round makes passes until nothing more fits. A package that does not fit waits for a
later round or for a higher cap or balance (the sender hears PR11 once, with the limit it
would break: NEZQ0001 the cap, NEZQ0002 the balance, whichever is lower). The admitted packages are
netted together: final, never cancelled (已轧差即具有支付最终性).

Rounds are numbered within the netting date (the natural day). A timed round takes the
number of its slot (the k-th interval after midnight, as gateway.windows numbers
rounds), so a restart of the NPC renumbers nothing; a round asked for by hand takes the
number after the date's last, and a timed round never one lower than a number used
already (a round by hand earlier in the day moves the later ones up). With an interval
that gives more rounds a day than NetgRnd's two digits number (tests and benchmarks
use such), every round takes the next number. A round is made only when something is
netted, so quiet intervals use no numbers.

Settlement: positions of rounds netted while HVPS does not settle wait until it does
(phases 10 and 30); then, and after every round inside the window, each unsettled round
moves the clearing balances by the participants' nets and everyone in it hears saps.606.
A round a debtor cannot cover stays unsettled and is tried again later.

`net_round` writes the round and its results only; `notify_round` sends what the round
decided (so the bench can time netting on its own). The node does both in one
transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from gateway.messages.common import NpcProcessing, OriginalRef, iso_datetime
from simulators import beps_store as bs
from simulators.beps_notices import NETTED, WAITING_BALANCE, WAITING_CAP, BepsNotices
from simulators.logfmt import event
from simulators.store import Store

log = logging.getLogger("npc.netting")

ROUNDS_PER_DAY_MAX = 99  # NetgRnd is two digits
DEFAULT_CAP_FEN = 10**13  # 100 billion yuan: no cap in practice unless one is set


@dataclass
class RoundResult:
    netting_date: str
    netting_round: str | None
    netted: list[int] = field(default_factory=list)
    newly_waiting: list[int] = field(default_factory=list)
    # Those of newly_waiting whose payer's limit is its clearing balance, below its cap.
    short_of_balance: set[int] = field(default_factory=set)
    still_waiting: int = 0


def _admit(pending: list[tuple[int, str, str, int, int]], position: dict[str, int],
           limit: dict[str, int]) -> tuple[list[tuple], list[tuple]]:
    """Admit packages while their payers' limits allow, pass after pass."""
    admitted: list[tuple] = []
    changed = True
    while changed and pending:
        changed, rest = False, []
        for pkg in pending:
            _, payer, payee, amount_fen, _ = pkg
            if amount_fen == 0 or position[payer] + amount_fen <= limit[payer]:
                position[payer] += amount_fen
                position[payee] -= amount_fen
                admitted.append(pkg)
                changed = True
            else:
                rest.append(pkg)
        pending = rest
    return admitted, pending


def net_round(store: Store, now: datetime, default_cap_fen: int = DEFAULT_CAP_FEN,
              netting_date: str | None = None, slot: int | None = None,
              slots_per_day: int = 0, closes_at: datetime | None = None) -> RoundResult:
    """Net what fits now; writes the round, its positions and the packages' status.
    A timed round names its netting date, `slot` and closing instant: it nets the
    packages taken before it closed (the round closing at midnight nets for the day
    before, whenever it runs). A round by hand nets everything waiting, for today."""
    conn = store.conn
    netting_date = netting_date or now.date().isoformat()
    pending = bs.waiting(conn, closes_at.isoformat() if closes_at else None)
    result = RoundResult(netting_date, None)
    if not pending:
        return result
    position: dict[str, int] = defaultdict(int, bs.outstanding(conn))
    parties = {p for pkg in pending for p in (pkg[1], pkg[2])}
    caps = {p: bs.cap(conn, p, default_cap_fen) for p in parties}
    limit = {p: min(caps[p], store.balance(p)) for p in parties}
    admitted, rest = _admit(pending, position, limit)
    admitted.sort()  # arrival order, whichever pass admitted them
    result.newly_waiting = [pkg[0] for pkg in rest if not pkg[4]]
    result.short_of_balance = {pkg[0] for pkg in rest
                               if not pkg[4] and limit[pkg[1]] < caps[pkg[1]]}
    result.still_waiting = len(rest)
    conn.executemany("UPDATE beps_packages SET told_waiting = 1 WHERE id = ?",
                     [(pid,) for pid in result.newly_waiting])
    number = bs.next_round(conn, netting_date)
    if slot is not None and slots_per_day <= ROUNDS_PER_DAY_MAX:
        number = max(slot, number)
    if not admitted or number > ROUNDS_PER_DAY_MAX:
        return result
    netting_round = f"{number:02d}"
    result.netting_round = netting_round
    result.netted = [pkg[0] for pkg in admitted]
    conn.execute("INSERT INTO beps_rounds (netting_date, netting_round, netted_at) "
                 "VALUES (?, ?, ?)", (netting_date, netting_round, now.isoformat()))
    conn.executemany("UPDATE beps_packages SET status = ?, netting_date = ?, netting_round = ? "
                     "WHERE id = ?", [(bs.NETTED, netting_date, netting_round, pkg[0])
                                      for pkg in admitted])
    sides: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, payer, payee, amount_fen, _ in admitted:
        sides[payer][0] += amount_fen
        sides[payee][1] += amount_fen
    conn.executemany("INSERT INTO beps_positions VALUES (?, ?, ?, ?, ?)",
                     [(netting_date, netting_round, p, d, c)
                      for p, (d, c) in sorted(sides.items())])
    event(log, "round_netted", netting_date=netting_date, netting_round=netting_round,
          packages=len(admitted), waiting=len(rest))
    return result


def notify_round(store: Store, notices: BepsNotices, result: RoundResult,
                 now: datetime) -> None:
    """Tell senders (ccms.900 PR03 or PR11) and forward the netted packages."""
    for package_id in result.newly_waiting:
        row = bs.package(store.conn, package_id)
        why = WAITING_BALANCE if package_id in result.short_of_balance else WAITING_CAP
        notices.result(row.sender, _original(row), "PR11", why, result.netting_date)
    for package_id in result.netted:
        row = bs.package(store.conn, package_id)
        notices.result(row.sender, _original(row), bs.NETTED, NETTED, result.netting_date,
                       netting_round=result.netting_round)
        npc = NpcProcessing(bs.NETTED, NETTED.code, netting_date=result.netting_date,
                            netting_round=result.netting_round,
                            received_at=iso_datetime(now), forwarded_at=iso_datetime(now))
        notices.forward_netted(row.receiver, row.raw, npc,
                               bs.cancelled_txs(store.conn, package_id))


def _original(row: bs.PackageRow) -> OriginalRef:
    return OriginalRef(msg_id=row.msg_id, instg_party=row.sender, mt=row.mesg_type)


def settle_pending(store: Store, notices: BepsNotices, settled_on: str, now: datetime) -> int:
    """Settle every unsettled round a debtor can cover, in order; how many settled."""
    settled = 0
    for netting_date, netting_round in bs.unsettled_rounds(store.conn):
        if not _settle(store, notices, netting_date, netting_round, settled_on, now):
            break
        settled += 1
    return settled


def _settle(store: Store, notices: BepsNotices, netting_date: str, netting_round: str,
            settled_on: str, now: datetime) -> bool:
    rows = bs.positions(store.conn, netting_date, netting_round)
    nets = {p: credit - debit for p, debit, credit in rows}
    short = [p for p, net in nets.items() if store.balance(p) + net < 0]
    if short:
        event(log, "round_settlement_short", logging.WARNING, netting_date=netting_date,
              netting_round=netting_round, participants=",".join(short))
        return False
    for participant, net_fen in nets.items():
        store.move(participant, net_fen)
    store.conn.execute("UPDATE beps_rounds SET settled_on = ?, settled_at = ? WHERE "
                       "netting_date = ? AND netting_round = ?",
                       (settled_on, now.isoformat(), netting_date, netting_round))
    first = {}
    for row in bs.round_packages(store.conn, netting_date, netting_round):
        for party in (row.payer, row.payee):
            first.setdefault(party, row)
    npc = NpcProcessing("PR04", NETTED.code, netting_date=netting_date,
                        netting_round=netting_round, settlement_date=settled_on)
    for participant, net_fen in sorted(nets.items()):
        notices.booking(participant, _original(first[participant]), npc, net_fen,
                        store.balance(participant), netting_round)
    event(log, "round_settled", netting_date=netting_date, netting_round=netting_round,
          settled_on=settled_on, participants=len(nets))
    return True
