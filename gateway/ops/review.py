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

import hashlib
import json
import logging
import os
import threading
import time
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

import icu

from gateway.errors import PaygateError, Problem
from gateway.states import REVIEW_REASON_PREFIXES

log = logging.getLogger("paygate.ops")

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
LIST_KEYS = ("names", "accounts")  # the only keys a list file has
LIST_KEYS_EXPECTED = ("only the keys `names` and `accounts` (one or both), each a list "
                      "of strings")
# Bad entries a malformed list's problem names (their count is told in full).
BAD_ENTRIES_TOLD = 20
# The copy of the last list taken into force, in the data folder (`keep_last_good`): a
# restart while the file is broken starts with it rather than being refused.
LAST_GOOD_FILE = "screening_last_good.json"
# Names whose answer a list keeps (`BlockedList.matches_name`): a bank's payers are its
# customers, named again payment after payment; the answers are dropped when full.
NAMES_KEPT_MAX = 8192
# How long a changed list file must stay unchanged (by its modification time) before it
# is read: an editor writes a list of ENTRIES_MAX lines well within it, and a payment
# screened meanwhile meets the list in force before the change.
SETTLE_S = 1.0
# The real time, which file modification times are stamped in (not the gateway's clock,
# which a simulated day moves).
wall_s = time.time
# The time a list is taken into force is told by the gateway's clock, as every other
# time operators see (CONTRACT.md §3), given for the file by `use_clock`; the real
# time, in UTC, only until a gateway gave its clock.
Now = Callable[[], datetime]


def review_reason(transfer: Any, settings: Any) -> str | None:
    """`review_amount_above_threshold` when the amount needs a second review, else None."""
    threshold_fen = getattr(settings, "review_threshold_fen", 0) or 0
    if threshold_fen > 0 and transfer.amount_fen > threshold_fen:
        return REVIEW_ABOVE_THRESHOLD
    return None


def screen(transfer: Any, settings: Any = None) -> str | None:
    """The screening reason (which party, which field matched), or None when clear."""
    return _screened(BlockedList.for_path(list_path(settings)), transfer)


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
        blocked = BlockedList.for_path(list_path(settings))
        return lambda transfer: (_screened(blocked, transfer)
                                 or review_reason(transfer, settings))

    def screening(self, settings: Any) -> Callable[[Any], str | None]:
        """The screening alone (no amount review), the list read once: for payments the
        gateway makes or takes from stored rows (gateway.screening: the debits another
        bank sends us that our receipt would pay, the credits it sends us before they are
        credited, our own debits, our returns of incoming payments and from suspense)."""
        blocked = BlockedList.for_path(list_path(settings))
        return lambda transfer: _screened(blocked, transfer)

    def in_force(self, settings: Any) -> BlockedList:
        """The list the screening reads for `settings` now (its digest, its entries)."""
        return BlockedList.for_path(list_path(settings))


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


# What a name is compared without besides spaces and punctuation: the combining marks
# (Mn, Me) that sit on a letter of a script whose accents are decoration for matching
# (the accent of "Blo\u0307cked", which NFKD takes off é too), and the characters
# Unicode names default-ignorable, which a screen shows as nothing (ICU's
# Default_Ignorable_Code_Point: the variation selectors U+FE00-FE0F and U+E0100-E01EF,
# the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, which are letters by category, the
# combining grapheme joiner, the zero-width characters). Intake refuses them in a
# transfer's names (gateway.intake.text_problem); an incoming payment cannot be refused
# for them, so screening compares the name without them.
# The Arabic tatweel U+0640, a letter by category, only stretches the line between two
# letters (حـسن reads حسن): dropped with them.
_IGNORABLE = frozenset(icu.UnicodeSet("[:Default_Ignorable_Code_Point:]")) | {"\u0640"}
_MARKS = ("Mn", "Me")
# The letters whose marks are dropped: Latin, Greek and Cyrillic (José is Jose, Ёлкин
# Елкин), and the characters of no script of their own (digits, punctuation, a mark
# with no letter before it). The marks of other scripts spell: the dakuten of ガ (カ is
# another kana), the vowel signs of महेश and มีนา, and are kept. Han characters take no
# marks in a name, so theirs are dropped too, but only from the name as given: its
# skeleton writes some kana as Han look-alikes (カ as 力), whose dakuten stay.
_NO_SCRIPT = "[:sc=Zyyy:][:sc=Zinh:][:sc=Zzzz:]"
_ACCENTED_SCRIPTS = f"[:sc=Latn:][:sc=Grek:][:sc=Cyrl:]{_NO_SCRIPT}"


