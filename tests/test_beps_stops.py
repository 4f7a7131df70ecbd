"""Where the NPC may have one of our BEPS packages, nothing of it is changed here: an
operator's hold of the package or of an item, a cancel of an item (the core system's, an
operator's, an npc-cancel when it is asked for) and a package's cancel are refused with
the reason, and the package's bytes stay as they are; where every delivery attempt
provably left the NPC without it, each is done. One row per delivery of the package's
outbox row, in the order the rules are checked."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import keys, payments
from gateway.beps import cancels, packer, stops, unsent
from gateway.errors import PaygateError
from gateway.exceptions import cancels as exc_cancels, status
from gateway.messages.envelope import HEADER_LEN
from gateway.ops import control, views
from gateway.ops import schema as ops_schema
from gateway.ops.operators import Operator
from tests.beps_support import NOW, held_package

# outbox state, attempts, untaken: what each delivery leaves, and the refusals of an
# item's hold, the package's hold, the item's cancel (None: allowed).
CASES = [
    ("being_sent", ("sending", 1, 0), "payment_delivery_under_way",
     "package_delivery_under_way", "payment_in_flight"),
    ("timed_out_then_waiting", ("pending", 2, 1), "payment_maybe_taken_by_npc",
     "package_maybe_taken_by_npc", "payment_maybe_taken_by_npc"),
    ("taken", ("sent", 1, 0), "payment_already_on_the_wire", "package_taken_by_npc", None),
    ("acknowledged", ("acked", 1, 0), "payment_already_on_the_wire",
     "package_taken_by_npc", None),
    ("npc_offline", ("pending", 3, 3), None, None, None),
]


def _deliver(db: Any, package_id: str, state: str, attempts: int, untaken: int) -> None:
    with db.transaction() as tx:
        tx.execute("UPDATE outbox SET state = ?, attempts = ?, untaken = ? WHERE id = "
                   "(SELECT outbox_id FROM beps_packages WHERE id = ?)",
                   (state, attempts, untaken, package_id))


def _dead_lettered(db: Any, gw: Any, package_id: str, attempts: int, untaken: int,
                   why: str, status: int | None) -> int:
    """The package's outbox row dead after `attempts` deliveries (`untaken` provably not
    taken by the NPC), as the sender letters it; the row's id."""
    with db.transaction() as tx:
        outbox_id = tx.query_one("SELECT outbox_id FROM beps_packages WHERE id = ?",
                                 (package_id,))[0]
        tx.execute("UPDATE outbox SET state = 'dead', attempts = ?, untaken = ? "
                   "WHERE id = ?", (attempts, untaken, outbox_id))
        packer.dead(gw, tx, outbox_id, why, status, NOW)
    return outbox_id


def _code(check: Any) -> str | None:
    try:
        check()
    except PaygateError as exc:
        return exc.code
    return None


def _bytes(db: Any, package_id: str) -> bytes:
    with db.transaction() as tx:
        return bytes(tx.query_one("SELECT a.envelope FROM archive a JOIN beps_packages p ON "
                                  "a.mesg_id = p.mesg_id WHERE p.id = ?", (package_id,))[0])


@pytest.mark.parametrize("name, delivery, item_hold, package_hold, cancel", CASES,
                         ids=[c[0] for c in CASES])
def test_what_may_be_stopped_follows_what_the_npc_may_have(tmp_path, name, delivery,
                                                           item_hold, package_hold, cancel):
    """Each refusal names the rule; `npc-cancel` is refused when asked for, not later."""
    db, gw, package_id = held_package(tmp_path, [100, 250])
    _deliver(db, package_id, *delivery)
    with db.transaction() as tx:
        payment = payments.get(tx, f"P{package_id[12:20]}00000000")
        found = {
            "item_hold": _code(lambda: stops.check_item_hold(tx, payment)),
            "package_hold": _code(lambda: stops.check_package_hold(tx, package_id)),
            "package_cancel": _code(lambda: stops.check_package_cancel(tx, package_id)),
            "cancel": _code(lambda: cancels.check(tx, payment)),
            "npc_cancel": _code(lambda: exc_cancels.check_cancellable(tx, payment)),
            "status_query": _code(lambda: status.check_queryable(tx, payment)),
        }

    # A status query names one message: never a BEPS item's, whose package tells.
    assert found == {"item_hold": item_hold, "package_hold": package_hold,
                     "package_cancel": package_hold, "cancel": cancel, "npc_cancel": cancel,
                     "status_query": "payment_not_queryable"}


