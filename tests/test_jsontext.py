"""gateway.jsontext writes what the standard library writes, for every value the gateway
writes: request bodies as parsed (numbers kept as text), answers, history details."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import jsontext
from gateway.api import JsonNumber, _plain_json, parse_json, strict_json
from gateway.errors import PaygateError
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


@settings(max_examples=200, deadline=None)
@given(st.lists(_values | st.just({"name": "a\ud800b"}) | st.just(2**70), max_size=5))
def test_each_value_and_their_list_are_written_as_canonical_writes_them(values):
    texts, whole = jsontext.canonical_each(values)

    assert texts == [jsontext.canonical(value) for value in values]
    assert whole == jsontext.canonical(values) == _stdlib_canonical(values)


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


def _reading(read, raw):
    """What a reading of `raw` gives: its value, or the code of its refusal."""
    try:
        return ("value", read(raw))
    except PaygateError as error:
        return ("refused", error.problems[0].code)


_numbers = st.sampled_from(["0", "-0", "12", "1.50", "1e400", "-1E-3", "2.0",
                            "123456789012345678901234567890", "18446744073709551615"])
_spacing = st.sampled_from(["", " ", "\n  ", "\t"])


@st.composite
def _json_texts(draw, depth=0):
    """JSON texts as a client may write them: spacing, escapes (colons among them), numbers
    of every kind, members repeated at any level."""
    gap = draw(_spacing)
    kind = draw(st.sampled_from(["str", "num", "lit", "list", "obj"] if depth < 3
                                else ["str", "num", "lit"]))
    if kind == "str":
        text = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
                    | st.sampled_from(["a:b", "10:00", "::", "中:文"]))
        written = json.dumps(text, ensure_ascii=draw(st.booleans()))
        if draw(st.booleans()):
            written = written.replace(":", draw(st.sampled_from(["\\u003a", "\\u003A",
                                                                 ":"])))
        return written
    if kind == "num":
        return draw(_numbers)
    if kind == "lit":
        return draw(st.sampled_from(["true", "false", "null", "NaN", "Infinity"]))
    members = draw(st.lists(_json_texts(depth + 1), max_size=4))
    if kind == "list":
        return "[" + gap + ("," + gap).join(members) + gap + "]"
    keys = draw(st.lists(st.sampled_from(["a", "b", "a:b", "中", "x\\u003ay"]),
                         min_size=len(members), max_size=len(members)))
    return "{" + gap + ("," + gap).join(f'"{k}"{gap}:{gap}{m}'
                                        for k, m in zip(keys, members)) + gap + "}"


@settings(max_examples=600, deadline=None)
@given(_json_texts())
def test_a_body_read_by_orjson_is_what_the_strict_reading_gives(text):
    """parse_json gives what the standard library's strict reading gives, value or
    refusal, whichever reading it takes: numbers with a fraction kept as text, a
    repeated member refused, NaN refused, however the text is spaced and escaped."""
    raw = text.encode()
    assert _reading(parse_json, raw) == _reading(strict_json, raw)


def test_a_batch_is_read_by_orjson_and_a_repeated_member_is_still_refused():
    """A plain batch goes the quick way; the same batch with one member written twice
    (in an item, with a colon in a string to make up for it or not) is refused."""
    items = [{"payer_name": "示例:客户", "amount": "1.00", "n": n} for n in range(3)]
    raw = json.dumps(items, ensure_ascii=False).encode()
    twice = raw.replace(b'"n": 1', b'"n": 1, "n": 1', 1)
    masked = raw.replace(b'"n": 1', b'"n": 1, "n": 1', 1).replace("示例:客户".encode(),
                                                                  "示例客户".encode(), 1)
    assert _plain_json(raw) == items
    assert _reading(parse_json, twice) == ("refused", "json_key_duplicate")
    assert _reading(parse_json, masked) == ("refused", "json_key_duplicate")


@pytest.mark.parametrize("raw, paths", [
    (b'{"amount": "1.00", "amount": "2.00"}', ["/amount"]),
    (b'[{"amount": "1.00"}, {"amount": "1.00", "x": 1, "amount": "2.00"}]', ["/1/amount"]),
    (b'[{"a": {"k": 1, "k": 2, "k": 3}}, {"z": 1, "z": 2}]', ["/0/a/k", "/1/z"]),
    (b'{"a/b": {"t~": 1, "t~": 2}}', ["/a~1b/t~0"]),
])
def test_a_repeated_member_is_refused_at_its_pointer_from_the_root(raw, paths):
    """Each name given twice is told at its JSON pointer from the body's root (in a
    batch, with its item's index), in the body's order, once however often it repeats."""
    with pytest.raises(PaygateError) as refused:
        parse_json(raw)

    assert refused.value.status == 400
    assert [(p.code, p.path) for p in refused.value.problems] == [
        ("json_key_duplicate", path) for path in paths]
