"""A debit another bank sends us (beps.127) that our receipt would pay is screened
first: a listed creditor's debit is left out of the package's receipt, its payer's funds
held, until operators pass it (paid in a receipt of its own) or fail it (refused, RJ08,
the hold released); undecided shortly before the return deadline, it is refused as a
failed one is, never paid unseen. A real gateway (embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway import outbound
from gateway.beps import debit_review, debits_in, items, mandates
from gateway.messages import beps128, codec
from gateway.messages.package import ReturnLimit, Transfer
from gateway.ops.testing import PAYER_BRANCH, PAYER_NAME, LoopThread, OpsRig
from tests.beps_incoming_support import package
from tests.e2e_support import PEER_BRANCH
from tests.test_ops_control import Rig as ControlRig

_numbers = itertools.count(1)

LISTED = "示例受限贸易有限公司"  # gateway/ops/screening.toml
AGREEMENT = "SCREEN-AG-1"
MARGIN = timedelta(seconds=3600)  # beps_debit_review_margin_s's default


class Rig(ControlRig):
    """The console tests' rig, with a collector's debits of the rig's payer."""

    def debit(self, creditor: str, amount_fen: int = 100) -> Transfer:
        return Transfer(f"20261212{next(_numbers):08d}", PAYER_NAME, self.rig.payer_account,
                        None, PAYER_BRANCH, PEER_BRANCH, creditor, "6222000000001234", None,
                        amount_fen, "B100", "02102", agreement=AGREEMENT)

    def receive(self, *debits: Transfer, days: int = 1
                ) -> tuple[dict[str, Any], str, datetime]:
        """The package answered as it arrives now: the handler's outcome, the package's
        id and the receipt deadline (PKGRtrLtd `days`)."""
        d = package(f"20261212{next(_numbers):08d}", list(debits))
        d.obj = replace(d.obj, return_limit=ReturnLimit(f"{days:02d}"))
        now = self.gw.clock.now()

        def work(tx: Any) -> dict[str, Any]:
            debits_in.add_mandate(tx, self.rig.payer_account, AGREEMENT, now)
            return debits_in.on_debit_package(tx, self.gw, d, now).outcome
        out = self.db(work)
        return out, out["package"], now + timedelta(days=days)

    def receipts(self, package_id: str) -> list[list[tuple[str, str, str | None]]]:
        """Each beps.128 answering the package, in order: (TxId, status, reject code)."""
        def work(tx: Any) -> list[Any]:
            mesg_ids = tx.query("SELECT mesg_id FROM beps_packages WHERE msg_type = ? AND "
                                "answers = ? ORDER BY created_at, id",
                                (beps128.MESSAGE_TYPE, package_id))
            return [codec.decode(outbound.archived_bytes(tx, beps128.MESSAGE_TYPE, m)).obj
                    for m, in mesg_ids]
        return [[(line.tx_id, line.status, line.reject_code) for line in r.lines]
                for r in self.db(work)]

    def debit_state(self, tx_id: str) -> tuple[str, str | None]:
        return self.db(lambda tx: tx.query_one(
            "SELECT state, reason FROM payments WHERE direction = 'in' AND tx_id = ?",
            (tx_id,)))

    def payment_id(self, tx_id: str) -> str:
        return self.db(lambda tx: tx.query_one(
            "SELECT id FROM payments WHERE direction = 'in' AND tx_id = ?", (tx_id,)))[0]

    def books(self) -> tuple[int, bool]:
        def work(tx: Any) -> tuple[int, bool]:
            return (self.gw.ledger.balance(tx, self.rig.payer_account),
                    self.gw.ledger.trial_balance(tx).balanced)
        return self.db(work)

    def alerts(self, code: str) -> int:
        return self.db(lambda tx: tx.query_one(
            "SELECT COUNT(*) FROM alerts WHERE code = ?", (code,)))[0]

    def expire(self, now: datetime) -> int:
        return self.db(lambda tx: debit_review.expire(tx, self.gw, now))

    def package_state(self, package_id: str) -> str:
        return self.db(lambda tx: tx.query_one(
            "SELECT state FROM beps_packages WHERE id = ?", (package_id,)))[0]

    def shown(self, tx_id: str) -> dict[str, Any]:
        """What GET /v1/transfers/{id} and the console's payment detail show of the
        debit (state, reason and held_for_review of each), and `paygate ops payment`'s
        line saying whether it is held for review."""
        from gateway.ops import cli_render, views

        payment_id = self.payment_id(tx_id)
        view = self.run(self.gw.get_transfer(payment_id))
        console = self.db(lambda tx: views.payment_detail(tx, payment_id,
                                                          self.gw.clock.now()))
        shown: dict[str, Any] = {
            name: (view["state"], view["reason"], view["held_for_review"])
            for name, view in (("api", view), ("console", console))}
        shown["cli"] = " ".join(next(line for line in cli_render.payment(console).splitlines()
                                     if line.startswith("held for review")).split())
        return shown


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("debit-screening")).start())
    yield Rig(loop, ops_rig)
    loop.run(ops_rig.stop())
    loop.close()


