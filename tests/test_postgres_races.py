"""Two gateway processes on one PostgreSQL database racing over one payment's
exceptions, one query or one operator's request.

Each test holds one process's transaction open at the moment that matters, lets the
other process's work run into it, then commits the first. The work that comes second
either waits for the first and then sees what it did (a locked row, read again), or
finds the row changed and loses the race (`Contended`: the store runs it again, when
the first check refuses it): a payment is returned once, a ccms.307 sent once, a query
answered once, a request decided once, and nobody's record is overwritten.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import dialect, outbound, payments, store
from gateway.errors import PaygateError
from gateway.exceptions import cancels, returns, schema as exc_schema, status, suspense
from gateway.ops import actions, control, schema as ops_schema
from gateway.ops.operators import Operator
from gateway.queries import records, schema as queries_schema
from gateway.messages.signing import KeyRing, write_keypair
from gateway.store import Contended
from ledger.fixtures import postgres_schema_or_skip
from ledger.testing import customer_account, fresh_books
from tests.beps_support import NOW, ResultGateway, credit_row
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH
from tests.race_support import Other

pytestmark = pytest.mark.postgres

AMOUNT_FEN = 5_000_00
INCOMING = f"I{PEER}2026121200000001"
REQUESTER = Operator("alice", "甲", "00", "")
APPROVER = Operator("bob", "乙", "20", "")
REJECTER = Operator("carol", "丙", "30", "")


@pytest.fixture
def url():
    with postgres_schema_or_skip("race") as url:
        yield url


class Gateway(ResultGateway):
    """The stub with what the exception flows also ask of a gateway."""

    own_banks = frozenset({BANK, BRANCH})
    hvps_open = True
    hvps_hold = None  # HVPS sending not held (gateway.status_hold)
    calendar = None


def books(tmp_path: Path, url: str) -> tuple[Any, Gateway]:
    """The gateway's tables and its books on a new schema at `url`, with an incoming
    credit paid into our customer's account (which holds as much again)."""
    db, led = fresh_books(url, clearing_fen=10**9)
    write_keypair(tmp_path, BANK)
    gw = Gateway(KeyRing.load(tmp_path, [BANK]), led)
    account = customer_account(1)
    with db.transaction() as tx:
        dialect.install(tx, store.SCHEMA)
        exc_schema.create_tables(tx)
        ops_schema.create_tables(tx)
        queries_schema.install(tx)
        led.open_customer_account(tx, account, "收款客户", "personal", NOW.date())
        led.deposit(tx, "opening", account, AMOUNT_FEN, NOW.date())  # room for two holds
        row = dict(credit_row(0, NOW), id=INCOMING, direction="in", channel="hvps",
                   state="received", msg_type="hvps.111.001.01", sender_direct=PEER,
                   receiver_direct=BANK, payer_bank=PEER_BRANCH, payee_account=account,
                   payee_name="收款客户", payee_bank=BRANCH, amount_fen=AMOUNT_FEN)
        payments.insert(tx, row)
        credit = led.credit_incoming(tx, f"{INCOMING}:credit", account, "收款客户",
                                     AMOUNT_FEN, NOW.date(), INCOMING)
        payments.transition(tx, row, "credited", "credit", NOW, pending_no=credit.pending_no)
    return db, gw


def outgoing(db: Any, n: int, state: str) -> str:
    """An outgoing HVPS payment of ours in `state` (no hold: nothing to release)."""
    row = dict(credit_row(n, NOW, msg_type="hvps.111.001.01", state=state), channel="hvps")
    with db.transaction() as tx:
        payments.insert(tx, row)
    return row["id"]


def refusal(outcome: Any) -> list[str]:
    assert isinstance(outcome, PaygateError), outcome
    return [p.code for p in outcome.problems]


def test_two_returns_of_one_payment_at_once_send_one(tmp_path: Path, url: str) -> None:
    """A return asked at one gateway process (its transaction not yet committed) and the
    same return asked at another: the second waits for the payment, then finds the first
    return under way; the customer's money is held once and one A105 goes out."""
    db, gw = books(tmp_path, url)

    with db.transaction() as tx:
        first, _ = returns.request_tx(gw, tx, INCOMING, "客户要求退回", "core:test", NOW)
        other = Other(url, lambda t: returns.request_tx(gw, t, INCOMING, "客户要求退回",
                                                        "operator:bob", NOW))
        other.start_and_wait_for_lock(url)
    outcome = other.finish()
    with db.transaction() as tx:
        made = tx.query("SELECT return_id FROM exc_returns WHERE original_id = ?",
                        (INCOMING,))
        balance = gw.ledger.balance(tx, customer_account(1))
    db.close()

    assert refusal(outcome) == ["return_already_requested"]
    assert made == [(first["id"],)]
    assert balance == AMOUNT_FEN  # one return's hold, not two


