"""Incoming credits and our returns of them are screened (docs/operations.md, "Review and
screening at intake"). A credit another bank sends us (an hvps.111, an item of a netted
beps.121) whose payer or payee the list names is not credited: its money is parked in
suspense (待销账) with the screening's reason, `held_for_review` shown, operators alerted,
and the automatic return never takes it; operators decide under dual control, applying
it to an account (the hit passed: credited once) or returning it. A return of an incoming
payment to a listed payer is held for review as an outgoing payment the screening holds,
whoever asked for it. A real gateway (embedded Redis, SQLite) with its console."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import timedelta
from typing import Any

import pytest

from gateway import payments
from gateway.errors import Conflict
from gateway.exceptions import outcomes, suspense
from gateway.messages import ccms990, examples, hvps111
from gateway.messages.ccms900 import REJECTED
from gateway.messages.envelope import Envelope, Header
from gateway.ops import cli_render, views
from gateway.ops.testing import PAYER_BRANCH, PAYER_NAME, serving
from gateway.redisproc import free_port
from ledger.chart import SUSPENSE
from ledger.testing import customer_account
from tests.beps_incoming_support import credit, package
from tests.conftest import GATEWAY_DATABASE, POSTGRESQL
from tests.test_ops_suspense_apply import Rig as ApplyRig

PEER, PEER_BRANCH = examples.PEER_BANK, examples.PEER_BRANCH
LISTED = "示例受限贸易有限公司"     # gateway/ops/screening.toml
LISTED_ACCOUNT = "BLOCKED-DEMO-0001"  # the same list's account
CLEAR_PAYER = "对手客户"
OTHER_LISTED = "另一受限实业有限公司"  # listed by some tests besides LISTED
WHY = "合规部核查：非受限主体，同名不同户"
_numbers = itertools.count(1)


class Rig(ApplyRig):
    """The console's rig, taking credits from the peer bank on the link."""

    def hvps_credit(self, amount_fen: int, payer_name: str = CLEAR_PAYER,
                    payer_account: str = "6222000000000009") -> dict[str, Any]:
        """An hvps.111 from the peer to our payer's account (its holder's name, the
        branch keeping it), received on the link: the payment as the API shows it."""
        n = next(_numbers)
        msg_id = f"{self.gw.work_date:%Y%m%d}9{n:07d}"  # apart from the rig's own
        ct = dataclasses.replace(
            examples.credit_transfer(), msg_id=msg_id, tx_id=msg_id, end_to_end_id=msg_id,
            amount_fen=amount_fen, priority="NORM", instg_direct=PEER,
            instg_branch=PEER_BRANCH, instd_direct=examples.OUR_BANK,
            instd_branch=PAYER_BRANCH, debtor_name=payer_name, debtor_account=payer_account,
            debtor_agent=PEER_BRANCH, creditor_agent=PAYER_BRANCH, creditor_name=PAYER_NAME,
            creditor_account=self.rig.payer_account, remittance=("/H01/货款",))
        header = Header(PEER, "HVPS", examples.OUR_BANK, "HVPS", f"{self.gw.work_date:%Y%m%d}",
                        "101530", hvps111.MESSAGE_TYPE, msg_id, msg_id,
                        direction="D")
        raw = Envelope(header, "c2lnbmF0dXJl", hvps111.build(ct)).encode()
        answer = self.loop.run(self.gw.receive_link(raw))
        assert answer["taken"] is True, answer
        return self.view(f"I{PEER}{msg_id}")

    def beps_credits(self, *payers: str) -> list[dict[str, Any]]:
        """A netted beps.121 of one credit from each payer to our payer's account: the
        payments as the API shows them, in order."""
        n = next(_numbers)
        transfers = [dataclasses.replace(
            credit(i, account=self.rig.payer_account, name=PAYER_NAME,
                   tx_id=f"20261212{n:04d}{i:04d}"), debtor_name=payer, creditor_bank=PAYER_BRANCH)
            for i, payer in enumerate(payers)]
        d = package(f"20261212{n:08d}", transfers)
        handler = self.gw.handler_table()[d.mtype.code]
        self.tx(lambda tx: handler(tx, d, self.gw.clock.now()))
        return [self.view(f"I{PEER}{t.tx_id}") for t in transfers]

    def view(self, pid: str) -> dict[str, Any]:
        return self.loop.run(self.gw.get_transfer(pid))

    def alerts(self, code: str) -> list[dict[str, Any]]:
        return [json.loads(d) for (d,) in self.tx(lambda tx: tx.query(
            "SELECT detail FROM alerts WHERE code = ? ORDER BY id", (code,)))]

    def books(self) -> tuple[int, int, bool]:
        """Our payer's balance, the suspense account's, and whether the books balance."""
        def work(tx: Any) -> tuple[int, int, bool]:
            ledger = self.gw.ledger
            return (ledger.balance(tx, self.rig.payer_account),
                    ledger.balance(tx, ledger.internal_accounts[SUSPENSE]),
                    ledger.trial_balance(tx).balanced)
        return self.tx(work)

    def done(self, action: str, target: str, note: str, **params: Any) -> dict[str, Any]:
        """Asked by an operator and approved by a supervisor: the request as it ended."""
        asked, req = self.call("POST", "/ops/api/requests", "op1",
                               {"action": action, "target": target, "params": params,
                                "note": note})
        assert asked == 201, req
        approved, done = self.approve(req["id"])
        assert approved == 200 and done["state"] == "executed", done
        return done

    def review(self, action: str, target: str) -> dict[str, Any]:
        """A supervisor passes or fails a payment the review holds."""
        status, done = self.call("POST", "/ops/api/requests", "sup1",
                                 {"action": action, "target": target, "params": {},
                                  "note": ""})
        assert status == 201 and done["state"] == "executed", done
        return done

    def alert_of(self, payment_id: str) -> tuple[dict[str, Any], str | None, str | None]:
        """The incoming_credit_held_for_review alert naming the payment: its detail, and
        who closed it and how (None, None while open)."""
        rows = self.tx(lambda tx: tx.query(
            "SELECT a.detail, k.by, k.note FROM alerts a LEFT JOIN alert_acks k "
            "ON k.alert_id = a.id WHERE a.code = ? ORDER BY a.id",
            ("incoming_credit_held_for_review",)))
        found = [(json.loads(d), by, note) for d, by, note in rows
                 if payment_id in (json.loads(d).get("payment"),
                                   *json.loads(d).get("payments", ()))]
        assert len(found) == 1, found
        return found[0]

    def settle(self, return_id: str) -> None:
        """The return on the wire and settled by the NPC (its ccms.900 PR04)."""
        def work(tx: Any) -> None:
            sent = payments.transition(tx, payments.get(tx, return_id), "sent", "hvps_sent",
                                       self.gw.clock.now())
            outcomes.apply(self.gw, tx, sent, "PR04", self.gw.work_date.isoformat(),
                           self.gw.clock.now(), "hvps")
        self.tx(work)

    def reject(self, return_id: str, why: str) -> None:
        """The return on the wire and refused by the NPC (its ccms.900 PR09)."""
        def work(tx: Any) -> None:
            sent = payments.transition(tx, payments.get(tx, return_id), "sent", "hvps_sent",
                                       self.gw.clock.now())
            outcomes.apply(self.gw, tx, sent, REJECTED, self.gw.work_date.isoformat(),
                           self.gw.clock.now(), "hvps", reason=why)
        self.tx(work)

    def exceptions(self) -> Any:
        """The gateway's exceptions extension, as the core system's API calls it."""
        return next(e for e in self.gw.extensions if hasattr(e, "request_return"))

    def acks(self) -> int:
        """The ccms.990 acknowledgements we sent (archived as they are put out)."""
        return self.tx(lambda tx: tx.query_one(
            "SELECT COUNT(*) FROM archive WHERE direction = 'out' AND mesg_type = ?",
            (ccms990.MESSAGE_TYPE,)))[0]

    def outbox_state(self, pid: str) -> str:
        """The state of the payment's hvps.111 in the outbox (not its webhook rows)."""
        return self.tx(lambda tx: tx.query_one(
            "SELECT state FROM outbox WHERE payment_id = ? AND kind = 'hvps_credit'",
            (pid,)))[0]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # The peer's messages unsigned (CONTRACT.md §1: a sender configured as unverified);
    # a webhook on a closed loopback port, so that what the core system is told is written.
    settings = {"webhook_url": f"http://127.0.0.1:{free_port()}/hook",
                "unverified_senders": [PEER]}
    with serving(tmp_path_factory.mktemp("incoming-screening"), settings) as (loop, ops):
        yield Rig(loop, ops)


