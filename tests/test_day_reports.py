"""The ledger's day reports (docs/ledger.md §9) are written into the data folder's
`reports/` when a ledger day closes, and `paygate ops day-reports DATE` gets them for any
closed date (GET /ops/api/day-reports/DATE); a date still open or malformed is refused."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import pytest

from gateway import dayend
from gateway.app import Gateway
from gateway.errors import PaygateError
from gateway.ops import cli, cli_render
from tests.test_day_end_missing import (notice, open_payer, pay, receive, run_on,
                                        until_all_sent)
from tests.e2e_support import until

STATEMENT, SHEETS = "daily-statement-2026-12-07.csv", "subject-day-sheets-2026-12-07.txt"


def test_the_cut_over_writes_the_closed_days_reports_and_ops_gets_them(tmp_path: Path) -> None:
    """Monday's cut-over closes its ledger day and writes its daily statement and subject
    day sheets into reports/; ops gets the same files for Monday, refuses Tuesday (still
    open) and a malformed date, and `--out` writes them into a folder of the operator's."""
    async def monday(gw: Gateway) -> None:
        await open_payer(gw)
        await pay(gw, "m1", "100.00")
        gw.clock.advance(60)
        await until_all_sent(gw)

    async def evening(gw: Gateway) -> dict[str, Any]:
        folder = gw.settings.data_path / "reports"
        await receive(gw, notice("40", "00", "2026-12-08"))
        await until(lambda: (folder / SHEETS).exists(), "the reports written")
        seen: dict[str, Any] = {"written": sorted(p.name for p in folder.iterdir()),
                                "on_disk": (folder / STATEMENT).read_text(encoding="utf-8")}
        seen["got"] = await gw.store.run(
            lambda tx: dayend.day_reports(tx, gw.ledger, "2026-12-07"))
        for text in ("2026-12-08", "2026-12-7", "２０２６-12-07", "2026-12-05"):
            try:
                await gw.store.run(lambda tx: dayend.day_reports(tx, gw.ledger, text))
            except PaygateError as exc:
                seen[text] = (exc.status, exc.problems[0].code)
                seen[f"{text} said"] = exc.problems[0].message
        return seen

    asyncio.run(run_on(tmp_path / "gw", "2026-12-07T09:00", monday))
    seen = asyncio.run(run_on(tmp_path / "gw", "2026-12-07T17:35", evening))
    files = {f["name"]: f["text"] for f in seen["got"]["files"]}
    rows = list(csv.reader(io.StringIO(files[STATEMENT])))
    out = tmp_path / "mine"
    written = cli.write_reports(seen["got"], out)

    assert seen["written"] == [STATEMENT, SHEETS]
    assert files[STATEMENT] == seen["on_disk"]
    assert rows[0] == ["日计表 daily statement", "2026-12-07"]
    assert rows[-1] == ["balanced", "true"]
    assert "科目日结单" in files[SHEETS]
    assert seen["2026-12-08"] == (409, "work_date_not_closed")
    assert "written when its ledger day closes" in seen["2026-12-08 said"]
    # A Saturday before the last closed work date was never a work date here: said so,
    # not sent to a day end that would refuse it as closed.
    assert seen["2026-12-05"] == (409, "work_date_not_closed")
    assert seen["2026-12-05 said"] == (
        "2026-12-05 is not a work date of these books: no ledger day of it was closed, and "
        "a day end closes only dates after the last closed work date, 2026-12-07")
    assert seen["2026-12-7"] == (422, "date_malformed")
    assert seen["２０２６-12-07"] == (422, "date_malformed")
    assert sorted(Path(p).name for p in written) == [STATEMENT, SHEETS]
    assert (out / STATEMENT).read_text(encoding="utf-8") == files[STATEMENT]
    assert cli_render.day_reports(dict(seen["got"], written=written)).startswith("written:")
    assert f"== {STATEMENT}" in cli_render.day_reports(seen["got"])


@pytest.mark.parametrize("name", ["../escape.csv", "/tmp/abs.csv"])
def test_the_command_writes_only_into_the_folder_asked(tmp_path: Path, name: str) -> None:
    """A file name the gateway answers is taken as a name only, never as a path."""
    written = cli.write_reports({"files": [{"name": name, "text": "x"}]}, tmp_path / "out")

    assert [Path(p).parent for p in written] == [tmp_path / "out"]
