"""A ready hvps.111's texts are taken as written, spaces at their ends included: the
message is checked, never edited, so the hvps.111 the gateway sends, the payment's view
and its record carry the same text the core system wrote, as a JSON transfer's payee
name is carried. A payer name must be written exactly as the books hold it, so one with
a space at its end is refused by name (`payer_name_not_written_as_held`), never sent
trimmed."""

from __future__ import annotations

import pytest
import requests

from tests.api_support import EXAMPLE_HOLDER, example_payer, ready_example
from tests.test_ready_message_kept import post, sent_message, texts

TX = "c:FIToFICstmrCdtTrf/c:CdtTrfTxInf"
PAYEE = "对手乙建材有限公司"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    yield from example_payer(tmp_path_factory, "ready-spaces")


@pytest.mark.parametrize("msg_id, written", [
    ("2026120790000701", EXAMPLE_HOLDER + " "),
    ("2026120790000702", " " + EXAMPLE_HOLDER),
    ("2026120790000703", EXAMPLE_HOLDER + "\u3000"),
])
def test_a_payer_name_with_spaces_at_its_ends_is_refused(live, msg_id, written):
    """Not trimmed into the holder's name and sent: refused, the holder named."""
    raw = ready_example(msg_id, (f"<Nm>{EXAMPLE_HOLDER}</Nm>".encode(),
                                 f"<Nm>{written}</Nm>".encode()))
    before = live.query("SELECT COUNT(*) FROM payments", ())[0][0]
    answer = post(live, raw)

    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["errors"]
    assert (problem["code"], problem["path"], problem["value"]) == (
        "payer_name_not_written_as_held", f"/Document/{TX.replace('c:', '')}/Dbtr/Nm",
        written)
    assert live.query("SELECT COUNT(*) FROM payments", ())[0][0] == before


def test_texts_go_out_as_written_spaces_and_all(live):
    """A payee name, an agent's name, an address line and a remittance line with spaces
    at their ends: the same text on the wire, in the view and in the payment's record."""
    raw = ready_example(
        "2026120790000704",
        (f"<Nm>{PAYEE}</Nm>".encode(), f"<Nm>{PAYEE} </Nm>".encode()),
        ("<Nm>乙市商业银行营业部</Nm>".encode(), "<Nm> 乙市商业银行营业部</Nm>".encode()),
        (f"<Nm>{PAYEE} </Nm>\n      </Cdtr>".encode(),
         f"<Nm>{PAYEE} </Nm>\n        <PstlAdr>\n          <AdrLine>乙市建设路2号 </AdrLine>"
         "\n        </PstlAdr>\n      </Cdtr>".encode()))
    answer = post(live, raw)
    assert answer.status_code == 201, answer.text
    taken = answer.json()
    sent = sent_message(live, taken["id"])
    shown = requests.get(f"{live.url}/v1/transfers/{taken['id']}", timeout=10).json()
    [row] = live.query("SELECT payee_name FROM payments WHERE id = ?", (taken["id"],))

    assert texts(sent, f"{TX}/c:Cdtr/c:Nm") == [PAYEE + " "]
    assert texts(sent, f"{TX}/c:CdtrAgt/c:FinInstnId/c:Nm") == [" 乙市商业银行营业部"]
    assert texts(sent, f"{TX}/c:Cdtr/c:PstlAdr/c:AdrLine") == ["乙市建设路2号 "]
    assert texts(sent, f"{TX}/c:Dbtr/c:Nm") == [EXAMPLE_HOLDER]
    assert taken["payee"]["name"] == shown["payee"]["name"] == row[0] == PAYEE + " "


def test_a_message_sent_again_with_a_space_added_is_another_message(live):
    """Under the same MsgId, a payee name with a space added is not the message taken:
    refused at that field (409), not answered as the first."""
    first = post(live, ready_example("2026120790000705"))
    again = post(live, ready_example("2026120790000705", (f"<Nm>{PAYEE}</Nm>".encode(),
                                                          f"<Nm>{PAYEE} </Nm>".encode())))

    assert first.status_code == 201, first.text
    assert again.status_code == 409, again.text
    assert again.json()["errors"][0]["code"] == "idempotency_key_reused_with_other_body"


def ustrd(*lines: str) -> tuple[bytes, bytes]:
    written = "".join(f"<Ustrd>{line}</Ustrd>" for line in lines).encode()
    return "<Ustrd>/H01/货款</Ustrd>".encode(), written


def test_remittance_lines_go_out_as_written(live):
    """A ready message's Ustrd tag lines are carried as the message writes them, spaces
    after the tag's value included."""
    lines = ["/H01/货款 ", "/H02/合同  TEST-1"]
    answer = post(live, ready_example("2026120790000706", ustrd(*lines)))
    assert answer.status_code == 201, answer.text
    sent = sent_message(live, answer.json()["id"])

    assert texts(sent, f"{TX}/c:RmtInf/c:Ustrd") == lines


@pytest.mark.parametrize("msg_id, lines, bad", [
    ("2026120790000707", ["货款"], [1]),
    ("2026120790000708", ["/H01/货款", " /H02/第二行", "/h03/x"], [2, 3]),
])
def test_a_remittance_line_without_its_tag_is_refused(live, msg_id, lines, bad):
    """An untagged line, or one with a space before its tag, is not mended with a /H01/
    tag (as a JSON transfer's free text is, the gateway writing that message): refused at
    its Ustrd, nothing taken."""
    before = live.query("SELECT COUNT(*) FROM payments", ())[0][0]
    answer = post(live, ready_example(msg_id, ustrd(*lines)))

    assert answer.status_code == 422, answer.text
    assert [(e["code"], e["path"]) for e in answer.json()["errors"]] == [
        ("remittance_line_not_tagged", f"/Document/{TX.replace('c:', '')}/RmtInf/Ustrd[{n}]")
        for n in bad]
    assert live.query("SELECT COUNT(*) FROM payments", ())[0][0] == before
