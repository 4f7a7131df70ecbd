"""Periodic credits (beps.125, 定期贷记, business type E100): salaries, pensions.

The core system asks with POST /v1/periodic-credits: a transfer as POST /v1/transfers
takes it (without urgency), plus the `agreement` the payer signed for the schedule.
The router places ordinary credits only, so this endpoint routes a periodic credit
itself: always BEPS, as beps.125, to the payee bank's direct participant, within the
BEPS cap for E100. From there it is a credit like any other: held, packed (beps.125
packages of their own), netted, settled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway import intake, jsontext, key_reuse, payments
from gateway.beps import items, review_hold
from gateway.beps.build import name_problems
from gateway.beps.debits_out import AGREEMENT_LEN_MAX
from gateway.errors import Problem, ProblemList, ValidationFailed
from gateway.messages import beps125
from routing import RouteDecision

PERIODIC_TYPE = "E100"
DEFAULT_KIND = "01200"  # 薪金报酬 salaries
DEFAULTS = {"currency": "CNY", "business_type": PERIODIC_TYPE, "business_kind": DEFAULT_KIND}


def parse(body: Any, own_banks: frozenset[str]) -> tuple[intake.Transfer, str]:
    """The transfer and its agreement, with every problem reported at once."""
    if not isinstance(body, dict):
        raise ValidationFailed(Problem("body_must_be_a_json_object", "/",
                                       jsontext.type_name(body), "a JSON object"))
    fields = intake.nulls_left_out(dict(body))  # null is left out, as for a transfer
    agreement = fields.pop("agreement", None)
    fields.setdefault("business_type", PERIODIC_TYPE)
    fields.setdefault("business_kind", DEFAULT_KIND)
    p = ProblemList()
    expected = f"text of 1 to {AGREEMENT_LEN_MAX} characters"
    wrong_type = p.not_text("/agreement", agreement, expected)
    if not wrong_type and intake.blank(agreement):
        # Left out, null or only spaces: missing, as a debit's agreement is told.
        p.required("/agreement", agreement, "agreement" in body, expected)
    elif not wrong_type and len(agreement) > AGREEMENT_LEN_MAX:
        p.add("agreement_malformed", "/agreement", agreement, expected)
    if "urgency" in fields or "when_closed" in fields:
        p.add("field_unknown", "/urgency", fields.get("urgency"),
              "no urgency: periodic credits go by BEPS")
    if fields["business_type"] != PERIODIC_TYPE:
        p.add("business_type_not_allowed_for_message", "/business_type",
              fields["business_type"], f"{PERIODIC_TYPE} in beps.125")
    try:
        transfer = intake.parse_transfer(fields, own_banks)
    except ValidationFailed as exc:
        p.extend(exc.problems)
        transfer = None
    p.extend(name_problems(fields))
    p.raise_if_any(ValidationFailed)
    assert transfer is not None and isinstance(agreement, str)
    return transfer, agreement


def meaning(body: Any) -> Any:
    """What a periodic credit request asks for, the same for every spelling of it, as a
    transfer's is read (intake.transfer_meaning) with this endpoint's defaults (E100,
    kind 01200, CNY), null on an optional field the same as leaving it out. It takes no
    urgency nor when_closed, so those given a value stay as written (and are refused);
    the payer name is compared as a transfer's is, folded as the holder's
    name is matched, since it goes out as the holder's whatever its spelling (`record`)."""
    return intake.transfer_meaning(body, DEFAULTS, nullable=intake.OPTIONAL)


# A periodic credit request as kept by its Idempotency-Key (gateway.key_reuse): a
# transfer's fields but the urgency, and the agreement.
KIND = key_reuse.Kind("periodic_credit", meaning,
                      (*(name for name in key_reuse.KEPT if name != "urgency"), "agreement"),
                      DEFAULTS, "periodic credit")


def record(tx: Any, gw: Any, t: intake.Transfer, agreement: str, receiver: str,
           now: datetime, client: str | None = None) -> dict[str, Any]:
    """Hold the payer's funds and record the periodic credit waiting to be packed.

    The payer is checked and held as a transfer's is (Gateway.hold_for): its name must be
    the account holder's (width, case and spaces aside) and its bank the branch that
    keeps the account, every refusal told with the hold's own; the credit then goes out
    under the holder's name as the books write it, never as typed."""
    work_date = gw.work_date
    decision = RouteDecision(channel="beps", action="send",
                             message_type=beps125.MESSAGE_TYPE, priority=3,
                             settlement_priority="NORM", sender_direct=gw.settings.bank_code,
                             receiver_direct=receiver, rule="beps_periodic")
    payment_id, msg_id, e2e = intake.new_ids(tx, work_date, t.payer_bank)
    typed = t.payer_name
    hold_id, t = gw.hold_for(tx, t, payment_id, work_date)
    # The holder's name, which the credit goes out under, may be longer than the one typed.
    too_long = name_problems(t._asdict(), {"payer_name": typed})
    if too_long:
        raise ValidationFailed(too_long)
    row = intake.record_outgoing(tx, t, decision, work_date=work_date, now=now,
                                 hold_id=str(hold_id), state="accepted",
                                 payment_id=payment_id, msg_id=msg_id, end_to_end_id=e2e,
                                 client=client)
    # Screened and reviewed as every outgoing credit is (Gateway.intake_hold): one held
    # is set aside, out of packing, until a supervisor passes it.
    hold = gw.intake_hold(t)
    items.add(tx, payment_id, items.CREDIT_OUT, receiver, beps125.MESSAGE_TYPE, t.amount_fen,
              now, agreement=agreement, package_id=None if hold is None else items.HELD_OUT)
    if hold is not None:
        row = review_hold.held(tx, gw, row, hold, now)
    return payments.public_view(row)
