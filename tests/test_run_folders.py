"""`paygate demo` and `paygate simulate-day` on the command line: which dates a day may
be simulated on, and what becomes of the data folder at the end of a run."""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import pytest

from gateway import demo, simday
from gateway.errors import Conflict, Problem

SMALL_DAY = ["--hvps-out", "2", "--hvps-in", "1", "--beps-out", "2", "--beps-in", "1"]


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The system's temporary directory, for the runs of one test; the commands set the
    logging up for themselves, and it is put back afterwards."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    yield root
    logger.handlers[:] = handlers
    logger.setLevel(level)


def last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


# A date without HVPS, and the next working day the refusal names. 2026-09-19 is a
# Saturday followed by a Sunday worked in place of National Day (调休).
NON_WORKING = [
    ("2026-10-01", "2026-10-08"),  # National Day
    ("2026-12-05", "2026-12-07"),  # an ordinary Saturday
    ("2026-09-19", "2026-09-20"),
]


@pytest.mark.parametrize("day, following", NON_WORKING)
def test_simulate_day_refuses_a_date_without_hvps(temp_root: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  day: str, following: str) -> None:
    """A weekend day or holiday is no business day of its own: the command refuses it,
    naming the next working day to simulate instead, and makes no data folder."""
    code = simday.simulate_day_command(["--date", day, *SMALL_DAY])
    out, err = capsys.readouterr()
    error = last_json(err)["errors"][0]

    assert code == 2 and out == ""
    assert (error["code"], error["path"], error["value"]) == \
        ("date_must_be_a_working_day", "--date", day)
    assert error["next_working_day"] == following and f"--date {following}" in \
        error["message"]
    assert list(temp_root.iterdir()) == []


