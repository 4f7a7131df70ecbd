"""The suite's choice of database (tests/conftest.py): every gateway a test starts runs
on the database PAYGATE_TEST_DATABASE names, a module's gateway as well as a test's own,
each data folder on a database of its own, found again when a gateway starts again on
it; a gateway process a test starts is told the same (PAYGATE_DATABASE_URL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import Settings
from gateway.ops.testing import LoopThread
from tests.api_support import LiveGateway
from tests.conftest import GATEWAY_DATABASE, POSTGRESQL


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    g = LiveGateway(tmp_path_factory.mktemp("suite-database")).start()
    yield g
    g.stop()


def test_a_modules_gateway_runs_on_the_chosen_database(module_gateway: LiveGateway) -> None:
    """A gateway a module-scoped fixture starts, before any test's own fixtures."""
    assert module_gateway.gw.store.dialect == GATEWAY_DATABASE


def test_a_tests_gateway_runs_on_the_chosen_database(tmp_path: Path) -> None:
    g = LiveGateway(tmp_path).start()
    try:
        dialect = g.gw.store.dialect
    finally:
        g.stop()

    assert dialect == GATEWAY_DATABASE


def test_each_data_folder_has_a_database_of_its_own_found_again(tmp_path: Path) -> None:
    """As SQLite keeps one file in each folder: the same folder, the same database."""
    first = Settings(data_dir=str(tmp_path / "a")).db_url
    again = Settings(data_dir=str(tmp_path / "a")).db_url
    other = Settings(data_dir=str(tmp_path / "b")).db_url
    named = Settings(data_dir=str(tmp_path / "a"), database_url="sqlite:///x.db").db_url

    assert first == again != other
    assert first.startswith(f"{GATEWAY_DATABASE}:")
    assert named == "sqlite:///x.db"


def test_a_gateway_started_again_on_its_folder_finds_its_rows(tmp_path: Path) -> None:
    first = LiveGateway(tmp_path).start()
    try:
        payer, entries = first.payer, first.entries()
    finally:
        first.stop()
    loop = LoopThread()
    again = Gateway(Settings(data_dir=str(tmp_path), port=0,
                             npc_url="http://127.0.0.1:9/link/inbound"))
    loop.run(again.start(serve_http=False))
    try:
        accounts = loop.run(again.store.run(lambda tx: tx.query(
            "SELECT account_no FROM ledger_account WHERE account_no = ?", (payer,))))
        entries_again = loop.run(again.store.run(again.ledger.entry_count))
    finally:
        loop.run(again.stop())
        loop.close()

    assert entries > 0
    assert (accounts, entries_again) == ([(payer,)], entries)


def test_gateway_processes_are_told_the_chosen_database(
        gateway_process_database_url: str | None) -> None:
    if GATEWAY_DATABASE == POSTGRESQL:
        assert gateway_process_database_url == os.environ["PAYGATE_DATABASE_URL"]
        assert gateway_process_database_url.startswith("postgresql:")
    else:
        assert gateway_process_database_url is None
