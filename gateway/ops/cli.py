"""`paygate ops`: the operators' commands against a running gateway, over HTTP.

    paygate ops [--url URL | --config FILE] [--user U] [--password P] [--json] COMMAND

    status                         HVPS window, clearing balance, counts
    queues                         streams, stages, dead letters
    payments [--state S] [--account A] [--amount YUAN] [--date D] [--id ID]
    payment ID                     one payment with its history and requests
    stuck [--minutes N]            accepted / sent / unknown, unchanged for 10 minutes
                                   or more unless given --minutes (0: any age); held for
                                   the window while HVPS is open, as long; held after
                                   the link refused their message, at any age
    review                         payments held for review or by the screening (credits
                                   it parked in suspense included), each with the
                                   actions that decide it
    books                          the ledger's trial balance: balanced, each subject
    day-reports DATE [--out DIR]   a closed date's daily statement and subject day sheets
    dead                           dead letters
    alerts [--code C] [--open | --history] [--limit N]
                                   latest alerts, of one code, open ones or history only
    audit                          latest operators' acts
    requests [--state S]           operators' requests
    messages [--id ID] [--party BANK] [--type T] [--date D]
    message ID                     one archived message, raw and parsed
    request hold|release|cancel|review-approve|review-reject PAYMENT [--note N]
                                   (`paygate ops request --help` describes each action)
    request priority PAYMENT 1|2|3 [--note N]
    request retry DEAD_LETTER_ID [--note N]
    request day-end WORK_DATE [--note N]  a missed day end, run late (alert day_end_missing)
    request hvps-reconcile WORK_DATE  ask the NPC again for a closed date's HVPS totals
    request webhook-resend ROW|failed  failed webhook rows pushed again (webhook_delivery_failed)
    receivables [--state S]        receivables (其他应收款-待销账, 1221): open, collected, void
    request receivable-collect PENDING_NO [--note N]  collect it from the account it names
    request receivable-reverse PENDING_NO --note WHY  reverse its collection, else booking
    request beps-reconcile NETTING_DATE  ask the NPC again for a BEPS netting date's totals
    request package-hold|package-release|package-cancel PACKAGE [--note N]
                                   a BEPS package the NPC never had (an NPC outage)
    request alert-acknowledge ALERT_ID --note N  close a critical alert (supervisors)
    request alert-close ALERT_ID [--note N]  move an ordinary alert to the history
    request return PAYMENT --note REASON  return an incoming payment to its sender (退汇)
    request npc-cancel|status-query|suspense-keep|suspense-release PAYMENT [--note N]
                                   the exception actions (docs/exceptions.md)
    request suspense-apply PENDING_NO|PAYMENT --account A --note WHY
                                   apply a suspense item to a customer account (销账)
    request debit-give-up PAYMENT --note WHY  give up our BEPS debit past its receipt
                                   deadline (reason debit_receipt_overdue)
    request hvps-status-confirm WORK_DATE --status S --note HOW  the HVPS status confirmed
                                   with the NPC after a refused ccms.801 (sending held)
    request suspense-return PENDING_NO|PAYMENT --note REASON
                                   return our BEPS debit's money in suspense to the
                                   payer bank (beps.121 A105)
    actions                        every action: its name, target and who approves it
    approve REQUEST [--note N]     approve (and so execute) another person's request
    reject REQUEST [--note N]      reject it; the requester's own reject withdraws it
    hash-password                  a password hash for the operators file (local)

The gateway is --url, else PAYGATE_OPS_URL, else the one the gateway's configuration
describes: its host and port from --config or PAYGATE_CONFIG and the PAYGATE_HOST and
PAYGATE_PORT variables, read as `paygate serve` reads them (a gateway listening on
every address is reached on loopback). Credentials come from the options or
PAYGATE_OPS_USER and PAYGATE_OPS_PASSWORD; without a password the command asks for one. Output is a table
for people; `--json` prints the gateway's JSON answer instead. A refusal is printed as
lines for people (each problem's code, where, what was expected, the message), and with
`--json` in the product's one error shape (CONTRACT.md §6); the exit status is 0 on success, 1 when
the gateway refused, 2 when it could not be reached or the command line is wrong.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import re
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

from gateway import config
from gateway.errors import PaygateError, Problem
from gateway.ops import cli_render
from gateway.ops.operators import hash_password

# A gateway listening on every address of the machine is reached on loopback.
ANY_ADDRESS = ("", "0.0.0.0", "::")
TIMEOUT_S = 30.0
# Each action `request` takes, with what it names and what it does (its --help). The
# exception actions (docs/exceptions.md) go to the same POST /ops/api/requests, under the
# same checks and dual control as every other.
REQUEST_ACTIONS = {
    "hold": "PAYMENT: stop an HVPS payment not yet sent, or a BEPS item whose package the "
            "NPC never had (no second person)",
    "release": "PAYMENT: send a held payment on (a supervisor approves)",
    "cancel": "PAYMENT: cancel an HVPS payment not yet sent, or a BEPS item whose package "
              "the NPC never had (a supervisor approves)",
    "priority": "PAYMENT 1|2|3: move it to another HVPS lane (a supervisor approves)",
    "retry": "DEAD_LETTER_ID: put a dead letter back on its stream",
    "review-approve": "PAYMENT: pass a payment held for review (supervisors)",
    "review-reject": "PAYMENT: fail a payment held for review (supervisors)",
    "day-end": "WORK_DATE: run a missed day end late (a supervisor approves)",
    "hvps-reconcile": "WORK_DATE: ask the NPC again for the HVPS totals of a work date "
                      "whose ledger day is closed (hvps.710; no second person)",
    "webhook-resend": "ROW|failed: push failed webhook rows again",
    "alert-acknowledge": "ALERT_ID: close a critical alert once its cause is dealt with, the "
                         "note saying how (supervisors and directors; no second person)",
    "alert-close": "ALERT_ID: move an ordinary alert, looked at, to the history, the note "
                   "saying what was done (any level but 10; no second person)",
    "package-hold": "PACKAGE: stop a BEPS package the NPC never had (an NPC outage): it is "
                    "not sent until released or cancelled (no second person)",
    "package-release": "PACKAGE: send a held BEPS package on as it is (a supervisor "
                       "approves)",
    "package-cancel": "PACKAGE: cancel every item of a BEPS package the NPC never had, "
                      "releasing the payers' holds; it is never sent (a supervisor "
                      "approves)",
    "beps-reconcile": "NETTING_DATE: ask the NPC again for the BEPS totals of a complete "
                      "netting date (beps.720), one reconciled already too (no second "
                      "person)",
    "return": "PAYMENT --note REASON: return an incoming payment in suspense or credited "
              "to its sender (A105), the note as the reason, cut to 100 characters "
              "(returned_by_operator without one; a supervisor approves)",
    "npc-cancel": "PAYMENT: ask the NPC to cancel a payment queued there, or a BEPS item "
                  "not yet netted (ccms.307; a supervisor approves)",
    "status-query": "PAYMENT: ask the NPC the status of an outgoing payment sent, queued "
                    "or unknown (ccms.316; no second person)",
    "suspense-keep": "PAYMENT: keep a suspense item from the automatic return (no "
                     "second person)",
    "suspense-release": "PAYMENT: let the automatic return take a kept suspense item "
                        "again (a supervisor approves)",
    "receivable-collect": "PENDING_NO: collect an open receivable (1221) from the account "
                          "it names, which must cover it whole (a supervisor approves)",
    "receivable-reverse": "PENDING_NO --note WHY: reverse a receivable's collection (it "
                          "is open again), else its booking (it is void), on that "
                          "posting's own work date (a supervisor approves)",
    "debit-give-up": "PAYMENT --note WHY: give up our BEPS debit whose receipt is past its "
                     "deadline (reason debit_receipt_overdue): it is rejected and the "
                     "core system told; paid after that, its money goes to suspense (a "
                     "supervisor approves)",
    "hvps-status-confirm": "WORK_DATE --status STATUS --note HOW: after a refused ccms.801 "
                           "(HVPS sending held), the status the NPC is in, as confirmed "
                           "with it: the gateway takes it and HVPS sending resumes (a "
                           "supervisor approves)",
    "suspense-apply": "PENDING_NO|PAYMENT --account ACCOUNT --note WHY: apply a suspense "
                      "item (named by its pending write-off number or its payment) to the "
                      "customer account it belongs to (销账), the note saying why (a "
                      "supervisor approves); our BEPS debit's item too, the debit then "
                      "netted or settled",
    "suspense-return": "PENDING_NO|PAYMENT --note REASON: return the money of our BEPS "
                       "debit waiting in suspense to the payer bank (beps.121 A105 naming "
                       "the debit), the note as the reason; the debit is returned once the "
                       "NPC nets it (a supervisor approves)",
}


# `ops stuck` lists payments unchanged for this many minutes when not given --minutes:
# the default the gateway applies (gateway.ops.views.STUCK_AFTER_MIN, which a test keeps
# equal), said here without importing the gateway's database code into the command.
STUCK_DEFAULT_MIN = 10
# Each command's one line in `paygate ops --help` (and the head of its own --help).
COMMANDS = {
    "status": "HVPS window, work date, the NPC link, clearing balance, what waits at "
              "the NPC and payment counts",
    "queues": "the streams, the payments at each stage and the dead letters",
    "payments": "payments, newest first, filtered by the options",
    "payment": "one payment with its history and its operators' requests",
    "stuck": f"payments accepted, sent or unknown and unchanged for {STUCK_DEFAULT_MIN} "
             "minutes or more, unless given --minutes (and held for the window while HVPS "
             "is open, as long; held because the link refused their message, at any age)",
    "review": "payments the amount review or the screening holds (credits another bank "
              "sent us that the screening parked in suspense included), each with the "
              "actions that decide it",
    "books": "the ledger's trial balance: balanced or not, subject by subject",
    "day-reports": "a closed work date's daily statement (日计表) and subject day sheets "
                   "(科目日结单): printed, or written into --out",
    "dead": "dead letters: messages the gateway gave up sending",
    "alerts": "the latest alerts, all or of one code, open ones or history only, with how "
              "many the filters find",
    "audit": "the latest operators' acts",
    "requests": "operators' requests, optionally in one state",
    "receivables": "receivables (其他应收款-待销账, 1221) to collect or reverse: open, "
                   "or in another state",
    "messages": "archived messages, filtered by the options",
    "message": "one archived message, raw and parsed",
    "request": "ask for an action (a second person approves where needed)",
    "actions": "every action: its name, its target and who approves it",
    "approve": "approve, and so execute, another person's request",
    "reject": "reject a request (the requester's own reject withdraws it)",
    "hash-password": "a password hash for the operators file (local, no gateway)",
}


class RawHelp(argparse.RawDescriptionHelpFormatter):
    """--help keeps the table of actions as written."""


class CommandFailed(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _Parser(argparse.ArgumentParser):
    """Refuses arguments it cannot read in the product's error shape (`ops_command`
    prints it), not with argparse's usage text: a command it does not know is
    `command_unknown`, as `paygate bogus` is; anything else `arguments_malformed`, with
    argparse's words as the message."""

    def error(self, message: str) -> NoReturn:
        unknown = _UNKNOWN_COMMAND.match(message) if self.prog == PROG else None
        if unknown is not None:
            raise CommandFailed(-1, {"errors": [{
                "code": "command_unknown", "path": "COMMAND", "value": unknown.group(1),
                "expected": "one of " + ", ".join(COMMANDS), "message": ""}]})
        raise arguments_malformed(
            self.prog, " ".join(self.format_usage().split()).removeprefix("usage: "),
            f"{self.prog}: {message}")


