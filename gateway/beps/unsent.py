"""Whether the NPC may have one of our packages, and changing one it provably never had.

A package is changed here (an item taken out, the package held or cancelled) only while
nothing of it can have reached the NPC: its outbox row is not taken, not being sent now,
and every delivery attempt of it ended provably without the NPC taking it (no connection
made, held while the link was down, a 503 or a 4xx refusal: gateway.outbound.Delivery).
That is a package sealed and never handed to the sender, one the NPC refused at the link
(its letter dead), one an operator holds, and, during an NPC outage, one whose every
attempt failed so. Then nobody but us has seen any version of it, and it may go out
rebuilt under the same MsgId and header MesgID.

Anything else may have given the NPC the package: a timeout, a connection lost mid-way,
an unreadable answer, a gateway process that died while sending. The NPC would take the
same MesgID again as a repeat of what it holds, so a package changed under it would be
netted as first sent while our books say otherwise: the payers' money lost or paid twice.
Such a package is left as it is; once the NPC has taken it, only a ccms.307 per item
can withdraw one (cancels.py), and its answer says what the NPC did.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from gateway import outbound
from gateway.errors import Conflict, NotFound, Problem
from gateway.store import NOT_READ, Contended, answered, id_chunks, reading_once

# The outbox states of a package nothing of which is with the NPC (given the counts):
# waiting for its sender, dead-lettered (refused at the link), held by an operator.
UNSENT_OUTBOX = ("pending", "dead", "held")
# The package states such a package may be in: sealed, sent (its items went `sent` at the
# first claim, whose attempt failed), held by an operator.
CHANGEABLE_STATES = ("sealed", "sent", "held")
# Package states after which nothing of it changes here.
FINAL_STATES = ("netted", "settled", "rejected", "cancelled", "expired")


@dataclass(frozen=True)
class Package:
    """One of our packages as a change to it needs it: its ids, state, totals and the
    delivery of its outbox row."""

    id: str
    msg_type: str
    msg_id: str
    mesg_id: str
    sender: str
    state: str
    count: int
    total_fen: int
    outbox_id: int | None
    netting_date: str | None
    netting_round: str | None
    delivery: outbound.Delivery | None

    @property
    def changeable(self) -> bool:
        """Nothing of it can have reached the NPC: it may be rebuilt, held, cancelled."""
        d = self.delivery
        return (self.state in CHANGEABLE_STATES and d is not None
                and d.state in UNSENT_OUTBOX and d.provably_untaken)

    @property
    def dead(self) -> bool:
        return self.delivery is not None and self.delivery.state == "dead"


_COLUMNS = ("p.id, p.msg_type, p.msg_id, p.mesg_id, p.sender, p.state, p.count, p.total_fen, "
            "p.outbox_id, p.netting_date, p.netting_round, o.state, o.attempts, o.untaken")


def read(tx: Any, package_id: str, lock: bool = False) -> Package | None:
    """Our package `package_id` (None: no package of ours by that id); with `lock`
    (PostgreSQL) its row is held until the transaction ends, so that a netting notice for
    it processed by another gateway process meanwhile is either seen here or waits and
    then sees what this transaction did."""
    if not lock:
        read = answered(tx, _READ_ONCE, package_id)
        if read is not NOT_READ:
            return read
    row = tx.query_one(f"SELECT {_COLUMNS} FROM {_FROM} WHERE p.id = ? AND p.direction = 'out'"
                       + (" FOR UPDATE OF p" if lock and tx.dialect == "postgresql" else ""),
                       (package_id,))
    return None if row is None else _package(row)


def _package(row: tuple) -> Package:
    delivery = (outbound.Delivery(int(row[8]), row[11], int(row[12]), int(row[13]))
                if row[8] is not None and row[11] is not None else None)
    return Package(*row[:11], delivery)


_FROM = "beps_packages p LEFT JOIN outbox o ON o.id = p.outbox_id"
# The key in a transaction's `cache` of the packages `read_once` read.
_READ_ONCE = "beps.unsent.packages"


def read_once(tx: Any, package_ids: Iterable[str]) -> AbstractContextManager[dict[Any, Any]]:
    """`read` (without a lock) of each of these packages in one statement (a few for a
    long list), and within the block answered from that read (store.reading_once): for
    checks that only read (the console's row actions)."""
    ids = list(dict.fromkeys(package_ids))
    rows: dict[str, Package | None] = dict.fromkeys(ids)
    for chunk in id_chunks(ids):
        for row in tx.query(f"SELECT {_COLUMNS} FROM {_FROM} WHERE p.direction = 'out' "
                            f"AND p.id IN ({', '.join('?' * len(chunk))})", chunk):
            rows[row[0]] = _package(row)
    return reading_once(tx, _READ_ONCE, rows)


def ours(tx: Any, package_id: str) -> Package:
    """Our package `package_id`; refused as not found otherwise (an operator's target)."""
    pkg = read(tx, package_id)
    if pkg is None:
        raise NotFound(Problem("package_not_found", "/target", package_id,
                               "the id of a package we sent (GET /v1/packages/{id}, a "
                               "BEPS payment's `beps.package`)"))
    return pkg


def change_unsent(tx: Any, pkg: Package, sql: str, params: tuple) -> None:
    """Run `sql` on the package's outbox row, conditional on the row still being unsent
    with every attempt untaken (its WHERE must end `id = ?` and take this module's
    condition after it): a sender in another gateway process may have claimed it since it
    was read, or an attempt may have ended otherwise. Contended then: the work runs
    again and finds the package as it now is."""
    if tx.execute(sql + _STILL_UNSENT, (*params, pkg.outbox_id)) != 1:
        raise Contended(f"package {pkg.id} was claimed for sending meanwhile")


_STILL_UNSENT = (" WHERE id = ? AND state IN (" + ", ".join(f"'{s}'" for s in UNSENT_OUTBOX)
                 + ") AND attempts = untaken")


# The codes a refusal gives, by why the package cannot be changed here: a package
# action's own, and those of an operator's action on one of its items (hold, cancel).
PACKAGE_CODES = {"final": "package_already_final", "sending": "package_delivery_under_way",
                 "maybe": "package_maybe_taken_by_npc", "taken": "package_taken_by_npc"}
ITEM_CODES = {"final": "payment_not_unsent", "sending": "payment_delivery_under_way",
              "maybe": "payment_maybe_taken_by_npc", "taken": "payment_already_on_the_wire"}


def why_not(pkg: Package) -> str:
    """Why the package cannot be changed here: final, sending, maybe (taken) or taken."""
    d = pkg.delivery
    if pkg.state in FINAL_STATES:
        return "final"
    if d is not None and d.state == "sending":
        return "sending"
    if d is not None and not d.taken:
        return "maybe"
    return "taken"


def refusal(pkg: Package, path: str, value: Any, codes: dict[str, str]) -> Conflict:
    """The refusal of a change to a package the NPC may have (or has), or that is final,
    with the code `codes` gives for the reason and what to do instead."""
    d = pkg.delivery
    what = f"package {pkg.id}" + (f" ({d.describe()})" if d else "")
    why = why_not(pkg)
    if why == "final":
        return Conflict(Problem(codes[why], path, pkg.state,
                                "a package not netted, rejected, cancelled or expired",
                                f"{what} is {pkg.state}: nothing of it can be stopped"))
    if why == "sending":
        return Conflict(Problem(
            codes[why], path, value, "no delivery attempt of its package on its way",
            f"{what}: a delivery attempt is on its way to the NPC now; ask again once it "
            "has ended (the link's timeout bounds it)"))
    if why == "maybe":
        assert d is not None
        return Conflict(Problem(
            codes[why], path, d.attempts - d.untaken,
            "every delivery attempt of its package ended without the NPC taking it (no "
            "connection, link held while down, 503, a 4xx refusal)",
            f"{what}: an attempt ended without proof that the NPC did not take the package "
            "(a timeout, a connection lost mid-request), so the NPC may net it as sent and "
            "it is not changed under the same ids. It is sent again as it is when the "
            "link answers (its dead letter retried, if it died), the NPC taking it as a "
            "repeat; then ask the NPC to take an item out (npc-cancel) before netting"))
    return Conflict(Problem(
        codes[why], path, pkg.state, "a package the NPC has not taken",
        f"{what}: the NPC has taken it; only the NPC can take an item out of it before "
        "netting (npc-cancel of the item, ccms.307)"))
