"""A ready hvps.111's own fields that are not its payment's: the envelope header, the
agents and their branches, the creation time and the business kind are checked and
refused by name, never replaced by what the gateway would have chosen."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
import requests

from gateway.clock import SHANGHAI
from gateway.messages.envelope import Envelope, Header
from tests.api_support import LiveGateway, example_payer, ready_example

TX = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"
CREATED = "/Document/FIToFICstmrCdtTrf/GrpHdr/CreDtTm"
INSTD = (b"<MmbId>888200000015</MmbId>", b"<MmbId>123456789012</MmbId>")
INSTD_BRANCH = (b"<Id>888200000023</Id>\n        </BrnchId>\n      </InstdAgt>",
                b"<Id>888200000031</Id>\n        </BrnchId>\n      </InstdAgt>")
INSTG_BRANCH = (b"<Id>999100000027</Id>\n        </BrnchId>\n      </InstgAgt>",
                b"<Id>999100000035</Id>\n        </BrnchId>\n      </InstgAgt>")
PURPOSE = (b"<Prtry>02102</Prtry>", b"<Prtry>99999</Prtry>")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    yield from example_payer(tmp_path_factory, "ready-fields")


def enveloped(body: bytes, **changes: str) -> bytes:
    """`body` under a header written for it: its send date CreDtTm's, its MesgRefID the
    body's MsgId as the samples carry it (date, then the sequence in 12 digits)."""
    msg_id = re.search(rb"<MsgId>([0-9]{16})</MsgId>", body).group(1).decode()
    fields = dict(orig_sender="999100000019", orig_sender_sid="HVPS", orig_receiver="888200000015",
                  orig_receiver_sid="HVPS", send_date="20261207", send_time="091500",
                  mesg_type="hvps.111.001.01", mesg_id="20261207000000000001",
                  mesg_ref_id=f"{msg_id[:8]}0000{msg_id[8:]}", priority="1", direction="U")
    fields.update(changes)
    return Envelope(Header(**fields), None, body).encode()


def post(live, raw: bytes) -> tuple[int, list[tuple[str, str, str]]]:
    r = requests.post(f"{live.url}/v1/messages", data=raw, timeout=10)
    return r.status_code, [(e["code"], e["path"], e["value"])
                           for e in r.json().get("errors", [])]


def test_the_example_as_it_is_is_taken(live):
    status, errors = post(live, ready_example("2026120790000301"))

    assert (status, errors) == (201, [])


@pytest.mark.parametrize("msg_id, swaps, code, path, value", [
    ("2026120790000311", [INSTD], "instructed_agent_not_payee_direct_participant",
     f"{TX}/InstdAgt/FinInstnId/ClrSysMmbId/MmbId", "123456789012"),
    ("2026120790000312", [INSTD_BRANCH], "instructed_branch_differs_from_creditor_agent",
     f"{TX}/InstdAgt/BrnchId/Id", "888200000031"),
    ("2026120790000313", [INSTG_BRANCH], "instructing_branch_differs_from_debtor_agent",
     f"{TX}/InstgAgt/BrnchId/Id", "999100000035"),
    ("2026120790000314", [PURPOSE], "business_kind_unknown", f"{TX}/Purp/Prtry", "99999"),
    ("2026120790000315", [(b"2026-12-07T09:15:00", b"2030-12-07T09:15:00")],
     "creation_time_too_far_from_now", CREATED, "2030-12-07T09:15:00"),
    ("2026120790000316", [(b"2026-12-07T09:15:00", b"2024-12-07T09:15:00")],
     "creation_time_too_far_from_now", CREATED, "2024-12-07T09:15:00"),
])
def test_a_field_that_disagrees_is_refused_by_name(live, msg_id, swaps, code, path, value):
    status, errors = post(live, ready_example(msg_id, *swaps))

    assert status == 422
    assert (code, path, value) in errors


def test_the_instructed_agent_refusal_names_the_right_one(live):
    r = requests.post(f"{live.url}/v1/messages", data=ready_example("2026120790000321", INSTD),
                      timeout=10)
    [error] = [e for e in r.json()["errors"]
               if e["code"] == "instructed_agent_not_payee_direct_participant"]

    assert "888200000015" in error["expected"] and "888200000023" in error["expected"]


def test_an_envelope_that_agrees_is_taken(live):
    status, errors = post(live, enveloped(ready_example("2026120790000331")))

    assert (status, errors) == (201, [])