def test_a_package_an_attempt_may_have_given_the_npc_keeps_its_bytes(tmp_path):
    """A cancel of an item of a package whose last attempt timed out is refused, and the
    package is not rebuilt: the NPC would net what it may hold under the same MesgID."""
    db, gw, package_id = held_package(tmp_path, [100, 250])
    _deliver(db, package_id, "pending", 1, 0)
    before = _bytes(db, package_id)
    with db.transaction() as tx:
        payment = payments.get(tx, f"P{package_id[12:20]}00000000")
        with pytest.raises(PaygateError) as refused:
            cancels.request(gw, tx, payment, None, "core:test", NOW)

    assert refused.value.code == "payment_maybe_taken_by_npc"
    assert refused.value.problems[0].value == 1  # the attempt that may have reached it
    assert "npc-cancel" in refused.value.problems[0].message
    assert _bytes(db, package_id) == before


def test_a_package_dead_lettered_after_timeouts_is_not_rebuilt(tmp_path):
    """A package whose letter died after attempts that may have reached the NPC (not a
    refusal at the link) keeps its items and bytes: cancelling one is refused."""
    db, gw, package_id = held_package(tmp_path, [100, 250])
    _dead_lettered(db, gw, package_id, 6, 0, "dead_lettered: timed out", None)
    before = _bytes(db, package_id)
    with db.transaction() as tx:
        payment = payments.get(tx, f"P{package_id[12:20]}00000000")
        code = _code(lambda: cancels.request(gw, tx, payment, None, "core:test", NOW))
        package_code = _code(lambda: stops.check_package_cancel(tx, package_id))

    assert (payment["state"], code) == ("held", "payment_maybe_taken_by_npc")
    assert package_code == "package_maybe_taken_by_npc"
    assert _bytes(db, package_id) == before


def test_an_item_is_taken_out_of_a_package_the_npc_never_had(tmp_path):
    """NPC offline: the item leaves the package, which is rebuilt under the same ids with
    the rest, keeps its state and its delivery counts; the payer's hold is released."""
    db, gw, package_id = held_package(tmp_path, [100, 250])
    _deliver(db, package_id, "pending", 3, 3)
    before = _bytes(db, package_id)
    with db.transaction() as tx:
        payment = payments.get(tx, f"P{package_id[12:20]}00000000")
        done = cancels.request(gw, tx, payment, None, "core:test", NOW)
        pkg = unsent.read(tx, package_id)
        ended = tx.query_one("SELECT COUNT(*) FROM ledger_hold_end WHERE hold_id = ?",
                             (int(payment["hold_id"]),))[0]
    after = _bytes(db, package_id)

    assert done["cancelled"] == "from_package" and done["state"] == "cancelled"
    assert (pkg.state, pkg.count, pkg.total_fen) == ("sent", 1, 250)
    assert (pkg.delivery.state, pkg.delivery.attempts, pkg.delivery.untaken) == (
        "pending", 3, 3)
    # The same header (MesgID), the body and its signature new.
    assert after != before and after[:HEADER_LEN] == before[:HEADER_LEN]
    assert ended == 1


def _who() -> dict[str, Any]:
    return {"request": 1, "by": "op1"}