def arguments_malformed(prog: str, expected: str, message: str, value: Any = None
                        ) -> CommandFailed:
    """`arguments_malformed` for the command `prog`, in the product's error shape."""
    return CommandFailed(-1, {"errors": [{"code": "arguments_malformed", "path": prog,
                                          "value": value, "expected": expected,
                                          "message": message}]})


PROG = "paygate ops"
# argparse's words for a subcommand it does not know (the only choice the top-level
# parser has is the command).
_UNKNOWN_COMMAND = re.compile(r"argument COMMAND: invalid choice: '(.*)' \(choose from")


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--url", default=default,
                        help="the gateway; default: PAYGATE_OPS_URL, else the configured "
                             "host and port")
    parser.add_argument("--config", default=default,
                        help="the gateway's TOML settings file, for its host and port")
    parser.add_argument("--user", default=default,
                        help="the operator; default: PAYGATE_OPS_USER")
    parser.add_argument("--password", default=default,
                        help="default: PAYGATE_OPS_PASSWORD, else asked for")
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="print the gateway's JSON answer (a refusal too) instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    _common(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        what = COMMANDS[name]
        return sub.add_parser(name, parents=[common], help=what, description=what, **kwargs)
    for name in ("status", "queues", "review", "dead", "audit", "books",
                 "actions", "hash-password"):
        command(name)
    p = command("alerts")
    p.add_argument("--code", help="only alerts of this code, e.g. "
                                  "incoming_credit_held_for_review")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--open", dest="open", action="store_const", const="true",
                       help="only the alerts open (needing attention)")
    which.add_argument("--history", dest="open", action="store_const", const="false",
                       help="only the history (closed, acknowledged, episodes over)")
    p.add_argument("--limit", help="at most this many, 1 to 200 (default 50)")
    p = command("payments")
    for option, what in (("--state", "in this state"),
                         ("--account", "as the payer's or the payee's account"),
                         ("--amount", "of this amount, in yuan"),
                         ("--date", "of this work date (YYYY-MM-DD)"),
                         ("--id", "a payment id, MsgId or EndToEndId"),
                         ("--limit", "at most this many (default 50)")):
        p.add_argument(option, help=what)
    command("payment").add_argument("id", help="the payment id")
    p = command("day-reports")
    p.add_argument("work_date", help="a work date whose ledger day is closed (YYYY-MM-DD)")
    p.add_argument("--out", help="a folder to write the two files into (made if missing), "
                                 "instead of printing them")
    command("stuck").add_argument(
        "--minutes", help="unchanged for at least this many minutes, 0 to 10080 "
                          f"(default {STUCK_DEFAULT_MIN} minutes: younger payments are not "
                          "listed; --minutes 0 lists every one in flight)")
    command("requests").add_argument("--state", help="pending, executed, failed, rejected, "
                                                        "withdrawn or expired")
    command("receivables").add_argument("--state", help="open (the default), collected or "
                                                         "void")
    p = command("messages")
    for option, what in (("--id", "this message id"), ("--party", "to or from this bank"),
                         ("--type", "of this type, e.g. hvps.111.001.01"),
                         ("--date", "on this date (YYYY-MM-DD)"),
                         ("--direction", "in or out")):
        p.add_argument(option, help=what)
    command("message").add_argument("id", help="the archived message's id")
    p = sub.add_parser("request", parents=[common], formatter_class=RawHelp,
                       help=COMMANDS["request"],
                       description="actions:\n" + "\n".join(
                           textwrap.fill(what, 79, initial_indent=f"  {name:<17} ",
                                         subsequent_indent=" " * 20)
                           for name, what in REQUEST_ACTIONS.items()))
    p.add_argument("action", choices=tuple(REQUEST_ACTIONS), metavar="ACTION",
                   help="one of the actions above")
    p.add_argument("target", help="payment id, dead-letter id for retry, work date for "
                                  "day-end and hvps-reconcile, webhook row or `failed` for webhook-resend, "
                                  "netting date for beps-reconcile, alert id for "
                                  "alert-acknowledge and alert-close, package id for package-*, "
                                  "work date for hvps-status-confirm, "
                                  "pending write-off number for receivable-collect and "
                                  "receivable-reverse, pending write-off number or "
                                  "payment id for suspense-apply and suspense-return")
    p.add_argument("priority", nargs="?", metavar="{1,2,3}",
                   help="the new lane, for priority only")
    p.add_argument("--account", help="the customer account credited, for suspense-apply "
                                     "only")
    p.add_argument("--status", help="the HVPS status the NPC is in (00, 10, 20, 30, 40), "
                                    "required for hvps-status-confirm, for it only")
    p.add_argument("--note", default="", help="why, kept with the request (at most 500 "
                                              "characters); for return, the reason sent; "
                                              "required for suspense-apply")
    for name in ("approve", "reject"):
        p = command(name)
        p.add_argument("request_id", help="the request's id (`paygate ops requests`)")
        p.add_argument("--note", default="", help="why, kept with the decision")
    return parser