def test_a_listed_creditors_debit_waits_out_of_the_receipt_its_funds_held(rig: Rig) -> None:
    balance, _ = rig.books()
    alerts = rig.alerts("debit_held_for_review")
    clear, listed = rig.debit("示例燃气公司"), rig.debit(LISTED)
    out, package_id, _ = rig.receive(clear, listed)

    assert (out["paid"], out["refused"], out["held"]) == (1, 0, 1)
    assert rig.receipts(package_id) == [[(clear.tx_id, beps128.PAID, None)]]
    assert rig.debit_state(clear.tx_id) == ("received", None)
    assert rig.debit_state(listed.tx_id) == ("received", "screening_match_payee_name")
    assert rig.books() == (balance - 200, True)
    assert rig.alerts("debit_held_for_review") == alerts + 1


def test_an_operators_release_does_not_pass_a_held_debit(rig: Rig) -> None:
    """Only the review's pass pays a screened debit: a release is refused, saying so."""
    from gateway.errors import PaygateError

    listed = rig.debit(LISTED)
    rig.receive(listed)
    with pytest.raises(PaygateError) as exc:
        rig.request("sup1", "release", rig.payment_id(listed.tx_id))

    assert (exc.value.code, exc.value.problems[0].expected) == (
        "payment_held_for_review", "review_approve or review_reject")
    assert rig.debit_state(listed.tx_id) == ("received", "screening_match_payee_name")


def test_a_package_of_held_debits_only_sends_no_receipt_yet(rig: Rig) -> None:
    """Nothing of it is answered: it waits for review, not `answered`."""
    out, package_id, _ = rig.receive(rig.debit(LISTED))

    assert (out["paid"], out["held"]) == (0, 1)
    assert rig.receipts(package_id) == []
    assert rig.package_state(package_id) == debits_in.WAITING_FOR_REVIEW


PACKAGE_STATES = [
    # the package's debits (listed creditor or not), the state on arrival, and after the
    # review decides each held debit in turn (approve or reject)
    ((False, False), debits_in.ANSWERED, ()),
    ((True,), debits_in.WAITING_FOR_REVIEW, (("review_approve", debits_in.ANSWERED),)),
    ((False, True), debits_in.PARTLY_ANSWERED, (("review_reject", debits_in.ANSWERED),)),
    ((True, True), debits_in.WAITING_FOR_REVIEW,
     (("review_approve", debits_in.PARTLY_ANSWERED), ("review_reject", debits_in.ANSWERED))),
]


@pytest.mark.parametrize("listed, arrived, decisions", PACKAGE_STATES)
def test_a_package_is_answered_once_every_debit_of_it_is(
        rig: Rig, listed: tuple[bool, ...], arrived: str,
        decisions: tuple[tuple[str, str], ...]) -> None:
    debits = [rig.debit(LISTED if is_listed else "示例燃气公司") for is_listed in listed]
    _, package_id, _ = rig.receive(*debits)
    states = [rig.package_state(package_id)]
    held = [d for d, is_listed in zip(debits, listed) if is_listed]
    for debit, (action, _) in zip(held, decisions):
        rig.request("sup1", action, rig.payment_id(debit.tx_id))
        states.append(rig.package_state(package_id))

    assert states == [arrived, *(state for _, state in decisions)]
    assert len(rig.receipts(package_id)) == (1 if False in listed else 0) + len(held)


def test_a_held_debit_shows_it_is_held_for_review(rig: Rig) -> None:
    """It stays `received` (CONTRACT.md's incoming states), its reason and
    `held_for_review` saying why, in the core system's view and the console's alike,
    until the review passes it."""
    listed = rig.debit(LISTED)
    rig.receive(listed)
    held = rig.shown(listed.tx_id)
    rig.request("sup1", "review_approve", rig.payment_id(listed.tx_id))

    assert held == {**dict.fromkeys(("api", "console"),
                                    ("received", "screening_match_payee_name", True)),
                    "cli": "held for review yes"}
    assert rig.shown(listed.tx_id) == {**dict.fromkeys(("api", "console"),
                                                       ("received", None, False)),
                                       "cli": "held for review no"}


