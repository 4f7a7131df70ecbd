"""Operators give up our BEPS debit past its receipt deadline (`debit_give_up`): offered
only then, requested with a note, approved by a second person, recorded with who and
why; the core system is told `rejected` once, and a paid receipt arriving after that is
booked to suspense, never to our customer, with a critical alert (docs/beps.md,
"Debits")."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from gateway import payments
from gateway.beps import api as beps_api
from gateway.beps import build, debit_deadline, debits_out, extension_of, items, packer
from gateway.critical import open_alerts
from gateway.errors import PaygateError, Problem
from gateway.messages import beps128
from gateway.messages.common import NpcProcessing, OriginalRef
from gateway.messages.package import PackageHeader
from gateway.ops.testing import (PAYER_BRANCH, PAYER_NAME, ConsoleRig, LoopThread, OpsRig,
                                 serving)

PEER_BRANCH = "888200000023"
AMOUNT_FEN = 86_40


class Rig(ConsoleRig):
    def debit_sent(self, taken: Callable[[str], Any] | None = None) -> tuple[str, str]:
        """A debit for the rig's customer, packed alone into a beps.127 and sent now
        (`taken`, given its id, runs before it is packed: a review passing it)."""
        n = next(self.keys)
        _, view = self.loop.run(extension_of(self.gw).submit_debit("ops-tests", f"d-{n}", {
            "creditor_account": self.rig.payer_account, "creditor_name": PAYER_NAME,
            "creditor_bank": PAYER_BRANCH, "debtor_account": f"62220000{n:08d}",
            "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH,
            "amount": f"{AMOUNT_FEN / 100:.2f}", "agreement": f"XY-{n}"}))
        if taken is not None:
            taken(view["id"])

        def seal(tx: Any) -> str:
            ext = extension_of(self.gw)
            outbox = packer.seal_due(tx, self.gw, ext.settings, "stream", self.now(),
                                     force=True)
            for outbox_id in outbox:
                packer.claim(tx, self.gw, outbox_id, self.now())
            return tx.query_one("SELECT package_id FROM beps_items WHERE payment_id = ?",
                                (view["id"],))[0]
        return view["id"], self.run(seal)

    def now(self) -> Any:
        return self.rig.clock.now()

    def pass_deadline(self) -> None:
        self.rig.clock.advance(timedelta(days=3, minutes=1).total_seconds())
        self.run(lambda tx: debit_deadline.mark_overdue(tx, self.gw, self.now()))

    def receipt(self, package_id: str, status: str, refusal: tuple[str, str] | None = None
                ) -> Any:
        """The payer bank's beps.128 for the package's one debit, forwarded netted; a
        refusal with its code and reason when given."""
        def handle(tx: Any) -> Any:
            (p,) = items.package_payments(tx, package_id)
            line = beps128.ReceiptLine(p["tx_id"], PEER_BRANCH, PAYER_BRANCH, p["amount_fen"],
                                       status, *(refusal or ()))
            paid = status == beps128.PAID
            obj = beps128.DebitReceipt(
                PackageHeader(f"2026120799{next(self.keys):06d}", self.now().isoformat(),
                              "888200000015", self.gw.settings.bank_code, 1, p["amount_fen"]),
                OriginalRef(package_id[12:], self.gw.settings.bank_code, build.DEBIT_TYPE),
                int(paid), p["amount_fen"] if paid else 0, (line,),
                NpcProcessing("PR03", "NEZI0000", netting_date=self.now().date().isoformat(),
                              netting_round="07"))
            return debits_out.on_receipt(tx, self.gw, type("D", (), {"obj": obj})(),
                                         self.now())
        return self.run(handle)

    def payment(self, pid: str) -> dict[str, Any]:
        return self.run(lambda tx: payments.get(tx, pid))

    def give_up(self, user: str, target: str, note: str) -> tuple[int, Any]:
        return self.request("debit_give_up", target, note, user)

    def given_up(self, pid: str, note: str) -> None:
        """The debit given up: op1 asks, sup1 approves."""
        status, req = self.give_up("op1", pid, note)
        assert status == 201, req
        approved, detail = self.call("POST", f"/ops/api/requests/{req['id']}/approve",
                                     "sup1", {"note": "同意"})
        assert approved == 200, detail

    def offered(self, pid: str) -> list[str]:
        status, detail = self.call("GET", f"/ops/api/payments/{pid}")
        assert status == 200, detail
        return detail["actions"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-debit")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def test_give_up_is_offered_and_accepted_only_past_the_deadline(rig: Rig) -> None:
    """Before its deadline a debit waits for its receipt: the request is refused, saying
    until when; past it the detail view offers the action, and a request without a note
    is refused."""
    pid, _ = rig.debit_sent()
    early, early_body = rig.give_up("op1", pid, "付款行电话确认不付")
    offered_early = rig.offered(pid)
    rig.pass_deadline()
    blank, blank_body = rig.give_up("op1", pid, " ")

    assert early == 409 and early_body["errors"][0]["code"] == "debit_receipt_not_overdue"
    assert "debit_give_up" not in offered_early
    assert "debit_give_up" in rig.offered(pid)
    assert blank == 422 and blank_body["errors"][0]["code"] == "note_required"


def test_the_deadline_asks_the_payer_bank_about_the_package(rig: Rig) -> None:
    """Past the deadline a ccms.314 goes to the payer bank naming our beps.127 and its
    sum, queued for the link with the query's record; the debit's history names it, the
    alert too, and the stuck list shows the debit `sent` with its reason."""
    pid, package_id = rig.debit_sent()
    rig.pass_deadline()
    query, outbox, event = rig.run(lambda tx: (
        tx.query_one("SELECT id, counterparty, orig_msg_id, orig_mt, orig_tx_id, amount_fen, "
                     "source, state, content FROM queries WHERE orig_msg_id = ?",
                     (package_id[12:],)),
        tx.query_one("SELECT mesg_type, receiver FROM outbox o JOIN queries q ON "
                     "q.mesg_id = o.mesg_id WHERE q.orig_msg_id = ?", (package_id[12:],)),
        [e for e in payments.history(tx, pid) if e["event"] == "beps_debit_receipt_overdue"]))
    rig.rig.clock.advance(60)
    status, stuck = rig.call("GET", "/ops/api/stuck?minutes=0")
    listed = {p["id"]: p for p in stuck["payments"]}
    view = rig.loop.run(rig.gw.get_transfer(pid))
    due = rig.run(lambda tx: tx.query_one("SELECT deadline_at FROM beps_packages WHERE "
                                          "id = ?", (package_id,))[0])

    assert query[1:8] == ("888200000015", package_id[12:], build.DEBIT_TYPE, None,
                          AMOUNT_FEN, "gateway", "open")
    assert package_id[12:] in query[8] and "回执" in query[8]
    assert outbox == ("ccms.314.001.01", "888200000015")
    assert event[0]["state"] == "sent" and event[0]["detail"]["query"] == query[0]
    assert status == 200 and listed[pid]["state"] == "sent"
    assert listed[pid]["reason"] == "debit_receipt_overdue"
    assert view["state"] == "sent" and view["reason"] == "debit_receipt_overdue"
    assert view["beps"]["receipt_due_at"] == due


def test_a_query_that_cannot_be_made_leaves_the_debit_marked_and_says_so(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The query refused as it is built: the debit is marked overdue and raised all the
    same, with an alert that the payer bank was not asked."""
    from gateway.queries import outgoing

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PaygateError(Problem("message_would_break_schema", "/Cntt", "x", "text"))
    monkeypatch.setattr(outgoing, "ask_about_package", refuse)
    pid, package_id = rig.debit_sent()
    rig.pass_deadline()
    codes = rig.run(lambda tx: [c for (c,) in tx.query(
        "SELECT code FROM alerts WHERE detail LIKE ? ORDER BY id", (f"%{package_id[12:]}%",))])

    assert rig.payment(pid)["reason"] == "debit_receipt_overdue"
    assert codes == ["debit_receipt_query_failed", "debit_receipt_overdue"]


