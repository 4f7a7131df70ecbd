"""Checks that need more than the message: the participant directory, the work date and
the messages already seen.

`check_context` runs after `codec.decode` on a message that passed its own checks. It
knows three rules, each applied only when its context is given:

- directory: every bank code the message names is in the participant directory and
  active on the day (`routing.Directory.lookup`), and in packages and HVPS credits the
  sending and receiving banks belong to the direct participants the header names;
- work_date: the message was created on the work date, and the dates that record what
  already happened (netting, settlement, checking, issue dates) are not after it;
- seen: the message id is new for its sender, type and day (`seen(sender, mt, msg_id)`
  answers whether it was met before; recording it is the caller's business).

Bank codes and dates are found by element name across the whole document, so the rules
hold for every family without per-type code; the NPC's `0000` and the twelve zeros of
a broadcast are not directory entries and are skipped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Callable

from lxml import etree

from gateway.errors import PaygateError, Problem
from gateway.messages import hvps111, package
from gateway.messages.codec import Decoded, module_for
from gateway.messages.xml import element_path
from routing.directory import Directory

Seen = Callable[[str, str, str], bool]

# Leaf elements that hold a participant's bank code.
BANK_CODE_ELEMENTS = frozenset({
    "InstgDrctPty", "InstdDrctPty", "InstgPty", "InstdPty", "InstgIndrctPty",
    "InstdIndrctPty", "MmbId", "Issr", "DbtrBrnchId", "CdtrBrnchId",
})
# BrnchId/Id holds a bank code too; other Id elements (accounts) do not.
_BRANCH_PARENT = "BrnchId"
NOT_IN_DIRECTORY = frozenset({"0000", "000000000000"})
# Dates recording something that already happened, which cannot be after the work date.
PAST_DATE_ELEMENTS = frozenset({
    "NetgDt", "SttlmDt", "TxNetgDt", "ChckDt", "ChckngDt", "PrcDt", "RcvDt", "IsseDt",
    "OrgnlSysDt",
})
_HEADERS = ("GrpHdr", "PKGGrpHdr")


def check_context(decoded: Decoded, *, directory: Directory | None = None,
                  work_date: date | None = None, seen: Seen | None = None) -> list[Problem]:
    problems: list[Problem] = []
    on_date = work_date or _created_on(decoded.root) or _sent_on(decoded)
    if directory is not None and on_date is not None:
        problems += _directory_problems(decoded, directory, on_date)
    if work_date is not None:
        problems += _date_problems(decoded, work_date)
    if seen is not None:
        problems += _duplicate_problems(decoded, seen)
    return problems


def _leaves(root: etree._Element):
    for el in root.iter():
        if isinstance(el.tag, str) and len(el) == 0:
            yield etree.QName(el).localname, el


def _is_bank_code(name: str, el: etree._Element) -> bool:
    if name in BANK_CODE_ELEMENTS:
        return True
    parent = el.getparent()
    return name == "Id" and parent is not None and \
        etree.QName(parent).localname == _BRANCH_PARENT


def _directory_problems(decoded: Decoded, directory: Directory,
                        on_date: date) -> list[Problem]:
    problems: list[Problem] = []
    for name, el in _leaves(decoded.root):
        code = (el.text or "").strip()
        if not _is_bank_code(name, el) or code in NOT_IN_DIRECTORY or len(code) != 12:
            continue
        try:
            directory.lookup(code, on_date)
        except PaygateError as exc:
            # The path is worked out only for a refused code: it costs a sibling scan.
            problems += [replace(p, path=element_path(el)) for p in exc.problems]
    if not problems:
        problems += _membership_problems(decoded, directory, on_date)
    return problems


def _membership_problems(decoded: Decoded, directory: Directory,
                         on_date: date) -> list[Problem]:
    """Banks named in a transaction must sit under the direct participants of the header."""
    pairs: list[tuple[str, str, str]] = []  # (path, bank, expected direct participant)
    obj = decoded.obj
    if isinstance(obj, package.Package):
        layout: package.Layout = module_for(decoded.mtype.code).LAYOUT
        payer, payee = obj.header.instg_direct, obj.header.instd_direct
        if layout.debit:
            payer, payee = payee, payer
        for index, t in enumerate(obj.transfers, start=1):
            pairs += [(layout.tx_path(index, "DbtrAgt/BrnchId/Id"), t.debtor_bank, payer),
                      (layout.tx_path(index, "CdtrAgt/BrnchId/Id"), t.creditor_bank, payee)]
    elif isinstance(obj, hvps111.CreditTransfer):
        base = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"
        pairs += [(f"{base}/InstgAgt/BrnchId/Id", obj.instg_branch, obj.instg_direct),
                  (f"{base}/InstdAgt/BrnchId/Id", obj.instd_branch, obj.instd_direct)]
    problems = []
    for path, bank, direct in pairs:
        row = directory.find(bank, on_date)
        if row is not None and row.direct_participant != direct:
            problems.append(Problem(
                "bank_not_under_direct_participant", path, bank,
                f"a bank whose direct participant is {direct}",
                f"bank {bank} settles through {row.direct_participant}, not {direct}"))
    return problems


def _created_on(root: etree._Element) -> date | None:
    for name, el in _leaves(root):
        parent = el.getparent()
        if name == "CreDtTm" and parent is not None and \
                etree.QName(parent).localname in _HEADERS:
            try:
                return date.fromisoformat((el.text or "").strip()[:10])
            except ValueError:
                return None
    return None


def _sent_on(decoded: Decoded) -> date | None:
    """The envelope's send date, for messages without a group header."""
    if decoded.envelope is None:
        return None
    raw = decoded.envelope.header.send_date
    try:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))
    except ValueError:
        return None


def _date_problems(decoded: Decoded, work_date: date) -> list[Problem]:
    problems: list[Problem] = []
    created = _created_on(decoded.root)
    if created is not None and created != work_date:
        problems.append(Problem("message_not_created_on_work_date", "/Document//CreDtTm",
                                created.isoformat(), f"{work_date.isoformat()}, the work date"))
    day = work_date.isoformat()
    for name, el in _leaves(decoded.root):
        value = (el.text or "").strip()
        if name in PAST_DATE_ELEMENTS and value[:10] > day:
            problems.append(Problem("date_after_work_date", element_path(el), value,
                                    f"a date on or before {day}, the work date"))
    return problems


def _duplicate_problems(decoded: Decoded, seen: Seen) -> list[Problem]:
    msg_id, sender, path = _identity(decoded)
    if msg_id and seen(sender, decoded.mtype.code, msg_id):
        return [Problem("message_id_duplicate", path, msg_id,
                        f"a message id not used before by {sender} for {decoded.mtype.code}")]
    return []


def _identity(decoded: Decoded) -> tuple[str, str, str]:
    """(message id, sender, path of the id): the XML MsgId of the group header if any,
    else the envelope's MesgID (ccms.990, ccms.911 and the probes have no header)."""
    msg_id = sender = path = ""
    for name, el in _leaves(decoded.root):
        parent = el.getparent()
        parent_name = etree.QName(parent).localname if parent is not None else ""
        if name == "MsgId" and parent_name in _HEADERS and not msg_id:
            msg_id, path = (el.text or "").strip(), element_path(el)
        if name == "InstgDrctPty" and not sender:
            sender = (el.text or "").strip()
    if decoded.envelope is not None:
        sender = decoded.envelope.header.orig_sender
        if not msg_id:
            msg_id, path = decoded.envelope.header.mesg_id, "{H:/mesg_id"
    return msg_id, sender, path
