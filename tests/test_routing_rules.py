"""The BEPS caps and the rule table as configuration."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from gateway.errors import PaygateError
from routing import BepsLimits
from routing.limits import DEFAULT_LIMITS
from routing.rules import DEFAULT_RULES, parse_rules

SPRING_FESTIVAL = {"name": "spring_festival_2027", "types": ["A*"],
                   "cap_fen": 50_000_000_000, "effective_from": "2027-01-28",
                   "effective_to": "2027-02-20"}
WITH_FESTIVAL = [SPRING_FESTIVAL] + DEFAULT_LIMITS


@pytest.mark.parametrize("limits, business_type, on_date, amount_fen, over", [
    (None, "A100", date(2026, 12, 7), 5_000_000, False),
    (None, "A100", date(2026, 12, 7), 5_000_001, True),
    (None, "A105", date(2026, 12, 7), 5_000_001, True),
    (None, "C100", date(2026, 12, 7), 10**15, False),
    (None, "D100", date(2026, 12, 7), 10**15, False),
    (WITH_FESTIVAL, "A100", date(2027, 1, 27), 5_000_001, True),
    (WITH_FESTIVAL, "A100", date(2027, 1, 28), 5_000_001, False),
    (WITH_FESTIVAL, "A100", date(2027, 2, 20), 50_000_000_000, False),
    (WITH_FESTIVAL, "A100", date(2027, 2, 20), 50_000_000_001, True),
    (WITH_FESTIVAL, "A100", date(2027, 2, 21), 5_000_001, True),
    (WITH_FESTIVAL, "B100", date(2027, 2, 1), 5_000_001, True),
])
def test_beps_caps_depend_on_type_and_day(limits: list[dict[str, Any]] | None,
                                          business_type: str, on_date: date,
                                          amount_fen: int, over: bool) -> None:
    """The cap is inclusive, real-time business has none, dated overrides win in force."""
    assert BepsLimits(limits).over(amount_fen, business_type, on_date) is over


@pytest.mark.parametrize("limits, expected", [
    ([{"name": "x", "types": ["A*"], "cap_fen": 1}], ["routing_limits_need_a_catch_all"]),
    ([{"name": "x", "types": ["*"], "cap_fen": 0}], ["routing_limit_cap_fen_invalid"]),
    ([{"name": "x", "types": ["*"], "cap_fen": "5000000"}], ["routing_limit_cap_fen_invalid"]),
    ([{"name": "x", "types": "*"}], ["routing_limit_types_invalid",
                                     "routing_limits_need_a_catch_all"]),
    ([{"name": "x", "types": ["*"], "cap": 1}], ["routing_limit_key_unknown"]),
    ([{"types": ["*"]}], ["routing_limit_needs_a_name"]),
    ([{"name": "x", "types": ["*"]}, {"name": "y", "types": ["A*"],
                                      "effective_from": "2027-02-30"}],
     ["effective_from_must_be_an_iso_date"]),
    ([{"name": "x", "types": ["*"]}, {"name": "y", "types": ["A*"],
                                      "effective_from": "2027-02-20",
                                      "effective_to": "2027-02-01"}],
     ["effective_to_must_not_precede_effective_from"]),
])
def test_broken_limit_tables_are_refused(limits: list[dict[str, Any]],
                                         expected: list[str]) -> None:
    """A limit table that cannot answer for every type and day is refused at start."""
    with pytest.raises(PaygateError) as error:
        BepsLimits(limits)

    assert [p.code for p in error.value.problems] == expected


def test_the_default_rule_table_is_in_the_documented_order() -> None:
    """The default rules are tried in the documented order, ending with the catch-all."""
    assert [rule.name for rule in parse_rules(None)] == [
        "internal", "hvps_urgency", "hvps_over_beps_limit", "hvps_only_kind", "beps_default"]


CATCH_ALL = {"name": "beps_default", "when": {}, "channel": "beps"}


@pytest.mark.parametrize("rules, expected", [
    ([{"name": "a", "when": {"colour": "red"}, "channel": "hvps"}, CATCH_ALL],
     ["routing_rule_condition_unknown"]),
    ([{"name": "a", "when": {"urgency_in": "urgent"}, "channel": "hvps"}, CATCH_ALL],
     ["routing_rule_condition_value_invalid"]),
    ([{"name": "a", "when": {"over_beps_limit": "yes"}, "channel": "hvps"}, CATCH_ALL],
     ["routing_rule_condition_value_invalid"]),
    ([{"name": "a", "when": {"amount_fen_over": -1}, "channel": "hvps"}, CATCH_ALL],
     ["routing_rule_condition_value_invalid"]),
    ([{"name": "a", "when": {}, "channel": "swift"}], ["routing_rule_channel_unknown"]),
    ([{"name": "a", "when": {}, "channel": "internal"}],
     ["routing_rule_internal_needs_same_clearing_account"]),
    ([{"name": "a", "when": {"customer": True}, "channel": "beps"}],
     ["routing_rules_need_a_final_catch_all"]),
    ([CATCH_ALL, CATCH_ALL], ["routing_rule_name_duplicate"]),
    ([{"name": "a", "when": [], "channel": "beps"}], ["routing_rule_when_must_be_a_table"]),
    ([{"name": "", "when": {}, "channel": "beps", "why": "x"}],
     ["routing_rule_key_unknown", "routing_rule_needs_a_name"]),
])
def test_broken_rule_tables_are_refused(rules: list[dict[str, Any]],
                                        expected: list[str]) -> None:
    """A rule table that could misroute or fall through is refused at start."""
    with pytest.raises(PaygateError) as error:
        parse_rules(rules)

    assert [p.code for p in error.value.problems] == expected


def test_the_default_tables_are_toml_compatible() -> None:
    """Defaults use only tables, lists, strings, integers and booleans (no nulls)."""
    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(item) for item in value)
        return isinstance(value, (str, int, bool))

    assert plain({"rules": DEFAULT_RULES, "limits": DEFAULT_LIMITS})
