"""Plain-text tables for `paygate ops`, aligned for people reading a terminal.

Chinese characters take two columns in a terminal, so widths are counted in display
columns, not characters. Long table cells are cut at `CELL_WIDTH_MAX` with an ellipsis;
the values of name: value lines are never cut but wrapped onto further lines under the
value column, so that no line is wider than `LINE_WIDTH`.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Sequence

CELL_WIDTH_MAX = 48
LINE_WIDTH = 100
# A value column never narrower than this, however long the names beside it.
VALUE_WIDTH_MIN = 40


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def text_of(value: Any) -> str:
    """A value as one line of text."""
    if value is None:
        text = "-"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    return text.replace("\n", " ")


def cell(value: Any, width_max: int = CELL_WIDTH_MAX) -> str:
    text = text_of(value)
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


def wrap(text: str, width_max: int) -> list[str]:
    """`text` in lines of at most `width_max` display columns, broken at spaces where
    it can be and inside a word only when the word alone is wider than a line."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if width(candidate) <= width_max:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for c in word:
            if width(line + c) > width_max:
                lines.append(line)
                line = ""
            line += c
    lines.append(line)
    return lines


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """Name: value lines, the names aligned; a value too long for its line goes on over
    the following lines, under the value column, whole."""
    size = max(width(name) for name, _ in items)
    value_width = max(LINE_WIDTH - size - 2, VALUE_WIDTH_MIN)
    out: list[str] = []
    for name, value in items:
        first, *rest = wrap(text_of(value), value_width)
        out.append(f"{_pad(name, size)}  {first}".rstrip())
        out += [f"{' ' * size}  {line}".rstrip() for line in rest]
    return "\n".join(out)
