"""Our BEPS debit whose money waits in suspense leaves it by an operator's request and a
supervisor's approval: applied to our customer (`suspense_apply`) or returned to the
payer bank by a beps.121 A105 naming the debit (`suspense_return`), each once, the books
balanced, the debit's state and the core system's webhook saying what happened and the
alert that raised the item closed (docs/beps.md, "Paid debits in suspense")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gateway import payments
from gateway.errors import Problem
from gateway.beps import build, extension_of, items, packer, results
from gateway.messages import beps121, beps128, ccms900, codec
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.ops import views
from gateway.ops.testing import PAYER_BRANCH, serving
from gateway.redisproc import free_port
from ledger.chart import BEPS_NETTED_OUT, SUSPENSE
from ledger.testing import customer_account
from tests.test_ops_debit_give_up import AMOUNT_FEN, PEER_BRANCH
from tests.test_ops_debit_give_up import Rig as GiveUpRig

WHY_APPLY = "核心系统确认未另行扣收，入客户账"
WHY_RETURN = "客户确认已线下收款，退回付款行"


class Rig(GiveUpRig):
    def in_suspense(self, taken: Callable[[str], Any] | None = None) -> tuple[str, str]:
        """Our debit given up by operators and then paid: (its id, its pending number);
        `taken` runs on it before it is packed."""
        pid, package_id = self.debit_sent(taken)
        self.pass_deadline()
        _, req = self.give_up("op1", pid, "付款行查复：该笔未付款")
        self.approve(req["id"])
        self.receipt(package_id, beps128.PAID)
        debit = self.payment(pid)
        assert debit["state"] == "rejected" and debit["pending_no"], debit
        return pid, debit["pending_no"]

    def ask(self, action: str, target: str, note: str, **params: Any) -> tuple[int, Any]:
        return self.call("POST", "/ops/api/requests", "op1",
                         {"action": action, "target": target, "params": params,
                          "note": note})

    def done(self, action: str, target: str, note: str, **params: Any) -> Any:
        """Asked by one operator and approved by a supervisor: the request as it ended."""
        asked, req = self.ask(action, target, note, **params)
        assert asked == 201, req
        approved, done = self.approve(req["id"])
        assert approved == 200, done
        return done

    def balance(self, account: str) -> int:
        return self.run(lambda tx: self.gw.ledger.balance(tx, account))

    def item_state(self, pending_no: str) -> str:
        return self.run(lambda tx: self.gw.ledger.suspense_item(tx, pending_no).state)

    def alert_closed_by(self, code: str, pid: str) -> list[Any]:
        """Who closed the alerts of `code` about the payment (None: still open)."""
        return [by for by, detail in self.run(lambda tx: tx.query(
            "SELECT k.by, a.detail FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.id "
            "WHERE a.code = ? ORDER BY a.id", (code,)))
            if json.loads(detail).get("payment") == pid]

    def told(self, pid: str) -> list[str]:
        """The states the core system's webhook was given for the payment, in order."""
        return [t["state"] for t in self.run(lambda tx: payments.told(tx, pid))]

    def seal_return(self, rid: str) -> tuple[str, bytes]:
        """The return packed and sent now: its package id and the package's bytes."""
        def seal(tx: Any) -> tuple[str, bytes]:
            ext = extension_of(self.gw)
            for outbox_id in packer.seal_due(tx, self.gw, ext.settings, "stream", self.now(),
                                             force=True):
                packer.claim(tx, self.gw, outbox_id, self.now())
            package_id, outbox_id = tx.query_one(
                "SELECT k.id, k.outbox_id FROM beps_items i JOIN beps_packages k "
                "ON k.id = i.package_id WHERE i.payment_id = ?", (rid,))
            return package_id, packer.stored_envelope(tx, outbox_id)
        return self.run(seal)

    def npc_answers(self, package_id: str, status: str) -> None:
        bank = self.gw.settings.bank_code
        conf = ccms900.CommonConf(
            GroupHeader("1", "", "0000", "0000", bank, bank, "BEPS"),
            OriginalRef(package_id[12:], bank, beps121.MESSAGE_TYPE), status,
            code="NEZI0000" if status == "PR03" else "NEZE0001",
            processed_on=self.now().date().isoformat(), netting_round="09",
            reject_info=None if status == "PR03" else "收款行行号错")
        self.run(lambda tx: results.on_result(tx, self.gw, type("D", (), {"obj": conf})(),
                                              self.now()))

    def credit_to_suspense(self) -> tuple[str, str, str]:
        """Our debit for a customer whose account closed before the payer bank paid it:
        (its id, its pending number, the closed account)."""
        n = next(self.keys)
        account, name = customer_account(500 + n, "corporate"), f"示例物业公司{n}"
        self.run(lambda tx: self.gw.ledger.open_customer_account(
            tx, account, name, "corporate", self.gw.work_date))
        _, view = self.loop.run(extension_of(self.gw).submit_debit("ops-tests", f"c-{n}", {
            "creditor_account": account, "creditor_name": name,
            "creditor_bank": PAYER_BRANCH, "debtor_account": f"62229999{n:08d}",
            "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH,
            "amount": f"{AMOUNT_FEN / 100:.2f}", "agreement": f"XY-C-{n}"}))

        def seal(tx: Any) -> str:
            ext = extension_of(self.gw)
            for outbox_id in packer.seal_due(tx, self.gw, ext.settings, "stream", self.now(),
                                             force=True):
                packer.claim(tx, self.gw, outbox_id, self.now())
            self.gw.ledger.close_account(tx, account, self.gw.work_date)
            return tx.query_one("SELECT package_id FROM beps_items WHERE payment_id = ?",
                                (view["id"],))[0]
        self.receipt(self.run(seal), beps128.PAID)
        debit = self.payment(view["id"])
        assert debit["state"] == "netted" and debit["pending_no"], debit
        return view["id"], debit["pending_no"], account


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # A webhook on a closed loopback port: what the core system is told is written for it.
    hook = {"webhook_url": f"http://127.0.0.1:{free_port()}/hook"}
    with serving(tmp_path_factory.mktemp("ops-debit-suspense"), hook) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def test_a_given_up_debit_paid_after_is_applied_to_our_customer_once(rig: Rig) -> None:
    """Applied once the core system confirmed it did not collect again: Dr suspense, Cr
    our customer; the debit, paid after all and its round not settled, is `netted`, the
    core system told with the account and the note; the critical alert is closed by the
    gateway; a second application is refused."""
    pid, pending_no = rig.in_suspense()
    account = rig.rig.payer_account
    offered = rig.offered(pid)
    before, told_before = rig.balance(account), rig.told(pid)
    done = rig.done("suspense_apply", pending_no, WHY_APPLY, account=account)
    again, refusal = rig.ask("suspense_apply", pid, WHY_APPLY, account=account)
    debit = rig.payment(pid)
    last = rig.run(lambda tx: payments.history(tx, pid))[-1]
    books = rig.run(lambda tx: rig.gw.ledger.trial_balance(tx))

    assert "suspense_apply" in offered and "suspense_return" in offered
    assert done["state"] == "executed", done
    assert done["outcome"]["state"] == "netted" and done["outcome"]["account"] == account
    assert rig.balance(account) - before == AMOUNT_FEN
    assert rig.item_state(pending_no) == "cleared" and books.balanced
    assert debit["state"] == "netted"
    assert (last["state"], last["event"]) == ("netted", "beps_debit_suspense_applied")
    assert {k: last["detail"][k] for k in ("account", "pending_no", "note", "was")} == {
        "account": account, "pending_no": pending_no, "note": WHY_APPLY, "was": "rejected"}
    assert rig.told(pid) == told_before + ["netted"]
    assert rig.alert_closed_by("debit_paid_after_end", pid) == ["gateway"]
    assert again == 409 and refusal["errors"][0]["code"] == "suspense_item_not_open"
    assert "suspense_apply" not in rig.offered(pid)


