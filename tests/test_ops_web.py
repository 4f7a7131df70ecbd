"""The console over HTTP: sign-in, sessions, the JSON routes, live events and /metrics."""

from __future__ import annotations

import base64
import itertools
import json
import re
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import keys, outbound
from gateway.clock import SHANGHAI
from gateway.ops import attention, sessions, snapshot, views
from gateway.ops.operators import hash_password
from gateway.ops.testing import LoopThread, OpsRig
from ledger.db import connect
from tests.test_error_codes import listed_codes

_keys = itertools.count(1)
PASSWORDS = {"op1": "op1-pass", "sup1": "sup1-pass", "lock1": "lock1-pass"}
LEVELS = {"op1": "00", "sup1": "20", "lock1": "00"}


def operators_file(directory: Path) -> Path:
    path = directory / "operators.toml"
    path.write_text("".join(
        f'[[operator]]\nuser = "{u}"\nlevel = "{LEVELS[u]}"\npassword = "{hash_password(p)}"\n'
        for u, p in PASSWORDS.items()), encoding="utf-8")
    return path


class Web:
    """The shared gateway; `call` sends one HTTP request from a fresh or given session."""

    def __init__(self, loop: LoopThread, rig: OpsRig) -> None:
        self.loop, self.rig, self.gw, self.url = loop, rig, rig.gw, rig.url

    def run(self, coro: Any) -> Any:
        return self.loop.run(coro)

    def session(self, user: str | None = None) -> aiohttp.ClientSession:
        async def make() -> aiohttp.ClientSession:
            s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            if user:
                async with s.post(self.url + "/ops/login",
                                  json={"user": user, "password": PASSWORDS[user]}) as r:
                    assert r.status == 200, await r.text()
            return s
        return self.run(make())

    def call(self, method: str, path: str, session: aiohttp.ClientSession | None = None,
             basic: tuple[str, str] | None = None, **kwargs: Any) -> tuple[int, Any, Any]:
        async def go() -> tuple[int, Any, Any]:
            s = session or aiohttp.ClientSession()
            headers = kwargs.pop("headers", {})
            if basic:
                token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            try:
                async with s.request(method, self.url + path, headers=headers, **kwargs) as r:
                    text = await r.text()
                    body = json.loads(text) if r.content_type == "application/json" else text
                    return r.status, body, r.headers
            finally:
                if session is None:
                    await s.close()
        return self.run(go())

    def close(self, session: aiohttp.ClientSession) -> None:
        self.run(session.close())

    def payment(self, **fields: Any) -> str:
        return self.run(self.rig.submit(f"web-{next(_keys)}", **fields))["id"]

    def db(self, work: Any) -> Any:
        return self.run(self.gw.store.run(work))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("ops-web")
    loop = LoopThread()
    rig = loop.run(OpsRig(directory, {"operators_file": str(operators_file(directory))}
                          ).start())
    yield Web(loop, rig)
    loop.run(rig.stop())
    loop.close()


def test_sign_in_sets_a_strict_http_only_cookie(web: Web) -> None:
    """The session cookie is invisible to scripts and never sent by other sites."""
    status, body, headers = web.call("POST", "/ops/login",
                                     json={"user": "op1", "password": "op1-pass"})
    cookie = headers["Set-Cookie"]

    assert status == 200 and body["user"] == "op1" and body["may_approve"] is False
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert f"Max-Age={sessions.SESSION_LIFE_MAX_S}" in cookie


GUARDED = [
    ("GET", "/ops/api/snapshot"), ("GET", "/ops/api/status"), ("GET", "/ops/api/payments"),
    ("GET", "/ops/api/audit"), ("GET", "/ops/events"), ("GET", "/metrics"),
    ("GET", "/ops/api/messages/1"), ("POST", "/ops/api/requests"),
    ("POST", "/ops/api/requests/1/approve"), ("POST", "/ops/logout"),
]


@pytest.mark.parametrize("method, path", GUARDED)
def test_every_data_route_needs_an_operator(web: Web, method: str, path: str) -> None:
    """Without a session or Basic credentials, nothing but the sign-in form is served."""
    status, body, _ = web.call(method, path, json={})

    assert status == 401
    assert body["errors"][0]["code"] == "operator_not_signed_in"


PAGE_FILES = [
    ("/ops/", 200, "text/html"), ("/ops/static/app.js", 200, "text/javascript"),
    ("/ops/static/app.css", 200, "text/css"), ("/ops/static/i18n.js", 200, "text/javascript"),
    ("/ops/static/index.html", 404, None), ("/ops/static/operators.toml", 404, None),
]


