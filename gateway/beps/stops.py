"""Operators stop our BEPS packages and items that the NPC provably never had.

During an NPC outage a sealed package is claimed for sending, its POST fails (no
connection, a 503) and it waits in the outbox for the link, its items `sent`: every
attempt left the NPC without it (gateway.beps.unsent). The NPC has nothing to cancel, so
the console stops it here, under its dual control (docs/operations.md, "BEPS packages the
NPC never took"):

- package_hold (no second person): its outbox row `held`, which no sender takes; the
  package `held`, its items `held` (held_by_operator).
- package_release (a second person): the row pending and on its stream again, the
  package `sealed`, its items `accepted`: it goes as it is, under its ids.
- package_cancel (a second person): every item `cancelled`, its payer's hold released;
  the package `cancelled`, its row closed: never sent.
- hold of an item (no second person): set aside, out of packing, or taken out of its
  package (rebuilt without it under the same ids, gateway.beps.cancels.take_out).
- release of an item held (a second person): waiting to be packed again; it leaves in
  a new package, under a new MsgId.
- cancel of an item (a second person): cancelled here as the core system's cancel does
  it (gateway.beps.cancels), never by asking the NPC (that is npc-cancel).

Each is refused where the NPC may have the package (an attempt on its way, or one that
may have reached it) or has it, with the reason and what to do instead; the console asks
this when the request is made and again when it runs, since the link may answer between
the request and its approval: holding a package first keeps it from leaving meanwhile.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway import keys, payments
from gateway.beps import cancels, items, unsent
from gateway.beps.packer import PACKAGE_KIND
from gateway.errors import Conflict, Problem
from gateway.states import FINAL, incoming_not_cancellable
from gateway.store import Contended

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.stops")

HELD_BY_OPERATOR = "held_by_operator"  # the reason of a payment an operator holds
PACKAGES_STREAM = keys.BEPS_PACKAGES
IDS_PER_STATEMENT = 500  # payments changed by one statement (as packer's)


# Packages

def check_package_hold(tx: Any, target: str) -> unsent.Package:
    pkg = unsent.ours(tx, target)
    if pkg.state == "held":
        raise Conflict(Problem("package_already_held", "/target", pkg.state,
                               "a package not held by an operator",
                               f"package {pkg.id} is held: release it (package-release) or "
                               "cancel it (package-cancel)"))
    if pkg.changeable and pkg.dead:
        raise Conflict(Problem(
            "package_dead_lettered", "/target", pkg.state,
            "a package waiting for its sender or the link",
            f"the NPC refused package {pkg.id} at the link and its items are held for an "
            "operator already; no sender will send it: retry its dead letter once the "
            "cause is fixed (`paygate ops dead`, `paygate ops request retry LETTER`), or "
            "cancel it (package-cancel), which releases the payers' holds"))
    if not pkg.changeable:
        raise unsent.refusal(pkg, "/target", pkg.id, unsent.PACKAGE_CODES)
    return pkg


def hold_package(gw: "Gateway", tx: Any, target: str, who: dict[str, Any],
                 now: datetime) -> dict[str, Any]:
    """Take the package out of sending: nothing sends it until it is released."""
    pkg = check_package_hold(tx, target)
    unsent.change_unsent(tx, pkg, "UPDATE outbox SET state = 'held', updated_at = ?",
                         (now.isoformat(),))
    _set_state(tx, pkg.id, "held", now)
    group = items.package_group(pkg.id, pkg.count)
    held = [pid for was in ("accepted", "sent") for pid in payments.transition_group(
        tx, group, was, "held", "ops_held", now, gw.notifier, reason=HELD_BY_OPERATOR,
        package=pkg.id, **who)]
    assert pkg.delivery is not None, f"package {pkg.id} has its outbox row"
    log.info("event=beps_package_held package=%s was=%s items=%s attempts=%s", pkg.id,
             pkg.state, len(held), pkg.delivery.attempts)
    return {"package": pkg.id, "state": "held", "was": pkg.state, "held": len(held),
            "delivery_attempts": pkg.delivery.attempts}


def check_package_release(tx: Any, target: str) -> unsent.Package:
    pkg = unsent.ours(tx, target)
    if pkg.state != "held":
        raise Conflict(Problem("package_not_held", "/target", pkg.state,
                               "a package held by an operator (package-hold)"))
    return pkg


def release_package(gw: "Gateway", tx: Any, target: str, who: dict[str, Any],
                    now: datetime) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
    """A held package goes on as it is: its row pending (put on its stream after the
    commit), its items accepted, `sent` again when the sender claims it."""
    pkg = check_package_release(tx, target)
    unsent.change_unsent(tx, pkg, "UPDATE outbox SET state = 'pending', updated_at = ?",
                         (now.isoformat(),))
    _set_state(tx, pkg.id, "sealed", now)
    released = payments.transition_group(tx, items.package_group(pkg.id, pkg.count), "held",
                                         "accepted", "ops_released", now, gw.notifier,
                                         package=pkg.id, **who)
    _clear_reasons(tx, released)
    log.info("event=beps_package_released package=%s items=%s", pkg.id, len(released))
    return ({"package": pkg.id, "state": "sealed", "released": len(released)},
            [(PACKAGES_STREAM, {"outbox": str(pkg.outbox_id)})])


def check_package_cancel(tx: Any, target: str) -> unsent.Package:
    pkg = unsent.ours(tx, target)
    if not pkg.changeable:
        raise unsent.refusal(pkg, "/target", pkg.id, unsent.PACKAGE_CODES)
    return pkg


def cancel_package(gw: "Gateway", tx: Any, target: str, who: dict[str, Any],
                   now: datetime) -> dict[str, Any]:
    """Every item of a package nothing of which reached the NPC cancelled, each payer's
    hold released; the package cancelled and never sent."""
    pkg = check_package_cancel(tx, target)
    carried = items.package_payments(tx, pkg.id)
    live = [p for p in carried if p["state"] not in FINAL]
    # Every item leaves the package, a finished one too: its rows filed under the
    # package (history, the webhook rows that told its changes) become its own, or it
    # would lose them with the package.
    payments.leave_group(tx, [p["id"] for p in carried], items.package_subject(pkg.id))
    tx.execute("UPDATE beps_items SET package_id = ? WHERE package_id = ?",
               (items.VOID, pkg.id))
    holds = [(f"{p['id']}:cancel:release", int(p["hold_id"])) for p in live if p["hold_id"]]
    released = gw.ledger.release_many(tx, holds, gw.work_date.isoformat()) if holds else []
    payments.transition_each(tx, [(p, "cancelled", "ops_package_cancelled",
                                   {"reason": "cancelled_by_operator", "package": pkg.id,
                                    **who}) for p in live], now, gw.notifier)
    items.unheld_ended(tx, gw, live, "cancelled",
                       {"reason": "cancelled_by_operator", "package": pkg.id}, now)
    cancels.close_unsent(tx, pkg, now)
    return {"package": pkg.id, "state": "cancelled", "was": pkg.state,
            "cancelled": len(live), "released_fen": sum(p["amount_fen"] for p in live
                                                        if p["hold_id"]),
            "ledger_entries": len(released)}


# Items

def check_item_hold(tx: Any, payment: dict[str, Any]) -> unsent.Package | None:
    """The package to take the item out of (None: it waits to be packed); refused with
    the rule otherwise."""
    pid = payment["id"]
    if payment["state"] == "held":
        raise Conflict(Problem("payment_already_held", "/target", payment["reason"],
                               "a payment not held by an operator or for review"))
    if payment["direction"] != "out" or payment["state"] not in ("accepted", "sent"):
        raise Conflict(Problem("payment_not_unsent", "/target", payment["state"],
                               "an outgoing BEPS item accepted, or sent in a package the "
                               "NPC never took", f"payment {pid} is {payment['state']}"))
    package_id = _package_id(tx, pid)
    if package_id is None:
        return None
    pkg = unsent.read(tx, package_id)
    assert pkg is not None, f"package {package_id} of a packed item exists"
    if not pkg.changeable:
        raise unsent.refusal(pkg, "/target", pid, unsent.ITEM_CODES)
    return pkg


def hold_item(gw: "Gateway", tx: Any, target: str, who: dict[str, Any],
              now: datetime) -> dict[str, Any]:
    """Set the item aside: kept out of packing, or taken out of its package."""
    payment = payments.get(tx, target)
    pkg = check_item_hold(tx, payment)
    if pkg is None:
        _move_item(tx, target, None, items.HELD_OUT)
        left = None
    else:
        left = cancels.take_out(gw, tx, payment, pkg, items.HELD_OUT, now)
    out_of = {} if pkg is None else {"taken_out_of": pkg.id, "left_in_package": left}
    payments.transition(tx, payment, "held", "ops_held", now, gw.notifier,
                        reason=HELD_BY_OPERATOR, **who, **out_of)
    return {"payment": target, "state": "held", "was": payment["state"], **out_of}


def check_item_release(tx: Any, payment: dict[str, Any]) -> unsent.Package | None:
    """The held package the item is in (None: set aside alone); refused unless an
    operator holds it."""
    held = payment["state"] == "held" and payment["reason"] == HELD_BY_OPERATOR
    package_id = _package_id(tx, payment["id"]) if held else None
    if not held or package_id == items.VOID:
        raise Conflict(Problem("payment_not_held", "/target", payment["reason"],
                               "a BEPS item held by an operator"))
    if package_id == items.HELD_OUT:
        return None
    pkg = unsent.read(tx, package_id)
    assert pkg is not None and pkg.state == "held" and pkg.changeable, \
        f"package {package_id} of an item held by an operator is held"
    return pkg


def release_item(gw: "Gateway", tx: Any, target: str, who: dict[str, Any],
                 now: datetime) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
    """The item waits to be packed again (out of a held package, if it was in one): it
    leaves in a new package, under a new MsgId."""
    payment = payments.get(tx, target)
    pkg = check_item_release(tx, payment)
    if pkg is None:
        _move_item(tx, target, items.HELD_OUT, None)
    else:
        cancels.take_out(gw, tx, payment, pkg, None, now)
    out_of = {} if pkg is None else {"taken_out_of": pkg.id}
    payments.transition(tx, payment, "accepted", "ops_released", now, gw.notifier,
                        **who, **out_of)
    _clear_reasons(tx, [target])
    return ({"payment": target, "state": "accepted", **out_of},
            [(keys.BEPS_TX, {"item": target})])


def check_item_cancel(tx: Any, payment: dict[str, Any]) -> None:
    """A cancel here: the item waits to be packed, is set aside, or is in a package not
    with the NPC; one the NPC has is for npc-cancel."""
    if payment["direction"] != "out":
        raise incoming_not_cancellable("/target", payment)
    pkg = cancels.check(tx, payment)
    if pkg is not None and not pkg.changeable:
        raise Conflict(Problem(
            "payment_already_on_the_wire", "/target", pkg.state,
            "a BEPS item in no package, or in one the NPC never had",
            f"the NPC has package {pkg.id} of payment {payment['id']}: ask it to take the "
            "item out before netting (npc-cancel, ccms.307)"))


def cancel_item(gw: "Gateway", tx: Any, target: str, who: dict[str, Any],
                now: datetime) -> dict[str, Any]:
    payment = payments.get(tx, target)
    check_item_cancel(tx, payment)
    # Who asked and, under dual control, who approved: both in the item's history.
    done = cancels.request(gw, tx, payment, "cancelled_by_operator", who["by"], now,
                           who.get("approved_by"))
    assert isinstance(done, dict), f"payment {target}'s package was checked not with the NPC"
    return done


def _package_id(tx: Any, payment_id: str) -> str | None:
    place = items.place(tx, payment_id)
    assert place is not None, f"outgoing BEPS payment {payment_id} has an item"
    return place[1]


@contextmanager
def rows_read_once(gw: Any, tx: Any, read: dict[str, dict[str, Any]]) -> Iterator[None]:
    """The items of the BEPS payments among `read` and their packages, read once for the
    checks of the console's rows (control.ROW_READERS)."""
    beps = [pid for pid, payment in read.items() if payment["channel"] == "beps"]
    with items.places_read_once(tx, beps) as places:
        packed = [place[1] for place in places.values()
                  if place is not None and place[1] not in (None, items.VOID, items.HELD_OUT)]
        with unsent.read_once(tx, packed):
            yield


