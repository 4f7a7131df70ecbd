"""An hvps.112 (institution credit transfer, pacs.009) another bank sends us comes, as an
hvps.111 does, after the NPC settled it (CONTRACT.md §4): the money is in our clearing
account already. It is taken, acknowledged with its ccms.990, screened and booked as an
incoming HVPS credit: credited to the payee, or parked in suspense (the ledger's reason
or the screening's), never refused as a type the gateway does not handle
(docs/messages.md, "Incoming hvps.112"). A real gateway (embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from lxml import etree

from gateway import outbound, payments
from gateway.messages import codec, examples, hvps112
from gateway.messages.envelope import Envelope, Header
from gateway.ops.testing import PAYER_BRANCH, PAYER_NAME, serving
from gateway.redisproc import free_port
from tests.test_incoming_screening import LISTED, PEER, PEER_BRANCH, WHY, Rig, list_of

__all__ = ["list_of"]  # the list put in force by a test, over this module's rig

_numbers = itertools.count(1)
PEER_TREASURY = "对手银行股份有限公司资金部"


class FiRig(Rig):
    def hvps112_credit(self, amount_fen: int, payer_name: str = PEER_TREASURY,
                       payee_account: str | None = None, business_type: str = "A200",
                       remittance: tuple[str, ...] = ("/F25/02105", "/H01/同业资金往来"),
                       debtor: hvps112.Institution | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An hvps.112 from the peer's treasury (or `debtor`, with no account) to our
        payer's account (its holder's name, the branch keeping it), received on the
        link: the link's answer and the payment as the API shows it."""
        n = next(_numbers)
        msg_id = f"{self.gw.work_date:%Y%m%d}8{n:07d}"  # apart from other rigs' ids
        t = hvps112.InstitutionTransfer(
            msg_id=msg_id, created_at=f"{self.gw.work_date}T10:15:30", end_to_end_id=msg_id,
            tx_id=msg_id, business_type=business_type, amount_fen=amount_fen,
            priority="HIGH", instg_direct=PEER, instg_branch=PEER_BRANCH,
            instd_direct=examples.OUR_BANK, instd_branch=PAYER_BRANCH,
            debtor=debtor or hvps112.Institution(PEER, payer_name),
            creditor=hvps112.Institution(PAYER_BRANCH, PAYER_NAME),
            debtor_account=None if debtor else "88820000001500000001",
            creditor_account=payee_account or self.rig.payer_account,
            debtor_agent=hvps112.Institution(PEER_BRANCH),
            creditor_agent=hvps112.Institution(PAYER_BRANCH),
            remittance=remittance)
        header = Header(PEER, "HVPS", examples.OUR_BANK, "HVPS", f"{self.gw.work_date:%Y%m%d}",
                        "101530", hvps112.MESSAGE_TYPE, msg_id, msg_id, direction="D")
        raw = Envelope(header, "c2lnbmF0dXJl", hvps112.build(t)).encode()
        answer = self.loop.run(self.gw.receive_link(raw))
        return answer, self.view(f"I{PEER}{msg_id}")

    def settled_institution_transfer(self, amount_fen: int) -> dict[str, Any]:
        """An hvps.112 of ours to the peer's treasury, settled: its payment's row."""
        n = next(_numbers)
        msg_id = f"{self.gw.work_date:%Y%m%d}7{n:07d}"
        now = self.gw.clock.now().isoformat()
        row = {"id": f"O-fi-{n}", "direction": "out", "channel": "hvps", "state": "settled",
               "msg_type": hvps112.MESSAGE_TYPE, "msg_id": msg_id, "tx_id": msg_id,
               "end_to_end_id": msg_id, "sender_direct": examples.OUR_BANK,
               "receiver_direct": PEER, "amount_fen": amount_fen, "currency": "CNY",
               "payer_account": self.rig.payer_account, "payer_name": PAYER_NAME,
               "payer_bank": PAYER_BRANCH, "payee_account": "88820000001500000001",
               "payee_name": PEER_TREASURY, "payee_bank": PEER_BRANCH,
               "business_type": "A200", "business_kind": "02105", "urgency": "urgent",
               "priority": 2, "remittance": [], "route": {},
               "work_date": self.gw.work_date.isoformat(), "created_at": now,
               "updated_at": now}
        self.tx(lambda tx: payments.insert(tx, row))
        return row

    def inbox(self, msg_id: str) -> tuple[str, Any]:
        """The inbox row of the peer's message: its state and outcome."""
        return self.tx(lambda tx: tx.query_one(
            "SELECT state, outcome FROM inbox WHERE sender = ? AND mesg_id = ?",
            (PEER, msg_id)))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # The peer's messages unsigned (CONTRACT.md §1: a sender configured as unverified).
    settings = {"webhook_url": f"http://127.0.0.1:{free_port()}/hook",
                "unverified_senders": [PEER]}
    with serving(tmp_path_factory.mktemp("incoming-hvps112"), settings) as (loop, ops):
        yield FiRig(loop, ops)


