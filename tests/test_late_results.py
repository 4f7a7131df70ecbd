"""A final word from the NPC on a payment the gateway already ended (gateway.late_results,
docs/exceptions.md): what each combination moves, on an in-memory database with the
gateway's tables, through the core result handler; and a status answer of "no such
message" about a payment whose message is still on its way."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gateway import payments
from gateway.exceptions import schema, status
from gateway.handlers import Handlers
from ledger.testing import WORK_DATE, customer_account
from tests import test_exceptions_ledger
from tests.test_exceptions_ledger import (BANK, BRANCH, NOW, PEER, PEER_BRANCH, FakeGateway,
                                          now)

books = test_exceptions_ledger.books  # the in-memory books with the gateway's tables

AMOUNT_FEN = 30_000_00
PAYER = customer_account(2)


def outgoing(tx: Any, gw: FakeGateway, key: int, payer_fen: int,
             outbox_state: str = "acked") -> dict[str, Any]:
    """An outgoing HVPS payment of AMOUNT_FEN from a payer holding `payer_fen`, sent:
    its hold taken, its outbox row in `outbox_state`."""
    account = customer_account(key)
    gw.ledger.open_customer_account(tx, account, "付款客户", "personal", WORK_DATE)
    gw.ledger.deposit(tx, f"deposit:{key}", account, payer_fen, WORK_DATE)
    pid = f"P2026120700{key:06d}"
    row = {"id": pid, "direction": "out", "channel": "hvps", "state": "accepted",
           "msg_type": "hvps.111.001.01", "msg_id": f"20261207{key:08d}",
           "tx_id": f"20261207{key:08d}", "end_to_end_id": f"e2e-{key}",
           "sender_direct": BANK, "receiver_direct": PEER, "amount_fen": AMOUNT_FEN,
           "currency": "CNY", "payer_account": account, "payer_name": "付款客户",
           "payer_bank": BRANCH, "payee_account": "6222000000000001",
           "payee_name": "对手客户", "payee_bank": PEER_BRANCH, "business_type": "A100",
           "business_kind": "02102", "urgency": "urgent", "priority": 2,
           "remittance": [], "route": {}, "work_date": WORK_DATE.isoformat(),
           "created_at": NOW, "updated_at": NOW}
    row["hold_id"] = gw.ledger.hold(tx, f"{pid}:hold", account, AMOUNT_FEN, WORK_DATE, pid)
    payments.insert(tx, row)
    tx.execute("INSERT INTO outbox (payment_id, kind, stream, state, mesg_type, mesg_id, "
               "attempts, untaken, created_at, updated_at) VALUES (?, 'hvps_credit', 'lane', "
               "?, 'hvps.111.001.01', ?, 1, 0, ?, ?)",
               (pid, outbox_state, f"m{key}", NOW, NOW))
    return payments.transition(tx, payments.get(tx, pid), "sent", "hvps_sent", now())


def result(gw: FakeGateway, tx: Any, payment: dict[str, Any], npc_status: str) -> Any:
    """A ccms.900 about the payment, through the core result handler."""
    conf = SimpleNamespace(original=SimpleNamespace(msg_id=payment["msg_id"]),
                           status=npc_status, processed_on=WORK_DATE.isoformat(),
                           reject_info=None, code=None)
    return Handlers(gw).on_result(tx, SimpleNamespace(obj=conf), now(),
                                  found=(payments.get(tx, payment["id"]),))


def money(tx: Any, gw: FakeGateway, account: str) -> tuple[int, int, int, bool]:
    return (gw.ledger.balance(tx, account), gw.ledger.clearing_balance(tx),
            sum(i.amount_fen for i in gw.ledger.open_receivables(tx, WORK_DATE)),
            gw.ledger.trial_balance(tx).balanced)


# How the gateway ended the payment, the payer's money then, the NPC's late word; the
# payment's state after, how the payer, the clearing account and the open receivables
# moved on that word, and the alerts raised.
CASES = [
    ("PR09", AMOUNT_FEN, "PR04", "settled", -AMOUNT_FEN, -AMOUNT_FEN, 0,
     ["npc_settled_payment_we_ended"]),
    ("PR09", AMOUNT_FEN // 2, "PR04", "settled", 0, -AMOUNT_FEN, AMOUNT_FEN,
     ["npc_settled_payment_we_ended"]),
    ("PR08", AMOUNT_FEN, "PR04", "settled", -AMOUNT_FEN, -AMOUNT_FEN, 0,
     ["npc_settled_payment_we_ended"]),
    ("PR09", AMOUNT_FEN, "PR12", "rejected", 0, 0, 0, ["npc_queued_payment_we_ended"]),
    ("PR09", AMOUNT_FEN, "PR09", "rejected", 0, 0, 0, []),
    ("PR08", AMOUNT_FEN, "PR09", "cancelled", 0, 0, 0, []),
    ("PR04", AMOUNT_FEN, "PR04", "settled", 0, 0, 0, []),
    ("PR04", AMOUNT_FEN, "PR12", "settled", 0, 0, 0, []),
    ("PR04", AMOUNT_FEN, "PR09", "settled", 0, 0, 0,
     ["npc_did_not_settle_payment_we_settled"]),
    ("PR04", AMOUNT_FEN, "PR08", "settled", 0, 0, 0,
     ["npc_did_not_settle_payment_we_settled"]),
]


@pytest.mark.parametrize("ended, payer_fen, word, after, payer_moved, clearing_moved, "
                         "receivable_moved, alerts", CASES)
def test_a_late_word_moves_exactly_what_the_npc_moved(books, ended, payer_fen, word, after,
                                                      payer_moved, clearing_moved,
                                                      receivable_moved, alerts) -> None:
    """Our clearing account follows the NPC's books: a settlement of a payment we ended
    is booked from the payer while the account covers it (beyond the money it keeps
    besides: `payer_fen` is all it holds), else to other receivables; a word that agrees
    moves nothing; a contradiction of a settlement is raised, never booked."""
    db, gw = books
    with db.transaction() as tx:
        payment = outgoing(tx, gw, 7, AMOUNT_FEN)
        result(gw, tx, payment, ended)
        if payer_fen < AMOUNT_FEN:  # the payer spent part of the released money
            gw.ledger.hold(tx, "spent", payment["payer_account"], AMOUNT_FEN - payer_fen,
                           WORK_DATE, "elsewhere")
        before = money(tx, gw, payment["payer_account"])
        raised = len(gw.alerts)
        result(gw, tx, payment, word)
        moved = money(tx, gw, payment["payer_account"])
        state = payments.get(tx, payment["id"])["state"]

    assert state == after
    assert (moved[0] - before[0], moved[1] - before[1], moved[2] - before[2]) == (
        payer_moved, clearing_moved, receivable_moved)
    assert gw.alerts[raised:] == alerts
    assert before[3] and moved[3]


def test_the_same_late_settlement_twice_is_booked_once(books) -> None:
    """A repeat of the late PR04 finds the payment settled: nothing more moves."""
    db, gw = books
    with db.transaction() as tx:
        payment = outgoing(tx, gw, 8, AMOUNT_FEN)
        result(gw, tx, payment, "PR09")
        result(gw, tx, payment, "PR04")
        entries = gw.ledger.entry_count(tx)
        result(gw, tx, payment, "PR04")

        assert gw.ledger.entry_count(tx) == entries
        assert gw.alerts == ["npc_settled_payment_we_ended"]


def test_the_history_tells_what_was_booked(books) -> None:
    """The payment shows how it ended here, that the NPC settled it after, and where the
    money was taken from; its reason says it in words."""
    db, gw = books
    with db.transaction() as tx:
        payment = outgoing(tx, gw, 9, AMOUNT_FEN)
        result(gw, tx, payment, "PR09")
        gw.ledger.hold(tx, "spent", payment["payer_account"], AMOUNT_FEN, WORK_DATE, "x")
        result(gw, tx, payment, "PR04")
        view = payments.get(tx, payment["id"])
        events = tx.query("SELECT state, event, detail FROM payment_events WHERE "
                          "payment_id = ? ORDER BY id", (payment["id"],))
        item = gw.ledger.open_receivables(tx, WORK_DATE)[0]

    assert [(s, e) for s, e, _ in events][-2:] == [("rejected", "hvps_rejected"),
                                                   ("settled", "npc_settled_after_end")]
    assert '"booked":"receivables"' in events[-1][2].replace(" ", "")
    assert item.pending_no in view["reason"] and "rejected" in view["reason"]
    assert (item.account_no, item.ref, item.amount_fen) == (
        payment["payer_account"], payment["id"], AMOUNT_FEN)


def status_answer(tx: Any, gw: FakeGateway, payment: dict[str, Any], npc_status: str) -> Any:
    """A status query about the payment, answered by the NPC with `npc_status`."""
    schema.add_request(tx, "status", payment["id"], "Q1", "H1", "core:test", "requested",
                       now())
    answer = SimpleNamespace(query=SimpleNamespace(msg_id="Q1"), npc=SimpleNamespace(
        status=npc_status, code="HV0E0013", reject_info="no such message",
        settlement_date=None))
    return status.on_response(gw, tx, SimpleNamespace(obj=answer), now())


@pytest.mark.parametrize("outbox_state, after, believed, payer_moved, alerts", [
    ("pending", "sent", False, 0, ["status_answer_not_believed"]),
    ("sending", "sent", False, 0, ["status_answer_not_believed"]),
    ("sent", "rejected", None, AMOUNT_FEN, []),
    ("acked", "rejected", None, AMOUNT_FEN, []),
])
def test_no_such_message_is_believed_only_once_the_npc_took_ours(
        books, outbox_state, after, believed, payer_moved, alerts) -> None:
    """PR24 about a payment whose message is still on its way says nothing of what the
    NPC does once it arrives: the payment goes back to `sent`, its hold kept; once the
    NPC took the message, PR24 rejects it and releases the hold."""
    db, gw = books
    with db.transaction() as tx:
        payment = outgoing(tx, gw, 10, AMOUNT_FEN, outbox_state)
        payment = payments.transition(tx, payment, "unknown", "outcome_unknown", now())
        before = gw.ledger.balance(tx, payment["payer_account"])
        done = status_answer(tx, gw, payment, "PR24")
        moved = gw.ledger.balance(tx, payment["payer_account"]) - before
        state = payments.get(tx, payment["id"])["state"]
        answer = schema.requests_of(tx, payment["id"])[0]["answer"]

    assert state == after
    assert answer.get("believed") == believed
    assert done.outcome["done"] == ("not_believed" if believed is False else "rejected")
    assert moved == payer_moved
    assert gw.alerts == alerts
