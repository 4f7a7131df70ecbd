"""An incoming credit is checked as an internal transfer is: the payee's account must be
a customer account of ours, the payee name its holder's, and the payee bank (CdtrAgt, a
BEPS item's CdtrAgt) the branch that keeps the account. A credit that fails any of these
is not credited: the money is parked in suspense (待销账) under a pending write-off
number with its reason, for an operator to clear to the right account or return (an
HVPS item goes back by itself after the configured working days)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import requests

from gateway.beps import incoming
from simulators.testing import BankSender
from tests.api_support import LiveGateway
from tests.beps_incoming_support import credit, package, payee_books
from tests.e2e_support import BANK, BRANCH, PEER

OTHER_BRANCH = "999100000035"    # ours, one clearing account with BRANCH, keeps no account
NOT_OURS = "888200000023"        # the peer's own branch
HOLDER = "收款测试有限公司"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("incoming-payee-bank")).start()
    g.sender = BankSender(g.gw.settings.keys_path, g.gw.clock, code=PEER)
    yield g
    g.stop()


def receive(live: LiveGateway, amount_fen: int, creditor_agent: str,
            name: str = HOLDER, account: str | None = None) -> dict[str, Any]:
    """An hvps.111 from the peer to our payer's account, naming `creditor_agent` as the
    payee's bank, delivered on the link; the incoming payment once processed."""
    raw = live.sender.credit(amount_fen, receiver=BANK, instd_branch=creditor_agent,
                             creditor_agent=creditor_agent, creditor_name=name,
                             creditor_account=account or live.payer)
    r = requests.post(live.url + "/link/inbound", data=raw, timeout=10)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = live.query("SELECT id, state FROM payments WHERE direction = 'in' AND "
                          "amount_fen = ?", (amount_fen,))
        if rows and rows[0][1] != "received":
            return live.loop.run(live.gw.get_transfer(rows[0][0]))
        time.sleep(0.05)
    raise AssertionError(f"the credit of {amount_fen} fen was not processed")


def balance(live: LiveGateway) -> int:
    return live.loop.run(live.gw.store.run(lambda tx: live.gw.ledger.balance(tx,
                                                                              live.payer)))


def suspense_reason(live: LiveGateway, payment: dict[str, Any]) -> str:
    [(reason,)] = live.query("SELECT reason FROM ledger_suspense WHERE ref = ?",
                             (payment["id"],))
    return reason


@pytest.fixture(scope="module", autouse=True)
def holder(live):
    """The payer's account is held under HOLDER for these tests."""
    live.loop.run(live.gw.store.run(lambda tx: tx.execute(
        "UPDATE ledger_account SET name = ? WHERE account_no = ?", (HOLDER, live.payer))))


def test_a_credit_naming_the_account_s_branch_is_credited(live):
    before = balance(live)
    payment = receive(live, 101, BRANCH)

    assert payment["state"] == "credited"
    assert balance(live) == before + 101


@pytest.mark.parametrize("amount_fen, bank", [(102, OTHER_BRANCH), (103, NOT_OURS)])
def test_a_credit_naming_another_bank_goes_to_suspense(live, amount_fen, bank):
    """Another branch of ours (same clearing account, keeps no such account) or a bank
    not ours: the holder's name is right, yet the account is not credited."""
    before = balance(live)
    payment = receive(live, amount_fen, bank)

    assert payment["state"] == "suspense"
    assert balance(live) == before
    assert suspense_reason(live, payment) == "branch_mismatch"
    assert payment["history"][-1]["detail"]["reason"] == "branch_mismatch"


def test_the_name_is_told_before_the_branch(live):
    """A wrong name and a wrong branch: the name is the reason kept."""
    payment = receive(live, 104, OTHER_BRANCH, name="别人")

    assert payment["state"] == "suspense"
    assert suspense_reason(live, payment) == "name_mismatch"


def test_a_beps_credit_naming_another_branch_goes_to_suspense(tmp_path):
    """In a netted beps.121, the item naming another branch as CdtrAgt is parked, its
    neighbour naming the right one credited."""
    db, gw = payee_books(tmp_path, 2)
    right, wrong = credit(0), credit(1)
    wrong = replace(wrong, creditor_bank=OTHER_BRANCH)
    with db.transaction() as tx:
        incoming.on_credit_package(tx, gw, package("2026121200000001", [right, wrong]),
                                   gw.clock.now())
        states = dict(tx.query("SELECT msg_id, state FROM payments ORDER BY msg_id", ()))
        reasons = tx.query("SELECT reason FROM ledger_suspense", ())

    assert states == {right.tx_id: "credited", wrong.tx_id: "suspense"}
    assert reasons == [("branch_mismatch",)]