@pytest.mark.parametrize("path, status, content_type", PAGE_FILES)
def test_the_page_files_are_served_from_the_package(web: Web, path: str, status: int,
                                                    content_type: str | None) -> None:
    """Only the page's own files are served; nothing else of the package."""
    got, _, headers = web.call("GET", path)

    assert got == status
    if content_type:
        assert headers["Content-Type"].startswith(content_type)
        assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_every_page_file_is_shipped() -> None:
    """The files the page names exist in the package (package data, no build step)."""
    html = (resources.files("gateway") / "web" / "index.html").read_text(encoding="utf-8")
    named = set(re.findall(r'/ops/static/([a-z0-9.]+)', html))

    assert named == {"app.js", "app.css", "i18n.js", "favicon.svg"}


def test_basic_credentials_work_for_the_command_line(web: Web) -> None:
    """HTTP Basic with the right password answers; with a wrong one it is refused."""
    ok, body, _ = web.call("GET", "/ops/api/status", basic=("sup1", "sup1-pass"))
    refused, error, _ = web.call("GET", "/ops/api/status", basic=("sup1", "wrong"))

    assert ok == 200 and body["window"]["work_date"] == "2026-12-07"
    assert refused == 401 and error["errors"][0]["code"] == "sign_in_refused"


def test_repeated_wrong_passwords_lock_the_user(web: Web) -> None:
    """After the allowed failures even the right password is refused for a while."""
    for _ in range(sessions.SIGN_IN_FAILURES_MAX):
        web.call("POST", "/ops/login", json={"user": "lock1", "password": "guess"})
    status, body, _ = web.call("POST", "/ops/login",
                               json={"user": "lock1", "password": "lock1-pass"})
    refusals = web.db(lambda tx: tx.query_one(
        "SELECT COUNT(*) FROM ops_audit WHERE actor = 'lock1' AND what = 'sign_in_refused'",
        ())[0])

    assert status == 401 and body["errors"][0]["code"] == "sign_in_locked_after_failures"
    assert refusals == sessions.SIGN_IN_FAILURES_MAX + 1


def test_sign_out_ends_the_session(web: Web) -> None:
    """A cookie kept after sign-out no longer opens anything."""
    s = web.session("op1")
    before, _, _ = web.call("GET", "/ops/api/me", s)
    out, _, _ = web.call("POST", "/ops/logout", s, json={})
    token = s.cookie_jar.filter_cookies(web.url).get(sessions.COOKIE)
    after, _, _ = web.call("GET", "/ops/api/me", s)
    web.close(s)

    assert (before, out, after) == (200, 200, 401)
    assert token is None or token.value == ""


CHANGES_REFUSED = [
    ({"Origin": "http://elsewhere.example"}, {"json": {"action": "hold"}},
     403, "cross_site_request_refused"),
    ({}, {"data": "action=hold"}, 415, "unsupported_media_type"),
    ({}, {"json": ["hold"]}, 422, "body_must_be_a_json_object"),
    ({}, {"json": {"action": "hold", "target": "P1", "note": 5}}, 422, "field_must_be_text"),
    ({}, {"json": {"action": "hold", "target": "P1", "note": "x" * 501}}, 422,
     "note_malformed"),
    # Over the console's body limit: 413, as the core system's API answers it.
    ({}, {"json": {"action": "hold", "target": "P1", "note": "x" * 100_000}}, 413,
     "body_too_large"),
]


@pytest.mark.parametrize("headers, body, status, code", CHANGES_REFUSED)
def test_changing_requests_must_be_json_from_this_site(web: Web, headers: dict[str, str],
                                                       body: dict[str, Any], status: int,
                                                       code: str) -> None:
    """Forms and other sites' pages cannot send actions with an operator's cookie."""
    s = web.session("op1")
    got, answer, _ = web.call("POST", "/ops/api/requests", s, headers=headers, **body)
    web.close(s)

    assert got == status and answer["errors"][0]["code"] == code


def test_an_action_is_pushed_to_open_pages_at_once(web: Web) -> None:
    """The events stream sends a snapshot, then a newer one showing the request."""
    pid = web.payment()
    page = web.session("op1")

    async def watch() -> tuple[dict[str, Any], dict[str, Any]]:
        async with page.get(web.url + "/ops/events") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            first = await _next_snapshot(r)
            await web.rig.ops.console.request(web.rig.ops.directory.get("op1"), "cancel", pid)
            second = await _next_snapshot(r)
            return first, second
    first, second = web.run(watch())
    web.close(page)

    assert pid not in [q["target"] for q in first["pending"]]
    assert second["version"] > first["version"]
    assert pid in [q["target"] for q in second["pending"]]