def _frozen_set(pattern: str) -> icu.UnicodeSet:
    """The set `pattern` names, made read-only (ICU's sets read faster so)."""
    made = icu.UnicodeSet(pattern)
    made.freeze()
    return made


_MARKS_DROPPED_GIVEN = _frozen_set(f"[{_ACCENTED_SCRIPTS}[:sc=Hani:]]")
_MARKS_DROPPED_SKELETON = _frozen_set(f"[{_ACCENTED_SCRIPTS}]")
# The general categories a compared name leaves out: punctuation, spaces, symbols,
# controls, format, private-use and unassigned code points.
_LEFT_OUT = frozenset(("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Zs", "Zl", "Zp", "Sm",
                       "Sc", "Sk", "So", "Cc", "Cf", "Cs", "Co", "Cn"))


def _unmarked(text: str, marks_dropped: icu.UnicodeSet) -> str:
    """`text` without its ignorables and the combining marks on a letter in
    `marks_dropped`, taken off before case folding turns a mark into a letter (U+0345
    folds to the Greek ι, whose look-alike is l)."""
    if text.isascii():
        return text
    kept = []
    dropping = True  # a mark before any letter sits on nothing
    for c in text:
        if c in _IGNORABLE:
            continue
        if unicodedata.category(c) in _MARKS:
            if dropping:
                continue
        else:
            dropping = marks_dropped.contains(c)
        kept.append(c)
    return "".join(kept)


def normalise(name: str) -> str:
    """The form names are compared in: width (NFKD), accents and invisible characters
    (the marks and ignorables above), traditional Chinese characters as simplified ones,
    look-alike letters (skeleton), case, spaces and punctuation folded away, so
    'ＡＢＣ Co.', 'АВС со' (Cyrillic), 'ÀBC co' with a variation selector U+FE0F after
    its C, and 'abcco' agree, and so do 貿易 and 贸易. The skeleton is taken of the name
    in capitals (a capital Cyrillic В looks like B, its small в like no Latin letter; I
    and l look alike only as I) and again after case folding (the small letters' own
    look-alikes: rn for m). Marks and ignorables are dropped right after NFKD has set
    them apart from their letters, before anything else reads the name, and again from
    the skeleton's output; the marks of the scripts they spell in are kept (ガ is not
    カ, महेश not महश), in the decomposed form the skeleton gives both names compared."""
    given = _unmarked(unicodedata.normalize("NFKD", name), _MARKS_DROPPED_GIVEN)
    wide = _simplified(given).upper()
    folded = _SPOOF.getSkeleton(0, _SPOOF.getSkeleton(0, wide).casefold())
    return "".join(c for c in _unmarked(folded, _MARKS_DROPPED_SKELETON)
                   if unicodedata.category(c) not in _LEFT_OUT)


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


def list_path(settings: Any) -> str:
    """The screening file in force for `settings`: the one configured, or the demo list."""
    configured = getattr(settings, "screening_file", "") if settings is not None else ""
    return str(configured) if configured else _DEMO_LIST_TEXT