def test_a_given_up_debit_paid_after_is_returned_to_the_payer_bank(rig: Rig) -> None:
    """The return is a beps.121 A105 to the payer bank naming our beps.127 and the
    debit's transaction in RtrInf, holding nothing: the money stays in suspense until
    the NPC nets it, then Dr suspense, Cr 4002; the debit is `returned` with the
    return's id, the alert closed. A second return, and an application, are refused."""
    pid, pending_no = rig.in_suspense()
    debit = rig.payment(pid)
    done = rig.done("suspense_return", pid, WHY_RETURN)
    rid = done["outcome"]["return_id"]
    twice, second = rig.ask("suspense_return", pending_no, WHY_RETURN)
    ret = rig.payment(rid)
    waiting = (rig.item_state(pending_no), rig.payment(pid)["state"])
    package_id, raw = rig.seal_return(rid)
    sent = codec.decode(raw).obj.transfers
    suspense_before, netted_before = rig.run(lambda tx: (
        rig.gw.ledger.balance(tx, rig.gw.ledger.internal_accounts[SUSPENSE]),
        rig.gw.ledger.balance(tx, rig.gw.ledger.internal_accounts[BEPS_NETTED_OUT])))
    rig.npc_answers(package_id, "PR03")
    returned = rig.payment(pid)
    suspense_after, netted_after, books = rig.run(lambda tx: (
        rig.gw.ledger.balance(tx, rig.gw.ledger.internal_accounts[SUSPENSE]),
        rig.gw.ledger.balance(tx, rig.gw.ledger.internal_accounts[BEPS_NETTED_OUT]),
        rig.gw.ledger.trial_balance(tx).balanced))
    rig.npc_answers(package_id, "PR03")  # the same notice again moves nothing
    again = rig.run(lambda tx: (
        rig.gw.ledger.balance(tx, rig.gw.ledger.internal_accounts[SUSPENSE]),
        rig.gw.ledger.balance(tx, rig.gw.ledger.internal_accounts[BEPS_NETTED_OUT])))
    history = rig.run(lambda tx: payments.history(tx, pid))
    applied, refusal = rig.ask("suspense_apply", pid, WHY_APPLY,
                               account=rig.rig.payer_account)
    debit_package = rig.run(lambda tx: tx.query_one(
        "SELECT k.msg_id FROM beps_items i JOIN beps_packages k ON k.id = i.package_id "
        "WHERE i.payment_id = ?", (pid,))[0])

    assert done["state"] == "executed", done
    assert (ret["msg_type"], ret["business_type"], ret["business_kind"]) == (
        beps121.MESSAGE_TYPE, "A105", "02108")
    assert ret["hold_id"] is None and ret["amount_fen"] == AMOUNT_FEN
    assert (ret["payee_account"], ret["payee_bank"]) == (debit["payer_account"], PEER_BRANCH)
    suspense = rig.gw.ledger.internal_accounts[SUSPENSE]
    assert (ret["payer_account"], ret["payer_name"], ret["payer_bank"]) == (
        suspense, "甲市农村商业银行城东支行", debit["payee_bank"])  # not our customer
    assert ret["receiver_direct"] == debit["receiver_direct"]
    assert twice == 409 and second["errors"][0]["code"] == "return_already_requested"
    assert waiting == ("open", "rejected")
    (t,) = sent
    assert (t.business_type, t.amount_fen, t.creditor_account) == (
        "A105", AMOUNT_FEN, debit["payer_account"])
    assert (t.debtor_account, t.debtor_name) == (suspense, ret["payer_name"])
    assert t.extra.original == OriginalRef(debit_package, rig.gw.settings.bank_code,
                                           build.DEBIT_TYPE)
    assert (t.extra.original_tx.tx_id, t.extra.original_tx.business_type) == (
        debit["tx_id"], "B100")
    assert t.extra.reason == WHY_RETURN
    assert returned["state"] == "returned" and rid in returned["reason"]
    assert rig.item_state(pending_no) == "returned"
    assert suspense_before - suspense_after == AMOUNT_FEN
    assert netted_after - netted_before == AMOUNT_FEN and books
    assert again == (suspense_after, netted_after)
    assert [e["event"] for e in history].count("returned_to_payer_bank") == 1
    assert rig.payment(rid)["state"] == "netted"
    assert rig.told(pid)[-1] == "returned"
    assert rig.alert_closed_by("debit_paid_after_end", pid) == ["gateway"]
    assert applied == 409 and refusal["errors"][0]["code"] == "suspense_item_not_open"


