"""Why a new outgoing payment must wait for a second person before it is sent.

Two checks run at intake, after the payment's own fields are valid:

- `review_reason`: amounts above `settings.review_threshold_fen` (when it is not 0)
  need a second person's review (复核) before they leave the bank.
- `screen`: sanctions and anti-money-laundering screening against a list of blocked
  names and accounts in a TOML file (`settings.screening_file`; when that setting is
  absent or empty, the demo list beside this module).

A non-None answer is a stable reason code; the payment is stored in state `held` with
that reason (an HVPS payment's outbox row in state `review`, not `waiting`, which the
opening of HVPS releases by itself; a BEPS item set aside, out of packing), until a
supervisor approves (the payment goes on) or rejects (the payment is cancelled and its
funds released) from the console. The gateway calls `hold_reason` (both checks) through
its `review` hook, for every outgoing customer payment whatever its channel;
`hold_reason.for_batch(settings)` is the same check with the list read once, for the
transfers of one batch.
"""

from __future__ import annotations

import os
import threading
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import icu

from gateway.errors import PaygateError, Problem
from gateway.states import REVIEW_REASON_PREFIXES

REVIEW_ABOVE_THRESHOLD = "review_amount_above_threshold"
REASON_PREFIXES = REVIEW_REASON_PREFIXES
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
    return _screened(BlockedList.for_path(_list_path(settings)), transfer)


def _screened(blocked: "BlockedList", transfer: Any) -> str | None:
    # Each field read by name (not in a loop over the parties): a batch screens every
    # transfer, and this is most of the cost of one.
    if blocked.matches_account(transfer.payer_account or ""):
        return "screening_match_payer_account"
    if blocked.matches_name(transfer.payer_name or ""):
        return "screening_match_payer_name"
    if blocked.matches_account(transfer.payee_account or ""):
        return "screening_match_payee_account"
    if blocked.matches_name(transfer.payee_name or ""):
        return "screening_match_payee_name"
    return None


class HoldReason:
    """The gateway's review hook: `hold_reason(transfer, settings)` gives the reason to
    hold a new outgoing payment (screening first: it must be seen even for small
    amounts; then the review rule), or None."""

    def __call__(self, transfer: Any, settings: Any) -> str | None:
        return screen(transfer, settings) or review_reason(transfer, settings)

    def for_batch(self, settings: Any) -> Callable[[Any], str | None]:
        """The same check for the transfers of one batch: the list is looked up (its
        file's modification time read) once, not once a transfer."""
        blocked = BlockedList.for_path(_list_path(settings))
        return lambda transfer: (_screened(blocked, transfer)
                                 or review_reason(transfer, settings))

    def screening(self, settings: Any) -> Callable[[Any], str | None]:
        """The screening alone (no amount review), the list read once: for payments the
        gateway makes or takes from stored rows (gateway.screening: the debits another
        bank sends us that our receipt would pay, the credits it sends us before they are
        credited, our own debits, our returns of incoming payments and from suspense)."""
        blocked = BlockedList.for_path(_list_path(settings))
        return lambda transfer: _screened(blocked, transfer)


hold_reason = HoldReason()


def is_review_hold(reason: str | None) -> bool:
    return bool(reason) and reason.startswith(REASON_PREFIXES)


# ICU's implementation of the confusable skeleton of Unicode TR39 (section 4): letters
# of other scripts that look like Latin ones (Cyrillic В, Greek Ο) and look-alike
# sequences (rn for m) map to one prototype, so a name spelt with them is screened as
# the name it imitates. ICU keeps the confusables data current with Unicode.
_SPOOF = icu.SpoofChecker()


# Traditional characters to simplified ones (貿 to 贸): a name written in either form is
# screened as the same name. ICU's transliterators are not documented as safe to share
# between threads, and store work runs on several: one at a time.
_HANT_HANS = icu.Transliterator.createInstance("Hant-Hans")
_HANT_HANS_LOCK = threading.Lock()


def _simplified(text: str) -> str:
    if text.isascii():
        return text
    with _HANT_HANS_LOCK:
        return _HANT_HANS.transliterate(text)


def normalise(name: str) -> str:
    """The form names are compared in: width (NFKC), traditional Chinese characters as
    simplified ones, look-alike letters (skeleton), case, spaces and punctuation folded
    away, so 'ＡＢＣ Co.', 'АВС со' (Cyrillic) and 'abcco' agree, and so do 貿易 and
    贸易. The skeleton is taken of the name in capitals (a capital Cyrillic В looks
    like B, its small в like no Latin letter; I and l look alike only as I) and again
    after case folding (the small letters' own look-alikes: rn for m)."""
    wide = _simplified(unicodedata.normalize("NFKC", name)).upper()
    folded = _SPOOF.getSkeleton(0, _SPOOF.getSkeleton(0, wide).casefold())
    return "".join(c for c in folded if unicodedata.category(c)[0] not in "PZSC")


def normalise_account(account: str) -> str:
    """The form accounts are compared in: width (NFKC) and case folded, spaces and
    punctuation (separators such as '-') dropped, as names have them dropped, so
    'blocked-demo-0001' and 'BLOCKED DEMO 0001' agree with 'BLOCKED-DEMO-0001'."""
    if account.isascii():
        if account.isalnum():  # nearly every account: digits, or letters and digits
            return account.casefold()
        return "".join(filter(str.isalnum, account.casefold()))
    folded = unicodedata.normalize("NFKC", account).casefold()
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
                   frozenset(a for a in map(normalise_account, accounts) if a))

    def matches_account(self, account: str) -> bool:
        folded = normalise_account(account)
        return bool(folded) and folded in self.accounts

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
