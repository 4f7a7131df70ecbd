"""Packing accepted BEPS transactions into packages, and sending the packages.

Items wait in `beps_items` with no package. A package is sealed per receiving direct
participant and message type (the business kind: customer credits beps.121, institution
credits beps.122, periodic credits beps.125, debits beps.127) when the waiting items
reach `package_size_max` or the oldest has waited `package_age_max_s`, whichever comes
first. Sealing assigns the items to the package with one conditional UPDATE (only items
still without a package), builds and signs the package, archives it and puts it in the
outbox, all in one transaction: no item joins two packages, and none is left behind
after a restart, since the next check finds whatever is still unpacked.

The stream entries the intake adds are only a nudge to look now rather than at the next
timed check. Sending is like the HVPS sender's: the exact bytes stored at sealing are
posted to the NPC, retried, and never rebuilt; claiming the package for its first send
moves its transactions from accepted to sent. A package sealed while the link has a free
slot (gateway.direct) is claimed by the transaction that seals it and posted right after
its commit, as an HVPS payment's message is by the work that accepts it: one UPDATE
of the payments' rows makes them packed and sent (each step keeps its history row), and
no stream entry, second transaction or read of the package's bytes stands between
sealing and sending. The others, and every retry, go by the packages' stream.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Sequence

from gateway import logs, outbound, payments
from gateway.beps import build, items
from gateway.beps.settings import BepsSettings
from gateway.errors import Problem
from gateway.linkpost import LinkRefused
from gateway.messages import codec, package
from gateway.messages.common import iso_datetime
from gateway.redisstate import REDIS_DOWN_ERRORS, Outage
from gateway.store import Contended
from gateway.waiting import wait_set
from gateway.worker import DeadNow

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.packer")

OUT_KINDS = (items.CREDIT_OUT, items.DEBIT_OUT)
PACKAGE_KIND = "beps_package"  # outbox.kind of a sealed package
VOID = items.VOID             # package_id of an item that will never be packed
HELD_OUT = items.HELD_OUT     # that of an item an operator set aside (gateway.beps.stops)
IDS_PER_STATEMENT = 500        # items assigned to a package by one UPDATE
# Packages of one pass claimed in the transaction that seals them, each in a link slot
# reserved beforehand (`Packer.seal`); a pass seals one or two under load.
CLAIMED_AT_SEALING_MAX = 4
# The reason of a payment kept out of its package for a rule the NPC checks per item.
REFUSED_REASON = "refused before packing, the NPC would refuse its package"


def seal_due(tx: Any, gw: "Gateway", s: BepsSettings, stream: str, now: datetime,
             force: bool = False, claimed: list[tuple[int, bytes]] | None = None,
             claim_max: int = 0) -> list[int]:
    """Seal every package that is due (all waiting items when `force`); outbox ids. The
    first `claim_max` packages are also claimed for their first send, as `claim` does,
    their (outbox id, bytes) added to `claimed`."""
    aged = (now - timedelta(seconds=s.package_age_max_s)).isoformat()
    groups = tx.query("SELECT counterparty, msg_type, COUNT(*), MIN(created_at) FROM "
                      "beps_items WHERE package_id IS NULL GROUP BY counterparty, msg_type "
                      "ORDER BY counterparty, msg_type", ())
    sealed = []
    for receiver, msg_type, count, oldest in groups:
        while count >= s.package_size_max or (count and (force or oldest <= aged)):
            take = min(count, s.package_size_max)
            claim_now = claimed is not None and len(claimed) < claim_max
            outbox_id = _seal(tx, gw, s, stream, receiver, msg_type, take, now,
                              claimed if claim_now else None)
            if outbox_id is not None:
                sealed.append(outbox_id)
            count -= take
            oldest = tx.query_one("SELECT MIN(created_at) FROM beps_items WHERE package_id "
                                  "IS NULL AND counterparty = ? AND msg_type = ?",
                                  (receiver, msg_type))[0]
    return sealed


def _seal(tx: Any, gw: "Gateway", s: BepsSettings, stream: str, receiver: str,
          msg_type: str, take: int, now: datetime,
          claimed: list[tuple[int, bytes]] | None = None) -> int | None:
    """Seal one package of up to `take` waiting items; its outbox id (None: all void).
    With `claimed`, the package is also claimed for its first send (`claim`): its
    payments are packed and sent by one rewrite of their rows, and its (outbox id,
    bytes) added to `claimed`."""
    sender = gw.settings.bank_code
    day = now.strftime("%Y%m%d")
    msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
    package_id = f"{sender}{msg_id}"
    candidates = tx.query(_WAITING, (receiver, msg_type, take))
    read: dict[str, Any] = {}
    refused = refusals(msg_type, [row for row in candidates if row[1] == "accepted"], now,
                       read, tx)
    # A payment that left `accepted` before packing (cancelled by an operator) is never
    # packed, nor one the NPC would refuse; the item is marked so that it is not looked
    # at again.
    packable = [row for row in candidates if row[1] == "accepted" and row[0] not in refused]
    assigned = _assign(tx, package_id, [row[0] for row in packable])
    assigned += _assign(tx, VOID, [row[0] for row in candidates
                                   if row[1] != "accepted" or row[0] in refused])
    if refused:
        refuse_alone(tx, gw, refused, now)
    if assigned == len(candidates):
        rows = packable
    else:
        # Another gateway process marked some meanwhile (a cancel, waited for above): the
        # package holds what this UPDATE assigned, read again as it now is.
        rows = tx.query(_PACKED, (package_id,))
    if not rows:
        return None
    transfers = ([read[row[0]] for row in rows] if rows is packable
                 else build.with_returns(tx, rows, build.transfers_of(row[2:] for row in rows)))
    days = s.debit_return_days if msg_type == build.DEBIT_TYPE else None
    body = build.package_body(msg_type, msg_id, sender, receiver, transfers, now, days)
    header = outbound.new_header(tx, now, sender, receiver, msg_type, "BEPS", 3)
    envelope = codec.encode(header, body, gw.keyring)
    # The package's bytes are stored once, in the archive; its outbox row (no envelope)
    # names them by message id. A megabyte in the outbox row too would be written again
    # with each of its state changes (taken, sent, acknowledged).
    outbound.archive(tx, "out", header, envelope, now)
    outbox_id = tx.query_one(
        "INSERT INTO outbox (payment_id, kind, stream, state, mesg_type, mesg_id, receiver, "
        "created_at, updated_at) VALUES (NULL, ?, ?, 'pending', ?, ?, ?, ?, ?) RETURNING id",
        (PACKAGE_KIND, stream, msg_type, header.mesg_id, receiver, now.isoformat(),
         now.isoformat()))[0]
    deadline = (now + timedelta(days=days)).isoformat() if days else None
    total_fen = sum(t.amount_fen for t in transfers)
    if claimed is not None:
        taken = outbound.take(tx, outbox_id, now)
        assert taken, f"the outbox row {outbox_id} just written is pending"
    tx.execute("INSERT INTO beps_packages (id, direction, msg_type, msg_id, sender, receiver, "
               "count, total_fen, state, outbox_id, mesg_id, deadline_at, created_at, "
               "updated_at) VALUES (?, 'out', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (package_id, msg_type, msg_id, sender, receiver, len(transfers), total_fen,
                "sealed" if claimed is None else "sent", outbox_id, header.mesg_id,
                deadline, now.isoformat(), now.isoformat()))
    # Packing keeps each one's state; all were accepted when assigned to the package, and
    # they are all its items: one history row for the package tells each of them. Sent
    # at once, they are rewritten by the sending alone, which checks them as packing
    # does.
    group = items.package_group(package_id, len(rows))
    packed = payments.transition_group(
        tx, group, "accepted", "accepted", "beps_packed", now, gw.notifier,
        members=None if claimed is None else [row[0] for row in rows], package=package_id)
    if claimed is not None:
        packed = payments.transition_group(tx, group, "accepted", "sent", "beps_sent", now,
                                           gw.notifier, known=[row[0] for row in rows],
                                           package=package_id)
    if len(packed) != len(rows):  # one left `accepted` since it was read: read again
        raise Contended(f"{len(rows) - len(packed)} of the payments of package "
                        f"{package_id} are no longer accepted")
    if claimed is not None:
        claimed.append((outbox_id, bytes(envelope)))
    log.info("event=beps_package_sealed package=%s type=%s receiver=%s count=%s "
             "total_fen=%s mesg_id=%s", package_id, msg_type, receiver, len(transfers),
             total_fen, header.mesg_id)
    return outbox_id


def refusals(msg_type: str, rows: list[Sequence[Any]], now: datetime,
             read: dict[str, Any] | None = None, tx: Any = None) -> dict[str, list[Problem]]:
    """The problems of each waiting item (rows of `_WAITING`) that breaks a rule the NPC
    checks on every transaction of a package (package.check_item, the same code its
    reading runs), by payment id. The NPC refuses a whole package for one such
    transaction, which would take the other payers' good payments down with it; intake
    refuses these already, so this only catches what reached the table another way (a
    rule changed, a row written before it). Each item as read is kept in `read`, by
    payment id, when given: the package is built from them. With `tx`, a return (A105)
    is read with the RtrInf its route keeps (build.with_returns)."""
    layout = build.FAMILIES[msg_type].LAYOUT
    on_date = date.fromisoformat(iso_datetime(now)[:10])  # the package's date, as the NPC reads it
    transfers = build.transfers_of(row[2:] for row in rows)
    if tx is not None:
        transfers = build.with_returns(tx, rows, transfers)
    found = {}
    for row, transfer, problems in zip(rows, transfers,
                                       package.check_items(layout, transfers, on_date)):
        if problems:
            found[row[0]] = problems
        if read is not None:
            read[row[0]] = transfer
    return found


def refuse_alone(tx: Any, gw: "Gateway", refused: dict[str, list[Problem]],
                 now: datetime) -> None:
    """Reject these waiting payments on their own, before packing: each payer's hold
    released, the core system told the rule broken (the webhook and the payment's
    reason), an alert for the operators."""
    for payment_id, problems in refused.items():
        payment = payments.get(tx, payment_id)
        codes = ",".join(sorted({p.code for p in problems}))
        where = " ".join(f"{p.path}={p.value!r}" for p in problems)
        if payment["hold_id"]:
            gw.ledger.release(tx, f"{payment_id}:refused_before_packing:release",
                              int(payment["hold_id"]), gw.work_date.isoformat())
        reason = f"{REFUSED_REASON}: {codes}"
        payments.transition(tx, payment, "rejected", "beps_refused_before_packing", now,
                            gw.notifier, reason=reason, rule=codes, detail=where)
        items.unheld_ended(tx, gw, [payment], "rejected", {"reason": reason, "rule": codes},
                           now)
        gw.alert(tx, "beps_item_refused_before_packing", payment=payment_id, rule=codes,
                 detail=where)
        log.warning("event=beps_item_refused_before_packing payment=%s rule=%s detail=%s",
                    payment_id, codes, where)


def _assign(tx: Any, package_id: str, payment_ids: list[str]) -> int:
    """Give the items of these payments that have no package yet this package id, a few
    hundred in one statement; how many were given it."""
    assigned = 0
    for start in range(0, len(payment_ids), IDS_PER_STATEMENT):
        chunk = payment_ids[start:start + IDS_PER_STATEMENT]
        assigned += tx.execute(f"UPDATE beps_items SET package_id = ? WHERE payment_id IN "
                               f"({', '.join('?' * len(chunk))}) AND package_id IS NULL",
                               (package_id, *chunk))
    return assigned


# The items waiting for a package to a receiver, of one type, in packing order: the id,
# the state and the columns of the transaction, as tuples (a whole payment row as a dict
# costs several times as much to read). Read once: what is packed is built from them.
_WAITING = (f"SELECT i.payment_id, p.state, {', '.join(build.COLUMNS)} FROM beps_items i "
            "JOIN payments p ON p.id = i.payment_id WHERE i.package_id IS NULL AND "
            "i.counterparty = ? AND i.msg_type = ? ORDER BY i.created_at, i.payment_id "
            "LIMIT ?")
# A package's items read the same way, by package (when the waiting ones read above
# changed before they could be assigned).
_PACKED = (f"SELECT i.payment_id, p.state, {', '.join(build.COLUMNS)} FROM beps_items i "
           "JOIN payments p ON p.id = i.payment_id WHERE i.package_id = ? "
           "ORDER BY i.created_at, i.payment_id")


def claim(tx: Any, gw: "Gateway", outbox_id: int, now: datetime) -> bytes | None:
    """Take a sealed package for sending; its transactions become `sent` the first time.
    None when the row is not a pending package (sent, or claimed by another process)."""
    row = tx.query_one("SELECT 1 FROM outbox WHERE id = ? AND kind = ?",
                       (outbox_id, PACKAGE_KIND))
    if row is None or not outbound.take(tx, outbox_id, now):
        return None
    # Read once claimed: the package may have been rebuilt until then (an item cancelled).
    envelope = stored_envelope(tx, outbox_id)
    pkg = tx.query_one("SELECT id, state, count FROM beps_packages WHERE outbox_id = ?",
                       (outbox_id,))
    if pkg is not None and pkg[1] == "sealed":
        tx.execute("UPDATE beps_packages SET state = 'sent', updated_at = ? WHERE id = ?",
                   (now.isoformat(), pkg[0]))
        # Those still accepted go; when that is every item, the package's history row
        # tells each of them.
        payments.transition_group(tx, items.package_group(pkg[0], pkg[2]), "accepted",
                                  "sent", "beps_sent", now, gw.notifier, package=pkg[0])
    return bytes(envelope)


def seal_and_claim(tx: Any, gw: "Gateway", s: BepsSettings, stream: str, now: datetime,
                   force: bool, slots: int) -> tuple[list[int], list[tuple[int, bytes]]]:
    """`seal_due`, the first `slots` packages sealed claimed for their first send in the
    same transaction: the outbox ids sealed, and (outbox id, bytes) of those claimed."""
    claimed: list[tuple[int, bytes]] = []
    return seal_due(tx, gw, s, stream, now, force, claimed, slots), claimed


def stored_envelope(tx: Any, outbox_id: int) -> bytes:
    """The bytes of the package in this outbox row: its archive row's (packages sealed
    before the bytes were kept only there carry them in the outbox row itself)."""
    row = tx.query_one(f"SELECT {outbound.stored_bytes('o')} FROM outbox o WHERE o.id = ?",
                       (outbox_id,))
    assert row is not None and row[0] is not None, \
        f"outbox row {outbox_id} of a package has its bytes"
    return bytes(row[0])


class Packer:
    """Seals due packages when nudged and on a timer; sends sealed packages."""

    def __init__(self, gw: "Gateway", settings: BepsSettings, stream: str) -> None:
        self.gw = gw
        self.settings = settings
        self.stream = stream
        self.nudged = asyncio.Event()
        # Set by the extension's stop before it cancels the loop: a cancellation can be
        # lost inside a Redis call (seen with redis-py), and the loop must end anyway.
        self.stopped = False

    async def nudge(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        self.nudged.set()

    async def run(self) -> None:
        # Redis away: the sealed packages are committed and the sweeper hands them over
        # later; one line per cause, not one per pass (gateway.redisstate).
        outage = Outage(log, "beps_seal_hand_over_postponed")
        while not self.stopped:
            await wait_set(self.nudged, self.settings.seal_check_s)
            self.nudged.clear()
            if not self.gw.leading:  # one packer for all gateway processes (gateway.cluster)
                continue
            try:
                await self.seal()
                outage.recovered()
            except REDIS_DOWN_ERRORS as exc:
                outage.failed(exc)
            except Exception as exc:  # the timer outlives one failed pass; logged in full
                log.exception("event=beps_seal_failed error=%r", exc)

    async def seal(self, force: bool = False) -> int:
        """Seal what is due now; the packages claimed with it (a link slot each) are
        posted after the commit, the others put on the send stream; how many."""
        gw = self.gw
        now = gw.clock.now()
        slots = 0
        while slots < CLAIMED_AT_SEALING_MAX and gw.direct.reserve_link():
            slots += 1
        try:
            ids, claimed = await gw.store.run(lambda tx: seal_and_claim(
                tx, gw, self.settings, self.stream, now, force, slots))
        except BaseException:
            for _ in range(slots):
                gw.direct.release_link()
            raise
        for _ in range(slots - len(claimed)):
            gw.direct.release_link()
        for outbox_id, envelope in claimed:
            gw.direct.send_package(outbox_id, envelope, self.stream)
        taken = {outbox_id for outbox_id, _ in claimed}
        for outbox_id in ids:
            if outbox_id not in taken:
                await gw.redis.xadd(self.stream, {"outbox": str(outbox_id)})
        return len(ids)

    async def send(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        gw = self.gw
        outbox_id = int(fields["outbox"])
        now = gw.clock.now()
        envelope = await gw.store.run(lambda tx: claim(tx, gw, outbox_id, now))
        if envelope is None:
            return
        try:
            await gw.post_to_link(outbox_id, envelope)
        except LinkRefused as exc:
            # The NPC refused the package (4xx): the same bytes would be refused again.
            # Dead-lettered at once, its items held for an operator (`dead`), as an HVPS
            # credit's message is.
            raise DeadNow(str(exc), exc.status) from exc
        except Exception as exc:
            untaken = outbound.untaken_by(exc)
            await gw.store.run(lambda tx: outbound.give_back(tx, outbox_id, gw.clock.now(),
                                                             untaken))
            raise
        await gw.store.run(lambda tx: outbound.mark_sent(tx, outbox_id, gw.clock.now()))


def dead(gw: "Gateway", tx: Any, outbox_id: int, why: str, status: int | None,
         now: datetime) -> dict[str, str]:
    """A package's outbox row was dead-lettered (the NPC refused it, or it failed every
    delivery): nothing of it reached the NPC. The package is `sealed` again (unsent), and
    its items sent with it are `held` with the reason (`refused_at_link: the NPC answered
    400`), listed by `ops stuck`, until an operator retries the letter (the same bytes go
    again: `revive`) or cancels items, which takes them out of the package and releases
    their holds (gateway.beps.cancels). Fields naming the package for the letter."""
    pkg = tx.query_one("SELECT id, count FROM beps_packages WHERE outbox_id = ?",
                       (outbox_id,))
    if pkg is None:
        return {}
    tx.execute("UPDATE beps_packages SET state = 'sealed', updated_at = ? WHERE id = ? "
               "AND state = 'sent'", (now.isoformat(), pkg[0]))
    held = payments.transition_group(tx, items.package_group(pkg[0], pkg[1]), "sent", "held",
                                     "link_dead_lettered", now, gw.notifier, reason=why,
                                     package=pkg[0], outbox=outbox_id, status=status)
    log.warning("event=beps_package_dead_lettered package=%s outbox=%s held=%s reason=%s",
                pkg[0], outbox_id, len(held), logs.value(why))
    return letter_names(tx, outbox_id)


def letter_names(tx: Any, outbox_id: int) -> dict[str, str]:
    """The fields naming a package's outbox row in its dead letter: the package."""
    pkg = tx.query_one("SELECT id FROM beps_packages WHERE outbox_id = ?", (outbox_id,))
    return {} if pkg is None else {"package": pkg[0]}


def revive(gw: "Gateway", tx: Any, outbox_id: int, now: datetime, **who: Any) -> None:
    """An operator retried the dead letter of a package (its row pending again): its
    items held since it died are `accepted` again, and become `sent` when the sender
    claims the package (`claim`), which sends the same bytes under the same ids."""
    pkg = tx.query_one("SELECT id, count FROM beps_packages WHERE outbox_id = ?",
                       (outbox_id,))
    if pkg is None:
        return
    revived = payments.transition_group(tx, items.package_group(pkg[0], pkg[1]), "held",
                                        "accepted", "ops_retried", now, gw.notifier,
                                        package=pkg[0], **who)
    for start in range(0, len(revived), IDS_PER_STATEMENT):
        ids = revived[start:start + IDS_PER_STATEMENT]
        tx.execute("UPDATE payments SET reason = NULL WHERE id IN (%s)"
                   % ",".join("?" for _ in ids), tuple(ids))
