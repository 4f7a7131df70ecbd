"""Every endpoint taking a JSON body takes it declared as application/json: a body sent
as text/plain, as a form or with no Content-Type is refused with 415
`unsupported_media_type` naming the type expected, before anything is done with it. A
ready message (POST /v1/messages) keeps its own rules: it is no JSON body."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
import requests
import yaml

from tests.api_support import LiveGateway, ready_example

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
