"""Why a new outgoing payment must wait for a second person before it is sent.

Two checks run at intake, after the payment's own fields are valid:

- `review_reason`: amounts above `settings.review_threshold_fen` (when it is not 0)
  need a second person's review (复核) before they leave the bank.
- `screen`: sanctions and anti-money-laundering screening against a list of blocked
  names and accounts in a TOML file (`settings.screening_file`; when that setting is
  absent or empty, the demo list beside this module).

A non-None answer is a stable reason code; the payment is stored in state `held` with
that reason, and its outbox row in state `review` (not `waiting`, which the opening of
HVPS releases by itself), until a supervisor approves (the payment goes on) or rejects
(the payment is cancelled and its funds released) from the console. The gateway calls
`hold_reason` (both checks) through its `review` hook.
"""

from __future__ import annotations

import os
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import icu

from gateway.errors import PaygateError, Problem

REVIEW_ABOVE_THRESHOLD = "review_amount_above_threshold"
REASON_PREFIXES = ("review_", "screening_")
OUTBOX_HELD = "held"      # outbox state of a payment an operator holds
OUTBOX_REVIEW = "review"  # outbox state of a payment waiting for review or screening

DEMO_LIST = Path(__file__).with_name("screening.toml")
_DEMO_LIST_TEXT = str(DEMO_LIST)
# A blocked name this long or longer also matches inside a longer name; shorter names
# must match whole, because short fragments occur in too many innocent names.
CONTAINED_NAME_LEN_MIN = 4
ENTRIES_MAX = 100_000  # bounds the list a file may hold
# Names whose answer a list keeps (`BlockedList.matches_name`): a bank's payers are its
# customers, named again payment after payment; the answers are dropped when full.
NAMES_KEPT_MAX = 8192


def review_reason(transfer: Any, settings: Any) -> str | None:
    """`review_amount_above_threshold` when the amount needs a second review, else None."""
    threshold_fen = getattr(settings, "review_threshold_fen", 0) or 0
    if threshold_fen > 0 and transfer.amount_fen > threshold_fen:
        return REVIEW_ABOVE_THRESHOLD
    return None


def screen(transfer: Any, settings: Any = None) -> str | None:
    """The screening reason (which party, which field matched), or None when clear."""
    blocked = BlockedList.for_path(_list_path(settings))
    for party in ("payer", "payee"):
        account = getattr(transfer, f"{party}_account", "") or ""
        if account in blocked.accounts:
            return f"screening_match_{party}_account"
        if blocked.matches_name(getattr(transfer, f"{party}_name", "") or ""):
            return f"screening_match_{party}_name"
    return None


def hold_reason(transfer: Any, settings: Any) -> str | None:
    """Screening first (it must be seen even for small amounts), then the review rule."""
    return screen(transfer, settings) or review_reason(transfer, settings)


def is_review_hold(reason: str | None) -> bool:
    return bool(reason) and reason.startswith(REASON_PREFIXES)


# ICU's implementation of the confusable skeleton of Unicode TR39 (section 4): letters
# of other scripts that look like Latin ones (Cyrillic В, Greek Ο) and look-alike
# sequences (rn for m) map to one prototype, so a name spelt with them is screened as
# the name it imitates. ICU keeps the confusables data current with Unicode.
_SPOOF = icu.SpoofChecker()


def normalise(name: str) -> str:
    """The form names are compared in: width (NFKC), look-alike letters (skeleton), case,
    spaces and punctuation folded away, so 'ＡＢＣ Co.', 'АВС со' (Cyrillic) and 'abcco'
    agree. The skeleton is taken of the name in capitals (a capital Cyrillic В looks
    like B, its small в like no Latin letter; I and l look alike only as I) and again
    after case folding (the small letters' own look-alikes: rn for m)."""
    wide = unicodedata.normalize("NFKC", name).upper()
    folded = _SPOOF.getSkeleton(0, _SPOOF.getSkeleton(0, wide).casefold())
    return "".join(c for c in folded if unicodedata.category(c)[0] not in "PZSC")


def _list_path(settings: Any) -> str:
    configured = getattr(settings, "screening_file", "") if settings is not None else ""
    return str(configured) if configured else _DEMO_LIST_TEXT


@dataclass(frozen=True)
class BlockedList:
    names: frozenset[str]
    accounts: frozenset[str]
    # The answer for each name screened against this list (a list read again from its
    # file is a new BlockedList, with none): normalising a name (NFKC, two confusable
    # skeletons, case folding) and looking for every blocked name inside it cost about
    # seven microseconds a name, twice a payment.
    _answers: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def for_path(cls, path: str | Path) -> "BlockedList":
        # os.stat of the text: a Path made and stat'ed per payment cost ten times as much.
        path = str(path)
        mtime_ns = os.stat(path).st_mtime_ns
        cached = _LOADED.get(path)
        if cached is None or cached[0] != mtime_ns:
            cached = (mtime_ns, cls.load(path))
            _LOADED[path] = cached
        return cached[1]

    @classmethod
    def load(cls, path: str | Path) -> "BlockedList":
        path = Path(path)
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        names, accounts = data.get("names", []), data.get("accounts", [])
        problems = [Problem("screening_list_malformed", f"{path.name}/{key}", None,
                            f"a list of at most {ENTRIES_MAX} strings")
                    for key, value in (("names", names), ("accounts", accounts))
                    if not isinstance(value, list) or len(value) > ENTRIES_MAX
                    or not all(isinstance(x, str) and x.strip() for x in value)]
        if problems:
            raise PaygateError(problems)
        return cls(frozenset(n for n in map(normalise, names) if n),
                   frozenset(a.strip() for a in accounts))

    def matches_name(self, name: str) -> bool:
        answer = self._answers.get(name)
        if answer is None:
            if len(self._answers) >= NAMES_KEPT_MAX:
                self._answers.clear()
            answer = self._answers[name] = self._matches(name)
        return answer

    def _matches(self, name: str) -> bool:
        folded = normalise(name)
        if not folded:
            return False
        if folded in self.names:
            return True
        return any(len(b) >= CONTAINED_NAME_LEN_MIN and b in folded for b in self.names)


# Lists by path with the modification time they were read at; read again when it changes.
_LOADED: dict[str, tuple[int, BlockedList]] = {}