async def _next_snapshot(r: aiohttp.ClientResponse) -> dict[str, Any]:
    event = ""
    async for raw in r.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "snapshot":
            return json.loads(line[6:])
    raise AssertionError("the event stream ended")


def test_metrics_are_prometheus_text(web: Web) -> None:
    """Every sample line parses; payments, queues and window state are there."""
    web.payment()
    status, text, headers = web.call("GET", "/metrics", basic=("op1", "op1-pass"))
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    names = {re.match(r"[a-z_]+", line).group(0) for line in samples}

    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert all(re.fullmatch(r'[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? -?[0-9.]+', s) for s in samples)
    assert {"paygate_payments", "paygate_queue_length", "paygate_hvps_open",
            "paygate_clearing_balance_fen", "paygate_alerts"} <= names
    assert 'paygate_payments{direction="out",channel="hvps",state="held"}' in text


SEARCHES = [
    # query, whether the payment of 1,234.57 is found, or the refusal code
    ("amount=1,234.57", True),
    ("amount=1234.57&state=held", True),
    ("amount=1234.57&state=settled", False),
    ("amount=1234.57&date=2026-12-07", True),
    ("amount=1234.57&date=2026-12-08", False),
    ("amount=1234.571", "amount_must_have_at_most_two_decimals"),
    ("date=07/12/2026", "search_date_malformed"),
    ("colour=red", "query_parameter_unknown"),
    ("limit=0", "limit_out_of_range"),
]


@pytest.mark.parametrize("query, expected", SEARCHES)
def test_payment_search(web: Web, query: str, expected: bool | str) -> None:
    """Payments are found by amount, state and date; malformed searches are refused."""
    pid = web.payment(amount="1234.57")
    status, body, _ = web.call("GET", "/ops/api/payments?" + query, basic=("op1", "op1-pass"))

    if isinstance(expected, str):
        assert status == 422 and body["errors"][0]["code"] == expected
    else:
        assert status == 200
        assert (pid in [p["id"] for p in body["payments"]]) is expected


def test_payment_search_by_id_and_account(web: Web) -> None:
    """An id finds exactly its payment; the payer's account finds all of theirs."""
    pid = web.payment()
    _, by_id, _ = web.call("GET", f"/ops/api/payments?id={pid}", basic=("op1", "op1-pass"))
    _, by_account, _ = web.call("GET", f"/ops/api/payments?account={web.rig.payer_account}"
                                       "&limit=200", basic=("op1", "op1-pass"))

    assert [p["id"] for p in by_id["payments"]] == [pid]
    assert pid in [p["id"] for p in by_account["payments"]]


def test_stuck_payments_are_those_too_long_in_flight(web: Web) -> None:
    """A payment sent long ago without a result is listed; a fresh one is not."""
    old, fresh = web.payment(), web.payment()
    web.db(lambda tx: tx.execute("UPDATE payments SET state = 'sent', updated_at = "
                                 "'2026-12-07T06:00:00+08:00' WHERE id = ?", (old,)))
    web.db(lambda tx: tx.execute("UPDATE payments SET state = 'sent' WHERE id = ?", (fresh,)))
    _, body, _ = web.call("GET", "/ops/api/stuck?minutes=30", basic=("op1", "op1-pass"))
    ids = [p["id"] for p in body["payments"]]

    assert old in ids and fresh not in ids


def test_stuck_counts_apart_those_listed_at_any_age(web: Web) -> None:
    """A payment held seconds ago because the link refused its message is listed, as
    one waiting for an operator; the answer counts it apart (`message_died`), so that
    the heading does not say it is older than the age applied."""
    refused = web.payment()
    web.db(lambda tx: tx.execute(
        "UPDATE payments SET state = 'held', reason = 'refused_at_link: the NPC answered "
        "400' WHERE id = ?", (refused,)))
    _, body, _ = web.call("GET", "/ops/api/stuck?minutes=30", basic=("op1", "op1-pass"))
    listed = {p["id"] for p in body["payments"]}
    died = sum(1 for p in body["payments"] if p["state"] == "held"
               and p["reason"].startswith(("refused_at_link", "dead_lettered")))

    assert refused in listed
    assert body["message_died"] == died >= 1 and body["total"] >= body["message_died"]