@pytest.fixture
def list_payer(rig: Rig, tmp_path: Any) -> Any:
    """Puts in force a list naming CLEAR_PAYER, as a list grows after a credit came in;
    the rig's list again after the test."""
    path = tmp_path / "screening.toml"
    path.write_text(f'names = ["{CLEAR_PAYER}"]\naccounts = []\n', encoding="utf-8")
    was = rig.gw.settings.screening_file

    def put() -> None:
        rig.gw.settings.screening_file = str(path)
    yield put
    rig.gw.settings.screening_file = was


def test_an_hvps_credit_from_a_listed_payer_is_parked_in_suspense_not_credited(
        rig: Rig) -> None:
    """The payee's account is ours, open and named right, yet nothing reaches it: the
    money is in suspense with the screening's reason, the API says it is held for
    review, the operators are alerted, and the NPC's ccms.990 went as for any credit."""
    before = rig.books()
    alerts = len(rig.alerts("incoming_credit_held_for_review"))
    acks = rig.acks()
    payment = rig.hvps_credit(1_001, payer_name=LISTED)
    after = rig.books()
    item = rig.tx(lambda tx: rig.gw.ledger.suspense_item(tx, payment["pending_write_off_no"]))
    raised = rig.alerts("incoming_credit_held_for_review")

    assert payment["state"] == "suspense"
    assert payment["reason"] == "screening_match_payer_name"
    assert payment["held_for_review"] is True
    assert payment["history"][-1]["event"] == "hvps_to_suspense"
    assert payment["history"][-1]["detail"]["reason"] == "screening_match_payer_name"
    assert (item.state, item.reason, item.amount_fen) == (
        "open", "screening_match_payer_name", 1_001)
    assert after == (before[0], before[1] + 1_001, True)
    assert len(raised) == alerts + 1
    assert raised[-1]["payment"] == payment["id"]
    assert raised[-1]["reason"] == "screening_match_payer_name"
    assert rig.acks() == acks + 1


@pytest.mark.parametrize("payer_name", [
    LISTED + "\ufe0f",                        # a variation selector
    "示例受限\U000e0100贸易有限公司",
    "示\u0301例受限贸易有限公司",             # a combining mark
    "示例\u3164受限贸易有限公司",             # Hangul fillers
    "示例\uffa0受限\u115f贸易有限公司",
    "Blo\u0307cked Demo Trading Co",
])
def test_a_listed_payer_written_with_invisible_characters_is_parked(
        rig: Rig, payer_name: str) -> None:
    """Another bank's message cannot be refused for what its names hold: screening
    compares them without marks, variation selectors and fillers."""
    payment = rig.hvps_credit(1_003, payer_name=payer_name)

    assert (payment["state"], payment["reason"], payment["held_for_review"]) == (
        "suspense", "screening_match_payer_name", True)


def test_a_beps_credit_from_a_listed_payer_with_a_variation_selector_is_parked(
        rig: Rig) -> None:
    listed, clear = rig.beps_credits("示例受限贸易\ufe0f有限公司", CLEAR_PAYER)

    assert (listed["state"], listed["reason"]) == ("suspense", "screening_match_payer_name")
    assert clear["state"] == "credited"


def test_a_clear_hvps_credit_is_still_credited_to_its_payee(rig: Rig) -> None:
    before = rig.books()
    payment = rig.hvps_credit(1_002)

    assert payment["state"] == "credited" and payment["held_for_review"] is False
    assert rig.books() == (before[0] + 1_002, before[1], True)


