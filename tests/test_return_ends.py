"""Every way one of our HVPS returns (A105) ends without settling reports it as the NPC's
refusal does (outcomes.return_failed): `return_failed` in the original's history, the
return's record `failed` and the alert `return_not_settled`, once, with the money left
where it was (the suspense item open, or the credited account's hold released) and the
books balanced (docs/exceptions.md, "How a return ends")."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import keys, outbound, payments, status_hold
from gateway.exceptions import outcomes
from gateway.exceptions.extension import Exceptions
from gateway.messages import ccms911, hvps111
from gateway.messages.ccms900 import REJECTED, SETTLED
from gateway.ops.testing import PAYER_NAME, ConsoleRig, serving

AMOUNT_FEN = 3_456_78
REASON = "查无此户，退回汇款行"


class Rig(ConsoleRig):
    def exceptions(self) -> Exceptions:
        return next(e for e in self.gw.extensions if isinstance(e, Exceptions))

    def incoming(self, credited: bool) -> str:
        """An incoming credit, to the rig's customer (credited) or to no account of ours
        (suspense)."""
        key = next(self.keys)
        if credited:
            return self.loop.run(self.rig.receive(key, AMOUNT_FEN, self.rig.payer_account,
                                                  PAYER_NAME))
        return self.loop.run(self.rig.receive(key, AMOUNT_FEN))

    def returned(self, pid: str) -> str:
        """The return of `pid` asked by the core system: its id (HVPS is closed, so it
        waits for the window, held)."""
        answer = self.loop.run(self.exceptions().request_return(pid, REASON, "core:test"))
        return answer["return"]["id"]

    def outbox(self, rid: str) -> int:
        return self.run(lambda tx: tx.query_one(
            "SELECT id FROM outbox WHERE payment_id = ? AND kind = 'hvps_credit'", (rid,)))[0]

    def on_lane(self, rid: str) -> int:
        """The return's outbox row put on its lane, as HVPS opening does: its id."""
        outbox_id = self.outbox(rid)
        self.run(lambda tx: tx.execute("UPDATE outbox SET state = 'pending' WHERE id = ?",
                                       (outbox_id,)))
        return outbox_id

    def money(self, pid: str) -> dict[str, Any]:
        """Where the original's money is: the customer's free balance, the state of the
        original's suspense item, and whether the books balance."""
        def read(tx: Any) -> dict[str, Any]:
            ledger, original = self.gw.ledger, payments.get(tx, pid)
            item = original["pending_no"]
            return {"customer": ledger.balance(tx, self.rig.payer_account),
                    "item": ledger.suspense_item(tx, item).state if item else None,
                    "balanced": ledger.trial_balance(tx).balanced}
        return self.run(read)

    def ended(self, pid: str, rid: str) -> dict[str, Any]:
        """What the original, its return's record and the operators were told."""
        def read(tx: Any) -> dict[str, Any]:
            failed = [e["detail"] for e in payments.history(tx, pid)
                      if e["event"] == "return_failed"]
            alerts = [json.loads(d) for (d,) in tx.query(
                "SELECT detail FROM alerts WHERE code = 'return_not_settled'", ())]
            record = tx.query_one("SELECT state FROM exc_returns WHERE return_id = ?",
                                  (rid,))[0]
            return {"original": payments.get(tx, pid)["state"],
                    "return": payments.get(tx, rid)["state"], "record": record,
                    "failed": [(d["return_id"], d["status"]) for d in failed],
                    "alerts": [(a["payment"], a["status"]) for a in alerts
                               if a["return_id"] == rid]}
        return self.run(read)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("return-ends")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


@pytest.fixture
def hvps_open(rig: Rig) -> Any:
    """HVPS open in the gateway's view, for the sender's claim; closed again after."""
    was = rig.gw.hvps_status
    rig.gw.hvps_status = "10"
    yield
    rig.gw.hvps_status = was


def _expected(pid: str, rid: str, original: str, ret: str, status: str) -> dict[str, Any]:
    return {"original": original, "return": ret, "record": "failed",
            "failed": [(rid, status)], "alerts": [(pid, status)]}


@pytest.mark.parametrize("credited", [False, True], ids=["suspense", "account"])
def test_a_return_an_operator_cancels_is_reported_once(rig: Rig, credited: bool) -> None:
    """The console's `cancel` of a return waiting for the window ends it as the NPC's
    refusal would, once; the money stays where it was."""
    pid = rig.incoming(credited)
    before = rig.money(pid)
    rid = rig.returned(pid)
    asked, req = rig.request("cancel", rid, "客户撤回退汇申请")
    approved, done = rig.approve(req["id"])
    again, _ = rig.request("cancel", rid, "再次撤销")

    assert (asked, approved, done["state"]) == (201, 200, "executed"), done
    assert again != 201
    assert rig.ended(pid, rid) == _expected(pid, rid, "credited" if credited else "suspense",
                                            "cancelled", "ops_cancelled")
    assert rig.money(pid) == before


