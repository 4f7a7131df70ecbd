"""`paygate validate FILE... [--keys DIR] [--directory CSV] [--work-date D]`.

Each file is a whole message (`{H:` header, optional `{S:` block, XML) or a bare XML
document. For each file one JSON line is printed:

    {"file": "a.xml", "ok": true, "type": "hvps.111.001.01", "signature": "verified"}
    {"file": "b.xml", "ok": false, "type": "beps.121.001.01", "errors": [{...}, ...]}

with the CONTRACT.md §6 error objects; a body our schema refuses lists every schema
error (gateway.messages.schema_report), not only those libxml2 reports. The exit status
is 0 when every file is valid, 1 otherwise, 2 for a usage error.

Without options only what the message itself decides is checked: envelope, XML, schema,
business rules, and whether a signature is required for its type. A signature that no
configured key can check is reported as "unverified", not as an error; with `--keys` a
signature by a sender whose public key is in DIR must verify. `--directory` and
`--work-date` add the context rules of gateway.messages.context.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from gateway.errors import PaygateError, Problem
from gateway.messages import codec
from gateway.messages.context import check_context
from gateway.messages.envelope import Envelope
from gateway.messages.signing import KeyRing, unsigned_allowed
from routing.directory import Directory

FILE_LEN_MAX = 16 * 1024 * 1024  # twice the envelope bound: enough to say "too large"


@dataclass
class Options:
    files: list[str]
    keyring: KeyRing | None
    directory: Directory | None
    work_date: date | None


def validate_command(argv: list[str]) -> int:
    try:
        options = _options(argv)
    except PaygateError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False))
        return 2
    all_ok = True
    for name in options.files:
        result = validate_file(name, options)
        all_ok = all_ok and result["ok"]
        print(json.dumps(result, ensure_ascii=False))
    return 0 if all_ok else 1


class _Parser(argparse.ArgumentParser):
    """Refuses bad arguments with the product's error shape instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise PaygateError(Problem("validate_usage", "argv", None,
                                   "FILE... [--keys DIR] [--directory CSV] [--work-date D]",
                                   message), status=400)


def _options(argv: list[str]) -> Options:
    parser = _Parser(prog="paygate validate", add_help=False)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--keys", help="directory of <code>.pub.pem public keys")
    parser.add_argument("--directory", help="participant directory CSV")
    parser.add_argument("--work-date", help="the work date, yyyy-mm-dd")
    args = parser.parse_intermixed_args(argv)
    work_date = None
    if args.work_date is not None:
        try:
            work_date = date.fromisoformat(args.work_date)
        except ValueError as exc:
            raise _usage("--work-date", args.work_date, "a date such as 2024-05-20") from exc
    keyring = None
    if args.keys is not None:
        if not Path(args.keys).is_dir():
            raise _usage("--keys", args.keys, "a directory of public keys")
        keyring = KeyRing.load(Path(args.keys), own=[])
    directory = Directory.load(args.directory) if args.directory is not None else None
    return Options(args.files, keyring, directory, work_date)


def _usage(path: str, value: object, expected: str) -> PaygateError:
    return PaygateError(Problem("validate_usage", path, value, expected), status=400)


def validate_file(name: str, options: Options) -> dict[str, Any]:
    """Check one file; the result is the JSON object printed for it."""
    out: dict[str, Any] = {"file": name}
    try:
        raw = _read(name)
        decoded = codec.decode(raw, bare_ok=True, every_schema_error=True)
        out["type"] = decoded.mtype.code
        problems = list(decoded.problems)
        if decoded.envelope is not None:
            out["signature"] = _signature(decoded.envelope, options.keyring)
        if not problems and (options.directory is not None or options.work_date is not None):
            problems += check_context(decoded, directory=options.directory,
                                      work_date=options.work_date)
    except PaygateError as exc:
        problems = exc.problems
    out["ok"] = not problems
    if problems:
        out["errors"] = [p.to_dict() for p in problems]
    return out


def _read(name: str) -> bytes:
    path = Path(name)
    if not path.is_file():
        raise PaygateError(Problem("file_unreadable", name, None, "a readable file"))
    if path.stat().st_size > FILE_LEN_MAX:
        raise PaygateError(Problem("message_too_large", name, path.stat().st_size,
                                   f"at most {FILE_LEN_MAX} bytes"))
    return path.read_bytes()


def _signature(env: Envelope, keyring: KeyRing | None) -> str:
    """verified | unverified | unsigned_allowed; raises when the signature fails."""
    if env.signature is None:
        if unsigned_allowed(env.header):
            return "unsigned_allowed"
        raise PaygateError(Problem("signature_required", "{S:", None,
                                   f"a signature on {env.header.mesg_type}"), status=401)
    if keyring is None or env.header.orig_sender not in keyring.public:
        return "unverified"
    return keyring.verify(env)