def test_a_beps_credit_whose_payer_is_listed_is_parked_its_neighbour_credited(
        rig: Rig) -> None:
    """In one netted beps.121, the listed payer's credit goes to suspense with the
    screening's reason, the other is credited; one alert names the package's held one."""
    before = rig.books()
    listed, clear = rig.beps_credits(LISTED, CLEAR_PAYER)
    raised = rig.alerts("incoming_credit_held_for_review")[-1]

    assert (listed["state"], listed["reason"], listed["held_for_review"]) == (
        "suspense", "screening_match_payer_name", True)
    assert listed["history"][-1]["event"] == "beps_to_suspense"
    assert (clear["state"], clear["held_for_review"]) == ("credited", False)
    assert rig.books() == (before[0] + clear["amount_fen"],
                           before[1] + listed["amount_fen"], True)
    assert raised["payment"] == listed["id"] and raised["credits"] == 1
    assert raised["package"].startswith(PEER)


def test_a_beps_credit_to_a_listed_payee_account_is_parked(rig: Rig) -> None:
    """The payee's account the list names (no account of ours either): the screening's
    reason is kept, not the ledger's account_not_found."""
    n = next(_numbers)
    t = dataclasses.replace(credit(0, account=LISTED_ACCOUNT, name=PAYER_NAME,
                                   tx_id=f"20261212{n:08d}"), creditor_bank=PAYER_BRANCH)
    d = package(f"20261212{n:08d}", [t])
    handler = rig.gw.handler_table()[d.mtype.code]
    rig.tx(lambda tx: handler(tx, d, rig.gw.clock.now()))
    payment = rig.view(f"I{PEER}{t.tx_id}")

    assert (payment["state"], payment["reason"], payment["held_for_review"]) == (
        "suspense", "screening_match_payee_account", True)


def test_the_automatic_return_never_takes_a_parked_credit(rig: Rig) -> None:
    """Long past the working days after which an unclaimed item goes back, the sweep
    returns the item that could not be credited and leaves the screened one alone."""
    screened = rig.hvps_credit(1_003, payer_name=LISTED)
    unclaimed = rig.loop.run(rig.rig.receive(next(rig.keys), 1_004, "", "查无此人"))

    def sweep(tx: Any) -> list[Any]:
        later = rig.gw.work_date + timedelta(days=14)
        was = rig.gw.work_date
        rig.gw.work_date = later
        try:
            return suspense.sweep_tx(rig.gw, tx, rig.gw.clock.now(), 3)
        finally:
            rig.gw.work_date = was
    rig.tx(sweep)
    returned = {pid for (pid,) in rig.tx(lambda tx: tx.query(
        "SELECT original_id FROM exc_returns", ()))}

    assert unclaimed in returned
    assert screened["id"] not in returned
    assert rig.view(screened["id"])["state"] == "suspense"


def test_the_automatic_return_waits_while_operators_decide_the_item(rig: Rig) -> None:
    """An unclaimed item whose application waits for its second person is not returned
    by the timer under the operators; once they reject their request, the next sweep
    returns it."""
    unclaimed = rig.loop.run(rig.rig.receive(next(rig.keys), 1_015, "", "查无此人"))
    status, asked = rig.call("POST", "/ops/api/requests", "op1",
                             {"action": "suspense_apply", "target": unclaimed,
                              "params": {"account": rig.rig.payer_account}, "note": WHY})

    def sweep(tx: Any) -> list[Any]:
        was = rig.gw.work_date
        rig.gw.work_date = was + timedelta(days=14)
        try:
            return suspense.sweep_tx(rig.gw, tx, rig.gw.clock.now(), 3)
        finally:
            rig.gw.work_date = was

    def returned() -> set[str]:
        return {pid for (pid,) in rig.tx(lambda tx: tx.query(
            "SELECT original_id FROM exc_returns", ()))}
    rig.tx(sweep)
    while_pending = returned()
    rig.call("POST", f"/ops/api/requests/{asked['id']}/reject", "sup1", {"note": "不符"})
    rig.tx(sweep)

    assert status == 201 and asked["state"] == "pending", asked
    assert unclaimed not in while_pending
    assert unclaimed in returned()


def test_operators_apply_a_parked_credit_the_hit_passed_credited_once(rig: Rig) -> None:
    """Applied to our payer's account under dual control: Dr suspense, Cr the account,
    credited once; the history keeps the passed hit, and nothing is held any more."""
    payment = rig.hvps_credit(1_005, payer_name=LISTED)
    before = rig.books()
    done = rig.done("suspense_apply", payment["id"], WHY, account=rig.rig.payer_account)
    after = rig.view(payment["id"])
    again_status, again = rig.call("POST", "/ops/api/requests", "op1",
                                   {"action": "suspense_apply", "target": payment["id"],
                                    "params": {"account": rig.rig.payer_account},
                                    "note": WHY})

    assert done["outcome"]["state"] == "credited"
    assert (after["state"], after["held_for_review"]) == ("credited", False)
    last = after["history"][-1]
    assert (last["event"], last["detail"]["passed"], last["detail"]["by"],
            last["detail"]["approved_by"]) == (
        "suspense_applied", "screening_match_payer_name", "op1", "sup1")
    assert rig.books() == (before[0] + 1_005, before[1] - 1_005, True)
    assert again_status == 409, again


def test_the_core_system_may_not_return_a_parked_credit(rig: Rig) -> None:
    """Only operators decide a screened item: the core system's return is refused."""
    payment = rig.hvps_credit(1_006, payer_name=LISTED)
    ext = next(e for e in rig.gw.extensions if hasattr(e, "request_return"))
    with pytest.raises(Conflict) as refused:
        rig.loop.run(ext.request_return(payment["id"], "退回", "core:test"))

    assert refused.value.code == "payment_held_for_review"
    assert rig.view(payment["id"])["state"] == "suspense"