def test_simulate_day_removes_its_temporary_folder_and_says_so(
        temp_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A successful day in a temporary folder leaves nothing behind; its last progress
    line names the folder that was removed and how to keep it."""
    code = simday.simulate_day_command(["--date", "2026-12-07", *SMALL_DAY])
    out, err = capsys.readouterr()

    assert code == 0 and last_json(out)["work_date"] == "2026-12-07"
    assert list(temp_root.iterdir()) == []
    assert "paygate-day-" in err and "removed" in err and "--keep" in err


class FakeDay:
    """Stands for DayRun: writes into its folder and ends as `outcome` says."""

    outcome: Any = 0

    def __init__(self, day: date, _seed: int, data_dir: Path, _volumes: Any) -> None:
        self.day, self.data_dir = day, data_dir

    async def run(self) -> tuple[int, dict[str, Any]]:
        (self.data_dir / "gateway").mkdir()
        (self.data_dir / "gateway" / "gateway.sqlite3").write_bytes(b"stand-in")
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome, {"work_date": self.day.isoformat()}


async def fake_demo(data_dir: Path, _transfers: int, _seed: int) -> tuple[int, dict]:
    return await FakeDay(date(2026, 12, 7), 0, data_dir, None).run()


def run_command(which: str, argv: list[str]) -> int:
    if which == "demo":
        return demo.demo_command(argv)
    return simday.simulate_day_command(["--date", "2026-12-07", *argv])


# (arguments, how the run ends) -> whether the folder remains, words of the last line.
ENDINGS = [
    ([], 0, False, "removed"),
    (["--keep"], 0, True, "as --keep asked"),
    ([], 1, True, "since the run failed"),
    ([], RuntimeError("the NPC went away"), True, "since the run failed"),
    (["--data", "{given}"], 0, True, "given with --data"),
    (["--data", "{given}"], 1, True, "given with --data"),
]


@pytest.mark.parametrize("which", ["demo", "simulate-day"])
@pytest.mark.parametrize("argv, outcome, remains, words", ENDINGS)
def test_the_data_folder_is_kept_only_when_asked_failed_or_given(
        temp_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], which: str, argv: list[str], outcome: Any,
        remains: bool, words: str) -> None:
    """A temporary folder is removed after a successful run, kept with --keep or when
    the run failed; a folder given with --data is always kept. The last progress line
    names the folder either way."""
    monkeypatch.setattr(simday, "DayRun", FakeDay)
    monkeypatch.setattr(demo, "run_demo", fake_demo)
    monkeypatch.setattr(FakeDay, "outcome", outcome)
    given = tmp_path / "given"
    argv = [a.format(given=given) for a in argv]
    if isinstance(outcome, Exception):
        with pytest.raises(RuntimeError):
            run_command(which, argv)
        code = None
    else:
        code = run_command(which, argv)
    said = [line for line in capsys.readouterr().err.splitlines() if words in line]
    left = [given] if "--data" in argv else list(temp_root.iterdir())

    assert code in (None, outcome)
    assert len(said) == 1
    if remains:
        assert len(left) == 1 and str(left[0]) in said[0]
        assert (left[0] / "gateway" / "gateway.sqlite3").exists()
    else:
        assert left == [] and "paygate-" in said[0]


@pytest.mark.parametrize("which", ["demo", "simulate-day"])
def test_a_folder_an_earlier_run_used_is_refused_before_anything_starts(
        temp_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], which: str) -> None:
    """The same --data twice: the second run is refused in the error shape of every
    command, on standard error (standard output, kept for the summary, gets nothing:
    `paygate demo > summary.json` does not catch the error), exit 2, saying what the
    folder holds and what to give instead, before a log line is written; the earlier
    run's data is as it was."""
    monkeypatch.setattr(simday, "DayRun", FakeDay)
    monkeypatch.setattr(demo, "run_demo", fake_demo)
    monkeypatch.setattr(FakeDay, "outcome", 0)
    given = tmp_path / "given"
    first = run_command(which, ["--data", str(given)])
    capsys.readouterr()
    logs = {p.name: p.stat().st_size for p in given.iterdir() if p.is_file()}
    second = run_command(which, ["--data", str(given)])
    out, err = capsys.readouterr()
    error = last_json(err)["errors"][0]

    assert (first, second) == (0, 2) and out == ""
    assert (error["code"], error["path"], error["value"]) == \
        ("data_folder_holds_earlier_run", "--data", str(given.resolve()))
    assert "gateway/" in error["message"] and "--keep" in error["message"]
    assert "Traceback" not in err
    assert {p.name: p.stat().st_size for p in given.iterdir() if p.is_file()} == logs
    assert (given / "gateway" / "gateway.sqlite3").read_bytes() == b"stand-in"


def test_an_empty_folder_given_with_data_is_taken(
        temp_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A folder made beforehand, or holding only empty run parts, is no earlier run."""
    monkeypatch.setattr(demo, "run_demo", fake_demo)
    monkeypatch.setattr(FakeDay, "outcome", 0)
    given = tmp_path / "given"
    (given / "npc").mkdir(parents=True)
    code = run_command("demo", ["--data", str(given)])

    assert code == 0 and last_json(capsys.readouterr().out)["work_date"] == "2026-12-07"


@pytest.mark.parametrize("which", ["demo", "simulate-day"])
def test_a_refusal_during_the_run_is_said_in_the_error_shape(
        temp_root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], which: str) -> None:
    """A refusal of the product's own during a run (the gateway refusing to start) ends
    it with the error on standard error and exit 1, no traceback, and no summary on
    standard output; the folder is kept, since the run failed."""
    refusal = Conflict(Problem("clock_before_stored_time", "clock", "2026-12-07T08:40:00",
                               "a time no more than 5 s before 2026-12-07T08:40:11"))
    monkeypatch.setattr(simday, "DayRun", FakeDay)
    monkeypatch.setattr(demo, "run_demo", fake_demo)
    monkeypatch.setattr(FakeDay, "outcome", refusal)
    code = run_command(which, [])
    out, err = capsys.readouterr()

    assert code == 1 and out == ""
    error = next(json.loads(line) for line in err.splitlines() if line.startswith("{"))
    assert error["errors"][0]["code"] == "clock_before_stored_time"
    assert "since the run failed" in err and len(list(temp_root.iterdir())) == 1


@pytest.mark.parametrize("given", ["2031-02-30", "2026-13-01", "7 Dec", ""])
def test_simulate_day_refuses_a_date_that_does_not_exist(
        temp_root: Path, capsys: pytest.CaptureFixture[str], given: str) -> None:
    """No usage line of the argument parser: the product's error, naming the value."""
    code = simday.simulate_day_command(["--date", given, *SMALL_DAY])
    out, err = capsys.readouterr()
    error = last_json(err)["errors"][0]

    assert code == 2 and out == ""
    assert (error["code"], error["path"], error["value"]) == ("date_malformed", "--date", given)
    assert "YYYY-MM-DD" in error["expected"]
    assert list(temp_root.iterdir()) == []


def test_simulate_day_twice_on_one_folder(temp_root: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The user's case, for real: a small day run twice with the same --data. The first
    balances; the second is refused as a folder of an earlier run, not with the
    gateway's clock check as a traceback."""
    given = tmp_path / "day"
    first = simday.simulate_day_command(["--date", "2026-12-07", "--data", str(given),
                                         *SMALL_DAY])
    summary = last_json(capsys.readouterr().out)
    second = simday.simulate_day_command(["--date", "2026-12-07", "--data", str(given),
                                          *SMALL_DAY])
    refused = last_json(capsys.readouterr().err)["errors"][0]

    assert first == 0 and summary["ledger"]["balanced"]
    assert second == 2 and refused["code"] == "data_folder_holds_earlier_run"
