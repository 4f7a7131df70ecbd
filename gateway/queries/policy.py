"""The query desk's policy: deadlines, reminders and which queries are answered unasked.

Every value has a default and may be set by a gateway setting of the same name with the
prefix `queries_` (gateway/config.py declares them; README's configuration table and
docs/queries.md list them). A setting left unset keeps the default; `QueryDesk.tune`
changes the policy of a running gateway (tests, the demo).

Which queries the gateway answers on its own is a bank's choice, not a CNAPS2 rule
(DOMAIN.md §2 only says every query gets a full reply in time). The defaults answer a
plain question about where a payment stands, when our records say so, and leave anything
that asks for a judgement (returns, freezes, corrections, complaints) to an operator.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import time
from typing import Any

from gateway.errors import PaygateError, Problem

# A query with no QryTp is taken as QT00: the sources show QT00 on queries about a
# payment (SPEC.md c, ccms.314), which is what a query without a type is in practice.
QUERY_TYPE_DEFAULT = "QT00"


@dataclass(frozen=True)
class QueryPolicy:
    # "The morning of the next working day" ends here (DOMAIN.md §2; the PBOC timetable
    # also closes manual handling of early receipts at 12:00).
    morning_cutoff_at: str = "12:00"
    # Operators are warned this long before a reply falls due.
    warn_before_min: int = 120
    # How often the deadline timer looks for items nearing or past their due time.
    check_interval_s: float = 30.0
    auto_answer: bool = True
    auto_answer_types: tuple[str, ...] = ("QT00",)
    # A question is recognised as one the records answer when it has one of these words
    # (arrival, crediting, status, settlement, suspense)...
    auto_answer_keywords: tuple[str, ...] = (
        "入账", "到账", "未收到", "收到", "入户", "状态", "清算", "挂账", "查询款项")
    # ...and none of these, which ask for someone's judgement (return, stop, freeze,
    # correction, amendment, cancellation, complaint).
    operator_keywords: tuple[str, ...] = (
        "退汇", "退回", "止付", "冻结", "错账", "更正", "修改", "撤销", "投诉")

    @property
    def cutoff(self) -> time:
        return _parse_time(self.morning_cutoff_at)


def _parse_time(value: str) -> time:
    hours, _, minutes = value.partition(":")
    return time(int(hours), int(minutes))


def from_settings(settings: Any) -> QueryPolicy:
    """The policy from `queries_<name>` settings where present, checked once."""
    values: dict[str, Any] = {}
    for f in fields(QueryPolicy):
        given = getattr(settings, f"queries_{f.name}", None)
        if given is not None:
            values[f.name] = tuple(given) if isinstance(given, list) else given
    policy = QueryPolicy(**values)
    check(policy)
    return policy


def check(policy: QueryPolicy) -> None:
    problems = []
    try:
        cutoff = policy.cutoff
        valid_cutoff = time(6, 0) <= cutoff <= time(18, 0)
    except ValueError:
        valid_cutoff = False
    if not valid_cutoff:
        problems.append(Problem("setting_malformed", "queries_morning_cutoff_at",
                                policy.morning_cutoff_at, "HH:MM between 06:00 and 18:00"))
    if policy.warn_before_min < 0:
        problems.append(Problem("setting_malformed", "queries_warn_before_min",
                                policy.warn_before_min, "0 or more minutes"))
    if policy.check_interval_s <= 0:
        problems.append(Problem("setting_malformed", "queries_check_interval_s",
                                policy.check_interval_s, "a positive number of seconds"))
    unknown = [t for t in policy.auto_answer_types if t not in ("QT00", "QT01")]
    if unknown:
        problems.append(Problem("setting_malformed", "queries_auto_answer_types", unknown,
                                "QT00 and/or QT01"))
    if problems:
        raise PaygateError(problems)
