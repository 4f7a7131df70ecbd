"""Applying a suspense item to the customer account it belongs to (销账).

An incoming credit the ledger could not credit (its account unknown or closed, its payee
name not the holder's, its payee bank not the branch keeping the account) waits in
suspense under a pending write-off number (待销账序号, DOMAIN.md §4) until its owner is
found or it is returned. Once a person has found the owner (the customer confirms a
shortened name, the account was named at the wrong branch), an operator asks for the item
to be applied to that customer's account, with a note saying why the money is that
account's, and a supervisor or director approves (DOMAIN.md §5: moving money needs a
second person; nobody approves their own request).

The item is named by its pending write-off number or by its payment's id; the request
records the payment as its target (so it shows with the payment and its amount) and the
pending number and the account as its parameters, which the approver sees.

When it runs, in one transaction:

- the ledger posts Dr suspense, Cr the account (`clear_suspense`, a special transfer
  voucher that depends on the entry that parked the money) and the item is `cleared`;
- the application is recorded (`exc_suspense_applied`), so that a later return of the
  payment (the customer asks for it to go back) takes the money from the account it went
  to, never from the account the message named;
- the payment goes from `suspense` to `credited` (event `suspense_applied`, with the
  account, pending number, ledger entry, request, approver and note), which the core
  system is told like any change of state (its webhook, its history).

It is refused when asked, and again when it runs (the item may move before a second
person approves), with the rule that failed: the item unknown (`suspense_item_not_found`),
not a payment in suspense (`payment_not_in_suspense`), applied or returned already
(`suspense_item_not_open`), its return under way (`return_already_requested`), a pending
number that is not the payment's (`pending_no_not_of_payment`), the account no customer
account of ours (`account_not_found`) or closed (`account_closed`), or one whose number
or holder's name the screening matches (`account_screened`: the money goes to that
holder, whom the screening of the message never read). A frozen account takes the
credit, as it takes any incoming credit: a freeze stops money leaving it.

A credit the screening parked in suspense (its reason `screening_...`,
gateway.screening.parked) is applied the same way: the approval is the decision that
the match is not the listed party (the hit passed), and its `suspense_applied` event
says so (`passed`, the screening's reason). The account it goes to is screened as any
other's, its payee's own included, and so is its payer, less the one value the approval
passes: the value that parked it, not the field (`passes`). A customer moving its own
money to us (the payer's name the holder's), parked for its payer's name, is applied to
its account; any other match refuses it (the holder listed under another name, a payee
listed besides the payer the credit was parked for, the list grown since). Parked, it
was never credited: applied, it is credited once, from suspense. Every credit applied
has its payer screened again (`check_payer_screened`): the list may have grown since it
came.

Only incoming payments in suspense are applied here. A debit of ours whose money went
to suspense (alerts `debit_credit_to_suspense`, `debit_paid_after_end`) is applied by
the same console action through gateway.exceptions.debit_suspense, which posts with
`clear` below and tells the core system by its own rule.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from gateway import intake, payments, screening
from gateway.errors import (
    Conflict,
    NotFound,
    PaygateError,
    Problem,
    ValidationFailed,
    field_required,
    not_text,
)
from gateway.exceptions import schema
from gateway.ops.review import normalise, normalise_account
from gateway.store import NOT_READ, answered, id_chunks, reading_once
from ledger import numbers
from ledger.chart import SUSPENSE

EVENT = "suspense_applied"
# What an application's note must say: it stays with the request, the audit and the
# payment's history as the voucher's reason.
NOTE_EXPECTED = ("why the money is this account's (the customer confirmed, the branch was "
                 "named wrongly, ...): a note is required to apply a suspense item")
_ACCOUNT = re.compile(r"[0-9A-Za-z-]{1,32}")
# Ledger refusals named at the request's own fields.
_ACCOUNT_EXPECTED = "1 to 32 ASCII letters, digits or hyphens"
_REQUEST_FIELDS = {"account_no": "/params/account", "pending_no": "/params/pending_no"}


def is_pending_no(text: Any) -> bool:
    """A pending write-off number of an incoming item (kind 1, MMDD, sequence)."""
    return numbers.validate_pending_no(text) and text[0] == numbers.PENDING_KIND_INCOMING


def params_problems(params: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The request's `account` (required) and `pending_no` (optional: the item's own,
    when the request names it by its payment); the clean params and every problem."""
    clean: dict[str, Any] = {}
    problems = []
    account = params.get("account")
    if intake.blank(account):
        problems.append(field_required("/params/account", account, "account" in params,
                                       "the customer account the suspense item is applied "
                                       "to"))
    elif (wrong_type := not_text("/params/account", account, _ACCOUNT_EXPECTED)) is not None:
        problems.append(wrong_type)
    elif not _ACCOUNT.fullmatch(account):
        problems.append(Problem("account_malformed", "/params/account", account,
                                _ACCOUNT_EXPECTED))
    else:
        clean["account"] = account
    return clean, problems + pending_no_problems(params, clean)


