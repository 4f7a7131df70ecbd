"""One Redis serves the gateways of one database (README, "Scale out").

The Redis streams carry ids of the database's rows (outbox, inbox, payments), and the
link session kept there is the bank's one session with the NPC: a gateway whose Redis
also serves gateways on another database would take their entries for rows of its own
database, and log in to the NPC and number messages as though it were their bank. So the
database gets an identity of its own, a random id written once in its `deployment`
table (by the first gateway that opens it; every later start, and every other gateway
on the same database, reads the same), and a gateway given a Redis (`redis_url`) records
that id there at start (`DATABASE_KEY`) unless one is recorded already; a Redis that
holds another database's id is a refusal to start (`redis_used_by_other_database`),
naming both databases. A gateway with its embedded Redis (no `redis_url`) has a Redis of
its own in its data folder and is not checked.
"""

from __future__ import annotations

import json
import socket
import uuid
from datetime import datetime
from typing import Any

from gateway import keys
from gateway.dbopen import shown_url
from gateway.errors import PaygateError, Problem

TABLES = ["""CREATE TABLE IF NOT EXISTS deployment (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    database_id TEXT NOT NULL,
    created_at TEXT NOT NULL)"""]
# The Redis key holding the identity of the database whose gateways use that Redis.
DATABASE_KEY = f"{keys.PREFIX}:database"


def database_id(tx: Any, now: datetime) -> str:
    """The database's identity: the one written in it, or a new one written now."""
    tx.execute("INSERT INTO deployment (id, database_id, created_at) VALUES (1, ?, ?) "
               "ON CONFLICT (id) DO NOTHING", (uuid.uuid4().hex, now.isoformat()))
    return tx.query_one("SELECT database_id FROM deployment WHERE id = 1", ())[0]


def described(db_url: str, dialect: str) -> str:
    """The database in words for a refusal: a PostgreSQL URL with its password masked
    (its schema in the URL's options), or a SQLite file and the machine it is on."""
    if dialect == "postgresql":
        return shown_url(db_url)
    return f"{db_url} on {socket.gethostname()}"


async def claim_redis(redis: Any, database: str, about: str, redis_path: str,
                      redis_url: str) -> None:
    """Record `database` (its identity; `about` in words) as the database whose
    gateways use `redis`, unless one is recorded; refuse to start if that is another."""
    mine = json.dumps({"database_id": database, "database": about}, ensure_ascii=False)
    await redis.set(DATABASE_KEY, mine, nx=True)
    held = await redis.get(DATABASE_KEY)
    if held is None or held == mine:
        return
    try:
        theirs = json.loads(held)
    except ValueError:
        theirs = None
    if isinstance(theirs, dict) and theirs.get("database_id") == database:
        return  # the same database, described otherwise (a password changed, say)
    if isinstance(theirs, dict):
        other = f"{theirs.get('database', 'unknown')} (id {theirs.get('database_id')})"
    else:
        other = f"unknown ({DATABASE_KEY} holds {held[:80]!r})"
    raise PaygateError(Problem(
        "redis_used_by_other_database", redis_path, shown_url(redis_url),
        "a Redis of this database's gateways alone: another Redis (or a Redis database "
        "number), or none set for the embedded one",
        f"the Redis at {shown_url(redis_url)} is used by the gateways of the database "
        f"{other}; this gateway's database is {about} (id {database}). Its streams and "
        "link session are theirs: give this gateway its own Redis, or, when that "
        f"database's gateways are gone for good, delete the key {DATABASE_KEY} there"),
        409)
