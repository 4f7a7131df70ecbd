"""A header the gateway acts on, given twice, is refused with every value named
(`header_repeated`, 400), before anything is done: the first value is never taken, as a
query parameter or a JSON member given twice is never taken either. An Idempotency-Key
given twice could otherwise make a payment under a key the client did not mean, and a
signature header given twice leaves it unclear what was signed."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.api import sign_request
from tests.api_support import CLIENT, SECRET, LiveGateway

TRANSFER = {"payer_account": "20000000001410300000013", "payer_name": "示例客户",
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "10.00",
            "urgency": "urgent"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("repeated-headers")).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    g = LiveGateway(tmp_path_factory.mktemp("repeated-headers-signed"),
                    api_keys={CLIENT: SECRET}).start()
    yield g
    g.stop()


def send(base: str, method: str, path: str, headers: list[tuple[str, str]],
         body: bytes = b"") -> tuple[int, Any]:
    """A request with exactly these header lines (a name may come twice)."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest(method, path)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            conn.putheader(name, value)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def payments(live: LiveGateway) -> int:
    return live.query("SELECT COUNT(*) FROM payments", ())[0][0]


def test_an_idempotency_key_given_twice_is_refused(live):
    """Two keys, or the same key twice: refused at Idempotency-Key with both values, no
    payment made; the same request with one key is taken."""
    body = json.dumps(TRANSFER).encode()
    before = payments(live)
    answers = [send(live.url, "POST", "/v1/transfers",
                    [("Content-Type", "application/json"), ("Idempotency-Key", first),
                     ("Idempotency-Key", second)], body)
               for first, second in (("rk-1", "rk-2"), ("rk-1", "rk-1"))]

    for (status, answer), values in zip(answers, (["rk-1", "rk-2"], ["rk-1", "rk-1"])):
        assert status == 400, answer
        assert [(e["code"], e["path"], e["value"]) for e in answer["errors"]] == [
            ("header_repeated", "Idempotency-Key", values)]
    assert payments(live) == before
    status, _ = send(live.url, "POST", "/v1/transfers",
                     [("Content-Type", "application/json"), ("Idempotency-Key", "rk-1")],
                     body)
    assert status == 201


def test_two_keys_joined_by_a_proxy_are_refused(live):
    """Two Idempotency-Key lines a proxy joined into one ("rk-3, rk-4") are not taken as a
    key of their own: refused, no payment made."""
    before = payments(live)
    status, answer = send(live.url, "POST", "/v1/transfers",
                          [("Content-Type", "application/json"),
                           ("Idempotency-Key", "rk-3, rk-4")], json.dumps(TRANSFER).encode())
    assert status == 400, answer
    assert [(e["code"], e["path"], e["value"]) for e in answer["errors"]] == [
        ("idempotency_key_malformed", "Idempotency-Key", "rk-3, rk-4")]
    assert payments(live) == before


@pytest.mark.parametrize("path", ["/v1/periodic-credits", "/v1/debits", "/v1/queries",
                                  "/v1/transfers/batch"])
def test_every_endpoint_refuses_a_repeated_idempotency_key(live, path):
    """Not the transfers alone: every route, whatever it does with the key."""
    status, answer = send(live.url, "POST", path,
                          [("Content-Type", "application/json"), ("Idempotency-Key", "a"),
                           ("idempotency-key", "b")], b"{}")

    assert status == 400
    assert answer["errors"][0]["code"] == "header_repeated"
    assert answer["errors"][0]["value"] == ["a", "b"]


@pytest.mark.parametrize("name", ["X-Client-Id", "X-Timestamp", "X-Signature",
                                  "Idempotency-Key"])
def test_a_signed_request_with_a_repeated_credential_is_refused(signed, name):
    """A request signed over the first value, sent with a second one after it, is refused
    for the repetition (400), not taken under the first and not judged as a bad
    signature."""
    body = json.dumps(TRANSFER).encode()
    stamp = f"{time.time():.6f}"
    headers = {"Content-Type": "application/json", "Idempotency-Key": "sk-1",
               "X-Client-Id": CLIENT, "X-Timestamp": stamp,
               "X-Signature": sign_request(SECRET, stamp, "POST", "/v1/transfers", body,
                                           "sk-1")}
    lines = [*headers.items(), (name, "other")]
    before = payments(signed)
    status, answer = send(signed.url, "POST", "/v1/transfers", lines, body)

    assert status == 400, answer
    assert [(e["code"], e["path"]) for e in answer["errors"]] == [("header_repeated", name)]
    assert answer["errors"][0]["value"] == [headers[name], "other"]
    assert payments(signed) == before


def test_every_repeated_header_is_told_together(live):
    status, answer = send(live.url, "POST", "/v1/transfers",
                          [("Content-Type", "application/json"), ("Origin", "x"),
                           ("Origin", "y"), ("Idempotency-Key", "a"),
                           ("Idempotency-Key", "b")], b"{}")

    assert status == 400
    assert [e["path"] for e in answer["errors"]] == ["Idempotency-Key", "Origin"]


def test_the_link_refuses_repeated_envelope_lengths(live):
    """A framed POST whose lengths header comes twice cannot be split one way only."""
    status, answer = send(live.url, "POST", "/link/inbound",
                          [("Envelope-Lengths", "3"), ("Envelope-Lengths", "1,2")], b"abc")

    assert status == 400
    assert [(e["code"], e["path"]) for e in answer["errors"]] == [
        ("header_repeated", "Envelope-Lengths")]


def test_the_operators_console_refuses_repeated_credentials(live):
    status, answer = send(live.url, "GET", "/ops/api/status",
                          [("Authorization", "Basic b3AxOm9wMS1kZW1v"),
                           ("Authorization", "Basic c3VwMTpzdXAxLWRlbW8=")])

    assert status == 400
    assert answer["errors"][0]["code"] == "header_repeated"


def test_headers_the_gateway_does_not_act_on_may_repeat(live):
    """Repetition is refused for the headers the gateway reads, not for every header."""
    status, answer = send(live.url, "GET", "/health",
                          [("Accept", "application/json"), ("Accept", "text/plain"),
                           ("X-Trace", "1"), ("X-Trace", "2")])

    assert status == 200, answer


def test_a_repeated_content_type_never_reaches_the_gateway(live):
    """docs/errors.md says so: the HTTP server refuses it (400) before any route runs."""
    before = payments(live)
    url = urlsplit(live.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    body = json.dumps(TRANSFER).encode()
    try:
        conn.putrequest("POST", "/v1/transfers")
        for name, value in [("Content-Type", "application/json"),
                            ("Content-Type", "text/plain"), ("Idempotency-Key", "ct-1"),
                            ("Content-Length", str(len(body)))]:
            conn.putheader(name, value)
        conn.endheaders(body)
        status = conn.getresponse().status
    finally:
        conn.close()

    assert status == 400
    assert payments(live) == before