def test_a_debit_given_up_then_paid_goes_to_suspense_and_is_raised(rig: Rig) -> None:
    """Given up with a supervisor's approval the debit is rejected (who asked, who
    approved and why in its history); the payer bank's paid receipt arriving after that
    books the money to suspense under a pending number, credits nobody, leaves the debit
    rejected and raises a critical alert: the core system heard `rejected` once."""
    pid, package_id = rig.debit_sent()
    rig.pass_deadline()
    before = rig.run(lambda tx: rig.gw.ledger.account(
        tx, rig.rig.payer_account, rig.gw.work_date).balance_fen)
    status, req = rig.give_up("op1", pid, "付款行查复：该笔未付款")
    waiting = rig.payment(pid)["state"]
    own, _ = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "op1", {"note": ""})
    approved, _ = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1",
                           {"note": "同意"})
    given_up = rig.payment(pid)
    overdue = rig.run(lambda tx: tx.query(
        "SELECT a.detail, k.by, k.note FROM alerts a LEFT JOIN alert_acks k "
        "ON k.alert_id = a.id WHERE a.code = 'debit_receipt_overdue'", ()))
    [(by, note)] = [(by, note) for detail, by, note in overdue if package_id in detail]

    assert status == 201 and waiting == "sent" and own == 403 and approved == 200
    assert given_up["state"] == "rejected" and given_up["reason"] == "debit_receipt_overdue"
    # Its one debit given up, the package's overdue alert is closed by the gateway.
    assert by == "gateway" and pid in note and f"request {req['id']}" in note

    rig.receipt(package_id, beps128.PAID)
    after = rig.payment(pid)
    history = rig.run(lambda tx: payments.history(tx, pid))
    balance, books, item, alerts = rig.run(lambda tx: (
        rig.gw.ledger.account(tx, rig.rig.payer_account, rig.gw.work_date).balance_fen,
        rig.gw.ledger.trial_balance(tx).balanced,
        rig.gw.ledger.suspense_item(tx, after["pending_no"]), open_alerts(tx)))
    gave = next(e for e in history if e["event"] == "beps_debit_given_up")["detail"]
    states = [e["state"] for e in history]

    assert after["state"] == "rejected" and after["pending_no"]
    assert item.amount_fen == AMOUNT_FEN and item.state == "open"
    assert item.reason == debits_out.PAID_AFTER_END
    assert balance == before and books
    assert gave["requested_by"] == "op1" and gave["approved_by"] == "sup1"
    assert gave["note"] == "付款行查复：该笔未付款"
    assert history[-1]["event"] == "beps_debit_paid_after_end"
    assert states[states.index("rejected"):] == ["rejected"] * (len(states)
                                                               - states.index("rejected"))
    assert alerts["codes"].get("debit_paid_after_end") == 1