def test_a_return_the_npc_rejects_leaves_the_money_in_suspense(rig: Rig) -> None:
    """Rejected, the return moves nothing: the item stays open, the debit `rejected`
    with `return_failed` in its history, the operators alerted; the alert that raised
    the item stays open, and a new return may be asked for."""
    pid, pending_no = rig.in_suspense()
    rid = rig.done("suspense_return", pid, WHY_RETURN)["outcome"]["return_id"]
    package_id, _ = rig.seal_return(rid)
    rig.npc_answers(package_id, "PR09")
    debit = rig.payment(pid)
    last = rig.run(lambda tx: payments.history(tx, pid))[-1]
    asked, _ = rig.ask("suspense_return", pid, WHY_RETURN)

    assert rig.payment(rid)["state"] == "rejected"
    assert debit["state"] == "rejected" and rig.item_state(pending_no) == "open"
    assert (last["event"], last["detail"]["return_id"]) == ("return_failed", rid)
    assert rig.alert_closed_by("return_not_settled", pid) == [None]
    assert rig.alert_closed_by("debit_paid_after_end", pid) == [None]
    assert asked == 201


def test_a_later_return_netted_closes_the_alert_of_the_one_that_failed(rig: Rig) -> None:
    """The first return rejected raises `return_not_settled`; a second return of the
    same debit netted returns it after all, and the gateway closes that alert, saying
    which return settled."""
    pid, _ = rig.in_suspense()
    first = rig.done("suspense_return", pid, WHY_RETURN)["outcome"]["return_id"]
    rig.npc_answers(rig.seal_return(first)[0], "PR09")
    open_after_failure = rig.alert_closed_by("return_not_settled", pid)
    second = rig.done("suspense_return", pid, WHY_RETURN)["outcome"]["return_id"]
    rig.npc_answers(rig.seal_return(second)[0], "PR03")
    notes = rig.run(lambda tx: [n for n, d in tx.query(
        "SELECT k.note, a.detail FROM alerts a JOIN alert_acks k ON k.alert_id = a.id "
        "WHERE a.code = 'return_not_settled'", ()) if json.loads(d)["payment"] == pid])

    assert open_after_failure == [None]
    assert rig.payment(pid)["state"] == "returned"
    assert rig.alert_closed_by("return_not_settled", pid) == ["gateway"]
    assert notes == [f"payment {pid} returned after all: return {second} settled"]


