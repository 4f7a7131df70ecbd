"""The simulated NPC: settlement, the central queue, phases, duplicates, discards and
reconciliation, driven over its real HTTP link by a fake bank on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.messages import codec
from gateway.messages.envelope import decode as decode_envelope
from simulators import node
from simulators.settings import DEFAULT_BALANCES_FEN, OUR_BANK
from simulators.testing import (PEER, WORK_DATE, BankSender, World, field, post_envelopes,
                                simulated)

REPO = Path(__file__).resolve().parents[1]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_covered_credit_settles_and_is_forwarded(tmp_path: Path) -> None:
    """A covered hvps.111 gets a 990, then PR04 with the work date, and reaches the payee."""
    async def scenario() -> tuple[World, Any, dict]:
        async with simulated(tmp_path) as w:
            raw = w.sender.credit(150_000_00, tx_id="2026120700000101")
            await w.send(raw)
            return w, decode_envelope(raw).header, w.sim.stats()

    w, header, stats = run(scenario())
    ack = w.bank.bodies("ccms.990.001.02")[0]
    result = w.bank.bodies("ccms.900.001.02")[0]

    assert field(ack, "ComConf/ConfInf/MsgPrcCd") == "PM1I0000"
    assert field(ack, "ComConf/ConfInf/MsgId") == header.mesg_id
    assert field(result, "CmonConf/CmonConfInf/PrcSts") == "PR04"
    assert field(result, "CmonConf/CmonConfInf/PrcDt") == WORK_DATE
    assert field(result, "CmonConf/OrgnlGrpHdr/OrgnlMsgId") == "2026120700000101"
    assert stats["balances"][OUR_BANK] == DEFAULT_BALANCES_FEN[OUR_BANK] - 150_000_00
    assert stats["balances"][PEER] == DEFAULT_BALANCES_FEN[PEER] + 150_000_00
    assert stats["peers"][PEER] == {"hvps.111.001.01": 1}
    assert stats["settled"] == 1


def test_peer_credit_reaches_us_with_its_own_signature(tmp_path: Path) -> None:
    """A peer's credit is settled and forwarded to us unchanged but for direction D."""
    async def scenario() -> tuple[World, Any]:
        async with simulated(tmp_path) as w:
            answer = await w.control("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": OUR_BANK, "payee_account": "6222000000000001",
                "payee_name": "测试丁", "amount_fen": 12_345, "priority": "HIGH"})
            return w, answer

    w, answer = run(scenario())
    created = answer["created"][0]
    forwarded = w.bank.envelopes("hvps.111.001.01")[0]
    decoded = codec.decode(forwarded.encode(), w.sender.ring, frozenset({OUR_BANK}))

    assert created["outcome"] == "PR04"
    assert (forwarded.header.orig_sender, forwarded.header.direction) == (PEER, "D")
    assert forwarded.header.mesg_id == created["mesg_id"]
    assert decoded.signature == "verified" and decoded.ok
    assert (decoded.obj.tx_id, decoded.obj.amount_fen) == (created["tx_id"], 12_345)


# (case, opening balance, credits (tx, priority, fen) in order, funding, settled in
# order, still queued). The balance starts at `opening`; every credit is sent, then the
# funding arrives.
QUEUE_CASES = [
    ("urgent before high before normal", 0,
     [("N1", "NORM", 100), ("H1", "HIGH", 100), ("U1", "URGT", 100)], 300,
     ["U1", "H1", "N1"], []),
    ("first come first within a priority", 0,
     [("N1", "NORM", 100), ("N2", "NORM", 100)], 200, ["N1", "N2"], []),
    ("release stops at the first item not covered", 0,
     [("U1", "URGT", 500), ("N1", "NORM", 100)], 300, [], ["U1", "N1"]),
    ("funding releases only what it covers", 0,
     [("U1", "URGT", 100), ("N1", "NORM", 500)], 300, ["U1"], ["N1"]),
    ("a new credit waits behind a queued one of its priority", 150,
     [("N1", "NORM", 200), ("N2", "NORM", 100)], 0, [], ["N1", "N2"]),
    ("an urgent credit passes queued normal ones", 150,
     [("N1", "NORM", 200), ("U1", "URGT", 100)], 0, ["U1"], ["N1"]),
]


