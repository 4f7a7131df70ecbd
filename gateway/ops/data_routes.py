"""The console's JSON routes under `/ops/api/`: what the page and `paygate ops` read,
and the requests, approvals and rejections they send.

| method and path | answer |
|---|---|
| GET /ops/api/snapshot | everything the page shows, as pushed by /ops/events |
| GET /ops/api/status | window, clearing balance, payments queued at the NPC, counts |
| GET /ops/api/queues | streams (length, pending, lag, oldest age), stages, dead total |
| GET /ops/api/payments?id=&account=&amount=&state=&date=&direction=&channel=&limit= | found |
| GET /ops/api/payments/{id} | one payment: history, outbox, messages, requests, told, actions |
| GET /ops/api/stuck?minutes=N | the oldest 200 in flight longer than N minutes or held since their message died (any age), `total`, `message_died`, `truncated` |
| GET /ops/api/day-reports/{date} | a closed work date's daily statement and subject day sheets: `files`, each `name` and `text` (409 `work_date_not_closed` for a date still open) |
| GET /ops/api/review | payments held for review or by the screening (credits it parked in suspense included), the oldest 200, each with its `actions` and the party a screening reason names (`matched_party`, `matched_name`); `total`, `shown`, `truncated` |
| GET /ops/api/dead | dead letters |
| GET /ops/api/alerts?code=&open=&limit= | latest alerts (each `attention`: open, or history, ops.attention), of one `code`, only the open ones (`open=true`) or the history (`open=false`) when asked; `total`, `shown`, `truncated` |
| GET /ops/api/audit | latest operators' acts |
| GET /ops/api/requests?state= | operators' requests |
| GET /ops/api/queries | overdue queries, and under `refused` our queries, replies and free text the NPC refused (404 when there is no query table) |
| GET /ops/api/receivables?state= | receivables (其他应收款-待销账, 1221) in one state (`open` unless asked: `collected`, `void`), oldest first |
| GET /ops/api/messages?id=&party=&type=&date=&direction= | archived messages |
| GET /ops/api/messages/{id} | one message: raw envelope and parsed view |
| POST /ops/api/requests | {action, target, params, note}: request an action |
| POST /ops/api/requests/{id}/approve, /reject | {note}: decide on a request |

A payment's `actions` are those the signed-in operator may request on it now
(control.offered): the page offers them on its detail view, `paygate ops payment` lists
them. Each row of a list of payments (the search and the review here; the snapshot's
latest, stuck and held for review) carries the `actions` of control.ROW_ACTIONS a request
would be taken for, whoever asks (control.add_row_actions); the page shows those its
operator's level may ask for. Both are checked as a request is (control.requestable): the precondition,
and the requests pending on the payment.

A query string takes only the parameters shown (`limit` on the lists of dead letters,
alerts, audit and requests, 1 to the list's maximum): an unknown one, or one given twice,
is refused (422 `query_parameter_unknown`, `query_parameter_repeated`, with the query's
other problems), as GET /v1/transfers refuses them, never ignored or taken first; the
searches of payments and messages say the same of a field they do not search by. The
requests' `state` is one of control.REQUEST_STATES: an empty or unknown one is refused
(`state_unknown`), never read as every state or as none.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway import dayend
from gateway.api import query_params
from gateway.digits import whole_number
from gateway.errors import NotFound, Problem, ValidationFailed
from gateway.money import format_yuan
from gateway.ops import archive, attention, control, queues, receivables, snapshot, views
from gateway.ops.console import Console
from gateway.ops.operators import Operator
from gateway.ops.replies import json_response, read_json
from gateway.ops.snapshot import Snapshots

STUCK_MINUTES_MAX = 7 * 24 * 60
LIMIT_DEFAULT = 50  # rows a listing shows unless asked for more (up to its own maximum)
# GET /ops/api/alerts?open=: only the alerts open (needing attention), or only the history.
ALERT_OPEN_CHOICES = ("true", "false")




def checked_query(request: web.Request, allowed: tuple[str, ...] = (),
                  limit_max: int | None = None,
                  choices: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """A route's query string, refused with every problem at once as GET /v1/transfers
    refuses its own: a name the route does not take (`query_parameter_unknown`), one
    given twice (`query_parameter_repeated`), a `limit` (when `limit_max` is given) that
    is not a whole number from 1 to `limit_max` (`query_parameter_out_of_range`), a
    parameter named in `choices` whose value, empty included, is not one of its choices
    (`NAME_unknown`, as `state_unknown` on GET /v1/transfers). Each problem names its
    parameter as the query string does, `?name`, as GET /v1/transfers and every other
    query-string problem of the API do (never `/name`, a body's member)."""
    names = (*allowed, "limit") if limit_max is not None else allowed
    query: dict[str, Any]
    query, problems = query_params(request, names)
    for name, values in (choices or {}).items():
        if name in query and query[name] not in values:
            problems.append(Problem(f"{name}_unknown", f"?{name}", query[name][:80],
                                    "one of " + ", ".join(values)))
    if limit_max is not None:
        query["limit"] = _checked_int(query, problems, "limit", LIMIT_DEFAULT, 1, limit_max)
    if problems:
        raise ValidationFailed(problems)
    return query


def _checked_int(query: dict[str, str], problems: list[Problem], name: str, default: int,
                 low: int, high: int) -> int:
    """A whole number parameter from `low` to `high` (`default` when absent), a bad one
    added to `problems` (refused with the query string's other problems)."""
    text = query.get(name)
    if text is None:
        return default
    number = whole_number(text, high, low)
    if number is None:
        problems.append(Problem("query_parameter_out_of_range", f"?{name}", text[:80],
                                f"a whole number from {low} to {high}"))
        return default
    return number


def _request_id(request: web.Request) -> int:
    text = request.match_info["id"]
    request_id = whole_number(text, control.ROW_ID_MAX)
    if request_id is None:
        raise NotFound(Problem("request_not_found", "/id", text,
                               "the id of an operator's request"))
    return request_id


class DataRoutes:
    def __init__(self, console: Console, snapshots: Snapshots) -> None:
        self.console = console
        self.snapshots = snapshots
        self.gw = console.gw

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/ops/api/snapshot", self.snapshot),
            ("GET", "/ops/api/status", self.status),
            ("GET", "/ops/api/queues", self.queues),
            ("GET", "/ops/api/payments", self.payments),
            ("GET", "/ops/api/payments/{id}", self.payment),
            ("GET", "/ops/api/stuck", self.stuck),
            ("GET", "/ops/api/books", self.books),
            ("GET", "/ops/api/day-reports/{date}", self.day_reports),
            ("GET", "/ops/api/review", self.review),
            ("GET", "/ops/api/dead", self.dead),
            ("GET", "/ops/api/alerts", self.alerts),
            ("GET", "/ops/api/audit", self.audit),
            ("GET", "/ops/api/requests", self.requests),
            ("GET", "/ops/api/queries", self.queries),
            ("GET", "/ops/api/receivables", self.receivables),
            ("GET", "/ops/api/messages", self.messages),
            ("GET", "/ops/api/messages/{id}", self.message),
            ("POST", "/ops/api/requests", self.create_request),
            ("POST", "/ops/api/requests/{id}/approve", self.approve),
            ("POST", "/ops/api/requests/{id}/reject", self.reject),
        ]

    async def _read(self, work: Any) -> Any:
        await self.console.ready()
        return await self.gw.store.run(work)

    async def snapshot(self, request: web.Request, operator: Operator) -> web.Response:
        checked_query(request)
        return _json(await self.snapshots.get())

    async def status(self, request: web.Request, operator: Operator) -> web.Response:
        checked_query(request)
        out = await snapshot.status(self.gw)
        out["counts"] = await self._read(views.counts)
        now = self.gw.clock.now()
        out["pending_requests"] = await self._read(lambda tx: views.pending_count(tx, now))
        return _json(out)

    async def queues(self, request: web.Request, operator: Operator) -> web.Response:
        checked_query(request)
        r = self.gw.redis
        return _json({"streams": await queues.stream_stats(r),
                      "stages": self.snapshots.rates.stages(
                          self.gw.workers, _loop_time()),
                      "dead_total": (await queues.dead_letters(r, 1, self.gw.store))["total"]})

    async def payments(self, request: web.Request, operator: Operator) -> web.Response:
        search = views.parse_search(*query_params(request, views.SEARCH_PARAMS))
        now = self.gw.clock.now()

        def read(tx: Any) -> list[dict[str, Any]]:
            rows = views.search_payments(tx, search)
            control.add_row_actions(self.gw, tx, rows, now)
            return rows
        return _json({"payments": await self._read(read)})

    async def payment(self, request: web.Request, operator: Operator) -> web.Response:
        checked_query(request)
        payment_id, now = request.match_info["id"], self.gw.clock.now()

        def read(tx: Any) -> dict[str, Any]:
            view = views.payment_detail(tx, payment_id, now)
            view["actions"] = control.offered(self.gw, tx, operator, payment_id, now)
            # For a BEPS item, the actions on the package that carries it.
            view["package_actions"] = control.offered(
                self.gw, tx, operator, view["package"], now, "package") \
                if view["package"] else []
            return view
        return _json(await self._read(read))

    async def stuck(self, request: web.Request, operator: Operator) -> web.Response:
        """The oldest stuck payments (at most views.LIST_MAX), with how many there are
        in all and whether the list is cut."""
        query, problems = query_params(request, ("minutes",))
        minutes = _checked_int(query, problems, "minutes", views.STUCK_AFTER_MIN, 0,
                               STUCK_MINUTES_MAX)
        if problems:
            raise ValidationFailed(problems)
        now = self.gw.clock.now()
        hvps_open = self.gw.hvps_open

        def work(tx: Any) -> tuple[tuple[int, int], list[dict[str, Any]]]:
            return (views.stuck_total(tx, now, minutes, hvps_open),
                    views.stuck(tx, now, minutes, hvps_open))
        (total, died), rows = await self._read(work)
        return _json({"minutes": minutes, "total": total, "message_died": died,
                      "shown": len(rows), "truncated": total > len(rows), "payments": rows})

    async def books(self, request: web.Request, operator: Operator) -> web.Response:
        """The ledger's trial balance now (总分核对 included): whether the books balance,
        and each subject's turnover and balance, in fen and in yuan."""
        checked_query(request)
        trial = await self._read(self.gw.ledger.trial_balance)
        return _json({
            "balanced": trial.balanced, "accounts_agree": trial.accounts_agree,
            "debit_total_fen": trial.debit_total_fen,
            "credit_total_fen": trial.credit_total_fen,
            "debit_total": format_yuan(trial.debit_total_fen),
            "credit_total": format_yuan(trial.credit_total_fen),
            "assets_fen": trial.assets_fen, "liabilities_fen": trial.liabilities_fen,
            "equity_fen": trial.equity_fen, "income_fen": trial.income_fen,
            "expenses_fen": trial.expenses_fen,
            "subjects": [{"code": r.code, "name": r.name, "debit_fen": r.debit_fen,
                          "credit_fen": r.credit_fen, "balance_fen": r.balance_fen,
                          "balance": format_yuan(r.balance_fen)}
                         for r in trial.rows if r.debit_fen or r.credit_fen],
        })

    async def day_reports(self, request: web.Request, operator: Operator) -> web.Response:
        """A closed work date's daily statement and subject day sheets (gateway.dayend)."""
        checked_query(request)
        text = request.match_info["date"]
        return _json(await self._read(lambda tx: dayend.day_reports(tx, self.gw.ledger, text)))

    async def review(self, request: web.Request, operator: Operator) -> web.Response:
        """The payments the review or the screening holds, each with the actions that
        decide it (a pass or fail of the review; a parked credit's application or
        return), as a row of the page's list shows them: the oldest views.LIST_MAX, with how
        many there are in all and whether the list is cut."""
        checked_query(request)
        now = self.gw.clock.now()

        def read(tx: Any) -> tuple[int, list[dict[str, Any]]]:
            rows = views.held_for_review(tx)
            control.add_row_actions(self.gw, tx, rows, now)
            return views.held_for_review_total(tx), rows
        total, rows = await self._read(read)
        return _json({"total": total, "shown": len(rows), "truncated": total > len(rows),
                      "payments": rows})

    async def dead(self, request: web.Request, operator: Operator) -> web.Response:
        limit = checked_query(request, limit_max=queues.DEAD_LIST_MAX)["limit"]
        return _json(await queues.dead_letters(self.gw.redis, limit, self.gw.store))

    async def alerts(self, request: web.Request, operator: Operator) -> web.Response:
        """The latest alerts, newest first, of one `code` and only those open
        (`open=true`) or only the history (`open=false`) when asked, with how many the
        filters find in all and whether the list is cut."""
        query = checked_query(request, ("code", "open"), limit_max=views.LIST_MAX,
                              choices={"open": ALERT_OPEN_CHOICES})
        limit, code = query["limit"], query.get("code")
        wanted = None if "open" not in query else query["open"] == "true"
        link_view = await self.gw.link_share.view()

        def work(tx: Any) -> tuple[int, list[dict[str, Any]]]:
            ongoing = attention.ongoing_ids(tx, link_view)
            return (attention.listed_total(tx, ongoing, wanted, code),
                    attention.listing(tx, ongoing, limit, wanted, code))
        total, rows = await self._read(work)
        return _json({"total": total, "shown": len(rows), "truncated": total > len(rows),
                      "alerts": rows})

    async def audit(self, request: web.Request, operator: Operator) -> web.Response:
        limit = checked_query(request, limit_max=views.LIST_MAX)["limit"]
        return _json({"audit": await self._read(lambda tx: views.audit_rows(tx, limit))})

    async def requests(self, request: web.Request, operator: Operator) -> web.Response:
        """Operators' requests, newest first, in one state if `state` names one of
        control.REQUEST_STATES (an empty or unknown one is refused, never read as every
        state or as none)."""
        query = checked_query(request, ("state",), limit_max=views.LIST_MAX,
                              choices={"state": control.REQUEST_STATES})
        state, limit, now = query.get("state"), query["limit"], self.gw.clock.now()
        return _json({"requests": await self._read(
            lambda tx: views.requests(tx, now, state=state, limit=limit))})

    async def queries(self, request: web.Request, operator: Operator) -> web.Response:
        checked_query(request)
        now = self.gw.clock.now()
        found = await self._read(lambda tx: views.overdue_queries(tx, now))
        if found is None:
            raise NotFound(Problem("query_table_absent", "/ops/api/queries", None,
                                   "a gateway that keeps queries (table queries)"))
        return _json(found)

    async def receivables(self, request: web.Request, operator: Operator) -> web.Response:
        """Receivables in one state (open unless `state` names another), oldest first,
        each aged on the work date: what `receivable_collect` and `receivable_reverse`
        act on."""
        state = checked_query(request, ("state",),
                              choices={"state": receivables.STATES}).get("state", "open")
        today = self.gw.work_date
        return _json({"state": state, "receivables": await self._read(
            lambda tx: receivables.listing(self.gw, tx, state, today))})

    async def messages(self, request: web.Request, operator: Operator) -> web.Response:
        search = archive.parse_search(*query_params(request, archive.SEARCH_FIELDS))
        return _json({"messages": await self._read(lambda tx: archive.search(tx, search))})

    async def message(self, request: web.Request, operator: Operator) -> web.Response:
        checked_query(request)
        text = request.match_info["id"]
        message_id = whole_number(text, control.ROW_ID_MAX)
        if message_id is None:
            raise NotFound(Problem("message_not_found", "/id", text,
                                   "the id of an archived message"))
        row, raw = await self._read(lambda tx: archive.load(tx, message_id))
        return _json(archive.detail(row, raw))

    async def create_request(self, request: web.Request, operator: Operator) -> web.Response:
        checked_query(request)
        body = await read_json(request)
        req = await self.console.request(operator, body.get("action"), body.get("target"),
                                         body.get("params"), body.get("note", ""), body)
        return _json(req, 201)

    async def approve(self, request: web.Request, operator: Operator) -> web.Response:
        return await self._decide(request, operator, True)

    async def reject(self, request: web.Request, operator: Operator) -> web.Response:
        return await self._decide(request, operator, False)

    async def _decide(self, request: web.Request, operator: Operator,
                      approve: bool) -> web.Response:
        checked_query(request)
        body = await read_json(request)
        return _json(await self.console.decide(operator, _request_id(request), approve,
                                               body.get("note", ""), body))


def _json(data: Any, status: int = 200) -> web.Response:
    return json_response(data, status)


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