def test_the_automatic_return_leaves_an_item_an_operator_kept_meanwhile(
        tmp_path: Path, url: str) -> None:
    """An operator keeps a suspense item from the automatic return (not yet committed)
    while the sweep of another process has it among its candidates: the sweep waits,
    sees the keep and returns nothing."""
    db, gw = books(tmp_path, url)
    with db.transaction() as tx:
        tx.execute("UPDATE payments SET state = 'suspense', work_date = '2026-12-01' "
                   "WHERE id = ?", (INCOMING,))

    class Calendar:
        @staticmethod
        def is_working_day(day: Any) -> bool:
            return True

    gw.calendar = Calendar()
    with db.transaction() as tx:
        suspense.keep_tx(gw, tx, INCOMING, "operator:bob", "tracing the payee", NOW)
        sweep = Other(url, lambda t: suspense.sweep_tx(gw, t, NOW, 3))
        sweep.start_and_wait_for_lock(url)
    outcome = sweep.finish()
    with db.transaction() as tx:
        made = tx.query("SELECT return_id FROM exc_returns", ())
    db.close()

    assert outcome == [] and made == []


def test_two_cancellation_requests_for_one_queued_payment_send_one_ccms307(
        tmp_path: Path, url: str) -> None:
    """The core system and an operator at two gateway processes ask at once to cancel a
    payment queued at the NPC: one ccms.307 goes out, the other request is refused as
    already requested."""
    db, gw = books(tmp_path, url)
    pid = outgoing(db, 7, "queued")

    with db.transaction() as tx:
        cancels.request_tx(gw, tx, pid, "客户撤销", "core:test", NOW)
        other = Other(url, lambda t: cancels.request_tx(gw, t, pid, "cancelled_by_operator",
                                                        "operator:bob", NOW))
        other.start_and_wait_for_lock(url)
    outcome = other.finish()
    with db.transaction() as tx:
        asked = tx.query_one("SELECT COUNT(*) FROM exc_requests WHERE kind = 'cancel'",
                             ())[0]
        queued = tx.query_one("SELECT COUNT(*) FROM outbox WHERE mesg_type = ?",
                              ("ccms.307.001.02",))[0]
    db.close()

    assert refusal(outcome) == ["cancel_already_requested"]
    assert asked == 1 and queued == 1


def test_the_status_sweep_leaves_an_answer_handled_meanwhile(tmp_path: Path,
                                                             url: str) -> None:
    """The NPC's ccms.317 is being handled in one process when the sweep of another finds
    the query unanswered for too long: the sweep waits, sees the answer and leaves it
    (it used to record the query as unanswered, over the NPC's answer)."""
    db, gw = books(tmp_path, url)
    pid = outgoing(db, 8, "unknown")
    earlier = NOW - timedelta(hours=1)
    with db.transaction() as tx:
        status.ask_tx(gw, tx, payments.get(tx, pid), "result_overdue", earlier,
                      enter_unknown=False)
        request_id = tx.query_one("SELECT id FROM exc_requests", ())[0]

    with db.transaction() as tx:
        exc_schema.answer_request(tx, request_id, "answered", {"status": "PR12"}, NOW)
        payments.transition(tx, payments.get(tx, pid), "queued", "npc_status_queued", NOW)
        sweep = Other(url, lambda t: status.sweep_tx(gw, t, NOW, 60))
        sweep.start_and_wait_for_lock(url)
    outcome = sweep.finish()
    with db.transaction() as tx:
        req = exc_schema.request_by_msg_id(
            tx, tx.query_one("SELECT msg_id FROM exc_requests", ())[0])
        asked = tx.query_one("SELECT COUNT(*) FROM exc_requests", ())[0]
    db.close()

    assert outcome == []
    assert (req["state"], req["answer"]) == ("answered", {"status": "PR12"})
    assert asked == 1


def _query(db: Any) -> dict[str, Any]:
    at = NOW.isoformat()
    with db.transaction() as tx:
        return records.insert(tx, {
            "id": f"QI{PEER}2026121200000009", "direction": "in", "state": "open",
            "system": "HVPS", "counterparty": PEER, "our_party": BANK, "their_party": PEER,
            "msg_id": "2026121200000009", "mesg_id": "M9", "content": "请查询该笔款项",
            "amount_fen": AMOUNT_FEN, "currency": "CNY", "orig_msg_id": "2026121200000001",
            "orig_instg_party": PEER, "orig_mt": "hvps.111.001.01", "source": "counterparty",
            "asked_at": at, "reply_due_at": (NOW + timedelta(hours=12)).isoformat(),
            "created_at": at, "updated_at": at})


