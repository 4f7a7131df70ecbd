"""A refusal for a body of the wrong JSON type names that type in JSON's words (null,
array, object, ...), not the gateway's own language's."""

from __future__ import annotations

import json

import pytest

from gateway.jsontext import type_name
from tests.api_support import CLIENT, SECRET, LiveGateway, post_signed

TRANSFER = {"payer_account": "20000000001410300000013", "payer_name": "示例客户",
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "1.00"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("json-words"), api_keys={CLIENT: SECRET}).start()
    yield g
    g.stop()


@pytest.mark.parametrize("path, body, word", [
    ("/v1/transfers", b"null", "null"),
    ("/v1/transfers", b"[]", "array"),
    ("/v1/transfers", b'"text"', "string"),
    ("/v1/transfers", b"12.5", "number"),
    ("/v1/transfers", b"true", "boolean"),
    ("/v1/transfers/batch", b'{"amount": "1.00"}', "object"),
    ("/v1/transfers/batch", b"null", "null"),
    ("/v1/transfers/batch", b"[null, []]", "array"),
])
def test_the_wrong_type_is_named_in_json_words(live, path, body, word):
    # A key holding a comma is refused as two joined header lines: the body's commas
    # are left out of it.
    key = f"type-{path}-{body!r}".replace(",", ";")
    r = post_signed(live.url, path, body, **{"Idempotency-Key": key})
    answer = r.json()
    errors = answer.get("errors") or [e for item in answer.get("results", [])
                                      for e in item["errors"]]
    values = [e["value"] for e in errors]

    assert r.status_code in (200, 422)
    assert word in values


def test_type_words():
    assert [type_name(v) for v in (None, True, 1, 1.5, "", [], {})] == [
        "null", "boolean", "number", "number", "string", "array", "object"]


@pytest.mark.parametrize("field, sent, shown", [
    ("amount", "100.5", 100.5),
    ("amount", "true", True),
    ("amount", '{"yuan": "1.00"}', {"yuan": "1.00"}),
    ("payer_account", "123", 123),
    ("payee_name", "[]", []),
    ("payee_name", "{}", {}),
])
def test_a_field_of_the_wrong_type_shows_what_was_sent_as_json(live, field, sent, shown):
    """A field's refusal gives the value seen as JSON has it: a number as a number, an
    object as an object, never as a string that reads as another value ("100.5", "{}");
    the type word is for a body or batch item that is not an object (above)."""
    body = TRANSFER
    raw = json.dumps(body, ensure_ascii=False).replace(
        f'"{field}": {json.dumps(body[field], ensure_ascii=False)}', f'"{field}": {sent}')
    r = post_signed(live.url, "/v1/transfers", raw.encode(),
                    **{"Idempotency-Key": f"field-{field}-{len(sent)}-{sent[:1]}"})
    seen = [e["value"] for e in r.json()["errors"] if e["path"] == f"/{field}"]

    assert r.status_code == 422, r.text
    assert seen and all(value == shown and type(value) is type(shown) for value in seen)


@pytest.mark.parametrize("field, sent, word, shown", [
    ("payer_bank", "999100000027", "number", 999100000027),
    ("payer_account", "20000000001410300000013", "number", "20000000001410300000013"),
    ("payer_name", '["x"]', "array", ["x"]),
])
def test_a_text_field_of_another_type_is_refused_for_its_type_not_its_form(
        live, field, sent, word, shown):
    """`"payer_bank": 999100000027` holds the 12 digits a bank code needs: what is wrong
    is that it is not a string, and the answer says that, with the value as sent (a
    whole number past 2**53 - 1 as its digits in text, which no JSON reader rounds)."""
    body = TRANSFER
    raw = json.dumps(body, ensure_ascii=False).replace(
        f'"{field}": {json.dumps(body[field], ensure_ascii=False)}', f'"{field}": {sent}')
    r = post_signed(live.url, "/v1/transfers", raw.encode(),
                    **{"Idempotency-Key": f"text-type-{field}"})
    errors = [e for e in r.json()["errors"] if e["path"] == f"/{field}"]

    assert r.status_code == 422, r.text
    assert [e["code"] for e in errors] == ["field_must_be_text"]
    assert errors[0]["value"] == shown
    assert f"not a JSON {word}: got {sent}," in errors[0]["message"]
    assert "…" not in errors[0]["message"]


def test_an_amount_with_leading_zeros_is_told_so(live):
    body = {**TRANSFER, "amount": "00010.00"}
    r = post_signed(live.url, "/v1/transfers", json.dumps(body).encode(),
                    **{"Idempotency-Key": "amount-leading-zeros"})

    assert r.status_code == 422, r.text
    assert [e["code"] for e in r.json()["errors"]] == ["amount_must_not_have_leading_zeros"]