@dataclass(frozen=True)
class BlockedList:
    names: frozenset[str]
    accounts: frozenset[str]
    sha256: str = ""  # of the file's bytes the list was read from (the audit log's)
    # The file's bytes, for the copy kept in the data folder (`keep_last_good`).
    source: bytes = field(default=b"", compare=False, repr=False)
    # The answer for each name screened against this list (a list read again from its
    # file is a new BlockedList, with none): normalising a name (NFKC, two confusable
    # skeletons, case folding) and looking for every blocked name inside it cost about
    # seven microseconds a name, twice a payment.
    _answers: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def for_path(cls, path: str | Path) -> "BlockedList":
        """The list in force for the file at `path`: read again when the file changed,
        the last good list kept when the change cannot be read (`ListFile.look`)."""
        # os.stat of the text: a Path made and stat'ed per payment cost ten times as much.
        path = str(path)
        entry = _FILES.get(path)
        stat = _stat(path)
        if entry is not None and stat is not None and entry.problems == [] \
                and entry.read_as == (stat.st_ino, stat.st_size, stat.st_mtime_ns):
            return entry.blocked  # type: ignore[return-value]
        with _READING:
            entry = _FILES.setdefault(path, ListFile(path))
            return entry.look(stat)

    @classmethod
    def load(cls, path: str | Path) -> "BlockedList":
        path = Path(path)
        with open(path, "rb") as fh:
            return cls.parse(path, fh.read())

    @classmethod
    def parse(cls, path: Path, raw: bytes) -> BlockedList:
        """The list the bytes `raw` of the file at `path` hold (its problems raised)."""
        data = tomllib.loads(raw.decode("utf-8"))
        unknown = sorted(set(data) - set(LIST_KEYS))
        if unknown or not data:
            # A misspelt key (`acounts`) would otherwise leave its entries unscreened
            # without a word; an empty file is valid TOML: what an editor leaves between
            # truncating the file and writing it, never a list a bank means.
            found = ("the file holds no key" if not data else "it has " + ", ".join(
                f"`{k}`" for k in unknown) + (" besides " + " and ".join(
                    f"`{k}`" for k in LIST_KEYS if k in data) if len(unknown) < len(data)
                    else ""))
            what = ("an unknown key" if unknown and any(k in data for k in LIST_KEYS)
                    else "neither `names` nor `accounts`")
            raise PaygateError(Problem(
                "screening_list_malformed", path.name, None, LIST_KEYS_EXPECTED,
                f"the screening file {path} has {what}: {found}; expected "
                f"{LIST_KEYS_EXPECTED}"))
        names, accounts = data.get("names", []), data.get("accounts", [])
        problems = [problem for key, value, fold in (("names", names, normalise),
                                                     ("accounts", accounts,
                                                      normalise_account))
                    if (problem := _list_problem(path, key, value, fold)) is not None]
        if problems:
            raise PaygateError(problems)
        return cls(frozenset(map(normalise, names)),
                   frozenset(map(normalise_account, accounts)),
                   hashlib.sha256(raw).hexdigest(), raw)

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

    def entries_matching(self, field_name: str, value: str) -> list[str]:
        """The list's entries (as compared: normalised) that match `value` read as an
        account (`field_name` ending in `account`) or a name, sorted: what a supervisor
        passing the hit saw matched."""
        if field_name.endswith("account"):
            folded = normalise_account(value)
            return [folded] if folded and folded in self.accounts else []
        folded = normalise(value)
        if not folded:
            return []
        return sorted(b for b in self.names if b == folded or (
            len(b) >= CONTAINED_NAME_LEN_MIN and b in folded))


# A file's identity for "has it changed": its inode (a file saved by renaming a new
# one over it), its size and its modification time.
Signature = tuple[int, int, int]
_MISSING: Signature = (-1, -1, -1)


@dataclass(frozen=True)
class Taken:
    """A list taken into force: its counts, its file's digest, since when (the gateway's
    clock) and the counts of the list it replaced (None: the first, with no copy kept of
    an earlier list of the same file)."""

    names: int
    accounts: int
    sha256: str
    since: str
    previous_names: int | None
    previous_accounts: int | None

    @property
    def emptied(self) -> bool:
        """Whether this list, empty, replaced one that was not: screening switched off."""
        return self.names == self.accounts == 0 and bool(
            self.previous_names or self.previous_accounts)

    def view(self) -> dict[str, Any]:
        return {"names": self.names, "accounts": self.accounts, "sha256": self.sha256,
                "since": self.since}


def _count(n: int | None) -> str:
    return "none" if n is None else str(n)


