"""What a ready hvps.111 from the core system (POST /v1/messages) must say besides its
payment: an envelope header that agrees with us, agents that agree with the participant
directory, a creation time near now. The gateway never rewrites what a message says: a
field that disagrees is refused by name, both values shown.

- Envelope header (`{H:`), when the message carries one: it is the core system's
  statement of where the message goes, and must say what the gateway's own header will
  say: version 02, sent by our direct participant, to the final receiving participant
  (SPEC.md a.1, OrigReceiver: the payee bank's direct participant, as for InstdAgt
  below), upward (U); its type must agree with the body (codec:
  `header_type_disagrees_with_body`). The header must also be the one of this body:
  its send date (OrigSendDate, the sender's date) is the date of the body's CreDtTm
  (报文发送时间, the same moment: every sample's header carries CreDtTm's date and
  time), and its message reference (MesgRefID) names the body's MsgId, in the form
  every bank-sent sample gives it (SPEC.md a.1 and the samples; SPEC.md e.2 knows no
  rule beyond them): the MsgId's date and its sequence widened to 12 digits
  (`2024052000000101` → `20240520000000000101`), or the MsgId itself. A header that
  disagrees was written for another message. A MsgId longer than the 20 characters
  of MesgRefID cannot be carried there, and is not compared. The gateway sends the
  body under a header of its own (a MesgID of its numbering, the system of the channel
  routing chose), so the header's MesgID, send time and system codes are not compared.
- Agents (SPEC.md c, hvps.111): InstgAgt/BrnchId is the payer's bank (DbtrAgt) and
  InstdAgt/BrnchId the payee's bank (CdtrAgt); InstdAgt's member id is the payee bank's
  direct participant as the directory gives it on the work date (the participant the
  router sends to). InstgAgt is our direct participant (api: `instructing_agent_not_ours`).
- CreDtTm: at most CREATED_BEFORE_NOW_MAX_S before the clock's now and at most
  CREATED_AFTER_NOW_MAX_S after it (a time without an offset is Beijing time). A
  message created days ago or years ahead is a stale or mistyped one, not a payment to
  send now.
- EndToEndId is the core system's own reference: neither SPEC.md nor DOMAIN.md says how
  it is formed, so only its form (the schema) and its uniqueness (gateway.ready) are
  checked, not a bank-code prefix.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from gateway.clock import parse_business_datetime
from gateway.errors import Problem, ProblemList
from gateway.intake import text_problem
from gateway.messages import hvps111
from gateway.messages.envelope import Header
from gateway.ready import PATHS

HEADER_VERSION = "02"  # the only envelope version the gateway speaks (SPEC.md a.1)
# A day back covers a message written at the end of one business day and sent the next
# morning; an hour ahead covers a core system whose clock runs ahead of ours.
CREATED_BEFORE_NOW_MAX_S = 24 * 3600
CREATED_AFTER_NOW_MAX_S = 3600


def header_problems(header: Header | None, bank_code: str, receiver: str | None
                    ) -> list[Problem]:
    """The envelope header's disagreements with the header we would send; `receiver` is
    the payee bank's direct participant (None when the directory does not know the
    payee bank: routing refuses that)."""
    if header is None:
        return []
    wanted = [("version", HEADER_VERSION, "header_version_unsupported",
               "envelope version 02"),
              ("orig_sender", bank_code, "header_orig_sender_not_ours",
               f"our direct participant, {bank_code}"),
              ("direction", "U", "header_direction_not_ours", "U (to the NPC)")]
    if receiver is not None:
        wanted.insert(2, ("orig_receiver", receiver, "header_orig_receiver_not_payee_direct",
                          f"{receiver}, the payee bank's direct participant"))
    return [Problem(code, f"{{H:/{name}", getattr(header, name), expected)
            for name, value, code, expected in wanted if getattr(header, name) != value]


# MesgRefID's width (SPEC.md a.1, field 12) and the digits of the date a MsgId begins with.
HEADER_REFERENCE_LEN = 20
MSG_ID_DATE_LEN = 8


def reference_forms(msg_id: str) -> list[str]:
    """The MesgRefID values that name `msg_id`: the MsgId's date followed by its sequence
    widened to 12 digits (as every bank-sent sample writes it), or the MsgId itself;
    none when the MsgId is longer than a MesgRefID."""
    if len(msg_id) > HEADER_REFERENCE_LEN:
        return []
    forms = [msg_id]
    if msg_id.isascii() and msg_id.isdigit() and len(msg_id) > MSG_ID_DATE_LEN:
        widened = msg_id[:MSG_ID_DATE_LEN] + msg_id[MSG_ID_DATE_LEN:].rjust(
            HEADER_REFERENCE_LEN - MSG_ID_DATE_LEN, "0")
        if widened != msg_id:
            forms.insert(0, widened)
    return forms


def header_body_problems(header: Header | None, ct: hvps111.CreditTransfer
                         ) -> list[Problem]:
    """The envelope header's send date and message reference against the body's CreDtTm
    and MsgId (a CreDtTm no date can be read from is refused by `created_problems`)."""
    if header is None:
        return []
    problems = []
    try:
        created = parse_business_datetime(ct.created_at).strftime("%Y%m%d")
    except ValueError:
        created = None
    if created is not None and header.send_date != created:
        problems.append(Problem(
            "header_send_date_differs_from_creation_date", "{H:/send_date", header.send_date,
            f"{created}, the date of the body's CreDtTm {ct.created_at}",
            f"the header says the message was sent on {header.send_date}, its body that it "
            f"was created at {ct.created_at}; a header written for this body carries its "
            "date"))
    forms = reference_forms(ct.msg_id)
    if forms and header.mesg_ref_id not in forms:
        problems.append(Problem(
            "header_reference_differs_from_msg_id", "{H:/mesg_ref_id", header.mesg_ref_id,
            " or ".join(forms) + f", the body's MsgId {ct.msg_id} as a header names it",
            f"the header's MesgRefID {header.mesg_ref_id} names another message than the "
            f"body's MsgId {ct.msg_id}"))
    return problems


def payee_direct(ct: hvps111.CreditTransfer, directory: Any, on_date: date) -> str | None:
    """The payee bank's direct participant on `on_date`, as the router finds it; None
    when the directory has no row for the payee bank."""
    payee = directory.find(ct.creditor_agent, on_date)
    return payee.direct_participant if payee is not None else None


def agent_problems(ct: hvps111.CreditTransfer, direct: str | None, on_date: date
                   ) -> list[Problem]:
    """InstgAgt/InstdAgt against DbtrAgt/CdtrAgt and the payee bank's direct
    participant `direct`."""
    problems = []
    if ct.instg_branch != ct.debtor_agent:
        problems.append(Problem(
            "instructing_branch_differs_from_debtor_agent", PATHS["instg_branch"],
            ct.instg_branch, f"{ct.debtor_agent}, the payer's bank (DbtrAgt)"))
    if ct.instd_branch != ct.creditor_agent:
        problems.append(Problem(
            "instructed_branch_differs_from_creditor_agent", PATHS["instd_branch"],
            ct.instd_branch, f"{ct.creditor_agent}, the payee's bank (CdtrAgt)"))
    if direct is not None and ct.instd_direct != direct:
        problems.append(Problem(
            "instructed_agent_not_payee_direct_participant", PATHS["instd_direct"],
            ct.instd_direct,
            f"{direct}, the direct participant of payee bank {ct.creditor_agent}",
            f"InstdAgt {ct.instd_direct} is not the direct participant of payee bank "
            f"{ct.creditor_agent}, which is {direct} on {on_date.isoformat()}; the "
            f"payment would go to {direct}, not to the bank the message names"))
    return problems


def created_problems(ct: hvps111.CreditTransfer, now: datetime) -> list[Problem]:
    """CreDtTm within the window around `now` (the gateway's clock)."""
    try:
        created = parse_business_datetime(ct.created_at)
    except ValueError:  # the schema lets through ISO forms Python does not read
        return [Problem("creation_time_malformed", PATHS["created_at"], ct.created_at,
                        "an ISO date and time such as 2026-12-07T09:15:00")]
    ahead_s = (created - now).total_seconds()
    if -CREATED_BEFORE_NOW_MAX_S <= ahead_s <= CREATED_AFTER_NOW_MAX_S:
        return []
    return [Problem(
        "creation_time_too_far_from_now", PATHS["created_at"], ct.created_at,
        f"a time from {CREATED_BEFORE_NOW_MAX_S // 3600} h before to "
        f"{CREATED_AFTER_NOW_MAX_S // 3600} h after now, "
        f"{now.isoformat(timespec='seconds')}")]


INTERMEDIARIES = ("IntrmyAgt1", "IntrmyAgt2")
_TX_PATH = PATHS["tx_id"].rsplit("/PmtId/", 1)[0]  # .../CdtTrfTxInf


def carried_problems(ct: hvps111.CreditTransfer, root: Any) -> list[Problem]:
    """What the hvps.111 the gateway sends for a ready message could not carry as the
    message says it (gateway.ready.CARRIED carries the agents' names, the address lines
    and the charge bearer): an intermediary agent (IntrmyAgt1, IntrmyAgt2), which the
    gateway's message has no place for, since it sends to the payee bank's direct
    participant straight; and text that cannot travel safely, as a name or remittance
    line of a transfer is refused (intake.text_problem). `root` is the message's
    Document element."""
    problems = ProblemList()
    transaction = root[0][1]
    for child in transaction:
        local = child.tag.rsplit("}", 1)[-1] if isinstance(child.tag, str) else ""
        if local in INTERMEDIARIES:
            member = child.findtext(".//{*}MmbId") or child.findtext(".//{*}Nm")
            problems.add("intermediary_agent_not_carried", f"{_TX_PATH}/{local}", member,
                         "no intermediary agent: the payment goes to the payee bank's "
                         "direct participant straight",
                         f"the gateway's hvps.111 has no {local}; a ready message is "
                         "sent as it says or refused, never with a part left out")
    for name in ("debtor_agent_name", "creditor_agent_name", "debtor_address",
                 "creditor_address"):
        text_problem(problems, PATHS[name], getattr(ct, name))
    for n, line in enumerate(ct.remittance, 1):
        if not _TAG_LINE.match(line):
            # A JSON transfer's free text is written /H01/<text> by the gateway, which
            # writes that message; a ready message is the core system's and goes on as
            # written, so a line a receiving bank would misread is refused, not mended.
            problems.add("remittance_line_not_tagged", f"{PATHS['remittance']}[{n}]", line,
                         "a tag line /XXX/value from its first character (SPEC.md d.6), "
                         "e.g. /H01/货款",
                         "a receiving bank reads a remittance line's value from its sixth "
                         "character; a ready message is not edited, so this line would "
                         "go out unreadable")
    return problems.items


# A remittance line as SPEC.md d.6 writes it: a three-character tag between slashes at
# its start (/H01/ remark, /F40/ original type, ...).
_TAG_LINE = re.compile(r"/[A-Z0-9]{3}/")


def message_problems(gw: Any, ct: hvps111.CreditTransfer, header: Header | None
                     ) -> list[Problem]:
    """Every rule of this module the message breaks."""
    direct = payee_direct(ct, gw.router.directory, gw.work_date)
    return [*header_problems(header, gw.settings.bank_code, direct),
            *header_body_problems(header, ct),
            *created_problems(ct, gw.clock.now()),
            *agent_problems(ct, direct, gw.work_date)]