def test_an_hvps112_to_our_customer_is_credited_and_acknowledged(rig: FiRig) -> None:
    """Taken, its ccms.990 sent, processed (not refused), and credited to the payee's
    account from our clearing account: the books balance, no alert is raised."""
    before = rig.books()
    acks = rig.acks()
    refused = len(rig.alerts("inbound_message_refused"))
    answer, payment = rig.hvps112_credit(5_000_00)
    state, outcome = rig.inbox(payment["message"]["msg_id"])

    assert answer["taken"] is True, answer
    assert rig.acks() == acks + 1
    assert state == "processed", outcome
    assert (payment["state"], payment["held_for_review"]) == ("credited", False)
    assert payment["history"][-1]["event"] == "hvps_credited"
    assert rig.books() == (before[0] + 5_000_00, before[1], True)
    assert len(rig.alerts("inbound_message_refused")) == refused


def test_an_hvps112_keeps_what_its_message_says(rig: FiRig) -> None:
    """The payment shows the institutions as payer and payee, the business type and the
    business kind of its /F25/ line, its priority and its message type."""
    _, payment = rig.hvps112_credit(1_234_56)

    assert payment["payer"]["name"] == PEER_TREASURY
    assert payment["payer"]["bank"] == PEER_BRANCH
    assert payment["payee"]["account"] == rig.rig.payer_account
    assert payment["payee"]["bank"] == PAYER_BRANCH
    assert (payment["business_type"], payment["business_kind"]) == ("A200", "02105")
    assert payment["urgency"] == "urgent"
    assert payment["message"]["type"] == hvps112.MESSAGE_TYPE


def test_an_hvps112_from_a_listed_institution_is_parked_in_suspense(rig: FiRig) -> None:
    """Screened as an hvps.111 is: a payer the list names is not credited, its money
    parked in suspense with the screening's reason, held for review, operators alerted;
    the ccms.990 went all the same."""
    before = rig.books()
    acks = rig.acks()
    _, payment = rig.hvps112_credit(2_000_00, payer_name=LISTED)
    raised = rig.alerts("incoming_credit_held_for_review")[-1]

    assert (payment["state"], payment["reason"], payment["held_for_review"]) == (
        "suspense", "screening_match_payer_name", True)
    assert rig.books() == (before[0], before[1] + 2_000_00, True)
    assert raised["payment"] == payment["id"]
    assert rig.acks() == acks + 1


def test_an_hvps112_to_an_account_we_do_not_keep_waits_in_suspense(rig: FiRig) -> None:
    """An account that is none of ours (an institution's account at another bank, say):
    the money is booked to suspense with the ledger's reason, for operators to apply."""
    before = rig.books()
    _, payment = rig.hvps112_credit(3_000_00, payee_account="88820000001500000009")
    detail = json.dumps(payment["history"][-1]["detail"])

    assert (payment["state"], payment["reason"]) == ("suspense", "account_not_found")
    assert payment["held_for_review"] is False
    assert "pending_no" in detail
    assert rig.books() == (before[0], before[1] + 3_000_00, True)


def test_an_hvps112_return_marks_our_institution_transfer_returned(rig: FiRig) -> None:
    """An A105 hvps.112 naming an hvps.112 of ours that settled (/A70/ our bank, /F40/
    its type, /E50/ its MsgId), for the same amount: credited to our payer's account
    like any incoming credit, and our transfer is `returned`."""
    ours = rig.settled_institution_transfer(4_000_00)
    before = rig.books()
    _, back = rig.hvps112_credit(4_000_00, business_type="A105", remittance=(
        "/F25/02108", f"/A70/{examples.OUR_BANK}", f"/F40/{hvps112.MESSAGE_TYPE}",
        f"/E50/{ours['msg_id']}", "/H20/账户已销户"))
    original = rig.view(ours["id"])

    assert back["state"] == "credited"
    assert rig.books() == (before[0] + 4_000_00, before[1], True)
    assert original["state"] == "returned"
    assert original["history"][-1]["event"] == "returned_by_payee_bank"


def test_an_hvps112_from_a_listed_bank_named_by_its_code_only_is_parked(
        rig: FiRig, list_of: Any) -> None:
    """pacs.009 may name the debtor institution by its member code alone: it is screened
    under the name the CNAPS directory gives that code, which the list names here, so
    its money is parked (screening_match_payer_name), not credited; the payment shows
    that name as the payer's."""
    peer_name = rig.gw.router.directory.find(PEER, rig.gw.work_date).name
    list_of([peer_name], [])
    before = rig.books()
    answer, payment = rig.hvps112_credit(3_303, debtor=hvps112.Institution(PEER))

    assert answer["taken"] is True, answer
    assert (payment["state"], payment["reason"], payment["held_for_review"]) == (
        "suspense", "screening_match_payer_name", True)
    assert payment["payer"]["name"] == peer_name
    assert rig.books() == (before[0], before[1] + 3_303, True)