def test_archived_message_shows_raw_and_parsed(web: Web) -> None:
    """The archive finds a message by type and shows its envelope and the codec's view."""
    example = resources.files("gateway") / "examples" / "hvps.111_urgent-goods-payment.xml"
    body = example.read_bytes()
    now = web.gw.clock.now()

    def work(tx: Any) -> str:
        header = outbound.new_header(tx, now, web.gw.settings.bank_code, outbound.NPC,
                                     "hvps.111.001.01", "HVPS")
        outbound.queue_message(tx, header, body, web.gw.keyring, now)
        return header.mesg_id
    mesg_id = web.db(work)
    _, found, _ = web.call("GET", "/ops/api/messages?type=hvps.111&id=" + mesg_id,
                           basic=("op1", "op1-pass"))
    _, one, _ = web.call("GET", f"/ops/api/messages/{found['messages'][0]['id']}",
                         basic=("op1", "op1-pass"))

    assert [m["mesg_id"] for m in found["messages"]] == [mesg_id]
    assert one["raw"].startswith("{H:") and "<Document" in one["raw"]
    assert one["parsed"]["type"] == "hvps.111.001.01"
    assert one["parsed"]["header"]["mesg_id"] == mesg_id
    assert one["parsed"]["fields"]["amount_fen"] > 0


@pytest.mark.parametrize("method, path, code", [
    ("GET", "/ops/api/messages/" + "9" * 30, "message_not_found"),
    ("GET", "/ops/api/messages/" + "1" * 5_000, "message_not_found"),
    ("POST", f"/ops/api/requests/{'9' * 30}/approve", "request_not_found"),
    ("POST", f"/ops/api/requests/{'1' * 5_000}/reject", "request_not_found"),
])
def test_an_id_no_row_can_have_is_not_found(web: Web, method: str, path: str,
                                            code: str) -> None:
    """An id past the largest a database row can have (64 bits), however many digits it
    is written with, is found nowhere (404), never looked up."""
    status, body, _ = web.call(method, path, basic=("sup1", "sup1-pass"), json={"note": ""})

    assert (status, [e["code"] for e in body["errors"]]) == (404, [code])


def test_overdue_queries_come_from_the_query_table_when_there_is_one() -> None:
    """Without a query table there is no panel; with one, open overdue queries show."""
    db = connect("sqlite:///:memory:")
    now = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)
    with db.transaction() as tx:
        absent = views.overdue_queries(tx, now)
        tx.execute("CREATE TABLE queries (id TEXT PRIMARY KEY, state TEXT, "
                   "reply_due_at TEXT, secret BLOB)")
        tx.execute("INSERT INTO queries VALUES ('Q1', 'open', '2026-12-06T12:00:00+08:00', "
                   "x'00'), ('Q2', 'answered', '2026-12-06T12:00:00+08:00', x'00'), "
                   "('Q3', 'open', '2026-12-09T12:00:00+08:00', x'00')")
        found = views.overdue_queries(tx, now)
    db.close()

    assert absent is None
    assert [r["id"] for r in found["rows"]] == ["Q1"] and found["deadline"] == "reply_due_at"
    assert found["columns"] == ["id", "state", "reply_due_at"]


def test_the_queries_route_agrees_with_the_snapshot(web: Web) -> None:
    """The route answers 404 exactly when the page hides the overdue-queries panel."""
    status, body, _ = web.call("GET", "/ops/api/queries", basic=("op1", "op1-pass"))
    _, snap, _ = web.call("GET", "/ops/api/snapshot", basic=("op1", "op1-pass"))

    if snap["queries"] is None:
        assert status == 404 and body["errors"][0]["code"] == "query_table_absent"
    else:
        assert status == 200 and body["columns"] == snap["queries"]["columns"]


def test_dead_letters_are_listed_with_their_reason(web: Web) -> None:
    """The dead-letter list shows the stream, the original fields and why it died."""
    entry = web.run(web.gw.redis.xadd(keys.DEAD, {
        "inbox": "7", "stream": keys.INBOUND, "entry": "1-0", "reason": "ValueError('x')",
        "deliveries": "6"}))
    _, body, _ = web.call("GET", "/ops/api/dead", basic=("op1", "op1-pass"))
    row = next(e for e in body["entries"] if e["id"] == entry)

    assert row["stream"] == keys.INBOUND and row["fields"] == {"inbox": "7"}
    assert row["reason"] == "ValueError('x')" and body["total"] >= 1


