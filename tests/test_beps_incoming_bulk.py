"""Incoming BEPS credit packages and refused packages (PR09) are processed per package
in bulk: the same payments, history, entries, suspense items and balances as item by
item, nothing posted twice for a repeated package, and as many statements whatever the
package's size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway import payments
from gateway.beps import debits_in, incoming, items
from gateway.states import FINAL
from ledger.testing import customer_account
from gateway.messages.package import ReturnLimit, Transfer
from tests.beps_incoming_support import (
    credit, credit_one_by_one, package, payee_books,
)
from tests.beps_support import NOW, answer, answer_in, held_package
from tests.e2e_support import BANK, BRANCH, PEER_BRANCH
from tests.test_beps_rules import CountedStatements

OTHER_BRANCH = "999100000035"  # ours, but keeps none of the ledger's accounts


def _mixed(size: int, elsewhere: tuple[int, ...] = ()) -> list:
    """Credits to payees 0..size-1: every third to an account we do not have, every
    fifth to the right account under another name, those in `elsewhere` naming a branch
    of ours that does not keep the account; the second credit twice."""
    transfers = []
    for n in range(size):
        if n % 3 == 2:
            transfers.append(credit(n, account=customer_account(9000 + n)))
        elif n % 5 == 4:
            transfers.append(credit(n, name="另一个人"))
        elif n in elsewhere:
            transfers.append(replace(credit(n), creditor_bank=OTHER_BRANCH))
        else:
            transfers.append(credit(n))
    return transfers + [credit(1)]


def _books(db: Any, gw: Any) -> dict[str, Any]:
    """Everything the processing of a package leaves, without ids that differ between
    databases: payments, their history as shown, items, entries with their lines and
    stored results, suspense items, balances, alerts."""
    with db.transaction() as tx:
        pids = [pid for (pid,) in tx.query("SELECT id FROM payments ORDER BY id", ())]
        lines: dict[int, list] = {}
        for entry_id, account_no, side, fen in tx.query(
                "SELECT entry_id, account_no, side, amount_fen FROM ledger_line "
                "ORDER BY entry_id, line_no", ()):
            lines.setdefault(entry_id, []).append((account_no, side, fen))
        accounts = [a for (a,) in tx.query("SELECT account_no FROM ledger_account "
                                           "ORDER BY account_no", ())]
        return {
            "payments": [payments.get(tx, pid) for pid in pids],
            "history": [payments.history(tx, pid) for pid in pids],
            "items": tx.query("SELECT payment_id, kind, side, counterparty, msg_type, "
                              "amount_fen, package_id, netting_date, netting_round "
                              "FROM beps_items ORDER BY payment_id", ()),
            "entries": [(event_id, op, content, ref, result, lines[entry_id])
                        for entry_id, event_id, op, content, ref, result in tx.query(
                            "SELECT entry_id, event_id, op, fingerprint, ref, result "
                            "FROM ledger_entry ORDER BY entry_id", ())],
            "suspense": tx.query("SELECT pending_no, amount_fen, account_no, payee_name, "
                                 "reason, ref, state FROM ledger_suspense "
                                 "ORDER BY pending_no", ()),
            "balances": [gw.ledger.balance(tx, a) for a in accounts],
            "balanced": gw.ledger.trial_balance(tx).balanced,
            "alerts": list(gw.alerts),
        }


def test_a_credit_package_leaves_what_crediting_item_by_item_left(tmp_path, database_url):
    """Credited and suspense items mixed (a credit naming another branch of ours among
    them), a credit repeated in the package and one
    received in an earlier package: the same payments, history, items, entries, suspense
    items (pending numbers included), balances and alerts as item by item."""
    books = []
    for bulk in (True, False):
        db, gw = payee_books(tmp_path / str(bulk), 12,
                             url=database_url if bulk else "sqlite:///:memory:")
        with db.transaction() as tx:
            gw.ledger.close_account(tx, customer_account(100 + 6), NOW.date())
        first, second = package("2026121200000001", [credit(0)]), package(
            "2026121200000002", _mixed(12, elsewhere=(7,)))
        for d in (first, second):
            with db.transaction() as tx:
                if bulk:
                    incoming.on_credit_package(tx, gw, d, NOW)
                else:
                    credit_one_by_one(tx, gw, d)
        books.append(_books(db, gw))
        db.close()

    assert books[0] == books[1]
    states = [p["state"] for p in books[0]["payments"]]
    assert states.count("credited") == 4 and states.count("suspense") == 8
    assert {row[4] for row in books[0]["suspense"]} == {"account_not_found",
                                                          "account_closed",
                                                          "name_mismatch",
                                                          "branch_mismatch"}
    assert books[0]["alerts"] == ["duplicate_incoming_payment"] * 2
    assert books[0]["balanced"]


def test_a_repeated_package_posts_nothing(tmp_path, database_url):
    """The same package again is refused as a duplicate; its credits in another package
    are each raised as duplicates; neither posts, records or changes anything."""
    db, gw = payee_books(tmp_path, 6, url=database_url)
    transfers = _mixed(6)
    with db.transaction() as tx:
        done = incoming.on_credit_package(tx, gw, package("2026121200000001", transfers),
                                          NOW)
    before = _books(db, gw)
    outcomes = []
    for msg_id in ("2026121200000001", "2026121200000002"):
        with db.transaction() as tx:
            outcomes.append(incoming.on_credit_package(
                tx, gw, package(msg_id, transfers), NOW).outcome)
    after = _books(db, gw)

    assert done.outcome == {"package": f"888200000015{'2026121200000001'}", "credited": 3,
                           "suspense": 3, "duplicate": 1}
    assert outcomes[0] == {"duplicate_of": "8882000000152026121200000001"}
    assert outcomes[1]["duplicate"] == len(transfers) and outcomes[1]["credited"] == 0
    assert after["alerts"][len(before["alerts"]):] == [
        "duplicate_incoming_package"] + ["duplicate_incoming_payment"] * len(transfers)
    assert {k: v for k, v in after.items() if k != "alerts"} == {
        k: v for k, v in before.items() if k != "alerts"}


def _credited_statements(tmp_path: Path, size: int) -> tuple[int, dict[str, int]]:
    db, gw = payee_books(tmp_path / f"in{size}", size)
    with db.transaction() as tx:
        counted = CountedStatements(tx)
        out = incoming.on_credit_package(counted, gw, package("2026121200000001",
                                                              _mixed(size)), NOW).outcome
    db.close()
    return counted.count, out


def _rejected_statements(tmp_path: Path, size: int) -> int:
    db, gw, package_id = held_package(tmp_path / f"out{size}", [100 + n for n in range(size)])
    with db.transaction() as tx:
        counted = CountedStatements(tx)
        answer_in(counted, gw, package_id, "PR09")
    db.close()
    return counted.count


def test_packages_are_processed_in_as_many_statements_whatever_their_size(tmp_path):
    """A credit package of 6 or 60 items (nearly half of them to suspense), and a PR09 of a
    package of 3 or 40, run the same number of statements."""
    small, large = _credited_statements(tmp_path, 6), _credited_statements(tmp_path, 60)

    assert small[0] == large[0]
    assert (small[1]["suspense"], large[1]["suspense"]) == (3, 28)
    assert _rejected_statements(tmp_path, 3) == _rejected_statements(tmp_path, 40)


def _reject_one_by_one(db: Any, gw: Any, package_id: str) -> None:
    """What PR09 did before releasing in bulk: each hold released, each payment rejected
    on its own."""
    with db.transaction() as tx:
        tx.execute("UPDATE beps_packages SET state = 'rejected', updated_at = ?, reason = ? "
                   "WHERE id = ?", (NOW.isoformat(), "why", package_id))
        for p in items.package_states(tx, package_id):
            if p["state"] in FINAL or p["state"] == "netted":
                continue
            if p["hold_id"]:
                gw.ledger.release(tx, f"{p['id']}:release", int(p["hold_id"]),
                                  gw.work_date.isoformat())
            payments.transition(tx, p, "rejected", "beps_rejected", NOW, gw.notifier,
                                reason="why", package=package_id)
        gw.alert(tx, "beps_package_rejected", package=package_id, npc_code="NEZI0000",
                 reason="why")


def test_a_rejected_package_releases_what_releasing_item_by_item_released(tmp_path,
                                                                           database_url):
    """PR09 of a whole package, and of one whose item was cancelled before: the same
    entries, balances, states and history as one release and one change per item;
    told again, nothing more is posted."""
    for cancel in (False, True):
        books = []
        for bulk in (True, False):
            db, gw, package_id = held_package(tmp_path / f"{bulk}{cancel}",
                                              [100, 250, 7, 31])
            if cancel:
                with db.transaction() as tx:
                    p = items.package_states(tx, package_id)[1]
                    gw.ledger.release(tx, f"{p['id']}:cancel", int(p["hold_id"]),
                                      gw.work_date.isoformat())
                    payments.transition(tx, p, "cancelled", "beps_cancelled", NOW)
            if bulk:
                answer(db, gw, package_id, "PR09")
                with db.transaction() as tx:
                    entries = gw.ledger.entry_count(tx)
                answer(db, gw, package_id, "PR09")
                with db.transaction() as tx:
                    assert gw.ledger.entry_count(tx) == entries
                gw.alerts.pop()
            else:
                _reject_one_by_one(db, gw, package_id)
            books.append(_books(db, gw))
            db.close()

        assert books[0] == books[1]
        states = [p["state"] for p in books[0]["payments"]]
        assert states == (["rejected", "cancelled", "rejected", "rejected"] if cancel
                          else ["rejected"] * 4)
        assert books[0]["balanced"]



def _debits(tmp_path: Path, size: int) -> tuple[dict[str, Any], int]:
    """A peer's beps.127 answered: what each debit became, the payers' balances, and the
    statements it took. Six debits: payer 0's (a mandate and the money), another bank's
    payer, payer 2's (no mandate), payer 3's (a stop of every debit under its
    agreement), two of payer 1's (a mandate and the money for one); then `size` more,
    payer 0's and payer 2's in turn; the first debit comes twice."""
    db, gw = payee_books(tmp_path / f"debits{size}", 4)
    gw.own_banks = frozenset({BANK, BRANCH})
    payers = [customer_account(100 + n) for n in range(4)]
    with db.transaction() as tx:
        gw.ledger.deposit(tx, "funds0", payers[0], 10**6, NOW.date())
        gw.ledger.deposit(tx, "funds1", payers[1], 150, NOW.date())
        for payer in payers[:2] + payers[3:]:
            debits_in.add_mandate(tx, payer, "XY-1", NOW)
        debits_in.add_stop(tx, payers[3], "XY-1", "", "客户申请止付", NOW)
    who = [0, None, 2, 3, 1, 1] + [0 if n % 2 else 2 for n in range(size)]
    transfers = [Transfer(f"20261212{n:08d}", "示例客户", payers[p or 0], None,
                          PEER_BRANCH if p is None else BRANCH, PEER_BRANCH, "示例燃气公司",
                          "6222000000001234", None, 100, "B100", "02102", agreement="XY-1")
                 for n, p in enumerate(who)]
    d = package("2026121200000009", transfers + transfers[:1])
    d.obj = replace(d.obj, return_limit=ReturnLimit("03"))
    with db.transaction() as tx:
        counted = CountedStatements(tx)
        out = debits_in.on_debit_package(counted, gw, d, NOW).outcome
        states = [(state, (reason or "")[:4]) for state, reason in tx.query(
            "SELECT state, reason FROM payments ORDER BY msg_id", ())]
        balances = [gw.ledger.balance(tx, p) for p in payers]
        balanced = gw.ledger.trial_balance(tx).balanced
    db.close()
    return {"out": out, "states": states, "balances": balances, "balanced": balanced,
            "alerts": gw.alerts}, counted.count


def test_a_debit_package_is_answered_in_as_many_statements_whatever_its_size(tmp_path):
    """Each debit paid (held) or refused by its rule, as one after another would be (a
    payer's money covers its first debits only), and the same statements for 10 debits
    or 60."""
    small, small_count = _debits(tmp_path, 4)
    large, large_count = _debits(tmp_path, 54)

    assert small_count == large_count
    for debits, size in ((small, 4), (large, 54)):
        assert debits["states"][:6] == [("received", ""), ("rejected", "RJ04"),
                                         ("rejected", "RJ01"), ("rejected", "RJ06"),
                                         ("received", ""), ("rejected", "RJ02")]
        assert debits["states"][6:] == [("rejected", "RJ01") if n % 2 == 0
                                        else ("received", "") for n in range(size)]
        assert debits["balances"][:2] == [10**6 - 100 * (1 + size // 2), 50]
        assert debits["out"] == {"package": "8882000000152026121200000009",
                                 "paid": 2 + size // 2, "refused": 5 + size - size // 2}
        assert debits["alerts"] == ["duplicate_incoming_payment"] and debits["balanced"]
