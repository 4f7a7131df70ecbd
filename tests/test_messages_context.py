"""Context rules: the participant directory, the work date and message ids already seen."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from gateway.messages import codec, examples
from gateway.messages.codec import Decoded
from gateway.messages.common import NpcProcessing
from gateway.messages.context import check_context
from gateway.messages.envelope import Envelope, Header
from routing.directory import Directory

DAY = date(2024, 5, 20)
COLUMNS = ("bank_code", "name", "direct_participant", "city_node", "kind", "status",
           "effective_from", "effective_to", "version")


def _row(code: str, direct: str, status: str = "active", kind: str = "indirect") -> dict:
    values = (code, f"bank {code}", direct, "1000", kind, status, "2024-01-01", "", "1")
    return dict(zip(COLUMNS, values))


DIRECTORY = Directory.load([
    _row("999100000019", "999100000019", kind="direct"),
    _row("999100000027", "999100000019"),
    _row("888200000015", "888200000015", kind="direct"),
    _row("888200000023", "888200000015"),
    _row("777300000011", "777300000011", kind="direct"),
    _row("777300000029", "777300000011"),
    _row("888200000049", "888200000015", status="inactive"),
])


def _decoded(code: str, obj: Any = None) -> Decoded:
    body = codec.build_body(code, obj if obj is not None else examples.EXAMPLES[code]())
    decoded = codec.decode(body, bare_ok=True)
    assert decoded.ok, decoded.problems
    return decoded


def _codes(problems: list) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in problems]


def _package_with(**changes: Any) -> Any:
    pkg = examples.credit_package()
    first = replace(pkg.transfers[0], **changes)
    return replace(pkg, transfers=(first,) + pkg.transfers[1:])


@pytest.mark.parametrize("code", sorted(examples.EXAMPLES))
def test_examples_pass_every_context_rule(code: str) -> None:
    """Every example names known banks, is dated on the work day and is new."""
    problems = check_context(_decoded(code), directory=DIRECTORY, work_date=DAY,
                             seen=lambda sender, mt, msg_id: False)

    assert problems == []


def test_no_context_no_context_rules() -> None:
    """Without directory, work date or history nothing beyond the message is checked."""
    pkg = _package_with(creditor_bank="123456789012")

    assert check_context(_decoded("beps.121.001.01", pkg)) == []


@pytest.mark.parametrize("changes, code, path", [
    (dict(creditor_bank="888200000031"), "bank_code_unknown",
     "/Document/CstmrCdtTrf/CstmrCdtTrfInf[1]/CdtrAgt/BrnchId/Id"),
    (dict(creditor_account_bank="888200000049"), "bank_code_inactive",
     "/Document/CstmrCdtTrf/CstmrCdtTrfInf[1]/CdtrAcct/Id/Othr/Issr"),
])
def test_directory_refuses_unknown_and_inactive_banks(changes: dict, code: str,
                                                      path: str) -> None:
    """A bank code not in the directory, or inactive on the day, is named with its path."""
    problems = check_context(_decoded("beps.121.001.01", _package_with(**changes)),
                             directory=DIRECTORY, work_date=DAY)

    assert _codes(problems) == [(code, path)]


@pytest.mark.parametrize("code, obj, path", [
    ("beps.121.001.01", _package_with(creditor_bank="777300000029",
                                      creditor_account_bank="777300000029"),
     "/Document/CstmrCdtTrf/CstmrCdtTrfInf[1]/CdtrAgt/BrnchId/Id"),
    ("beps.127.001.01", replace(examples.debit_package(), transfers=(replace(
        examples.debit_package().transfers[0], debtor_bank="999100000027",
        debtor_account_bank="999100000027"),) + examples.debit_package().transfers[1:]),
     "/Document/CstmrDrctDbt/CstmrDrctDbtInf[1]/DbtrAgt/BrnchId/Id"),
    ("hvps.111.001.01", replace(examples.credit_transfer(), instg_branch="888200000023"),
     "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/InstgAgt/BrnchId/Id"),
])
def test_banks_must_sit_under_the_header_participants(code: str, obj: Any, path: str) -> None:
    """A transaction's bank settles through the direct participant the header names."""
    problems = check_context(_decoded(code, obj), directory=DIRECTORY)

    assert _codes(problems) == [("bank_not_under_direct_participant", path)]


def test_message_created_on_another_day_is_refused() -> None:
    """A message created before the work date is not the work day's message."""
    problems = check_context(_decoded("hvps.111.001.01"), work_date=date(2024, 5, 21))

    assert [p.code for p in problems] == ["message_not_created_on_work_date"]
    assert problems[0].value == "2024-05-20"


def test_past_dates_cannot_be_after_the_work_date() -> None:
    """A netting or settlement date after the work date cannot have happened yet."""
    booking = replace(examples.EXAMPLES["saps.606.001.01"](),
                      npc=NpcProcessing("PR04", "NEZI0000", settlement_date="2024-05-23"))

    problems = check_context(_decoded("saps.606.001.01", booking), work_date=DAY)

    assert _codes(problems) == [("date_after_work_date",
                                 "/Document/AcctBookgNtfctn/NPCPrcInf/SttlmDt")]


def test_future_dates_that_announce_are_allowed() -> None:
    """ccms.801 announces the next system dates; those are not dates of the past."""
    assert check_context(_decoded("ccms.801.001.02"), work_date=DAY) == []


def test_message_id_seen_before_is_a_duplicate() -> None:
    """The same sender, type and message id twice is refused the second time."""
    history: set[tuple[str, str, str]] = set()

    def seen(sender: str, mt: str, msg_id: str) -> bool:
        known = (sender, mt, msg_id) in history
        history.add((sender, mt, msg_id))
        return known

    first = check_context(_decoded("beps.121.001.01"), seen=seen)
    second = check_context(_decoded("beps.121.001.01"), seen=seen)

    assert first == []
    assert _codes(second) == [("message_id_duplicate", "/Document/CstmrCdtTrf/PKGGrpHdr/MsgId")]
    assert history == {("999100000019", "beps.121.001.01", "2024052000100000")}


def test_messages_without_group_header_use_the_envelope_id() -> None:
    """A ccms.990 has no MsgId of its own: its envelope's MesgID identifies it."""
    header = Header("999100000019", "HVPS", "0000", "HVPS", "20240520", "101531",
                    "ccms.990.001.02", "00000000000000000990", "00000000000000000990")
    raw = Envelope(header, None, codec.build_body(
        "ccms.990.001.02", examples.EXAMPLES["ccms.990.001.02"]())).encode()
    asked: list[tuple[str, str, str]] = []

    check_context(codec.decode(raw), seen=lambda *key: asked.append(key) or False)

    assert asked == [("999100000019", "ccms.990.001.02", "00000000000000000990")]
