"""Running the gateway's tests on PostgreSQL.

`PAYGATE_TEST_DATABASE=postgresql .venv/bin/pytest ...` runs every gateway the tests start
on PostgreSQL instead of the SQLite file in its data folder, on the server of
PAYGATE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test):

- A gateway in this process reads its database through `Settings.db_url`, which gives
  each data folder a schema of its own (ledger.fixtures.SchemaPerFolder), as SQLite
  gives it a file: made when a gateway first asks, dropped when the test, the module or
  the session that asked ends. A module's gateway (a module-scoped fixture) so keeps its
  database across the module's tests, and a gateway started again on its folder finds
  its rows.
- A gateway process a test starts reads PAYGATE_DATABASE_URL: a schema of the test's
  own (`gateway_process_database_url`).
- A test that needs SQLite itself is marked `@pytest.mark.sqlite_only("why")` and is
  skipped in that mode with its reason.

Without the variable (or with `sqlite`) nothing changes: SQLite, as in CI.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported by pytest as a plugin (below), which must come first
    from ledger.fixtures import SchemaPerFolder

SQLITE, POSTGRESQL = "sqlite", "postgresql"
GATEWAY_DATABASE = os.environ.get("PAYGATE_TEST_DATABASE", SQLITE)
ON_POSTGRESQL = GATEWAY_DATABASE == POSTGRESQL

# The ledger's `database_url` fixture (SQLite, and PostgreSQL when reachable), for every
# test that asks for it by name.
pytest_plugins = ["ledger.fixtures"]


# The SIGINT handler the run began with (Python's own; ignored, when the run was started
# in the background of a non-interactive shell): a test that leaves another one
# installed takes Ctrl-C away from every later test in the process (an asyncio loop's
# signal handler outliving its loop swallows it: no KeyboardInterrupt is raised).
SIGINT_AT_START = signal.getsignal(signal.SIGINT)


def pytest_configure(config: pytest.Config) -> None:
    if GATEWAY_DATABASE not in (SQLITE, POSTGRESQL):
        raise pytest.UsageError(f"PAYGATE_TEST_DATABASE={GATEWAY_DATABASE!r}: expected "
                                f"{SQLITE!r} (the default) or {POSTGRESQL!r}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Iterator[None]:
    """After a test and the fixtures that end with it, SIGINT is handled as at the start:
    one left changed is put back, and the test that left it errors, naming it."""
    yield
    left = signal.getsignal(signal.SIGINT)
    if left is not SIGINT_AT_START:
        signal.signal(signal.SIGINT, SIGINT_AT_START)
        raise AssertionError(f"{item.nodeid} left SIGINT handled by {left!r}, not "
                             f"{SIGINT_AT_START!r} (put back)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `sqlite_only` states why; on PostgreSQL it is skipped with that."""
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is None:
            continue
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
        if not reason:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.sqlite_only needs the "
                                    "reason the test cannot run on PostgreSQL")
        if ON_POSTGRESQL:
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


@pytest.fixture(scope="session")
def gateway_schemas() -> Iterator[SchemaPerFolder | None]:
    """On PostgreSQL: the schemas of the gateways' data folders, which every gateway in
    this process reads through `Settings.db_url`. None on SQLite."""
    if not ON_POSTGRESQL:
        yield None
        return
    from gateway.config import Settings
    from ledger.fixtures import SchemaPerFolder, postgres_unreachable

    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"PAYGATE_TEST_DATABASE=postgresql: {reason}")
    schemas = SchemaPerFolder()
    try:
        with schemas.scope(), pytest.MonkeyPatch.context() as patch:
            patch.setattr(Settings, "db_url", property(
                lambda self: self.database_url or schemas.url_for(self.data_path)))
            yield schemas
    finally:
        schemas.close()


if ON_POSTGRESQL:
    # Autouse only in that mode: on SQLite the tests run without them.

    @pytest.fixture(scope="module", autouse=True)
    def module_gateway_schemas(gateway_schemas: SchemaPerFolder) -> Iterator[None]:
        """The schemas a module's fixtures make live until the module ends."""
        with gateway_schemas.scope():
            yield

    @pytest.fixture(autouse=True)
    def each_test_gateway_schemas(gateway_schemas: SchemaPerFolder,
                                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        """The schemas a test makes are dropped when it ends; the gateway processes it
        starts read a schema of its own from PAYGATE_DATABASE_URL."""
        with gateway_schemas.scope():
            monkeypatch.setenv("PAYGATE_DATABASE_URL", gateway_schemas.new_url())
            yield


@pytest.fixture
def gateway_process_database_url() -> str | None:
    """The database a gateway process this test starts opens when its settings name
    none: the test's PostgreSQL schema (PAYGATE_DATABASE_URL), or None for the SQLite
    file in its data folder."""
    return os.environ.get("PAYGATE_DATABASE_URL") if ON_POSTGRESQL else None
