"""Plain-text tables for `paygate ops`, aligned for people reading a terminal.

Chinese characters take two columns in a terminal, so widths are counted in display
columns, not characters. Long cells are cut at `CELL_WIDTH_MAX` with an ellipsis.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Sequence

CELL_WIDTH_MAX = 48


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cell(value: Any, width_max: int = CELL_WIDTH_MAX) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if width(text) <= width_max:
        return text
    out = ""
    for c in text:
        if width(out + c) > width_max - 1:
            break
        out += c
    return out + "…"


def _pad(text: str, size: int) -> str:
    return text + " " * (size - width(text))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
          empty: str = "(none)") -> str:
    """Rows as a table; `columns` are (key, heading) pairs."""
    if not rows:
        return empty
    cells = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    sizes = [max([width(h)] + [width(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(_pad(h, sizes[i]) for i, (_, h) in enumerate(columns)).rstrip(),
             "  ".join("-" * s for s in sizes)]
    lines += ["  ".join(_pad(c, sizes[i]) for i, c in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """Name: value lines, the names aligned."""
    size = max(width(name) for name, _ in items)
    return "\n".join(f"{_pad(name, size)}  {cell(value, 96)}" for name, value in items)
