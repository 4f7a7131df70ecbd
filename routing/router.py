"""The router: which channel, message type and priority an outgoing payment takes.

It combines the participant directory (who settles through whom on the day), our
institutions (which bank codes share a clearing account), the BEPS caps and the rule
table, then applies the HVPS window: when the chosen channel is HVPS and HVPS is closed,
the request's `when_closed` (else the configured default) queues, refuses, or falls
back to BEPS. Every decision can explain itself as a JSON-able dict.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from gateway.errors import Conflict, PaygateError, Problem, ProblemList, ValidationFailed
from gateway.money import format_yuan
from gateway.windows import DEFAULT_TIMETABLE, HVPS_TRANSITIONS, Phase
from routing.directory import Directory
from routing.fields import type_matches
from routing.institutions import Institutions
from routing.limits import BepsLimits
from routing.participants import Participant
from routing.request import (
    PRIORITY, SETTLEMENT_PRIORITY, WHEN_CLOSED, RouteRequest, request_problems,
)
from routing.rules import DEFAULT_RULES, HVPS_ONLY_TYPES, Rule, parse_rules

log = logging.getLogger("paygate.routing.router")

# Types carried by the FI credit transfers (hvps.112, beps.122) even when a customer
# initiates them: treasury, issuance fund, bond settlement and interbank transfers.
INSTITUTION_TYPES = ["A103", "A104", "A106", "A107", "A200"]
# The router places credit transfers (A…): debits and real-time business have their own
# message families and are not routed between HVPS and BEPS. Only the credit types
# SPEC.md d.4 lists: a type the NPC does not know would be refused there, after the
# payer's money was held, so it is refused here (`business_type_not_routable`).
ROUTABLE_TYPES = [*(f"A1{n:02d}" for n in range(18)), "A200", "A201", "A202", "A301",
                  "A307", "A308", "A309", "A400"]

# Decisions remembered at once (see Router.decide); the memory is cleared when full.
DECISIONS_REMEMBERED_MAX = 4096

MESSAGE_TYPES = {
    ("hvps", True): "hvps.111.001.01",
    ("hvps", False): "hvps.112.001.01",
    ("beps", True): "beps.121.001.01",
    ("beps", False): "beps.122.001.01",
}


@dataclass(frozen=True)
class RouteDecision:
    channel: str
    action: str
    message_type: str | None
    priority: int
    settlement_priority: str
    sender_direct: str
    receiver_direct: str
    rule: str
    fallback: str | None = None
    explanation: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # `record()` as JSON, made once per remembered decision (Router.decide).
    record_json: str = field(default="", repr=False, compare=False)
    recorded: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def for_amount(self, amount_fen: int) -> "RouteDecision":
        """This decision for another amount of the same class: only the amount in its
        inputs differs. (A shallow copy of the fields, the explanation's inputs made only
        when read: dataclasses.replace costs five times as much, and every payment of a
        remembered class comes here.)"""
        copied = object.__new__(RouteDecision)
        copied.__dict__.update(self.__dict__)
        copied.__dict__["explanation"] = _ForAmount(self.explanation, amount_fen)
        return copied

    def explain(self) -> dict[str, Any]:
        """The rule, the inputs, the facts and the directory rows used, as JSON-able data."""
        out = {
            "rule": self.rule, "channel": self.channel, "action": self.action,
            "message_type": self.message_type, "priority": self.priority,
            "settlement_priority": self.settlement_priority, "fallback": self.fallback,
            "sender_direct": self.sender_direct, "receiver_direct": self.receiver_direct,
        }
        return out | _copy(self.explanation)

    def record(self) -> dict[str, Any]:
        """What a payment's record keeps of its route: the rule and outcome, the facts,
        the inputs the payment's own fields do not hold (date, window, choices) and the
        directory rows used, by code and version. Nothing in it depends on the amount
        beyond the facts, so many payments share one record (made once by the router,
        then shared: do not change it)."""
        if self.recorded is not None:
            return self.recorded  # type: ignore[return-value]
        explanation = self.explanation
        inputs = explanation.get("inputs", {})
        return {
            "rule": self.rule, "channel": self.channel, "action": self.action,
            "message_type": self.message_type, "priority": self.priority,
            "settlement_priority": self.settlement_priority, "fallback": self.fallback,
            "sender_direct": self.sender_direct, "receiver_direct": self.receiver_direct,
            "inputs": {key: inputs.get(key) for key in _RECORDED_INPUTS},
            "facts": _copy(explanation.get("facts", {})),
            "rules_tried": list(explanation.get("rules_tried", [])),
            "directory": [{"role": row["role"], "bank_code": row["bank_code"],
                           "version": row.get("version")}
                          for row in explanation.get("directory", [])],
        }


class _ForAmount(Mapping[str, Any]):
    """A remembered decision's explanation with another amount in its inputs, made when
    read (most payments never read theirs: their record is the decision's, shared)."""

    __slots__ = ("_explanation", "_amount_fen")

    def __init__(self, explanation: Mapping[str, Any], amount_fen: int) -> None:
        self._explanation = explanation
        self._amount_fen = amount_fen

    def __getitem__(self, key: str) -> Any:
        if key == "inputs":
            return dict(self._explanation["inputs"], amount_fen=self._amount_fen)
        return self._explanation[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._explanation)

    def __len__(self) -> int:
        return len(self._explanation)


# The inputs of a decision that a payment's own columns do not already hold.
_RECORDED_INPUTS = ("customer", "when_closed", "on_date", "hvps_open", "next_hvps_opening")


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


class Router:
    """Decides the route of outgoing credit transfers."""

    def __init__(self, directory: Directory, institutions: Institutions,
                 rules: Sequence[Mapping[str, Any]] | None = None,
                 limits: Sequence[Mapping[str, Any]] | BepsLimits | None = None,
                 when_closed_default: str = "queue",
                 hvps_only_types: Sequence[str] | None = None,
                 institution_types: Sequence[str] | None = None,
                 routable_types: Sequence[str] | None = None,
                 hvps_window: str | None = None) -> None:
        if when_closed_default not in WHEN_CLOSED:
            raise ValidationFailed(Problem(
                "routing_when_closed_default_unknown", "routing.when_closed_default",
                when_closed_default, ", ".join(WHEN_CLOSED)))
        self.directory = directory
        self.institutions = institutions
        self.hvps_only_types = list(HVPS_ONLY_TYPES if hvps_only_types is None
                                    else hvps_only_types)
        self.rules: list[Rule] = parse_rules(rules or _default_rules(self.hvps_only_types))
        self.limits = limits if isinstance(limits, BepsLimits) else BepsLimits(limits)
        self.when_closed_default = when_closed_default
        self.institution_types = list(INSTITUTION_TYPES if institution_types is None
                                      else institution_types)
        self.routable_types = list(ROUTABLE_TYPES if routable_types is None
                                   else routable_types)
        self._amount_thresholds = sorted({int(rule.when["amount_fen_over"])
                                          for rule in self.rules
                                          if "amount_fen_over" in rule.when})
        self._decided: dict[tuple, RouteDecision] = {}
        # When HVPS takes customer payments, in words, for the refusals of a payment that
        # needs HVPS while it is closed (a gateway sets its own timetable's).
        self.hvps_window = hvps_window or DEFAULT_TIMETABLE.business_window()

    def decide(self, req: RouteRequest, on_date: date, hvps_open: bool = True,
               next_hvps_opening: datetime | None = None,
               closed_status: str | None = None) -> RouteDecision:
        """Route one payment on the business date `on_date`; refusals raise PaygateError.
        `closed_status`: the NPC's HVPS status when it, not the clock, keeps HVPS closed
        (the time is inside the business window); a refusal then names it.

        Decisions are remembered: two requests that differ only in an amount on the same
        side of every amount the rules look at (the BEPS cap of the day, each
        `amount_fen_over`) get the same decision, with their own amount in its inputs.
        The thresholds are kept sorted, so how many lie below the amount says on which
        side of each it is (one bisection, not a comparison with each).
        The directory, limits and rules are fixed for the router's life, so a remembered
        decision stays right; refusals are not remembered.
        """
        if type(req.amount_fen) is not int or req.amount_fen <= 0:
            return self._decide(req, on_date, hvps_open, next_hvps_opening, closed_status)
        limit = self.limits.limit_for(req.business_type, on_date)
        key = (req.payer_bank, req.payee_bank, req.business_type, req.business_kind,
               req.urgency, req.when_closed, req.customer, on_date, hvps_open,
               next_hvps_opening, closed_status,
               limit.cap_fen is not None and req.amount_fen > limit.cap_fen,
               bisect_left(self._amount_thresholds, req.amount_fen))
        known = self._decided.get(key)
        if known is not None:
            return known.for_amount(req.amount_fen)
        decision = self._decide(req, on_date, hvps_open, next_hvps_opening, closed_status)
        recorded = decision.record()
        decision = replace(decision, recorded=recorded,
                           record_json=json.dumps(recorded, ensure_ascii=False))
        if len(self._decided) >= DECISIONS_REMEMBERED_MAX:
            self._decided.clear()
        self._decided[key] = decision
        return decision

    def _decide(self, req: RouteRequest, on_date: date, hvps_open: bool,
                next_hvps_opening: datetime | None,
                closed_status: str | None = None) -> RouteDecision:
        entries = self._entries(req, on_date)
        facts = self._facts(req, on_date)
        rule, tried = self._match(facts)
        if rule.channel != "internal" and \
                entries["sender_direct"].bank_code == entries["receiver_direct"].bank_code:
            # CNAPS refuses a message whose sending and receiving participant are one
            # (payer_and_payee_clearing_banks_must_differ): a payee branch of ours that
            # does not share the payer branch's clearing account is not reachable by it.
            raise PaygateError(Problem(
                "payer_and_payee_clearing_banks_must_differ", "payee_bank", req.payee_bank,
                "a bank whose direct participant is not "
                f"{entries['sender_direct'].bank_code}, or a branch sharing the payer "
                "branch's clearing account (a transfer inside our own books)"), 422)

        channel, action, fallback = rule.channel, "send", None
        when_closed = None
        if channel == "hvps" and not hvps_open:
            when_closed = req.when_closed or self.when_closed_default
            channel, action, fallback = self._closed(req, facts, when_closed, next_hvps_opening,
                                                     closed_status)

        decision = RouteDecision(
            channel=channel, action=action,
            message_type=self._message_type(channel, req),
            priority=PRIORITY[req.urgency],
            settlement_priority=SETTLEMENT_PRIORITY[req.urgency],
            sender_direct=entries["sender_direct"].bank_code,
            receiver_direct=entries["receiver_direct"].bank_code,
            rule=rule.name, fallback=fallback,
            explanation=_explanation(req, on_date, hvps_open, next_hvps_opening, facts,
                                     when_closed, tried, entries),
        )
        log.debug("event=route_decided payer_bank=%s payee_bank=%s rule=%s channel=%s "
                  "action=%s", req.payer_bank, req.payee_bank, rule.name, channel, action)
        return decision

    def problems(self, req: RouteRequest, on_date: date) -> list[Problem]:
        """Every problem `decide` would refuse the request for before looking at windows."""
        try:
            self._entries(req, on_date)
        except PaygateError as error:
            return list(error.problems)
        return []

    def _entries(self, req: RouteRequest, on_date: date) -> dict[str, Participant]:
        """The directory rows of both banks and their direct participants, or all problems."""
        problems = request_problems(req)
        if not problems and not any(type_matches(p, req.business_type)
                                    for p in self.routable_types):
            problems.add("business_type_not_routable", "business_type", req.business_type,
                         "a credit transfer type carried by hvps.111/112 or beps.121/122 "
                         f"({', '.join(self.routable_types)})")
        entries: dict[str, Participant] = {}
        for role, direct_role in (("payer_bank", "sender_direct"),
                                  ("payee_bank", "receiver_direct")):
            row = self._lookup(getattr(req, role), on_date, role, problems)
            if row is None:
                continue
            entries[role] = row
            direct = self._lookup(row.direct_participant, on_date,
                                  f"{role}/direct_participant", problems)
            if direct is not None and direct.kind != "direct":
                problems.add("direct_participant_not_direct", f"{role}/direct_participant",
                             direct.bank_code, f"a direct participant on {on_date.isoformat()}")
            if direct is not None:
                entries[direct_role] = direct
        if "payer_bank" in entries and self.institutions.by_bank_code(req.payer_bank) is None:
            problems.add("payer_bank_not_ours", "payer_bank", req.payer_bank,
                         "the bank code of one of our institutions")
        problems.raise_if_any()
        return entries

    def _lookup(self, bank_code: str, on_date: date, path: str,
                problems: ProblemList) -> Participant | None:
        try:
            return self.directory.lookup(bank_code, on_date, path)
        except PaygateError as error:
            # Collected so that both banks' problems are reported together, then raised.
            problems.extend(error.problems)
            return None

    def _facts(self, req: RouteRequest, on_date: date) -> dict[str, Any]:
        limit = self.limits.limit_for(req.business_type, on_date)
        shared = self.institutions.shared_clearing_account(req.payer_bank, req.payee_bank)
        return {
            "amount_fen": req.amount_fen, "business_type": req.business_type,
            "urgency": req.urgency, "customer": req.customer,
            "payer_bank": req.payer_bank, "payee_bank": req.payee_bank,
            "payer_ours": self.institutions.by_bank_code(req.payer_bank) is not None,
            "payee_ours": self.institutions.by_bank_code(req.payee_bank) is not None,
            "same_clearing_account": shared is not None, "clearing_account": shared,
            "beps_limit": limit.to_dict(),
            "over_beps_limit": limit.cap_fen is not None and req.amount_fen > limit.cap_fen,
        }

    def _match(self, facts: Mapping[str, Any]) -> tuple[Rule, list[str]]:
        tried: list[str] = []
        for rule in self.rules:
            tried.append(rule.name)
            if rule.matches(facts):
                return rule, tried
        raise AssertionError("the rule table ends with a catch-all rule")

    def _closed(self, req: RouteRequest, facts: Mapping[str, Any], when_closed: str,
                next_opening: datetime | None,
                closed_status: str | None = None) -> tuple[str, str, str | None]:
        """Channel, action and fallback for a payment that needs HVPS while it is closed.
        A refusal expects a time inside the HVPS business window and tells when HVPS
        opens next, in its message and as `next_opening` (null when not known). Closed by
        the NPC's status inside the window (`closed_status`), it expects instead the
        status in which HVPS takes customer payments and names the one in force."""
        opening = next_opening.isoformat() if next_opening else None
        when = f"HVPS is closed and opens next at {opening}" if opening else "HVPS is closed"
        window = "a time inside the HVPS business window, " + self.hvps_window
        if closed_status is not None:
            when, window = _closed_by_status(closed_status)
        detail = (("next_opening", opening),)
        if when_closed == "queue":
            return "hvps", "queue", None
        if when_closed == "refuse":
            raise Conflict(Problem("hvps_closed", "when_closed", when_closed, window,
                                   f"the payment needs HVPS and {when}", detail))
        if any(type_matches(p, req.business_type) for p in self.hvps_only_types):
            raise Conflict(Problem(
                "business_type_hvps_only_and_hvps_closed", "business_type",
                req.business_type, window,
                f"{req.business_type} exists only on HVPS and {when}", detail))
        if facts["over_beps_limit"]:
            cap_yuan = format_yuan(facts["beps_limit"]["cap_fen"])
            raise Conflict(Problem(
                "amount_over_beps_limit_and_hvps_closed", "amount_fen", req.amount_fen,
                f"an amount within the BEPS cap of {cap_yuan} yuan, or {window}",
                f"{format_yuan(req.amount_fen)} yuan is above the BEPS cap of "
                f"{cap_yuan} yuan and {when}", detail))
        return "beps", "send", "beps"

    def _message_type(self, channel: str, req: RouteRequest) -> str | None:
        if channel == "internal":
            return None
        institutional = any(type_matches(p, req.business_type) for p in self.institution_types)
        return MESSAGE_TYPES[(channel, req.customer and not institutional)]


def _closed_by_status(status: str) -> tuple[str, str]:
    """(why, expected) of a refusal while the time is inside the business window but the
    NPC's status (ccms.801) is not the one in which HVPS takes customer payments."""
    opening = next(Phase.from_code(code, date.min) for code in sorted(HVPS_TRANSITIONS)
                   if Phase.from_code(code, date.min).accepts_customer_payments)
    named = status
    if status in HVPS_TRANSITIONS:
        named += f" ({Phase.from_code(status, date.min).name_en})"
    why = (f"HVPS is closed: the NPC's HVPS status is {named}, though the time is inside "
           f"the business window; it opens when the NPC announces {opening.code}")
    expected = (f"HVPS status {opening.code} ({opening.name_en}), the only status in which "
                f"HVPS takes customer payments; the NPC's status now is {named}")
    return why, expected


def _default_rules(hvps_only_types: list[str]) -> list[dict[str, Any]]:
    rules = _copy(DEFAULT_RULES)
    for rule in rules:
        if rule["name"] == "hvps_only_kind":
            rule["when"]["business_type_in"] = list(hvps_only_types)
    return rules


def _explanation(req: RouteRequest, on_date: date, hvps_open: bool,
                 next_opening: datetime | None, facts: Mapping[str, Any],
                 when_closed: str | None, tried: list[str],
                 entries: Mapping[str, Participant]) -> dict[str, Any]:
    inputs = req.to_dict() | {
        "on_date": on_date.isoformat(), "hvps_open": hvps_open,
        "next_hvps_opening": next_opening.isoformat() if next_opening else None,
    }
    return {
        "inputs": inputs,
        "facts": {key: facts[key] for key in (
            "payer_ours", "payee_ours", "same_clearing_account", "clearing_account",
            "beps_limit", "over_beps_limit")} | {"when_closed_applied": when_closed},
        "rules_tried": tried,
        "directory": [{"role": role} | row.to_dict() for role, row in entries.items()],
    }
