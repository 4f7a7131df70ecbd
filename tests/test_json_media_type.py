"""Every endpoint taking a JSON body takes it declared as application/json: a body sent
as text/plain, as a form, or (with the API open) with no Content-Type is refused with
415 `unsupported_media_type` naming the type expected, before anything is done with it.
A signed request may send none: its body is taken as JSON. A transfer sent again under
its key gets its stored answer whatever its type. A ready message (POST /v1/messages)
keeps its own rules: it is no JSON body."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
import requests
import yaml
from aiohttp.test_utils import make_mocked_request

from gateway import api

from tests.api_support import (CLIENT, SECRET, LiveGateway, ready_example, signed_headers,
                               two_clients)

SPEC = yaml.safe_load(resources.files("gateway").joinpath("openapi.yaml").read_text())
JSON_POSTS = sorted(path for path, operations in SPEC["paths"].items()
                    if "application/json" in operations.get("post", {})
                    .get("requestBody", {}).get("content", {}))
REFUSED_TYPES = ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                 "application/json; charset=iso-8859-1", None]


def test_the_description_lists_the_json_endpoints() -> None:
    assert {"/v1/transfers", "/v1/transfers/batch", "/v1/debits", "/v1/queries",
            "/v1/free-format", "/v1/transfers/{id}/return"} <= set(JSON_POSTS)
    assert "/v1/messages" not in JSON_POSTS
    assert all("415" in SPEC["paths"][path]["post"]["responses"] for path in JSON_POSTS)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("media-type")).start()
    yield g
    g.stop()


def post(live: LiveGateway, path: str, body: bytes, content_type: str | None,
         key: str = "media-1") -> requests.Response:
    headers = {"Idempotency-Key": key}
    if content_type is not None:
        headers["Content-Type"] = content_type
    url = live.url + path.replace("{id}", "P0000000000000001")
    # requests adds no Content-Type of its own to a body given as bytes.
    return requests.post(url, data=body, headers=headers, timeout=10)


@pytest.mark.parametrize("path", JSON_POSTS)
@pytest.mark.parametrize("content_type", REFUSED_TYPES)
def test_a_json_body_not_declared_as_json_is_refused(live, path: str,
                                                     content_type: str | None) -> None:
    r = post(live, path, json.dumps({"reason": "x"}).encode(), content_type)
    [error] = r.json()["errors"]

    assert r.status_code == 415, r.text
    assert (error["code"], error["path"], error["value"]) == (
        "unsupported_media_type", "Content-Type", content_type)
    assert "application/json" in error["expected"]


def transfer(live: LiveGateway) -> dict[str, Any]:
    return {"payer_account": live.payer, "payer_name": live.payer_name,
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "1.00"}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON; charset=UTF-8"])
def test_json_with_or_without_its_charset_is_taken(live, content_type: str) -> None:
    r = post(live, "/v1/transfers", json.dumps(transfer(live)).encode(), content_type,
             key=f"media-{content_type}")

    assert r.status_code == 201, r.text


def test_an_endpoint_taking_no_body_needs_no_type(live) -> None:
    """A status query or a cancel sent without a body is not refused for its type."""
    r = post(live, "/v1/transfers/{id}/status-query", b"", None)

    assert r.json()["errors"][0]["code"] != "unsupported_media_type", r.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_a_ready_message_keeps_its_own_type_rules(live, content_type: str | None) -> None:
    r = post(live, "/v1/messages", ready_example(f"2026120790{len(content_type or ''):06d}"),
             content_type)

    assert r.status_code != 415, r.text
    assert all(e["code"] != "unsupported_media_type" for e in r.json().get("errors", []))


@pytest.mark.parametrize("content_type", REFUSED_TYPES)
def test_a_transfer_sent_again_gets_its_stored_answer_whatever_its_type(
        live, content_type: str | None) -> None:
    """A core system that sent no type, or another, before it was checked retries a
    transfer answered 201 after a timeout: the stored 201, never a 415 that could lead it
    to pay again under a new key. A new request of that type is refused all the same."""
    key = f"again-{content_type}"
    body = transfer(live)
    first = post(live, "/v1/transfers", json.dumps(body).encode(), "application/json", key)
    again = post(live, "/v1/transfers", json.dumps(body, indent=1).encode(), content_type,
                 key)
    other_body = post(live, "/v1/transfers", json.dumps(dict(body, amount="2.00")).encode(),
                      content_type, key)
    new_key = post(live, "/v1/transfers", json.dumps(body).encode(), content_type,
                   key + "-new")

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (201, first.json())
    assert [r.status_code for r in (other_body, new_key)] == [415, 415]
    assert [tuple(r) for r in live.query("SELECT COUNT(*) FROM idempotency WHERE key LIKE ?",
                                         (key + "%",))] == [(1,)]


@pytest.fixture(scope="module")
def signed_live(tmp_path_factory):
    yield from two_clients(tmp_path_factory, "media-type-signed")


def post_signed_as(live: LiveGateway, body: bytes, content_type: str | None,
                   key: str) -> requests.Response:
    headers = {"Idempotency-Key": key, **signed_headers(
        CLIENT, SECRET, "POST", "/v1/transfers", body, idempotency_key=key)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(live.url + "/v1/transfers", data=body, headers=headers, timeout=10)


def test_a_signed_request_with_no_type_is_taken_as_json(signed_live) -> None:
    """No browser signs a request, so a signed one sent with no Content-Type is the core
    system's and its body is read as JSON; a type declared otherwise is still refused."""
    body = json.dumps(transfer(signed_live)).encode()
    untyped = post_signed_as(signed_live, body, None, "signed-untyped")
    plain = post_signed_as(signed_live, body, "text/plain", "signed-plain")

    assert untyped.status_code == 201, untyped.text
    assert plain.status_code == 415, plain.text


@pytest.mark.parametrize("content_type", sorted(api._JSON_DECLARED))
def test_the_types_taken_without_parsing_are_types_the_parse_takes(monkeypatch,
                                                                   content_type) -> None:
    """The Content-Type values taken as they come, unparsed (nearly every request's), are
    each one the full reading takes: the quick way never takes what it would refuse."""
    request = make_mocked_request("POST", "/v1/transfers",
                                  headers={"Content-Type": content_type})
    api.refuse_other_media_type(request)  # taken: nothing raised
    monkeypatch.setattr(api, "_JSON_DECLARED", frozenset())
    api.refuse_other_media_type(request)