def test_a_passed_debit_is_paid_in_a_receipt_of_its_own(rig: Rig) -> None:
    balance, _ = rig.books()
    listed = rig.debit(LISTED)
    _, package_id, _ = rig.receive(listed)
    payment_id = rig.payment_id(listed.tx_id)
    done = rig.request("sup1", "review_approve", payment_id)
    kind = rig.db(lambda tx: tx.query_one(
        "SELECT i.kind FROM beps_items i JOIN beps_packages k ON k.id = i.package_id "
        "WHERE i.payment_id = ? AND k.answers = ?", (payment_id, package_id)))

    assert done["state"] == "executed", done
    assert rig.receipts(package_id) == [[(listed.tx_id, beps128.PAID, None)]]
    assert rig.debit_state(listed.tx_id) == ("received", None)
    assert kind == (items.DEBIT_IN,)
    assert rig.books() == (balance - 100, True)


def test_a_failed_debit_is_refused_and_its_hold_released(rig: Rig) -> None:
    balance, _ = rig.books()
    listed = rig.debit(LISTED)
    _, package_id, _ = rig.receive(listed)
    done = rig.request("dir1", "review_reject", rig.payment_id(listed.tx_id))

    assert done["state"] == "executed", done
    assert rig.receipts(package_id) == [[(listed.tx_id, "PR09", "RJ08")]]
    assert rig.debit_state(listed.tx_id) == ("rejected", debit_review.REFUSED)
    assert rig.books() == (balance, True)


def test_a_debit_its_payer_stopped_while_it_waited_is_refused_when_passed(rig: Rig) -> None:
    """The stop applies when the debit is answered, as it would have on arrival."""
    balance, _ = rig.books()
    listed = rig.debit(LISTED)
    _, package_id, _ = rig.receive(listed)
    rig.db(lambda tx: debits_in.add_stop(tx, rig.rig.payer_account, AGREEMENT, listed.tx_id,
                                         "客户申请止付", rig.gw.clock.now()))
    done = rig.request("sup1", "review_approve", rig.payment_id(listed.tx_id))

    assert done["state"] == "executed", done
    assert rig.receipts(package_id) == [[(listed.tx_id, "PR09", "RJ06")]]
    assert rig.debit_state(listed.tx_id) == ("rejected",
                                             "RJ06: payer stopped payment: 客户申请止付")
    assert rig.books() == (balance, True)


def test_a_debit_whose_mandate_was_revoked_while_it_waited_is_refused_when_passed(
        rig: Rig) -> None:
    """The revocation applies when the debit is answered, as a missing mandate would have
    on arrival (RJ01), whatever the review decides."""
    balance, _ = rig.books()
    listed = rig.debit(LISTED)
    _, package_id, _ = rig.receive(listed)
    rig.db(lambda tx: mandates.revoke_mandate(
        rig.gw, tx, {"account": rig.rig.payer_account, "agreement": AGREEMENT}, "core",
        rig.gw.clock.now()))
    done = rig.request("sup1", "review_approve", rig.payment_id(listed.tx_id))

    assert done["state"] == "executed", done
    assert rig.receipts(package_id) == [[(listed.tx_id, "PR09", "RJ01")]]
    assert rig.debit_state(listed.tx_id) == (
        "rejected", "RJ01: no mandate for this account and agreement")
    assert rig.books() == (balance, True)


def test_a_debit_nobody_decided_is_refused_before_its_deadline(rig: Rig) -> None:
    from gateway.errors import PaygateError

    first, second = rig.debit(LISTED), rig.debit(LISTED, 250)
    # Due a day after the other tests' debits, which this first pass refuses.
    _, package_id, deadline = rig.receive(first, second, days=2)
    rig.expire(deadline - MARGIN - timedelta(seconds=1))
    balance, _ = rig.books()
    alerts = rig.alerts("debit_review_expired")
    held = rig.debit_state(first.tx_id)
    due = rig.expire(deadline - MARGIN)
    again = rig.expire(deadline)

    assert held == ("received", "screening_match_payee_name")
    assert (due, again) == (2, 0)
    assert rig.receipts(package_id) == [[(first.tx_id, "PR09", "RJ08"),
                                         (second.tx_id, "PR09", "RJ08")]]
    assert rig.debit_state(first.tx_id) == ("rejected", debit_review.REFUSED)
    assert rig.package_state(package_id) == debits_in.ANSWERED
    assert rig.books() == (balance + 350, True)
    assert rig.alerts("debit_review_expired") == alerts + 1
    with pytest.raises(PaygateError) as exc:
        rig.request("sup1", "review_approve", rig.payment_id(first.tx_id))
    assert exc.value.code == "payment_not_held_for_review"


