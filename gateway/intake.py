"""From a core-system request to an accepted payment.

`parse_transfer` checks the JSON transfer's own fields and reports every problem at
once. `accept` runs inside one store transaction: route, hold the payer's funds in the
ledger, record the payment and its outbox row; commit makes all of it true together,
and only then does the core system hear "accepted" (ARCHITECTURE.md, decision 1).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import replace
from datetime import date, datetime
from typing import Any, NamedTuple

from gateway import jsontext, keys, payments
from gateway.clock import date_digits, texts
from gateway.errors import PaygateError, Problem, ProblemList, ValidationFailed
from gateway.messages.package import RETURN_TYPE
from gateway.money import AMOUNT_TEXT_EXPECTED, currency_problem, format_yuan, parse_yuan
from ledger.incoming import name_key, names_match

# Field bounds follow the CNAPS2 elements they end up in (SPEC.md c): names Max140Text in
# hvps.111 (60 in BEPS packages), accounts Max34Text (32 in BEPS), remarks Max256Text.
NAME_LEN_MAX = 140
# A payment row's payer name as the request typed it, beside the holder's name it goes
# out under, for the channel's checks to tell a refusal at what was typed; never stored.
PAYER_NAME_TYPED = "payer_name_typed"
ACCOUNT_LEN_MAX = 32
REMITTANCE_LINES_MAX = 5
REMITTANCE_LINE_LEN_MAX = 135

FIELDS = {
    "payer_account": True, "payer_name": True, "payer_bank": True,
    "payee_account": True, "payee_name": True, "payee_bank": True,
    "amount": True, "currency": False, "business_type": False, "business_kind": False,
    "remittance_info": False, "urgency": False, "when_closed": False,
}
# What a transfer takes for a field the request leaves out (`parse_transfer`).
DEFAULTS = {"currency": "CNY", "business_type": "A100", "business_kind": "02102",
            "urgency": "normal"}


def optional(fields: dict[str, bool]) -> tuple[str, ...]:
    """The optional fields of an endpoint's field table ({name: required}). Every JSON
    endpoint reads null on one of them as the field left out (`nulls_left_out`): its
    default applies, or none, so `"urgency": null` is the same transfer as no urgency.
    A required field given null is missing (field_required)."""
    return tuple(name for name, required in fields.items() if not required)


# A transfer's optional fields (a remittance and `when_closed` have no default).
OPTIONAL = optional(FIELDS)
_ACCOUNT = re.compile(r"[0-9A-Za-z-]{1,32}")
# Text that can travel in a CNAPS2 XML element and be shown to people safely: no control
# characters (C0, C1, DEL), no noncharacters, no surrogates, and no format characters
# (Unicode category Cf: zero-width spaces and joiners, soft hyphens, bidirectional
# overrides and marks, ...), which are invisible or make a name read differently on
# screen than it is stored: "Blocked\u200bDemo" would pass a list that blocks
# "Blocked Demo". The Cf set is Unicode 15.1's (tests/test_text_checks.py holds it to
# the running Python's unicodedata).
_FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f")
# The other characters Unicode names default-ignorable (DerivedCoreProperties.txt,
# Default_Ignorable_Code_Point, beyond Cf), which a screen shows as nothing: the
# combining grapheme joiner U+034F, the Hangul fillers (U+115F, U+1160, U+3164, U+FFA0,
# letters by category but blank), the Khmer inherent vowels U+17B4-17B5, the Mongolian
# and the general variation selectors (U+180B-180F, U+FE00-FE0F, U+E0100-E01EF) and the
# code points kept ignorable for later use (U+2065, U+FFF0-FFF8, U+E0000-E0FFF). Then
# the noncharacters (U+FDD0-FDEF and the last two code points of every plane), which
# Unicode keeps out of interchange. Combining marks that are not ignorable (the accents
# of Latin names, U+0301) are taken: screening folds them away where they are
# decoration (gateway.ops.review.normalise). Private-use characters (U+E000-F8FF,
# planes 15 and 16) are taken too: Chinese core systems keep the rare characters of
# names (生僻字) in GBK's user-defined areas, which decode to them (FE51 is U+E816), and
# the bank's fonts show them; screening compares names without them.
# tests/test_text_checks.py holds the ignorable set to ICU's.
_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane << 16 | 0xfffe)}{chr(plane << 16 | 0xffff)}" for plane in range(1, 17))
_IGNORABLE_CHARACTERS = (
    "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2065\u3164\ufe00-\ufe0f\uffa0"
    "\ufff0-\ufff8\U000e0000-\U000e0fff" + _NONCHARACTERS)
# The line and paragraph separators (U+2028, U+2029: categories Zl, Zp) break a line
# as the control characters above do, in a field that is one line.
_SEPARATORS = "\u2028\u2029"
_UNSAFE_CHARACTERS = ("\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff" + _SEPARATORS
                      + _FORMAT_CHARACTERS
                      + _IGNORABLE_CHARACTERS)
_UNSAFE_TEXT = re.compile(f"[{_UNSAFE_CHARACTERS}]")
UNSAFE_TEXT_EXPECTED = ("printable text without control, noncharacter or invisible "
                        "characters (zero-width, direction overrides, variation selectors, "
                        "fillers)")


def text_problem(p: ProblemList, path: str, value: Any) -> bool:
    """Add a problem when `value` is text that cannot safely travel; True if it was. Its
    message names the first such character by its code point, which no screen shows."""
    found = _UNSAFE_TEXT.search(value) if isinstance(value, str) else None
    if found is None:
        return False
    p.items.append(unsafe_text(path, value, found.group()))
    return True


def unsafe_text(path: str, value: str, character: str) -> Problem:
    """text_has_control_or_invisible_characters for `value` at `path`, naming `character`
    (the first unsafe one) by its code point and Unicode name."""
    problem = Problem("text_has_control_or_invisible_characters", path, value,
                      UNSAFE_TEXT_EXPECTED)
    named = unicodedata.name(character, "") or unicodedata.category(character)
    return replace(problem, message=f"{problem.describe()}; it holds "
                                    f"U+{ord(character):04X} ({named})")


def text_types(p: ProblemList, body: dict[str, Any], expected: dict[str, str]
               ) -> frozenset[str]:
    """`field_must_be_text` (gateway.errors.not_text) for each field of `body` named in
    `expected` ({field: what its text must hold}) that was given as another JSON type:
    the names of those fields, whose format checks then say nothing more of them. Every
    JSON endpoint checks its text fields so, before their formats."""
    return frozenset([name for name, wants in expected.items()
                      if p.not_text(f"/{name}", body.get(name), wants)])


def reason_text(reason: Any, code: str, len_max: int) -> str:
    """A request's `reason` (a return's, a cancellation's): text of 1 to `len_max`
    characters once its ends' spaces are taken off, as it goes out; refused as
    field_must_be_text when given as another JSON type, as `code` otherwise, and as
    text_has_control_or_invisible_characters when it holds what a name may not (it goes
    out in the message, whose XML cannot carry a control character)."""
    expected = f"text of 1 to {len_max} characters"
    p = ProblemList()
    if not p.not_text("/reason", reason, expected) and (
            reason is None or not 0 < len(reason.strip()) <= len_max):
        p.add(code, "/reason", reason, expected)
    text_problem(p, "/reason", reason)
    p.raise_if_any(ValidationFailed)
    return reason.strip()


_BANK = re.compile(r"[0-9]{12}")
_TYPE = re.compile(r"[A-Z][0-9]{3}")
_KIND = re.compile(r"[0-9]{5}")


class Transfer(NamedTuple):
    """A checked transfer request (a tuple: one is made for every payment)."""

    payer_account: str
    payer_name: str
    payer_bank: str
    payee_account: str
    payee_name: str
    payee_bank: str
    amount_fen: int
    currency: str
    business_type: str
    business_kind: str
    remittance: tuple[str, ...]
    urgency: str
    when_closed: str | None


def body_sha256(body: Any) -> str:
    """The hash of a request body's text (key order and spacing aside)."""
    # A lone surrogate in a body must reach the text checks (and be refused there by
    # name), not fail here: jsontext.canonical encodes it with surrogatepass.
    return hashlib.sha256(jsontext.canonical(body)).hexdigest()