def _sent_hours_ago(web: Web, count: int) -> list[str]:
    """`count` new payments, `sent` hours ago without a result: stuck."""
    ids = [web.payment() for _ in range(count)]
    for pid in ids:
        web.db(lambda tx, pid=pid: tx.execute(
            "UPDATE payments SET state = 'sent', updated_at = '2026-12-07T05:00:00+08:00' "
            "WHERE id = ?", (pid,)))
    return ids


def test_stuck_gives_the_total_and_says_when_the_list_is_cut(web: Web, monkeypatch) -> None:
    """More stuck payments than the list holds: the oldest are listed, and the answer
    says how many there are in all and that the list is cut."""
    _sent_hours_ago(web, 2)
    monkeypatch.setattr(views, "LIST_MAX", 1)
    _, body, _ = web.call("GET", "/ops/api/stuck?minutes=30", basic=("op1", "op1-pass"))

    assert body["total"] >= 2 and body["shown"] == len(body["payments"]) == 1
    assert body["truncated"] is True


def test_the_pages_stuck_list_comes_with_its_total(web: Web, monkeypatch) -> None:
    """The page lists the oldest stuck payments its lists hold, as it lists the held for
    review: the snapshot gives how many there are in all (`stuck_total`, what GET
    /ops/api/stuck counts), so that a cut list says it is cut."""
    _sent_hours_ago(web, 2)
    monkeypatch.setattr(snapshot, "SNAPSHOT_LIST_MAX", 1)
    built = web.run(web.rig.ops.snapshots.build())  # built now, not the cached one
    _, body, _ = web.call("GET", f"/ops/api/stuck?minutes={views.STUCK_AFTER_MIN}",
                          basic=("op1", "op1-pass"))

    assert len(built["stuck"]) == 1
    assert built["stuck_total"] == body["total"] >= 2


@pytest.mark.parametrize("query, code", [
    ("minutes=1&minutes=2", "query_parameter_repeated"),
    ("mins=5", "query_parameter_unknown"),
    ("minutes=abc", "query_parameter_out_of_range"),
    ("minutes=", "query_parameter_out_of_range"),
    ("minutes=999999999", "query_parameter_out_of_range"),
    ("minutes=" + "9" * 5_000, "query_parameter_out_of_range"),
])
def test_stuck_refuses_a_bad_query_string(web: Web, query: str, code: str) -> None:
    status, body, _ = web.call("GET", f"/ops/api/stuck?{query}", basic=("op1", "op1-pass"))

    assert status == 422
    assert [e["code"] for e in body["errors"]] == [code]


# Every route under /ops/api with the query parameters it takes.
OPS_API_QUERIES = [
    ("GET", "/ops/api/payments", ("id", "account", "amount", "state", "date", "direction",
                                  "channel", "limit")),
    ("GET", "/ops/api/messages", ("id", "party", "type", "date", "direction")),
    ("GET", "/ops/api/me", ()), ("GET", "/ops/api/snapshot", ()),
    ("GET", "/ops/api/status", ()), ("GET", "/ops/api/queues", ()),
    ("GET", "/ops/api/payments/P1", ()), ("GET", "/ops/api/books", ()),
    ("GET", "/ops/api/review", ()), ("GET", "/ops/api/dead", ("limit",)),
    ("GET", "/ops/api/alerts", ("code", "open", "limit")), ("GET", "/ops/api/audit", ("limit",)),
    ("GET", "/ops/api/requests", ("state", "limit")), ("GET", "/ops/api/queries", ()),
    ("GET", "/ops/api/messages/1", ()), ("POST", "/ops/api/requests", ()),
    ("POST", "/ops/api/requests/1/approve", ()), ("POST", "/ops/api/requests/1/reject", ()),
]


@pytest.mark.parametrize("method, path, names", OPS_API_QUERIES)
def test_an_unknown_query_parameter_is_refused_not_ignored(web: Web, method: str, path: str,
                                                           names: tuple[str, ...]) -> None:
    """A parameter a route does not take is refused (422), before anything is read or
    done, as GET /v1/transfers refuses it; a parameter it takes given twice too."""
    status, body, _ = web.call(method, f"{path}?verbose=1", basic=("op1", "op1-pass"),
                               json={})
    repeated = [web.call(method, f"{path}?{name}=1&{name}=2", basic=("op1", "op1-pass"))
                for name in names]

    assert (status, [e["code"] for e in body["errors"]]) == (422, ["query_parameter_unknown"])
    assert body["errors"][0]["path"] == "?verbose"
    for r_status, r_body, _ in repeated:
        assert (r_status, [e["code"] for e in r_body["errors"]]) == (
            422, ["query_parameter_repeated"])


