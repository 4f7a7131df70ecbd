"""Hostile input and intruders at the API: every bad request gets a clear, specific
error, the process stays up, nothing is posted, and the refusal is recorded."""

from __future__ import annotations

import json
import time

import pytest
import requests
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.api import SEEN_MARGIN_S, seen_key
from gateway.messages import envelope as env_mod
from gateway.messages.signing import write_keypair
from tests.api_support import (CLIENT, OTHER, OTHER_SECRET, SECRET, post_signed,
                               signed_headers, two_clients)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    yield from two_clients(tmp_path_factory, "hostile")


def transfer(live, amount) -> dict:
    return {"payer_account": live.payer, "payer_name": "示例客户", "payer_bank": "999100000027",
            "payee_account": "6222000000000001", "payee_name": "对手",
            "payee_bank": "888200000023", "amount": amount, "urgency": "urgent"}


@pytest.mark.parametrize("amount, code", [
    ("-1", "amount_must_be_positive"),
    ("0", "amount_must_be_positive"),
    ("0.00", "amount_must_be_positive"),
    ("1e5", "amount_must_be_a_decimal_number"),
    ("1.001", "amount_must_have_at_most_two_decimals"),
    ("NaN", "amount_must_be_a_decimal_number"),
    ("Infinity", "amount_must_be_a_decimal_number"),
    ("99999999999999999999.00", "amount_too_large"),
    ("x\u0000", "amount_must_be_a_decimal_number"),
    ("１００.00", "amount_must_be_a_decimal_number"),   # full-width digits
    (" 100.00", "amount_must_be_a_decimal_number"),
    (100, "amount_must_be_a_decimal_string"),
    (None, "field_required"),
])
def test_bad_amounts_are_refused_by_name(live, amount, code):
    """Each malformed amount is refused with the rule it breaks; nothing is posted."""
    before = live.entries()
    body = json.dumps(transfer(live, amount)).encode()
    r = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": f"amt-{abs(hash(repr(amount)))}"})

    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert errors[0]["code"] == code
    assert errors[0]["path"] == "/amount" and errors[0]["expected"]
    assert live.entries() == before


@pytest.mark.parametrize("amount", ["", None])
def test_an_empty_amount_is_one_problem(live, amount):
    """An empty or null amount is field_required, and only that."""
    body = json.dumps(transfer(live, amount)).encode()
    r = post_signed(live.url, "/v1/transfers", body,
                    **{"Idempotency-Key": f"one-{amount!r}"})

    assert r.status_code == 422, r.text
    assert [e["code"] for e in r.json()["errors"] if e["path"] == "/amount"] == \
        ["field_required"]


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "body_must_be_json"),
    (b'{"amount": NaN}', 400, "body_must_be_json"),
    (b'{"amount": "1.00", "amount": "2.00"}', 400, "json_key_duplicate"),
    (b'{"payee_name": "x\u0001y"}', 422, "text_has_control_or_invisible_characters"),
    (b'{"payee_name": "\ud800"}', 422, "text_has_control_or_invisible_characters"),
    (b'{"payer_account": "1", "payee_account": "1", "payer_bank": "999100000027", '
     b'"payee_bank": "999100000027"}', 422, "payer_and_payee_accounts_must_differ"),
    (b"[" * 20_000 + b"]" * 20_000, 400, "body_nested_too_deep"),
    (b'{"a":' * 1_000 + b"1" + b"}" * 1_000, 400, "body_nested_too_deep"),
    (b"\xff\xfe\x00garbage", 400, "body_must_be_json"),
    (b"[]", 422, "body_must_be_a_json_object"),
    (b'{"amount": "1.00", "surprise": 1}', 422, "field_unknown"),
    # Valid JSON, a number of more digits than Python reads as an int (4,300): refused
    # by the rule of its field, as any number given for text is.
    (b'{"payer_account": 1' + b"0" * 5_000 + b"}", 422, "field_must_be_text"),
    (b'{"amount": 1' + b"0" * 5_000 + b"}", 422, "amount_must_be_a_decimal_string"),
])
def test_malformed_bodies_are_refused(live, body, status, code):
    """Broken, nested, binary and unexpected JSON bodies are refused, never a 500."""
    r = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": "body"})

    assert r.status_code == status, r.text
    assert code in [e["code"] for e in r.json()["errors"]]
    assert requests.get(live.url + "/health", timeout=5).status_code == 200


