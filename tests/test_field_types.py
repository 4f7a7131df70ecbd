"""A text field given as another JSON type is refused as such (`field_must_be_text`),
before its format is checked, on every JSON endpoint: the refusal names the JSON type
sent and shows the value as sent (a number as a number, a list as a list, `…` only when
cut), so that a bank code sent as a number is not told it lacks digits it has."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import intake
from gateway.api import JsonNumber
from gateway.beps import debits_out, periodic
from gateway.errors import VALUE_LEN_MAX, PaygateError, Problem, not_text
from gateway.exceptions import cancels, returns, write_off
from gateway.money import parse_yuan
from gateway.queries import requests

OWN = frozenset({"999100000019", "999100000027"})
TRANSFER = {"payer_account": "20000000001410300000013", "payer_name": "示例客户",
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "1.00"}
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def refused(fn: Any, *args: Any) -> list[Problem]:
    with pytest.raises(PaygateError) as caught:
        fn(*args)
    return caught.value.problems


def at(problems: list[Problem], path: str) -> list[Problem]:
    return [p for p in problems if p.path == path]


@pytest.mark.parametrize("field, value, word, shown", [
    ("payer_bank", 999100000027, "number", "999100000027"),
    ("payer_account", 2000000000141, "number", "2000000000141"),
    ("payer_name", ["x"], "array", '["x"]'),
    ("payee_name", {"name": "x"}, "object", '{"name": "x"}'),
    ("payee_bank", True, "boolean", "true"),
])
def test_a_transfer_field_of_another_json_type_is_told_so(field, value, word, shown):
    problems = at(refused(intake.parse_transfer, {**TRANSFER, field: value}, OWN),
                  f"/{field}")

    assert [p.code for p in problems] == ["field_must_be_text"]
    shown_dict = problems[0].to_dict()
    assert shown_dict["value"] == value and type(shown_dict["value"]) is type(value)
    assert f"not a JSON {word}: got {shown}," in shown_dict["message"]
    assert shown_dict["message"].startswith(f"{field} must be a JSON string")
    assert "…" not in shown_dict["message"]
    assert shown_dict["expected"].startswith("a JSON string: ")


@pytest.mark.parametrize("field", sorted(intake._TEXT_EXPECTED))
def test_every_text_field_of_a_transfer_is_checked_for_its_type(field):
    problems = refused(intake.parse_transfer, {**TRANSFER, field: 12}, OWN)

    assert [(p.code, p.path) for p in problems] == [("field_must_be_text", f"/{field}")]


def test_the_type_is_checked_before_the_format_and_text_still_gets_the_format_check():
    problems = refused(intake.parse_transfer, {**TRANSFER, "payer_bank": "99910000002"},
                       OWN)

    assert [p.code for p in problems] == ["bank_code_must_be_12_ascii_digits"]


def test_a_batch_item_path_keeps_the_message_true():
    """The message names the field, not the pointer a batch moves under its index."""
    problem = not_text("/3/payer_bank", 1, "12 ASCII digits")

    assert problem is not None and problem.message.startswith("payer_bank must be")


@pytest.mark.parametrize("value, shown", [
    (2 ** 53 - 1, 2 ** 53 - 1),
    (-(2 ** 53 - 1), -(2 ** 53 - 1)),
    (2 ** 53, str(2 ** 53)),
    (-(2 ** 53), str(-(2 ** 53))),
    (20000000001410300000013, "20000000001410300000013"),
    (-(10 ** 40), str(-(10 ** 40))),
    (10 ** 199, str(10 ** 199)),
    (10 ** 250, str(10 ** 250)[:VALUE_LEN_MAX] + "…"),
])
def test_a_whole_number_is_a_number_only_while_every_json_reader_keeps_it(value, shown):
    """A whole number beyond 2**53 - 1 would reach a JavaScript client as another number
    (2**53 + 1 reads as 2**53): its digits are sent as text instead, cut only past the
    bound, and the message writes them as the number sent."""
    problem = Problem("x", "/a", value).to_dict()

    assert problem["value"] == shown and type(problem["value"]) is type(shown)
    assert f"got {str(value)[:VALUE_LEN_MAX]}" in problem["message"]
    assert f"got '{str(value)[:20]}" not in problem["message"]


@pytest.mark.parametrize("text, shown", [
    ("100.5", 100.5),
    ("1.10", 1.1),
    ("-0.25", -0.25),
    ("1e5", 100000.0),
    ("12345678901234567890.5", "12345678901234567890.5"),
    ("0.1000000000000000000001", "0.1000000000000000000001"),
    ("1e400", "1e400"),
    ("1e-400", "1e-400"),
])
def test_a_number_with_a_fraction_is_a_number_only_when_a_double_holds_it(text, shown):
    """A JSON number the request kept as its text is shown as a number when a reader's
    double holds the number it writes, else as its text; the message keeps its text."""
    problem = Problem("x", "/a", JsonNumber(text)).to_dict()

    assert problem["value"] == shown and type(problem["value"]) is type(shown)
    assert f"got {text}," in problem["message"] or problem["message"].endswith(f"got {text}")


def test_every_value_written_is_one_a_javascript_reader_keeps():
    """Read back as a JavaScript client reads JSON (every number a double), the value of
    a refusal is the one the request sent, or text that writes it."""
    sent = [10 ** 22 + 1, [1, 2 ** 60 + 1], {"n": -(2 ** 61) - 3}]
    for value in sent:
        text = json.dumps(Problem("x", "/a", value).to_dict()["value"])
        read = json.loads(text, parse_int=float)

        assert _as_sent(read) == _as_sent(value)


def _as_sent(value: Any) -> Any:
    """A value with each number as its digits' whole number (a text of digits too)."""
    if isinstance(value, list):
        return [_as_sent(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_sent(v) for k, v in value.items()}
    return int(value)


def test_a_field_of_another_type_shows_a_long_number_as_its_digits():
    problem = not_text("/payer_account", 20000000001410300000013, "digits")

    assert problem is not None
    shown = problem.to_dict()
    assert shown["value"] == "20000000001410300000013"
    assert "not a JSON number: got 20000000001410300000013," in shown["message"]


DEBIT = {"creditor_account": "20000000001410300000013", "creditor_name": "示例客户",
         "creditor_bank": "999100000027", "debtor_account": "6222000000000001",
         "debtor_name": "对手客户", "debtor_bank": "888200000023", "amount": "1.00",
         "agreement": "XY-0001"}
QUERY = {"payment_id": "P2026120700000001", "content": "到账了吗"}
FREE = {"receiver": "888200000015", "content": "通知"}


@pytest.mark.parametrize("fn, body, path", [
    (lambda b: debits_out.parse_debit(b, OWN), {**DEBIT, "debtor_bank": 888200000023},
     "/debtor_bank"),
    (lambda b: debits_out.parse_debit(b, OWN), {**DEBIT, "creditor_name": ["x"]},
     "/creditor_name"),
    (lambda b: debits_out.parse_debit(b, OWN), {**DEBIT, "agreement": 7}, "/agreement"),
    (lambda b: periodic.parse(b, OWN), {**TRANSFER, "agreement": 7}, "/agreement"),
    (lambda b: requests.parse_query(b, NOW), {**QUERY, "content": 5}, "/content"),
    (lambda b: requests.parse_query(b, NOW), {**QUERY, "payment_id": 5}, "/payment_id"),
    (lambda b: requests.parse_query(b, NOW), {**QUERY, "query_type": ["QT00"]},
     "/query_type"),
    (lambda b: requests.parse_query(b, NOW), {**QUERY, "doubt_at": 20261207}, "/doubt_at"),
    (requests.parse_reply, {"content": "已到账", "operator": False}, "/operator"),
    (requests.parse_free_format, {**FREE, "receiver": 888200000015}, "/receiver"),
    (requests.parse_free_format, {**FREE, "system": {"HVPS": 1}}, "/system"),
    (returns.check_reason, 5, "/reason"),
    (cancels.check_reason, ["late"], "/reason"),
])
def test_every_json_endpoint_checks_its_text_fields_alike(fn, body, path):
    problems = refused(fn, body)

    assert [(p.code, p.path) for p in problems] == [("field_must_be_text", path)]


def test_an_amount_of_another_json_type_keeps_its_code_and_names_the_type():
    problem = parse_yuan(["1.00"], "/amount")

    assert isinstance(problem, Problem)
    assert problem.code == "amount_must_be_a_decimal_string"
    assert 'not a JSON array: got ["1.00"]' in problem.message


@pytest.mark.parametrize("text, written", [("00010.00", "10.00"), ("010", "10"),
                                           ("000.50", "0.50")])
def test_an_amount_with_leading_zeros_is_refused_naming_them(text, written):
    problem = parse_yuan(text, "/amount")

    assert isinstance(problem, Problem)
    assert problem.code == "amount_must_not_have_leading_zeros"
    assert "leading zero" in problem.message and repr(written) in problem.message
    assert "without leading zeros" in problem.expected


@pytest.mark.parametrize("text", ["00", "00.00", "000.0"])
def test_zeros_alone_are_not_positive(text):
    problem = parse_yuan(text, "/amount")

    assert isinstance(problem, Problem) and problem.code == "amount_must_be_positive"


def test_an_operators_suspense_account_sent_as_a_number_is_told_so():
    _, problems = write_off.params_problems({"account": 20000000001410300000013})

    assert [(p.code, p.path) for p in problems] == [("field_must_be_text", "/params/account")]
