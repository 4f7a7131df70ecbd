"""`paygate route`: one JSON object on standard output and an exit code."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from gateway.clock import SHANGHAI, ManualClock
from routing.cli import route_command

CLOCK = ManualClock(datetime(2026, 12, 7, 10, 0, tzinfo=SHANGHAI))
PAIR = ["--payer-bank", "999100000027", "--payee-bank", "888200000023"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = route_command(argv, clock=CLOCK)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return code, json.loads(out)


@pytest.mark.parametrize("argv, channel, action, rule", [
    (PAIR + ["--amount", "50000.00"], "beps", "send", "beps_default"),
    (PAIR + ["--amount", "50000.01"], "hvps", "send", "hvps_over_beps_limit"),
    (PAIR + ["--amount", "0.01", "--urgency", "urgent"], "hvps", "send", "hvps_urgency"),
    (PAIR + ["--amount", "50000.01", "--hvps-open", "no"], "hvps", "queue",
     "hvps_over_beps_limit"),
    (PAIR + ["--amount", "1.00", "--urgency", "urgent", "--hvps-open", "no",
             "--when-closed", "beps"], "beps", "send", "hvps_urgency"),
    (["--payer-bank", "999100000027", "--payee-bank", "999100000035",
      "--amount", "900000.00"], "internal", "send", "internal"),
])
def test_route_prints_the_decision_and_its_explanation(argv: list[str], channel: str,
                                                       action: str, rule: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """A routable payment prints its decision with the explanation and exits 0."""
    code, out = run(argv, capsys)

    assert code == 0
    assert (out["channel"], out["action"], out["rule"]) == (channel, action, rule)
    assert out["inputs"]["on_date"] == "2026-12-07"


@pytest.mark.parametrize("argv, exit_code, codes", [
    (PAIR + ["--amount", "50000.001"], 1, ["amount_must_have_at_most_two_decimals"]),
    (["--payer-bank", "９99100000027", "--payee-bank", "888200000024", "--amount", "-1"], 1,
     ["amount_must_be_positive", "bank_code_must_be_12_ascii_digits",
      "bank_code_unknown"]),
    (PAIR + ["--amount", "1.00", "--urgency", "urgent", "--hvps-open", "no",
             "--when-closed", "refuse", "--next-opening", "2026-12-08T08:30"], 1,
     ["hvps_closed"]),
    (PAIR + ["--amount", "1.00", "--hvps-open", "maybe"], 2, ["route_hvps_open_invalid"]),
    (PAIR + ["--amount", "1.00", "--date", "7/12/2026"], 2, ["route_date_invalid"]),
    (["--amount", "1.00"], 2, ["route_argument_missing", "route_argument_missing"]),
    (["--colour", "red"], 2, ["route_arguments_invalid"]),
    (["--json", "/nonexistent/request.json"], 2, ["route_json_unreadable"]),
])
def test_route_prints_refusals_in_the_error_shape(argv: list[str], exit_code: int,
                                                  codes: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Refusals exit 1 and misuse exits 2, both printing {"errors": [...]}."""
    code, out = run(argv, capsys)

    assert code == exit_code
    assert [error["code"] for error in out["errors"]] == codes


def test_route_reads_a_request_file_and_flags_win(tmp_path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A JSON request file supplies the fields; flags given on the command line win."""
    path = tmp_path / "request.json"
    path.write_text(json.dumps({
        "payer_bank": "999100000027", "payee_bank": "888200000023", "amount": "10.00",
        "business_type": "A200", "customer": False, "date": "2026-12-09",
    }), encoding="utf-8")

    code, out = run(["--json", str(path), "--amount", "20.00"], capsys)

    assert code == 0
    assert (out["message_type"], out["inputs"]["amount_fen"], out["inputs"]["on_date"]) == (
        "hvps.112.001.01", 2000, "2026-12-09")


def test_route_marks_institution_transfers(capsys: pytest.CaptureFixture[str]) -> None:
    """--institution routes a transfer between institutions to the FI message types."""
    code, out = run(PAIR + ["--amount", "10.00", "--institution"], capsys)

    assert (code, out["message_type"]) == (0, "beps.122.001.01")
