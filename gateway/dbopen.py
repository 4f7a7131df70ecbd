"""A database the gateway cannot open at start, told in the product's error shape.

The store opens its database and installs its tables when the gateway starts
(gateway.store.Store.open). What the database's driver refuses then is the operator's to
mend, not a fault of the gateway: a PostgreSQL server that does not answer or refuses the
login, a database or a schema (the URL's `search_path` option) that does not exist, a
SQLite file that cannot be opened or is no database. Each becomes a refusal naming the
setting as the user set it, with the URL (its password masked) and the driver's own
words; the CLI ends with exit status 2. Anything else the driver raises stays an error.
"""

from __future__ import annotations

import re
import sqlite3
from urllib.parse import parse_qs, urlsplit, urlunsplit

from gateway.config import Settings, source_of
from gateway.errors import PaygateError, Problem

# SQLSTATE of a schema that does not exist (a table created with none to create it in).
INVALID_SCHEMA_NAME = "3F000"
# How much of the driver's message a refusal keeps.
MESSAGE_MAX = 300
_SEARCH_PATH = re.compile(r"search_path\s*=\s*([^\s]+)")


def shown_url(url: str) -> str:
    """`url` with its password, if any, written as `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def schema_named(url: str) -> str | None:
    """The schema a PostgreSQL URL's `options=-csearch_path=...` names, if any."""
    for option in parse_qs(urlsplit(url).query).get("options", []):
        found = _SEARCH_PATH.search(option)
        if found:
            return found.group(1)
    return None


def _is_postgres_error(exc: BaseException, kind: str) -> bool:
    return type(exc).__module__.startswith("psycopg") and any(
        base.__name__ == kind for base in type(exc).__mro__)


def refusal(settings: Settings, exc: BaseException) -> PaygateError | None:
    """The refusal to start for `exc`, raised while opening the database; None when
    `exc` is not a database the operator must mend."""
    url = settings.db_url
    path = source_of(settings, "database_url") if settings.database_url \
        else source_of(settings, "data_dir")
    said = " ".join(str(exc).split())[:MESSAGE_MAX]
    if getattr(exc, "sqlstate", None) == INVALID_SCHEMA_NAME:
        schema = schema_named(url)
        return PaygateError(Problem(
            "database_schema_missing", path, shown_url(url),
            "a schema that exists in the database: create it first "
            f"(CREATE SCHEMA {schema or 'name'}), then start the gateway",
            f"the schema {schema or 'of the search_path'} does not exist in the database "
            f"at {shown_url(url)}: {said}"), 503)
    # sqlite3.DatabaseError itself: a file that is no database (its subclasses other
    # than OperationalError are faults of a statement, not of the file).
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError \
            or _is_postgres_error(exc, "OperationalError"):
        expected = ("a PostgreSQL database that exists and answers (postgresql://USER@HOST"
                    ":PORT/DATABASE)" if url.startswith("postgres")
                    else "a SQLite file that can be created or opened (its folder exists "
                    "and is writable)")
        return PaygateError(Problem(
            "database_unreachable", path, shown_url(url), expected,
            f"the database at {shown_url(url)} could not be opened: {said}"), 503)
    return None