def test_operators_return_a_parked_credit_held_for_review_before_it_goes(rig: Rig) -> None:
    """The operators' return (dual control) of a listed payer's credit: the return is
    held for review as an outgoing payment the screening holds (outbox `review`, never
    on a lane); failed in review, it ends unsettled and the money stays parked in
    suspense (its screening reason kept: still held for review, listed, refused to the
    core system); asked again and passed, it goes on its lane."""
    payment = rig.hvps_credit(1_007, payer_name=LISTED)
    first = rig.done("return", payment["id"], "合规部决定退回")["outcome"]["return_id"]
    held = rig.view(first)
    outbox = rig.outbox_state(first)
    listed = [p["id"] for p in rig.tx(views.held_for_review)]
    rig.review("review_reject", first)
    failed = rig.view(first)
    original = rig.view(payment["id"])
    still_listed = [p["id"] for p in rig.tx(views.held_for_review)]
    with pytest.raises(Conflict) as core_refused:
        rig.loop.run(rig.exceptions().request_return(payment["id"], "退回", "core:test"))
    second = rig.done("return", payment["id"], "合规部决定退回")["outcome"]["return_id"]
    rig.review("review_approve", second)
    passed = rig.view(second)

    assert (held["state"], held["reason"], held["held_for_review"]) == (
        "held", "screening_match_payee_name", True)
    assert outbox == "review" and first in listed
    asked = [e for e in original["history"] if e["event"] == "return_requested"]
    assert asked[0]["detail"]["held_for"] == "screening_match_payee_name"
    assert failed["state"] == "cancelled"
    assert (original["state"], original["reason"], original["held_for_review"]) == (
        "suspense", "screening_match_payer_name", True)
    assert payment["id"] in still_listed
    assert core_refused.value.code == "payment_held_for_review"
    ended = [e["detail"] for e in original["history"] if e["event"] == "return_failed"]
    assert [(d["return_id"], d["reason_failed"]) for d in ended] == [
        (first, "review_rejected")]
    # HVPS not open yet (the rig's day starts before it opens): it waits for the window.
    assert (passed["state"], passed["reason"], passed["held_for_review"]) == (
        "held", "waiting_for_hvps_window", False)
    assert rig.outbox_state(second) == "waiting"
    assert rig.books()[2]


def test_a_core_return_of_a_credited_payment_to_a_listed_payer_is_held(
        rig: Rig, list_payer: Any) -> None:
    """Credited when it came, its payer listed since: the core system's return is held
    for review (the API's answer says so), the customer's money held, nothing sent."""
    payment = rig.hvps_credit(1_008)
    list_payer()
    ext = next(e for e in rig.gw.extensions if hasattr(e, "request_return"))
    answer = rig.loop.run(ext.request_return(payment["id"], "客户要求退回", "core:test"))
    ret = answer["return"]

    assert payment["state"] == "credited"
    assert (ret["state"], ret["reason"], ret["held_for_review"]) == (
        "held", "screening_match_payee_name", True)
    assert rig.outbox_state(ret["id"]) == "review"
    assert rig.tx(lambda tx: payments.get(tx, ret["id"]))["hold_id"]
    assert rig.books()[2]


def test_a_parked_credit_is_in_the_held_for_review_list_with_apply_and_return(
        rig: Rig) -> None:
    """The console's list of payments held for review (the page's, GET /ops/api/review,
    `paygate ops review`) shows the credits the screening parked, HVPS and BEPS alike,
    each offering what decides it: an application to the payee or a return, each for a
    second person to approve; never the review's pass or fail, which do not apply."""
    hvps = rig.hvps_credit(1_009, payer_name=LISTED)
    beps, _ = rig.beps_credits(LISTED, CLEAR_PAYER)
    status, review = rig.call("GET", "/ops/api/review", "op1")
    snap_status, snapshot = rig.call("GET", "/ops/api/snapshot", "op1")
    listed = {p["id"]: p for p in review["payments"]}
    shown = {p["id"]: p for p in snapshot["review"]}
    printed = cli_render.review(review)

    assert status == 200 and snap_status == 200
    for payment in (hvps, beps):
        row = listed[payment["id"]]
        assert (row["state"], row["held_for_review"]) == ("suspense", True)
        assert row["actions"] == ["return", "suspense_apply"]
        assert shown[payment["id"]]["actions"] == ["return", "suspense_apply"]
    line = next(ln for ln in printed.splitlines() if ln.startswith(hvps["id"]))
    assert line.endswith("return, suspense-apply")
    assert "review-approve" not in line


def test_a_parked_credit_offers_neither_a_keep_nor_a_release(rig: Rig) -> None:
    """The automatic return never takes a credit the screening parked: its detail view
    (`paygate ops payment`) offers neither keeping it from that return nor giving it
    back, and a request of either is refused saying why."""
    parked = rig.hvps_credit(1_030, payer_name=LISTED)
    _, detail = rig.call("GET", f"/ops/api/payments/{parked['id']}", "op1")
    refused = {action: rig.call("POST", "/ops/api/requests", "op1",
                                {"action": action, "target": parked["id"], "params": {},
                                 "note": "看一下"})
               for action in ("suspense_keep", "suspense_release")}

    assert "suspense_keep" not in detail["actions"]
    assert "suspense_release" not in detail["actions"]
    assert {"return", "suspense_apply"} <= set(detail["actions"])
    for action, (status, body) in refused.items():
        assert status == 409, body
        assert [e["code"] for e in body["errors"]] == ["suspense_item_parked_by_screening"]
        assert action in body["errors"][0]["message"]