def test_a_netted_debit_whose_credit_went_to_suspense_is_applied_keeping_its_state(
        rig: Rig) -> None:
    """Our customer's account closed before the payer bank paid: the debit is `netted`
    with its money in suspense. Applied to the customer's new account, it stays
    `netted`, the core system told the account by the event; the alert is closed."""
    pid, pending_no, closed = rig.credit_to_suspense()
    account = rig.rig.payer_account
    before, told_before = rig.balance(account), rig.told(pid)
    refused, refusal = rig.ask("suspense_apply", pending_no, WHY_APPLY, account=closed)
    rig.done("suspense_apply", pid, WHY_APPLY, account=account)

    assert refused == 409 and refusal["errors"][0]["code"] == "account_closed"
    assert rig.payment(pid)["state"] == "netted"
    assert rig.balance(account) - before == AMOUNT_FEN
    assert rig.told(pid) == told_before + ["netted"]
    last = rig.run(lambda tx: payments.history(tx, pid))[-1]
    assert (last["event"], last["detail"]["account"]) == ("beps_debit_suspense_applied",
                                                          account)
    assert rig.alert_closed_by("debit_credit_to_suspense", pid) == ["gateway"]


def test_only_our_debits_items_are_returned_to_the_payer_bank(rig: Rig) -> None:
    """An incoming payment is returned with `return`; a debit whose money went to our
    customer has no item; a note is the reason, so it is required."""
    pid, _ = rig.debit_sent()
    incoming, why = rig.ask("suspense_return", pid, WHY_RETURN)
    suspended, _ = rig.in_suspense()
    blank, blank_body = rig.ask("suspense_return", suspended, " ")

    assert incoming == 422 and why["errors"][0]["code"] == "payment_not_in_suspense"
    assert blank == 422 and blank_body["errors"][0]["code"] == "note_required"


def test_a_given_up_debit_whose_round_settled_is_applied_as_settled(rig: Rig) -> None:
    """The round the late payment went in has settled (the NPC's booking notice): the
    debit applied to our customer is `settled` on the round's day. (Last in the module:
    the round it settles takes the module's later debits with it.)"""
    pid, pending_no = rig.in_suspense()
    day, number = rig.run(lambda tx: tx.query_one(
        "SELECT netting_date, netting_round FROM beps_items WHERE payment_id = ?", (pid,)))
    rig.run(lambda tx: items.settle(tx, rig.gw, day, number, day, rig.now()))
    done = rig.done("suspense_apply", pending_no, WHY_APPLY, account=rig.rig.payer_account)
    debit = rig.payment(pid)

    assert done["outcome"]["state"] == "settled"
    assert debit["state"] == "settled" and debit["settled_on"] == day
    assert rig.told(pid)[-1] == "settled"


