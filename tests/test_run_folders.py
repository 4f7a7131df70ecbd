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
    error = last_json(capsys.readouterr().out)["errors"][0]

    assert code == 2
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