def test_a_debit_answered_before_the_approval_is_not_given_up(rig: Rig) -> None:
    """The receipt comes while the request waits for its second person: the approval
    runs the check again and fails, the debit netted and our customer credited."""
    pid, package_id = rig.debit_sent()
    rig.pass_deadline()
    _, req = rig.give_up("op1", pid, "付款行未回执")
    rig.receipt(package_id, beps128.PAID)
    status, _ = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1",
                         {"note": ""})
    state = rig.run(lambda tx: tx.query_one("SELECT state, outcome FROM ops_requests "
                                            "WHERE id = ?", (req["id"],)))

    assert status == 200 and rig.payment(pid)["state"] == "netted"
    assert state[0] == "failed" and "debit_not_waiting_for_receipt" in state[1]


def test_a_refusal_after_the_give_up_is_kept_and_counted(rig: Rig) -> None:
    """The payer bank's refusal (RJ02) arriving after the debit was given up leaves it
    `rejected` for the reason it ended, with no change of state (nothing new for the core
system); but the
    refusal is kept: in the debit's history and its view with the code, among the
    receipt's lines, and counted (and named) in the after-deadline alert."""
    pid, package_id = rig.debit_sent()
    rig.pass_deadline()
    rig.given_up(pid, "付款行查复：余额不足")

    result = rig.receipt(package_id, "PR09", ("RJ02", "余额不足"))
    after = rig.payment(pid)
    history = rig.run(lambda tx: payments.history(tx, pid))
    alert = rig.run(lambda tx: tx.query_one(
        "SELECT detail FROM alerts WHERE code = 'debit_receipt_after_deadline' AND "
        "detail LIKE ?", (f"%{package_id}%",))[0])
    view = rig.loop.run(rig.gw.get_transfer(pid))
    receipt_id = view["beps"]["receipt"]["receipt"]
    package = rig.run(lambda tx: beps_api.package_view(tx, receipt_id))  # GET /v1/packages
    refused = history[-1]

    assert result.outcome["refused"] == 1
    assert after["state"] == "rejected" and after["reason"] == "debit_receipt_overdue"
    assert refused["event"] == "beps_debit_refused_after_end"
    assert refused["state"] == "rejected"
    assert refused["detail"]["reject_code"] == "RJ02"
    assert refused["detail"]["refusal"] == "RJ02: 余额不足"
    assert [e["state"] for e in history].count("rejected") == 2  # given up, then refused
    detail = json.loads(alert)
    assert detail["paid"] == 0 and detail["refused"] == 1
    assert detail["refused_after_end"] == [
        {"payment": pid, "reject_code": "RJ02", "reject_info": "余额不足"}]
    assert view["state"] == "rejected" and view["reason"] == "debit_receipt_overdue"
    assert view["beps"]["receipt"] == {"receipt": receipt_id, "status": "PR09",
                                       "reject_code": "RJ02", "reject_info": "余额不足",
                                       "outcome": "refused_after_end"}
    assert package["answers"] == package_id
    assert [(line["payment_id"], line["reject_code"], line["outcome"])
            for line in package["lines"]] == [(pid, "RJ02", "refused_after_end")]