@dataclass
class ListFile:
    """One screening file as the gateway last looked at it: the list in force (the last
    one read well) and why the file's content now is not, when it is not."""

    path: str
    blocked: BlockedList | None = None
    read_as: Signature | None = None   # the file the list in force was read from
    judged_as: Signature | None = None  # the file last read or found missing
    # Why the file's content is not in force ([] when it is; None before any look).
    problems: list[Problem] | None = None
    taken: Taken | None = None  # when and what the list in force was taken as
    keep_in: Path | None = None  # the data folder the list in force is copied to
    # The counts (names, accounts) of the copy the data folder kept of this file's last
    # list when the gateway started (`keep_last_good`): the list the first one taken
    # replaces, so that a list emptied while the gateway was down is told as emptied.
    kept_before: tuple[int, int] | None = None
    clock: Now | None = None  # the gateway's, for the time a list is taken (`use_clock`)
    # The digest of the emptied list whose alert a gateway committed (`emptied_alerted`)
    # since a list with entries was last taken: until then the copy kept says the list
    # was emptied from one with entries, so that a start dying before the alert leaves
    # the next start to raise it.
    alerted: str | None = None

    def now_text(self) -> str:
        """The time now by the gateway's clock (the real time, in UTC, before a gateway
        gave its clock), to the second."""
        now = (self.clock() if self.clock is not None
               else datetime.fromtimestamp(wall_s(), UTC))
        return now.isoformat(timespec="seconds")

    def look(self, stat: os.stat_result | None) -> BlockedList:
        """The list in force after looking at the file (`stat`, None when it is gone):
        a change read once it is left alone for SETTLE_S and the file did not change
        while it was read. Without a list read before, the file's problems are raised
        (503: the bank's file, not the request): nothing is screened against nothing."""
        if stat is None:
            return self._refused(_MISSING, [Problem(
                "screening_file_unreadable", self.path, None, "a readable TOML file",
                f"the screening file {self.path} cannot be read: it does not exist")])
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if self.blocked is not None:
            if signature == self.read_as:  # back as it was read (moved away and back)
                return self._in_force(signature, self.blocked)
            if signature == self.judged_as or \
                    wall_s() - stat.st_mtime_ns / 1e9 < SETTLE_S:
                return self.blocked  # refused already, or still being written
        blocked = _read(self.path)
        if isinstance(blocked, list):
            return self._refused(signature, blocked)
        if self.blocked is not None and _signature(self.path) != signature:
            # Written while it was read: what was read may be part of it. Judged at
            # the next look, once the writing ends.
            return self.blocked
        return self._in_force(signature, blocked)

    def _in_force(self, signature: Signature, blocked: BlockedList) -> BlockedList:
        if blocked is not self.blocked:
            # Every list taken into force is logged, with the digest of the file it was
            # read from and the counts it replaces: a list emptied or swapped is audited.
            previous = (self.kept_before if self.blocked is None else
                        (len(self.blocked.names), len(self.blocked.accounts)))
            self.taken = Taken(len(blocked.names), len(blocked.accounts), blocked.sha256,
                               self.now_text(), *(previous or (None, None)))
            if blocked.names or blocked.accounts:
                # Refilled: an emptying after this one is a new one, its alert not
                # committed yet, whatever the bytes (the same as an earlier one's).
                self.alerted = None
            log.info("event=screening_list_in_force file=%s names=%d accounts=%d "
                     "sha256=%s previous_names=%s previous_accounts=%s", self.path,
                     self.taken.names, self.taken.accounts, blocked.sha256,
                     _count(self.taken.previous_names),
                     _count(self.taken.previous_accounts))
            if self.keep_in is not None:
                _write_copy(self.keep_in, self.path, blocked, self.unalerted())
        elif self.problems:  # the file back as the list in force was read from
            log.info("event=screening_file_read_again file=%s names=%d accounts=%d",
                     self.path, len(blocked.names), len(blocked.accounts))
        self.blocked, self.read_as, self.judged_as, self.problems = \
            blocked, signature, signature, []
        return blocked

    def unalerted(self) -> Taken:
        """The list in force as its copy keeps it: an emptied list whose alert is not
        committed yet keeps the counts it replaced, else none (told once alerted)."""
        assert self.taken is not None
        if self.taken.emptied and self.taken.sha256 != self.alerted:
            return self.taken
        return replace(self.taken, previous_names=None, previous_accounts=None)

    def _refused(self, signature: Signature, problems: list[Problem]) -> BlockedList:
        if signature != self.judged_as:  # logged once a change, not once a payment
            log.error("event=screening_file_refused file=%s problem=%s kept=%s", self.path,
                      "; ".join(p.to_dict()["message"] for p in problems),
                      "last_good_list" if self.blocked is not None else "none")
        self.judged_as, self.problems = signature, problems
        if self.blocked is None:
            raise PaygateError(problems, 503)
        return self.blocked