def pending_no_problems(params: dict[str, Any], clean: dict[str, Any]) -> list[Problem]:
    """The request's optional `pending_no`, added to `clean` when well formed."""
    pending_no = params.get("pending_no")
    expected = ("a pending write-off number of an incoming item: 9 ASCII digits, 1 then "
                "MMDD then a sequence from 0001")
    wrong_type = not_text("/params/pending_no", pending_no, expected)
    if wrong_type is not None:  # 100070001 unquoted: the digits, but not as text
        return [wrong_type]
    if pending_no is not None and not is_pending_no(pending_no):
        return [Problem("field_malformed", "/params/pending_no", pending_no, expected)]
    if pending_no is not None:
        clean["pending_no"] = pending_no
    return []


def note_problems(note: str) -> list[Problem]:
    return [] if note.strip() else [Problem("note_required", "/note", note, NOTE_EXPECTED)]


def read_target(gw: Any, tx: Any, target: str, params: dict[str, Any]
                ) -> tuple[str, dict[str, Any]]:
    """The payment a request names (by its id, or its item's pending write-off number)
    and the params recorded: the item's pending number always among them."""
    if is_pending_no(target) and not _payment_exists(tx, target):
        try:
            item = gw.ledger.suspense_item(tx, target)
        except PaygateError:
            raise NotFound(Problem(
                "suspense_item_not_found", "/target", target,
                "the pending write-off number of a suspense item, or its payment's id",
                f"no suspense item has pending write-off number {target}")) from None
        named = params.get("pending_no")
        if named is not None and named != target:
            raise ValidationFailed(Problem(
                "pending_no_not_of_payment", "/params/pending_no", named,
                f"{target}, the item the target names, or no pending_no"))
        return item.ref, {**params, "pending_no": target}
    payment = payments.get(tx, target)
    return target, {**params, "pending_no": params.get("pending_no") or payment["pending_no"]}


def _payment_exists(tx: Any, payment_id: str) -> bool:
    return tx.query_one("SELECT 1 FROM payments WHERE id = ?", (payment_id,)) is not None


def check_appliable(gw: Any, tx: Any, payment_id: str, params: dict[str, Any]) -> None:
    """Refuse an application that could not run now (reads only). Without an `account`
    (a payment's detail asking what it may offer) the item alone is checked."""
    payment = payments.get(tx, payment_id)
    check_item(gw, tx, payment, params.get("pending_no"))
    if "account" in params:
        check_account(gw, tx, params["account"])
        check_holder_screened(gw, tx, payment, params["account"])
    # Whatever the account: a credit whose payer is listed is not offered for applying.
    check_payer_screened(gw, payment)


def check_item(gw: Any, tx: Any, payment: dict[str, Any], pending_no: str | None) -> None:
    pid, own = payment["id"], payment["pending_no"]
    if payment["direction"] == "in" and own and payment["state"] in ("credited", "returned"):
        done = schema.applied(tx, pid)
        raise Conflict(Problem(
            "suspense_item_not_open", "/id", payment["state"], "an item still in suspense",
            f"suspense item {own} of payment {pid} was applied to account "
            f"{done['account_no']} already" if done else
            f"suspense item {own} of payment {pid} is no longer in suspense: it is "
            f"{payment['state']}"))
    if payment["direction"] != "in" or payment["state"] != "suspense":
        raise ValidationFailed(Problem("payment_not_in_suspense", "/id", payment["state"],
                                       "an incoming payment in suspense"))
    check_open(gw, tx, payment, pending_no, "the sender")


def suspense_item(gw: Any, tx: Any, pending_no: str) -> Any:
    """The ledger's suspense item under `pending_no`; inside `items_read_once`, answered
    from that read."""
    item = answered(tx, _ITEMS_READ_ONCE, pending_no)
    return gw.ledger.suspense_item(tx, pending_no) if item in (NOT_READ, None) else item


def items_read_once(gw: Any, tx: Any, pending_nos: list[str]
                    ) -> AbstractContextManager[dict[Any, Any]]:
    """The suspense items of these numbers read in one statement (a few for a long list),
    and within the block `suspense_item` answers from that read (store.reading_once):
    for checks that only read (the console's row actions). A number the ledger has no
    item under is asked again, and refused as ever."""
    items: dict[Any, Any] = {}
    for chunk in id_chunks(list(dict.fromkeys(pending_nos))):
        items.update(gw.ledger.suspense_items(tx, chunk))
    return reading_once(tx, _ITEMS_READ_ONCE, items)


_ITEMS_READ_ONCE = "exc_suspense_items"


