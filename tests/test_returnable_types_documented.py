"""docs/exceptions.md, "We return an incoming payment", names exactly the incoming
message types a return is allowed for (gateway.exceptions.returns.RETURNABLE_TYPES)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.exceptions.returns import RETURNABLE_TYPES

DOC = Path(__file__).resolve().parent.parent / "docs" / "exceptions.md"


def test_the_returnable_incoming_types_are_the_ones_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### We return an incoming payment", 1)[1].split("\n#", 1)[0]
    # The first column of the section's tables names the type of each one allowed.
    first_columns = [line.split("|")[1] for line in section.splitlines()
                     if line.startswith("| ")]
    documented = {found.group(0) for found in
                  (re.search(r"(hvps|beps)\.\d{3}", column) for column in first_columns)
                  if found}

    assert documented == {t.rsplit(".", 2)[0] for t in RETURNABLE_TYPES}
