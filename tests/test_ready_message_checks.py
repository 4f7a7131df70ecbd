"""A ready hvps.111 from the core system: the same payment under a new MsgId (its
EndToEndId in use) is refused, a rejected one frees its EndToEndId, and a message naming
another direct participant as its instructing agent is refused by name."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import aiohttp
import pytest

from tests.e2e_support import YUAN, WORK_DATE, started, wait_state

EXAMPLE = "hvps.111_urgent-goods-payment.xml"
PAYER, PAYER_NAME = "20000000001410300000013", "示例一号贸易有限公司"


def example(msg_id: str | None = None, instructing: str | None = None) -> bytes:
    raw = resources.files("gateway").joinpath("examples", EXAMPLE).read_bytes()
    if msg_id:
        raw = raw.replace(b"<MsgId>2026120790000001</MsgId>", f"<MsgId>{msg_id}</MsgId>".encode())
    if instructing:
        raw = raw.replace(b"<MmbId>999100000019</MmbId>",
                          f"<MmbId>{instructing}</MmbId>".encode(), 1)
    return raw


async def post(h: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{h.gateway.url}/v1/messages", data=raw) as r:
            return r.status, await r.json()


async def open_payer(h: Any, balance_fen: int) -> None:
    gw = h.gateway

    def work(tx: Any) -> None:
        gw.ledger.open_customer_account(tx, PAYER, PAYER_NAME, "corporate", WORK_DATE)
        if balance_fen:
            gw.ledger.deposit(tx, "test:deposit:payer", PAYER, balance_fen, WORK_DATE)
    await gw.store.run(work)


@pytest.mark.e2e
def test_the_same_payment_under_a_new_msg_id_is_refused(tmp_path):
    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            first_status, first = await post(h, example())
            replay_status, replay = await post(h, example())
            again_status, again = await post(h, example("2026120790000097"))
            other_status, other = await post(h, example("2026120790000098", "123456789012"))
            same_id_status, same_id = await post(h, example().replace(
                b"<EndToEndId>99910000002720261207900000000001",
                b"<EndToEndId>99910000002720261207900000000556"))
            await wait_state(h, first["id"], "settled")

            assert first_status == 201 and (replay_status, replay["id"]) == (201, first["id"])
            error = again["errors"][0]
            assert (again_status, error["code"]) == (409, "end_to_end_id_in_use")
            assert first["id"] in error["message"] and error["path"].endswith("/EndToEndId")
            assert (other_status, other["errors"][0]["code"]) == (422,
                                                                 "instructing_agent_not_ours")
            mismatch = same_id["errors"][0]
            assert (same_id_status, mismatch["code"]) == (409,
                                                          "idempotency_key_reused_with_other_body")
            assert mismatch["path"].endswith("/EndToEndId") and first["id"] in mismatch["message"]
            rows = await h.gateway.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM payments WHERE direction = 'out'", ()))
            assert rows[0] == 1
    asyncio.run(scenario())


@pytest.mark.e2e
def test_a_rejected_payment_frees_its_end_to_end_id(tmp_path):
    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 0)
            refused_status, refused = await post(h, example())
            await open_payer_funds(h)
            status, answer = await post(h, example("2026120790000097"))

            assert refused_status == 422, refused
            assert status == 201, answer
    asyncio.run(scenario())


async def open_payer_funds(h: Any) -> None:
    gw = h.gateway
    await gw.store.run(lambda tx: gw.ledger.deposit(tx, "test:deposit:later", PAYER,
                                                    1_000_000 * YUAN, WORK_DATE))


BRANCH = b"<BrnchId>\n          <Id>999100000027</Id>"
TX_ID = b"<TxId>2026120790000001</TxId>"
CREATED = b"<CreDtTm>2026-12-07T09:15:00</CreDtTm>"
DEBTOR_AGENT = b"<MmbId>999100000027</MmbId>"


@pytest.mark.e2e
def test_a_msg_id_taken_is_refused_for_any_other_field(tmp_path):
    """The same MsgId with only another TxId, CreDtTm or instructing branch (fields the
    transfer built from it leaves out), or another payer's bank, is not the first message
    sent again: 409 at the field that differs, every differing field named. Other content
    of a message taken before its fields were kept is refused at GrpHdr/MsgId."""
    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            first_status, first = await post(h, example())
            variants = {
                "TxId": example().replace(TX_ID, b"<TxId>2026120790000555</TxId>"),
                "CreDtTm": example().replace(CREATED,
                                             b"<CreDtTm>2026-12-07T09:16:00</CreDtTm>"),
                "BrnchId/Id": example().replace(
                    BRANCH, b"<BrnchId>\n          <Id>999100000035</Id>"),
                "DbtrAgt/FinInstnId/ClrSysMmbId/MmbId": example().replace(
                    DEBTOR_AGENT, b"<MmbId>999100000035</MmbId>"),
            }
            answers = {name: await post(h, raw) for name, raw in variants.items()}
            both_status, both = await post(h, variants["TxId"].replace(
                CREATED, b"<CreDtTm>2026-12-07T09:16:00</CreDtTm>"))
            replay_status, replay = await post(h, example())
            await wait_state(h, first["id"], "settled")
            # A message taken before its fields were kept: only its key and answer exist.
            await h.gateway.store.run(lambda tx: tx.execute("DELETE FROM ready_messages", ()))
            old_replay_status, old_replay = await post(h, example())
            other_status, other = await post(h, example().replace(
                b">150000.00<", b">150000.01<"))
            count = await h.gateway.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM payments WHERE direction = 'out'", ()))

            assert first_status == 201
            for name, (status, answer) in answers.items():
                assert status == 409, (name, answer)
                error = answer["errors"][0]
                assert error["code"] == "idempotency_key_reused_with_other_body", name
                assert error["path"].endswith("/" + name), (name, error)
                assert first["id"] in error["message"], error
            assert answers["BrnchId/Id"][1]["errors"][0]["path"].endswith("/InstgAgt/BrnchId/Id")
            assert both_status == 409 and [e["path"].rsplit("/", 1)[1] for e in both["errors"]] \
                == ["CreDtTm", "TxId"]
            assert (replay_status, replay["id"]) == (201, first["id"])
            assert (old_replay_status, old_replay["id"]) == (201, first["id"])
            assert other_status == 409, other
            assert other["errors"][0]["path"] == "/Document/FIToFICstmrCdtTrf/GrpHdr/MsgId"
            assert first["id"] in other["errors"][0]["message"]
            assert count[0] == 1
    asyncio.run(scenario())


@pytest.mark.e2e
def test_a_message_taken_under_the_former_key_is_answered_as_before(tmp_path):
    """Messages were keyed by the payer's bank (DbtrAgt) and MsgId before; one taken then
    and sent again gets its first answer, not a second payment."""
    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            _, first = await post(h, example())

            def as_before(tx: Any) -> None:
                tx.execute("DELETE FROM ready_messages", ())
                tx.execute("UPDATE idempotency SET key = ? WHERE key = ?",
                           ("msg:999100000027:2026120790000001",
                            "msg:999100000019:2026120790000001"))
            await h.gateway.store.run(as_before)
            status, again = await post(h, example())
            await wait_state(h, first["id"], "settled")

            assert (status, again["id"]) == (201, first["id"])
    asyncio.run(scenario())


@pytest.mark.e2e
def test_a_ready_message_gone_by_beps_keeps_its_end_to_end_id(tmp_path):
    """A normal-priority hvps.111 within the BEPS limit goes by BEPS: the same payment
    under a new MsgId is refused as one gone by HVPS is."""
    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            small = example().replace(b">150000.00<", b">100.00<").replace(
                b"<SttlmPrty>URGT", b"<SttlmPrty>NORM")
            first_status, first = await post(h, small)
            again_status, again = await post(h, small.replace(
                b"<MsgId>2026120790000001</MsgId>", b"<MsgId>2026120790000097</MsgId>"))
            count = await h.gateway.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM payments WHERE direction = 'out'", ()))

            assert (first_status, first["channel"]) == (201, "beps"), first
            assert (again_status, again["errors"][0]["code"]) == (409, "end_to_end_id_in_use")
            assert first["id"] in again["errors"][0]["message"]
            assert count[0] == 1
    asyncio.run(scenario())


@pytest.mark.e2e
def test_a_json_transfer_never_takes_an_end_to_end_id_a_ready_message_holds(tmp_path):
    """A core system numbering EndToEndIds as the gateway does (bank, date, sequence) may
    claim, in a ready message, the id the gateway's own sequence reaches next: the JSON
    transfer that reaches it then carries that id with a letter added."""
    from tests.e2e_support import open_account, transfer

    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            account = await open_account(h, 7, 1_000_000 * YUAN)
            async with aiohttp.ClientSession() as http:
                async def send_json(key: str) -> tuple[int, dict[str, Any]]:
                    async with http.post(f"{h.gateway.url}/v1/transfers",
                                         json=transfer(account, "10.00"),
                                         headers={"Idempotency-Key": key}) as r:
                        return r.status, await r.json()
                status, first = await send_json("own-e2e-1")
                assert status == 201, first
                e2e = first["message"]["end_to_end_id"]
                # the ready message takes the next number; the JSON transfer after it the
                # one after that, which the message names as its EndToEndId
                seq = int(e2e[-12:])
                taken = f"{e2e[:-12]}{seq + 2:012d}"
                msg_status, msg = await post(h, example().replace(
                    b"<EndToEndId>99910000002720261207900000000001",
                    f"<EndToEndId>{taken}".encode()))
                assert msg_status == 201, msg
                status, second = await send_json("own-e2e-2")
            assert status == 201
            assert second["id"][-6:] == f"{seq + 2:06d}"
            assert second["message"]["end_to_end_id"] == taken + "A"
            rows = await h.gateway.store.run(lambda tx: tx.query(
                "SELECT id FROM payments WHERE end_to_end_id = ?", (taken,)))
            assert [r[0] for r in rows] == [msg["id"]]
    asyncio.run(scenario())


@pytest.mark.e2e
def test_an_instructing_agent_not_ours_is_the_first_problem_told(tmp_path):
    """A message naming another direct participant as its instructing agent is refused
    for that first, whatever else is wrong with it (the peer named twice, as instructing
    and instructed agent; a code of 11 digits), the other problems told with it."""
    async def scenario() -> None:
        async with started(tmp_path) as h:
            await open_payer(h, 1_000_000 * YUAN)
            answers = [await post(h, example(f"20261207900007{n}", instructing))
                       for n, instructing in enumerate(
                           ("888200000015", "99910000001", "123456789012"), start=10)]

            for status, answer in answers:
                codes = [e["code"] for e in answer["errors"]]
                assert status == 422 and codes[0] == "instructing_agent_not_ours", codes
            assert len(answers[0][1]["errors"]) > 1 and len(answers[1][1]["errors"]) > 1
    asyncio.run(scenario())