def test_the_held_for_review_list_gives_the_total_and_says_when_it_is_cut(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """More parked credits than the list holds (a screening run parked 1,203 where it
    lists 200): the oldest are listed, and GET /ops/api/review, `paygate ops review` and
    the page's snapshot say how many there are in all and that the list is cut."""
    for n in range(3):
        rig.hvps_credit(1_020 + n, payer_name=LISTED)
    monkeypatch.setattr(views, "LIST_MAX", 2)
    _, review = rig.call("GET", "/ops/api/review", "op1")
    snapshot = rig.loop.run(rig.rig.ops.snapshots.build())  # built now, not the cached one
    total = rig.tx(views.held_for_review_total)

    assert total >= 3 and review["total"] == snapshot["review_total"] == total
    assert review["shown"] == len(review["payments"]) == 2
    assert review["truncated"] is True
    assert cli_render.review(review).startswith(
        f"held for review: the oldest 2 of {total:,} shown\n")


def test_the_held_for_review_list_names_the_party_the_screening_matched(rig: Rig) -> None:
    """A name match shows the matched name in the list itself (GET /ops/api/review and
    `paygate ops review`): the payer's name for screening_match_payer_name, read from
    the payment's row, so that an operator need not open the payment to see it."""
    hvps = rig.hvps_credit(1_015, payer_name=LISTED)
    _, review = rig.call("GET", "/ops/api/review", "op1")
    row = next(p for p in review["payments"] if p["id"] == hvps["id"])
    line = next(ln for ln in cli_render.review(review).splitlines()
                if ln.startswith(hvps["id"]))

    assert (row["matched_party"], row["matched_name"]) == ("payer", LISTED)
    assert f"payer: {LISTED}" in line


# (reason, the party and name the list shows): the party the reason names, none for the
# amount review.
MATCHED = [
    ("screening_match_payer_name", "payer", "付款人甲"),
    ("screening_match_payer_account", "payer", "付款人甲"),
    ("screening_match_payee_name", "payee", "收款人乙"),
    ("screening_match_payee_account", "payee", "收款人乙"),
    ("review_amount_over_threshold", None, None),
    (None, None, None),
]


@pytest.mark.parametrize("reason, party, name", MATCHED)
def test_the_matched_party_is_the_one_the_reason_names(reason: str | None, party: str | None,
                                                       name: str | None) -> None:
    view = {"reason": reason, "payer_name": "付款人甲", "payee_name": "收款人乙"}

    shown = views.with_matched_party(view)

    assert (shown["matched_party"], shown["matched_name"]) == (party, name)
    assert cli_render.matched_party(shown) == (f"{party}: {name}" if party else "")


def test_a_decided_parked_credit_leaves_the_list(rig: Rig) -> None:
    """Applied, it is credited and no longer held for review."""
    payment = rig.hvps_credit(1_010, payer_name=LISTED)
    rig.done("suspense_apply", payment["id"], WHY, account=rig.rig.payer_account)

    assert payment["id"] not in [p["id"] for p in rig.tx(views.held_for_review)]


def test_the_alert_of_an_hvps_credit_is_closed_once_it_is_applied(rig: Rig) -> None:
    """The gateway closes the alert when operators have decided its one credit, saying
    how; open until then."""
    payment = rig.hvps_credit(1_011, payer_name=LISTED)
    _, by_before, _ = rig.alert_of(payment["id"])
    rig.done("suspense_apply", payment["id"], WHY, account=rig.rig.payer_account)
    _, by, note = rig.alert_of(payment["id"])

    assert by_before is None
    assert by == "gateway"
    assert payment["id"] in note and "applied" in note


def test_a_packages_alert_is_closed_once_every_credit_it_told_of_is_decided(
        rig: Rig) -> None:
    """Two listed payers' credits in one package, one alert: applying the first leaves
    it open; a return of the second failed in review leaves it open (its money still
    parked); returned again, passed and settled by the NPC, the last credit is decided
    and the gateway closes the alert."""
    first, second = rig.beps_credits(LISTED, LISTED)
    detail, _, _ = rig.alert_of(first["id"])
    rig.done("suspense_apply", first["id"], WHY, account=rig.rig.payer_account)
    after_apply = rig.alert_of(first["id"])[1]
    failed = rig.done("return", second["id"], "合规部决定退回")["outcome"]["return_id"]
    rig.review("review_reject", failed)
    after_failed = rig.alert_of(first["id"])[1]
    still_parked = rig.view(second["id"])
    ret = rig.done("return", second["id"], "合规部决定退回")["outcome"]["return_id"]
    rig.review("review_approve", ret)
    before_settled = rig.alert_of(first["id"])[1]
    rig.settle(ret)
    _, by, note = rig.alert_of(first["id"])

    assert (detail["credits"], sorted(detail["payments"])) == (
        2, sorted([first["id"], second["id"]]))
    assert after_apply is None and after_failed is None and before_settled is None
    assert (still_parked["state"], still_parked["reason"], still_parked["held_for_review"]) \
        == ("suspense", "screening_match_payer_name", True)
    assert rig.view(second["id"])["state"] == "returned"
    assert by == "gateway" and ret in note
    assert rig.books()[2]


def test_a_return_the_npc_refused_leaves_the_credit_parked_and_its_alert_open(
        rig: Rig) -> None:
    """The operators' return of a parked credit, passed in review and refused by the NPC:
    the credit keeps the screening's reason (still held for review, listed, refused to
    the core system), the NPC's reason only in its history; returned again and settled,
    the gateway closes the alert."""
    payment = rig.hvps_credit(1_012, payer_name=LISTED)
    first = rig.done("return", payment["id"], "合规部决定退回")["outcome"]["return_id"]
    rig.review("review_approve", first)
    rig.reject(first, "RJ99 收款行拒绝")
    original = rig.view(payment["id"])
    listed = [p["id"] for p in rig.tx(views.held_for_review)]
    with pytest.raises(Conflict) as core_refused:
        rig.loop.run(rig.exceptions().request_return(payment["id"], "退回", "core:test"))
    alert_after_failed = rig.alert_of(payment["id"])[1]
    second = rig.done("return", payment["id"], "合规部决定退回")["outcome"]["return_id"]
    rig.review("review_approve", second)
    rig.settle(second)
    _, by, note = rig.alert_of(payment["id"])

    assert (original["state"], original["reason"], original["held_for_review"]) == (
        "suspense", "screening_match_payer_name", True)
    assert original["history"][-1]["event"] == "return_failed"
    assert original["history"][-1]["detail"]["reason_failed"] == "RJ99 收款行拒绝"
    assert payment["id"] in listed
    assert core_refused.value.code == "payment_held_for_review"
    assert alert_after_failed is None
    assert rig.view(payment["id"])["state"] == "returned"
    assert by == "gateway" and second in note
    assert rig.books()[2]


def test_the_core_system_may_not_cancel_the_operators_return(rig: Rig) -> None:
    """The operators' return of a parked credit, held for review, is theirs: the core
    system's cancel of it is refused naming who asked and who approved, and changes
    nothing (the return still held, the credit still parked, the core system's own
    return still refused). The original's `return_requested` records both people."""
    payment = rig.hvps_credit(1_013, payer_name=LISTED)
    first = rig.done("return", payment["id"], "合规部决定退回")["outcome"]["return_id"]
    with pytest.raises(Conflict) as cancel:
        rig.loop.run(rig.exceptions().request_cancel(first, "核心撤销", "core:test"))
    after = rig.view(payment["id"])
    with pytest.raises(Conflict) as refused:
        rig.loop.run(rig.exceptions().request_return(payment["id"], "退回", "core:test"))

    problem = cancel.value.problems[0]
    assert (problem.code, problem.value) == ("return_not_requested_by_core_system", first)
    assert payment["id"] in problem.message and "only operators" in problem.message
    assert "as op1 asked and sup1 approved" in problem.message
    asked = next(h["detail"] for h in after["history"] if h["event"] == "return_requested")
    assert (asked["by"], asked["approved_by"]) == ("op1", "sup1")
    # The return pays the credit's payer: the screening's match is its payee.
    assert (rig.view(first)["state"], rig.view(first)["reason"]) == (
        "held", "screening_match_payee_name")
    assert (after["state"], after["reason"], after["held_for_review"]) == (
        "suspense", "screening_match_payer_name", True)
    assert refused.value.code == "return_already_requested"  # the operators' is open


def test_a_suspense_credit_whose_return_failed_in_review_is_not_held_for_review(
        rig: Rig, list_payer: Any) -> None:
    """A credit in suspense for the ledger's reason (no such account), its payer listed
    since: its return is held by the screening and failed in review. The credit keeps
    the ledger's reason, is not held for review (the review's reason was the return's),
    nor listed, and the core system may return it again (held for review once more)."""
    pid = rig.loop.run(rig.rig.receive(next(rig.keys), 1_014, "", "查无此人"))
    before = rig.view(pid)
    list_payer()
    first = rig.done("return", pid, "无此账户退回")["outcome"]["return_id"]
    rig.review("review_reject", first)
    after = rig.view(pid)
    listed = [p["id"] for p in rig.tx(views.held_for_review)]
    again = rig.loop.run(rig.exceptions().request_return(pid, "退回", "core:test"))["return"]

    assert (after["state"], after["reason"]) == ("suspense", before["reason"])
    assert after["held_for_review"] is False and pid not in listed
    assert (again["state"], again["reason"]) == ("held", "screening_match_payee_name")


def test_the_python_and_sql_tests_of_a_parked_credit_agree() -> None:
    """states.parked_by_screening and its SQL (states.parked_sql) say the same of every
    row: only an incoming credit in suspense with the screening's reason, the prefix
    matched literally (no LIKE wildcard), a NULL reason being not parked."""
    from gateway import states
    from ledger.db import connect

    rows = [("in", "suspense", "screening_match_payer_name"), ("in", "suspense", None),
            ("in", "suspense", "review_rejected"), ("in", "suspense", "screeningXmatch"),
            ("in", "suspense", "account_not_found"), ("out", "held", "screening_match_x"),
            ("in", "received", "screening_match_x"), ("in", "credited", "screening_x")]
    db = connect("sqlite:///:memory:")
    with db.transaction() as tx:
        tx.execute("CREATE TABLE payments (direction TEXT, state TEXT, reason TEXT)", ())
        tx.executemany("INSERT INTO payments VALUES (?, ?, ?)", rows)
        in_sql = set(tx.query(f"SELECT direction, state, reason FROM payments "
                              f"WHERE {states.parked_sql()}", ()))
        not_in_sql = set(tx.query(f"SELECT direction, state, reason FROM payments p "
                                  f"WHERE NOT {states.parked_sql('p')}", ()))
    db.close()
    in_python = {r for r in rows if states.parked_by_screening(
        dict(zip(("direction", "state", "reason"), r)))}

    assert in_sql == in_python == {("in", "suspense", "screening_match_payer_name")}
    assert not_in_sql == set(rows) - in_python
    assert not states.held_for_review({"direction": "in", "state": "suspense",
                                       "reason": "review_rejected"})


def test_a_parked_credit_is_not_applied_to_an_account_whose_holder_is_listed(
        rig: Rig, list_of: Any) -> None:
    """Applied to another account than its payee's, a parked credit's target is screened:
    an account of ours whose holder the list names under another name than the one the
    credit was parked for is refused (asked, and at approval), naming the match; the
    credit stays parked."""
    payment = rig.hvps_credit(1_015, payer_name=LISTED)
    list_of([LISTED, OTHER_LISTED], [])
    account = customer_account(900 + next(_numbers), "corporate")
    rig.tx(lambda tx: rig.gw.ledger.open_customer_account(
        tx, account, OTHER_LISTED, "corporate", rig.gw.work_date))
    status, refused = rig.call("POST", "/ops/api/requests", "op1",
                               {"action": "suspense_apply", "target": payment["id"],
                                "params": {"account": account}, "note": WHY})

    assert status == 409, refused
    problem = refused["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "account_screened", "/params/account", account)
    assert "screening_match_payee_name" in problem["message"]
    assert rig.view(payment["id"])["held_for_review"] is True


@pytest.mark.skipif(GATEWAY_DATABASE != POSTGRESQL, reason="SQLite runs one writer at a "
                    "time: the race needs PostgreSQL's concurrent transactions")
def test_the_last_two_credits_of_a_package_decided_at_once_close_its_alert(
        rig: Rig) -> None:
    """Two processes decide the two parked credits of one package at once, each before
    the other commits: the second to read waits for the first (the alert locked), then
    reads both decided and closes the alert."""
    import threading

    from gateway import screening
    from ledger.db import connect

    first, second = rig.beps_credits(LISTED, LISTED)
    moved, both_moved, first_read, second_done = (threading.Event() for _ in range(4))
    closed: dict[str, list[int]] = {}
    now = rig.gw.clock.now()

    def decide(pid: str, name: str) -> None:
        db = connect(rig.gw.settings.db_url)
        try:
            with db.transaction() as tx:
                was = payments.get(tx, pid, lock=True)
                payments.transition(tx, was, "credited", "test_decided", now)
                if name == "first":
                    moved.set()
                    both_moved.wait(10)
                    closed[name] = screening.close_decided(tx, was, name, now)
                    first_read.set()
                    second_done.wait(1)  # does not come while the alert is locked
                else:
                    both_moved.set()
                    first_read.wait(10)
                    closed[name] = screening.close_decided(tx, was, name, now)
        finally:
            db.close()
            if name == "second":
                second_done.set()

    one = threading.Thread(target=decide, args=(first["id"], "first"))
    two = threading.Thread(target=lambda: moved.wait(10) and decide(second["id"], "second"))
    one.start(), two.start()
    one.join(20), two.join(20)
    _, by, note = rig.alert_of(first["id"])

    assert (closed["first"], by, note) == ([], "gateway",
                                           "every credit it told of is decided (second)")


@pytest.fixture
def list_of(rig: Rig, tmp_path: Any) -> Any:
    """Puts in force a list naming these holders' names and account numbers, as a list
    grows while a request waits for approval; the rig's list again after the test."""
    was = rig.gw.settings.screening_file

    def put(names: list[str], accounts: list[str]) -> None:
        path = tmp_path / "screening.toml"
        path.write_text(f"names = {json.dumps(names, ensure_ascii=False)}\n"
                        f"accounts = {json.dumps(accounts)}\n", encoding="utf-8")
        rig.gw.settings.screening_file = str(path)
    yield put
    rig.gw.settings.screening_file = was


def test_an_ordinary_suspense_item_is_not_applied_to_a_listed_holder(rig: Rig) -> None:
    """A credit in suspense for the ledger's reason (no such account), never parked by
    the screening, is applied to an account whose holder the list names: the screening
    never read that holder, and the request is refused when asked (account_screened,
    naming the match), nothing recorded, the item still open."""
    pid = rig.loop.run(rig.rig.receive(next(rig.keys), 1_016, "", "查无此人"))
    account = rig.account(LISTED)
    status, refused = rig.call("POST", "/ops/api/requests", "op1",
                               {"action": "suspense_apply", "target": pid,
                                "params": {"account": account}, "note": WHY})
    after = rig.view(pid)
    pending_no = rig.tx(lambda tx: payments.get(tx, pid))["pending_no"]

    assert status == 409, refused
    problem = refused["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "account_screened", "/params/account", account)
    assert "screening_match_payee_name" in problem["message"]
    assert "parked by the screening" not in problem["message"]
    assert rig.requests_on(pid) == []
    assert (after["state"], after["held_for_review"]) == ("suspense", False)
    assert rig.item_state(pending_no) == "open"


@pytest.mark.parametrize("listed", ["name", "account"])
def test_an_ordinary_suspense_item_is_not_applied_once_the_list_names_its_holder(
        rig: Rig, list_of: Any, listed: str) -> None:
    """Asked while the account and its holder are clear, approved after the list named
    the holder's name or the account's number: checked again when it runs, the
    application fails (account_screened), nothing posted, the item still open."""
    pid = rig.loop.run(rig.rig.receive(next(rig.keys), 1_017, "", "查无此人"))
    holder = f"示例后列客户{next(_numbers)}"
    account = rig.account(holder)
    asked, req = rig.ask(pid, account, WHY)
    list_of([holder] if listed == "name" else [], [account] if listed == "account" else [])
    approved, done = rig.approve(req["id"])
    after = rig.tx(lambda tx: payments.get(tx, pid))

    assert asked == 201, req
    assert approved == 200 and done["state"] == "failed", done
    problem = done["outcome"]["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "account_screened", "/params/account", account)
    assert f"screening_match_payee_{listed}" in problem["message"]
    assert rig.balance(account) == 0
    assert after["state"] == "suspense" and rig.item_state(after["pending_no"]) == "open"


def test_a_parked_credit_is_not_applied_to_its_own_payees_account_once_its_holder_is_listed(
        rig: Rig, list_of: Any) -> None:
    """A credit parked for its payer, applied to the very account its message named: the
    approval passes the payer's hit, never the holder the books keep for that account,
    which the list names since. The request is refused when asked (account_screened,
    naming the match and the parking), nothing recorded, the credit still parked."""
    payment = rig.hvps_credit(1_018, payer_name=LISTED)
    list_of([LISTED, PAYER_NAME], [])
    status, refused = rig.ask(payment["id"], rig.rig.payer_account, WHY)
    after = rig.view(payment["id"])

    assert payment["payee"]["account"] == rig.rig.payer_account
    assert status == 409, refused
    problem = refused["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "account_screened", "/params/account", rig.rig.payer_account)
    assert "screening_match_payee_name" in problem["message"]
    assert "parked by the screening (screening_match_payer_name)" in problem["message"]
    assert rig.requests_on(payment["id"]) == []
    assert (after["state"], after["held_for_review"]) == ("suspense", True)


@pytest.mark.parametrize("listed", ["name", "account"])
def test_a_parked_credit_is_not_applied_to_its_own_payees_account_listed_before_approval(
        rig: Rig, list_of: Any, listed: str) -> None:
    """Asked while its payee's account and holder are clear, approved after the list
    named the holder's name or the account's number: checked again when it runs, the
    application fails (account_screened), nothing posted, the credit still parked."""
    payment = rig.hvps_credit(1_019, payer_name=LISTED)
    before = rig.books()
    asked, req = rig.ask(payment["id"], rig.rig.payer_account, WHY)
    list_of([LISTED, PAYER_NAME] if listed == "name" else [LISTED],
            [rig.rig.payer_account] if listed == "account" else [])
    approved, done = rig.approve(req["id"])
    after = rig.view(payment["id"])

    assert asked == 201, req
    assert approved == 200 and done["state"] == "failed", done
    problem = done["outcome"]["errors"][0]
    assert (problem["code"], problem["value"]) == ("account_screened",
                                                   rig.rig.payer_account)
    assert f"screening_match_payee_{listed}" in problem["message"]
    assert rig.books() == before
    assert (after["state"], after["held_for_review"]) == ("suspense", True)
    assert rig.item_state(after["pending_write_off_no"]) == "open"


@pytest.mark.parametrize("listed", ["name", "account"])
def test_a_credit_parked_for_its_payee_is_applied_to_that_payees_own_account(
        rig: Rig, list_of: Any, listed: str) -> None:
    """Parked because the list names its payee (the name the message gave, which is the
    holder the books keep, or the account's number): operators find the match false and
    apply it to that very account. The hit the approval passes is not raised again
    there: credited once, the passed hit in its history."""
    list_of([PAYER_NAME] if listed == "name" else [],
            [rig.rig.payer_account] if listed == "account" else [])
    payment = rig.hvps_credit(1_020)
    parked = payment["reason"]
    before = rig.books()
    done = rig.done("suspense_apply", payment["id"], WHY, account=rig.rig.payer_account)
    after = rig.view(payment["id"])

    assert (payment["state"], parked) == ("suspense", f"screening_match_payee_{listed}")
    assert done["outcome"]["state"] == "credited", done
    assert after["history"][-1]["detail"]["passed"] == parked
    assert rig.books() == (before[0] + 1_020, before[1] - 1_020, True)


def test_a_credit_parked_for_its_payees_account_is_not_applied_there_if_the_holder_is_listed(
        rig: Rig, list_of: Any) -> None:
    """Parked for its payee's account number, while the holder's name is listed too: the
    approval passes the number's hit only, so the holder's match refuses the application
    to that account."""
    list_of([PAYER_NAME], [rig.rig.payer_account])
    payment = rig.hvps_credit(1_021)
    status, refused = rig.ask(payment["id"], rig.rig.payer_account, WHY)

    assert payment["reason"] == "screening_match_payee_account"
    assert status == 409, refused
    assert refused["errors"][0]["code"] == "account_screened"
    assert "screening_match_payee_name" in refused["errors"][0]["message"]


def test_a_payer_paying_itself_parked_for_its_name_is_applied_to_its_own_account(
        rig: Rig, list_of: Any) -> None:
    """One list entry, one false match: a customer moves its own money from another bank
    to its account with us (the payer's name is the holder's). Parked for the payer's
    name; the approval passes that value, not the field, so the holder's match on the
    same name (read as the payee) and the payer's are the hit passed: credited."""
    list_of([PAYER_NAME], [])
    payment = rig.hvps_credit(1_101, payer_name=PAYER_NAME)
    before = rig.books()
    done = rig.done("suspense_apply", payment["id"], WHY, account=rig.rig.payer_account)

    assert (payment["state"], payment["reason"]) == ("suspense",
                                                     "screening_match_payer_name")
    assert done["outcome"]["state"] == "credited", done
    assert rig.books() == (before[0] + 1_101, before[1] - 1_101, True)


def test_a_parked_credit_passes_its_value_at_any_account_with_that_holder(
        rig: Rig, list_of: Any) -> None:
    """Parked for its payer's name, applied to another account of ours held under that
    same name (the customer's other account): the value passed is the holder's,
    whatever the account, so it is credited."""
    list_of([PAYER_NAME], [])
    payment = rig.hvps_credit(1_102, payer_name=PAYER_NAME)
    account = rig.account(PAYER_NAME)
    done = rig.done("suspense_apply", payment["id"], WHY, account=account)

    assert payment["reason"] == "screening_match_payer_name"
    assert done["outcome"]["state"] == "credited", done
    assert rig.balance(account) == 1_102


def test_an_ordinary_suspense_credit_is_not_applied_once_the_list_names_its_payer(
        rig: Rig, list_payer: Any) -> None:
    """A credit in suspense for the ledger's reason (no such account), its payer named by
    the list since it came: applied to our customer, its payer is screened again, as
    our BEPS debit's is; refused when asked (account_screened at /target, naming the
    payer and the match), nothing recorded, the item open."""
    pid = rig.loop.run(rig.rig.receive(9_001, 6_606, "", "查无此人", payer_name=CLEAR_PAYER))
    list_payer()
    status, refused = rig.ask(pid, rig.rig.payer_account, WHY)
    after = rig.view(pid)

    assert status == 409, refused
    problem = refused["errors"][0]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "account_screened", "/target", CLEAR_PAYER)
    assert "screening_match_payer_name" in problem["message"]
    assert rig.requests_on(pid) == []
    assert rig.item_state(after["pending_write_off_no"]) == "open"
    assert after["state"] == "suspense"


def test_an_ordinary_suspense_credit_is_not_applied_when_its_payer_is_listed_before_approval(
        rig: Rig, list_payer: Any) -> None:
    """Asked while its payer is clear, approved after the list named it: the application
    fails (account_screened), nothing posted."""
    pid = rig.loop.run(rig.rig.receive(9_002, 6_607, "", "查无此人", payer_name=CLEAR_PAYER))
    before = rig.books()
    asked, req = rig.ask(pid, rig.rig.payer_account, WHY)
    list_payer()
    approved, done = rig.approve(req["id"])

    assert asked == 201, req
    assert approved == 200 and done["state"] == "failed", done
    assert done["outcome"]["errors"][0]["code"] == "account_screened"
    assert rig.books() == before
