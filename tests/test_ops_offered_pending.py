"""The actions the console offers on a payment are those a request would be taken for,
the requests pending on it included: its detail (`GET /ops/api/payments/{id}`,
`paygate ops payment`), the rows of a search and the snapshot's latest payments leave
out an action already pending and one that contradicts a pending deciding request, by
the same check a request meets (control.refuse_pending_clash)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ops import cli
from gateway.ops.testing import LoopThread, OpsRig, console_call, serving


class Rig:
    def __init__(self, loop: LoopThread, rig: OpsRig) -> None:
        self.loop, self.rig, self.keys = loop, rig, iter(range(1, 10_000))

    def call(self, method: str, path: str, user: str = "op1", body: Any = None
             ) -> tuple[int, Any]:
        return self.loop.run(console_call(self.rig.url, method, path, user, body))

    def outgoing(self) -> str:
        """A new outgoing HVPS payment, waiting for the window (HVPS is closed)."""
        return self.loop.run(self.rig.submit(f"offered-{next(self.keys)}"))["id"]

    def request(self, action: str, target: str, user: str = "op1") -> tuple[int, Any]:
        params = {"priority": 1} if action == "priority" else {}
        return self.call("POST", "/ops/api/requests", user,
                         {"action": action, "target": target, "params": params, "note": ""})

    def detail_actions(self, pid: str) -> list[str]:
        status, detail = self.call("GET", f"/ops/api/payments/{pid}")
        assert status == 200, detail
        return detail["actions"]

    def search_actions(self, pid: str) -> list[str]:
        status, found = self.call("GET", f"/ops/api/payments?id={pid}")
        assert status == 200, found
        return next(row["actions"] for row in found["payments"] if row["id"] == pid)

    def latest_actions(self, pid: str) -> list[str]:
        snapshot = self.loop.run(self.rig.ops.snapshots.build())
        return next(row["actions"] for row in snapshot["recent"] if row["id"] == pid)

    def expire_requests_on(self, pid: str) -> None:
        """Requests on the payment pending past their time, though nothing marked them."""
        self.loop.run(self.rig.gw.store.run(lambda tx: tx.execute(
            "UPDATE ops_requests SET expires_at = ? WHERE target = ? AND state = 'pending'",
            ("2000-01-01T00:00:00+08:00", pid))))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-offered")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


CASES = [
    # requests made first (a hold runs at once), offered then, refused then (and why)
    (("cancel",), ["hold", "priority"], {"cancel": "request_already_pending"}),
    (("hold", "release"), ["priority"], {"release": "request_already_pending",
                                         "cancel": "request_contradicts_pending"}),
    (("priority",), ["hold", "cancel"], {"priority": "request_already_pending"}),
    (("hold", "cancel"), ["priority"], {"cancel": "request_already_pending",
                                        "release": "request_contradicts_pending"}),
]


@pytest.mark.parametrize("made, offered, refused", CASES)
def test_an_action_a_pending_request_would_refuse_is_not_offered(
        rig: Rig, made: tuple[str, ...], offered: list[str], refused: dict[str, str]
        ) -> None:
    """The detail, the search's row and the latest payments' row offer the same
    actions, and each action no longer offered is refused when asked, by its code."""
    pid = rig.outgoing()
    for action in made:
        status, answer = rig.request(action, pid)
        assert status == 201, answer

    seen = (rig.detail_actions(pid), rig.search_actions(pid), rig.latest_actions(pid))
    codes = {action: rig.request(action, pid)[1]["errors"][0]["code"] for action in refused}

    assert seen == (offered, offered, offered)
    assert codes == refused


def test_a_pending_request_past_its_time_takes_nothing_away(rig: Rig) -> None:
    """A cancel pending past its time waits for nobody: cancel is offered again, and a
    request of it is taken, though nothing had marked the first one expired."""
    pid = rig.outgoing()
    status, _ = rig.request("cancel", pid)
    rig.expire_requests_on(pid)

    offered = rig.detail_actions(pid), rig.search_actions(pid)
    again, answer = rig.request("cancel", pid)

    assert status == 201
    assert offered == (["hold", "cancel", "priority"], ["hold", "cancel", "priority"])
    assert again == 201, answer


def test_the_command_line_lists_what_a_request_would_be_taken_for(
        rig: Rig, capsys: pytest.CaptureFixture) -> None:
    """`paygate ops payment ID` with a cancel pending ends with hold and priority."""
    pid = rig.outgoing()
    rig.request("cancel", pid)
    capsys.readouterr()

    status = cli.ops_command(["--url", rig.rig.url, "--user", "op1", "--password",
                              "op1-demo", "payment", pid])
    out = capsys.readouterr().out

    assert status == 0
    assert out.rstrip().endswith("you may request: hold, priority"), out


def test_a_row_offers_only_what_its_operators_level_may_ask_on_the_page(rig: Rig) -> None:
    """A row's `actions` are whoever asks: a payment held for review shows its pass and
    fail (a supervisor's) beside cancel and priority, which an operator's detail view
    leaves out; the page keeps those of the operator's level."""
    pid = rig.outgoing()
    rig.loop.run(rig.rig.gw.store.run(lambda tx: (
        tx.execute("UPDATE payments SET state = 'held', reason = 'review_amount' "
                   "WHERE id = ?", (pid,)),
        tx.execute("UPDATE outbox SET state = 'review' WHERE payment_id = ?", (pid,)))))

    row = rig.search_actions(pid)

    assert row == ["cancel", "priority", "review_approve", "review_reject"]
    assert rig.detail_actions(pid) == ["cancel", "priority"]