def _move_item(tx: Any, payment_id: str, was: str | None, to: str | None) -> None:
    """Set the item's package id from `was` to `to`, only if it still is `was` (a sealer
    in another gateway process may have packed a waiting item meanwhile)."""
    where = "package_id IS NULL" if was is None else "package_id = ?"
    if tx.execute(f"UPDATE beps_items SET package_id = ? WHERE payment_id = ? AND {where}",
                  (to, payment_id) + (() if was is None else (was,))) != 1:
        raise Contended(f"the item of payment {payment_id} was packed meanwhile")


def _set_state(tx: Any, package_id: str, state: str, now: datetime) -> None:
    tx.execute("UPDATE beps_packages SET state = ?, updated_at = ? WHERE id = ?",
               (state, now.isoformat(), package_id))


def _clear_reasons(tx: Any, payment_ids: list[str]) -> None:
    """Payments going on again carry no reason of a hold."""
    for start in range(0, len(payment_ids), IDS_PER_STATEMENT):
        ids = payment_ids[start:start + IDS_PER_STATEMENT]
        marks = ", ".join("?" * len(ids))
        tx.execute(f"UPDATE payments SET reason = NULL WHERE id IN ({marks})", tuple(ids))


def executor(run: Any) -> Any:
    """The console's executor of `run` (gateway, transaction, target, who, now), which
    answers what it did, or that with the stream entries to add once committed."""
    from gateway.ops import actions

    def execute(c: Any, tx: Any, target: str, params: dict[str, Any]) -> Any:
        done = run(c.gw, tx, target, {"request": c.request_id, **c.who()}, c.now)
        detail, entries = done if isinstance(done, tuple) else (done, [])

        async def push() -> None:
            for stream, fields in entries:
                await c.gw.redis.xadd(stream, fields)
        return actions.Outcome(detail, [push] if entries else [])
    return execute


