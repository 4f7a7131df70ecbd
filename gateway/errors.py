"""The one error shape of the product (CONTRACT.md §6).

Every refusal, whether it comes from the API, a message check, the ledger or the CLI,
is a list of `Problem`s. A problem names the rule that was broken with a stable
snake_case code (listed in docs/errors.md), the path of the offending field, the value
seen and what was expected. All problems of one input are reported together.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable

from gateway import jsontext


# An answer never grows far beyond its request: a hostile body with thousands of faults
# gets the first hundred, each echoing at most a short prefix of the value it saw.
PROBLEMS_SHOWN_MAX = 100
VALUE_LEN_MAX = 200
VALUES_SHOWN_MAX = 20  # of a value that is a list (a parameter given many times)
MESSAGE_LEN_MAX = 500


# The largest whole number every JSON reader keeps exactly: a JavaScript client reads
# each JSON number as an IEEE double, exact for whole numbers up to 2**53 - 1
# (Number.MAX_SAFE_INTEGER); 2**53 + 1 would read as 2**53, another number than sent.
JSON_SAFE_INT_MAX = 2**53 - 1


def _bounded(value: Any) -> Any:
    """A JSON-safe value of bounded size for an answer (never NaN or a huge text)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # A number as the number sent when every JSON reader reads it back as that
        # number; past that (a 23-digit account sent unquoted), its digits as text, so
        # that no client reads another number than the one it sent.
        return value if abs(value) <= JSON_SAFE_INT_MAX else _cut(str(value))
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, (list, tuple)):  # as a JSON list, never Python's ['1', '2'] text
        shown = [_bounded(v) for v in value[:VALUES_SHOWN_MAX]]
        return shown + ["…"] if len(value) > VALUES_SHOWN_MAX else shown
    if isinstance(value, dict):
        # As a JSON object, as it came, never as text that reads as a string sent ("{}"):
        # its first members, "…" standing for the others.
        members = {str(k)[:VALUE_LEN_MAX]: _bounded(v)
                   for k, v in list(value.items())[:VALUES_SHOWN_MAX]}
        return {**members, "…": "…"} if len(value) > VALUES_SHOWN_MAX else members
    if _is_json_number(value):
        # A JSON number the request kept as its text (gateway.api.JsonNumber): a number
        # again, not a string that reads as an amount sent as text ("100.5"), when a
        # reader's double reads it as the number sent; its text when none can (1e400,
        # or more digits than a double keeps: 12345678901234567890.5).
        return _json_safe_number(str(value))
    if isinstance(value, (bytes, bytearray)):  # as text, never Python's b'...' form
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = value if isinstance(value, str) else repr(value)
    # A lone surrogate cannot be written as UTF-8: show it escaped instead.
    return _cut(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _cut(text: str) -> str:
    """`text`, cut to VALUE_LEN_MAX characters and ending in "…" when it was cut."""
    return text if len(text) <= VALUE_LEN_MAX else text[:VALUE_LEN_MAX] + "…"


def _is_json_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) \
        or getattr(value, "json_type", None) == "number"


def _json_safe_number(text: str) -> float | str:
    """A JSON number's text as a float when a double holds the very number it writes
    (read back, the shortest text of the float is the same decimal), else the text."""
    number = float(text)
    if math.isfinite(number) and Decimal(repr(number)) == Decimal(text):
        return number
    return _cut(text)


def _written(value: Any, scalar: Callable[[Any], str], more: str, more_members: str
             ) -> str:
    """`value` as a message writes it: a number as the digits sent, however an
    answer's `value` carries them; a list in brackets and an object in braces, their
    first VALUES_SHOWN_MAX members, `more` (`more_members`) standing for the others;
    anything else, bounded (`_bounded`), as `scalar` writes it."""
    if _is_json_number(value):
        return _cut(str(value))
    if isinstance(value, (list, tuple)):
        shown = [_written(v, scalar, more, more_members) for v in value[:VALUES_SHOWN_MAX]]
        return "[" + ", ".join(shown + [more] * (len(value) > VALUES_SHOWN_MAX)) + "]"
    if isinstance(value, dict):
        shown = [f"{_written(str(k)[:VALUE_LEN_MAX], scalar, more, more_members)}: "
                 f"{_written(v, scalar, more, more_members)}"
                 for k, v in list(value.items())[:VALUES_SHOWN_MAX]]
        return "{" + ", ".join(shown + [more_members] * (len(value) > VALUES_SHOWN_MAX)) + "}"
    return scalar(_bounded(value))