def test_answers_stay_small_and_valid_json(live):
    """A body with thousands of faults gets a bounded answer, and 1e400 is no Infinity."""
    body = json.dumps({f"j{i}": "v" for i in range(3000)}).encode()
    big = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": "big"})
    huge = post_signed(live.url, "/v1/transfers", b'{"a": "' + b"x" * 100_000 + b'"}',
                       **{"Idempotency-Key": "huge"})
    huge_number = post_signed(live.url, "/v1/transfers", b'{"amount": 1e400}',
                              **{"Idempotency-Key": "num"})

    assert huge.status_code == 413 and huge.json()["errors"][0]["code"] == "body_too_large"
    assert big.status_code == 422 and len(big.content) < 100_000
    assert big.json()["errors"][-1]["code"] == "more_problems_not_shown"
    assert json.loads(huge_number.text)["errors"]
    assert "Infinity" not in huge_number.text


def test_unknown_paths_and_methods_answer_in_the_error_shape(live):
    """404 and 405 carry the same error shape as every other refusal."""
    missing = requests.get(live.url + "/v1/nowhere", timeout=5)
    wrong = requests.delete(live.url + "/v1/transfers", timeout=5)

    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "path_unknown"
    assert wrong.status_code == 405
    assert wrong.json()["errors"][0]["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_the_batch_path_is_only_posted_to(live, method):
    """/v1/transfers/batch takes POST alone: another method is refused as one, never
    read as a payment named "batch" (405, not payment_not_found)."""
    wrong = requests.request(method, live.url + "/v1/transfers/batch", timeout=5)

    assert wrong.status_code == 405
    if method != "HEAD":  # a HEAD answer has no body
        assert [(p["code"], p["path"], p["value"]) for p in wrong.json()["errors"]] == [
            ("method_not_allowed", "/v1/transfers/batch", method)]


def test_all_problems_of_a_request_are_reported(live):
    """A request breaking several rules hears about all of them at once."""
    body = json.dumps({"payer_account": "x y", "payer_bank": "12345", "amount": "1.001",
                       "currency": "USD", "urgency": "now"}).encode()
    r = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": "many"})

    codes = {e["code"] for e in r.json()["errors"]}
    assert {"account_malformed", "bank_code_must_be_12_ascii_digits", "field_required",
            "amount_must_have_at_most_two_decimals", "currency_must_be_cny",
            "urgency_unknown"} <= codes


@pytest.mark.parametrize("mutate, code", [
    (lambda h: {k: v for k, v in h.items() if k != "X-Signature"}, "request_signature_invalid"),
    (lambda h: {}, "client_unknown"),
    (lambda h: dict(h, **{"X-Client-Id": "nobody"}), "client_unknown"),
    (lambda h: dict(h, **{"X-Timestamp": "1000000000"}), "request_timestamp_invalid"),
    (lambda h: dict(h, **{"X-Signature": "sha256=" + "0" * 64}), "request_signature_invalid"),
    (lambda h: dict(h, **{"X-Client-Id": OTHER}), "request_signature_invalid"),
])
def test_every_endpoint_refuses_bad_credentials(live, mutate, code):
    """Missing, wrong, stale or another client's credentials get 401 on every endpoint."""
    body = json.dumps(transfer(live, "1.00")).encode()
    for method, path, data in (("POST", "/v1/transfers", body),
                               ("POST", "/v1/messages", b"<Document/>"),
                               ("GET", "/v1/transfers/P1", b"")):
        headers = mutate(signed_headers(CLIENT, SECRET, method, path, data))
        r = requests.request(method, live.url + path, data=data, headers=headers, timeout=10)

        assert r.status_code == 401, (path, r.text)
        assert r.json()["errors"][0]["code"] == code
    assert requests.get(live.url + "/health", timeout=5).status_code == 200


def test_signature_covers_the_idempotency_key(live):
    """A signed POST whose Idempotency-Key is swapped for another is refused: the key is
    signed, so a captured request cannot be turned into a second payment."""
    body = json.dumps(transfer(live, "2.00")).encode()
    headers = signed_headers(CLIENT, SECRET, "POST", "/v1/transfers", body,
                             idempotency_key="signed-key")
    headers["Content-Type"] = "application/json"
    before = live.entries()
    swapped = requests.post(live.url + "/v1/transfers", data=body, timeout=10,
                            headers=dict(headers, **{"Idempotency-Key": "another-key"}))
    dropped = requests.post(live.url + "/v1/transfers", data=body, timeout=10,
                            headers=headers)

    for r in (swapped, dropped):
        assert r.status_code == 401, r.text
        assert r.json()["errors"][0]["code"] == "request_signature_invalid"
    assert live.entries() == before


def test_an_idempotency_key_of_other_bytes_than_utf8_is_signed_as_sent(live):
    """A key header whose bytes are not UTF-8 is signed as those bytes and then refused
    for what it is (400 idempotency_key_malformed), never a server error."""
    body = json.dumps(transfer(live, "2.50")).encode()
    raw_key = b"k\xff\xfe"
    headers = signed_headers(CLIENT, SECRET, "POST", "/v1/transfers", body,
                             idempotency_key=raw_key.decode("utf-8", "surrogateescape"))
    r = requests.post(live.url + "/v1/transfers", data=body, timeout=10,
                      headers=dict(headers, **{"Idempotency-Key": raw_key,
                                               "Content-Type": "application/json"}))

    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["code"] == "idempotency_key_malformed"


def test_a_signature_is_taken_once(live):
    """The same signed request sent again within the window is refused as a replay,
    whatever the endpoint; the same request signed anew is taken (a retry under its key
    gets the stored answer)."""
    body = json.dumps(transfer(live, "3.00")).encode()
    headers = signed_headers(CLIENT, SECRET, "POST", "/v1/transfers", body,
                             idempotency_key="once")
    headers.update({"Content-Type": "application/json", "Idempotency-Key": "once"})
    first = requests.post(live.url + "/v1/transfers", data=body, headers=headers, timeout=10)
    entries = live.entries()
    replayed = requests.post(live.url + "/v1/transfers", data=body, headers=headers,
                             timeout=10)
    again = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": "once"})
    path = f"/v1/transfers/{first.json()['id']}"
    read = signed_headers(CLIENT, SECRET, "GET", path, b"")
    reads = [requests.get(live.url + path, headers=read, timeout=10) for _ in range(2)]

    assert first.status_code == 201, first.text
    assert replayed.status_code == 401
    problem = replayed.json()["errors"][0]
    assert problem["code"] == "request_replayed" and problem["path"] == "X-Signature"
    assert live.entries() == entries
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert [r.status_code for r in reads] == [200, 401]
    assert reads[1].json()["errors"][0]["code"] == "request_replayed"


def test_a_replay_is_known_to_every_gateway_process(live):
    """What marks a signature taken lives in the shared Redis, with an expiry that ends
    with the signature's window, so another process sharing that Redis refuses it too
    and nothing is kept longer than the window."""
    path = "/v1/transfers?limit=1"
    stamp = f"{time.time() - 200:.6f}"  # 100 s of its window left
    headers = signed_headers(CLIENT, SECRET, "GET", path, b"", stamp=stamp)
    first = requests.get(live.url + path, headers=headers, timeout=10)
    key = seen_key(CLIENT, headers["X-Signature"])
    ttl = live.loop.run(live.gw.redis.ttl(key))

    assert first.status_code == 200, first.text
    assert 90 <= ttl <= 100 + SEEN_MARGIN_S
    # The Redis key alone decides (no memory of this process's own): gone, the
    # signature is taken again, and remembered again.
    live.loop.run(live.gw.redis.delete(key))
    assert requests.get(live.url + path, headers=headers, timeout=10).status_code == 200
    assert requests.get(live.url + path, headers=headers, timeout=10).status_code == 401


def test_signed_requests_wait_for_redis(live, monkeypatch):
    """While Redis does not answer, a signed request is answered 503 redis_unavailable
    with Retry-After: whether its signature was taken before cannot be told, so it is
    not taken on trust."""
    async def unreachable(*args, **kwargs):
        raise RedisConnectionError("Connection refused")
    monkeypatch.setattr(live.gw.redis, "set", unreachable)
    path = "/v1/transfers?limit=1"
    r = requests.get(live.url + path, headers=signed_headers(CLIENT, SECRET, "GET", path, b""),
                     timeout=10)

    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.json()["errors"][0]["code"] == "redis_unavailable"


@pytest.mark.parametrize("stamp", ["1765069200.1234567", "1765069200.", ".5", "1e9", "+1765069200"])
def test_malformed_timestamps_are_refused(live, stamp):
    headers = signed_headers(CLIENT, SECRET, "GET", "/v1/transfers", b"", stamp=stamp)
    r = requests.get(live.url + "/v1/transfers", headers=headers, timeout=10)

    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "request_timestamp_invalid"


def test_other_client_cannot_read_a_payment(live):
    """A payment is visible to the client that made it, not to another client."""
    body = json.dumps(transfer(live, "60000.00")).encode()
    made = post_signed(live.url, "/v1/transfers", body, **{"Idempotency-Key": "own"})
    pid = made.json()["id"]
    path = f"/v1/transfers/{pid}"
    mine = requests.get(live.url + path, headers=signed_headers(CLIENT, SECRET, "GET", path,
                                                                b""), timeout=10)
    theirs = requests.get(live.url + path, headers=signed_headers(OTHER, OTHER_SECRET, "GET",
                                                                  path, b""), timeout=10)

    never = "P" + pid[1:-1] + ("0" if pid[-1] != "0" else "1")
    unknown_path = f"/v1/transfers/{never}"
    unknown = requests.get(live.url + unknown_path, headers=signed_headers(
        OTHER, OTHER_SECRET, "GET", unknown_path, b""), timeout=10)

    assert made.status_code == 201 and mine.status_code == 200
    assert theirs.status_code == 404 == unknown.status_code
    # Told exactly as an id never given: the answer shows nothing of the payment.
    told, unknown_told = theirs.json()["errors"], unknown.json()["errors"]
    def shown(errors: list[dict], payment_id: str) -> list[dict]:
        return [{k: (v.replace(payment_id, "<id>") if isinstance(v, str) else v)
                 for k, v in e.items()} for e in errors]
    assert shown(told, pid) == shown(unknown_told, never)
    assert told[0]["code"] == "payment_not_found"


@pytest.mark.parametrize("raw, status, code", [
    (b"{H:02" + b"9" * 40 + b"}", 400, "header_must_be_130_characters"),
    (b"<?xml version='1.0'?><Document/>", 400, "envelope_must_start_with_header"),
    (b"", 400, "envelope_must_start_with_header"),
])
def test_link_refuses_malformed_envelopes_and_records_them(live, raw, status, code):
    """Truncated or bare messages on the link are refused and recorded for operators."""
    before = len(live.query("SELECT id FROM alerts", ()))
    r = requests.post(live.url + "/link/inbound", data=raw, timeout=10)

    assert r.status_code == status
    assert r.json()["errors"][0]["code"] == code
    assert len(live.query("SELECT id FROM alerts", ())) == before + 1


@pytest.mark.parametrize("raw", [
    b'{"payer_account": "20000000001410300000013", "amount": "1.00"}',
    b'  {"amount": "1.00"}\n', b"[]", b'[{"amount": "1.00"}]', b"{}",
])
def test_json_sent_as_a_ready_message_is_told_as_json(live, raw):
    """JSON is not a CNAPS2 message: refused as JSON (400 message_body_is_json), not as
    an envelope missing its header, nor as XML that does not parse."""
    r = post_signed(live.url, "/v1/messages", raw)
    errors = r.json()["errors"]

    assert r.status_code == 400
    assert [(e["code"], e["path"]) for e in errors] == [("message_body_is_json", "/")]
    assert "{H:" in errors[0]["expected"] and "XML" in errors[0]["expected"]


def test_link_refuses_forged_and_unsigned_payments(live):
    """A payment signed with the wrong key, or not signed, is refused and never processed
    (the peer's key is installed, so the forged signature is judged by it)."""
    write_keypair(live.gw.settings.keys_path, "888200000015")
    header = env_mod.Header(orig_sender="888200000015", orig_sender_sid="HVPS",
                            orig_receiver="999100000019", orig_receiver_sid="HVPS",
                            send_date="20261207", send_time="090000",
                            mesg_type="hvps.111.001.01", mesg_id="20261207000000000077",
                            mesg_ref_id="20261207000000000077", direction="D")
    forged = env_mod.Envelope(header, "MEQCIDeadBeef" + "A" * 80, b"<Document/>").encode()
    unsigned = env_mod.Envelope(header, None, b"<Document/>").encode()
    for raw, code in ((forged, "signature_invalid"), (unsigned, "signature_required")):
        r = requests.post(live.url + "/link/inbound", data=raw, timeout=10)
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == code
    assert live.query("SELECT COUNT(*) FROM inbox", ())[0][0] == 0
