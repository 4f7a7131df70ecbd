"""`paygate ops` against a running gateway: readable tables, JSON, errors, exit codes."""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import pytest

from gateway.ops import cli, cli_render, tables
from gateway.ops.operators import verify_password
from gateway.ops.testing import LoopThread, OpsRig, hvps_sending_held
from gateway.redisproc import free_port

_keys = itertools.count(1)


class Cli:
    def __init__(self, loop: LoopThread, rig: OpsRig, capsys: Any = None) -> None:
        self.loop, self.rig = loop, rig
        self.capsys = capsys

    def __call__(self, user: str, *argv: str) -> tuple[int, str]:
        """Run one command as `user` (demo password); exit status and standard output."""
        self.capsys.readouterr()
        status = cli.ops_command(["--url", self.rig.url, "--user", user,
                                  "--password", f"{user}-demo", *argv])
        return status, self.capsys.readouterr().out

    def payment(self) -> str:
        return self.loop.run(self.rig.submit(f"cli-{next(_keys)}"))["id"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    rig = loop.run(OpsRig(tmp_path_factory.mktemp("ops-cli")).start())
    yield loop, rig
    loop.run(rig.stop())
    loop.close()


@pytest.fixture
def ops(served: Any, capsys: pytest.CaptureFixture) -> Cli:
    return Cli(*served, capsys)


def test_status_is_a_readable_summary(ops: Cli) -> None:
    """Status names the HVPS phase in both languages, the work date and the balance."""
    status, out = ops("op1", "status")

    assert status == 0
    assert "00 business preparation 营业准备" in out
    assert "2026-12-07" in out and "clearing balance" in out and "n/a" in out



def test_status_says_hvps_sending_is_held_since_when_and_why(ops: Cli) -> None:
    """A refused ccms.801 holding HVPS sending: status says so, since when, the notice
    refused and the status the gateway kept; nothing about it once in step again."""
    with hvps_sending_held(ops.loop, ops.rig) as was:
        _, held_out = ops("op1", "status")
    _, in_step = ops("op1", "status")
    held_words = " ".join(held_out.split())

    assert was is None
    assert ("HVPS sending HELD since 2026-12-07T07:00:00+08:00: the NPC announced 10 -> 00 "
            "on 2026-12-07 (illegal), the gateway is on 10 of 2026-12-07" in held_words)
    assert "HVPS sending" not in in_step


COMMANDS = [
    (("queues",), "paygate:out:hvps:1"),
    (("payments", "--state", "held"), "held"),
    (("requests",), "req"),
    (("audit",), "execute"),
    (("alerts",), ""),
    (("dead",), "total:"),
    (("stuck", "--minutes", "5"), "older than 5 min"),
    (("messages", "--type", "hvps.111"), "(none)"),
]


@pytest.mark.parametrize("argv, expected", COMMANDS)
def test_read_commands_print_tables(ops: Cli, argv: tuple[str, ...], expected: str) -> None:
    """Each read command answers with exit status 0 and a table."""
    ops.payment()
    ops("op1", "request", "hold", ops.payment())
    status, out = ops("op1", *argv)

    assert status == 0 and expected in out


def test_books_show_the_trial_balance(ops: Cli) -> None:
    """`books` says whether the ledger balances, with each subject that moved; its JSON
    agrees with the ledger's own trial balance (debits equal credits, fen and yuan)."""
    ops.payment()
    status, out = ops("op1", "books")
    _, raw = ops("op1", "--json", "books")
    data = json.loads(raw)

    assert status == 0 and out.splitlines()[0].split() == ["balanced", "True"]
    assert data["balanced"] is True and data["accounts_agree"] is True
    assert data["debit_total_fen"] == data["credit_total_fen"] > 0
    assert data["debit_total"] == f"{data['debit_total_fen'] // 100}." \
                                  f"{data['debit_total_fen'] % 100:02d}"
    assert data["subjects"] and all(row["code"] in out for row in data["subjects"])


def test_failed_webhook_rows_are_pushed_again_on_request(ops: Cli) -> None:
    """After the core system was down longer than the retries last, an operator sends
    the failed webhook rows again (no second person: it tells, never pays): they start
    over from their first attempt; a row that is not failed is refused by name."""
    gw = ops.rig.gw

    def failed_rows(tx: Any) -> list[int]:
        rows = []
        for n in range(2):
            rows.append(tx.query_one(
                "INSERT INTO outbox (payment_id, kind, stream, state, envelope, attempts, "
                "created_at, updated_at) VALUES (NULL, 'webhook', ?, 'failed', ?, 24, "
                "'2026-12-07T09:00:00+08:00', '2026-12-07T09:00:00+08:00') RETURNING id",
                ("paygate:webhook", b'{"events": []}'))[0])
        return rows
    first, second = ops.loop.run(gw.store.run(failed_rows))
    one, out_one = ops("op1", "request", "webhook-resend", str(first))
    again, refusal = ops("op1", "request", "webhook-resend", str(first))
    every, out_all = ops("op1", "--json", "request", "webhook-resend", "failed")
    states = ops.loop.run(gw.store.run(lambda tx: tx.query(
        "SELECT id, state, attempts FROM outbox WHERE id IN (?, ?) ORDER BY id",
        (first, second))))

    assert one == 0 and "executed" in out_one
    assert again == 1 and refusal.startswith("refused: webhook_row_not_failed at /target")
    assert every == 0 and json.loads(out_all)["outcome"]["webhook_rows"] == [second]
    assert [(s, a) for _, s, a in states] == [("pending", 0), ("pending", 0)]


def test_json_output_is_the_gateways_answer(ops: Cli) -> None:
    """--json prints the JSON the gateway sent, for scripts."""
    pid = ops.payment()
    status, out = ops("op1", "--json", "payment", pid)
    data = json.loads(out)

    assert status == 0 and data["id"] == pid and data["history"][0]["event"] == "created"


def test_cancel_by_request_and_approval(ops: Cli) -> None:
    """An operator requests, the same operator cannot approve, a supervisor can."""
    pid = ops.payment()
    requested, out = ops("op1", "request", "cancel", pid, "--note", "客户撤回")
    request_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("id "))
    own, refusal = ops("op1", "approve", request_id)
    approved, done = ops("sup1", "approve", request_id)
    _, shown = ops("op1", "payment", pid)

    assert requested == 0 and "pending" in out
    assert own == 1 and refusal.startswith("refused: approver_is_requester at /id")
    assert approved == 0 and "executed" in done
    assert "cancelled_by_operator" in shown