def _spelled(value: Any) -> str:
    """A value seen, as a message shows it (`_written`): text in quotes (escapes showing
    what cannot be seen), anything else as JSON writes it (true, false, null), never as
    Python does (True, None): the values came as JSON and the reader knows JSON."""
    return _written(value, lambda v: repr(v) if isinstance(v, str) else json.dumps(v),
                    "…", "…")


@dataclass(frozen=True)
class Problem:
    code: str
    path: str = ""
    value: Any = None
    expected: str = ""
    message: str = ""
    # Facts of the refusal the five fields have no place for, each told as a member of
    # its own beside them (hvps_closed's `next_opening`); none for most problems.
    detail: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["detail"]
        out["value"] = _bounded(out["value"])
        if not out["message"]:
            out["message"] = self.describe()
        out["message"] = out["message"][:MESSAGE_LEN_MAX]
        out.update((name, value) for name, value in self.detail if name not in out)
        return out

    def at(self, path: str) -> Problem:
        """The problem told at `path` instead (a batch item's field under its index, a
        transfer's field at its message's element). A message written out in full names
        the new path where it named the old one ("... at /amount: ..."), so that the
        message never points elsewhere than `path` does."""
        if path == self.path:
            return self
        message = self.message
        if message and self.path:
            message = re.sub(rf"(?<= at ){re.escape(self.path)}(?![\w/\[.])",
                             lambda _: path, message)
        return replace(self, path=path, message=message)

    def describe(self, head: str = "") -> str:
        """The problem in words: `head` (the code's words by default), where, what was
        seen and what was expected."""
        text = head or self.code.replace("_", " ")
        if self.path:
            text += f" at {self.path}"
        if self.value is not None:
            text += f": got {_spelled(self.value)}"
        if self.expected:
            text += f", expected {self.expected}"
        return text


def _as_json(value: Any) -> str:
    """A value read from JSON written back as JSON text (`_written`): text in double
    quotes."""
    return _written(value, lambda v: json.dumps(v, ensure_ascii=False), '"…"', '"…": "…"')


def not_text(path: str, value: Any, expected: str, code: str = "field_must_be_text"
             ) -> Problem | None:
    """The one check of a JSON field that takes text, before its format is checked: a
    value given as another JSON type (a number, an array, an object, a boolean) is
    refused as such, naming the type and showing the value as sent, never as if it were
    text of the wrong form. None when `value` is text or was not given (null)."""
    if value is None or isinstance(value, str):
        return None
    # The field by its name, not its whole pointer: a batch moves the path under its
    # item's index (/3/payer_bank), and the message must still be true then.
    name = path.rsplit("/", 1)[-1] or path
    return Problem(code, path, value, f"a JSON string: {expected}",
                   f"{name} must be a JSON string (text in double quotes), not a JSON "
                   f"{jsontext.type_name(value)}: got {_as_json(value)}, expected a "
                   f"JSON string: {expected}")


def field_required(path: str, value: Any, given: bool, expected: str) -> Problem:
    """`field_required` for a required field left out (`given` False: the body has no
    such member), given null, or given as text that is empty or only spaces, its message
    saying which of these it was: a field left out is said to be missing, never told it
    needs a value other than spaces. Other values (too long, say) get the usual words."""
    name = path.rsplit("/", 1)[-1] or path
    if not given:
        said = f"{name} is missing"
    elif value is None:
        said = f"{name} is null, which leaves it out"
    elif isinstance(value, str) and not value:
        said = f"{name} is empty"
    elif isinstance(value, str) and not value.strip():
        said = f"{name} holds only spaces: got {_spelled(value)}"
    else:
        return Problem("field_required", path, value, expected)
    return Problem("field_required", path, value if given else None, expected,
                   f"{said}; it is required, expected {expected}")


