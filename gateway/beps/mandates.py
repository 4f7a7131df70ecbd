"""Our customers' debit mandates and stop-payments (止付), kept for the beps.127 of other
banks (gateway.beps.debits_in reads them when it answers a debit).

    POST /v1/debit-mandates          {"account", "agreement"}: the customer authorises
                                     debits under the agreement
    POST /v1/debit-mandates/revoke   {"account", "agreement"}: it withdraws that
    GET  /v1/debit-mandates?account=A  the mandates in force on an account
    POST /v1/debit-stops             {"account", "agreement", "tx_id"?, "reason"}: it
                                     stops one debit, or every debit under the agreement
    POST /v1/debit-stops/lift        {"account", "agreement", "tx_id"?}: it lifts a stop
    GET  /v1/debit-stops?account=A   the stops in force on an account

A mandate lets another bank take money from the account: registering one is paying from
the account, and a stop or a revocation decides whether the account's holder pays. Each
is bounded as paying from the account is (gateway.scope, `api_balance_accounts`): a
client whose entry does not cover the account, or that has no entry while the setting
is set, is refused 403 `account_outside_client_scope` before anything about the account
is read, its listings included. The account must be a customer account of ours
(`account_not_found`) and, for a new mandate or stop, not closed (`account_closed`); a
frozen one is taken: the freeze refuses the debits themselves while it lasts (RJ03),
and the customer's authorisation or stop outlives it. A revocation or a lift needs the
mandate or stop in force (`mandate_not_found`, `debit_stop_not_found`), whatever the
account's state since.

Every change is the client's to make, on its customer's word, with no second person
here: the core system that relays the customer's instruction authorises it as it
authorises the customer's payments (DOMAIN.md §5 asks a second person for operators'
sensitive actions on payments; a customer's own standing instructions are not those).
Each change is kept with the client that asked (`beps_mandate_events`) and logged.

The POSTs are idempotent by key as every POST that makes something is (Idempotency-Key
required; the same key and request answer the stored result; the same key with another
request is 409; transfers, debits, periodic credits and these share one key space per
client, gateway.key_reuse); their bodies are checked as every JSON endpoint's
(`field_unknown`, `field_required`, `field_must_be_text`, the formats).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import intake, key_reuse, scope
from gateway.api import GATEWAY_KEY, authenticate, json_response, query_params, read_json
from gateway.beps import debits_in, debits_out, requests
from gateway.errors import (Conflict, Forbidden, NotFound, PaygateError, Problem,
                            ValidationFailed)

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("paygate.beps.mandates")

REASON_LEN_MAX = 60  # a stop's reason, in RjctInf after "payer stopped payment: "
TX_ID_LEN_MAX = 16
LIST_MAX = 1000  # mandates or stops of one account in one answer (`more` says if others)
MANDATE_FIELDS = {"account": True, "agreement": True}
STOP_FIELDS = {"account": True, "agreement": True, "tx_id": False, "reason": True}
LIFT_FIELDS = {"account": True, "agreement": True, "tx_id": False}
_EXPECTED = {"account": debits_out.ACCOUNT_EXPECTED,
             "agreement": f"text of 1 to {debits_out.AGREEMENT_LEN_MAX} characters",
             "tx_id": f"the TxId of one debit, up to {TX_ID_LEN_MAX} ASCII digits; left "
                      "out, null or empty: every debit under the agreement",
             "reason": f"text of 1 to {REASON_LEN_MAX} characters"}
# What a client may not do with an account outside its scope (gateway.scope.why_not).
USES = {"mandate": "authorise debits from", "revoke": "revoke debit mandates of",
        "stop": "stop debits from", "lift": "lift stop-payments of",
        "list": "read the debit mandates and stops of"}


def meaning(body: Any) -> Any:
    """What a mandate or stop request asks for: a `tx_id` left out, null or empty asks
    for every debit under the agreement alike."""
    if type(body) is not dict:
        return body
    return {name: value for name, value in body.items()
            if not (name == "tx_id" and value in (None, ""))}


def _kind(name: str, fields: dict[str, bool], thing: str) -> key_reuse.Kind:
    return key_reuse.Kind(name, meaning, tuple(fields), {}, thing)


# Each request as kept by its Idempotency-Key (gateway.key_reuse).
KINDS = {"mandate": _kind("debit_mandate", MANDATE_FIELDS, "mandate"),
         "revoke": _kind("debit_mandate_revoke", MANDATE_FIELDS, "revocation"),
         "stop": _kind("debit_stop", STOP_FIELDS, "stop-payment"),
         "lift": _kind("debit_stop_lift", LIFT_FIELDS, "lift of a stop-payment")}
FIELDS_OF = {"mandate": MANDATE_FIELDS, "revoke": MANDATE_FIELDS, "stop": STOP_FIELDS,
             "lift": LIFT_FIELDS}


def parse(body: Any, fields: dict[str, bool]) -> dict[str, str]:
    """A mandate or stop request's fields, every problem reported at once: an object of
    only these fields, each text, the required ones given, each in its format. The
    `tx_id` of a stop is "" for every debit under the agreement."""
    body = intake.nulls_left_out(body, intake.optional(fields))
    p = intake.check_shape(body, fields)
    wrong = intake.text_types(p, body, {name: _EXPECTED[name] for name in fields})
    texts = {name: body.get(name) for name in fields if name not in wrong}
    account = texts.get("account")
    if isinstance(account, str) and not intake.blank(account) \
            and not debits_out.ACCOUNT_PATTERN.fullmatch(account):
        p.add("account_malformed", "/account", account, _EXPECTED["account"])
    agreement = texts.get("agreement")
    if isinstance(agreement, str) and len(agreement.strip()) > debits_out.AGREEMENT_LEN_MAX:
        p.add("agreement_malformed", "/agreement", agreement, _EXPECTED["agreement"])
    reason = texts.get("reason")
    if isinstance(reason, str) and len(reason.strip()) > REASON_LEN_MAX:
        p.add("stop_reason_malformed", "/reason", reason, _EXPECTED["reason"])
    # Free texts, as a transfer's: no control or invisible characters (a NUL is one a
    # PostgreSQL database does not even store).
    for name in ("agreement", "reason"):
        intake.text_problem(p, f"/{name}", texts.get(name))
    tx_id = texts.get("tx_id") or ""
    if "tx_id" in fields and tx_id and not (
            tx_id.isascii() and tx_id.isdigit() and len(tx_id) <= TX_ID_LEN_MAX):
        p.add("field_malformed", "/tx_id", tx_id, _EXPECTED["tx_id"])
    p.raise_if_any(ValidationFailed)
    # The agreement is kept as a debit's AgrmtNb is read (its ends' spaces taken off,
    # gateway.messages.package), so the two compare equal; the reason as it goes out.
    out = {name: body[name] for name in fields if fields[name]}
    for name in ("agreement", "reason"):
        if name in out:
            out[name] = out[name].strip()
    if "tx_id" in fields:
        out["tx_id"] = tx_id
    return out


def check_account(gw: "Gateway", tx: Any, account_no: str, new: bool) -> None:
    """The account a mandate or stop names: a customer account of ours and, for a `new`
    one, not closed (a frozen one is taken: the freeze refuses the debits themselves)."""
    try:
        account = gw.ledger.account(tx, account_no, gw.work_date)
    except PaygateError:
        account = None
    if account is None or account.role != "customer":
        raise ValidationFailed(Problem(
            "account_not_found", "/account", account_no,
            "a customer account of ours: mandates and stops are our customers'"))
    if new and account.status == "closed":
        raise ValidationFailed(Problem("account_closed", "/account", account_no,
                                       "an open account (a frozen one is taken)"))


def _record(tx: Any, fields: dict[str, str], event: str, client: str | None,
            now: datetime) -> None:
    tx.execute("INSERT INTO beps_mandate_events (account_no, agreement_no, tx_id, event, "
               "client, at) VALUES (?, ?, ?, ?, ?, ?)",
               (fields["account"], fields["agreement"], fields.get("tx_id"), event, client,
                now.isoformat()))
    log.info("event=beps_%s account=%s agreement=%s tx_id=%s client=%s", event,
             fields["account"], fields["agreement"], fields.get("tx_id", ""), client)


def add_mandate(gw: "Gateway", tx: Any, fields: dict[str, str], client: str | None,
                now: datetime) -> dict[str, Any]:
    """Register the mandate (`new` false when it is in force already)."""
    check_account(gw, tx, fields["account"], new=True)
    new = debits_in.add_mandate(tx, fields["account"], fields["agreement"], now)
    if new:
        _record(tx, fields, "mandate_registered", client, now)
    return {"account": fields["account"], "agreement": fields["agreement"], "new": new,
            "registered_at": _mandate_since(tx, fields)}


def _mandate_since(tx: Any, fields: dict[str, str]) -> str | None:
    """When the mandate in force was registered; None when there is none."""
    row = tx.query_one("SELECT created_at FROM beps_mandates WHERE account_no = ? AND "
                       "agreement_no = ?", (fields["account"], fields["agreement"]))
    return None if row is None else row[0]


def revoke_mandate(gw: "Gateway", tx: Any, fields: dict[str, str], client: str | None,
                   now: datetime) -> dict[str, Any]:
    """Withdraw the mandate: a debit under it answered from now on is refused (RJ01),
    one the screening holds included (gateway.beps.debit_review); one paid before stays
    paid (a paid debit is returned, not revoked)."""
    check_account(gw, tx, fields["account"], new=False)
    registered_at = _mandate_since(tx, fields)
    if registered_at is None:
        raise NotFound(Problem("mandate_not_found", "/agreement", fields["agreement"],
                               f"an agreement account {fields['account']} has a mandate "
                               "for (GET /v1/debit-mandates?account=...)"))
    tx.execute("DELETE FROM beps_mandates WHERE account_no = ? AND agreement_no = ?",
               (fields["account"], fields["agreement"]))
    _record(tx, fields, "mandate_revoked", client, now)
    return {"account": fields["account"], "agreement": fields["agreement"],
            "registered_at": registered_at, "revoked_at": now.isoformat()}


def add_stop(gw: "Gateway", tx: Any, fields: dict[str, str], client: str | None,
             now: datetime) -> dict[str, Any]:
    """Record the stop (`new` false when the same stop, with the same reason, is in force
    already). One in force under another reason is refused: its reason is the one a
    debit is refused with (RJ06), and a stop changes it only by a lift and a new stop."""
    check_account(gw, tx, fields["account"], new=True)
    key = (fields["account"], fields["agreement"], fields["tx_id"])
    new = debits_in.add_stop(tx, *key, fields["reason"], now)
    if new:
        _record(tx, fields, "stop_registered", client, now)
    reason, stopped_at = _stop_in_force(tx, key)
    if reason != fields["reason"]:
        raise Conflict(Problem(
            "debit_stop_in_force_with_other_reason", "/reason", fields["reason"],
            f"the reason of the stop in force: {reason}",
            f"a stop is in force since {stopped_at} with reason {reason!r}, which the "
            "debits it covers are refused with: lift it (POST /v1/debit-stops/lift) and "
            "stop again to give another reason"))
    return _stop_view(*key, reason, stopped_at, new=new)


def _stop_in_force(tx: Any, key: tuple[str, str, str]) -> tuple[str, str]:
    """The reason and time of the stop in force under (account, agreement, tx_id)."""
    row = tx.query_one("SELECT reason, created_at FROM beps_debit_stops WHERE account_no = ? "
                       "AND agreement_no = ? AND tx_id = ?", key)
    assert row is not None, f"the stop {key} is in force"
    return row[0], row[1]


def lift_stop(gw: "Gateway", tx: Any, fields: dict[str, str], client: str | None,
              now: datetime) -> dict[str, Any]:
    """Lift the stop: the debits it stopped are answered by the other rules from now on
    (one refused already stays refused)."""
    check_account(gw, tx, fields["account"], new=False)
    key = (fields["account"], fields["agreement"], fields["tx_id"])
    row = tx.query_one("SELECT reason, created_at FROM beps_debit_stops WHERE account_no = ? "
                       "AND agreement_no = ? AND tx_id = ?", key)
    if row is None:
        raise NotFound(Problem(
            "debit_stop_not_found", "/tx_id" if fields["tx_id"] else "/agreement",
            fields["tx_id"] or fields["agreement"],
            f"a stop-payment in force on account {fields['account']} "
            "(GET /v1/debit-stops?account=...)"))
    tx.execute("DELETE FROM beps_debit_stops WHERE account_no = ? AND agreement_no = ? AND "
               "tx_id = ?", key)
    _record(tx, fields, "stop_lifted", client, now)
    return dict(_stop_view(*key, row[0], row[1]), lifted_at=now.isoformat())


def _stop_view(account: str, agreement: str, tx_id: str, reason: str, stopped_at: str,
               **more: Any) -> dict[str, Any]:
    return {"account": account, "agreement": agreement, "tx_id": tx_id or None,
            "reason": reason, "stopped_at": stopped_at, **more}


ACTIONS = {"mandate": add_mandate, "revoke": revoke_mandate, "stop": add_stop,
           "lift": lift_stop}
STATUS = {"mandate": 201, "revoke": 200, "stop": 201, "lift": 200}


async def change(gw: "Gateway", action: str, body: Any, client: str | None = None,
                 idem_key: str | None = None) -> tuple[int, dict[str, Any]]:
    """Make one of ACTIONS: under the client's Idempotency-Key when given (the API's
    requests), else once as asked (the gateway's own, `client` None: the demo)."""
    try:
        fields = parse(body, FIELDS_OF[action])
    except PaygateError as exc:
        if idem_key is None:
            raise
        return await requests.refused(gw, client or "", idem_key, body, KINDS[action], exc)
    now = gw.clock.now()
    run = ACTIONS[action]
    if idem_key is None:
        return STATUS[action], await gw.store.run(lambda tx: run(gw, tx, fields, client, now))
    status, view, _ = await gw.store.run(lambda tx: requests.submit_once(
        tx, client or "", idem_key, body, KINDS[action], now,
        lambda tx: run(gw, tx, fields, client, now), STATUS[action]))
    return status, view


# The endpoints

def _handler(action: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        gw = request.app[GATEWAY_KEY]
        scopes = gw.settings.api_balance_accounts

        async def stored(client: str, key: str, body: Any) -> tuple[int, Any] | None:
            if scope.names_outside(scopes, client, body, "/account"):
                return None  # no lookup for an account outside the scope: the 415 stands
            return await gw.store.run(lambda tx: requests.stored_answer(
                tx, client, key, body, KINDS[action]))
        client, body = await read_json(request, stored=stored)
        # Before anything about the account is read or told (gateway.scope).
        scope.refuse_payment(scopes, client, body, "/account", USES[action])
        key = requests.require_key(request.headers.get("Idempotency-Key"))
        status, view = await change(gw, action, body, client, key)
        return json_response(view, status)
    return handle


def _lister(name: str, table: str, columns: str, order: str, view: Any) -> Any:
    """GET of the `name` (mandates, stops) in force on one account, from `table`."""
    async def handle(request: web.Request) -> web.Response:
        client = await authenticate(request, b"")
        gw = request.app[GATEWAY_KEY]
        query, problems = query_params(request, ("account",))
        account = query.get("account")
        if "account" not in request.query:
            problems.append(Problem("query_parameter_required", "?account", None,
                                    "?account=<a customer account of ours>"))
        if problems:
            raise ValidationFailed(problems)
        scopes = gw.settings.api_balance_accounts
        if not scope.covers(scopes, client, account):
            log.warning("event=payment_account_forbidden client=%s account=%s path=%s",
                        client, account, request.path)
            raise Forbidden(Problem(scope.ACCOUNT_OUT_OF_SCOPE, "?account", account,
                                    "an account the client's entry in api_balance_accounts "
                                    "covers", scope.why_not(scopes, client, account,
                                                            USES["list"])))

        def work(tx: Any) -> dict[str, Any]:
            try:
                check_account(gw, tx, account, new=False)
            except PaygateError as exc:
                raise NotFound([Problem(p.code, "?account", p.value, p.expected)
                                for p in exc.problems]) from None
            rows = tx.query(f"SELECT {columns} FROM {table} WHERE account_no = ? "
                            f"ORDER BY {order} LIMIT ?", (account, LIST_MAX + 1))
            shown = [view(account, *row) for row in rows[:LIST_MAX]]
            return {"account": account, "count": len(shown), "more": len(rows) > LIST_MAX,
                    name: shown}
        return json_response(await gw.store.run(work))
    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/debit-mandates", _handler("mandate"))
    app.router.add_post("/v1/debit-mandates/revoke", _handler("revoke"))
    app.router.add_get("/v1/debit-mandates", _lister(
        "mandates", "beps_mandates", "agreement_no, created_at", "agreement_no",
        lambda account, agreement, at: {"agreement": agreement, "registered_at": at}))
    app.router.add_post("/v1/debit-stops", _handler("stop"))
    app.router.add_post("/v1/debit-stops/lift", _handler("lift"))
    app.router.add_get("/v1/debit-stops", _lister(
        "stops", "beps_debit_stops", "agreement_no, tx_id, reason, created_at", "agreement_no, tx_id",
        lambda account, agreement, tx_id, reason, at: _stop_view(account, agreement, tx_id,
                                                                 reason, at)))