def check_open(gw: Any, tx: Any, payment: dict[str, Any], pending_no: str | None,
               back_to: str) -> None:
    """The payment's suspense item (named by `pending_no`, when given) is still open in
    the ledger and no return of it, to `back_to`, is under way (reads only)."""
    pid, own = payment["id"], payment["pending_no"]
    if pending_no is not None and pending_no != own:
        raise ValidationFailed(Problem(
            "pending_no_not_of_payment", "/params/pending_no", pending_no,
            f"{own}, the pending write-off number of payment {pid}, or no pending_no"))
    item = suspense_item(gw, tx, own)
    if item.state != "open":
        done = schema.applied(tx, pid)
        raise Conflict(Problem(
            "suspense_item_not_open", "/id", item.state, "an item still in suspense",
            f"suspense item {own} of payment {pid} was applied to account "
            f"{done['account_no']} already" if done else
            f"the ledger has suspense item {own} {item.state}"))
    under_way = schema.open_return_of(tx, pid)
    if under_way is not None:
        raise Conflict(Problem(
            "return_already_requested", "/id", pid, "a suspense item not being returned",
            f"return {under_way['return_id']} of it is {under_way['state']}; the money "
            f"goes back to {back_to} unless that return fails"))


def check_account(gw: Any, tx: Any, account_no: str) -> None:
    """A customer account of ours that is not closed."""
    try:
        account = gw.ledger.account(tx, account_no, gw.work_date)
    except PaygateError:
        account = None
    if account is None or account.role != "customer":
        raise ValidationFailed(Problem("account_not_found", "/params/account", account_no,
                                       "a customer account of ours"))
    if account.status == "closed":
        raise Conflict(Problem("account_closed", "/params/account", account_no,
                               "an open customer account",
                               f"account {account_no} is closed and takes no credit"))


def check_holder_screened(gw: Any, tx: Any, payment: dict[str, Any], account_no: str
                          ) -> None:
    """The screening clears the account a suspense item goes to and its holder's name
    (an open customer account of ours, checked before), read as the payee: money an
    operator applies was never screened against that holder (the name the message gave
    was not the holder's, the account it named is not the one chosen, the list has grown
    since). A credit the screening parked is screened too, at whatever account: its
    approval passes the value that parked it, not the field (`passes`), so a match of
    the account's number is passed when the credit was parked for an account of the
    message that is this number, a match of the holder's name when it was parked for a
    name of the message that is this holder's; any other match (the holder listed under
    another name, a credit parked for its payer whose payee is listed too, the list
    grown since) refuses the application."""
    parked = payment if screening.is_parked(payment) else None
    holder = gw.ledger.account(tx, account_no, gw.work_date).name
    found = next((hit for hit, value in screening.hits(gw, "payee", account_no, holder)
                  if not passes(parked, hit, value)), None)
    if found is None:
        return
    why = f", parked by the screening ({payment['reason']})," if parked else ""
    raise Conflict(Problem(
        "account_screened", "/params/account", account_no,
        "an account whose number and holder the screening does not match",
        f"the screening matches account {account_no} of {holder} "
        f"({found}, its holder read as the payee): the suspense item of payment "
        f"{payment['id']}{why} is not applied to a listed party"))


def check_payer_screened(gw: Any, payment: dict[str, Any]) -> None:
    """The screening clears the incoming credit's payer (its account and name as the
    message gave them, read as the payer) before its money is applied, whatever the
    account: the list may have grown since the credit came (a debit of ours has its
    own, debit_suspense.check_payer_screened). A credit the screening parked passes the
    value that parked it (`passes`); any other match refuses (`account_screened`, at
    `/target`, naming the payer)."""
    parked = payment if screening.is_parked(payment) else None
    found = next(((hit, value) for hit, value in screening.hits(
        gw, "payer", payment["payer_account"] or "", payment["payer_name"] or "")
        if not passes(parked, hit, value)), None)
    if found is None:
        return
    why = f", parked by the screening ({payment['reason']})," if parked else ""
    raise Conflict(Problem(
        "account_screened", "/target", found[1],
        "a credit whose payer the screening does not match",
        f"the screening matches the payer of payment {payment['id']}, "
        f"{payment['payer_name']} (account {payment['payer_account']} at "
        f"{payment['payer_bank']}; {found[0]}): its suspense item{why} is not applied "
        "to our customer; return it to the bank that sent it"))


# The screening's reasons an approval passes the value of: the message's field each names.
_MATCH_PREFIX = "screening_match_"
_PASSABLE = ("payer_account", "payer_name", "payee_account", "payee_name")


