"""An operator's request is refused at the fields it has: the payment it names is its
`target` (never `/id`, the core system's name for it), a parameter its action does not
take is refused at its own path (never dropped), and a return's note, the reason the
return carries, is held to the limit of the core system's `reason`, with the same code,
never cut."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import PaygateError
from gateway.exceptions import returns
from gateway.exceptions import schema as exc_schema
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
    """A return asked for by an operator, then started by the gateway itself (its
    automatic return of suspense, which waits on no request; the core system's would be
    refused while the operator's waits) before a supervisor approves it: the approval's
    execution fails, its outcome naming `/target`."""
    pid = rig.suspense()
    status, asked = _ask(rig, "return", pid, note="查无此户")
    gw = rig.rig.gw
    rig.loop.run(gw.store.run(lambda tx: returns.request_tx(gw, tx, pid, "查无此户", "gateway",
                                                            gw.clock.now())))
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


@pytest.mark.parametrize("priority, type_word", [
    (True, "boolean"), ("1", "string"), (None, None), (1.5, None), (4, None)])
def test_a_priority_other_than_the_number_1_2_or_3_is_refused(
        rig: Rig, priority: Any, type_word: str | None) -> None:
    """true is 1 to Python and "1" is text: neither is recorded as lane 1, and the
    refusal says which JSON type was sent where it was no number."""
    pid = rig.outgoing()
    status, refusal = _ask(rig, "priority", pid, {"priority": priority})
    [error] = refusal["errors"]

    assert (status, error["code"], error["path"]) == (422, "priority_unknown",
                                                      "/params/priority")
    assert "JSON number 1" in error["expected"]
    assert (f"not a JSON {type_word}" in error["message"]) == (type_word is not None)
    assert rig.requests_on(pid) == []


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


@pytest.mark.parametrize("action, note", [
    ("return", "退\u0000回"), ("return", "账户\u202e错"), ("hold", "核查\u0007"),
    ("hold", "待\ufe0f查"),
])
def test_a_note_with_control_or_invisible_characters_is_refused_at_note(
        rig: Rig, action: str, note: str) -> None:
    """A note is shown to the approver and kept in the audit log as typed, and a return's
    is the reason its message carries: refused as a transfer's names are."""
    pid = rig.suspense() if action == "return" else rig.outgoing()
    status, refusal = _ask(rig, action, pid, note=note)

    assert (status, _problems(refusal)) == (
        422, [("text_has_control_or_invisible_characters", "/note")])


def test_a_decision_note_with_a_control_character_is_refused(rig: Rig) -> None:
    asked, req = _ask(rig, "return", rig.suspense(), note="账户不存在")
    status, refusal = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1",
                               {"note": "ok\u0000"})

    assert asked == 201 and req["state"] == "pending"
    assert (status, _problems(refusal)) == (
        422, [("text_has_control_or_invisible_characters", "/note")])


# (the body sent to POST /ops/api/requests, the (code, path) of each problem): each
# field is checked for its JSON type as the core system's API checks its text fields.
WRONG_TYPES = [
    ({"action": 5, "target": "P1"}, [("field_must_be_text", "/action")]),
    ({"action": ["hold"], "target": "P1"}, [("field_must_be_text", "/action")]),
    ({"action": {"name": "hold"}, "target": "P1"}, [("field_must_be_text", "/action")]),
    ({"action": "hold", "target": 20261207}, [("field_must_be_text", "/target")]),
    ({"action": "hold", "target": ["P1"]}, [("field_must_be_text", "/target")]),
    ({"action": "hold", "target": "P1", "note": 5}, [("field_must_be_text", "/note")]),
    ({"action": "hold", "target": "P1", "note": []}, [("field_must_be_text", "/note")]),
    ({"action": "hold", "target": "P1", "note": False}, [("field_must_be_text", "/note")]),
    ({"action": "hold", "target": "P1", "params": "x"}, [("field_malformed", "/params")]),
    ({"target": "P1"}, [("field_required", "/action")]),
    ({"action": None, "target": "P1"}, [("field_required", "/action")]),
    ({"action": "hold"}, [("field_required", "/target")]),
    ({"action": "hold", "target": ""}, [("field_required", "/target")]),
    ({"action": "hold", "target": "P1", "lane": 1}, [("field_unknown", "/lane")]),
    ({"action": 5, "target": 6, "note": 7}, [("field_must_be_text", "/action"),
                                             ("field_must_be_text", "/target"),
                                             ("field_must_be_text", "/note")]),
    ({"action": "suspense_apply", "target": "P1", "note": "查明账户",
      "params": {"account": "6222000000000001", "pending_no": 100070001}},
     [("field_must_be_text", "/params/pending_no")]),
    ({"action": "hvps_status_confirm", "target": "2026-12-07", "note": "已电话确认",
      "params": {"status": 10}},
     [("field_must_be_text", "/params/status")]),
]