def test_a_return_carries_our_branch_s_long_name_cut_to_what_a_package_takes(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The return is paid in our branch's name, which the directory may write longer
    than the 60 characters a beps.121 takes: it goes out as the name's first 60
    characters (build.our_name), while the return's route and the debit's history keep
    the name as the directory writes it; the package builds and the money stays in
    suspense until the return nets."""
    from dataclasses import replace

    pid, pending_no = rig.in_suspense()
    directory = rig.gw.router.directory
    found = directory.find
    long_name = "甲市农村商业银行股份有限公司" * 4 + "城东新区支行营业部"  # 65 characters
    monkeypatch.setattr(directory, "find", lambda code, on: replace(
        found(code, on), name=long_name) if code == PAYER_BRANCH else found(code, on))
    done = rig.done("suspense_return", pid, WHY_RETURN)
    rid = done["outcome"]["return_id"]
    ret = rig.payment(rid)
    asked = [e["detail"] for e in rig.run(lambda tx: payments.history(tx, pid))
             if e["event"] == "return_requested" and e["detail"]["return_id"] == rid]
    _, raw = rig.seal_return(rid)
    (sent,) = codec.decode(raw).obj.transfers

    assert done["state"] == "executed", done
    assert ret["payer_name"] == long_name[:build.NAME_LEN_MAX] == sent.debtor_name
    assert len(long_name) == 65 and ret["payer_name"].endswith("城东新区")
    assert ret["route"]["payer_name_listed"] == long_name
    assert asked[0]["payer_name_listed"] == long_name
    assert rig.item_state(pending_no) == "open" and rig.payment(pid)["state"] == "rejected"
    assert rig.run(lambda tx: rig.gw.ledger.trial_balance(tx).balanced)


def _return_ended(rig: Rig, pid: str, rid: str) -> dict[str, Any]:
    """What the debit and the operators were told of its return `rid` ending unpaid."""
    history = rig.run(lambda tx: payments.history(tx, pid))
    ret = rig.run(lambda tx: tx.query_one("SELECT state FROM exc_returns WHERE return_id = ?",
                                          (rid,)))
    failed = [e["detail"] for e in history if e["event"] == "return_failed"]
    return {"return": rig.payment(rid)["state"], "record": ret[0],
            "failed": [(d["return_id"], d["status"]) for d in failed],
            "alerts": rig.alert_closed_by("return_not_settled", pid).count(None)}


def test_a_return_refused_before_packing_is_reported_as_the_npc_s_refusal(rig: Rig) -> None:
    """A rule refusing the return before it is packed (packer.refuse_alone) ends it as
    the NPC's refusal would: `return_failed` on the debit, the alert, the record failed,
    once; a new return may then be asked."""
    pid, pending_no = rig.in_suspense()
    rid = rig.done("suspense_return", pid, WHY_RETURN)["outcome"]["return_id"]
    refusal = Problem("name_too_long_for_beps", "/payer_name", "x", "at most 60 characters")
    for _ in range(2):  # told twice, reported once
        rig.run(lambda tx: packer.refuse_alone(tx, rig.gw, {rid: [refusal]}, rig.now()))
    ended = _return_ended(rig, pid, rid)
    asked, _ = rig.ask("suspense_return", pid, WHY_RETURN)

    assert ended == {"return": "rejected", "record": "failed",
                     "failed": [(rid, "rejected")], "alerts": 1}
    assert rig.payment(pid)["state"] == "rejected" and rig.item_state(pending_no) == "open"
    assert asked == 201


def test_a_return_cancelled_by_an_operator_is_reported_as_the_npc_s_refusal(
        rig: Rig) -> None:
    """An operator's cancel of the return before it is packed ends it as the NPC's
    refusal would."""
    pid, pending_no = rig.in_suspense()
    rid = rig.done("suspense_return", pid, WHY_RETURN)["outcome"]["return_id"]
    rig.done("cancel", rid, "付款行已线下退回")
    ended = _return_ended(rig, pid, rid)

    assert ended == {"return": "cancelled", "record": "failed",
                     "failed": [(rid, "cancelled")], "alerts": 1}
    assert rig.item_state(pending_no) == "open"


@pytest.fixture
def list_payer(rig: Rig, tmp_path: Any) -> Any:
    """Puts in force a screening list naming the payer our debits collect from
    ("对手客户"), as a list grows after a debit was sent; the rig's list again after the
    test."""
    path = tmp_path / "screening.toml"
    path.write_text('names = ["对手客户"]\naccounts = []\n', encoding="utf-8")
    was = rig.gw.settings.screening_file

    def put() -> None:
        rig.gw.settings.screening_file = str(path)
    yield put
    rig.gw.settings.screening_file = was


def _review(rig: Rig, action: str, rid: str) -> Any:
    """A supervisor passes or fails the return (no second person: the reviewer is it)."""
    status, done = rig.call("POST", "/ops/api/requests", "sup1",
                            {"action": action, "target": rid, "params": {}, "note": ""})
    assert status == 201 and done["state"] == "executed", done
    return done


def _return_state(rig: Rig, rid: str) -> tuple[str, str | None, str | None]:
    """The return's state and reason, and the package id its item has."""
    return rig.run(lambda tx: tx.query_one(
        "SELECT p.state, p.reason, i.package_id FROM payments p JOIN beps_items i "
        "ON i.payment_id = p.id WHERE p.id = ?", (rid,)))


def test_a_return_to_a_listed_payer_is_held_for_review_then_sent_once_passed(
        rig: Rig, list_payer: Any) -> None:
    """The return is screened as every outgoing credit is: its payee listed since the
    debit went, it is held out of packing with the screening's reason (the debit's
    `return_requested` says so), and no package takes it; passed by a supervisor, it is
    packed and, netted, returns the money as any return."""
    pid, pending_no = rig.in_suspense()
    list_payer()
    done = rig.done("suspense_return", pid, WHY_RETURN)
    rid = done["outcome"]["return_id"]
    held = _return_state(rig, rid)
    asked = [e["detail"] for e in rig.run(lambda tx: payments.history(tx, pid))
             if e["event"] == "return_requested"]
    listed = [p["id"] for p in rig.run(views.held_for_review)]
    _review(rig, "review_approve", rid)
    passed = _return_state(rig, rid)
    package_id, _ = rig.seal_return(rid)
    rig.npc_answers(package_id, "PR03")

    assert done["outcome"]["return_held_for"] == "screening_match_payee_name"
    assert held == ("held", "screening_match_payee_name", items.HELD_OUT)
    assert asked[-1]["held_for"] == "screening_match_payee_name"
    assert rid in listed
    assert passed == ("accepted", None, None)
    assert rig.payment(pid)["state"] == "returned"
    assert rig.item_state(pending_no) == "returned"


def test_a_held_return_failed_in_review_leaves_the_money_in_suspense(
        rig: Rig, list_payer: Any) -> None:
    """Failed by a supervisor, the held return is cancelled and ends unpaid as any
    return does: the item stays open, the debit as it was, `return_failed` and the
    alert; a new return may be asked (and is held again while the payer is listed)."""
    pid, pending_no = rig.in_suspense()
    list_payer()
    rid = rig.done("suspense_return", pid, WHY_RETURN)["outcome"]["return_id"]
    _review(rig, "review_reject", rid)
    ended = _return_ended(rig, pid, rid)
    again = rig.done("suspense_return", pid, WHY_RETURN)["outcome"]

    assert ended == {"return": "cancelled", "record": "failed",
                     "failed": [(rid, "cancelled")], "alerts": 1}
    assert rig.payment(pid)["state"] == "rejected" and rig.item_state(pending_no) == "open"
    assert again["return_held_for"] == "screening_match_payee_name"


def _account_of(rig: Rig, holder: str) -> str:
    """A new open customer account of ours, held under `holder`."""
    account = customer_account(700 + next(rig.keys), "corporate")
    rig.run(lambda tx: rig.gw.ledger.open_customer_account(tx, account, holder, "corporate",
                                                           rig.gw.work_date))
    return account


def test_a_debits_money_is_not_applied_to_an_account_whose_holder_is_listed(
        rig: Rig) -> None:
    """The account the money is applied to and its holder's name are screened as an
    incoming credit's: a holder the list names is refused when asked (account_screened
    at /params/account, naming the match), nothing recorded, the item still open."""
    pid, pending_no = rig.in_suspense()
    account = _account_of(rig, "示例受限贸易有限公司")  # gateway/ops/screening.toml
    status, refused = rig.ask("suspense_apply", pid, WHY_APPLY, account=account)

    assert status == 409, refused
    problem = refused["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "account_screened", "/params/account", account)
    assert "screening_match_payee_name" in problem["message"]
    assert rig.item_state(pending_no) == "open" and rig.payment(pid)["state"] == "rejected"


def test_a_debits_money_is_not_applied_once_the_list_names_the_account(
        rig: Rig, tmp_path: Any) -> None:
    """Asked while the account is clear, approved after the list named its number:
    checked again when it runs, the application fails (account_screened), nothing
    posted, the item open and the debit as it was."""
    pid, pending_no = rig.in_suspense()
    account = _account_of(rig, "示例新客户")
    asked, req = rig.ask("suspense_apply", pid, WHY_APPLY, account=account)
    path = tmp_path / "screening.toml"
    path.write_text(f'names = []\naccounts = ["{account}"]\n', encoding="utf-8")
    was, rig.gw.settings.screening_file = rig.gw.settings.screening_file, str(path)
    try:
        approved, done = rig.approve(req["id"])
    finally:
        rig.gw.settings.screening_file = was

    assert asked == 201, req
    assert approved == 200 and done["state"] == "failed", done
    problem = done["outcome"]["errors"][0]
    assert (problem["code"], problem["value"]) == ("account_screened", account)
    assert "screening_match_payee_account" in problem["message"]
    assert rig.balance(account) == 0 and rig.item_state(pending_no) == "open"
    assert rig.payment(pid)["state"] == "rejected"


def test_a_debits_money_is_not_applied_once_the_list_names_its_payer(
        rig: Rig, list_payer: Any) -> None:
    """The debit's payer at the other bank, named by the list since the debit went, is
    screened as the target account is: applying its money to our customer (a clear
    account) is refused when asked (debit_payer_screened, naming the payer and the
    match), nothing recorded, the item open; the console offers its return to the payer
    bank, no longer its application."""
    pid, pending_no = rig.in_suspense()
    list_payer()
    status, refused = rig.ask("suspense_apply", pid, WHY_APPLY, account=rig.rig.payer_account)

    assert status == 409, refused
    problem = refused["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "debit_payer_screened", "/target", "对手客户")
    assert "screening_match_payer_name" in problem["message"]
    assert rig.item_state(pending_no) == "open" and rig.payment(pid)["state"] == "rejected"
    assert "suspense_apply" not in rig.offered(pid)
    assert "suspense_return" in rig.offered(pid)


def test_a_debits_money_is_not_applied_when_the_list_names_its_payer_before_approval(
        rig: Rig, list_payer: Any) -> None:
    """Asked while the payer is clear, approved after the list named it: checked again
    when it runs, the application fails (debit_payer_screened), nothing posted, the
    item open and the debit as it was."""
    pid, pending_no = rig.in_suspense()
    account = rig.rig.payer_account
    before = rig.balance(account)
    asked, req = rig.ask("suspense_apply", pid, WHY_APPLY, account=account)
    list_payer()
    approved, done = rig.approve(req["id"])

    assert asked == 201, req
    assert approved == 200 and done["state"] == "failed", done
    assert done["outcome"]["errors"][0]["code"] == "debit_payer_screened"
    assert rig.balance(account) == before and rig.item_state(pending_no) == "open"
    assert rig.payment(pid)["state"] == "rejected"


def test_a_debits_money_is_applied_when_its_payers_match_was_passed_at_intake(
        rig: Rig, list_payer: Any) -> None:
    """The payer false-matches the list when our debit is taken: held, and passed by a
    supervisor (review_approve, its history saying which hit). Its money, paid into
    suspense after it was given up, is applied to our customer: the same hit on the same
    payer was passed already and is not raised again."""
    list_payer()

    def passed(pid: str) -> None:
        assert rig.payment(pid)["reason"] == "screening_match_payer_name"
        _review(rig, "review_approve", pid)
    pid, pending_no = rig.in_suspense(passed)
    account = rig.rig.payer_account
    before = rig.balance(account)
    done = rig.done("suspense_apply", pid, WHY_APPLY, account=account)

    assert done["state"] == "executed", done
    assert rig.balance(account) == before + AMOUNT_FEN
    assert rig.item_state(pending_no) == "cleared"


def test_a_debits_money_is_not_applied_when_its_payer_matches_anew_after_a_pass(
        rig: Rig, list_payer: Any, tmp_path: Any) -> None:
    """Passed at intake for the payer's name, the payer's account listed since: a new
    hit, which the pass does not cover; refused (debit_payer_screened)."""
    list_payer()

    def passed(pid: str) -> None:
        _review(rig, "review_approve", pid)
        path = tmp_path / "grown.toml"
        payer = rig.payment(pid)["payer_account"]
        path.write_text(f'names = ["对手客户"]\naccounts = ["{payer}"]\n', encoding="utf-8")
        rig.gw.settings.screening_file = str(path)
    pid, pending_no = rig.in_suspense(passed)
    status, refused = rig.ask("suspense_apply", pid, WHY_APPLY, account=rig.rig.payer_account)

    assert status == 409, refused
    assert refused["errors"][0]["code"] == "debit_payer_screened"
    assert "screening_match_payer_account" in refused["errors"][0]["message"]
    assert rig.item_state(pending_no) == "open"


LONG_PAYER = "对手客户贸易有限公司"


@pytest.fixture
def payer_named(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our debits collect from LONG_PAYER (the rig's debits name it as their debtor)."""
    ext = extension_of(rig.gw)
    submit = ext.submit_debit
    monkeypatch.setattr(ext, "submit_debit", lambda client, key, body: submit(
        client, key, {**body, "debtor_name": LONG_PAYER}))


@contextmanager
def _lists(rig: Rig, tmp_path: Any, *names: str) -> Iterator[list[Callable[[], None]]]:
    """One screening file for each name (a list naming it alone), each put in force by
    its callable; the rig's list again after."""
    was = rig.gw.settings.screening_file
    puts = []
    for n, name in enumerate(names):
        path = tmp_path / f"list{n}.toml"
        path.write_text(f'names = ["{name}"]\naccounts = []\n', encoding="utf-8")
        puts.append(lambda path=path: setattr(rig.gw.settings, "screening_file", str(path)))
    try:
        yield puts
    finally:
        rig.gw.settings.screening_file = was


def test_a_pass_at_intake_does_not_cover_a_new_list_entry_naming_the_payer(
        rig: Rig, tmp_path: Any, payer_named: None) -> None:
    """A fragment of the payer's name false-matches it when our debit is taken, and a
    supervisor passes that; the list later names the payer itself: the same reason
    (screening_match_payer_name), but a new entry nobody passed. Applying its money to
    our customer is refused (debit_payer_screened), the item open; the approval's
    history says which list and entries were passed."""
    with _lists(rig, tmp_path, "客户贸易", LONG_PAYER) as (old, new):
        old()

        def passed(pid: str) -> None:
            assert rig.payment(pid)["reason"] == "screening_match_payer_name"
            _review(rig, "review_approve", pid)
            new()
        pid, pending_no = rig.in_suspense(passed)
        account = rig.rig.payer_account
        before = rig.balance(account)
        status, refused = rig.ask("suspense_apply", pid, WHY_APPLY, account=account)

        assert status == 409, refused
        assert refused["errors"][0]["code"] == "debit_payer_screened"
        assert rig.item_state(pending_no) == "open" and rig.balance(account) == before
        pass_event = rig.run(lambda tx: next(e["detail"] for e in payments.history(tx, pid)
                                             if e["event"] == "review_approved"))
        assert pass_event["entries"] == ["客户贸易"] and len(pass_event["list_sha256"]) == 64


def test_a_pass_at_intake_covers_a_grown_list_whose_same_entries_match(
        rig: Rig, tmp_path: Any, payer_named: None) -> None:
    """The list grows by an entry about someone else: the payer matches the very entry a
    supervisor passed, and its money is applied to our customer."""
    path = tmp_path / "grown.toml"
    path.write_text('names = ["客户贸易", "另一家公司名称"]\naccounts = []\n', encoding="utf-8")
    with _lists(rig, tmp_path, "客户贸易") as (old,):
        old()

        def passed(pid: str) -> None:
            _review(rig, "review_approve", pid)
            rig.gw.settings.screening_file = str(path)
        pid, pending_no = rig.in_suspense(passed)
        done = rig.done("suspense_apply", pid, WHY_APPLY, account=rig.rig.payer_account)

        assert done["state"] == "executed", done
        assert rig.item_state(pending_no) == "cleared"


def test_a_pass_recorded_without_its_list_does_not_carry_over(
        rig: Rig, list_payer: Any) -> None:
    """A debit passed at intake before approvals recorded the list they passed (its
    `review_approved` naming the reason alone): applying its money is refused
    (debit_payer_screened); operators return it or pass it again."""
    list_payer()

    def passed(pid: str) -> None:
        _review(rig, "review_approve", pid)

        def as_before(tx: Any) -> None:
            row = tx.query_one("SELECT id, detail FROM payment_events WHERE payment_id = ? "
                               "AND event = 'review_approved'", (pid,))
            detail = {k: v for k, v in json.loads(row[1]).items()
                      if k not in ("list_sha256", "entries")}
            tx.execute("UPDATE payment_events SET detail = ? WHERE id = ?",
                       (json.dumps(detail), row[0]))
        rig.run(as_before)
    pid, pending_no = rig.in_suspense(passed)
    status, refused = rig.ask("suspense_apply", pid, WHY_APPLY, account=rig.rig.payer_account)

    assert status == 409, refused
    assert refused["errors"][0]["code"] == "debit_payer_screened"
    assert rig.item_state(pending_no) == "open"
