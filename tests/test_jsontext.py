"""gateway.jsontext writes what the standard library writes, for every value the gateway
writes: request bodies as parsed (numbers kept as text), answers, history details."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import jsontext
from gateway.api import JsonNumber, parse_json
from gateway.intake import body_sha256

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | _text
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(_text, inner, max_size=4), max_leaves=20)


def _stdlib_canonical(body):
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=repr).encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(_values)
def test_canonical_and_compact_text_equal_the_standard_library(value):
    assert jsontext.canonical(value) == _stdlib_canonical(value)
    assert jsontext.dumps(value) == json.dumps(value, ensure_ascii=False,
                                               separators=(",", ":"), default=str)
    assert json.loads(jsontext.dumps_bytes(value)) == value


def test_a_body_hash_is_unchanged_for_numbers_kept_as_text():
    body = parse_json('{"amount": 1.50, "n": 12, "b": {"z": "中", "a": [1e400, null]}}'
                      .encode())
    assert isinstance(body["amount"], JsonNumber)
    assert jsontext.canonical(body) == _stdlib_canonical(body)
    assert jsontext.canonical(body) == \
        '{"amount":"1.50","b":{"a":["1e400",null],"z":"中"},"n":12}'.encode()


def test_what_orjson_refuses_is_still_written():
    lone = {"name": "a\ud800b", "big": 2**70}
    assert jsontext.canonical(lone) == _stdlib_canonical(lone)
    assert body_sha256(lone)  # no error: the text checks refuse it by name later
    out = jsontext.dumps_bytes(lone)
    out.decode("utf-8")  # valid UTF-8 even so
    assert json.loads(out) == lone


def test_dates_and_dataclasses_go_through_default():
    @dataclass
    class Point:
        x: int
    value = {"at": datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc), "on": date(2026, 12, 7),
             "p": Point(1)}
    assert jsontext.dumps(value) == json.dumps(value, ensure_ascii=False,
                                               separators=(",", ":"), default=str)
