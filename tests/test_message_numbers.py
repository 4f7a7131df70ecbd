"""Every XML message of our participant takes its MsgId from one daily sequence (a
MsgId is unique per sender: README, "A ready hvps.111"), and a payment's id is its
message's MsgId behind a P. So the link's login (ccms.805), sent at start before any
payment, takes the day's first number and the first payment of a fresh start is
P<date>00000002; and numbers run on across a restart, never handed out twice."""

from __future__ import annotations

import json
import re
import time

import requests

from tests.api_support import LiveGateway

DAY = "20261207"
_MSG_ID = re.compile(rb"<MsgId>([0-9]+)</MsgId>")


def logins(live: LiveGateway, count: int) -> list[str]:
    """The XML MsgIds of our ccms.805 logins, once there are `count` of them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = live.query("SELECT envelope FROM archive WHERE direction = 'out' AND "
                          "mesg_type = 'ccms.805.001.02' ORDER BY id", ())
        if len(rows) >= count:
            return [_MSG_ID.search(bytes(r[0])).group(1).decode() for r in rows]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} logins sent")


def pay(live: LiveGateway, key: str) -> dict:
    r = requests.post(f"{live.url}/v1/transfers", timeout=10,
                      headers={"Idempotency-Key": key, "Content-Type": "application/json"},
                      data=json.dumps({
                          "payer_account": live.payer, "payer_name": live.payer_name,
                          "payer_bank": "999100000027", "payee_account": "6222000000000001",
                          "payee_name": "对手客户", "payee_bank": "888200000023",
                          "amount": "10.00", "urgency": "urgent"}))
    assert r.status_code == 201, r.text
    return r.json()


def sent_msg_ids(live: LiveGateway) -> list[str]:
    return [m.group(1).decode() for (raw,) in live.query(
        "SELECT envelope FROM archive WHERE direction = 'out'", ())
        for m in [_MSG_ID.search(bytes(raw))] if m]


def test_the_login_takes_the_first_number_and_numbers_run_on_after_a_restart(tmp_path):
    first = LiveGateway(tmp_path).start()
    try:
        [login] = logins(first, 1)
        payment = pay(first, "n-1")
    finally:
        first.stop()
    again = LiveGateway(tmp_path).start()
    try:
        second_login = logins(again, 2)[1]
        later = pay(again, "n-2")
        numbers = sent_msg_ids(again)
    finally:
        again.stop()

    assert login == f"{DAY}00000001"
    assert payment["id"] == f"P{DAY}00000002"
    assert payment["message"]["msg_id"] == payment["id"][1:]
    assert second_login > payment["id"][1:]
    assert later["id"] == f"P{later['message']['msg_id']}"
    assert later["message"]["msg_id"] > second_login
    assert len(numbers) == len(set(numbers))