def passes(parked: dict[str, Any] | None, hit: str, value: str) -> bool:
    """Whether the approval of the credit `parked` (None: not parked by the screening)
    passes the screening's match `hit` on `value`: the approval passes the value that
    parked it, not the field. A match of an account is passed when the credit was parked
    for an account field of its message (`screening_match_payer_account` or
    `_payee_account`) whose value is that account; a match of a name when it was parked
    for a name field whose value is that name (each compared as the screening compares
    them). Any other match is not passed."""
    if parked is None:
        return False
    field = (parked["reason"] or "").removeprefix(_MATCH_PREFIX)
    kind = hit.rsplit("_", 1)[-1]
    if field not in _PASSABLE or not field.endswith(f"_{kind}"):
        return False
    same = normalise_account if kind == "account" else normalise
    return same(value) == same(parked[field] or "")


def apply_tx(gw: Any, tx: Any, payment_id: str, params: dict[str, Any], by: str, note: str,
             request_id: int, now: datetime, approved_by: str | None = None
             ) -> dict[str, Any]:
    """Apply the payment's suspense item to the account the params name, checked again
    with the payment locked (against the automatic return and other processes); `by`
    asked for it and `approved_by` approved it, both in the history."""
    payment = payments.get(tx, payment_id, lock=True)
    check_item(gw, tx, payment, params.get("pending_no"))
    check_account(gw, tx, params["account"])  # an account of ours, before its holder's screening
    check_holder_screened(gw, tx, payment, params["account"])
    check_payer_screened(gw, payment)
    pending_no, account, entry_id = clear(gw, tx, payment, params["account"], by, note, now)
    # A credit the screening parked: the approval passed the hit, which the history keeps.
    passed = {"passed": payment["reason"]} if screening.is_parked(payment) else {}
    payments.transition(tx, payment, "credited", EVENT, now, gw.notifier, account=account,
                        pending_no=pending_no, ledger_entry=entry_id, request=request_id,
                        by=by, **payments.approval(approved_by), note=note, **passed)
    screening.close_decided(tx, payment, f"payment {payment_id} applied to account "
                                         f"{account} by request {request_id}", now)
    return {"payment": payment_id, "state": "credited", "account": account,
            "pending_no": pending_no, "ledger_entry": entry_id}


def clear(gw: Any, tx: Any, payment: dict[str, Any], account: str, by: str, note: str,
          now: datetime) -> tuple[str, str, int]:
    """Post the payment's suspense item to `account` (checked again) and record the
    application; (pending number, account, ledger entry). Its event id is the
    payment's, so a retry posts nothing twice."""
    check_account(gw, tx, account)
    payment_id, pending_no = payment["id"], payment["pending_no"]
    try:
        entry_id = gw.ledger.clear_suspense(tx, f"{payment_id}:{EVENT}", pending_no, account,
                                            gw.work_date)
    except PaygateError as exc:
        raise intake.as_request_fields(exc, _REQUEST_FIELDS) from None
    schema.add_applied(tx, payment_id, pending_no, account, entry_id, by, note, now)
    schema.unkeep(tx, payment_id)  # nothing is left for the automatic return to take
    return pending_no, account, entry_id


def suspense_payer(gw: Any) -> tuple[str, str, str]:
    """The payer of a return made from suspense (DOMAIN.md §4: a pending write-off item
    returned to the sender), as (bank, account, name): the money leaves the ledger's
    suspense account (2241), so that account pays, at the branch whose books hold it and
    under that branch's name (in the CNAPS directory, else in our institutions). The
    branch is the ledger's institution's (`gw.account_bank`), or our direct participant
    when that institution has no bank code; never the bank the original named as its
    payee, which may be another of our branches that keeps no books of its own (SPEC.md:
    DbtrAgt/BrnchId and DbtrAcct Issr name the payer's account bank). Never the account
    the original named either: that account was not credited, and may be no customer's
    at all."""
    account = gw.ledger.internal_accounts[SUSPENSE]
    branch = gw.account_bank or gw.settings.bank_code
    listed = gw.router.directory.find(branch, gw.work_date)
    if listed is not None:
        return branch, account, listed.name
    kept = gw.router.institutions.by_bank_code(branch)
    if kept is not None:
        return branch, account, kept.name
    raise ValidationFailed(Problem(
        "bank_code_unknown", "/payer/bank", branch,
        f"a bank code in the directory in force on {gw.work_date.isoformat()}",
        f"our branch {branch} has no name in the directory or our institutions: a return "
        "from suspense is paid in its name"))


def party_credited(gw: Any, tx: Any, payment: dict[str, Any]) -> tuple[str, str]:
    """The account an incoming credited payment's money went to and the name to give
    its holder: the account its suspense item was applied to under the name the books
    hold it under, else the account and name its message gave."""
    done = schema.applied(tx, payment["id"])
    if done is None:
        return payment["payee_account"], payment["payee_name"]
    account = done["account_no"]
    return account, gw.ledger.holder_names(tx, [account]).get(account, payment["payee_name"])
