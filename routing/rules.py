"""The routing decision table: which channel carries a payment.

Rules are TOML-compatible tables, tried in order; the first whose conditions all hold
wins. A rule is `{name, when, channel}`: `channel` is "internal", "hvps" or "beps",
and `when` maps condition names to values. An empty `when` always matches, which is
how the last rule (`beps_default`) catches everything else.

Conditions:

- `same_clearing_account` (bool): payer and payee banks are both ours and settle
  through the same clearing account.
- `urgency_in` (list): the request's urgency is one of these.
- `over_beps_limit` (bool): the amount exceeds the BEPS cap for the type on the day.
- `business_type_in` (list): the business type matches one of these ("A200", "A*").
- `customer` (bool): a customer payment (true) or a transfer between institutions.
- `payer_bank_in` / `payee_bank_in` (list): the bank code is one of these.
- `amount_fen_over` (int): the amount in fen is above this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import ProblemList
from routing.fields import type_matches

CHANNELS = ("internal", "hvps", "beps")

# Business types seen only on HVPS (SPEC.md d.4): charitable funds, treasury same-city
# net clearing, currency issuance fund withdrawal, bond settlement, interbank transfer.
HVPS_ONLY_TYPES = ["A101", "A103", "A106", "A107", "A200"]

DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "internal", "when": {"same_clearing_account": True}, "channel": "internal"},
    {"name": "hvps_urgency", "when": {"urgency_in": ["urgent", "extra_urgent"]},
     "channel": "hvps"},
    {"name": "hvps_over_beps_limit", "when": {"over_beps_limit": True}, "channel": "hvps"},
    {"name": "hvps_only_kind", "when": {"business_type_in": HVPS_ONLY_TYPES},
     "channel": "hvps"},
    {"name": "beps_default", "when": {}, "channel": "beps"},
]

_BOOL_CONDITIONS = ("same_clearing_account", "over_beps_limit", "customer")
_LIST_CONDITIONS = ("urgency_in", "business_type_in", "payer_bank_in", "payee_bank_in")
_INT_CONDITIONS = ("amount_fen_over",)


@dataclass(frozen=True)
class Rule:
    name: str
    when: Mapping[str, Any]
    channel: str

    def matches(self, facts: Mapping[str, Any]) -> bool:
        """True when every condition holds for these facts."""
        return all(_holds(key, expected, facts) for key, expected in self.when.items())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "when": dict(self.when), "channel": self.channel}


def _holds(key: str, expected: Any, facts: Mapping[str, Any]) -> bool:
    if key in _BOOL_CONDITIONS:
        return bool(facts[key]) is expected
    if key == "amount_fen_over":
        return facts["amount_fen"] > expected
    if key == "business_type_in":
        return any(type_matches(pattern, facts["business_type"]) for pattern in expected)
    fact_name = key.removesuffix("_in")
    return facts[fact_name] in expected



def parse_rules(entries: Sequence[Mapping[str, Any]] | None) -> list[Rule]:
    """Check a rule table and build it; every broken entry is reported."""
    problems = ProblemList()
    rules = [_parse(i, entry, problems) for i, entry in enumerate(entries or DEFAULT_RULES)]
    names = [rule.name for rule in rules]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add("routing_rule_name_duplicate", "routing.rules", name, "unique rule names")
    if rules and rules[-1].when:
        problems.add("routing_rules_need_a_final_catch_all", "routing.rules",
                     rules[-1].name, "a last rule with an empty `when`")
    problems.raise_if_any()
    return rules


def _parse(index: int, entry: Mapping[str, Any], problems: ProblemList) -> Rule:
    path = f"routing.rules[{index}]"
    unknown = sorted(set(entry) - {"name", "when", "channel"})
    if unknown:
        problems.add("routing_rule_key_unknown", path, unknown, "name, when, channel")
    name, when, channel = entry.get("name"), entry.get("when", {}), entry.get("channel")
    if not isinstance(name, str) or not name:
        problems.add("routing_rule_needs_a_name", f"{path}/name", name, "a rule name")
    if channel not in CHANNELS:
        problems.add("routing_rule_channel_unknown", f"{path}/channel", channel,
                     " or ".join(CHANNELS))
    if not isinstance(when, Mapping):
        problems.add("routing_rule_when_must_be_a_table", f"{path}/when", when,
                     "a table of conditions")
        when = {}
    for key, value in when.items():
        _check_condition(f"{path}/when/{key}", key, value, problems)
    if channel == "internal" and when.get("same_clearing_account") is not True:
        problems.add("routing_rule_internal_needs_same_clearing_account", f"{path}/when",
                     dict(when), "same_clearing_account = true on a rule routing internally")
    return Rule(str(name), dict(when), str(channel))


def _check_condition(path: str, key: str, value: Any, problems: ProblemList) -> None:
    if key in _BOOL_CONDITIONS:
        valid, expected = isinstance(value, bool), "true or false"
    elif key in _LIST_CONDITIONS:
        valid = isinstance(value, list) and all(isinstance(item, str) for item in value)
        expected = "a list of strings"
    elif key in _INT_CONDITIONS:
        valid, expected = type(value) is int and value >= 0, "a whole number of fen"
    else:
        problems.add("routing_rule_condition_unknown", path, key,
                     ", ".join(_BOOL_CONDITIONS + _LIST_CONDITIONS + _INT_CONDITIONS))
        return
    if not valid:
        problems.add("routing_rule_condition_value_invalid", path, value, expected)