def test_an_item_held_alone_is_cancelled_or_packed_again_when_released(tmp_path):
    """An operator's hold takes an item out of a package the NPC never had and keeps it
    out of packing; released, it waits to be packed again (a new package); cancelled
    (asked by one operator, approved by a second, both in its history), its hold is
    released and it is never packed."""
    db, gw, package_id = held_package(tmp_path, [100, 250, 400])
    _deliver(db, package_id, "pending", 1, 1)
    ids = [f"P{package_id[12:20]}0000000{n}" for n in range(3)]
    with db.transaction() as tx:
        held = [stops.hold_item(gw, tx, pid, _who(), NOW) for pid in ids[:2]]
        item_rows = dict(tx.query("SELECT payment_id, package_id FROM beps_items", ()))
        released, entries = stops.release_item(gw, tx, ids[0], _who(), NOW)
        cancelled = stops.cancel_item(gw, tx, ids[1], {"request": 2, "by": "op1",
                                                       "approved_by": "sup1"}, NOW)
        told = payments.history(tx, ids[1])[-1]
        after = dict(tx.query("SELECT payment_id, package_id FROM beps_items", ()))
        states = [payments.get(tx, pid)["state"] for pid in ids]
        pkg = unsent.read(tx, package_id)
        again = _code(lambda: stops.hold_item(gw, tx, ids[0], _who(), NOW))

    assert [h["left_in_package"] for h in held] == [2, 1]
    assert item_rows == {ids[0]: "held", ids[1]: "held", ids[2]: package_id}
    assert released["state"] == "accepted"
    assert entries == [(keys.BEPS_TX, {"item": ids[0]})]  # a nudge for the packer
    assert cancelled["cancelled"] == "before_packing"
    assert (told["event"], told["detail"]["by"], told["detail"]["approved_by"]) == (
        "cancelled_before_packing", "op1", "sup1")
    assert after == {ids[0]: None, ids[1]: "-", ids[2]: package_id}
    assert states == ["accepted", "cancelled", "sent"]
    assert (pkg.count, pkg.total_fen) == (1, 400)
    assert again is None  # waiting to be packed, it may be held again


def test_a_held_package_is_cancelled_whole_and_its_holds_released(tmp_path):
    """A package held by an operator: its items held with it; cancelled, every item is
    cancelled once, each hold released, the package cancelled with its row closed."""
    db, gw, package_id = held_package(tmp_path, [100, 250])
    _deliver(db, package_id, "pending", 2, 2)
    with db.transaction() as tx:
        hold = stops.hold_package(gw, tx, package_id, _who(), NOW)
        outbox_held = tx.query_one("SELECT o.state FROM outbox o JOIN beps_packages p ON "
                                   "p.outbox_id = o.id WHERE p.id = ?", (package_id,))[0]
        release_refused = _code(lambda: stops.check_item_hold(
            tx, payments.get(tx, f"P{package_id[12:20]}00000000")))
        done = stops.cancel_package(gw, tx, package_id, _who(), NOW)
        pkg = unsent.read(tx, package_id)
        states = {r[0] for r in tx.query("SELECT state FROM payments", ())}
        ends = tx.query_one("SELECT COUNT(*) FROM ledger_hold_end", ())[0]
        again = _code(lambda: stops.check_package_cancel(tx, package_id))

    assert (hold["held"], hold["was"], outbox_held) == (2, "sent", "held")
    assert release_refused == "payment_already_held"
    assert (done["cancelled"], done["released_fen"], done["ledger_entries"]) == (2, 350, 2)
    assert (pkg.state, pkg.count, pkg.delivery.state) == ("cancelled", 0, "done")
    assert states == {"cancelled"} and ends == 2
    assert again == "package_already_final"


def test_an_incoming_beps_credit_is_returned_not_cancelled(tmp_path):
    """The console's cancel of a credit another bank sent us is refused with the rule, as
    the core system's is: it is returned to its sender instead."""
    db, gw, package_id = held_package(tmp_path, [100])
    with db.transaction() as tx:
        pid = f"P{package_id[12:20]}00000000"
        tx.execute("UPDATE payments SET direction = 'in', state = 'credited' WHERE id = ?",
                   (pid,))
        code = _code(lambda: stops.check_item_cancel(tx, payments.get(tx, pid)))

    assert code == "cancel_only_for_outgoing_hvps_payments"


OP1 = Operator("op1", "柜员一", "00", "")


