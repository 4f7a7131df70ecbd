"""An operator's request is refused at the fields it has: the payment it names is its
`target` (never `/id`, the core system's name for it), a parameter its action does not
take is refused at its own path (never dropped), and a return's note, the reason the
return carries, is held to the limit of the core system's `reason`, with the same code,
never cut."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import PaygateError
from gateway.exceptions import returns
from gateway.exceptions import schema as exc_schema
from gateway.exceptions.extension import Exceptions
from gateway.ops.testing import serving
from tests.test_ops_exception_actions import Rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("ops-fields")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def _ask(rig: Rig, action: str, target: str, params: Any = None, note: str = "",
         user: str = "op1") -> tuple[int, Any]:
    body: dict[str, Any] = {"action": action, "target": target, "note": note}
    if params is not None:
        body["params"] = params
    return rig.call("POST", "/ops/api/requests", user, body)


def _problems(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["code"], e["path"]) for e in answer["errors"]]


TARGET_PATHS = [
    ("outgoing", "return", "return_only_for_incoming_payments"),
    ("credited", "npc_cancel", "cancel_only_for_outgoing_hvps_payments"),
    ("missing", "hold", "payment_not_found"),
    ("missing", "return", "payment_not_found"),
    ("missing", "npc_cancel", "payment_not_found"),
]


@pytest.mark.parametrize("kind, action, code", TARGET_PATHS)
def test_a_refusal_about_the_payment_names_the_requests_target(rig: Rig, kind: str,
                                                               action: str, code: str) -> None:
    pid = "P2026120799999999" if kind == "missing" else getattr(rig, kind)()
    status, answer = _ask(rig, action, pid)

    assert status in (404, 409, 422) and _problems(answer) == [(code, "/target")]
    assert "/id" not in answer["errors"][0]["message"]


def test_a_request_failing_when_it_runs_records_the_target_as_the_path(rig: Rig) -> None:
    """A return asked for by an operator, then by the core system before a supervisor
    approves it: the approval's execution fails, its outcome naming `/target`."""
    pid = rig.suspense()
    status, asked = _ask(rig, "return", pid, note="查无此户")
    ext = next(e for e in rig.rig.gw.extensions if isinstance(e, Exceptions))
    rig.loop.run(ext.request_return(pid, "查无此户", "core:test"))
    approved, done = rig.call("POST", f"/ops/api/requests/{asked['id']}/approve", "sup1",
                              {"note": ""})

    assert status == 201 and approved == 200 and done["state"] == "failed"
    assert _problems(done["outcome"]) == [("return_already_requested", "/target")]


UNKNOWN_PARAMS = [
    ("npc_cancel", {"reason": "客户要求"}, [("field_unknown", "/params/reason")]),
    ("hold", {"priority": 1}, [("field_unknown", "/params/priority")]),
    ("priority", {"priority": 1, "lane": 1}, [("field_unknown", "/params/lane")]),
    ("npc_cancel", ["reason"], [("field_malformed", "/params")]),
]


@pytest.mark.parametrize("action, params, problems", UNKNOWN_PARAMS)
def test_a_parameter_the_action_does_not_take_is_refused_not_dropped(
        rig: Rig, action: str, params: Any, problems: list[tuple[str, str]]) -> None:
    pid = rig.outgoing()
    if action == "npc_cancel":  # queued at the NPC: a cancellation is asked of it
        rig.loop.run(rig.rig.gw.store.run(lambda tx: (
            tx.execute("UPDATE payments SET state = 'queued' WHERE id = ?", (pid,)),
            tx.execute("UPDATE outbox SET state = 'acked' WHERE payment_id = ?", (pid,)))))
    status, answer = _ask(rig, action, pid, params)

    assert (status, _problems(answer)) == (422, problems)
    assert rig.requests_on(pid) == []


def test_the_parameters_an_action_takes_are_still_taken(rig: Rig) -> None:
    pid = rig.outgoing()
    status, req = _ask(rig, "priority", pid, {"priority": 1})
    plain, held = _ask(rig, "hold", rig.outgoing(), {})

    assert status == 201 and req["params"] == {"priority": 1}
    assert plain == 201 and held["state"] == "executed"


def test_a_returns_note_longer_than_a_reason_is_refused_as_the_core_systems_reason(
        rig: Rig) -> None:
    """101 characters: refused at once with return_reason_malformed at /note (the core
    system's POST /v1/transfers/{id}/return refuses its `reason` so), nothing recorded;
    100 characters: the return carries all of them."""
    pid = rig.suspense()
    too_long = "退" * (returns.REASON_LEN_MAX + 1)
    refused, refusal = _ask(rig, "return", pid, note=too_long)
    with pytest.raises(PaygateError) as core:
        returns.check_reason(too_long)
    exact = "退" * returns.REASON_LEN_MAX
    asked, req = _ask(rig, "return", pid, note=exact)
    approved, done = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1",
                              {"note": ""})
    made = rig.loop.run(rig.rig.gw.store.run(lambda tx: exc_schema.returns_of(tx, pid)))

    assert (refused, _problems(refusal)) == (422, [("return_reason_malformed", "/note")])
    assert core.value.code == refusal["errors"][0]["code"]
    assert str(returns.REASON_LEN_MAX) in refusal["errors"][0]["expected"]
    assert asked == 201 and approved == 200 and done["state"] == "executed"
    assert [r["reason"] for r in made] == [exact]
