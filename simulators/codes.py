"""Processing codes (PrcCd) and reject texts the simulated NPC uses.

No public table of CNAPS2 processing codes exists (SPEC.md d.3): only their shape, four
characters naming the checking stage and four digits where 0000 means no error. The
simulator's own codes keep that shape so that the gateway stores and shows them like
real ones; docs/simulator.md lists them.
"""

from __future__ import annotations

from typing import NamedTuple


class Reason(NamedTuple):
    code: str   # PrcCd, 8 characters
    text: str   # RjctInf, at most 105 characters


SETTLED = Reason("HV0I0000", "settled")
QUEUED = Reason("HV0Q0000", "queued for settlement: the clearing account is short")
CANCELLED_AT_DAY_END = Reason("HV0C0001", "cancelled: still queued at the end of the "
                              "clearing window")
OUTSIDE_HOURS = Reason("HV0E0001", "outside HVPS business hours")
RECEIVER_UNKNOWN = Reason("HV0E0002", "the receiving clearing bank is not a participant")
SENDER_NOT_PAYER = Reason("HV0E0003", "the sender is not the payer's clearing bank")
RULE_BROKEN = Reason("HV0E0004", "business rule broken")
TYPE_NOT_SUPPORTED = Reason("HV0E0009", "message type not handled by the simulated NPC")

# ccms.911 discard codes, by the stage that refused the message.
DISCARD_SIGNATURE = Reason("CC9S0001", "signature check failed")
DISCARD_FORMAT = Reason("CC9F0001", "message format check failed")
DISCARD_ADDRESS = Reason("CC9A0001", "receiver is not a participant")

REJECT_INFO_LEN_MAX = 105  # RjctInf is Max105Text


def reject_text(reason: Reason, detail: str = "") -> str:
    """RjctInf: the reason's text and an optional detail, cut to the schema's bound."""
    text = f"{reason.text}: {detail}" if detail else reason.text
    return text[:REJECT_INFO_LEN_MAX]