def _list_problem(path: Path, key: str, value: Any,
                  fold: Callable[[str], str]) -> Problem | None:
    """What is wrong with the list `key` of the file at `path` (every entry that is not
    text, blank, or folds to nothing under `fold`, the form it is compared in, so would
    match nothing: the first BAD_ENTRIES_TOLD named, all counted), None when nothing is.
    Entries are never quoted: the words go to the operators' alert, and a bank's list may
    be confidential; their index says which."""
    expected = f"a list of at most {ENTRIES_MAX} strings"
    if not isinstance(value, list):
        fault = f"`{key}` is not a list but {type(value).__name__}"
    elif len(value) > ENTRIES_MAX:
        fault = f"`{key}` has {len(value)} entries"
    else:
        bad = [(i, fault) for i, entry in enumerate(value)
               if (fault := _entry_fault(entry, fold)) is not None]
        if not bad:
            return None
        expected = ("non-blank text that keeps a letter or digit once spaces and "
                    "punctuation are folded away")
        told = "; ".join(f"entry {i} of `{key}` is {f}" for i, f in bad[:BAD_ENTRIES_TOLD])
        more = (f" (and {len(bad) - BAD_ENTRIES_TOLD} more)"
                if len(bad) > BAD_ENTRIES_TOLD else "")
        fault = f"{len(bad)} bad entries of `{key}`: {told}{more}" if len(bad) > 1 \
            else told
    return Problem("screening_list_malformed", f"{path.name}/{key}", None, expected,
                   f"the screening file {path}: {fault}, expected {expected}")


def _entry_fault(entry: Any, fold: Callable[[str], str]) -> str | None:
    if not isinstance(entry, str):
        return f"not text but {type(entry).__name__}"
    if not entry.strip():
        return "blank"
    if not fold(entry):
        return "only spaces and punctuation (it would match nothing)"
    return None


def _signature(path: str) -> Signature:
    try:
        stat = os.stat(path)
    except OSError:
        return _MISSING
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _unreadable(path: str, exc: Exception) -> Problem:
    """A file that is not TOML (the parser's words name the line and column) or cannot
    be opened or decoded."""
    what = "is not TOML" if isinstance(exc, tomllib.TOMLDecodeError) else "cannot be read"
    return Problem("screening_file_unreadable", path, None, "a readable TOML file",
                   f"the screening file {path} {what}: {exc}")


def keep_last_good(path: str, folder: Path) -> None:
    """Keep a copy of each list of the file at `path` taken into force in `folder` (the
    data folder), and look at the file now: when it cannot be read and no list was read
    before, the copy kept of the same file (a gateway restarted while the file is broken)
    is the list in force, its problems kept for the watch's alert. Without a good copy
    nothing is put in force (the start was refused: gateway.config_values). When it is
    read well, the list it holds replaces the copy's (`kept_before`): emptied while the
    gateway was down, it is taken as emptied, and the watch raises its alert."""
    path = str(path)
    with _READING:
        entry = _FILES.setdefault(path, ListFile(path))
        entry.keep_in = folder
        if entry.blocked is not None:
            if entry.problems == [] and entry.taken is not None:
                _write_copy(folder, path, entry.blocked, entry.unalerted())  # read before
            return
        stat = _stat(path)
        read = _read(path) if stat is not None else None
        # Read before the list taken now replaces it.
        copied = last_good_copy(folder, path)
        if isinstance(read, BlockedList):
            # A copy of an emptied list whose alert was never committed (a start that
            # died first) is told as the list with entries it replaced.
            entry.kept_before = None if copied is None else (
                (copied[1].previous_names or 0, copied[1].previous_accounts or 0)
                if copied[1].emptied else (copied[1].names, copied[1].accounts))
            copied = None
        if copied is None:
            try:
                entry.look(stat)
            except PaygateError:
                pass  # no list: refused at start already, and at each payment (503)
            return
        entry.blocked, entry.taken = copied
        log.warning("event=screening_last_good_copy_in_force file=%s names=%d "
                    "accounts=%d sha256=%s taken_at=%s", path, entry.taken.names,
                    entry.taken.accounts, entry.taken.sha256, entry.taken.since)
        entry.look(stat)  # refused as a change of the file, the copy kept in force