class Client:
    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise CommandFailed(exc.code, _error_body(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CommandFailed(0, {"errors": [{
                "code": "gateway_unreachable", "path": "--url", "value": self.url,
                "expected": "a running gateway", "message": str(exc)}]}) from None


def _error_body(exc: urllib.error.HTTPError) -> dict[str, Any]:
    raw = exc.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and "errors" in body:
        return body
    return {"errors": [{"code": "gateway_answered_error", "path": "", "value": exc.code,
                        "expected": "a JSON answer", "message": raw[:200].decode("latin-1")}]}


def _query(args: argparse.Namespace, names: tuple[str, ...]) -> str:
    """The options given, as the gateway's query string: one given empty is sent empty,
    for the gateway to refuse where it must (`--state ""`), never dropped."""
    values = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return "?" + urlencode(values) if values else ""


def run(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    """Call the gateway for one command; its JSON answer and how to render it."""
    c = args.command
    if c in ("status", "queues", "review", "dead", "audit", "books", "actions"):
        return client.call("GET", f"/ops/api/{c}"), c
    if c == "alerts":
        return client.call("GET", "/ops/api/alerts" + _query(args, ("code", "open", "limit"))), c
    if c == "payments":
        names = ("state", "account", "amount", "date", "id", "limit")
        return client.call("GET", "/ops/api/payments" + _query(args, names)), c
    if c == "payment":
        return client.call("GET", f"/ops/api/payments/{quote(args.id, safe='')}"), c
    if c == "day-reports":
        answer = client.call("GET", f"/ops/api/day-reports/{quote(args.work_date, safe='')}")
        if args.out is not None:
            answer["written"] = write_reports(answer, Path(args.out))
        return answer, "day_reports"
    if c == "stuck":
        return client.call("GET", "/ops/api/stuck" + _query(args, ("minutes",))), c
    if c in ("requests", "receivables"):
        return client.call("GET", f"/ops/api/{c}" + _query(args, ("state",))), c
    if c == "messages":
        names = ("id", "party", "type", "date", "direction")
        return client.call("GET", "/ops/api/messages" + _query(args, names)), c
    if c == "message":
        return client.call("GET", f"/ops/api/messages/{quote(args.id, safe='')}"), c
    if c == "request":
        return client.call("POST", "/ops/api/requests", _request_body(args)), "one_request"
    path = f"/ops/api/requests/{quote(args.request_id, safe='')}/{c}"
    return client.call("POST", path, {"note": args.note}), "one_request"


def write_reports(answer: dict[str, Any], folder: Path) -> list[str]:
    """The reports the gateway answered, written into `folder` under their own names."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in answer["files"]:
        path = folder / Path(f["name"]).name  # a name only, never a path of the gateway's
        path.write_text(f["text"], encoding="utf-8")
        paths.append(str(path))
    return paths


def _request_body(args: argparse.Namespace) -> dict[str, Any]:
    action = args.action.replace("-", "_")
    if action != "priority" and args.priority is not None:
        # The lane's place after TARGET takes any word: refused, not dropped unsaid.
        prog = f"{PROG} request"
        raise arguments_malformed(
            prog, f"{prog} {args.action} TARGET, with no other argument (only priority "
                  "takes one after TARGET: the lane)",
            f"{prog}: unrecognized arguments: {args.priority}", args.priority)
    if action == "priority" and args.priority is None:
        raise CommandFailed(-1, {"errors": [{
            "code": "priority_required", "path": "priority", "value": None,
            "expected": "1 (extra urgent), 2 (urgent) or 3 (normal)", "message": ""}]})
    if action == "priority" and args.priority not in ("1", "2", "3"):
        raise CommandFailed(-1, {"errors": [{
            "code": "priority_unknown", "path": "priority", "value": args.priority,
            "expected": "1 (extra urgent), 2 (urgent) or 3 (normal)", "message": ""}]})
    params: dict[str, Any] = {"priority": int(args.priority)} if action == "priority" else {}
    if args.account is not None:  # another action refuses it by name (field_unknown)
        params["account"] = args.account
    if args.status is not None:  # likewise
        params["status"] = args.status
    return {"action": action, "target": args.target, "params": params, "note": args.note}


def ops_command(argv: list[str]) -> int:
    """`paygate ops ...`; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except CommandFailed as failed:
        _print_refusal(failed.body, "--json" in argv)
        return 2
    if args.command == "hash-password":
        return _hash_password(args.json)
    try:
        url = gateway_url(args.url, args.config)
    except PaygateError as exc:
        _print_refusal(exc.to_dict(), args.json)
        return 2
    user = args.user or os.environ.get("PAYGATE_OPS_USER") or getpass.getuser()
    password = args.password or os.environ.get("PAYGATE_OPS_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            _print_refusal({"errors": [{
                "code": "credentials_required", "path": "--password", "value": None,
                "expected": "--password or PAYGATE_OPS_PASSWORD when not on a terminal",
                "message": "credentials required: no password was given and there is no "
                           "terminal to ask for one; pass --password or set "
                           "PAYGATE_OPS_PASSWORD"}]}, args.json)
            return 2
        password = getpass.getpass(f"password for {user}: ")
    try:
        answer, view = run(Client(url, user, password), args)
    except CommandFailed as failed:
        _print_refusal(failed.body, args.json)
        return 1 if failed.status > 0 else 2
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        print(cli_render.RENDERERS[view](answer))
    # A request the gateway took but could not carry out (a hold on a payment already
    # sent, say) is a refusal too: the same exit status as one refused outright.
    if isinstance(answer, dict) and answer.get("state") == "failed":
        return 1
    return 0