def test_the_requests_table_shows_what_each_request_asks(ops: Cli) -> None:
    """The approver sees the priority a priority change asks for, beside its target,
    not only which payment it is."""
    pid = ops.payment()
    requested, _ = ops("op1", "request", "priority", pid, "1")
    listed, out = ops("sup1", "requests", "--state", "pending")
    heading = out.splitlines()[0].split()
    row = next(line for line in out.splitlines() if pid in line)

    assert requested == listed == 0
    assert heading[:4] == ["req", "action", "target", "params"]
    assert "priority=1" in row


FAILURES = [
    # argv after the credentials, exit status, error code
    (("request", "priority", "P1"), 2, "priority_required"),
    (("payment", "P-NOT-THERE"), 1, "payment_not_found"),
    (("reject", "999999"), 1, "request_not_found"),
    (("requests", "--state", "approved"), 1, "state_unknown"),
    # Given empty, the option is sent empty and refused, never dropped (every request).
    (("requests", "--state", ""), 1, "state_unknown"),
]


@pytest.mark.parametrize("argv, status, code", FAILURES)
def test_errors_have_the_one_shape(ops: Cli, argv: tuple[str, ...], status: int,
                                   code: str) -> None:
    """Refusals print, with --json, the product's error shape, and exit non-zero; as
    lines for people without it, with the same exit status."""
    got, out = ops("op1", "--json", *argv)
    read, lines = ops("op1", *argv)
    problem = json.loads(out)["errors"][0]

    assert got == read == status and problem["code"] == code
    assert lines.splitlines()[0].startswith(f"refused: {code}")
    assert f"  message: {problem['message'] or code.replace('_', ' ')}" in "".join(lines)
    assert not lines.lstrip().startswith("{")


def test_a_refusal_reads_as_lines_for_people(ops: Cli) -> None:
    """Without --json: the code, where and what was seen, what was expected and the
    message, one line each; never the raw JSON."""
    status, out = ops("op1", "request", "cancel", "P-NOT-THERE")
    _, raw = ops("op1", "--json", "request", "cancel", "P-NOT-THERE")
    problem = json.loads(raw)["errors"][0]

    assert status == 1
    assert out.splitlines() == [
        "refused: payment_not_found at /target (got P-NOT-THERE)",
        f"  expected: {problem['expected']}", f"  message: {problem['message']}"]


