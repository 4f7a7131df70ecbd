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
_LISTED = re.compile(r"^\| `([a-z][a-z0-9_]+)` \|", re.M)


def used_codes() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found.update(_USE.findall(path.read_text(encoding="utf-8")))
    return found


def listed_codes() -> set[str]:
    return set(_LISTED.findall((ROOT / "docs" / "errors.md").read_text(encoding="utf-8")))


def test_every_code_in_use_is_listed():
    """No code reaches a user without a row in docs/errors.md."""
    missing = sorted(used_codes() - listed_codes())

    assert not missing, "add to docs/errors.md: " + ", ".join(missing)