def emptied_alerted(path: str, sha256: str) -> None:
    """The alert of the emptied list of digest `sha256` of the file at `path` is
    committed: its copy no longer says it was emptied (a later start raises no second
    alert)."""
    with _READING:
        entry = _FILES.get(str(path))
        if entry is None or entry.alerted == sha256:
            return
        entry.alerted = sha256
        if entry.keep_in is not None and entry.blocked is not None and \
                entry.taken is not None and entry.taken.sha256 == sha256:
            _write_copy(entry.keep_in, entry.path, entry.blocked, entry.unalerted())


def use_clock(path: str, clock: Now) -> None:
    """Tell the time each list of the file at `path` is taken into force by `clock` (the
    gateway's `now`) from now on, so that a simulated day shows it as it shows every
    other time. Per file: a process may run more than one gateway (tests), each with its
    own clock and file."""
    with _READING:
        _FILES.setdefault(str(path), ListFile(str(path))).clock = clock


def last_good_copy(folder: Path, path: str) -> tuple[BlockedList, Taken] | None:
    """The list kept in `folder` for the file at `path` and when it was taken, None when
    there is none, it is of another file, or it cannot be read (logged: a start then is
    refused as without one)."""
    copy = Path(folder) / LAST_GOOD_FILE
    try:
        kept = json.loads(copy.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    try:
        if kept["file"] != str(path):
            return None
        raw = kept["text"].encode("utf-8")
        if hashlib.sha256(raw).hexdigest() != kept["sha256"]:
            raise ValueError("its sha256 does not match its text")
        blocked = BlockedList.parse(Path(path), raw)
        before = kept.get("emptied_from") or [None, None]
        previous = (int(before[0]) if before[0] is not None else None,
                    int(before[1]) if before[1] is not None else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, PaygateError) as exc:
        log.error("event=screening_last_good_copy_unreadable copy=%s error=%r", copy, exc)
        return None
    return blocked, Taken(len(blocked.names), len(blocked.accounts), blocked.sha256,
                          str(kept.get("taken", "")), *previous)


def _write_copy(folder: Path, path: str, blocked: BlockedList, taken: Taken) -> None:
    """The copy of the list in force, written to a new file moved over the old one: a
    crash leaves the old copy or the new, never half of one. An emptied list (`taken`
    with the counts it replaced) keeps those counts (`emptied_from`) until its alert is
    committed (`emptied_alerted`). A failure is logged and
    screening goes on (the copy serves a restart, not the payments now)."""
    copy = Path(folder) / LAST_GOOD_FILE
    part = copy.with_name(f"{copy.name}.{os.getpid()}.part")
    try:
        with open(part, "w", encoding="utf-8") as fh:
            # An emptied list not alerted yet keeps the counts it replaced.
            emptied = ({"emptied_from": [taken.previous_names, taken.previous_accounts]}
                       if taken.emptied else {})
            json.dump({"file": path, "sha256": blocked.sha256, "taken": taken.since,
                       "text": blocked.source.decode("utf-8"), **emptied}, fh,
                      ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, copy)
    except OSError as exc:
        log.error("event=screening_last_good_copy_not_written copy=%s error=%r", copy, exc)


def _read(path: str) -> BlockedList | list[Problem]:
    """The list of the file at `path`, or why it cannot be read."""
    try:
        return BlockedList.load(path)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [_unreadable(path, exc)]
    except PaygateError as exc:
        return exc.problems


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def looked_at(path: str) -> ListFile | None:
    """The file at `path` as last looked at (None if never): its `problems` say why its
    content is not in force, and `blocked` is the list screening meanwhile."""
    return _FILES.get(str(path))


# The screening files looked at, by path; one looks at (reads) a changed file at a time.
_FILES: dict[str, ListFile] = {}
_READING = threading.Lock()
