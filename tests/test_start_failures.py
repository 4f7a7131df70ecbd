"""`paygate serve` that cannot start names why, in the error shape, and ends with status
2: no traceback for a data directory it cannot make or a Redis that does not answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from gateway.redisproc import free_port


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--port", "0"],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("fault, env, code", [
    ("data directory under /proc", {"PAYGATE_DATA_DIR": "/proc/nope"}, "data_dir_unusable"),
    ("Redis on a closed loopback port", {"PAYGATE_REDIS_URL": "redis://127.0.0.1:{port}/0"},
     "redis_unreachable"),
])
def test_a_start_that_fails_is_a_named_error_with_status_2(tmp_path, fault, env, code):
    """Each fault is printed as its code, path and value, and serve exits 2."""
    closed = free_port()  # bound and released: nothing listens there
    env = {"PAYGATE_DATA_DIR": str(tmp_path / "data"),
           **{k: v.format(port=closed) for k, v in env.items()}}

    run = _serve(env)

    assert run.returncode == 2, (fault, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    error = json.loads(run.stdout.strip().splitlines()[-1])["errors"][0]
    assert error["code"] == code


def _refusal(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    errors = json.loads(run.stdout.strip().splitlines()[-1])["errors"]
    assert len(errors) == 1, errors
    return errors[0]


def test_a_sqlite_file_that_cannot_be_opened_is_a_named_refusal(tmp_path):
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}"

    error = _refusal(_serve({"PAYGATE_DATA_DIR": str(tmp_path / "data"),
                             "PAYGATE_DATABASE_URL": url}))

    assert (error["code"], error["path"], error["value"]) == (
        "database_unreachable", "PAYGATE_DATABASE_URL", url)
    assert "unable to open database file" in error["message"]


def _postgres_url(database: str, options: str = "") -> str:
    from ledger.fixtures import POSTGRES_URL, postgres_unreachable

    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    parts = urlsplit(POSTGRES_URL)
    netloc = parts.netloc if "@" in parts.netloc else f"postgres@{parts.netloc}"
    user, host = netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':')[0]}:hunter2secret@{host}",
                                     path=f"/{database}", query=options))


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_is_a_named_refusal(tmp_path):
    """The password of the URL is never shown (the local server trusts without one)."""
    missing = f"paygate_missing_{uuid.uuid4().hex[:12]}"
    url = _postgres_url(missing)

    error = _refusal(_serve({"PAYGATE_DATA_DIR": str(tmp_path / "data"),
                             "PAYGATE_DATABASE_URL": url}))

    assert (error["code"], error["path"]) == ("database_unreachable", "PAYGATE_DATABASE_URL")
    assert "hunter2secret" not in json.dumps(error)
    assert error["value"] == url.replace("hunter2secret", "***")
    assert missing in error["message"]


@pytest.mark.postgres
def test_a_postgresql_schema_that_does_not_exist_is_a_named_refusal(tmp_path):
    from ledger.fixtures import POSTGRES_URL

    schema = f"paygate_missing_{uuid.uuid4().hex[:12]}"
    url = _postgres_url(urlsplit(POSTGRES_URL).path.lstrip("/"),
                        f"options=-csearch_path%3D{schema}")

    error = _refusal(_serve({"PAYGATE_DATA_DIR": str(tmp_path / "data"),
                             "PAYGATE_DATABASE_URL": url}))

    assert (error["code"], error["path"]) == ("database_schema_missing",
                                              "PAYGATE_DATABASE_URL")
    assert f"CREATE SCHEMA {schema}" in error["expected"]
    assert "hunter2secret" not in json.dumps(error)