def test_wrong_password_and_unreachable_gateway(served: Any,
                                                capsys: pytest.CaptureFixture) -> None:
    """A refused sign-in exits 1; a gateway that does not answer exits 2."""
    _, rig = served
    refused = cli.ops_command(["--url", rig.url, "--user", "op2", "--password", "nope",
                               "--json", "status"])
    refusal = json.loads(capsys.readouterr().out)
    nowhere = cli.ops_command(["--url", f"http://127.0.0.1:{free_port()}", "--user", "op2",
                               "--password", "op2-demo", "--json", "status"])
    unreachable = json.loads(capsys.readouterr().out)

    assert refused == 1 and refusal["errors"][0]["code"] == "sign_in_refused"
    assert nowhere == 2 and unreachable["errors"][0]["code"] == "gateway_unreachable"


def _status_without_url(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any]:
    status = cli.ops_command([*argv, "--user", "op1", "--password", "op1-demo", "--json",
                              "status"])
    return status, json.loads(capsys.readouterr().out)


def test_without_url_the_gateway_the_configuration_describes_is_asked(
        served: Any, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> None:
    """No --url and no PAYGATE_OPS_URL: the gateway is at the configured host and port,
    from PAYGATE_PORT or the configuration file (every address: reached on loopback)."""
    _, rig = served
    port = int(rig.url.rsplit(":", 1)[1])
    monkeypatch.delenv("PAYGATE_OPS_URL", raising=False)
    monkeypatch.delenv("PAYGATE_CONFIG", raising=False)
    monkeypatch.setenv("PAYGATE_PORT", str(port))
    by_variable = _status_without_url(capsys)
    monkeypatch.delenv("PAYGATE_PORT")
    config = tmp_path / "gateway.toml"
    config.write_text(f'host = "0.0.0.0"\nport = {port}\n')
    by_file = _status_without_url(capsys, "--config", str(config))
    monkeypatch.setenv("PAYGATE_CONFIG", str(config))
    by_file_variable = _status_without_url(capsys)

    assert by_variable[0] == by_file[0] == by_file_variable[0] == 0
    assert by_variable[1]["bank"] == by_file[1]["bank"] == "999100000019"


def test_without_url_a_gateway_on_any_free_port_cannot_be_found(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Port 0 in the configuration names no port: the command asks for --url."""
    monkeypatch.delenv("PAYGATE_OPS_URL", raising=False)
    monkeypatch.setenv("PAYGATE_PORT", "0")
    status, answer = _status_without_url(capsys)

    assert status == 2 and answer["errors"][0]["code"] == "gateway_url_unknown"


@pytest.mark.parametrize("source, url", [
    ("--url", "http://127.0.0.1:18299x"), ("--url", "127.0.0.1:18299"),
    ("--url", "http://:8080"), ("--url", "http://127.0.0.1:0"),
    ("PAYGATE_OPS_URL", "ftp://127.0.0.1:8080"),
])
def test_a_url_naming_no_gateway_is_refused_naming_where_it_came_from(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, source: str,
        url: str) -> None:
    """A malformed gateway address is refused before anything is asked, exit 2."""
    monkeypatch.delenv("PAYGATE_OPS_URL", raising=False)
    argv: tuple[str, ...] = ("--url", url)
    if source == "PAYGATE_OPS_URL":
        monkeypatch.setenv(source, url)
        argv = ()
    status, answer = _status_without_url(capsys, *argv)

    assert status == 2
    assert answer["errors"][0] == {
        "code": "gateway_url_malformed", "path": source, "value": url,
        "expected": "http://HOST[:PORT][/PATH] or https://..., the port a number from 1 to "
                    "65535",
        "message": f"{source} {url!r} names no gateway the command can ask"}


def test_hash_password_makes_a_hash_the_file_accepts(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """The hash printed for a password piped in verifies against that password."""
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-Pass\n"))
    status = cli.ops_command(["hash-password"])
    stored = capsys.readouterr().out.strip()

    assert status == 0 and stored.startswith("scrypt$")
    assert verify_password("s3cret-Pass", stored) and not verify_password("other", stored)


@pytest.mark.parametrize("piped", ["", "\n"])
def test_hash_password_refuses_an_empty_password(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture,
                                                 piped: str) -> None:
    """Nothing piped in, or an empty line, hashes no password anyone could sign in with
    by typing nothing."""
    monkeypatch.setattr("sys.stdin", io.StringIO(piped))
    status = cli.ops_command(["--json", "hash-password"])
    out = capsys.readouterr().out

    assert status == 2 and "scrypt$" not in out
    assert json.loads(out)["errors"][0]["code"] == "password_empty"


ARGUMENTS_REFUSED = [
    # argv after the credentials, the code printed in the product's error shape
    (("bogus",), "command_unknown"),
    (("request", "priority", "P1", "7"), "priority_unknown"),
    (("request", "priority", "P1", "x"), "priority_unknown"),
    (("request",), "arguments_malformed"),
    (("request", "bogus-action", "P1"), "arguments_malformed"),
    (("request", "cancel", "P1", "xyz"), "arguments_malformed"),
    (("request", "retry", "1-1", "2"), "arguments_malformed"),
    (("payments", "--bogus"), "arguments_malformed"),
]


@pytest.mark.parametrize("argv, code", ARGUMENTS_REFUSED)
def test_arguments_it_cannot_read_are_refused_in_the_error_shape(
        capsys: pytest.CaptureFixture, argv: tuple[str, ...], code: str) -> None:
    """Not argparse's usage text: the code, JSON with --json and lines for people, exit
    status 2, as `paygate bogus` answers command_unknown; no gateway is asked."""
    base = ["--url", "http://127.0.0.1:9", "--user", "op1", "--password", "x"]
    got = cli.ops_command([*base, "--json", *argv])
    out = capsys.readouterr()
    read = cli.ops_command([*base, *argv])
    lines = capsys.readouterr().out

    assert got == read == 2 and out.err == ""
    assert json.loads(out.out)["errors"][0]["code"] == code
    assert lines.startswith(f"refused: {code}")


def test_tables_align_chinese_text_by_display_width() -> None:
    """A Chinese character takes two terminal columns, so columns still line up."""
    text = tables.table([{"a": "收款单位", "b": 1}, {"a": "abc", "b": 22}],
                        (("a", "name"), ("b", "n")))
    head, _, first, second = text.splitlines()

    def column(line: str, index: int) -> int:
        return tables.width(line[:index])

    assert column(head, head.rindex("n")) == column(first, first.index("1")) \
        == column(second, second.index("22")) == 10


def test_long_values_wrap_whole_within_100_columns() -> None:
    """A name: value line too long for the terminal goes on under its value column: no
    line is wider than 100 columns and nothing of the value is cut."""
    totals = ("sent 12 (3,456,789.01) settled 11 (3,400,000.00) returned A105 "
              "settled 1 (56,789.01) " + "收款人账号不存在 " * 6 + "x" * 130)
    text = tables.pairs([("HVPS totals", totals), ("bank", "999100000019")])
    lines = text.splitlines()
    value_at = tables.width("HVPS totals  ")

    assert max(tables.width(line) for line in lines) <= 100
    assert "…" not in text and len(lines) > 3
    assert lines[-1] == "bank         999100000019"
    pieces = [line[len("HVPS totals  "):] for line in lines[:-1]]
    assert all(line[:value_at].strip() == "" for line in lines[1:-1])
    assert "".join(pieces).replace(" ", "") == totals.replace(" ", "")


def test_stuck_says_when_the_list_is_cut():
    from gateway.ops import cli_render
    cut = cli_render.stuck({"minutes": 10, "total": 210, "shown": 200, "truncated": True,
                            "payments": []})
    whole = cli_render.stuck({"minutes": 10, "total": 3, "shown": 3, "truncated": False,
                              "payments": []})

    assert cut.startswith("older than 10 min: the oldest 200 of 210 shown")
    assert whole.startswith("older than 10 min: 3 in all")


def test_review_says_how_many_are_held_when_the_list_is_cut():
    """The review list cut at the gateway's maximum says so, the numbers grouped."""
    from gateway.ops import cli_render
    row = {"id": "P1", "direction": "in", "channel": "hvps", "state": "suspense",
           "reason": "screening_match_payer_name", "amount": "10.00", "actions": []}
    cut = cli_render.review({"total": 1203, "shown": 200, "truncated": True,
                             "payments": [row]})
    whole = cli_render.review({"total": 1, "shown": 1, "truncated": False,
                               "payments": [row]})
    empty = cli_render.review({"total": 0, "shown": 0, "truncated": False, "payments": []})

    assert cut.startswith("held for review: the oldest 200 of 1,203 shown\n")
    assert whole.startswith("held for review: 1 in all\n")
    assert empty == "(no payment is held for review)"


def test_stuck_counts_apart_the_payments_listed_whatever_their_age():
    """Two payments held seconds ago after the link refused their message: the heading
    does not call them older than 10 minutes."""
    from gateway.ops import cli_render
    fresh = cli_render.stuck({"minutes": 10, "total": 2, "message_died": 2, "shown": 2,
                              "truncated": False, "payments": []})
    mixed = cli_render.stuck({"minutes": 10, "total": 5, "message_died": 2, "shown": 4,
                              "truncated": True, "payments": []})

    assert fresh.startswith("older than 10 min: 0; held since their message died on the "
                            "way to the NPC, at any age: 2; 2 in all")
    assert mixed.startswith("older than 10 min: 3; held since their message died on the "
                            "way to the NPC, at any age: 2; the oldest 4 of 5 shown")


def test_alerts_say_how_many_the_filters_find_and_pass_the_filters_on() -> None:
    """A thousand alerts of one code where the list shows 50: the listing ends saying so,
    and `--code`, `--open` and `--limit` go to the gateway as its query string."""
    row = {"id": 1, "at": "t1", "code": "incoming_credit_held_for_review", "detail": {},
           "critical": False, "open": False, "acknowledged_by": None, "attention": True}
    cut = cli_render.alerts({"alerts": [row], "total": 1000, "shown": 50,
                             "truncated": True})
    calls: list[str] = []

    class Client:
        def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
            calls.append(path)
            return {}
    for argv in (["alerts"], ["alerts", "--code", "incoming_credit_held_for_review",
                              "--open", "--limit", "200"], ["alerts", "--history"]):
        cli.run(Client(), cli.build_parser().parse_args(argv))

    assert cut.endswith("\n\nthe latest 50 of 1,000 shown")
    assert calls == ["/ops/api/alerts",
                     "/ops/api/alerts?code=incoming_credit_held_for_review&open=true&limit=200",
                     "/ops/api/alerts?open=false"]
    with pytest.raises(cli.CommandFailed) as both:
        cli.build_parser().parse_args(["alerts", "--open", "--history"])
    assert both.value.body["errors"][0]["code"] == "arguments_malformed"


# (the link's state, the login session's) -> the `NPC link` row of `ops status`
LINK_ROWS = [
    ("up", "logged_in", "up (session logged in)"),
    ("down", "logged_in", "DOWN (session when the NPC last answered: logged in)"),
    ("down", "logging_in", "DOWN (session when the NPC last answered: logging in)"),
    ("unknown", None, "not used yet"),
    ("up", "forced_out", "up (session logged out by the NPC)"),
]


@pytest.mark.parametrize("state, session, shown", LINK_ROWS)
def test_the_link_row_says_the_session_in_words_and_as_last_known_while_down(
        state: str, session: str | None, shown: str) -> None:
    """A link down beside a session `logged_in` read as if both held now: the session is
    the one the NPC last answered, and said so."""
    from gateway.ops import cli_render
    rows = cli_render.link_rows({"state": state, "session": session})

    assert rows[0] == ("NPC link", shown)


def test_the_alerts_table_heads_each_column_with_what_it_holds() -> None:
    """Who ended an alert (a critical one's acknowledging supervisor, an ordinary one's
    closing operator or the gateway) stands under `closed by`; whether it is critical
    under `kind`: never `gateway` under a heading that says critical."""
    rows = [
        {"id": 3, "at": "t3", "code": "recon_mismatch", "detail": {}, "critical": True,
         "open": True, "acknowledged_by": None, "attention": True},
        {"id": 2, "at": "t2", "code": "recon_mismatch", "detail": {}, "critical": True,
         "open": False, "acknowledged_by": "sup1", "attention": False},
        {"id": 1, "at": "t1", "code": "recon_overdue", "detail": {}, "critical": False,
         "open": False, "acknowledged_by": "gateway", "attention": False},
    ]
    lines = cli_render.alerts({"alerts": rows, "total": 3, "shown": 3,
                               "truncated": False}).splitlines()
    head = lines[0].split()
    cells = {line.split()[0]: line.split() for line in lines[2:-2]}

    assert lines[-2:] == ["", "3 in all"]
    assert head == ["id", "at", "code", "kind", "now", "closed", "by", "detail"]
    assert cells["3"][3:5] == ["critical", "OPEN"] and cells["3"][5] == "{}"
    assert cells["2"][3:6] == ["critical", "history", "sup1"]
    assert cells["1"][3:5] == ["history", "gateway"]
