"""JSON text out of the gateway: answers, stored answers, history details, body hashes.

orjson writes the same text as the standard library's `json.dumps(..., ensure_ascii=False,
separators=(",", ":"))` about ten times faster, which matters where a batch answer
carries hundreds of payments. Both paths agree on every value the gateway writes
(tests/test_jsontext.py): dates and dataclasses go through `default` as before, and a
value orjson refuses (a lone surrogate, an integer beyond 64 bits) is written by the
standard library instead, so nothing that was writable before fails now.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS)


def type_name(value: Any) -> str:
    """JSON's word for the type of a value read from JSON text (a refusal's `value` when
    the type itself is wrong): null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return getattr(value, "json_type", None) or type(value).__name__


def dumps(obj: Any, default: Callable[[Any], Any] | None = str) -> str:
    """Compact JSON text, non-ASCII characters kept as they are."""
    try:
        return orjson.dumps(obj, default=default, option=_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=default)


def dumps_bytes(obj: Any, default: Callable[[Any], Any] | None = str) -> bytes:
    """`dumps` as UTF-8 bytes (an HTTP answer's body). Text orjson refuses is written
    with non-ASCII escaped, so that a lone surrogate echoed in an error still makes
    valid UTF-8 and valid JSON."""
    try:
        return orjson.dumps(obj, default=default, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, separators=(",", ":"), default=default).encode()


_CANONICAL = _OPTIONS | orjson.OPT_SORT_KEYS


def canonical(obj: Any) -> bytes:
    """Keys sorted at every level, compact, UTF-8: the text a request body is hashed as
    (the same bytes json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    default=repr) encoded with surrogatepass gives, so stored hashes keep matching)."""
    try:
        return orjson.dumps(obj, default=repr, option=_CANONICAL)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          default=repr).encode("utf-8", "surrogatepass")


def canonical_each(values: list[Any]) -> tuple[list[bytes], bytes]:
    """`canonical` of each value and of the list of them, each value written once: the
    list's text is its values' texts joined (the bytes `canonical(values)` gives, also
    when one value is written by the standard library, which then writes the list)."""
    texts = []
    for value in values:
        try:
            texts.append(orjson.dumps(value, default=repr, option=_CANONICAL))
        except (orjson.JSONEncodeError, TypeError):
            return [canonical(v) for v in values], canonical(values)
    return texts, b"[" + b",".join(texts) + b"]"
