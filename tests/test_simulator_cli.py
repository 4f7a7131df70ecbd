"""`paygate simulate npc`: settings from the command line and the TOML file, and the
process contract (one JSON line when listening, clean stop on SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway.errors import ValidationFailed
from simulators import settings as settings_mod
from simulators.npc import main
from simulators.settings import DEFAULT_BALANCES_FEN, OUR_BANK

REPO = Path(__file__).resolve().parents[1]
GATEWAY_URL = "http://127.0.0.1:9/link/inbound"

# (case, argv, problem codes in order)
BAD_ARGV = [
    ("bank without a URL", ["--bank", OUR_BANK], ["option_must_be_code_equals_value"]),
    ("bank code too short", ["--bank", "9991=http://x"], ["bank_code_must_be_12_ascii_digits"]),
    ("balance in yuan", ["--balance", f"{OUR_BANK}=10.50"], ["balance_must_be_whole_fen"]),
    ("external bank also a peer", ["--bank", "888200000015=http://x"],
     ["participant_must_be_either_external_or_simulated"]),
    ("two problems at once", ["--bank", "1=http://x", "--balance", f"{OUR_BANK}=-1"],
     ["bank_code_must_be_12_ascii_digits", "balance_must_be_whole_fen"]),
    ("bank URL with a port not a number", ["--bank", f"{OUR_BANK}=http://127.0.0.1:80x/in"],
     ["setting_malformed"]),
    ("second URL of a bank malformed",
     ["--bank", f"{OUR_BANK}=http://127.0.0.1:8081/in, 127.0.0.1:8082/in"],
     ["setting_malformed"]),
    ("no envelope in a POST", ["--link-batch-max", "0"], ["delivery_batch_out_of_range"]),
    ("more envelopes than an inbound takes", ["--link-batch-max", "1025"],
     ["delivery_batch_out_of_range"]),
]


@pytest.mark.parametrize("case, argv, codes", BAD_ARGV, ids=[c[0] for c in BAD_ARGV])
def test_bad_options_are_refused_by_rule(case: str, argv: list[str], codes: list[str]) -> None:
    """Every broken option is reported with the rule it breaks."""
    with pytest.raises(ValidationFailed) as caught:
        settings_mod.load(argv)

    assert [p.code for p in caught.value.problems] == codes


def test_command_line_overrides_the_config_file(tmp_path: Path) -> None:
    """The [simulator] table applies first, the command line wins, defaults fill in."""
    config = tmp_path / "paygate.toml"
    config.write_text(f"""
[simulator]
seed = 5
follow_clock = true
banks = {{ "{OUR_BANK}" = "http://127.0.0.1:1/link/inbound" }}
balances_fen = {{ "888200000015" = 42 }}
delivery = {{ attempts_max = 2 }}
""", encoding="utf-8")

    s = settings_mod.load(["--config", str(config), "--seed", "9", "--bank",
                           f"{OUR_BANK}={GATEWAY_URL}", "--balance", f"{OUR_BANK}=7",
                           "--link-batch-max", "1"])

    assert (s.seed, s.follow_clock, s.delivery.attempts_max) == (9, True, 2)
    assert (s.delivery.batch_max, s.delivery.batch_bytes_max) == (1, 1_048_576)
    assert s.banks == {OUR_BANK: GATEWAY_URL}
    assert s.balances_fen == {**DEFAULT_BALANCES_FEN, "888200000015": 42, OUR_BANK: 7}
    assert s.participants == {OUR_BANK, "888200000015", "777300000011"}


# (case, [simulator] table lines, problem codes)
BAD_TABLES = [
    ("misspelt key", 'seeds = 1', ["config_key_must_be_known"]),
    ("port as text", 'port = "80"', ["config_value_has_wrong_type"]),
    ("peer without branch", 'peers = [{ code = "888200000015", name = "x" }]',
     ["peer_must_name_code_branch_and_name"]),
    ("unknown delivery setting", 'delivery = { attempts = 2 }', ["delivery_setting_malformed"]),
    ("batch bytes past an inbound's bound", 'delivery = { batch_bytes_max = 8388609 }',
     ["delivery_batch_out_of_range"]),
    ("batch bound not whole", 'delivery = { batch_max = 2.5 }', ["delivery_batch_out_of_range"]),
    ("timetable time out of range", 'timetable = { open_at = "25:00" }',
     ["timetable_time_must_be_hh_mm"]),
]


@pytest.mark.parametrize("case, line, codes", BAD_TABLES, ids=[c[0] for c in BAD_TABLES])
def test_bad_config_table_is_refused_by_rule(tmp_path: Path, case: str, line: str,
                                             codes: list[str]) -> None:
    """A wrong key, type or value in the [simulator] table is an error, never ignored."""
    config = tmp_path / "paygate.toml"
    config.write_text(f"[simulator]\n{line}\n", encoding="utf-8")

    with pytest.raises(ValidationFailed) as caught:
        settings_mod.load(["--config", str(config)])

    assert [p.code for p in caught.value.problems] == codes


def test_main_reports_bad_options_without_starting() -> None:
    """main() answers refused settings with exit status 2 and starts nothing."""
    assert main(["--balance", "x"]) == 2


def test_process_prints_its_url_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """The process prints {"npc": url} once listening, serves, and exits 0 on SIGTERM."""
    argv = [sys.executable, "-m", "simulators.npc", "--host", "127.0.0.1", "--port", "0",
            "--data", str(tmp_path / "npc"), "--keys", str(tmp_path / "keys"),
            "--bank", f"{OUR_BANK}={GATEWAY_URL}", "--clock", "2026-12-07T09:00:00"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        with urllib.request.urlopen(first["npc"] + "/sim/stats") as response:
            stats = json.load(response)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=30)

    assert first["npc"].startswith("http://127.0.0.1:")
    assert (stats["phase"], stats["work_date"]) == ("10", "2026-12-07")
    assert stats["now"].startswith("2026-12-07T09:")
    assert proc.returncode == 0
    assert "event=stopped" in errors
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "0000.key.pem", "0000.pub.pem", "777300000011.key.pem", "777300000011.pub.pem",
        "888200000015.key.pem", "888200000015.pub.pem"]