# A request's hash is that of what it asks for (`transfer_meaning` for a transfer; each
# endpoint taking an Idempotency-Key has its meaning), marked so that a hash stored
# before requests were compared by meaning, a hash of their text, is still known for what
# it is (`same_transfer`).
MEANING_MARK = "m:"


def meaning_sha256(meaning: Any) -> str:
    """The hash under which a request is kept with its idempotency key, given what it
    asks for (its meaning: the same for every spelling of the same request)."""
    return MEANING_MARK + body_sha256(meaning)


def transfer_sha256(body: Any) -> str:
    """The hash under which a transfer request is kept with its idempotency key: two
    requests that ask for the same payment in other spellings have the same hash."""
    return meaning_sha256(transfer_meaning(body))


def transfer_hashes(bodies: list[Any]) -> tuple[list[str], str]:
    """`transfer_sha256` of each body, and that of the list of their meanings (what a
    batch asks for, gateway.beps.api), each body's meaning made and written once."""
    texts, whole = jsontext.canonical_each([transfer_meaning(body) for body in bodies])
    return ([MEANING_MARK + hashlib.sha256(text).hexdigest() for text in texts],
            MEANING_MARK + hashlib.sha256(whole).hexdigest())


def same_transfer(stored: str, body_hash: str, body: Any) -> bool:
    """Whether the hash stored under a key is that of the request `body` (whose hash by
    meaning is `body_hash`, `meaning_sha256`): by meaning, or, for a hash stored before
    requests were compared by meaning, by the request's text. Every endpoint taking an
    Idempotency-Key compares so, transfers or not."""
    if stored.startswith(MEANING_MARK):
        return stored == body_hash
    return stored == body_sha256(body)


