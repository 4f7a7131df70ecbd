"""Every maxLength gateway/openapi.yaml gives a request's text (a body field, an item of
a list field, a header) is the length the API itself takes: a value of exactly that
length is not refused at that field, and one a character longer is. The description is
read, not copied, so a limit changed on one side only fails here."""

from __future__ import annotations

import itertools
import json
from importlib import resources
from typing import Any, Iterator

import pytest
import requests
import yaml

from tests.api_support import LiveGateway

SPEC = yaml.safe_load(resources.files("gateway").joinpath("openapi.yaml").read_text())
_KEYS = itertools.count()


def _resolved(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = SPEC
    for step in ref.removeprefix("#/").split("/"):
        node = node[step]
    return node


def limits() -> Iterator[tuple[str, str, str, str, int]]:
    """(path, method, where: "header" or "body", name, maxLength) for every text limit of
    a request; a body field's name is its JSON pointer, "/name" or "/name/0" for an item
    of a list."""
    for path, operations in SPEC["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                bound = param.get("schema", {}).get("maxLength")
                if param["in"] == "header" and bound is not None:
                    yield path, method, "header", param["name"], bound
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            for name, field in _resolved(body["schema"]).get("properties", {}).items():
                for variant in field.get("oneOf", [field]):
                    if "maxLength" in variant:
                        yield path, method, "body", f"/{name}", variant["maxLength"]
                    if "maxLength" in variant.get("items", {}):
                        yield path, method, "body", f"/{name}/0", variant["items"]["maxLength"]


LIMITS = sorted(set(limits()))


def test_the_description_gives_limits_to_compare():
    assert len(LIMITS) >= 25
    assert ("/v1/transfers/{id}/return", "post", "body", "/reason", 100) in LIMITS


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("openapi-limits")).start()
    body = {"payer_account": g.payer, "payer_name": g.payer_name, "payer_bank": "999100000027",
            "payee_account": "6222000000000001", "payee_name": "对手客户",
            "payee_bank": "888200000023", "amount": "1.00"}
    made = requests.post(f"{g.url}/v1/transfers", json=body, timeout=10,
                         headers={"Idempotency-Key": "limits-payment"})
    assert made.status_code == 201, made.text
    g.payment_id = made.json()["id"]
    yield g
    g.stop()


def refusals_at(live: LiveGateway, path: str, method: str, where: str, name: str,
                length: int) -> list[dict[str, Any]]:
    """The problems at `name` of a request whose text there is `length` digits (a text
    every such field takes: names, keys, reasons, an agreement, a TxId)."""
    text = "1" * length
    headers = {"Idempotency-Key": f"limits-{next(_KEYS)}"}
    body: Any = {}
    if where == "header":
        headers[name] = text
        field_path = name
    else:
        field, _, item = name[1:].partition("/")
        body[field] = [text] if item else text
        field_path = f"/{field}"
    if path == "/v1/transfers/batch":
        body = [body]
    url = live.url + path.replace("{id}", live.payment_id)
    r = requests.request(method.upper(), url, data=json.dumps(body).encode(), timeout=10,
                         headers=dict(headers, **{"Content-Type": "application/json"}))
    assert r.status_code < 500, r.text
    answer = r.json()
    errors = answer.get("errors", [])
    for result in answer.get("results", []) if isinstance(answer, dict) else []:
        errors.extend(result.get("errors", []))
    return [e for e in errors
            if e.get("path") in (field_path, f"/0{field_path}")
            or e.get("path", "").startswith(f"{field_path}/")]


@pytest.mark.parametrize("path, method, where, name, bound", LIMITS,
                         ids=[f"{m} {p} {n}" for p, m, _, n, _ in LIMITS])
def test_each_max_length_is_the_api_s(live, path, method, where, name, bound):
    at_bound = refusals_at(live, path, method, where, name, bound)
    over = refusals_at(live, path, method, where, name, bound + 1)

    assert at_bound == [], f"{bound} characters refused: {at_bound}"
    assert over, f"{bound + 1} characters taken at {name}"