def test_a_listing_s_bad_limit_is_told_with_an_unknown_parameter(web: Web) -> None:
    """Every problem of the query string at once: an empty or too large limit with an
    unknown parameter; a good limit is taken."""
    _, bad, _ = web.call("GET", "/ops/api/audit?limit=&lmt=5", basic=("op1", "op1-pass"))
    _, big, _ = web.call("GET", "/ops/api/alerts?limit=100000", basic=("op1", "op1-pass"))
    status, good, _ = web.call("GET", "/ops/api/audit?limit=1", basic=("op1", "op1-pass"))

    assert [e["code"] for e in bad["errors"]] == ["query_parameter_unknown",
                                                  "query_parameter_out_of_range"]
    assert [e["code"] for e in big["errors"]] == ["query_parameter_out_of_range"]
    assert status == 200 and len(good["audit"]) <= 1


@pytest.mark.parametrize("path, names", [
    ("/ops/api/payments?colour=red&date=07/12/2026",
     ["query_parameter_unknown", "search_date_malformed"]),
    ("/ops/api/messages?colour=red&direction=up",
     ["query_parameter_unknown", "direction_unknown"]),
])
def test_a_search_refuses_an_unknown_field_as_any_route_does(web: Web, path: str,
                                                             names: list[str]) -> None:
    """A search told a field it does not search by says so with the code every other
    route under /ops/api gives an unknown parameter, naming the fields it takes, and
    with the search's other problems."""
    status, body, _ = web.call("GET", path, basic=("op1", "op1-pass"))

    assert status == 422
    assert [e["code"] for e in body["errors"]] == names
    assert body["errors"][0]["path"] == "?colour"
    assert "date" in body["errors"][0]["expected"]


def _request_states(web: Web) -> dict[str, str]:
    """One operator's request in each of two states: pending and executed."""
    pending = web.call("POST", "/ops/api/requests", basic=("op1", "op1-pass"),
                       json={"action": "cancel", "target": web.payment()})[1]
    executed = web.call("POST", "/ops/api/requests", basic=("op1", "op1-pass"),
                        json={"action": "hold", "target": web.payment()})[1]
    return {"pending": pending["id"], "executed": executed["id"]}


@pytest.mark.parametrize("state", ["pending", "executed"])
def test_requests_are_listed_by_state(web: Web, state: str) -> None:
    """A known state lists the requests in it and no other."""
    ids = _request_states(web)
    status, body, _ = web.call("GET", f"/ops/api/requests?state={state}&limit=200",
                               basic=("op1", "op1-pass"))
    listed = {r["id"]: r["state"] for r in body["requests"]}

    assert status == 200
    assert ids[state] in listed and set(listed.values()) == {state}
    assert not [i for i in ids.values() if i != ids[state] and i in listed]


@pytest.mark.parametrize("value", ["", "approved", "PENDING", "pending "])
def test_requests_refuse_an_empty_or_unknown_state(web: Web, value: str) -> None:
    """An empty or unknown state is refused, naming the states it takes, as GET
    /v1/transfers refuses its own: never read as every state, nor as none."""
    status, body, _ = web.call("GET", "/ops/api/requests", params={"state": value},
                               basic=("op1", "op1-pass"))

    assert status == 422
    assert [(e["code"], e["path"], e["value"]) for e in body["errors"]] == [
        ("state_unknown", "?state", value)]
    assert body["errors"][0]["expected"] == (
        "one of pending, executed, failed, rejected, withdrawn, expired")


def test_the_dead_letter_gauge_counts_what_the_console_counts(web: Web) -> None:
    """A letter whose outbox row has completed since (sent by a retry, its payment
    cancelled) is history on the page, in `ops dead` and on /metrics alike, so that an
    alert on the gauge clears once the operators have dealt with every letter."""
    at = "2026-12-07T09:00:00+08:00"
    rows = web.db(lambda tx: [tx.query_one(
        "INSERT INTO outbox (payment_id, kind, stream, state, created_at, updated_at) "
        "VALUES (NULL, 'message', ?, ?, ?, ?) RETURNING id", (keys.OUT_LINK, state, at, at))[0]
        for state in ("done", "dead")])
    for outbox_id in rows:
        web.run(web.gw.redis.xadd(keys.DEAD, {
            "outbox": str(outbox_id), "stream": keys.OUT_LINK, "entry": "1-0",
            "reason": "link answered 400", "deliveries": "1"}))
    _, dead, _ = web.call("GET", "/ops/api/dead", basic=("op1", "op1-pass"))
    _, streams, _ = web.call("GET", "/ops/api/queues", basic=("op1", "op1-pass"))
    _, text, _ = web.call("GET", "/metrics", basic=("op1", "op1-pass"))
    gauge = int(re.search(r"^paygate_dead_letters (\d+)$", text, re.M).group(1))
    length = web.run(web.gw.redis.xlen(keys.DEAD))

    assert dead["completed"] >= 1 and gauge < length
    assert gauge == dead["total"] == streams["dead_total"]
    assert [e["fields"]["outbox"] for e in dead["entries"]
            if e["fields"].get("outbox") in map(str, rows)] == [str(rows[1])]


