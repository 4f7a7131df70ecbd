"""Every error code the product can answer with is listed in docs/errors.md, and the list
names no code that the product no longer uses: the table is the contract's one table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "ledger", "routing", "simulators", "message_schemas")
# A code is the first string given to Problem(...), ProblemList.add(...), or a named
# error class, written as a snake_case literal.
_USE = re.compile(r"(?:Problem|(?<!store)\.add|Error|_fail|_bad|_problem|refuse)"
                  r"\(\s*\n?\s*\"([a-z][a-z0-9_]+)\"")
# ... or the value of a "code" key in an error shape written out as a dict (the CLI's own
# refusals, an inbox row's outcome).
_DICT_CODE = re.compile(r"\"code\":\s*\"([a-z][a-z0-9_]+)\"")
_LISTED = re.compile(r"^\| `([a-z][a-z0-9_]+)` \|", re.M)
# A console route's query parameter checked against its choices is refused as
# `NAME_unknown` (gateway.ops.data_routes.checked_query), a code no literal spells.
_CHOICE = re.compile(r"choices=\{\s*\"([a-z][a-z0-9_]+)\":")


def used_codes() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            found.update(_USE.findall(text))
            found.update(_DICT_CODE.findall(text))
            found.update(f"{name}_unknown" for name in _CHOICE.findall(text))
    return found


def listed_codes() -> set[str]:
    return set(_LISTED.findall((ROOT / "docs" / "errors.md").read_text(encoding="utf-8")))


def test_every_code_in_use_is_listed():
    """No code reaches a user without a row in docs/errors.md."""
    missing = sorted(used_codes() - listed_codes())

    assert not missing, "add to docs/errors.md: " + ", ".join(missing)


# An alert code is the literal given to `alert(tx, "...")`, the value of an `ALERT_...`
# constant, or a code in the HVPS window's alerts (gateway/windows.py).
_ALERT_USE = re.compile(r"\balert\(\s*\n?\s*tx, \"([a-z][a-z0-9_]+)\"")
_ALERT_CONSTANT = re.compile(r"^ALERT_[A-Z_]+ = \"([a-z][a-z0-9_]+)\"", re.M)
_WINDOW_ALERT = re.compile(r"\"(hvps_status_notices?_[a-z_]+)\"")
_ALERTS_SECTION = "## Operator alerts"


def used_alert_codes() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found.update(_ALERT_USE.findall(text))
        found.update(_ALERT_CONSTANT.findall(text))
    found.update(_WINDOW_ALERT.findall((ROOT / "gateway" / "windows.py").read_text()))
    return found | {"window_changed"}


def listed_alert_codes() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    return set(_LISTED.findall(text.split(_ALERTS_SECTION, 1)[1]))


def test_every_alert_raised_is_listed():
    """No alert reaches the operators' page without a row in docs/errors.md's alerts."""
    used = used_alert_codes()
    missing = sorted(used - listed_alert_codes())

    assert {"day_end_missing", "calendar_data_missing", "hvps_status_notice_overdue",
            "query_reply_overdue"} <= used
    assert not missing, "add to the alerts in docs/errors.md: " + ", ".join(missing)