def gateway_url(url: str | None, config_path: str | None) -> str:
    """--url, else PAYGATE_OPS_URL, else the address the configuration gives the gateway."""
    source = "--url" if url else "PAYGATE_OPS_URL"
    url = url or os.environ.get("PAYGATE_OPS_URL")
    if url:
        return _checked_url(url, source)
    settings = config.load_for_command(config_path)
    if settings.port == 0:
        raise PaygateError(Problem("gateway_url_unknown", "--url", None,
                                   "--url or PAYGATE_OPS_URL: the configured port is 0 (any "
                                   "free port), so only the gateway's log says which"))
    host = "127.0.0.1" if settings.host in ANY_ADDRESS else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def _checked_url(url: str, source: str) -> str:
    """`url` when it names a gateway (http or https, a host, a numeric port if any);
    refused naming where it came from otherwise, before anything is asked of it."""
    if not config.is_http_url(url):
        raise PaygateError(Problem("gateway_url_malformed", source, url,
                                   config.HTTP_URL_EXPECTED,
                                   f"{source} {url!r} names no gateway the command can ask"))
    return url


def _print_refusal(body: dict[str, Any], as_json: bool) -> None:
    """A refusal in the product's error shape: as JSON with --json (for scripts), else
    as lines for people (cli_render.refusal)."""
    print(json.dumps(body, ensure_ascii=False, indent=2) if as_json
          else cli_render.refusal(body))


def _hash_password(as_json: bool) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != password:
            _print_refusal({"errors": [{"code": "passwords_differ", "path": "", "value": None,
                                        "expected": "the same password twice",
                                        "message": ""}]}, as_json)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        # An empty line piped in (or Enter at the prompt) would hash to a password
        # anyone signs in with by typing nothing.
        _print_refusal({"errors": [{"code": "password_empty", "path": "stdin", "value": None,
                                    "expected": "a password of at least one character",
                                    "message": ""}]}, as_json)
        return 2
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(ops_command(sys.argv[1:]))
