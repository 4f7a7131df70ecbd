"""A required field is told as what it was: left out is "missing", null is "null",
empty or only spaces is said so, all under `field_required`, with what the field must
hold; a field left out is never told it needs "a value other than spaces"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import intake
from gateway.beps import debits_out, periodic
from gateway.errors import PaygateError, Problem, field_required
from gateway.exceptions import write_off
from gateway.queries import requests
from simulators import exceptions as sim_exceptions

OWN = frozenset({"999100000019", "999100000027"})
TRANSFER = {"payer_account": "20000000001410300000013", "payer_name": "示例客户",
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "1.00"}
DEBIT = {"creditor_account": "20000000001410300000013", "creditor_name": "示例客户",
         "creditor_bank": "999100000027", "debtor_account": "6222000000000001",
         "debtor_name": "对手客户", "debtor_bank": "888200000023", "amount": "1.00",
         "agreement": "XY-0001"}
QUERY = {"original": {"msg_id": "M1", "sending_bank": "888200000015"}, "amount": "1.00",
         "content": "款项未到"}
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def _without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != name}


def refusal_at(fn: Any, body: Any, path: str) -> Problem:
    with pytest.raises(PaygateError) as refused:
        fn(body)
    [problem] = [p for p in refused.value.problems if p.path == path]
    return problem


# (the value given, or _LEFT_OUT; the words the message starts with)
_LEFT_OUT = object()
STATES = [
    (_LEFT_OUT, "amount is missing; it is required, expected "),
    (None, "amount is null, which leaves it out; it is required, expected "),
    ("", "amount is empty; it is required, expected "),
    ("\u3000 ", "amount holds only spaces: got '\\u3000 '; it is required, expected "),
]


@pytest.mark.parametrize("given, said", STATES, ids=["left out", "null", "empty", "spaces"])
def test_a_transfers_amount_is_told_as_it_was_missing(given: Any, said: str) -> None:
    body = _without(TRANSFER, "amount") if given is _LEFT_OUT else {**TRANSFER, "amount": given}
    problem = refusal_at(lambda b: intake.parse_transfer(b, OWN), body, "/amount").to_dict()

    assert problem["code"] == "field_required"
    assert problem["message"].startswith(said), problem["message"]
    assert "other than spaces" not in problem["message"]
    assert "in yuan as a JSON string" in problem["expected"]
    assert problem["value"] == (None if given is _LEFT_OUT else given)


REQUIRED = [
    ("transfer", lambda b: intake.parse_transfer(b, OWN), TRANSFER,
     sorted(n for n, required in intake.FIELDS.items() if required)),
    ("debit", lambda b: debits_out.parse_debit(b, OWN), DEBIT,
     sorted(n for n, required in debits_out.FIELDS.items() if required)),
    ("periodic credit", lambda b: periodic.parse(b, OWN), {**TRANSFER, "agreement": "A-1"},
     ["agreement", "amount", "payee_name"]),
    ("query", lambda b: requests.parse_query(b, NOW), QUERY, ["content"]),
    ("reply", requests.parse_reply, {"content": "已到账"}, ["content"]),
]
CASES = [(kind, fn, body, name) for kind, fn, body, names in REQUIRED for name in names]


@pytest.mark.parametrize("kind, fn, body, name", CASES,
                         ids=[f"{c[0]} {c[3]}" for c in CASES])
def test_every_required_field_left_out_is_said_to_be_missing(kind: str, fn: Any,
                                                             body: dict[str, Any],
                                                             name: str) -> None:
    problem = refusal_at(fn, _without(body, name), f"/{name}")

    assert problem.code == "field_required"
    assert problem.message.startswith(f"{name} is missing; it is required, expected ")
    assert problem.expected and "other than spaces" not in problem.expected


def test_a_querys_original_message_left_out_of_its_reference_is_missing() -> None:
    body = {**QUERY, "original": {"sending_bank": "888200000015"}}
    problem = refusal_at(lambda b: requests.parse_query(b, NOW), body, "/original/msg_id")

    assert problem.code == "field_required"
    assert problem.message.startswith("msg_id is missing")


def test_a_batch_items_path_keeps_the_message_true() -> None:
    """The message names the field, not the pointer a batch moves under its index."""
    problem = field_required("/3/amount", None, False, "an amount")

    assert problem.message == "amount is missing; it is required, expected an amount"


def test_an_operators_suspense_account_left_out_is_missing() -> None:
    _, problems = write_off.params_problems({})

    assert [(p.code, p.path) for p in problems] == [("field_required", "/params/account")]
    assert problems[0].message.startswith("account is missing")


def test_the_simulated_peers_return_without_its_msg_id_is_missing() -> None:
    with pytest.raises(PaygateError) as refused:
        sim_exceptions.parse_return({"sender": "888200000015"}, frozenset({"888200000015"}))

    [problem] = refused.value.problems
    assert problem.code == "field_required"
    assert problem.message.startswith("msg_id is missing")


def test_a_value_that_is_not_blank_keeps_the_usual_words() -> None:
    """A mandate's text too long is field_required too (docs/errors.md): not "missing"."""
    problem = field_required("/mandate_id", "x" * 70, True, "text of 1 to 60 characters")

    assert problem.to_dict()["message"].startswith("field required at /mandate_id: got 'xxx")