def _dead_package(tmp_path: Any) -> tuple[Any, str, str, dict[str, Any]]:
    """A package the NPC refused at the link (every attempt untaken), its letter's
    retry's params, and the console's tables: (db, package, first item, retry params)."""
    db, gw, package_id = held_package(tmp_path, [100, 250])
    outbox_id = _dead_lettered(db, gw, package_id, 1, 1,
                               "refused_at_link: the NPC answered 400", 400)
    with db.transaction() as tx:
        ops_schema.create_tables(tx)
    retry = {"stream": "stream", "fields": {"outbox": str(outbox_id)}, "reason": "400"}
    return db, package_id, f"P{package_id[12:20]}00000000", retry


@pytest.mark.parametrize("pending", ["package_cancel", "cancel"])
def test_a_retry_of_a_packages_letter_waits_for_a_pending_cancel_of_it_or_an_item(
        tmp_path, pending):
    """Its letter's retry would send the package and every item in it, so while a
    cancel of the package or of one of its items waits for a supervisor, the retry is
    refused, naming it; a letter whose outbox row names nothing of ours is not held
    back by them."""
    stops.register()
    db, package_id, item, retry = _dead_package(tmp_path)
    target = package_id if pending == "package_cancel" else item
    with db.transaction() as tx:
        asked = control.create(tx, OP1, pending, target, {}, "", NOW)
    with db.transaction() as tx:
        code = _code(lambda: control.create(tx, OP1, "retry", "1-1", retry, "", NOW))
        with pytest.raises(PaygateError) as refused:
            control.create(tx, OP1, "retry", "1-1", retry, "", NOW)
        other = control.create(tx, OP1, "retry", "2-2",
                               dict(retry, fields={"outbox": "999999"}), "", NOW)

    assert code == "request_contradicts_pending"
    problem = refused.value.problems[0]
    assert (problem.path, problem.value) == ("/target", "1-1")
    kind = "package" if pending == "package_cancel" else "payment"
    assert f"request {asked} ({pending}) on {kind} {target}" in problem.message
    assert other > asked


def test_an_items_detail_lists_the_retries_of_its_packages_letter(tmp_path):
    """A retry names the package's letter: the detail of each item in the package
    lists it among the item's requests."""
    db, _, item, retry = _dead_package(tmp_path)
    with db.transaction() as tx:
        retried = control.create(tx, OP1, "retry", "1-1", retry, "", NOW)
        shown = views.payment_detail(tx, item, NOW)["requests"]

    assert [(r["id"], r["action"], r["target"]) for r in shown] == [(retried, "retry", "1-1")]


@pytest.mark.parametrize("pending", ["package_cancel", "package_release"])
def test_the_core_systems_cancel_of_an_item_waits_for_a_pending_request_on_its_package(
        tmp_path, pending):
    """An operators' cancel or release of a package decides the money of every item in
    it: while one waits for its second person, the core system's cancel of an item is
    refused (409 operator_request_pending, naming the request and the package), as
    for a request on the item itself, and the item stays as it was; once the request is
    withdrawn, the cancel is taken."""
    stops.register()
    db, gw, package_id = held_package(tmp_path, [100, 250])
    _deliver(db, package_id, "pending", 3, 3)  # the NPC never had it: changeable
    item = f"P{package_id[12:20]}00000000"
    with db.transaction() as tx:
        ops_schema.create_tables(tx)
        asked = control.create(tx, OP1, pending, package_id, {}, "", NOW)
    with db.transaction() as tx, pytest.raises(PaygateError) as refused:
        exc_cancels.request_tx(gw, tx, item, None, "core:test", NOW)
    with db.transaction() as tx:
        state = payments.get(tx, item)["state"]
        tx.execute("UPDATE ops_requests SET state = 'withdrawn' WHERE id = ?", (asked,))
        done, _ = exc_cancels.request_tx(gw, tx, item, None, "core:test", NOW)

    problem = refused.value.problems[0]
    assert (refused.value.status, problem.code, problem.value) == (
        409, "operator_request_pending", asked)
    assert dict(problem.detail)["pending_request"] == {
        "id": asked, "action": pending, "package": package_id, "requested_by": "op1"}
    assert f"({pending} on its package {package_id}, asked by op1)" in problem.message
    assert state == "sent"
    assert done["state"] == "cancelled"
