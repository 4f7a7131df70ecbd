"""`paygate route`: show how a payment would be routed, and why.

    paygate route --payer-bank 999100000027 --payee-bank 888200000023 --amount 50000.01 \
        [--type A100] [--kind 02102] [--urgency normal] [--when-closed queue] \
        [--date 2026-12-07] [--hvps-open yes|no] [--next-opening 2026-12-08T08:30] \
        [--institution] [--json REQUEST.json] [--participants F] [--institutions F]

`--json FILE` reads the request from a JSON object (`-` for standard input) with the
keys payer_bank, payee_bank, amount (yuan, a decimal string), business_type,
business_kind, urgency, when_closed, customer, date, hvps_open, next_hvps_opening;
flags given on the command line win over the file. The answer is one JSON object on
standard output: the decision with its explanation (exit 0), or the error shape of
CONTRACT.md §6 (exit 1 when the payment is refused, 2 when the command is misused).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from typing import Any, NoReturn

from gateway.clock import Clock, SystemClock, parse_business_datetime
from gateway.errors import PaygateError, Problem, ProblemList, ValidationFailed
from gateway.money import parse_yuan
from routing.defaults import load_default
from routing.request import RouteRequest

EXIT_REFUSED = 1
EXIT_USAGE = 2

# Flag destination -> key of the JSON request file.
_FILE_KEYS = {
    "payer_bank": "payer_bank", "payee_bank": "payee_bank", "amount": "amount",
    "type": "business_type", "kind": "business_kind", "urgency": "urgency",
    "when_closed": "when_closed", "date": "date", "hvps_open": "hvps_open",
    "next_opening": "next_hvps_opening",
}


class _UsageError(Exception):
    """Raised by the parser instead of exiting, so that the command returns a code."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def route_command(argv: list[str], clock: Clock | None = None) -> int:
    """Run `paygate route` with these arguments; print one JSON object; return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except _UsageError as error:
        return _print_errors([Problem("route_arguments_invalid", "argv", argv, "see --help",
                                      str(error))], EXIT_USAGE)
    except SystemExit as done:
        # argparse exits after printing --help; the command returns that code instead.
        return int(done.code or 0)
    try:
        values = _values(args)
        router = load_default({"participants_path": args.participants,
                               "institutions_path": args.institutions})
        request, amount_problem = _request(values)
        on_date = _date(values.get("date"), clock or SystemClock())
        if amount_problem is not None:
            # The amount is refused; the other fields are still checked, so that every
            # problem of the request is reported at once.
            problems = [amount_problem] + router.problems(request, on_date)
            raise ValidationFailed([p for p in problems if p.path != "amount_fen"])
        decision = router.decide(request, on_date, _open(values.get("hvps_open")),
                                 _opening(values.get("next_hvps_opening")))
    except PaygateError as error:
        usage = error.code.startswith("route_")
        return _print_errors(error.problems, EXIT_USAGE if usage else EXIT_REFUSED)
    print(json.dumps(decision.explain(), ensure_ascii=False, sort_keys=False))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="paygate route", description="Show the route of a payment.")
    parser.add_argument("--payer-bank")
    parser.add_argument("--payee-bank")
    parser.add_argument("--amount", help="yuan, a decimal string such as 50000.01")
    parser.add_argument("--type", help="business type, default A100")
    parser.add_argument("--kind", help="business kind, such as 02102")
    parser.add_argument("--urgency", help="normal, urgent or extra_urgent")
    parser.add_argument("--when-closed", help="queue, refuse or beps")
    parser.add_argument("--date", help="business date YYYY-MM-DD, default today")
    parser.add_argument("--hvps-open", help="yes or no, default yes")
    parser.add_argument("--next-opening", help="the next HVPS opening, ISO datetime")
    parser.add_argument("--institution", action="store_true",
                        help="a transfer between institutions (hvps.112 / beps.122)")
    parser.add_argument("--json", metavar="FILE", help="read the request from a JSON file")
    parser.add_argument("--participants", help="participant directory CSV")
    parser.add_argument("--institutions", help="our institutions CSV")
    return parser


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """Flags over the JSON request file's values."""
    values: dict[str, Any] = {}
    if args.json:
        values = _read_json(args.json)
    for dest, key in _FILE_KEYS.items():
        flag = getattr(args, dest)
        if flag is not None:
            values[key] = flag
    if args.institution:
        values["customer"] = False
    return values


def _read_json(path: str) -> dict[str, Any]:
    try:
        if path == "-":
            loaded = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValidationFailed(Problem("route_json_unreadable", "--json", path,
                                       "a readable JSON object", str(error))) from error
    if not isinstance(loaded, dict):
        raise ValidationFailed(Problem("route_json_unreadable", "--json", path,
                                       "a JSON object"))
    return loaded


def _request(values: dict[str, Any]) -> tuple[RouteRequest, Problem | None]:
    """The request, and the amount's problem if it is refused (then 1 fen stands in)."""
    problems = ProblemList()
    for key in ("payer_bank", "payee_bank", "amount"):
        if values.get(key) in (None, ""):
            problems.add("route_argument_missing", key, None, f"--{key.replace('_', '-')}")
    problems.raise_if_any()
    amount = parse_yuan(values["amount"], "amount")
    request = RouteRequest(
        payer_bank=values["payer_bank"], payee_bank=values["payee_bank"],
        amount_fen=1 if isinstance(amount, Problem) else amount,
        business_type=values.get("business_type") or "A100",
        business_kind=values.get("business_kind"),
        urgency=values.get("urgency") or "normal",
        when_closed=values.get("when_closed"), customer=values.get("customer", True),
    )
    return request, amount if isinstance(amount, Problem) else None


def _date(value: Any, clock: Clock) -> date:
    if value in (None, ""):
        return clock.today()
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise ValidationFailed(Problem("route_date_invalid", "date", value,
                                       "a date YYYY-MM-DD")) from error


def _open(value: Any) -> bool:
    if value in (None, "", True, "yes", "true"):
        return True
    if value in (False, "no", "false"):
        return False
    raise ValidationFailed(Problem("route_hvps_open_invalid", "hvps_open", value, "yes or no"))


def _opening(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_business_datetime(str(value))
    except ValueError as error:
        raise ValidationFailed(Problem("route_next_opening_invalid", "next_hvps_opening",
                                       value, "an ISO datetime")) from error


def _print_errors(problems: list[Problem], exit_code: int) -> int:
    print(json.dumps({"errors": [p.to_dict() for p in problems]}, ensure_ascii=False))
    return exit_code
