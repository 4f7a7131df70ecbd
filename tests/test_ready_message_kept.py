"""What of a ready hvps.111 goes on into the hvps.111 the gateway sends for it, and what
the gateway assigns: its own MsgId (= TxId), CreDtTm and envelope header, the core's
EndToEndId kept, and everything else the message says carried as written, the agents'
names, the address lines and the charge bearer included; the payment's view shows the
core's MsgId and TxId beside those sent. What cannot be carried is refused."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
from lxml import etree

from gateway import outbound
from gateway.messages import codec
from tests.api_support import LiveGateway, example_payer, ready_example

TX = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"
NS = {"c": "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.02"}
ADDRESSES = (("<Nm>示例一号贸易有限公司</Nm>\n      </Dbtr>".encode(),
              "<Nm>示例一号贸易有限公司</Nm>\n        <PstlAdr>\n          <AdrLine>测试市示例路"
              "1号</AdrLine>\n        </PstlAdr>\n      </Dbtr>".encode()),
             ("<Nm>对手乙建材有限公司</Nm>\n      </Cdtr>".encode(),
              "<Nm>对手乙建材有限公司</Nm>\n        <PstlAdr>\n          <AdrLine>乙市建设路"
              "2号</AdrLine>\n        </PstlAdr>\n      </Cdtr>".encode()))
SHARED_CHARGES = (b"<ChrgBr>DEBT</ChrgBr>", b"<ChrgBr>SHAR</ChrgBr>")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    yield from example_payer(tmp_path_factory, "ready-kept")


def post(live: LiveGateway, raw: bytes) -> requests.Response:
    return requests.post(f"{live.url}/v1/messages", data=raw, timeout=10)


def sent_message(live: LiveGateway, payment_id: str) -> etree._Element:
    """The hvps.111 the gateway built for the payment (archived when built)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = live.query("SELECT envelope FROM archive WHERE payment_id = ? AND "
                          "direction = 'out' ORDER BY id DESC", (payment_id,))
        if rows:
            return codec.decode(bytes(rows[0][0])).root
        time.sleep(0.05)
    raise AssertionError(f"no message built for {payment_id}")


def texts(root: etree._Element, path: str) -> list[str]:
    return [e.text for e in root.xpath(path, namespaces=NS)]


def test_the_gateway_s_hvps111_carries_the_message_but_its_own_ids(live):
    raw = ready_example("2026120790000501", *ADDRESSES, SHARED_CHARGES)
    answer = post(live, raw)
    assert answer.status_code == 201, answer.text
    taken = answer.json()
    sent = sent_message(live, taken["id"])
    shown = requests.get(f"{live.url}/v1/transfers/{taken['id']}", timeout=10).json()
    tx = "c:FIToFICstmrCdtTrf/c:CdtTrfTxInf"

    # Assigned by the gateway: MsgId = TxId of its own numbering, shown beside the core's.
    [msg_id] = texts(sent, "c:FIToFICstmrCdtTrf/c:GrpHdr/c:MsgId")
    assert msg_id != "2026120790000501" and texts(sent, f"{tx}/c:PmtId/c:TxId") == [msg_id]
    for view in (taken, shown):
        assert view["message"]["msg_id"] == msg_id
        assert view["message"]["core_msg_id"] == "2026120790000501"
        assert view["message"]["core_tx_id"] == "2026120790000001"
    # Kept as the message wrote it.
    [core_e2e] = re.findall(rb"<EndToEndId>([^<]*)</EndToEndId>", raw)
    assert texts(sent, f"{tx}/c:PmtId/c:EndToEndId") == [core_e2e.decode()]
    assert texts(sent, f"{tx}/c:DbtrAgt/c:FinInstnId/c:Nm") == ["甲市农村商业银行城东支行"]
    assert texts(sent, f"{tx}/c:CdtrAgt/c:FinInstnId/c:Nm") == ["乙市商业银行营业部"]
    assert texts(sent, f"{tx}/c:Dbtr/c:PstlAdr/c:AdrLine") == ["测试市示例路1号"]
    assert texts(sent, f"{tx}/c:Cdtr/c:PstlAdr/c:AdrLine") == ["乙市建设路2号"]
    assert texts(sent, f"{tx}/c:ChrgBr") == ["SHAR"]


def test_a_json_transfer_shows_no_core_ids_and_writes_no_agent_names(live):
    body = {"payer_account": live.payer, "payer_name": live.payer_name,
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "60000.00",
            "urgency": "urgent"}
    taken = requests.post(f"{live.url}/v1/transfers", json=body, timeout=10,
                          headers={"Idempotency-Key": "kept-json"}).json()
    sent = sent_message(live, taken["id"])
    shown = requests.get(f"{live.url}/v1/transfers/{taken['id']}", timeout=10).json()

    assert "core_msg_id" not in taken["message"] and "core_msg_id" not in shown["message"]
    assert texts(sent, "//c:DbtrAgt/c:FinInstnId/c:Nm") == []
    assert texts(sent, "//c:ChrgBr") == ["DEBT"]


