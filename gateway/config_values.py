"""Checks of settings whose values are more than a number in a range (gateway.config runs
them with the rest, before anything starts): that each value has its setting's type,
the client credentials (`api_keys`) and the webhook's secret, the bank codes listed, the
link's signature algorithm, and the files the operators and the screening list are read
from. Each problem is at the setting's name; gateway.config puts it where the user set it.

A secret is never shown in a refusal: a problem of `api_keys` shows the client's id, one
of `webhook_secret` nothing, and either tells the secret's length or type in words.
"""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any

from gateway import jsontext
from gateway.errors import PaygateError, Problem

log = logging.getLogger("paygate.config")

# A secret shared with the core system keys an HMAC-SHA256 (`api_keys`: the client signs
# its requests; `webhook_secret`: we sign our POSTs). Whoever sees one signed request has
# the text and its HMAC, and can try keys offline as fast as a machine hashes: a short
# secret falls to that. Sixteen characters is the least taken (16 random letters and
# digits are about 95 bits); `openssl rand -hex 16` makes one of 32.
SECRET_LEN_MIN = 16
# A client id as X-Client-Id carries it, the payments' `client` column keeps it and the
# logs show it (`client=`): ASCII, nothing a header or a log line would bend.
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CLIENT_ID_EXPECTED = ("a client id of 1 to 64 ASCII letters, digits, '_', '.' or '-', "
                      "starting with a letter or digit")
# The client every request is made by while the API is open (no `api_keys`): a client
# configured under that id would take over the payments and keys stored then.
OPEN_API_CLIENT = "default"
SECRETS = ("api_keys", "webhook_secret")  # settings whose values are never shown
BANK_CODE_LISTS = ("branch_codes", "unverified_senders")

_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number",
               str: "text", list: "a list of texts",
               dict: "a table (in a variable, a JSON object)"}


def is_of_type(value: Any, default: Any) -> bool:
    """Whether `value` has the type of the setting whose default is `default` (a whole
    number is a number too; true and false are not numbers; a list holds texts)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


def type_problems(values: dict[str, Any], defaults: dict[str, Any]) -> list[Problem]:
    """A problem for each setting whose value is not of its type (a TOML key written
    as a number for a text setting, a table for a number, ...)."""
    problems = []
    for name, value in values.items():
        default = defaults[name]
        if is_of_type(value, default):
            continue
        expected = _TYPE_WORDS[type(default)]
        seen = ("a list holding other than texts" if isinstance(default, list)
                and isinstance(value, list) else _type_words(value))
        problems.append(Problem("setting_malformed", name,
                                None if name in SECRETS else value, expected,
                                f"{name} must be {expected}, not {seen}"))
    return problems


def _type_words(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float):
        return "a number with a fraction"
    name = jsontext.type_name(value)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def api_keys_problems(keys: dict[str, Any]) -> list[Problem]:
    """Each client of `api_keys`: an id a request can carry and a secret it can sign
    with; the secret itself never shown."""
    problems = []
    for client, secret in keys.items():
        if not CLIENT_ID_PATTERN.fullmatch(client) or client == OPEN_API_CLIENT:
            why = (f"{OPEN_API_CLIENT!r} is the client of every request while the API is "
                   "open, and stays on what was stored then" if client == OPEN_API_CLIENT
                   else "no request could name it in X-Client-Id")
            problems.append(Problem("setting_malformed", "api_keys", client,
                                    CLIENT_ID_EXPECTED,
                                    f"client id {client!r} of api_keys is refused: {why}; "
                                    f"expected {CLIENT_ID_EXPECTED}"))
        fault = secret_fault(secret)
        if fault:
            problems.append(Problem(
                "setting_malformed", "api_keys", client, secret_expected(),
                f"the secret of client {client!r} in api_keys is {fault}; expected "
                f"{secret_expected()}"))
    return problems


def webhook_secret_problems(secret: Any, webhook_url: str) -> list[Problem]:
    """`webhook_secret` while `webhook_url` is set: a secret the core system can trust
    our POSTs by (not the empty default, nor a short word)."""
    fault = secret_fault(secret) if webhook_url else ""
    if not fault:
        return []
    return [Problem("setting_malformed", "webhook_secret", None, secret_expected(),
                    f"webhook_secret is {fault}, and webhook_url is set: each POST to it "
                    f"is signed with this secret; expected {secret_expected()}")]


def secret_fault(secret: Any) -> str:
    """What is wrong with a shared secret, in words (never the secret); empty if none."""
    if not isinstance(secret, str):
        return f"{_type_words(secret)}, not text"
    if not secret:
        return "empty"
    # Spaces are no secret: one of only spaces is refused whatever its length. Nor are
    # spaces around one taken: a line copied with its newline or a trailing space would
    # key our HMACs with text the core system's own copy, trimmed, does not hold, and
    # every signature would fail to match without saying why.
    if not secret.strip():
        return f"only spaces ({len(secret)} characters)"
    if secret != secret.strip():
        return "text with spaces or line breaks around it"
    if len(secret) < SECRET_LEN_MIN:
        return f"{len(secret)} characters long"
    return ""


def secret_expected() -> str:
    return (f"text of at least {SECRET_LEN_MIN} characters, not only spaces nor with spaces "
            "around it (`openssl rand -hex 16` makes one)")


def bank_code_problems(name: str, codes: list[str]) -> list[Problem]:
    """A list of participants' bank codes (`branch_codes`, `unverified_senders`)."""
    wrong = [c for c in codes if len(c) != 12 or not all(d in "0123456789" for d in c)]
    if not wrong:
        return []
    return [Problem("setting_malformed", name, wrong, "a list of bank codes, each "
                    "12 ASCII digits")]


def signature_problems(algorithm: str) -> list[Problem]:
    from gateway.messages.signing import ALGORITHMS
    if algorithm in ALGORITHMS:
        return []
    return [Problem("setting_malformed", "signature_algorithm", algorithm,
                    "one of " + ", ".join(ALGORITHMS))]


def files_problems(operators_file: str, screening_file: str,
                   data_path: Path | None = None) -> list[Problem]:
    """The operators file and the screening list, when set, read now: one missing or
    malformed would otherwise be found only at the first sign-in or the first payment
    screened (each is read again when it changes, and checked then as here). A screening
    file that cannot be read is taken when the data folder keeps a good copy of the same
    file's last list (gateway.ops.review.keep_last_good: the gateway starts screening with
    it, its critical alert raised), never with no list."""
    problems = []
    if operators_file:
        from gateway.ops import operators
        problems.extend(_file_problems("operators_file", operators_file, operators.load))
    if screening_file:
        from gateway.ops.review import BlockedList, last_good_copy
        refused = _file_problems("screening_file", screening_file, BlockedList.load)
        if refused and data_path is not None and \
                last_good_copy(data_path, screening_file) is not None:
            log.warning("event=screening_file_refused_at_start file=%s problem=%s "
                        "kept=last_good_copy", screening_file,
                        "; ".join(p.to_dict()["message"] for p in refused))
            refused = []
        problems.extend(refused)
    return problems


def _file_problems(name: str, path: str, load: Any) -> list[Problem]:
    try:
        load(Path(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [Problem("setting_malformed", name, path, "a readable TOML file",
                        f"{name} {path!r} cannot be read: {exc}")]
    except PaygateError as exc:
        return exc.problems
    return []
