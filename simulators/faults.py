"""Faults on the link between the simulated NPC and the external banks.

They exercise the gateway's retries, duplicate detection and status queries:

- `drop`: probability that a message to a bank is silently not sent;
- `duplicate`: probability that a delivered message is sent a second time;
- `delay_ms`: a pause before every delivery;
- `reorder`: waiting messages to a bank are delivered in a shuffled order;
- `error_status`: the NPC answers every inbound POST with this status and takes nothing;
- `offline`: the NPC takes nothing (503) and delivers nothing until back online;
- `lose_result`: the next n ccms.900 results to banks are not sent;
- `discard`, `discard_share`, `discard_rule`: the next n messages a bank sends, or that
  share of them, are thrown away unprocessed with a ccms.911 naming the rule
  (`signature`: CC9S0001, as when the NPC holds a wrong public key of the bank;
  `format`: CC9F0001), so a bank can rehearse an NPC that discards its messages.

Every random choice comes from one generator seeded by `--seed`, so a run repeats.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from gateway.errors import Problem, ProblemList, ValidationFailed

DELAY_MS_MAX = 60_000  # a minute; longer pauses look like an outage, use `offline`
COUNT_MAX = 1_000_000  # messages a counted fault (`lose_result`, `discard`) may take
# The rules a `discard` fault's ccms.911 may name, each as the problem the NPC's check of
# that stage reports (simulators.node maps a `signature_` problem to CC9S0001, any other
# to CC9F0001).
DISCARD_RULES = {"signature": "signature_discarded_by_fault",
                 "format": "format_discarded_by_fault"}


@dataclass(frozen=True)
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    delay_ms: int = 0
    reorder: bool = False
    error_status: int | None = None
    offline: bool = False
    lose_result: int = 0
    discard: int = 0
    discard_share: float = 0.0
    discard_rule: str = "signature"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probability(key: str, value: Any, problems: ProblemList) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        problems.add("fault_probability_must_be_between_0_and_1", f"/{key}", value,
                     "a number from 0.0 to 1.0")


def _whole(key: str, value: Any, bound: int, problems: ProblemList) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bound:
        problems.add("fault_count_must_be_a_whole_number", f"/{key}", value,
                     f"a whole number from 0 to {bound}")


def _flag(key: str, value: Any, problems: ProblemList) -> None:
    if not isinstance(value, bool):
        problems.add("fault_flag_must_be_true_or_false", f"/{key}", value, "true or false")


def _status(key: str, value: Any, problems: ProblemList) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 400 <= value <= 599):
        problems.add("fault_status_must_be_an_http_error", f"/{key}", value,
                     "null or an HTTP status from 400 to 599")


def _rule(key: str, value: Any, problems: ProblemList) -> None:
    if value not in DISCARD_RULES:
        problems.add("fault_discard_rule_unknown", f"/{key}", value, ", ".join(DISCARD_RULES))


_CHECKS = {
    "drop": _probability,
    "duplicate": _probability,
    "delay_ms": lambda k, v, p: _whole(k, v, DELAY_MS_MAX, p),
    "reorder": _flag,
    "error_status": _status,
    "offline": _flag,
    "lose_result": lambda k, v, p: _whole(k, v, COUNT_MAX, p),
    "discard": lambda k, v, p: _whole(k, v, COUNT_MAX, p),
    "discard_share": _probability,
    "discard_rule": _rule,
}


def updated(current: Faults, changes: Any) -> Faults:
    """The faults with the given keys changed; every bad key or value is reported."""
    problems = ProblemList()
    if not isinstance(changes, dict):
        problems.add("body_must_be_a_json_object", "/", type(changes).__name__, "an object")
        problems.raise_if_any(ValidationFailed)
    for key, value in changes.items():
        check = _CHECKS.get(key)
        if check is None:
            problems.add("fault_unknown", f"/{key}", key, ", ".join(_CHECKS))
        else:
            check(key, value, problems)
    problems.raise_if_any(ValidationFailed)
    return replace(current, **changes)


class FaultState:
    """The faults in force and the seeded generator that draws against them."""

    def __init__(self, seed: int, banks: frozenset[str] = frozenset()) -> None:
        self.faults = Faults()
        self.rng = random.Random(seed)
        self.banks = banks  # the external banks, the only senders `discard` acts on

    def draw(self, probability: float) -> bool:
        # Draw only when the fault is on, so that turning a fault off and on again does
        # not shift every later draw of an unrelated run.
        return probability > 0 and self.rng.random() < probability

    def take_lost_result(self) -> bool:
        if self.faults.lose_result <= 0:
            return False
        self.faults = replace(self.faults, lose_result=self.faults.lose_result - 1)
        return True

    def discard_of(self, sender: str) -> Problem | None:
        """Whether the `discard` faults throw away the message `sender` sent: the problem
        its ccms.911 names, or None. A counted discard is used up first; the share is
        drawn only for a message the count leaves alone."""
        f = self.faults
        if sender not in self.banks or not (f.discard or f.discard_share):
            return None
        if f.discard > 0:
            self.faults = replace(f, discard=f.discard - 1)
        elif not self.draw(f.discard_share):
            return None
        code = DISCARD_RULES[f.discard_rule]
        return Problem(code, "{H:/orig_sender", sender, "a message the NPC processes",
                       f"discarded by the simulated NPC's `discard` fault ({f.discard_rule})")