def transfer_meaning(body: Any, defaults: dict[str, str] = DEFAULTS,
                     nullable: tuple[str, ...] = OPTIONAL,
                     fold_payer_name: bool = True) -> Any:
    """A transfer request written one way for all the spellings the API takes of the same
    payment: a field given its default value as if left out (`"currency": "CNY"`,
    `"urgency": null`, no remittance), the amount in its usual form (`"100"` and
    `"100.0"` are `"100.00"`: the same fen), the remittance as the tagged lines it goes
    out as (`"货款"` is `["/H01/货款"]`) and a payer name as its account holder's is
    compared (spaces, width and case aside: every such spelling matches the same holders
    and goes out as the holder's name). What the checks of `parse_transfer` refuse is
    left as written, so that a retry refused for it is not taken for the first request.
    Other bodies (not an object) are their own meaning.

    Another endpoint taking a transfer gives its own `defaults`, the fields it takes
    null for left out (`nullable`), and whether the payer name goes out as the holder's
    (`fold_payer_name`: otherwise it goes out as written, and its spelling counts)."""
    if type(body) is not dict:
        return body
    meaning = without(body, defaults, nullable)
    amount_meaning(meaning)
    if "remittance_info" in meaning:
        problems = ProblemList()
        lines = _remittance(meaning["remittance_info"], problems)
        if not problems and lines:
            meaning["remittance_info"] = list(lines)
        elif not problems:
            del meaning["remittance_info"]
    name = meaning.get("payer_name")
    if fold_payer_name and type(name) is str and _SAFE_NAME.fullmatch(name) and name.strip():
        meaning["payer_name"] = name_key(name)
    return meaning


def amount_meaning(meaning: dict[str, Any], name: str = "amount") -> None:
    """A request's amount written in its usual form in place (`"100"` and `"100.0"` are
    `"100.00"`: the same fen); an amount parse_yuan refuses is left as written."""
    amount = meaning.get(name)
    if type(amount) is str and not _YUAN_AND_FEN.fullmatch(amount):
        fen = parse_yuan(amount, f"/{name}")
        if isinstance(fen, int):
            meaning[name] = format_yuan(fen)