@pytest.mark.parametrize("msg_id, changes, code, path", [
    ("2026120790000341", {"version": "99"}, "header_version_unsupported", "{H:/version"),
    ("2026120790000342", {"orig_sender": "888200000015"}, "header_orig_sender_not_ours",
     "{H:/orig_sender"),
    ("2026120790000343", {"orig_receiver": "0000"}, "header_orig_receiver_not_payee_direct",
     "{H:/orig_receiver"),
    ("2026120790000345", {"direction": "D"}, "header_direction_not_ours", "{H:/direction"),
    ("2026120790000344", {"mesg_type": "hvps.112.001.01"}, "header_type_disagrees_with_body",
     "{H:/mesg_type"),
    ("2026120790000346", {"send_date": "20261206"},
     "header_send_date_differs_from_creation_date", "{H:/send_date"),
    ("2026120790000347", {"mesg_ref_id": "20261207000090000999"},
     "header_reference_differs_from_msg_id", "{H:/mesg_ref_id"),
    ("2026120790000348", {"mesg_ref_id": "20261206000090000348"},
     "header_reference_differs_from_msg_id", "{H:/mesg_ref_id"),
])
def test_an_envelope_that_disagrees_is_refused(live, msg_id, changes, code, path):
    status, errors = post(live, enveloped(ready_example(msg_id), **changes))

    assert status == 422
    assert code in [c for c, p, _ in errors if p == path]


def test_a_header_naming_the_msg_id_itself_is_taken(live):
    """MesgRefID may carry the MsgId as it is, as the BEPS samples' MesgID does."""
    status, errors = post(live, enveloped(ready_example("2026120790000349"),
                                          mesg_ref_id="2026120790000349"))

    assert (status, errors) == (201, [])


def test_header_mismatches_name_the_body_s_values(live):
    """The refusal says what the body holds: CreDtTm's date, the MsgId in the header's
    forms."""
    r = requests.post(f"{live.url}/v1/messages", timeout=10, data=enveloped(
        ready_example("2026120790000350"), send_date="20261208",
        mesg_ref_id="20261207000000000001"))
    expected = {e["code"]: e["expected"] for e in r.json()["errors"]}

    assert r.status_code == 422
    assert expected["header_send_date_differs_from_creation_date"].startswith("20261207,")
    assert expected["header_reference_differs_from_msg_id"].startswith(
        "20261207000090000350 or 2026120790000350,")


def test_a_json_transfer_s_unknown_business_kind_is_refused(live):
    body = {"payer_account": live.payer, "payer_name": "示例一号贸易有限公司",
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "10.00",
            "business_kind": "99999"}
    r = requests.post(f"{live.url}/v1/transfers", json=body, timeout=10,
                      headers={"Idempotency-Key": "kind-99999"})

    assert r.status_code == 422
    assert [(e["code"], e["path"]) for e in r.json()["errors"]] == [
        ("business_kind_unknown", "/business_kind")]


def test_a_message_taken_is_answered_again_when_its_time_has_passed(tmp_path):
    """The same message sent again a day later gets its first answer, not a refusal of
    its creation time: a ready message is its own idempotency key."""
    g = LiveGateway(tmp_path, payer_name="示例一号贸易有限公司").start()
    try:
        raw = ready_example("2026120790000401")
        first = requests.post(f"{g.url}/v1/messages", data=raw, timeout=10)
        g.gw.clock.set(datetime(2026, 12, 9, 9, 0, tzinfo=SHANGHAI))
        again = requests.post(f"{g.url}/v1/messages", data=raw, timeout=10)
        other = requests.post(f"{g.url}/v1/messages", data=ready_example("2026120790000402"),
                              timeout=10)
    finally:
        g.stop()

    assert first.status_code == 201
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    assert other.status_code == 422
    assert [e["code"] for e in other.json()["errors"]] == ["creation_time_too_far_from_now"]


@pytest.mark.parametrize("created, send_date, refused", [
    ("2026-12-07T09:15:00", "20261207", False),
    ("2026-12-06T17:30:00Z", "20261207", False),    # 01:30 on the 7th in Beijing
    ("2026-12-06T17:30:00Z", "20261206", True),
    ("2026-12-07T09:15:00+08:00", "20261206", True),
])
def test_the_send_date_is_compared_with_creation_in_beijing_time(created, send_date, refused):
    """A header's date is the sender's, in Beijing; CreDtTm with an offset is read as that
    instant."""
    from dataclasses import replace

    from gateway.messages import codec
    from gateway.ready_rules import header_body_problems

    ct = replace(codec.decode(ready_example("2026120790000360"), bare_ok=True).obj,
                 created_at=created)
    header = Header("999100000019", "HVPS", "888200000015", "HVPS", send_date, "091500",
                    "hvps.111.001.01", "20261207000000000001", "20261207000090000360")

    assert [p.code for p in header_body_problems(header, ct)] == (
        ["header_send_date_differs_from_creation_date"] if refused else [])
