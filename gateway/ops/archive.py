"""The message archive as operators search it: every message we sent or received, as
the exact bytes on the wire and as the codec reads them.

The parsed view is the codec's own reading (`gateway.messages.codec.decode`) without
signature verification: the signature was checked when the message crossed the link,
and the archive shows what was sent or received, including what was refused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from gateway.errors import NotFound, PaygateError, Problem, ProblemList
from gateway.messages import codec

ARCHIVE_COLUMNS = ("id", "direction", "mesg_type", "mesg_id", "sender", "receiver", "at",
                   "payment_id")
SEARCH_FIELDS = ("id", "party", "type", "date", "direction")
LIST_MAX = 200
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_search(query: dict[str, str], problems: list[Problem] | None = None
                 ) -> dict[str, str]:
    """Search fields from a query string (its names already checked against
    SEARCH_FIELDS, their `problems` given); all problems at once."""
    p = ProblemList(list(problems or ()))
    out = {}
    for name, value in query.items():
        if value.strip():
            out[name] = value.strip()[:64]
    if "date" in out and not _DATE.fullmatch(out["date"]):
        p.add("search_date_malformed", "/date", out["date"], "YYYY-MM-DD")
    if out.get("direction") not in (None, "in", "out"):
        p.add("direction_unknown", "/direction", out["direction"], "in or out")
    p.raise_if_any()
    return out


def search(tx: Any, f: dict[str, str], limit: int = 50) -> list[dict[str, Any]]:
    where, params = [], []
    if "id" in f:
        where.append("(mesg_id = ? OR payment_id = ?)")
        params += [f["id"], f["id"]]
    if "party" in f:
        where.append("(sender = ? OR receiver = ?)")
        params += [f["party"], f["party"]]
    if "type" in f:
        where.append("mesg_type LIKE ?")
        params.append(f["type"].replace("%", "").replace("_", "") + "%")
    if "date" in f:
        where.append("at LIKE ?")
        params.append(f["date"] + "%")
    if "direction" in f:
        where.append("direction = ?")
        params.append(f["direction"])
    sql = f"SELECT {', '.join(ARCHIVE_COLUMNS)} FROM archive"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = tx.query(sql + " ORDER BY id DESC LIMIT ?", (*params, min(limit, LIST_MAX)))
    return [dict(zip(ARCHIVE_COLUMNS, r)) for r in rows]


def load(tx: Any, archive_id: int) -> tuple[dict[str, Any], bytes]:
    row = tx.query_one(f"SELECT {', '.join(ARCHIVE_COLUMNS)}, envelope FROM archive "
                       "WHERE id = ?", (archive_id,))
    if row is None:
        raise NotFound(Problem("message_not_found", "/id", archive_id,
                               "the id of an archived message"))
    return dict(zip(ARCHIVE_COLUMNS, row[:-1])), bytes(row[-1])


def detail(row: dict[str, Any], raw: bytes) -> dict[str, Any]:
    """The archived row with its raw envelope text and the codec's reading of it."""
    return dict(row, raw=raw.decode("utf-8", "replace"), parsed=parsed_view(raw))


def parsed_view(raw: bytes) -> dict[str, Any]:
    try:
        decoded = codec.decode(raw, bare_ok=True)
    except PaygateError as exc:
        return {"errors": exc.to_dict()["errors"]}
    view: dict[str, Any] = {"type": decoded.mtype.code,
                            "problems": [p.to_dict() for p in decoded.problems]}
    if decoded.envelope is not None:
        view["header"] = dataclasses.asdict(decoded.header)
    if decoded.obj is not None:
        view["fields"] = _jsonable(decoded.obj)
    return view


def _jsonable(obj: Any) -> Any:
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))