def test_the_console_lists_a_held_debit_and_offers_pass_and_fail(rig: Rig) -> None:
    clear, listed = rig.debit("示例燃气公司"), rig.debit(LISTED)
    rig.receive(clear, listed)
    held, paid = rig.payment_id(listed.tx_id), rig.payment_id(clear.tx_id)
    shown = rig.held_for_review()
    offered = rig.offered((held, paid), ("review_approve", "review_reject"))

    assert held in shown and paid not in shown
    assert offered == {(held, "review_approve"): True, (held, "review_reject"): True,
                       (paid, "review_approve"): False, (paid, "review_reject"): False}


def test_a_debit_that_cannot_be_refused_keeps_no_other_from_its_answer(rig: Rig) -> None:
    """One held debit whose refusal fails (its hold's release raising here) is undone
    alone and tried again next pass; the other of its package is refused and answered."""
    first, second = rig.debit(LISTED, 120), rig.debit(LISTED, 130)
    _, package_id, deadline = rig.receive(first, second, days=3)
    rig.expire(deadline - MARGIN - timedelta(days=1))  # the other tests' debits
    stuck = int(rig.db(lambda tx: tx.query_one(
        "SELECT hold_id FROM payments WHERE direction = 'in' AND tx_id = ?",
        (first.tx_id,)))[0])
    release = rig.gw.ledger.release

    def failing(tx: Any, event_id: str, hold_id: int, *args: Any, **kwargs: Any) -> Any:
        if hold_id == stuck:
            raise RuntimeError("the hold's release failed")
        return release(tx, event_id, hold_id, *args, **kwargs)
    rig.gw.ledger.release = failing
    try:
        due = rig.expire(deadline - MARGIN)
    finally:
        rig.gw.ledger.release = release
    states = rig.debit_state(first.tx_id), rig.debit_state(second.tx_id)
    package = rig.package_state(package_id)
    later = rig.expire(deadline - MARGIN)

    assert due == 1
    assert states == (("received", "screening_match_payee_name"),
                      ("rejected", debit_review.REFUSED))
    assert package == debits_in.PARTLY_ANSWERED
    assert later == 1
    assert rig.receipts(package_id) == [[(second.tx_id, "PR09", "RJ08")],
                                        [(first.tx_id, "PR09", "RJ08")]]
    assert rig.package_state(package_id) == debits_in.ANSWERED
    assert rig.books()[1]


OLDER_STATES = [
    # the package's debits (listed creditor or not), the held ones the review passes,
    # the state an older gateway left it in, and the state start-up sets right
    ((False, True), 0, debits_in.ANSWERED, debits_in.PARTLY_ANSWERED),
    ((True, True), 0, debits_in.ANSWERED, debits_in.WAITING_FOR_REVIEW),
    ((True, True), 1, debits_in.ANSWERED, debits_in.PARTLY_ANSWERED),
    ((False, True), 1, debits_in.PARTLY_ANSWERED, debits_in.ANSWERED),
    ((True,), 1, debits_in.WAITING_FOR_REVIEW, debits_in.ANSWERED),
]


def test_start_up_sets_right_the_package_states_an_older_gateway_left(rig: Rig) -> None:
    """A collector's package left `answered` with debits still waiting (a database from
    before the review's package states), or waiting with none left (two last decisions
    at once before the package was locked for them), gets the state its debits say, as
    the extension's start runs it; a second run changes nothing."""
    packages = []
    for listed, passed, left, _ in OLDER_STATES:
        debits = [rig.debit(LISTED if is_listed else "示例燃气公司") for is_listed in listed]
        _, package_id, _ = rig.receive(*debits)
        held = [d for d, is_listed in zip(debits, listed) if is_listed]
        for debit in held[:passed]:
            rig.request("sup1", "review_approve", rig.payment_id(debit.tx_id))
        rig.db(lambda tx, p=package_id, s=left: tx.execute(
            "UPDATE beps_packages SET state = ? WHERE id = ?", (s, p)))
        packages.append(package_id)
    now = rig.gw.clock.now()

    corrected = rig.db(lambda tx: debit_review.correct_package_states(tx, now))
    states = [rig.package_state(package_id) for package_id in packages]
    again = rig.db(lambda tx: debit_review.correct_package_states(tx, now))

    assert corrected == len(OLDER_STATES)
    assert states == [right for *_, right in OLDER_STATES]
    assert again == 0