def test_an_hvps112_from_a_listed_member_code_under_another_name_is_parked(
        rig: FiRig, list_of: Any) -> None:
    """The member code is the institution's identity; its Nm is free text the sender
    writes. A bank whose code the directory names under a listed name, sending under
    another Nm, is parked all the same, its reason saying the directory's name matched
    (screening_match_payer_directory_name); the payment keeps the message's name."""
    peer_name = rig.gw.router.directory.find(PEER, rig.gw.work_date).name
    list_of([peer_name], [])
    before = rig.books()
    _, payment = rig.hvps112_credit(3_307, debtor=hvps112.Institution(PEER, "某资金营运中心"))

    assert (payment["state"], payment["reason"], payment["held_for_review"]) == (
        "suspense", "screening_match_payer_directory_name", True)
    assert payment["payer"]["name"] == "某资金营运中心"
    assert rig.books() == (before[0], before[1] + 3_307, True)


def test_an_hvps112_from_a_bank_named_by_its_code_only_is_credited_when_clear(
        rig: FiRig) -> None:
    """The directory's name of the code, clear of the list: credited as any other."""
    _, payment = rig.hvps112_credit(3_304, debtor=hvps112.Institution(PEER))

    assert payment["state"] == "credited"
    assert payment["payer"]["name"] == rig.gw.router.directory.find(PEER, rig.gw.work_date).name


def test_an_hvps112_from_an_institution_no_name_is_known_for_is_parked_for_review(
        rig: FiRig) -> None:
    """A member code the directory does not know, and no name: nothing can be screened,
    so the money is not credited unseen but parked for operators
    (screening_unnamed_payer), held for review and alerted, as a match is; operators
    may apply it, the approval deciding the institution is no listed party."""
    before = rig.books()
    _, payment = rig.hvps112_credit(3_305, debtor=hvps112.Institution("999999999999"))
    raised = rig.alerts("incoming_credit_held_for_review")[-1]

    assert (payment["state"], payment["reason"], payment["held_for_review"]) == (
        "suspense", "screening_unnamed_payer", True)
    assert raised["payment"] == payment["id"]
    assert rig.books() == (before[0], before[1] + 3_305, True)
    done = rig.done("suspense_apply", payment["id"], WHY, account=rig.rig.payer_account)
    assert done["outcome"]["state"] == "credited", done


def test_a_parked_hvps112_is_returned_by_operators_as_an_hvps112_a105(rig: FiRig) -> None:
    """An hvps.112 parked for its payer's name, which the operators decide to send back:
    returned under dual control as an hvps.111's return is, but as an hvps.112 of
    business type A105 (kind 02108) to the sending bank, naming the original by its
    type, MsgId and instructing participant; screened as any return (its payee, the
    original's payer, is listed: held for review until a supervisor passes it)."""
    _, payment = rig.hvps112_credit(6_006, payer_name=LISTED)
    rid = rig.done("return", payment["id"], "合规部决定退回")["outcome"]["return_id"]
    held = rig.view(rid)
    rig.review("review_approve", rid)
    row = rig.tx(lambda tx: payments.get(tx, rid))
    body = outbound.credit_body(row, f"{rig.gw.work_date}T10:00:00")
    sent, problems = hvps112.parse(etree.fromstring(body))

    assert (held["state"], held["reason"]) == ("held", "screening_match_payee_name")
    assert row["msg_type"] == hvps112.MESSAGE_TYPE
    assert problems == [] and hvps112.check(sent) == []
    assert (sent.business_type, sent.business_kind, sent.amount_fen) == (
        "A105", "02108", 6_006)
    assert sent.instd_direct == PEER and sent.creditor.name == LISTED
    assert (sent.tag("F40"), sent.tag("E50"), sent.tag("A70")) == (
        hvps112.MESSAGE_TYPE, payment["message"]["msg_id"], PEER)
    assert rig.books()[2]


@pytest.mark.parametrize("debtor", [
    hvps112.Institution("999999999999"),          # a code the directory does not know
    hvps112.Institution(PEER),                    # a code alone, no account
    hvps112.Institution(PEER, PEER_TREASURY),     # named, no account
    None,                                         # named, with its account
], ids=["unknown-code", "code-only", "named-no-account", "named-with-account"])
def test_the_return_of_an_hvps112_is_valid_whatever_its_payer_gave(
        rig: FiRig, debtor: hvps112.Institution | None) -> None:
    """pacs.009 lets the payer institution come without an account and without a name.
    The hvps.112 A105 returning its money leaves out what the original did not give (no
    empty creditor name or account) and is valid against the hvps.112 schema; its
    creditor is the original's debtor institution by its own member code, its creditor
    agent the bank that held the payer's account."""
    _, payment = rig.hvps112_credit(4_404, debtor=debtor)
    rid = rig.done("return", payment["id"], "无法识别付款机构，退回")["outcome"]["return_id"]
    row = rig.tx(lambda tx: payments.get(tx, rid))
    root = etree.fromstring(outbound.credit_body(row, f"{rig.gw.work_date}T10:00:00"))
    invalid = codec.schema_problems(hvps112.MESSAGE_TYPE, root, every=True)
    sent, _ = hvps112.parse(root)

    assert invalid == [], [p.to_dict() for p in invalid]
    assert sent.creditor.member == (debtor or hvps112.Institution(PEER)).member
    assert sent.creditor_agent == hvps112.Institution(PEER_BRANCH)
    assert sent.creditor_account == (None if debtor else "88820000001500000001")
