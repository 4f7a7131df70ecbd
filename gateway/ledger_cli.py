"""`paygate ledger verify`: the auditors' re-check of the whole book (ledger.audit).

It opens the gateway's database (the settings' `database_url`, else the SQLite file in
the data folder), reads every line of the history and every figure day end stored, and
prints one JSON object: entries, closed days, `clean` and the findings. Exit status 0
when clean, 1 when a figure differs, 2 when it cannot run. It writes nothing; in SQLite
it holds the write lock while it reads, so run it on a backup copy or out of hours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway import logs


def ledger_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="paygate ledger")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="re-check every line of the history and "
                                 "every figure day end stored")
    verify.add_argument("--config", help="TOML settings file")
    verify.add_argument("--database", help="database URL, or the path of a SQLite file "
                        "(default: the settings')")
    args = parser.parse_args(argv)
    from gateway import config
    from gateway.errors import PaygateError
    try:
        settings = config.load_for_command(args.config)
    except PaygateError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False))
        return 2
    logs.configure(settings.log_level)
    if args.database:
        result = verify_books(*database_named(args.database))
    elif settings.database_url:
        result = verify_books(settings.database_url)
    else:
        result = verify_books(*local_database(settings.data_path))
    print(json.dumps(result, ensure_ascii=False))
    if "errors" in result:
        return 2
    return 0 if result["clean"] else 1


def local_database(data: Path) -> tuple[str, list[Path]]:
    """The SQLite database of the data folder `data`, found as the gateway keeps it:
    `gateway.db` in the folder itself (`serve`) or in its `gateway/` folder (a run with
    the simulated NPC beside it: `serve --simulate`, `demo`); its URL, the first that
    exists (the first place when neither does), and the places looked at."""
    from gateway.config import DB_FILE, SIMULATED_GATEWAY_FOLDER
    places = [data / DB_FILE, data / SIMULATED_GATEWAY_FOLDER / DB_FILE]
    found = next((place for place in places if place.is_file()), places[0])
    return f"sqlite:///{found}", places


def database_named(given: str) -> tuple[str, list[Path]]:
    """The URL of --database `given`: a URL as it is, a plain path as the SQLite file it
    names; a URL of another kind is refused (`verify_books` answers it with the error)."""
    if "://" in given:
        return given, []
    path = Path(given).resolve()
    return f"sqlite:///{path}", [path]


def verify_books(url: str, looked_at: list[Path] | None = None) -> dict[str, Any]:
    """The audit of the books at `url` as a JSON-ready object; a book of another schema
    version is refused, not upgraded (the gateway upgrades it when it starts). A file
    not found is refused naming the places `looked_at` (the data folder's), or `url`."""
    import ledger
    from gateway.dialect import table_columns
    from ledger.audit import audit_book
    from ledger.db import URL_EXPECTED, URL_SCHEMES, sqlite_path
    from ledger.schema import SCHEMA_VERSION

    if not url.startswith(URL_SCHEMES):
        return {"errors": [{"code": "database_url_unsupported", "path": "--database",
                            "value": url, "expected": f"{URL_EXPECTED}, or a SQLite file's "
                                                      "path",
                            "message": f"paygate ledger verify cannot open {url}"}]}

    if url.startswith("sqlite:///") and not Path(sqlite_path(url)).is_file():
        places = " nor ".join(str(place) for place in looked_at or [sqlite_path(url)])
        return {"errors": [{"code": "database_not_found", "value": url,
                            "expected": "the gateway's database file",
                            "message": f"no gateway database at {places}; name the data "
                                       "folder the gateway ran on (PAYGATE_DATA_DIR, or "
                                       "--config data_dir), or give --database URL"}]}
    db = ledger.connect(url)
    try:
        with db.transaction() as tx:
            if not table_columns(tx, "ledger_meta"):
                return {"errors": [{"code": "database_not_found", "value": url,
                                    "expected": "a database holding the ledger's tables"}]}
            row = tx.query_one("SELECT value FROM ledger_meta WHERE key = 'schema_version'")
            if row is None or row[0] != SCHEMA_VERSION:
                return {"errors": [{"code": "ledger_schema_version_differs",
                                    "value": row[0] if row else None,
                                    "expected": f"schema version {SCHEMA_VERSION}: start "
                                                "the gateway once to upgrade the books"}]}
            return audit_book(tx).to_dict()
    finally:
        db.close()