# The console's package actions: whether each needs a second person, and its names.
PACKAGE_ACTIONS = {
    "package_hold": (False, {"en": "Hold a BEPS package", "zh": "暂停小额业务包"}),
    "package_release": (True, {"en": "Release a BEPS package", "zh": "放行小额业务包"}),
    "package_cancel": (True, {"en": "Cancel a BEPS package", "zh": "撤销小额业务包"}),
}
PACKAGE_TARGET = "package"
PACKAGE_TARGET_EXPECTED = ("the id of a package of ours (GET /v1/packages/{id}; a BEPS "
                           "payment's `beps.package`)")


def letter_targets(tx: Any, outbox_id: int) -> list[tuple[str, str]]:
    """The package an outbox row carries and its items, as the console's targets."""
    pkg = tx.query_one("SELECT id FROM beps_packages WHERE outbox_id = ?", (outbox_id,))
    if pkg is None:
        return []
    return [(PACKAGE_TARGET, pkg[0])] + [
        ("payment", payment_id) for (payment_id,) in tx.query(
            "SELECT payment_id FROM beps_items WHERE package_id = ?", (pkg[0],))]


def register() -> bool:
    """Add the package actions, and hold, release and cancel of a BEPS item, to the
    console's tables; False when the product has no console."""
    if importlib.util.find_spec("gateway.ops.control") is None:
        return False
    from gateway.ops import actions, control

    package_actions = {"package_hold": (check_package_hold, hold_package),
                       "package_release": (check_package_release, release_package),
                       "package_cancel": (check_package_cancel, cancel_package)}
    for name, (needs_approval, label) in PACKAGE_ACTIONS.items():
        check, run = package_actions[name]
        control.RULES.setdefault(name, control.Rule(PACKAGE_TARGET, needs_approval))
        control.LABELS.setdefault(name, label)
        actions.EXECUTORS.setdefault(name, executor(run))
        actions.PRECONDITIONS.setdefault(name, lambda tx, t, p, check=check: check(tx, t))
    control.TARGET_EXPECTED.setdefault(PACKAGE_TARGET, PACKAGE_TARGET_EXPECTED)
    # A retry of a package's dead letter sends the package and every item in it.
    control.LETTER_TARGETS.setdefault(PACKAGE_KIND, letter_targets)
    # The rows' checks of an item read its place and its package: once for a whole list.
    if rows_read_once not in control.ROW_READERS:
        control.ROW_READERS.append(rows_read_once)
    item_actions = {"hold": (check_item_hold, hold_item),
                    "release": (check_item_release, release_item),
                    "cancel": (check_item_cancel, cancel_item)}
    for name, (check, run) in item_actions.items():
        actions.CHANNEL_ACTIONS.setdefault(("beps", name), (
            lambda tx, t, p, check=check: check(tx, payments.get(tx, t)), executor(run)))
    return True