class PaygateError(Exception):
    """A refusal carrying one or more problems; `status` is the HTTP status to answer."""

    status = 422

    def __init__(self, problems: list[Problem] | Problem, status: int | None = None) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        assert self.problems, "an error carries at least one problem"
        if status is not None:
            self.status = status
        super().__init__(self.problems)

    def __str__(self) -> str:
        # Put in words when shown (a log line, a traceback), not when raised: a refusal
        # that a check only counts as a no (the console's offered actions) costs none.
        return "; ".join(p.describe() for p in self.problems)

    def __repr__(self) -> str:
        # As an exception made with its words reads (`error=%r` in the logs).
        return f"{type(self).__name__}({str(self)!r})"

    @property
    def code(self) -> str:
        return self.problems[0].code

    def to_dict(self) -> dict[str, Any]:
        shown = [p.to_dict() for p in self.problems[:PROBLEMS_SHOWN_MAX]]
        if len(self.problems) > PROBLEMS_SHOWN_MAX:
            shown.append(Problem("more_problems_not_shown", "/",
                                 len(self.problems) - PROBLEMS_SHOWN_MAX,
                                 f"at most {PROBLEMS_SHOWN_MAX} problems in one answer"
                                 ).to_dict())
        return {"errors": shown}


def with_paths(exc: PaygateError, path_of: Callable[[str], str]) -> PaygateError:
    """The same refusal (its kind and status kept) with each problem's path as `path_of`
    gives it: a check shared by two callers names a field as one of them does, and the
    other tells it at its own field."""
    problems = [p.at(path_of(p.path)) for p in exc.problems]
    if problems == exc.problems:
        return exc
    moved = type(exc).__new__(type(exc))
    moved.__dict__.update(exc.__dict__)
    PaygateError.__init__(moved, problems, exc.status)
    return moved


class ValidationFailed(PaygateError):
    status = 422


class Conflict(PaygateError):
    status = 409


class NotFound(PaygateError):
    status = 404


class Unauthorized(PaygateError):
    status = 401


class Forbidden(PaygateError):
    status = 403


class Busy(PaygateError):
    status = 429


@dataclass
class ProblemList:
    """Collects problems while checking, so that all of them are reported."""

    items: list[Problem] = field(default_factory=list)

    def add(self, code: str, path: str = "", value: Any = None, expected: str = "",
            message: str = "") -> None:
        self.items.append(Problem(code, path, value, expected, message))

    def not_text(self, path: str, value: Any, expected: str,
                 code: str = "field_must_be_text") -> bool:
        """Add `not_text`'s problem when `value` is given as a JSON type other than a
        string; True if it was (the field's format is then not checked)."""
        problem = not_text(path, value, expected, code)
        if problem is not None:
            self.items.append(problem)
        return problem is not None

    def required(self, path: str, value: Any, given: bool, expected: str) -> None:
        """Add `field_required` for a required field missing, null or blank."""
        self.items.append(field_required(path, value, given, expected))

    def extend(self, problems: list[Problem]) -> None:
        self.items.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, kind: type[PaygateError] = ValidationFailed) -> None:
        if self.items:
            raise kind(list(self.items))


HEADER_VALUE_SHOWN_MAX = 80  # characters of each value of a repeated header an error echoes


def header_repeated(name: str, values: list[str]) -> Problem:
    """A request header given more than once whose value the receiver acts on: which line
    counts would be a guess (one reader takes the first, a proxy may keep the last), so
    the request is refused naming every value, never taken under one of them. The
    gateway's API and console, and the simulated NPC's link inbound, refuse so."""
    return Problem("header_repeated", name, [v[:HEADER_VALUE_SHOWN_MAX] for v in values],
                   f"one {name} header line",
                   f"the request carries {name} {len(values)} times; no value of a header "
                   "given more than once is taken")