def test_the_session_route_says_whether_the_browser_is_signed_in(web: Web) -> None:
    """GET /ops/session answers 200 before sign-in, after it (naming the operator) and
    after sign-out, so the page makes no request that fails with 401 to find out."""
    before, before_body, _ = web.call("GET", "/ops/session")
    s = web.session("op1")
    during, during_body, _ = web.call("GET", "/ops/session", s)
    web.call("POST", "/ops/logout", s, json={})
    after, after_body, _ = web.call("GET", "/ops/session", s)
    web.close(s)
    unknown, unknown_body, _ = web.call("GET", "/ops/session?x=1")

    assert (before, before_body) == (200, {"signed_in": False})
    assert during == 200 and during_body["signed_in"] is True
    assert during_body["operator"]["user"] == "op1"
    assert (after, after_body) == (200, {"signed_in": False})
    assert unknown == 422 and unknown_body["errors"][0]["code"] == "query_parameter_unknown"


def _alert(tx: Any, code: str, **detail: Any) -> int:
    return tx.query_one("INSERT INTO alerts (at, code, detail) VALUES (?, ?, ?) RETURNING id",
                        ("2026-12-07T09:00:00+08:00", code, json.dumps(detail)))[0]


# (alert, open now): what the page counts on its Alerts card and what it shows as history.
ALERT_CASES = [
    ("window_changed", False),
    ("link_down, its outage over", False),
    ("link_down, its outage going on", True),
    ("link_discarding, its episode over", False),
    ("critical, acknowledged", False),
    ("critical, not acknowledged", True),
    ("a finding (reconciliation_differences)", True),
]


def test_alerts_are_filtered_by_code_and_openness_and_say_how_many_there_are(
        web: Web) -> None:
    """A burst of one code (a screening run raises one alert per parked credit) past the
    limit: GET /ops/api/alerts?code= lists only that code's, newest first, with how many
    there are in all and that the list is cut; `open=true` leaves out those closed,
    `open=false` keeps only them; another value of `open` is refused."""
    code = "incoming_credit_held_for_review"

    def insert(tx: Any) -> list[int]:
        ids = [_alert(tx, code, payment=f"P{n}") for n in range(3)]
        _alert(tx, "reconciliation_differences", work_date="2026-12-07")
        tx.execute("INSERT INTO alert_acks (alert_id, by, at, note) VALUES (?, ?, ?, ?)",
                   (ids[0], "op1", "2026-12-07T09:05:00+08:00", "looked at"))
        return ids

    def get(query: str) -> tuple[int, Any]:
        status, body, _ = web.call("GET", f"/ops/api/alerts?{query}", basic=("op1", "op1-pass"))
        return status, body
    ids = web.db(insert)
    _, burst = get(f"code={code}&limit=2")
    _, opened = get(f"code={code}&open=true")
    _, closed = get(f"code={code}&open=false")
    status, bad = get("open=yes")
    web.db(lambda tx: tx.execute("DELETE FROM alerts WHERE id >= ?", (ids[0],)))

    assert [a["id"] for a in burst["alerts"]] == [ids[2], ids[1]]
    assert (burst["total"], burst["shown"], burst["truncated"]) == (3, 2, True)
    assert [a["id"] for a in opened["alerts"]] == [ids[2], ids[1]]
    assert (opened["total"], opened["truncated"]) == (2, False)
    assert [a["id"] for a in closed["alerts"]] == [ids[0]] and closed["total"] == 1
    assert status == 422 and [e["code"] for e in bad["errors"]] == ["open_unknown"]