@pytest.mark.parametrize("body, problems", WRONG_TYPES,
                         ids=[f"{i}-{sorted(b)}" for i, (b, _) in enumerate(WRONG_TYPES)])
def test_a_requests_fields_are_checked_for_their_json_type(
        rig: Rig, body: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """A request's field of the wrong JSON type is refused as such (never read as
    another value: a note of 0 or [] as no note, an action as a list as an internal
    error), every problem at once, nothing recorded."""
    status, answer = rig.call("POST", "/ops/api/requests", "op1", body)

    assert (status, _problems(answer)) == (422, problems)
    for error in answer["errors"]:
        if error["code"] == "field_must_be_text":
            name = error["path"].rsplit("/", 1)[-1]
            assert error["message"].startswith(f"{name} must be a JSON string")
            assert error["expected"].startswith("a JSON string: ")


def test_an_action_left_out_is_said_to_be_missing(rig: Rig) -> None:
    status, answer = rig.call("POST", "/ops/api/requests", "op1", {"target": "P1"})

    assert status == 422
    assert answer["errors"][0]["message"].startswith("action is missing; it is required")


@pytest.mark.parametrize("body, problems", [
    ({"note": 5}, [("field_must_be_text", "/note")]),
    ({"note": "ok", "approve": True}, [("field_unknown", "/approve")]),
])
def test_a_decisions_note_is_checked_for_its_json_type(
        rig: Rig, body: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    asked, req = _ask(rig, "priority", rig.outgoing(), {"priority": 1})
    status, answer = rig.call("POST", f"/ops/api/requests/{req['id']}/approve", "sup1", body)

    assert asked == 201 and (status, _problems(answer)) == (422, problems)


PASSWORD = 20261207  # a password of digits sent as a JSON number
SIGN_INS = [
    ({"user": 5, "password": "x"}, [("field_must_be_text", "/user")]),
    ({"user": "op1", "password": PASSWORD}, [("field_must_be_text", "/password")]),
    ({"password": "x"}, [("credentials_required", "/user")]),
    ({"user": "op1", "password": None}, [("credentials_required", "/password")]),
    ({"user": "op1", "password": "x", "remember": True}, [("field_unknown", "/remember")]),
]


@pytest.mark.parametrize("body, problems", SIGN_INS)
def test_a_sign_ins_fields_are_checked_for_their_json_type(
        rig: Rig, body: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """As a request's: a password's value is never shown in the refusal."""
    status, answer = rig.call("POST", "/ops/login", "op1", body)

    assert (status, _problems(answer)) == (422, problems)
    assert str(PASSWORD) not in str(answer)


@pytest.mark.parametrize("body, problems", [
    ({"user": "op1", "Password": "hunter2"},
     [("field_unknown", "/Password"), ("credentials_required", "/password")]),
    ({"user": "op1", "password": "x", "passwd": "hunter2"}, [("field_unknown", "/passwd")]),
    ({"user": "op1", "password": "x", "old": {"password": "hunter2"}},
     [("field_unknown", "/old")]),
])
def test_a_misspelt_password_member_is_named_never_shown(
        rig: Rig, body: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """A member the sign-in does not take may be the password misspelt: the refusal
    names it, its value null and in no message."""
    status, answer = rig.call("POST", "/ops/login", "op1", body)
    unknown = answer["errors"][0]

    assert (status, _problems(answer)) == (422, problems)
    assert "hunter2" not in json.dumps(answer)
    assert unknown["value"] is None and unknown["expected"] == "only: user, password"


def test_a_sign_in_that_is_not_json_is_refused_without_its_text(rig: Rig) -> None:
    """A body cut short, its password in its first characters: not shown."""
    status, answer = rig.call("POST", "/ops/login", "op1",
                              raw=b'{"user": "op1", "password": "hunter2"')

    assert (status, _problems(answer)) == (400, [("body_must_be_json", "/")])
    assert "hunter2" not in json.dumps(answer)