@pytest.mark.parametrize("case, opening, credits, funding, settled, queued", QUEUE_CASES,
                         ids=[c[0] for c in QUEUE_CASES])
def test_central_queue_order(tmp_path: Path, case: str, opening: int,
                             credits: list[tuple[str, str, int]], funding: int,
                             settled: list[str], queued: list[str]) -> None:
    """Short credits queue with PR12 and are released in DOMAIN.md §7 order."""
    async def scenario() -> tuple[World, Any]:
        async with simulated(tmp_path, balances_fen={OUR_BANK: opening}) as w:
            for tx, priority, fen in credits:
                await w.send(w.sender.credit(fen, priority, tx_id=f"2026120700000{tx}"))
            if funding:
                await w.control("POST", "/sim/fund", {"participant": OUR_BANK,
                                                      "amount_fen": funding})
            return w, await w.control("GET", "/sim/queue")

    w, queue = run(scenario())
    results = w.results()

    assert [m[-2:] for m, s, _ in results if s == "PR04"] == settled
    assert [q["tx_id"][-2:] for q in queue["queued"]] == queued
    assert {m[-2:] for m, s, _ in results if s == "PR12"} >= set(queued)


def test_queue_cancelled_at_end_of_clearing_window(tmp_path: Path) -> None:
    """Credits still queued when the clearing window closes are cancelled with PR08."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path, balances_fen={OUR_BANK: 0}) as w:
            await w.send(w.sender.credit(500, tx_id="2026120700000001"))
            await w.control("POST", "/sim/phase", {"status": "30"})
            await w.control("POST", "/sim/phase", {"status": "40"})
            return w, w.sim.stats()

    w, stats = run(scenario())

    assert [s for _, s, _ in w.results()] == ["PR12", "PR08"]
    assert (stats["queued"], stats["cancelled"], stats["phase"]) == (0, 1, "40")
    assert stats["balances"][OUR_BANK] == 0


def test_funding_in_cut_off_releases_when_the_clearing_window_opens(tmp_path: Path) -> None:
    """Funding during cut-off (20) settles nothing until the clearing window (30) opens."""
    async def scenario() -> tuple[World, dict, dict]:
        async with simulated(tmp_path, balances_fen={OUR_BANK: 0}) as w:
            await w.send(w.sender.credit(500, tx_id="2026120700000001"))
            await w.control("POST", "/sim/phase", {"status": "20"})
            await w.control("POST", "/sim/fund", {"participant": OUR_BANK, "amount_fen": 500})
            in_cut_off = w.sim.stats()
            await w.control("POST", "/sim/phase", {"status": "30"})
            return w, in_cut_off, w.sim.stats()

    w, in_cut_off, in_window = run(scenario())

    assert (in_cut_off["queued"], in_cut_off["balances"][OUR_BANK]) == (1, 500)
    assert (in_window["queued"], in_window["balances"][OUR_BANK]) == (0, 0)
    assert [s for _, s, _ in w.results()] == ["PR12", "PR04"]


# (case, status before, date before, body, status and date after)
PHASE_CASES = [
    ("daytime to clearing window", "10", WORK_DATE, {"status": "30"}, ("30", WORK_DATE)),
    ("end of day to preparation on the given date", "40", WORK_DATE,
     {"status": "00", "date": "2026-12-09"}, ("00", "2026-12-09")),
    ("cut-over without a date takes the next working day", "40", "2026-12-11",
     {"status": "00"}, ("00", "2026-12-14")),
]


@pytest.mark.parametrize("case, before, before_date, body, after", PHASE_CASES,
                         ids=[c[0] for c in PHASE_CASES])
def test_phase_change_sends_801(tmp_path: Path, case: str, before: str, before_date: str,
                                body: dict, after: tuple[str, str]) -> None:
    """Each status change is applied and announced with old and new date and status."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path, initial_phase=before, initial_date=before_date) as w:
            await w.control("POST", "/sim/phase", body)
            return w, w.sim.stats()

    w, stats = run(scenario())
    notice = w.bank.bodies("ccms.801.001.02")[0]
    info = [field(notice, f"SysStsNtfctn/SysStsInf/{name}")
            for name in ("OrgnlSysDt", "OrgnlSysSts", "CurSysDt", "CurSysSts")]

    assert info == [before_date, before, after[1], after[0]]
    assert (stats["phase"], stats["work_date"]) == after
    assert len(w.bank.envelopes()) == 1