@pytest.mark.parametrize("credit", [True, False])
def test_a_message_built_later_carries_the_same(live, credit):
    """Built by a lane's sender (`credit`: read with its payment) or by the plain claim,
    not in the work that took it, the message carries what the ready message said."""
    answer = post(live, ready_example(f"20261207900006{int(credit)}1", *ADDRESSES,
                                      SHARED_CHARGES))
    assert answer.status_code == 201, answer.text
    payment_id = answer.json()["id"]
    sent_message(live, payment_id)

    def rebuild(tx: Any) -> bytes:
        # As if it had waited (for the window, a review): its row pending, not built.
        [(outbox_id,)] = tx.query("SELECT id FROM outbox WHERE payment_id = ? AND "
                                  "kind = 'hvps_credit'", (payment_id,))
        tx.execute("UPDATE outbox SET state = 'pending', envelope = NULL WHERE id = ?",
                   (outbox_id,))
        tx.execute("UPDATE payments SET state = 'accepted' WHERE id = ?", (payment_id,))
        gw = live.gw
        return outbound.claim(tx, outbox_id, gw.keyring, gw.clock.now(), gw.notifier,
                              credit=credit)
    built = codec.decode(live.loop.run(live.gw.store.run(rebuild))).root

    assert texts(built, "//c:DbtrAgt/c:FinInstnId/c:Nm") == ["甲市农村商业银行城东支行"]
    assert texts(built, "//c:Cdtr/c:PstlAdr/c:AdrLine") == ["乙市建设路2号"]
    assert texts(built, "//c:ChrgBr") == ["SHAR"]


def test_an_intermediary_agent_is_refused_not_dropped(live):
    intermediary = (b"      <Dbtr>\n",
                    b"      <IntrmyAgt1>\n        <FinInstnId>\n          <ClrSysMmbId>\n"
                    b"            <MmbId>888200000015</MmbId>\n          </ClrSysMmbId>\n"
                    b"        </FinInstnId>\n      </IntrmyAgt1>\n      <Dbtr>\n")
    answer = post(live, ready_example("2026120790000701", intermediary))

    assert answer.status_code == 422, answer.text
    assert [(e["code"], e["path"], e["value"]) for e in answer.json()["errors"]] == [
        ("intermediary_agent_not_carried", f"{TX}/IntrmyAgt1", "888200000015")]


def test_a_carried_text_with_invisible_characters_is_refused(live):
    name = ("<Nm>乙市商业银行营业部</Nm>".encode(), "<Nm>乙市商业银行\u200b营业部</Nm>".encode())
    answer = post(live, ready_example("2026120790000801", name))

    assert answer.status_code == 422, answer.text
    assert [(e["code"], e["path"]) for e in answer.json()["errors"]] == [
        ("text_has_control_or_invisible_characters", f"{TX}/CdtrAgt/FinInstnId/Nm")]


@pytest.mark.parametrize("n, character", enumerate(
    ["\ufe0f", "\U000e0100", "\u3164", "\uffa0", "\ufdd0"]))
def test_a_payee_name_with_a_variation_selector_or_filler_is_refused(live, n, character):
    """Invisible to a reader yet not a format character, or a noncharacter: refused at
    Cdtr/Nm, the message naming the character's code point."""
    name = ("<Nm>对手乙建材有限公司</Nm>".encode(),
            f"<Nm>对手乙建材{character}有限公司</Nm>".encode())
    answer = post(live, ready_example(f"202612079000090{n}", name))

    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert (error["code"], error["path"]) == (
        "text_has_control_or_invisible_characters", f"{TX}/Cdtr/Nm")
    assert f"U+{ord(character):04X}" in error["message"]


def test_the_payment_s_view_shows_the_remittance_lines_as_sent(live):
    """GET /v1/transfers/{id} shows the remittance lines of the hvps.111 sent, a ready
    message's as it wrote them (a line without the /H01/ tag too); the POST's answer
    leaves them out (it is made on the transfer's hot path)."""
    lines = (b"<Ustrd>/H01/\xe8\xb4\xa7\xe6\xac\xbe</Ustrd>",
             "<Ustrd>/H01/货款 合同 A-7</Ustrd>\n        <Ustrd>/F61/第二行</Ustrd>".encode())
    answer = post(live, ready_example("2026120790000502", lines))
    assert answer.status_code == 201, answer.text
    assert "remittance_info" not in answer.json()
    payment_id = answer.json()["id"]
    sent = texts(sent_message(live, payment_id), "c:FIToFICstmrCdtTrf/c:CdtTrfTxInf/c:RmtInf/"
                                                  "c:Ustrd")
    assert sent == ["/H01/货款 合同 A-7", "/F61/第二行"]
    shown = requests.get(f"{live.url}/v1/transfers/{payment_id}", timeout=10).json()
    assert shown["remittance_info"] == sent


def test_a_json_transfer_s_view_shows_its_remittance_tagged_as_sent(live):
    body = {"payer_account": live.payer, "payer_name": live.payer_name,
            "payer_bank": "999100000027", "payee_account": "6222000000000001",
            "payee_name": "对手客户", "payee_bank": "888200000023", "amount": "150000.00",
            "urgency": "urgent", "remittance_info": ["货款", "/F61/第二行"]}
    answer = requests.post(f"{live.url}/v1/transfers", json=body,
                           headers={"Idempotency-Key": "remittance-view-1"}, timeout=10)
    assert answer.status_code == 201, answer.text
    assert "remittance_info" not in answer.json()
    payment_id = answer.json()["id"]
    sent = texts(sent_message(live, payment_id), "c:FIToFICstmrCdtTrf/c:CdtTrfTxInf/c:RmtInf/"
                                                  "c:Ustrd")
    shown = requests.get(f"{live.url}/v1/transfers/{payment_id}", timeout=10).json()
    assert shown["remittance_info"] == sent == ["/H01/货款", "/F61/第二行"]
