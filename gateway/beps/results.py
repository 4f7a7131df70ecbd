"""The NPC's answer to our BEPS packages and receipts (ccms.900, CONTRACT.md §4).

- PR03 netted (with the round in NetgRnd and the netting date in PrcDt): final. Each
  credit's hold becomes a netted obligation, and so does the hold of each inbound debit
  our beps.128 paid, all with one ledger entry for the package (ledger.net_together); the transaction's state is
  `netted`, its history names the package and the round. The package's items are
  netted together, in a few statements whatever their number (items.net).
- PR11 queued for netting (已轧差排队, SPEC.md): the package waits at the NPC for a later
  round (state `queued`). The code says no more than that; why it waits (our net debit
  cap, or a clearing balance short of our net debit position) is the NPC's RjctInf,
  which the transactions' reason repeats.
- PR09 rejected: holds are released and the transactions are `rejected` with the reason,
  in a few statements whatever the package's size (ledger.release_many, an entry per
  hold).

A ccms.911 about one of our packages (the NPC threw it away unprocessed: a signature or
format check failed) ends it as PR09 does, with the NPC's discard code and reason: no
netting notice will come, and sending the same bytes again would be discarded again.

An item we asked the NPC to take out of the package (ccms.307, cancels.py) is left alone
by a netting notice until the NPC's answer says whether it was netted; items cancelled
meanwhile are final and left alone by every notice.

Answers about other messages go to the handler registered before this one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway import critical, payments
from gateway.beps import cancels, items
from gateway.inbound import Processed
from gateway.messages import beps128, ccms900, ccms911, codec
from gateway.states import FINAL
from gateway.store import Contended

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.results")

# Raised when a package waits for netting (PR11); closed by the gateway once it nets.
ALERT_WAITING = "beps_package_waiting_for_netting"
ANSWERED_TYPES = frozenset({"beps.121.001.01", "beps.122.001.01", "beps.125.001.01",
                            "beps.127.001.01", beps128.MESSAGE_TYPE})


def on_result(tx: Any, gw: "Gateway", d: codec.Decoded, now: datetime) -> Processed:
    conf: ccms900.CommonConf = d.obj
    package_id = f"{conf.original.instg_party}{conf.original.msg_id}"
    pkg = tx.query_one("SELECT state FROM beps_packages WHERE id = ? AND direction = 'out'",
                       (package_id,))
    if pkg is None:
        gw.alert(tx, "result_for_unknown_package", package=package_id, mt=conf.original.mt,
                 status=conf.status)
        return Processed({"unknown_package": package_id})
    if pkg[0] == "cancelled":
        # Every item was taken out before netting: the NPC nets nothing of the package. A
        # wait announced before the last cancellation may arrive after it.
        if conf.status != ccms900.WAITING_NETTING:
            gw.alert(tx, "beps_result_for_cancelled_package", package=package_id,
                     status=conf.status)
        log.info("event=beps_result_for_cancelled_package package=%s status=%s", package_id,
                 conf.status)
        return Processed({"package": package_id, "ignored": conf.status})
    if pkg[0] in ("netted", "settled") and conf.status != ccms900.NETTED:
        # Netting is final: nothing said about the package afterwards undoes it.
        gw.alert(tx, "beps_result_after_netting", package=package_id, status=conf.status)
        return Processed({"package": package_id, "ignored": conf.status})
    rows = items.package_states(tx, package_id)
    if conf.status == ccms900.NETTED:
        _netted(tx, gw, package_id, rows, conf, now, waited=pkg[0] == "waiting")
    elif conf.status == ccms900.WAITING_NETTING:
        _waiting(tx, gw, package_id, rows, conf, now)
    elif conf.status == ccms900.REJECTED:
        _rejected(tx, gw, package_id, rows, conf.code,
                  conf.reject_info or conf.code or conf.status, now)
    else:
        gw.alert(tx, "result_status_not_handled", package=package_id, status=conf.status)
    return Processed({"package": package_id, "status": conf.status, "count": len(rows)})


def on_discarded(tx: Any, gw: "Gateway", notice: ccms911.Discarded, now: datetime
                 ) -> dict[str, Any] | None:
    """A ccms.911 naming one of our packages by its header's MesgID: the package is
    rejected, its open items' holds released. None when it names no package of ours
    (the caller's handler has told operators of it)."""
    if notice.mt not in ANSWERED_TYPES:
        return None
    found = tx.query_one("SELECT id, state, outbox_id FROM beps_packages WHERE "
                         "direction = 'out' AND mesg_id = ? AND msg_type = ?",
                         (notice.msg_id, notice.mt))
    if found is None:
        return None
    package_id, state, outbox_id = found
    if outbox_id is not None:
        tx.execute("UPDATE outbox SET state = 'done', updated_at = ? WHERE id = ?",
                   (now.isoformat(), outbox_id))
    if state in ("netted", "settled", "rejected", "cancelled"):
        log.info("event=late_discard package=%s state=%s npc_code=%s", package_id, state,
                 notice.code)
        return {"package": package_id, "ignored": "discarded"}
    reason = f"discarded by the NPC: {notice.code}" + (
        f" {notice.reject_info}" if notice.reject_info else "")
    _rejected(tx, gw, package_id, items.package_states(tx, package_id), notice.code,
              reason[:200], now)
    return {"package": package_id, "discarded": notice.msg_id}


def _set_package(tx: Any, package_id: str, state: str, now: datetime, **values: Any) -> None:
    sets = ", ".join(f"{k} = ?" for k in values)
    tx.execute(f"UPDATE beps_packages SET state = ?, updated_at = ?{', ' if sets else ''}"
               f"{sets} WHERE id = ?", (state, now.isoformat(), *values.values(), package_id))


def _netted(tx: Any, gw: "Gateway", package_id: str, rows: list[dict[str, Any]],
            conf: ccms900.CommonConf, now: datetime, waited: bool = False) -> None:
    netting_date = conf.processed_on or gw.clock.now().date().isoformat()
    netting_round = conf.netting_round or ""
    if not netting_round:
        gw.alert(tx, "netting_round_missing", package=package_id)
    # Netted, it no longer waits: the reason of a wait (PR11) goes, and so does its alert
    # (looked for only when the package waited).
    _set_package(tx, package_id, "netted", now, netting_date=netting_date,
                 netting_round=netting_round, reason=None)
    if waited:
        critical.close_where(tx, (ALERT_WAITING,), "package", package_id,
                             f"netted in round {netting_round or '?'} of {netting_date}",
                             now)
    open_rows = [p for p in rows if p["state"] not in FINAL and p["state"] != "netted"
                 and p["kind"] != items.DEBIT_OUT]
    # Read once the package is marked netted (cancels.answered, which locks it first).
    waiting = cancels.waiting_for_answer(tx, package_id) if open_rows else set()
    to_net = []
    for p in open_rows:
        if p["id"] in waiting:
            # Only the NPC's answer to our ccms.307 says whether it netted this item.
            log.info("event=beps_netting_waits_for_cancel_answer payment=%s package=%s",
                     p["id"], package_id)
        else:
            to_net.append(p)
    items.net(tx, gw, to_net, package_id, netting_date, netting_round, now,
              package_size=len(rows), together=True)
    netted = len(to_net)
    items.settle_if_round_settled(tx, gw, netting_date, netting_round, now)
    log.info("event=beps_package_netted package=%s netting_date=%s netting_round=%s "
             "count=%s", package_id, netting_date, netting_round, netted)


def _waiting(tx: Any, gw: "Gateway", package_id: str, rows: list[dict[str, Any]],
             conf: ccms900.CommonConf, now: datetime) -> None:
    _set_package(tx, package_id, "waiting", now, reason=conf.reject_info or conf.code)
    # Those sent (or waiting already) are queued, any other keeps its state; cancelled
    # meanwhile, one is no longer part of the wait. One statement per new state.
    by_state: dict[str, list[dict[str, Any]]] = {}
    for p in rows:
        if p["state"] not in FINAL:
            new_state = "queued" if p["state"] in ("sent", "queued") else p["state"]
            by_state.setdefault(new_state, []).append(p)
    # The queued say why they wait (the NPC's words); any other keeps its own reason.
    waits = {"reason": conf.reject_info or conf.code or conf.status}
    for new_state, moving in by_state.items():
        payments.transition_many(tx, moving, new_state, "beps_waiting_for_netting", now,
                                 gw.notifier, package=package_id, code=conf.code,
                                 **(waits if new_state == "queued" else {}))
    gw.alert(tx, ALERT_WAITING, package=package_id, npc_code=conf.code,
             reason=conf.reject_info)


def _rejected(tx: Any, gw: "Gateway", package_id: str, rows: list[dict[str, Any]],
              code: str | None, reason: str, now: datetime) -> None:
    _set_package(tx, package_id, "rejected", now, reason=reason)
    open_rows = [p for p in rows if p["state"] not in FINAL and p["state"] != "netted"]
    # Every hold back to its payer in bulk (an entry each, as ledger.release posts), then
    # the payments rejected: with one statement and one history row under the package
    # when they are the whole package in one state, as netting does (items.net).
    holds = [(f"{p['id']}:release", int(p["hold_id"])) for p in open_rows if p["hold_id"]]
    if holds:
        gw.ledger.release_many(tx, holds, gw.work_date.isoformat())
    states = {p["state"] for p in open_rows}
    if open_rows and len(open_rows) == len(rows) and len(states) == 1:
        moved = payments.transition_group(tx, items.package_group(package_id, len(rows)),
                                          states.pop(), "rejected", "beps_rejected", now,
                                          gw.notifier, reason=reason, package=package_id)
        if len(moved) != len(rows):  # one changed since it was read: read again
            raise Contended(f"{len(rows) - len(moved)} of the payments of package "
                            f"{package_id} changed before their rejection")
    else:
        payments.transition_many(tx, open_rows, "rejected", "beps_rejected", now,
                                 gw.notifier, reason=reason, package=package_id)
    if len(holds) != len(open_rows):
        items.unheld_ended(tx, gw, open_rows, "rejected",
                           {"package": package_id, "code": code, "reason": reason}, now)
    gw.alert(tx, "beps_package_rejected", package=package_id, npc_code=code,
             reason=reason)