def without(body: dict[str, Any], defaults: dict[str, Any],
            nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """`body` without the fields given their default value or, for those in `nullable`,
    null: what a request means is the same with them left out."""
    if defaults.keys().isdisjoint(body):
        for name in nullable:
            if name in body and body[name] is None:
                break
        else:
            return dict(body)  # most requests leave every such field out: nothing to drop
    return {name: value for name, value in body.items()
            if not (name in defaults and value == defaults[name]
                    or name in nullable and value is None)}


def check_shape(body: Any, fields: dict[str, bool],
                expected: dict[str, str] | None = None) -> ProblemList:
    """A JSON request body's shape: an object, only the known fields, the required ones
    present, each missing one told so (field_required) with what it must hold from
    `expected` ({field: what it holds}). Refuses at once when it is not an object;
    otherwise collects problems."""
    p = ProblemList()
    if not isinstance(body, dict):
        p.add("body_must_be_a_json_object", "/", jsontext.type_name(body), "a JSON object")
        p.raise_if_any()
    for name in body:
        if name not in fields:
            p.add("field_unknown", f"/{name}", body[name], "only: " + ", ".join(fields))
    for name, required in fields.items():
        if required and blank(body.get(name)):
            p.required(f"/{name}", body.get(name), name in body,
                       (expected or {}).get(name, "a value other than spaces"))
    return p


def blank(value: Any) -> bool:
    """True for a missing value and for text that is empty once every Unicode space is
    taken off its ends (U+3000 ideographic, U+00A0 no-break and the rest): a CNAPS2
    element holding only spaces is refused by the NPC as missing (SPEC.md c, the
    package's party fields), and it would take the other payments of its package with
    it."""
    return value is None or (isinstance(value, str) and not value.strip())


def parse_transfer(body: Any, own_banks: frozenset[str]) -> Transfer:
    """A checked transfer, or ValidationFailed naming every problem of the body. An
    optional field given null is read as left out (`OPTIONAL`)."""
    plain = _plain_transfer(body, own_banks)
    return plain if plain is not None else _checked_transfer(body, own_banks)


def nulls_left_out(body: Any, nullable: tuple[str, ...] = OPTIONAL) -> Any:
    """`body` without its optional fields given null (a transfer's `OPTIONAL`, or an
    endpoint's own, `optional`): what it asks for. The one rule of every JSON endpoint:
    null on an optional field is the field left out."""
    if type(body) is not dict or not any(
            name in body and body[name] is None for name in nullable):
        return body
    return {name: value for name, value in body.items()
            if not (name in nullable and value is None)}


def _checked_transfer(body: Any, own_banks: frozenset[str]) -> Transfer:
    body = nulls_left_out(body)
    p = check_shape(body, FIELDS, _REQUIRED_EXPECTED)
    wrong_type = text_types(p, body, _TEXT_EXPECTED)
    for name in ("payer_name", "payee_name"):
        value = body.get(name)
        if isinstance(value, str) and len(value) > NAME_LEN_MAX:
            p.add("name_too_long_or_not_text", f"/{name}", value,
                  f"text of at most {NAME_LEN_MAX} characters")
        text_problem(p, f"/{name}", value)
    for name in ("payer_account", "payee_account"):
        value = body.get(name)
        if isinstance(value, str) and not blank(value) and not _ACCOUNT.fullmatch(value):
            p.add("account_malformed", f"/{name}", value, _TEXT_EXPECTED[name])
    for name in ("payer_bank", "payee_bank"):
        value = body.get(name)
        if isinstance(value, str) and not blank(value) and not _BANK.fullmatch(value):
            p.add("bank_code_must_be_12_ascii_digits", f"/{name}", value, "12 ASCII digits")
    payer_bank = body.get("payer_bank")
    if isinstance(payer_bank, str) and _BANK.fullmatch(payer_bank) and payer_bank not in own_banks:
        p.add("payer_bank_not_ours", "/payer_bank", payer_bank,
              "one of our bank codes: " + ", ".join(sorted(own_banks)))
    # An empty, blank or null amount is field_required alone (check_shape), not also
    # malformed.
    amount = parse_yuan(body["amount"], "/amount") if not blank(body.get("amount")) else 0
    if not isinstance(amount, int):
        p.items.append(amount)
        amount = 0
    currency = body.get("currency", DEFAULTS["currency"])
    wrong_currency = currency_problem(currency, "/currency")
    if wrong_currency is not None and "currency" not in wrong_type:
        p.items.append(wrong_currency)
    business_type = body.get("business_type", DEFAULTS["business_type"])
    if isinstance(business_type, str) and not _TYPE.fullmatch(business_type):
        p.add("business_type_malformed", "/business_type", business_type,
              _TEXT_EXPECTED["business_type"])
    business_kind = body.get("business_kind", DEFAULTS["business_kind"])
    if isinstance(business_kind, str) and not _KIND.fullmatch(business_kind):
        p.add("business_kind_malformed", "/business_kind", business_kind,
              _TEXT_EXPECTED["business_kind"])
    remittance = _remittance(body.get("remittance_info"), p)
    if business_type == RETURN_TYPE:
        # A return is made only by the return route, which finds the payment returned,
        # checks it can be returned and marks it so: taken as a transfer, one incoming
        # payment could be returned twice, or a payment that never came returned at all.
        p.add("return_must_name_original", "/business_type", business_type,
              "a return (A105) made with POST /v1/transfers/{id}/return, which names the "
              "incoming payment it returns and returns it once")
    urgency = body.get("urgency", DEFAULTS["urgency"])
    if isinstance(urgency, str) and urgency not in _URGENCIES:
        p.add("urgency_unknown", "/urgency", urgency, _TEXT_EXPECTED["urgency"])
    when_closed = body.get("when_closed")
    if isinstance(when_closed, str) and when_closed not in _WHEN_CLOSED:
        p.add("when_closed_unknown", "/when_closed", when_closed,
              _TEXT_EXPECTED["when_closed"])
    if body.get("payer_account") and body.get("payer_account") == body.get("payee_account") \
            and body.get("payer_bank") == body.get("payee_bank"):
        p.add("payer_and_payee_accounts_must_differ", "/payee_account",
              body.get("payee_account"), "an account other than the payer's")
    p.raise_if_any(ValidationFailed)
    return Transfer(body["payer_account"], body["payer_name"], body["payer_bank"],
                    body["payee_account"], body["payee_name"], body["payee_bank"], amount,
                    currency, business_type, business_kind, remittance, urgency, when_closed)


_FIELD_NAMES = frozenset(FIELDS)
# A name the checks below pass: 1 to NAME_LEN_MAX characters, none of them unsafe.
_SAFE_NAME = re.compile(f"[^{_UNSAFE_CHARACTERS}]{{1,{NAME_LEN_MAX}}}")
# An amount in its usual form, yuan and two decimals (parse_yuan reads every form).
_YUAN_AND_FEN = re.compile(r"(?:0|[1-9][0-9]{0,15})\.[0-9]{2}")
_URGENCIES = frozenset(("normal", "urgent", "extra_urgent"))
_WHEN_CLOSED = frozenset(("queue", "refuse", "beps"))
# What each text field of a transfer must hold (its amount is checked by parse_yuan, its
# remittance, text or a list of lines, by `_remittance`).
_TEXT_EXPECTED = {
    "payer_account": f"1 to {ACCOUNT_LEN_MAX} ASCII letters, digits or hyphens",
    "payee_account": f"1 to {ACCOUNT_LEN_MAX} ASCII letters, digits or hyphens",
    "payer_name": f"text of at most {NAME_LEN_MAX} characters",
    "payee_name": f"text of at most {NAME_LEN_MAX} characters",
    "payer_bank": "12 ASCII digits", "payee_bank": "12 ASCII digits",
    "currency": "CNY", "business_type": "a CNAPS2 business type such as A100",
    "business_kind": "a CNAPS2 business kind of 5 digits such as 02102",
    "urgency": "normal, urgent or extra_urgent", "when_closed": "queue, refuse or beps",
}
# What a required field left out must hold (check_shape): text, or the amount.
_REQUIRED_EXPECTED = {**_TEXT_EXPECTED, "amount": AMOUNT_TEXT_EXPECTED}


def _plain_transfer(body: Any, own_banks: frozenset[str]) -> Transfer | None:
    """The Transfer of a body that passes every check of parse_transfer, made without
    collecting problems (most bodies pass: a batch of hundreds makes one each); None
    when anything is unusual, for `_checked_transfer` to check and name. It accepts only
    what that accepts and makes the same Transfer of it (tests/test_intake_plain.py)."""
    if type(body) is not dict or not _FIELD_NAMES.issuperset(body):
        return None
    get = body.get
    payer_account, payer_name, payer_bank = get("payer_account"), get("payer_name"), \
        get("payer_bank")
    payee_account, payee_name, payee_bank = get("payee_account"), get("payee_name"), \
        get("payee_bank")
    if (type(payer_name) is not str or type(payee_name) is not str
            or type(payer_account) is not str or type(payee_account) is not str
            or type(payer_bank) is not str or type(payee_bank) is not str
            or payer_bank not in own_banks or not _BANK.fullmatch(payer_bank)
            or not _BANK.fullmatch(payee_bank)
            or not _ACCOUNT.fullmatch(payer_account) or not _ACCOUNT.fullmatch(payee_account)
            or not _SAFE_NAME.fullmatch(payer_name) or not _SAFE_NAME.fullmatch(payee_name)
            or not payer_name.strip() or not payee_name.strip()
            or (payer_account == payee_account and payer_bank == payee_bank)):
        return None
    text = get("amount")
    if type(text) is str and _YUAN_AND_FEN.fullmatch(text):
        amount = int(text[:-3] + text[-2:])  # "12.30": 1230 fen, as parse_yuan reads it
    else:
        amount = parse_yuan(text, "/amount")
    if type(amount) is not int or amount <= 0:
        return None
    currency = get("currency", DEFAULTS["currency"])
    business_type = get("business_type", DEFAULTS["business_type"])
    business_kind = get("business_kind", DEFAULTS["business_kind"])
    urgency = get("urgency", DEFAULTS["urgency"])
    when_closed = get("when_closed")
    if (currency != "CNY" or type(business_type) is not str
            or not _TYPE.fullmatch(business_type) or business_type == RETURN_TYPE
            or type(business_kind) is not str
            or not _KIND.fullmatch(business_kind) or type(urgency) is not str
            or urgency not in _URGENCIES
            or (when_closed is not None and (type(when_closed) is not str
                                             or when_closed not in _WHEN_CLOSED))):
        return None
    remittance: tuple[str, ...] = ()
    info = get("remittance_info")
    if info is not None and info != "":
        p = ProblemList()
        remittance = _remittance(info, p)
        if p:
            return None
    return Transfer(payer_account, payer_name, payer_bank, payee_account, payee_name,
                    payee_bank, amount, currency, business_type, business_kind, remittance,
                    urgency, when_closed)


def _remittance(value: Any, p: ProblemList) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if type(value) is str:
        plain = _one_line(value)
        if plain is not None:
            return plain
    lines = [value] if isinstance(value, str) else value
    if isinstance(lines, list) and any(text_problem(p, "/remittance_info", x) for x in lines):
        return ()
    if (not isinstance(lines, list) or len(lines) > REMITTANCE_LINES_MAX
            or not all(isinstance(x, str) and 0 < len(x) <= REMITTANCE_LINE_LEN_MAX
                       for x in lines)):
        p.add("remittance_info_malformed", "/remittance_info", value,
              f"text, or a list of at most {REMITTANCE_LINES_MAX} lines of at most "
              f"{REMITTANCE_LINE_LEN_MAX} characters")
        return ()
    # Free text goes out as a /H01/ remark line (SPEC.md d.6) unless already tagged.
    return tuple(x if _TAGGED.match(x) else f"/H01/{x}" for x in lines)


_TAGGED = re.compile(r"/[A-Z0-9]{3}/")  # a remark line's tag, at its start


@functools.lru_cache(maxsize=4096)
def _one_line(text: str) -> tuple[str, ...] | None:
    """`_remittance` of a remittance given as one line of text that passes its checks,
    None when it does not (for `_remittance` to say why). Remembered: the request's
    meaning and its checks each read it, and a batch's transfers often carry the same
    remark."""
    if not text or len(text) > REMITTANCE_LINE_LEN_MAX or _UNSAFE_TEXT.search(text):
        return None
    return (text if _TAGGED.match(text) else f"/H01/{text}",)


def payer_problems(payer_account: Any, payer_name: Any, payer_bank: Any,
                   holder: str | None, account_bank: str | None,
                   as_written: bool = False) -> list[Problem]:
    """What a payer's own bank refuses about the payer: a name that is not the account
    holder's, a bank that is not the account's branch. `holder` is the name the ledger
    keeps for `payer_account` (None when it is no customer account of ours: the hold
    refuses that by name), `account_bank` the bank code of the institution whose books
    hold the ledger's customer accounts (None when that institution has no bank code).

    The name is compared as an incoming credit's payee name is (ledger.incoming
    .names_match: width, case and spaces folded). A JSON transfer's payment then goes out
    under the holder's name as the books write it (`holder`), whatever spacing or width
    the request used, so the wire never carries a payer name the bank's books do not. A
    ready message (`as_written`) is never rewritten (gateway.ready_rules): its name
    must be the holder's exactly, and one that differs only in spaces, width or case is
    refused by name. The holder's name is shown: the account is the requesting
    customer's own."""
    if holder is None:
        return []
    problems = []
    if isinstance(payer_name, str) and payer_name and not names_match(holder, payer_name):
        problems.append(Problem(
            "payer_name_differs_from_account_holder", "/payer_name", payer_name,
            f"{holder}, the name account {payer_account} is held under",
            f"account {payer_account} is held by {holder}, not {payer_name}; a payment "
            "goes out under the holder's name"))
    elif as_written and isinstance(payer_name, str) and payer_name != holder:
        problems.append(Problem(
            "payer_name_not_written_as_held", "/payer_name", payer_name,
            f"{holder}, written exactly as account {payer_account} is held under",
            f"account {payer_account} is held by {holder}; a ready message is never "
            f"rewritten, so its payer name must be written as the books write it, not as "
            f"{payer_name!r}"))
    if account_bank is not None and isinstance(payer_bank, str) and _BANK.fullmatch(
            payer_bank) and payer_bank != account_bank:
        problems.append(Problem(
            "payer_bank_not_account_branch", "/payer_bank", payer_bank,
            f"{account_bank}, the bank code of the branch that keeps account "
            f"{payer_account}",
            f"account {payer_account} is kept at {account_bank}; a payment from it is "
            f"sent as that branch's, not {payer_bank}'s"))
    return problems


def kept_elsewhere(payee_bank: str, account_bank: str | None) -> bool:
    """Whether a payee bank is not the branch that keeps the ledger's customer accounts
    (`account_bank`, None when the ledger's institution has no bank code: then nothing
    is compared). One rule for every credit to our books: an internal transfer naming
    another is refused (`payee_bank_not_account_branch`), an incoming CNAPS credit
    naming another goes to suspense (`branch_mismatch`)."""
    return account_bank is not None and payee_bank != account_bank


def payee_problems(payee_account: str, payee_name: str, payee_bank: str,
                   holder: str | None, account_bank: str | None) -> list[Problem]:
    """What an internal transfer (the payee's account kept in our own ledger) is refused
    for about its payee, as an incoming CNAPS credit is checked: a name that is not the
    account holder's (compared as ledger.incoming.names_match compares an incoming
    credit's, which sends that one to suspense as name_mismatch) and a payee bank that
    is not the branch keeping the account (`account_bank`; an incoming credit naming
    another goes to suspense as branch_mismatch). `holder` is None when the account is
    no customer account of ours (the settlement refuses that by name).

    The holder's name is never shown: the account is another customer's, and a refusal
    naming its holder would tell anyone who tries a number whose it is."""
    if holder is None:
        return []
    problems = []
    if not names_match(holder, payee_name):
        problems.append(Problem(
            "payee_name_differs_from_account_holder", "/payee_name", payee_name,
            f"the name account {payee_account} is held under (spaces, width and case "
            "aside)",
            f"account {payee_account} at our bank is not held under the name "
            f"{payee_name}; an internal transfer is credited only to the account of the "
            "payee it names"))
    if kept_elsewhere(payee_bank, account_bank):
        problems.append(Problem(
            "payee_bank_not_account_branch", "/payee_bank", payee_bank,
            f"{account_bank}, the bank code of the branch that keeps account "
            f"{payee_account}",
            f"account {payee_account} is kept at {account_bank}, not at {payee_bank}"))
    return problems


def new_ids(tx: Any, work_date: date, branch: str) -> tuple[str, str, str]:
    """Payment id, XML MsgId (= TxId) and end-to-end id for a new outgoing payment.

    MsgId and TxId are yyyyMMdd plus an 8-digit daily sequence, as in the samples; the
    end-to-end id is the payer's bank code, the date and a 12-digit sequence.
    """
    day = date_digits(work_date)
    seq = payments.next_seq(tx, f"msg:{day}")
    msg_id = f"{day}{seq:08d}"
    return f"P{msg_id}", msg_id, f"{branch}{day}{seq:012d}"


def record_outgoing(tx: Any, t: Transfer, decision: Any, *, work_date: date, now: datetime,
                    hold_id: str, state: str, payment_id: str, msg_id: str,
                    end_to_end_id: str, client: str | None = None,
                    insert: bool = True) -> dict[str, Any]:
    """The new payment's row, written unless `insert` is false (the caller writes it)."""
    at = texts(now).iso
    row = {
        "id": payment_id, "direction": "out", "channel": decision.channel, "state": state,
        "msg_type": decision.message_type or "internal", "msg_id": msg_id, "tx_id": msg_id,
        "end_to_end_id": end_to_end_id, "sender_direct": decision.sender_direct,
        "receiver_direct": decision.receiver_direct, "amount_fen": t.amount_fen,
        "currency": t.currency, "payer_account": t.payer_account, "payer_name": t.payer_name,
        "payer_bank": t.payer_bank, "payee_account": t.payee_account,
        "payee_name": t.payee_name, "payee_bank": t.payee_bank,
        "business_type": t.business_type, "business_kind": t.business_kind,
        "urgency": t.urgency, "priority": decision.priority, "remittance": list(t.remittance),
        "hold_id": hold_id, "route": decision.record(),
        "route_json": decision.record_json or None, "work_date": work_date.isoformat(),
        "created_at": at, "updated_at": at, "client": client,
    }
    if insert:
        payments.insert(tx, row)
    return row


def add_outbox(tx: Any, payment_id: str, priority: int, state: str, now: datetime) -> int:
    stream = keys.lane_for_priority(priority)
    row = tx.query_one("INSERT INTO outbox (payment_id, kind, stream, state, created_at, "
                       "updated_at) VALUES (?, 'hvps_credit', ?, ?, ?, ?) RETURNING id",
                       (payment_id, stream, state, now.isoformat(), now.isoformat()))
    return row[0]


# Request fields as the core system names them, for errors raised deeper down (the router
# and the ledger name their own inputs).
_REQUEST_FIELDS = {"payer_bank": "/payer_bank", "payee_bank": "/payee_bank",
                   "amount_fen": "/amount", "business_type": "/business_type",
                   "business_kind": "/business_kind", "urgency": "/urgency",
                   "when_closed": "/when_closed", "account_no": "/payer_account",
                   "bank_code": "/payee_bank"}


_FEN_IN_TEXT = re.compile(r"(-?\d+) fen\b")


def defaults_told(exc: PaygateError, body: Any) -> PaygateError:
    """The same refusal, a problem at a field the request left out told as such: its
    value is null (nothing was sent, not the default) and its message says which default
    was applied, so that a client sending no business kind with type A201 reads that the
    default 02102 was refused, not a kind it never wrote. A field sent as null is one
    left out (`OPTIONAL`)."""
    if not isinstance(body, dict) or not any(
            p.path[1:] in DEFAULTS and body.get(p.path[1:]) is None for p in exc.problems):
        return exc
    return PaygateError([_default_told(p) if p.path[1:] in DEFAULTS
                         and body.get(p.path[1:]) is None else p for p in exc.problems],
                        exc.status)


def _default_told(p: Problem) -> Problem:
    name = p.path[1:]
    default = DEFAULTS[name]
    expected = f", expected {p.expected}" if p.expected else ""
    return replace(p, value=None, message=(
        f"no {name} was sent, so the default {default} was applied; it is refused "
        f"({p.code.replace('_', ' ')}){expected}: send a {name}"))


def as_request_fields(exc: PaygateError, fields: dict[str, str] | None = None
                      ) -> PaygateError:
    """The same refusal, its paths named as the request's JSON pointers (`fields`, by
    default a transfer's); an amount the ledger names in fen is given in yuan, as the
    request's `amount` is written."""
    fields = _REQUEST_FIELDS if fields is None else fields
    problems = [_in_request_terms(p, fields)
                if not p.path.startswith("/") or p.path.lstrip("/") in fields
                else p for p in exc.problems]
    return PaygateError(problems, exc.status)


def _in_request_terms(p: Any, fields: dict[str, str]) -> Any:
    name = p.path.lstrip("/")
    p = p.at(fields.get(name, p.path))
    if name == "amount_fen" and isinstance(p.value, int) and not isinstance(p.value, bool):
        p = replace(p, value=format_yuan(p.value), expected=_FEN_IN_TEXT.sub(
            lambda m: f"{format_yuan(int(m.group(1)))} yuan", p.expected))
    return p
