"""A setting refused is named as the user set it: the environment variable, the
configuration file's key (with the file), or the command's flag; never by another name
(the timetable's `open_at` for `hvps_open_at`)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest

from gateway import config
from gateway.errors import PaygateError

# Each checked setting with a value its check refuses (given as text, as a variable is).
BAD = {
    "when_closed_default": "later", "bank_code": "12345", "port": "70000",
    "log_level": "LOUD", "clock": "yesterday", "link_batch_max": "100000",
    "link_batch_bytes_max": "999999999999", **{name: "-1" for name in config._LEAST},
    "hvps_open_at": "8:30am", "hvps_cutoff_at": "25:00",
    "hvps_clearing_window_start_at": "x", "hvps_clearing_window_end_at": "x",
    "hvps_day_end_at": "x", "hvps_prepare_at": "x", "hvps_evening_open_at": "x",
    "beps_netting_interval_min": "7", "queries_morning_cutoff_at": "23:00",
    "queries_auto_answer_types": '["QT09"]', "calendar_file": "/nonexistent/calendar.toml",
    "unverified_senders": "not json", "api_keys": "{", "api_balance_accounts": '["*"]', "branch_codes": "[",
    "queries_auto_answer_keywords": "[", "queries_operator_keywords": "[",
    "signature_algorithm": "rsa-sha1", "operators_file": "/nonexistent/operators.toml",
    "screening_file": "/nonexistent/screening.toml", "queries_auto_answer": "maybe",
    "hvps_evening_open": "maybe",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PAYGATE_") or n == "REDIS_URL"]:
        monkeypatch.delenv(name)


def refused_paths(path: str | None = None, **kwargs) -> list[str]:
    with pytest.raises(PaygateError) as refused:
        config.load(path, **kwargs)
    return [p.path for p in refused.value.problems]


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_variable_is_named_as_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                 name: str) -> None:
    monkeypatch.setenv(f"PAYGATE_{name.upper()}", BAD[name])

    assert refused_paths() == [f"PAYGATE_{name.upper()}"]


@pytest.mark.parametrize("name", ["hvps_open_at", "port", "queries_morning_cutoff_at",
                                  "calendar_file", "beps_netting_interval_min"])
def test_a_bad_key_of_the_file_is_named_as_that_key_of_that_file(tmp_path: Path,
                                                                 name: str) -> None:
    path = tmp_path / "paygate.toml"
    path.write_text(f'{name} = "{BAD[name]}"\n', encoding="utf-8")

    assert refused_paths(str(path)) == [f"{name} in {path}"]


def test_a_flag_is_named_as_the_flag_and_wins_over_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYGATE_PORT", "8081")

    assert refused_paths(overrides={"port": 70000}, flags={"port": "--port"}) == ["--port"]


def test_every_checked_setting_is_in_the_table() -> None:
    """Every setting but free text is checked somewhere and listed above: a new one
    checked without a name for its source would show here."""
    free_text = {"data_dir", "host", "npc_url", "redis_url", "database_url", "keys_dir",
                 "webhook_url", "webhook_secret"}
    assert {f.name for f in fields(config.Settings)} - free_text <= set(BAD)


def test_settings_made_in_code_keep_their_plain_names() -> None:
    assert config.source_of(config.Settings(), "hvps_open_at") == "hvps_open_at"


@pytest.mark.parametrize("margin, check, refused", [
    (0, 30.0, True), (59.9, 30.0, True), (60.0, 30.0, False), (3600.0, 30.0, False)])
def test_a_screened_debits_margin_leaves_the_deadline_sweep_time(
        margin: float, check: float, refused: bool) -> None:
    """An undecided screened debit is refused `beps_debit_review_margin_s` before its
    receipt deadline by a sweep run every `beps_deadline_check_s`: a margin under two
    of them would let its receipt leave too late, and is refused at load."""
    values = {"beps_debit_review_margin_s": margin, "beps_deadline_check_s": check}
    if not refused:
        assert config.load(None, values).beps_debit_review_margin_s == margin
        return
    with pytest.raises(PaygateError) as exc:
        config.load(None, values)
    assert [(p.code, p.path, p.value) for p in exc.value.problems] == [
        ("setting_malformed", "beps_debit_review_margin_s", margin)]


def test_the_problems_of_every_stage_are_told_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt variable, a misspelt key, a value of the wrong type and values out of
    range (one checked here, one by the timetable) are refused in one answer, in that
    order, each under its own code; the value of the wrong type is not range-checked."""
    path = tmp_path / "paygate.toml"
    path.write_text('port = 70000\nhvps_open_at = "25:00"\nlog_levl = "DEBUG"\n'
                    'queue_depth_max = "many"\n', encoding="utf-8")
    monkeypatch.setenv("PAYGATE_POTR", "1")

    with pytest.raises(PaygateError) as refused:
        config.load(str(path))

    assert [(p.code, p.path) for p in refused.value.problems] == [
        ("setting_unknown", "PAYGATE_POTR"),
        ("setting_unknown", f"log_levl in {path}"),
        ("setting_malformed", f"queue_depth_max in {path}"),
        ("setting_malformed", f"port in {path}"),
        ("timetable_time_must_be_hh_mm", f"hvps_open_at in {path}")]