def test_the_alerts_open_are_counted_apart_from_the_history(web: Web) -> None:
    """Phase changes, link episodes over and critical alerts acknowledged are history; an
    episode going on, a critical alert not acknowledged and any other finding are open:
    the snapshot counts and lists them apart, GET /ops/api/alerts marks each row."""
    ongoing_since = "2026-12-07T09:05:00+08:00"

    def insert(tx: Any) -> dict[str, int]:
        ids = {
            "window_changed": _alert(tx, "window_changed", system="HVPS"),
            "link_down, its outage over": _alert(tx, "link_down",
                                                 since="2026-12-07T08:50:00+08:00"),
            "link_down, its outage going on": _alert(tx, "link_down", since=ongoing_since),
            "link_discarding, its episode over": _alert(
                tx, "link_discarding", since="2026-12-07T08:55:00+08:00"),
            "critical, acknowledged": _alert(tx, "npc_settled_payment_we_ended"),
            "critical, not acknowledged": _alert(tx, "npc_settled_payment_we_ended"),
            "a finding (reconciliation_differences)": _alert(
                tx, "reconciliation_differences", work_date="2026-12-07")}
        tx.execute("INSERT INTO alert_acks (alert_id, by, at, note) VALUES (?, ?, ?, ?)",
                   (ids["critical, acknowledged"], "sup1", ongoing_since, "collected"))
        return ids

    def counted(tx: Any) -> tuple[list[int], dict[str, int], dict[int, bool]]:
        down = {"state": "down", "since": ongoing_since}
        ongoing = attention.ongoing_ids(tx, down)
        rows = attention.listing(tx, ongoing, 50)
        return ongoing, attention.counts(tx, ongoing), {r["id"]: r["attention"] for r in rows}

    before = web.db(lambda tx: attention.counts(tx, []))
    ids = web.db(insert)
    ongoing, counts, marked = web.db(counted)
    _, listed, _ = web.call("GET", "/ops/api/alerts", basic=("op1", "op1-pass"))
    _, snap, _ = web.call("GET", "/ops/api/snapshot", basic=("op1", "op1-pass"))
    # The rig's own link episodes as its snapshot saw them (its NPC does not answer, so an
    # outage of its own may go on): open there, history in `before`.
    rig_open = len(web.db(lambda tx: attention.ongoing_ids(tx, snap["link"])))
    web.db(lambda tx: tx.execute("DELETE FROM alerts WHERE id >= ?", (min(ids.values()),)))

    assert ongoing == [ids["link_down, its outage going on"]]
    assert [marked[ids[case]] for case, _ in ALERT_CASES] == [o for _, o in ALERT_CASES]
    opened = sum(1 for _, o in ALERT_CASES if o)
    assert counts == {"attention": before["attention"] + opened,
                      "history": before["history"] + len(ALERT_CASES) - opened}
    # The rig's link has no episode since 09:05: that alert of an outage is history there.
    by_id = {a["id"]: a["attention"] for a in listed["alerts"]}
    assert by_id[ids["link_down, its outage going on"]] is False
    assert by_id[ids["a finding (reconciliation_differences)"]] is True
    assert snap["alert_count"] == {
        "attention": before["attention"] + rig_open + opened - 1,
        "history": before["history"] - rig_open + len(ALERT_CASES) - opened + 1}
    assert all(a["attention"] for a in snap["alerts"])
    assert not any(a["attention"] for a in snap["alert_history"])


@pytest.mark.parametrize("path, problems", [
    ("/ops/api/alerts?open=yes&limit=0",
     [("open_unknown", "?open", "yes"), ("query_parameter_out_of_range", "?limit", "0")]),
    ("/ops/api/alerts?limit=201&open=",
     [("open_unknown", "?open", ""), ("query_parameter_out_of_range", "?limit", "201")]),
    ("/ops/api/requests?state=later&limit=x",
     [("state_unknown", "?state", "later"), ("query_parameter_out_of_range", "?limit", "x")]),
    ("/ops/api/stuck?minutes=-1", [("query_parameter_out_of_range", "?minutes", "-1")]),
    ("/ops/api/dead?limit=", [("query_parameter_out_of_range", "?limit", "")]),
])
def test_a_list_names_each_bad_query_parameter_as_the_query_string_does(
        web: Web, path: str, problems: list[tuple[str, str, str]]) -> None:
    """A bad value of a list's query parameter is told at `?name`, as an unknown or
    repeated parameter is and as GET /v1/transfers tells its own, all at once, each
    code one docs/errors.md lists."""
    status, body, _ = web.call("GET", path, basic=("op1", "op1-pass"))
    listed = listed_codes()

    assert status == 422
    assert [(e["code"], e["path"], e["value"]) for e in body["errors"]] == problems
    assert all(e["code"] in listed and e["expected"] for e in body["errors"])