@pytest.mark.parametrize("credited", [False, True], ids=["suspense", "account"])
def test_a_return_whose_message_cannot_be_built_is_reported_once(
        rig: Rig, credited: bool, hvps_open: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A return the sender cannot build a message for is refused (`message_build_failed`)
    and reported, once however many times the sender meets it; a return from suspense
    holds nothing, and its item stays open."""
    pid = rig.incoming(credited)
    before = rig.money(pid)
    rid = rig.returned(pid)
    outbox_id = rig.on_lane(rid)

    def unbuildable(*args: Any, **kwargs: Any) -> bytes:
        raise ValueError("All strings must be XML compatible")
    monkeypatch.setattr(outbound, "credit_body", unbuildable)
    for _ in range(2):
        rig.loop.run(rig.gw._send_outbox(keys.HVPS_LANES[2], "1-0",
                                         {"outbox": str(outbox_id)}))

    assert rig.ended(pid, rid) == _expected(pid, rid, "credited" if credited else "suspense",
                                            "rejected", "message_build_failed")
    assert rig.money(pid) == before


@pytest.mark.parametrize("credited", [False, True], ids=["suspense", "account"])
def test_a_return_the_npc_discards_is_reported_once(rig: Rig, credited: bool,
                                                    hvps_open: Any) -> None:
    """A return whose hvps.111 the NPC throws away (ccms.911) is `rejected` and reported;
    the same notice again changes nothing."""
    pid = rig.incoming(credited)
    before = rig.money(pid)
    rid = rig.returned(pid)
    outbox_id = rig.on_lane(rid)
    now = rig.gw.clock.now()

    def sent(tx: Any) -> ccms911.Discarded:
        assert outbound.claim(tx, outbox_id, rig.gw.keyring, now, rig.gw.notifier,
                              credit=True) is not None
        mesg_id = tx.query_one("SELECT mesg_id FROM outbox WHERE id = ?", (outbox_id,))[0]
        return ccms911.Discarded(rig.gw.settings.bank_code, now.strftime("%Y%m%d"),
                                 hvps111.MESSAGE_TYPE, mesg_id, "CS02",
                                 reject_info="签名核验失败")
    notice = rig.run(sent)
    handler = rig.gw.handler_table()[ccms911.MESSAGE_TYPE]
    for _ in range(2):
        rig.run(lambda tx: handler(tx, SimpleNamespace(obj=notice), now))

    assert rig.ended(pid, rid) == _expected(pid, rid, "credited" if credited else "suspense",
                                            "rejected", "discarded_by_npc")
    assert rig.money(pid) == before


def test_a_return_left_on_its_lane_when_hvps_closes_waits_for_the_next_opening(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """HVPS closing never refuses a return, whatever `when_closed_default` says (it is
    no customer's transfer asking to be refused): it waits, held, for the next opening,
    and nothing reports it ended."""
    monkeypatch.setattr(rig.gw.router, "when_closed_default", "refuse")
    pid = rig.incoming(credited=True)
    rid = rig.returned(pid)
    rig.on_lane(rid)
    counts = rig.run(lambda tx: status_hold.follow_closed_window(rig.gw, tx,
                                                                 rig.gw.clock.now()))
    ended = rig.ended(pid, rid)

    assert counts["refused"] == 0
    assert (ended["return"], ended["record"], ended["failed"]) == ("held", "pending", [])


@pytest.mark.parametrize("settles", [True, False], ids=["settled", "rejected"])
def test_a_later_return_that_settles_closes_the_alert_of_the_one_that_failed(
        rig: Rig, settles: bool) -> None:
    """A first return cancelled by operators leaves `return_not_settled` open; a later
    return of the same payment settled (PR04) returns it after all and the gateway
    closes the alert, saying which return settled; one that fails too leaves it open."""
    pid = rig.incoming(credited=False)
    first = rig.returned(pid)
    _, req = rig.request("cancel", first, "客户撤回退汇申请")
    rig.approve(req["id"])
    second = rig.returned(pid)

    def answer(tx: Any) -> None:
        sent = payments.transition(tx, payments.get(tx, second), "sent", "hvps_sent",
                                   rig.gw.clock.now())
        outcomes.apply(rig.gw, tx, sent, SETTLED if settles else REJECTED,
                       rig.gw.work_date.isoformat(), rig.gw.clock.now(), "hvps", "test")
    rig.run(answer)
    rows = rig.run(lambda tx: tx.query(
        "SELECT k.by, k.note, a.detail FROM alerts a LEFT JOIN alert_acks k "
        "ON k.alert_id = a.id WHERE a.code = 'return_not_settled' ORDER BY a.id", ()))
    closed = [(by, note, json.loads(d)["return_id"]) for by, note, d in rows
              if json.loads(d)["payment"] == pid]

    if settles:
        assert closed == [("gateway", f"payment {pid} returned after all: return {second} "
                                      "settled", first)]
    else:
        assert closed == [(None, None, first), (None, None, second)]
