"""Requests from the core system and operators: checked fields, every problem at once.

    POST /v1/queries                {"payment_id"} or {"original": {"msg_id",
                                     "sending_bank", "message_type"?, "tx_id"?,
                                     "business_type"?},
                                     "amount"}; "content", "query_type"?, "doubt_at"?,
                                     "operator"?
    POST /v1/queries/{id}/reply     {"content", "operator"}  (Idempotency-Key)
    POST /v1/queries/{id}/chase     {"content"?, "operator"?}
    POST /v1/free-format            {"receiver", "content", "system"?, "operator"?}

Texts travel in CNAPS2 elements of bounded length (Cntt Max256Text, MsgCntt
Max500Text) and must be printable: a control character cannot be carried in XML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import intake, jsontext
from gateway.clock import parse_business_datetime
from gateway.errors import ProblemList, ValidationFailed
from gateway.messages import ccms303
from gateway.money import parse_yuan
from gateway.queries.answers import CONTENT_LEN_MAX, Subject

OPERATOR_LEN_MAX = 40
_BANK = re.compile(r"[0-9]{12}")
_MSG_ID = re.compile(r"[0-9A-Za-z]{1,35}")
_TX_ID = re.compile(r"[0-9]{1,16}")
_BUSINESS_TYPE = re.compile(r"[A-Z][0-9]{3}")
_MESSAGE_TYPE = re.compile(r"(hvps|beps)\.[0-9]{3}\.[0-9]{3}\.[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SYSTEMS = ("HVPS", "BEPS")


@dataclass(frozen=True)
class QueryRequest:
    payment_id: str | None
    subject: Subject | None
    amount_fen: int | None
    content: str
    query_type: str
    doubt_at: datetime | None
    operator: str | None
    amount_text: str | None = None  # `amount` as the client wrote it, for refusals


@dataclass(frozen=True)
class FreeFormatRequest:
    receiver: str
    content: str
    system: str
    operator: str | None


# Each request's fields ({name: required}); null on an optional one is the field left
# out (intake.nulls_left_out), as on every JSON endpoint.
QUERY_TABLE = {"payment_id": False, "original": False, "amount": False, "content": True,
               "query_type": False, "doubt_at": False, "operator": False}
SUBJECT_TABLE = {"msg_id": True, "sending_bank": True, "message_type": False,
                 "tx_id": False, "business_type": False}
REPLY_TABLE = {"content": True, "operator": True}
CHASE_TABLE = {"content": False, "operator": False}
FREE_FORMAT_TABLE = {"receiver": True, "content": True, "system": False, "operator": False}


def _object(body: Any, table: dict[str, bool], p: ProblemList) -> dict[str, Any]:
    """The request's object without its optional fields given null; a field not in
    `table` is refused."""
    if not isinstance(body, dict):
        p.add("body_must_be_a_json_object", "/", jsontext.type_name(body), "a JSON object")
        p.raise_if_any()
    body = intake.nulls_left_out(body, intake.optional(table))
    for name in body:
        if name not in table:
            p.add("field_unknown", f"/{name}", body[name], "only: " + ", ".join(table))
    return body


def _text(body: dict[str, Any], name: str, len_max: int, p: ProblemList,
          required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if p.not_text(f"/{name}", value, f"at most {len_max} printable characters"):
        return None
    if not isinstance(value, str) or not value.strip():
        p.required(f"/{name}", value, name in body, f"at most {len_max} printable characters")
        return None
    if len(value) > len_max or _CONTROL.search(value):
        p.add("text_too_long_or_not_printable", f"/{name}", value,
              f"at most {len_max} printable characters")
        return None
    return value


def parse_query(body: Any, now: datetime) -> QueryRequest:
    p = ProblemList()
    body = _object(body, QUERY_TABLE, p)
    payment_id = body.get("payment_id")
    subject = _subject(body.get("original"), p) if "original" in body else None
    if (payment_id is None) == ("original" not in body):
        p.add("payment_or_original_required", "/", None,
              "either payment_id or original, not both")
    if not p.not_text("/payment_id", payment_id, "a payment id") and (
            payment_id is not None and not payment_id):
        p.add("field_malformed", "/payment_id", payment_id, "a payment id")
    amount = None
    if body.get("amount") is not None:
        parsed = parse_yuan(body["amount"], "/amount")
        if isinstance(parsed, int):
            amount = parsed
        else:
            p.items.append(parsed)
    content = _text(body, "content", CONTENT_LEN_MAX, p)
    query_type = body.get("query_type", "QT00")
    if not p.not_text("/query_type", query_type, "QT00 or QT01") and (
            query_type not in ("QT00", "QT01")):
        p.add("query_type_unknown", "/query_type", query_type, "QT00 or QT01")
    doubt_at = _doubt_at(body.get("doubt_at"), now, p)
    operator = _text(body, "operator", OPERATOR_LEN_MAX, p, required=False)
    p.raise_if_any(ValidationFailed)
    return QueryRequest(payment_id, subject, amount, content or "", query_type, doubt_at,
                        operator, body.get("amount") if amount is not None else None)


def _subject(value: Any, p: ProblemList) -> Subject | None:
    if not isinstance(value, dict):
        p.add("field_malformed", "/original", value,
              "an object with msg_id, sending_bank and optionally message_type, tx_id")
        return None
    patterns = {"msg_id": _MSG_ID, "sending_bank": _BANK, "message_type": _MESSAGE_TYPE,
                "tx_id": _TX_ID, "business_type": _BUSINESS_TYPE}
    value = intake.nulls_left_out(value, intake.optional(SUBJECT_TABLE))
    for name, required in SUBJECT_TABLE.items():
        given = value.get(name)
        if p.not_text(f"/original/{name}", given, patterns[name].pattern):
            continue
        if given is None and required:
            p.required(f"/original/{name}", given, name in value, patterns[name].pattern)
        elif given is not None and not patterns[name].fullmatch(given):
            p.add("field_malformed", f"/original/{name}", given, patterns[name].pattern)
    for name in value:
        if name not in SUBJECT_TABLE:
            p.add("field_unknown", f"/original/{name}", value[name],
                  "only: " + ", ".join(SUBJECT_TABLE))
    return Subject(str(value.get("msg_id")), str(value.get("sending_bank")),
                   value.get("message_type") or "hvps.111.001.01", value.get("tx_id"),
                   value.get("business_type") or "A100")


def _doubt_at(value: Any, now: datetime, p: ProblemList) -> datetime | None:
    if value is None:
        return None
    if p.not_text("/doubt_at", value, "an ISO date and time"):
        return None
    try:
        at = parse_business_datetime(value)
    except ValueError:
        at = None
    if at is None or at > now:
        p.add("doubt_at_malformed", "/doubt_at", value,
              "an ISO date and time, not in the future (Asia/Shanghai when no offset)")
    return at


# What a request means is the same with these left out: the defaults `parse_query` and
# `_subject` apply, and their optional fields given null.
QUERY_DEFAULTS = {"query_type": "QT00"}
_SUBJECT_DEFAULTS = {"message_type": "hvps.111.001.01", "business_type": "A100"}


def query_meaning(body: Any) -> Any:
    """What a query request asks for, the same for every spelling of it (a retry under
    its Idempotency-Key is compared so, intake.same_transfer): a default spelt out or a
    null as if left out, the amount in its usual form, the time of the doubt as the
    instant it names (`2026-12-07T08:30` is `2026-12-07T08:30:00+08:00`). Texts go out
    as written, so their spelling counts; what `parse_query` refuses stays as written."""
    if type(body) is not dict:
        return body
    out = intake.without(body, QUERY_DEFAULTS, intake.optional(QUERY_TABLE))
    intake.amount_meaning(out)
    if type(out.get("original")) is dict:
        out["original"] = intake.without(out["original"], _SUBJECT_DEFAULTS,
                                         intake.optional(SUBJECT_TABLE))
    doubt_at = out.get("doubt_at")
    if type(doubt_at) is str:
        try:
            out["doubt_at"] = parse_business_datetime(doubt_at).isoformat()
        except ValueError:
            pass  # refused by parse_query, by name
    return out


def free_format_meaning(body: Any) -> Any:
    """What a free-format request asks for: `system` HVPS (the default) or an optional
    field given null as if left out; the text goes out as written."""
    if type(body) is not dict:
        return body
    return intake.without(body, FREE_FORMAT_DEFAULTS, intake.optional(FREE_FORMAT_TABLE))


def chase_request(query_id: str, body: Any) -> Any:
    """A chase as it is kept and compared under its Idempotency-Key (`_on_query`); no
    body is a chase with no fields."""
    return _on_query(query_id, {} if body is None else body)


def reply_request(query_id: str, body: Any) -> Any:
    """A reply as it is kept and compared under its Idempotency-Key (`_on_query`)."""
    return _on_query(query_id, body)


def _on_query(query_id: str, body: Any) -> Any:
    """A request about one query (a chase, a reply): its body's fields with the query it
    is about, the path's id, as `query_id`, so that the key sent again on another query
    is another request. A body that is no object stays as it is (its parse refuses it,
    by name)."""
    if type(body) is not dict:
        return body
    return {**body, "query_id": query_id}


def chase_meaning(request: Any) -> Any:
    """What a chase (`chase_request`) asks for: an optional field given null as if left
    out; its text goes out as written, so its spelling counts."""
    if type(request) is not dict:
        return request
    return intake.without(request, CHASE_DEFAULTS, intake.optional(CHASE_TABLE))


def reply_meaning(request: Any) -> Any:
    """What a reply (`reply_request`) asks for: its fields are required and go out as
    written (the answer and who gave it), so it is the request itself."""
    return request


# The fields of each request in the order a refusal names them, and what those left out
# ask for (gateway.queries.idempotency).
QUERY_FIELDS = tuple(QUERY_TABLE)
FREE_FORMAT_FIELDS = tuple(FREE_FORMAT_TABLE)
FREE_FORMAT_DEFAULTS = {"system": "HVPS"}
CHASE_FIELDS = ("query_id", *CHASE_TABLE)
CHASE_DEFAULTS: dict[str, Any] = {}  # a chase left without a text takes its query's
REPLY_FIELDS = ("query_id", *REPLY_TABLE)
REPLY_DEFAULTS: dict[str, Any] = {}  # a reply has no optional field


def parse_reply(body: Any) -> tuple[str, str]:
    p = ProblemList()
    body = _object(body, REPLY_TABLE, p)
    content = _text(body, "content", CONTENT_LEN_MAX, p)
    operator = _text(body, "operator", OPERATOR_LEN_MAX, p)
    p.raise_if_any(ValidationFailed)
    return content or "", operator or ""


def parse_chase(body: Any) -> tuple[str | None, str | None]:
    p = ProblemList()
    body = _object(body if body is not None else {}, CHASE_TABLE, p)
    content = _text(body, "content", CONTENT_LEN_MAX, p, required=False)
    operator = _text(body, "operator", OPERATOR_LEN_MAX, p, required=False)
    p.raise_if_any(ValidationFailed)
    return content, operator


def parse_free_format(body: Any) -> FreeFormatRequest:
    p = ProblemList()
    body = _object(body, FREE_FORMAT_TABLE, p)
    receiver = body.get("receiver")
    if not p.not_text("/receiver", receiver, "12 ASCII digits") and (
            receiver is None or not _BANK.fullmatch(receiver)):
        p.add("bank_code_must_be_12_ascii_digits", "/receiver", receiver, "12 ASCII digits")
    content = _text(body, "content", ccms303.CONTENT_LEN_MAX, p)
    system = body.get("system", "HVPS")
    if not p.not_text("/system", system, " or ".join(SYSTEMS)) and (
            system not in SYSTEMS):
        p.add("system_unknown", "/system", system, " or ".join(SYSTEMS))
    operator = _text(body, "operator", OPERATOR_LEN_MAX, p, required=False)
    p.raise_if_any(ValidationFailed)
    return FreeFormatRequest(receiver, content or "", system, operator)