def test_two_replies_to_one_query_at_once_answer_it_once(tmp_path: Path, url: str) -> None:
    """Two operators at two gateway processes answer the same query: the second finds it
    answered (Contended: run again, its reply is refused as the query is not open) and
    the first reply stays on record."""
    db, gw = books(tmp_path, url)
    query = _query(db)

    with db.transaction() as tx:
        records.answer(tx, query, NOW, "2026121200000010", "已入账", "operator:bob")
        other = Other(url, lambda t: records.answer(t, query, NOW, "2026121200000011",
                                                    "未入账", "operator:carol"))
        other.start_and_wait_for_lock(url)
    outcome = other.finish()
    with db.transaction() as tx:
        kept = records.get(tx, query["id"])
    db.close()

    assert isinstance(outcome, Contended), outcome
    assert (kept["reply_msg_id"], kept["replied_by"]) == ("2026121200000010", "operator:bob")


def _on_its_lane(db: Any) -> str:
    """An unsent HVPS payment, accepted, its outbox row pending on its lane."""
    pid = outgoing(db, 9, "accepted")
    with db.transaction() as tx:
        tx.execute("INSERT INTO outbox (payment_id, kind, stream, state, created_at, "
                   "updated_at) VALUES (?, 'hvps_credit', 'out.hvps.3', 'pending', ?, ?)",
                   (pid, NOW.isoformat(), NOW.isoformat()))
    return pid


def _cancel_request(db: Any, gw: Gateway) -> tuple[int, str]:
    """A pending request to cancel an unsent HVPS payment (its outbox row pending)."""
    pid = _on_its_lane(db)
    with db.transaction() as tx:
        return control.create(tx, REQUESTER, "cancel", pid, {}, "", NOW), pid


def _approve(gw: Gateway, tx: Any, request_id: int, now: Any) -> None:
    req, what = control.decide(tx, APPROVER, request_id, True, "", now)
    assert what == "approve"
    control.execute(tx, gw, APPROVER, req, now)


def test_a_rejection_while_another_supervisor_approves_loses(tmp_path: Path,
                                                             url: str) -> None:
    """One supervisor approves (and so executes) a cancellation while another rejects it
    at another gateway process: the rejection finds the request decided and loses, so
    the record never says rejected of an action that was carried out."""
    db, gw = books(tmp_path, url)
    request_id, pid = _cancel_request(db, gw)

    with db.transaction() as tx:
        _approve(gw, tx, request_id, NOW)
        other = Other(url, lambda t: control.decide(t, REJECTER, request_id, False, "no",
                                                    NOW))
        other.start_and_wait_for_lock(url)
    outcome = other.finish()
    with db.transaction() as tx:
        req = control.load(tx, request_id)
        state = payments.get(tx, pid)["state"]
    db.close()

    assert isinstance(outcome, Contended), outcome
    assert (req["state"], req["decided_by"], state) == ("executed", "bob", "cancelled")


def test_a_hold_while_another_process_claims_the_row_is_refused(tmp_path: Path,
                                                              url: str) -> None:
    """A sender at one gateway process claims an accepted payment's outbox row while an
    operator's hold runs at another, which read the row pending: the hold waits for the
    claim, finds the message on its way and is refused; the row stays the sender's and
    the payment is not held."""
    db, gw = books(tmp_path, url)
    pid = _on_its_lane(db)
    with db.transaction() as tx:
        outbox_id = outbound.delivery(tx, pid).outbox_id
        request_id = control.create(tx, REQUESTER, "hold", pid, {}, "", NOW)

    with db.transaction() as tx:
        assert outbound.take(tx, outbox_id, NOW)
        other = Other(url, lambda t: actions.hold(actions.Context(gw, NOW, request_id,
                                                                  "alice", "alice"),
                                                  t, pid, {}))
        other.start_and_wait_for_lock(url)
    outcome = other.finish()
    with db.transaction() as tx:
        state = payments.get(tx, pid)["state"]
        row = outbound.delivery(tx, pid)
    db.close()

    assert refusal(outcome) == ["payment_already_on_the_wire"]
    assert (state, row.state, row.attempts) == ("accepted", "sending", 1)


def test_an_expiry_sweep_leaves_a_request_approved_meanwhile(tmp_path: Path,
                                                             url: str) -> None:
    """A request approved at the last moment in one process while another, whose clock
    is just past the request's life, expires pending requests: the approval and its
    execution stay on record."""
    db, gw = books(tmp_path, url)
    request_id, pid = _cancel_request(db, gw)
    later = NOW + timedelta(seconds=control.REQUEST_LIFE_S + 1)

    with db.transaction() as tx:
        _approve(gw, tx, request_id, NOW)
        other = Other(url, lambda t: control.expire_due(t, later))
        other.start_and_wait_for_lock(url)
    outcome = other.finish()
    with db.transaction() as tx:
        req = control.load(tx, request_id)
    db.close()

    assert outcome == 0
    assert req["state"] == "executed"

