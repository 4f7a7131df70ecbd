"""A refusal for a body of the wrong JSON type names that type in JSON's words (null,
array, object, ...), not the gateway's own language's."""

from __future__ import annotations

import pytest

from gateway.jsontext import type_name
from tests.api_support import CLIENT, SECRET, LiveGateway, post_signed


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
