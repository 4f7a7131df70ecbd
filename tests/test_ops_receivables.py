"""Receivables (其他应收款-待销账, 1221) in the console: listed by state, collected from
the account each names or reversed (its collection, else its booking) by pending
write-off number, each under dual control; a request that could not run is refused at
once with the ledger's error at `/target`, one that cannot run when approved ends
`failed` with it; the payment the item was booked for tells each step; `paygate ops`
lists them and asks for both actions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway import payments
from gateway.ops import cli, cli_render
from gateway.ops.testing import ConsoleRig, LoopThread, OpsRig, serving
from ledger.chart import RECEIVABLES
from ledger.testing import customer_account

AMOUNT_FEN = 2_500_00


class Rig(ConsoleRig):
    def receivable(self, balance_fen: int) -> tuple[str, str, str]:
        """(pending number, debtor's account, payment): a receivable booked as the NPC's
        late settlement books one, for a payment of a new customer holding
        `balance_fen`."""
        key = next(self.keys)
        payment = self.loop.run(self.rig.submit(f"rcv-{key}"))["id"]
        account = customer_account(100 + key, "corporate")
        gw = self.gw

        def book(tx: Any) -> str:
            gw.ledger.open_customer_account(tx, account, "欠款客户", "corporate", gw.work_date)
            if balance_fen:
                gw.ledger.deposit(tx, f"rcv-{key}:deposit", account, balance_fen, gw.work_date)
            return gw.ledger.book_receivable(tx, f"{payment}:late_settle:receivable", account,
                                             AMOUNT_FEN, gw.work_date, payment,
                                             "settled by the NPC after the payment ended"
                                             ).pending_no
        return self.run(book), account, payment

    def balance(self, account: str) -> int:
        return self.run(lambda tx: self.gw.ledger.balance(tx, account))

    def receivables_fen(self) -> int:
        return self.balance(self.gw.ledger.internal_accounts[RECEIVABLES])

    def events(self, payment: str) -> list[str]:
        return [e["event"] for e in self.run(lambda tx: payments.history(tx, payment))]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-receivables")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def listed(rig: Rig, state: str | None = None) -> list[str]:
    status, answer = rig.call("GET", "/ops/api/receivables"
                              + (f"?state={state}" if state is not None else ""))
    assert status == 200, answer
    return [r["pending_no"] for r in answer["receivables"]]


def test_a_receivable_is_collected_once_a_supervisor_approves(rig: Rig) -> None:
    number, account, payment = rig.receivable(AMOUNT_FEN)
    owed = rig.receivables_fen()

    status, asked = rig.request("receivable_collect", number)
    waiting = (rig.balance(account), listed(rig))
    [asked_listed] = [r for r in rig.call("GET", "/ops/api/requests?state=pending")[1][
        "requests"] if r["id"] == asked["id"]]
    decided = rig.approve(asked["id"])

    assert status == 201 and asked["state"] == "pending" and asked["needs_approval"]
    assert asked["action_label"] == {"en": "Collect receivable", "zh": "收回应收款"}
    assert asked_listed["amount"] == "2,500.00"  # what the second person approves
    assert waiting[0] == AMOUNT_FEN and number in waiting[1]
    assert decided[0] == 200 and decided[1]["state"] == "executed", decided
    assert decided[1]["outcome"]["receivable"] == number
    assert decided[1]["outcome"]["state"] == "collected"
    assert rig.balance(account) == 0 and rig.receivables_fen() == owed - AMOUNT_FEN
    assert number not in listed(rig) and number in listed(rig, "collected")
    assert "receivable_collected" in rig.events(payment)
    assert rig.run(lambda tx: rig.gw.ledger.trial_balance(tx).balanced)


def test_a_collection_the_account_cannot_cover_ends_failed_and_may_be_asked_again(
        rig: Rig) -> None:
    number, account, _ = rig.receivable(AMOUNT_FEN - 1)

    _, asked = rig.request("receivable_collect", number)
    _, failed = rig.approve(asked["id"])
    rig.run(lambda tx: rig.gw.ledger.deposit(tx, f"{number}:top-up", account, 1,
                                             rig.gw.work_date))
    _, again = rig.request("receivable_collect", number)
    _, done = rig.approve(again["id"])

    assert failed["state"] == "failed"
    assert failed["outcome"]["errors"][0]["code"] == "payer_funds_insufficient"
    assert done["state"] == "executed" and rig.balance(account) == 0


def test_a_reversal_undoes_the_collection_then_the_booking(rig: Rig) -> None:
    number, account, payment = rig.receivable(AMOUNT_FEN)
    _, asked = rig.request("receivable_collect", number)
    rig.approve(asked["id"])
    clearing = rig.run(rig.gw.ledger.clearing_balance)

    _, first = rig.request("receivable_reverse", number, "collected from the wrong account")
    _, reopened = rig.approve(first["id"])
    after_first = (rig.balance(account), listed(rig))
    _, second = rig.request("receivable_reverse", number, "booked in error")
    _, voided = rig.approve(second["id"])
    refused = rig.request("receivable_reverse", number, "once more")

    assert (reopened["outcome"]["was"], reopened["outcome"]["state"]) == ("collected", "open")
    assert after_first[0] == AMOUNT_FEN and number in after_first[1]
    assert (voided["outcome"]["was"], voided["outcome"]["state"]) == ("open", "void")
    assert number in listed(rig, "void")
    assert rig.run(rig.gw.ledger.clearing_balance) == clearing + AMOUNT_FEN
    assert refused[0] == 422
    assert (refused[1]["errors"][0]["code"], refused[1]["errors"][0]["path"]) == (
        "receivable_already_void", "/target")
    assert rig.events(payment).count("receivable_reversed") == 2
    assert rig.run(lambda tx: rig.gw.ledger.trial_balance(tx).balanced)


# (case, action, target: a text, or the state of a receivable booked for the case)
REFUSED_AT_ONCE = [
    ("a number of a suspense item", "receivable_collect", "112070001", "", 422,
     "target_malformed"),
    ("not a number", "receivable_reverse", "12345", "why", 422, "target_malformed"),
    ("a number no receivable has", "receivable_collect", "212079999", "", 404,
     "receivable_not_found"),
    ("a reversal without its reason", "receivable_reverse", "open", "  ", 422,
     "note_required"),
    ("a collection of a collected item", "receivable_collect", "collected", "", 422,
     "receivable_not_open"),
]


@pytest.mark.parametrize("case, action, target, note, status, code", REFUSED_AT_ONCE,
                         ids=[c[0] for c in REFUSED_AT_ONCE])
def test_a_request_that_could_not_run_is_refused_at_once(rig: Rig, case: str, action: str,
                                                         target: str, note: str,
                                                         status: int, code: str) -> None:
    if target in ("open", "collected"):
        state, (target, _, _) = target, rig.receivable(AMOUNT_FEN)
        if state == "collected":
            _, asked = rig.request("receivable_collect", target)
            rig.approve(asked["id"])

    answer = rig.request(action, target, note)

    assert answer[0] == status, answer
    assert answer[1]["errors"][0]["code"] == code
    assert answer[1]["errors"][0]["path"] == ("/note" if code == "note_required" else "/target")


def test_nobody_approves_their_own_collection(rig: Rig) -> None:
    number, _, _ = rig.receivable(AMOUNT_FEN)

    _, asked = rig.request("receivable_collect", number, user="sup1")
    own = rig.approve(asked["id"], user="sup1")

    assert own[0] == 403 and own[1]["errors"][0]["code"] == "approver_is_requester"


def test_paygate_ops_lists_receivables_and_asks_for_both_actions(rig: Rig) -> None:
    number, _, payment = rig.receivable(AMOUNT_FEN)
    parser = cli.build_parser()
    client = cli.Client(rig.rig.url, "op1", "op1-demo")

    def call(argv: list[str]) -> tuple[Any, str]:
        return rig.loop.run(_in_thread(cli.run, client, parser.parse_args(argv)))
    shown, view = call(["receivables"])
    asked, _ = call(["request", "receivable-reverse", number, "--note", "booked in error"])
    voided, _ = call(["receivables", "--state", "void"])

    table = cli_render.RENDERERS[view](shown)
    assert number in table and payment in table and "2500.00" in table
    assert asked["action"] == "receivable_reverse" and asked["state"] == "pending"
    assert number not in [r["pending_no"] for r in voided["receivables"]]


async def _in_thread(fn: Any, *args: Any) -> Any:
    """`paygate ops` blocks on its HTTP call: off the gateway's own loop."""
    return await asyncio.to_thread(fn, *args)


def test_a_receivables_actions_name_the_operators_plainly(rig: Rig) -> None:
    """A collection and a reversal record who asked and who approved by their user
    names, as the console's own actions do: in the payment's history as stored, and the
    reversal's teller in the ledger."""
    number, _, payment = rig.receivable(AMOUNT_FEN)
    _, collect = rig.request("receivable_collect", number)
    rig.approve(collect["id"])
    _, reverse = rig.request("receivable_reverse", number, "collected from the wrong account")
    _, reversed_ = rig.approve(reverse["id"])

    def stored(tx: Any) -> tuple[list[dict[str, Any]], str]:
        details = [json.loads(d) for (d,) in tx.query(
            "SELECT detail FROM payment_events WHERE payment_id = ? AND event IN "
            "('receivable_collected', 'receivable_reversed') ORDER BY id", (payment,))]
        teller = tx.query_one("SELECT teller FROM ledger_entry WHERE entry_id = ?",
                              (reversed_["outcome"]["ledger_entry"],))[0]
        return details, teller
    details, teller = rig.run(stored)

    assert [(d["by"], d["approved_by"]) for d in details] == [("op1", "sup1")] * 2
    assert teller == "sup1"