def test_duplicate_acknowledged_but_settled_once(tmp_path: Path) -> None:
    """A message seen before gets its 990 again and nothing else; a resend under a new
    message id settles again and is listed as settled twice."""
    async def scenario() -> tuple[World, dict, dict]:
        async with simulated(tmp_path) as w:
            raw = w.sender.credit(1_000, tx_id="2026120700000007")
            await w.send(raw)
            await w.send(raw)
            once = w.sim.stats()
            await w.send(w.sender.credit(1_000, tx_id="2026120700000007"))
            return w, once, w.sim.stats()

    w, once, twice = run(scenario())

    assert len(w.bank.envelopes("ccms.990.001.02")) == 3
    assert [s for _, s, _ in w.results()] == ["PR04", "PR04"]
    assert (once["settled"], once["duplicates"], once["settled_twice"]) == (1, 1, [])
    assert once["balances"][OUR_BANK] == DEFAULT_BALANCES_FEN[OUR_BANK] - 1_000
    assert (twice["settled"], twice["settled_twice"]) == (2, ["2026120700000007"])


def test_a_duplicate_is_logged_with_the_transactions_it_carries(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`event=duplicate_acknowledged` names the payment sent again, beside its message
    id, so that it can be found in the gateway's log (its `event=recovered` line)."""
    async def scenario() -> None:
        async with simulated(tmp_path) as w:
            raw = w.sender.credit(1_000, tx_id="2026120700000008")
            await w.send(raw)
            with caplog.at_level(logging.INFO, logger="npc.node"):
                await w.send(raw)

    run(scenario())

    [fields] = [getattr(r, "kv_fields") for r in caplog.records
                if r.getMessage() == "duplicate_acknowledged"]
    assert (fields["tx_ids"], fields["tx_count"]) == ("2026120700000008", "1")


def test_a_long_list_of_transactions_is_cut_and_counted() -> None:
    root = etree.fromstring("<D xmlns='urn:x'>" + "".join(
        f"<Tx><TxId>T{n:02d}</TxId></Tx>" for n in range(12)) + "</D>")

    assert node.carried_tx_ids(root) == {
        "tx_ids": ",".join(f"T{n:02d}" for n in range(10)) + ",+2", "tx_count": "12"}
    assert node.carried_tx_ids(etree.fromstring("<D/>")) == {}


def _tampered(sender: BankSender) -> bytes:
    return sender.credit(1_000).replace("货款".encode(), "货物".encode())


def _unsigned(sender: BankSender) -> bytes:
    env = decode_envelope(sender.credit(1_000))
    return codec.encode(env.header, env.body, None)


def _schema_broken(sender: BankSender) -> bytes:
    env = decode_envelope(sender.credit(1_000))
    return codec.encode(env.header, env.body.replace(b">10.00<", b">ten<"), sender.ring)


def _type_mismatch(sender: BankSender) -> bytes:
    env = decode_envelope(sender.credit(1_000))
    header = replace(env.header, mesg_type="hvps.710.001.01")
    return codec.encode(header, env.body, sender.ring)


def _not_xml(sender: BankSender) -> bytes:
    return codec.encode(sender.header("hvps.111.001.01"), b"<Document><oops", sender.ring)


DISCARD_CASES = [
    ("body changed after signing", _tampered, "CC9S0001", "signature_invalid"),
    ("signature missing", _unsigned, "CC9S0001", "signature_required"),
    ("schema violated", _schema_broken, "CC9F0001", "schema_violation"),
    ("header type disagrees with body", _type_mismatch, "CC9F0001",
     "header_type_disagrees_with_body"),
    ("body is not XML", _not_xml, "CC9F0001", "xml_not_well_formed"),
]


@pytest.mark.parametrize("case, make, code, rule", DISCARD_CASES,
                         ids=[c[0] for c in DISCARD_CASES])
def test_bad_message_discarded_with_911(tmp_path: Path, case: str, make: Any, code: str,
                                        rule: str) -> None:
    """A message failing signature or format checks gets a ccms.911 and no processing."""
    async def scenario() -> tuple[World, bytes, dict]:
        async with simulated(tmp_path) as w:
            raw = make(w.sender)
            await w.send(raw)
            return w, raw, w.sim.stats()

    w, raw, stats = run(scenario())
    notices = w.bank.bodies("ccms.911.001.02")
    header = decode_envelope(raw).header

    assert len(w.bank.envelopes()) == 1 and len(notices) == 1
    assert field(notices[0], "DscrdMsgNtfctn/DscrdInf/MsgId") == header.mesg_id
    assert field(notices[0], "DscrdMsgNtfctn/DscrdInf/PrcCd") == code
    assert rule in field(notices[0], "DscrdMsgNtfctn/DscrdInf/RjctInf")
    assert (stats["discarded"], stats["settled"], stats["rejected"]) == (1, 0, 0)


def test_unknown_sender_is_dropped_silently(tmp_path: Path) -> None:
    """A message from a code that is no participant is logged and answered by no
    message; its POST is refused (400, the sender named), never answered as taken."""
    async def scenario() -> tuple[World, dict, tuple[int, Any]]:
        async with simulated(tmp_path) as w:
            stranger = BankSender(w.sim.settings.keys_dir, w.clock, code="666600000011")
            answer = await post_envelopes(w.sim.url, [stranger.credit(1_000)])
            await w.sim.drain()
            return w, w.sim.stats(), answer

    w, stats, (status, answer) = run(scenario())

    assert w.bank.received == []
    assert (stats["discarded"], stats["messages_in"], stats["messages_out"]) == (1, 1, 0)
    assert status == 400
    assert [(e["code"], e["path"], e["value"]) for e in answer["errors"]] == [
        ("participant_unknown", "{H:/orig_sender", "666600000011")]


# (case, HVPS status, credit changes, PrcCd)
REJECT_CASES = [
    ("before daytime", "00", {}, "HV0E0001"),
    ("in the clearing window", "30", {}, "HV0E0001"),
    ("receiver is no participant", "10", {"receiver": "555500000019"}, "HV0E0002"),
    ("sender is not the payer's clearing bank", "10", {"instg_direct": "777300000011"},
     "HV0E0003"),
    ("payer and payee clearing banks equal", "10", {"instd_direct": OUR_BANK}, "HV0E0004"),
]


@pytest.mark.parametrize("case, phase, changes, code", REJECT_CASES,
                         ids=[c[0] for c in REJECT_CASES])
def test_refused_credit_gets_pr09(tmp_path: Path, case: str, phase: str, changes: dict,
                                  code: str) -> None:
    """A credit the NPC will not settle is acknowledged, then rejected with PR09."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path, initial_phase=phase) as w:
            await w.send(w.sender.credit(1_000, **changes))
            return w, w.sim.stats()

    w, stats = run(scenario())

    assert len(w.bank.envelopes("ccms.990.001.02")) == 1
    assert [(s, c) for _, s, c in w.results()] == [("PR09", code)]
    assert (stats["rejected"], stats["settled"]) == (1, 0)
    assert stats["balances"][OUR_BANK] == DEFAULT_BALANCES_FEN[OUR_BANK]


def _summary_rows(root: etree._Element, tag: str, names: tuple[str, ...]) -> list[tuple]:
    rows = root.findall(f"./{{*}}SummryFile/{{*}}SummryFileInf/{{*}}{tag}")
    return [tuple(field(row, name) for name in names) for row in rows]


PAYMENT_COLUMNS = ("MT", "TxTpCd", "SndgNbOfTxs", "SndgCtrlSum", "RcvgNbOfTxs",
                   "RcvgCtrlSum", "PrcSts")
MESSAGE_COLUMNS = ("MT", "TxTpCd", "SndgNbOfTxs", "RcvgNbOfTxs", "PrcSts")


def test_710_answered_with_711_totals(tmp_path: Path) -> None:
    """hvps.711 lists what we sent and received that day, and a skew on purpose."""
    async def scenario() -> tuple[World, list]:
        async with simulated(tmp_path) as w:
            await w.send(w.sender.credit(100))
            await w.send(w.sender.credit(200))
            await w.send(w.sender.credit(300, receiver="555500000019"))
            await w.control("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": OUR_BANK, "payee_account": "1",
                "payee_name": "测试", "amount_fen": 50})
            request = w.sender.recon_request(WORK_DATE)
            await w.send(request)
            await w.control("POST", "/sim/recon-skew", {"participant": OUR_BANK,
                                                        "count": 1, "amount_fen": 1_000})
            await w.send(w.sender.recon_request(WORK_DATE))
            return w, [request]

    w, (request,) = run(scenario())
    plain, skewed = w.bank.bodies("hvps.711.001.01")
    request_id = field(codec.decode(request).root, "AcctChckngReq/GrpHdr/MsgId")

    assert field(plain, "SummryFile/OrgnlGrpHdr/OrgnlMsgId") == request_id
    assert field(plain, "SummryFile/SummryFileInf/ChckDt") == WORK_DATE
    assert _summary_rows(plain, "ChckPmtInfDtls", PAYMENT_COLUMNS) == [
        ("hvps.111.001.01", "A100", "2", "CNY+3.00", "1", "CNY+0.50", "PR04")]
    assert _summary_rows(plain, "ChckMsg", MESSAGE_COLUMNS) == [
        ("hvps.111.001.01", "A100", "2", "1", "PR04"),
        ("hvps.111.001.01", "A100", "1", "0", "PR09")]
    assert _summary_rows(skewed, "ChckPmtInfDtls", PAYMENT_COLUMNS) == [
        ("hvps.111.001.01", "A100", "3", "CNY+13.00", "1", "CNY+0.50", "PR04")]


def _reference_dir() -> Path:
    for candidate in (REPO.parent / "shared", Path("/work/shared")):
        if (candidate / "cnaps" / "reference-xsd").is_dir():
            return candidate / "cnaps" / "reference-xsd"
    raise AssertionError("the shared CNAPS reference schemas are beside the repository")


# Types whose published schema is a stock ISO one (SPEC.md a.3).
REFERENCE_FILES = {"hvps.111.001.01": "pacs.008.001.02.xsd",
                   "hvps.112.001.01": "pacs.009.001.02.xsd"}
FORWARDED_CREDITS = frozenset(REFERENCE_FILES)


@cache
def _reference_schema(mesg_type: str) -> etree.XMLSchema:
    path = _reference_dir() / REFERENCE_FILES.get(mesg_type, f"{mesg_type}.xsd")
    return etree.XMLSchema(etree.parse(str(path)))


def test_every_message_on_the_wire_validates_against_reference_xsd(tmp_path: Path) -> None:
    """Everything the simulator sends, to us or to its peers, is valid under the
    published schemas and decodes cleanly with our own codec and keys: the credits it
    forwards signed by their senders, its own messages unsigned, as the captured ones."""
    async def scenario() -> tuple[list[bytes], BankSender]:
        async with simulated(tmp_path, balances_fen={OUR_BANK: 1_000}) as w:
            await w.send(w.sender.credit(500))
            await w.send(w.sender.institution_credit(20))
            await w.send(w.sender.credit(5_000))
            await w.send(w.sender.credit(10, receiver="555500000019"))
            await w.send(_tampered(w.sender))
            await w.control("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": OUR_BANK, "payee_account": "1",
                "payee_name": "测试", "amount_fen": 70, "count": 2})
            await w.send(w.sender.recon_request(WORK_DATE))
            for status in ("30", "40", "00"):
                await w.control("POST", "/sim/phase", {"status": status})
            rows = w.sim.store.conn.execute("SELECT raw FROM outbox").fetchall()
            return [row[0] for row in rows], w.sender

    wire, sender = run(scenario())
    types = set()
    failures = []
    for raw in wire:
        env = decode_envelope(raw)
        types.add(env.header.mesg_type)
        schema = _reference_schema(env.header.mesg_type)
        if not schema.validate(etree.fromstring(env.body)):
            failures.append((env.header.mesg_type, str(schema.error_log)))
        ours = codec.decode(raw, sender.ring)
        # The credits it forwards keep their sender's signature; the NPC's own notices,
        # reports and acknowledgements travel unsigned, as the captured ones do.
        signed = "verified" if env.header.mesg_type in FORWARDED_CREDITS else "unsigned_allowed"
        if not ours.ok or ours.signature != signed:
            failures.append((env.header.mesg_type, ours.signature, ours.problems))

    assert failures == []
    assert types == {"ccms.990.001.02", "ccms.900.001.02", "ccms.911.001.02",
                     "ccms.801.001.02", "hvps.711.001.01", "hvps.111.001.01",
                     "hvps.112.001.01"}
