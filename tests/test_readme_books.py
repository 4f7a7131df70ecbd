"""The README's example transfer is taken by the books the README has an operator
prepare: those of `serve --simulate` and those `gateway.fleet.prepare_books` makes for a
shared database (README, "Scale out", step 2) hold its payer account under the name it
gives, so it is not refused with payer_name_differs_from_account_holder."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.clock import SHANGHAI, ManualClock
from gateway.config import Settings
from gateway.fleet import prepare_books
from gateway.redisproc import free_port
from gateway.serve import open_demo_accounts
from ledger.fixtures import postgres_schema_or_skip

README = Path(__file__).resolve().parents[1] / "README.md"
# A working morning with HVPS open by the timetable: the transfer goes as it would.
MORNING = datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI)


def readme_transfer() -> dict[str, Any]:
    """The body of the README's example `curl ... /v1/transfers ... -d '{...}'`, which
    declares its JSON as such (the API refuses it otherwise, 415)."""
    found = re.search(r"/v1/transfers -H 'Idempotency-Key: k1' \\\n"
                      r"\s*-H 'Content-Type: application/json' -d '(\{.*?\})'",
                      README.read_text(encoding="utf-8"), re.S)
    assert found, "the README shows an example transfer"
    return json.loads(found.group(1))


async def submitted(tmp_path: Path, database_url: str, simulate: bool) -> tuple[int, Any]:
    gw = Gateway(Settings(data_dir=str(tmp_path / "gateway"), port=0,
                          database_url=database_url,
                          npc_url=f"http://127.0.0.1:{free_port()}/link/inbound"),
                 clock=ManualClock(MORNING))
    await gw.start(serve_http=False)
    try:
        if simulate:
            await open_demo_accounts(gw)
        return await gw.submit_transfer("core", "k1", readme_transfer())
    finally:
        await gw.stop()


def prepared(url: str) -> str:
    prepare_books(url, 3, 10**12, 1_000_000_00, "2026-12-07")
    return url


def test_serve_simulates_books_that_take_the_readme_example(tmp_path: Path) -> None:
    """`serve --simulate`'s demo accounts: the example is accepted."""
    status, answer = asyncio.run(submitted(tmp_path, "", simulate=True))

    assert status == 201, answer
    assert answer["payer"]["name"] == readme_transfer()["payer_name"]


def test_prepared_books_take_the_readme_example(tmp_path: Path) -> None:
    """The README's step 2, on a database of its own (SQLite here: prepare_books is
    written once for both): the example is accepted, not refused for its payer name."""
    url = prepared(f"sqlite:///{tmp_path / 'books.db'}")
    status, answer = asyncio.run(submitted(tmp_path, url, simulate=False))

    assert status == 201, answer
    assert answer["payer"]["account"] == readme_transfer()["payer_account"]


@pytest.mark.postgres
def test_prepared_postgres_books_take_the_readme_example(tmp_path: Path) -> None:
    """The same on PostgreSQL, as the README's steps have it."""
    with postgres_schema_or_skip("readme_books") as url:
        status, answer = asyncio.run(submitted(tmp_path, prepared(url), simulate=False))

    assert status == 201, answer


def test_the_readme_names_the_payer_as_a_folder_the_demo_kept_holds_it() -> None:
    """A folder `paygate demo --data` kept holds the example's payer account under the
    name the demo's examples give (the name the start-up line prints); the README says
    to write that one there, and it is that account's holder."""
    from gateway import demo

    text = " ".join(README.read_text(encoding="utf-8").split())
    found = re.search(r"on a folder `paygate demo --data` kept, write (\S+) instead", text)
    assert found, "the README says which payer name a folder the demo kept takes"
    assert found.group(1) == demo.example_payers()[readme_transfer()["payer_account"]]
