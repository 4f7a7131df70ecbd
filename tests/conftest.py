"""Running the gateway's tests on PostgreSQL.

`PAYGATE_TEST_DATABASE=postgresql .venv/bin/pytest ...` runs every test that starts a
gateway on a PostgreSQL schema of its own (created before the test, dropped after it)
instead of the SQLite file in its data directory, on the server of
PAYGATE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test). Gateways
in this process read it through `Settings.db_url`; gateway processes the test starts
read PAYGATE_DATABASE_URL. Tests that open the SQLite file themselves are skipped in
that mode. Without the variable nothing changes: SQLite, as in CI.
"""

from __future__ import annotations

import os

import pytest

GATEWAY_DATABASE = os.environ.get("PAYGATE_TEST_DATABASE", "sqlite")

# The ledger's `database_url` fixture (SQLite, and PostgreSQL when reachable), for every
# test that asks for it by name.
pytest_plugins = ["ledger.fixtures"]


@pytest.fixture(autouse=GATEWAY_DATABASE == "postgresql")
def gateway_on_postgres(monkeypatch: pytest.MonkeyPatch) -> object:
    from gateway.config import Settings
    from ledger.fixtures import postgres_schema, postgres_unreachable

    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"PAYGATE_TEST_DATABASE=postgresql: {reason}")
    with postgres_schema("gateway_test") as url:
        monkeypatch.setattr(Settings, "db_url",
                            property(lambda self: self.database_url or url))
        monkeypatch.setenv("PAYGATE_DATABASE_URL", url)
        yield url
