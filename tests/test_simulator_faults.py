"""The simulated NPC's link faults, bounded redelivery, restarts and the clock-driven day."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import SHANGHAI
from simulators.link import retry_pause
from simulators.logfmt import KeyValueFormatter
from simulators.settings import OUR_BANK, Delivery
from simulators.testing import PEER, World, call, field, post_envelope, simulated

TO_US = {"sender": PEER, "receiver": OUR_BANK, "payee_account": "6222000000000001",
         "payee_name": "测试丁", "amount_fen": 100}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _peer_sends(w: World, count: int = 1) -> list[str]:
    answer = await w.control("POST", "/sim/peer/send", {**TO_US, "count": count})
    return [c["mesg_id"] for c in answer["created"]]


def _credits_to_us(w: World) -> list[str]:
    return [e.header.mesg_id for e in w.bank.envelopes("hvps.111.001.01")]


def test_dropped_message_is_kept_for_redelivery(tmp_path: Path) -> None:
    """With drop 1.0 nothing reaches the bank; redelivery with faults off sends it."""
    async def scenario() -> tuple[World, list[str], dict, list[str]]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", {"drop": 1.0})
            sent = await _peer_sends(w)
            stats = w.sim.stats()
            before = list(_credits_to_us(w))
            await w.control("POST", "/sim/faults", {"drop": 0.0})
            await w.control("POST", "/sim/redeliver", {"include_faulted": True})
            return w, sent, stats, before

    w, sent, stats, before = run(scenario())

    assert before == [] and stats["outbox"] == {"dropped": 1, "sent": 2}
    assert _credits_to_us(w) == sent


def test_duplicate_fault_sends_every_message_twice(tmp_path: Path) -> None:
    """With duplicate 1.0 the bank receives the same bytes twice."""
    async def scenario() -> World:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", {"duplicate": 1.0, "delay_ms": 1})
            await _peer_sends(w)
            return w

    w = run(scenario())

    assert len(w.bank.received) == 2 and w.bank.received[0] == w.bank.received[1]


def test_lost_result_is_not_sent(tmp_path: Path) -> None:
    """lose_result 1 swallows the next ccms.900 only; its 990 still arrives."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", {"lose_result": 1})
            await w.send(w.sender.credit(100, tx_id="2026120700000001"))
            await w.send(w.sender.credit(100, tx_id="2026120700000002"))
            return w, w.sim.stats()

    w, stats = run(scenario())

    assert [m for m, _, _ in w.results()] == ["2026120700000002"]
    assert len(w.bank.envelopes("ccms.990.001.02")) == 2
    assert (stats["settled"], stats["outbox"]["lost"], stats["faults"]["lose_result"]) == (
        2, 1, 0)


# (case, faults, HTTP status the bank's POST gets)
REFUSING_CASES = [
    ("error status", {"error_status": 500}, 500),
    ("offline", {"offline": True}, 503),
]


@pytest.mark.parametrize("case, faults, status", REFUSING_CASES,
                         ids=[c[0] for c in REFUSING_CASES])
def test_inbound_refused_while_faulted(tmp_path: Path, case: str, faults: dict,
                                       status: int) -> None:
    """An error status or offline NPC answers the bank's POST and takes nothing."""
    async def scenario() -> tuple[int, dict]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", faults)
            answer = await post_envelope(w.sim.url, w.sender.credit(100))
            return answer, w.sim.stats()

    answer, stats = run(scenario())

    assert answer == status
    assert (stats["messages_in"], stats["settled"]) == (0, 0)


def test_offline_npc_delivers_when_back(tmp_path: Path) -> None:
    """Messages made while offline wait and are delivered once the NPC is online."""
    async def scenario() -> tuple[World, list[str], list[str]]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", {"offline": True})
            sent = await _peer_sends(w)
            during = list(_credits_to_us(w))
            await w.control("POST", "/sim/faults", {"offline": False})
            return w, sent, during

    w, sent, during = run(scenario())

    assert during == [] and _credits_to_us(w) == sent


# (case, statuses the bank answers first, outbox state, deliveries after redelivery)
BANK_ERROR_CASES = [
    ("one 500 is retried", [500], {"sent": 3}, 1),
    ("500 on every attempt gives up", [500, 500, 500], {"sent": 2, "undelivered": 1}, 1),
    ("a 400 is a refusal, not retried", [400], {"sent": 2, "refused": 1}, 1),
]


@pytest.mark.parametrize("case, answers, outbox, delivered", BANK_ERROR_CASES,
                         ids=[c[0] for c in BANK_ERROR_CASES])
def test_bank_errors_retried_within_bounds(tmp_path: Path, case: str, answers: list[int],
                                           outbox: dict, delivered: int) -> None:
    """5xx answers are retried up to attempts_max, then kept for /sim/redeliver."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path) as w:
            w.bank.answers = list(answers)
            await _peer_sends(w)
            stats = w.sim.stats()
            await w.control("POST", "/sim/redeliver", {})
            return w, stats

    w, stats = run(scenario())

    assert stats["outbox"] == outbox
    assert len(_credits_to_us(w)) == delivered


def test_reorder_delivers_everything_in_a_seeded_shuffle(tmp_path: Path) -> None:
    """Reordering changes the order of waiting messages, never the set."""
    async def scenario() -> tuple[World, list[str]]:
        async with simulated(tmp_path, seed=7) as w:
            await w.control("POST", "/sim/faults", {"offline": True})
            sent = await _peer_sends(w, count=6)
            await w.control("POST", "/sim/faults", {"reorder": True, "offline": False})
            return w, sent

    w, sent = run(scenario())
    received = _credits_to_us(w)

    assert sorted(received) == sorted(sent)
    assert received != sent


def test_fault_values_checked_all_at_once(tmp_path: Path) -> None:
    """Every bad fault value is reported, by rule, in one answer."""
    async def scenario() -> tuple[int, Any]:
        async with simulated(tmp_path) as w:
            return await call(w.sim.url, "POST", "/sim/faults",
                              {"drop": 2, "reorder": "yes", "error_status": 200, "hail": 1})

    status, answer = run(scenario())

    assert status == 422
    assert [e["code"] for e in answer["errors"]] == [
        "fault_probability_must_be_between_0_and_1", "fault_flag_must_be_true_or_false",
        "fault_status_must_be_an_http_error", "fault_unknown"]


def test_restart_loses_nothing_and_settles_nothing_twice(tmp_path: Path) -> None:
    """After a restart balances, queue and duplicate set are intact, and messages not yet
    delivered are delivered."""
    async def scenario() -> tuple[World, dict, dict, list[str]]:
        async with simulated(tmp_path, balances_fen={OUR_BANK: 1_000}) as w:
            settled = w.sender.credit(600, tx_id="2026120700000001")
            await w.send(settled)
            await w.send(w.sender.credit(700, tx_id="2026120700000002"))
            await w.control("POST", "/sim/faults", {"offline": True})
            pending = await _peer_sends(w)
            before = w.sim.stats()
            await w.restart()
            await w.sim.drain()
            await w.send(settled)
            await w.control("POST", "/sim/fund", {"participant": OUR_BANK,
                                                  "amount_fen": 300})
            return w, before, w.sim.stats(), pending

    w, before, after, pending = run(scenario())

    assert (before["queued"], before["settled"]) == (1, 2)
    assert after["duplicates"] == 1
    assert (after["queued"], after["settled"], after["settled_twice"]) == (0, 3, [])
    assert after["balances"][OUR_BANK] == 1_000 - 600 + 100 + 300 - 700
    assert [s for _, s, _ in w.results()] == ["PR04", "PR12", "PR04"]
    assert _credits_to_us(w) == pending


def test_follow_clock_announces_the_timetable(tmp_path: Path) -> None:
    """With follow_clock the NPC moves through the day as gateway.windows forecasts it,
    cancelling the queue at end of day."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path, datetime(2026, 12, 7, 8, 0, tzinfo=SHANGHAI),
                             follow_clock=True, initial_phase="40",
                             initial_date="2026-12-04", balances_fen={OUR_BANK: 0}) as w:
            w.clock.set(datetime(2026, 12, 7, 8, 31, tzinfo=SHANGHAI))
            w.sim.follower.step()
            await w.send(w.sender.credit(500))
            w.clock.set(datetime(2026, 12, 7, 17, 31, tzinfo=SHANGHAI))
            w.sim.follower.step()
            await w.sim.drain()
            return w, w.sim.stats()

    w, stats = run(scenario())
    notices = [(field(n, "SysStsNtfctn/SysStsInf/CurSysSts"),
                field(n, "SysStsNtfctn/SysStsInf/CurSysDt"))
               for n in w.bank.bodies("ccms.801.001.02")]

    assert notices[:2] == [("00", "2026-12-07"), ("10", "2026-12-07")]
    assert [s for s, _ in notices][-2:] == ["30", "40"]
    assert [s for _, s, _ in w.results()] == ["PR12", "PR08"]
    assert (stats["phase"], stats["work_date"]) == ("40", "2026-12-07")


def test_peer_request_checked_all_at_once(tmp_path: Path) -> None:
    """A bad /sim/peer/send body is refused with every problem named."""
    async def scenario() -> tuple[int, Any]:
        async with simulated(tmp_path) as w:
            return await call(w.sim.url, "POST", "/sim/peer/send", {
                "sender": OUR_BANK, "receiver": "123", "payee_account": "1",
                "payee_name": "x", "amount_fen": 0, "priority": "SOON"})

    status, answer = run(scenario())

    assert status == 422
    assert sorted(e["code"] for e in answer["errors"]) == [
        "field_malformed", "field_must_be_a_whole_number",
        "receiver_must_be_another_participant", "sender_must_be_a_simulated_peer"]


def test_forwarded_credit_is_answered_by_the_peer(tmp_path: Path) -> None:
    """A peer answers the credit forwarded to it with its own signed ccms.990."""
    async def scenario() -> dict:
        async with simulated(tmp_path) as w:
            await w.send(w.sender.credit(100))
            return w.sim.stats()

    stats = run(scenario())

    assert stats["peers"][PEER] == {"hvps.111.001.01": 1}
    assert stats["messages_in"] == 2  # our credit and the peer's 990


def _lines(caplog: Any) -> list[str]:
    """The simulator's log lines as it writes them (event name and key=value fields)."""
    formatter = KeyValueFormatter()
    return [formatter.format(r) for r in caplog.records]


def test_by_default_a_bank_is_tried_for_ten_minutes_with_pauses_up_to_30_s() -> None:
    """A gateway answering 503 (our key not yet installed there, a restart) gets its
    messages when it takes them within ten minutes, without POST /sim/redeliver: the
    pauses double from 0.2 s to 30 s, and tries go on until the next would start after
    `retry_for_s`."""
    delivery = Delivery()
    pauses: list[float] = []
    retrying_s = 0.0
    while (pause := retry_pause(delivery, len(pauses) + 1, retrying_s)) is not None:
        pauses.append(pause)
        retrying_s += pause

    assert pauses[:4] == [0.2, 0.4, 0.8, 1.6]
    assert max(pauses) == 30.0 and pauses[-1] == 30.0
    assert delivery.retry_for_s - 30.0 < retrying_s <= delivery.retry_for_s == 600.0
    assert len(pauses) > 6


def test_a_bank_answering_503_is_tried_until_it_takes_the_message(tmp_path: Path,
                                                                  caplog) -> None:
    """Fifteen 503s in a row: the message is tried again after each, with growing
    pauses logged, and delivered at the sixteenth try; nothing is left undelivered."""
    delivery = Delivery(attempts_max=0, backoff_s=0.01, backoff_max_s=0.04, retry_for_s=30)

    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path, delivery=delivery) as w:
            w.bank.answers = [503] * 15
            with caplog.at_level(logging.INFO, logger="npc.link"):
                sent = await _peer_sends(w)
            return w, sent, w.sim.stats()

    w, sent, stats = run(scenario())
    scheduled = [line for line in _lines(caplog) if "delivery_retry_scheduled" in line]

    assert _credits_to_us(w) == sent
    assert set(stats["outbox"]) == {"sent"}
    assert len(scheduled) == 15
    assert "pause_s=0.01 " in scheduled[0] and "pause_s=0.04 " in scheduled[-1], scheduled
    assert all("answered 503" in line for line in scheduled), scheduled[:2]


def test_retries_end_after_retry_for_s_and_the_message_waits_for_redelivery(
        tmp_path: Path, caplog) -> None:
    delivery = Delivery(attempts_max=0, backoff_s=0.05, backoff_max_s=0.1, retry_for_s=0.6)

    async def scenario() -> tuple[World, dict, float]:
        async with simulated(tmp_path, delivery=delivery) as w:
            w.bank.answers = [503] * 1000
            began = asyncio.get_running_loop().time()
            with caplog.at_level(logging.INFO, logger="npc.link"):
                await _peer_sends(w)
            took = asyncio.get_running_loop().time() - began
            return w, w.sim.stats(), took

    w, stats, took = run(scenario())
    given_up = [line for line in _lines(caplog) if "delivery_given_up" in line]

    assert stats["outbox"].get("undelivered") == 1
    assert 0.4 <= took < 5.0
    assert len(given_up) == 1 and "answered 503" in given_up[0]


def test_a_redelivery_ends_the_pause_of_messages_on_their_way(tmp_path: Path) -> None:
    """A message waiting 30 s before its next try goes at once on POST /sim/redeliver."""
    delivery = Delivery(attempts_max=0, backoff_s=30.0, backoff_max_s=30.0, retry_for_s=600)

    async def scenario() -> tuple[World, float]:
        async with simulated(tmp_path, delivery=delivery) as w:
            w.bank.answers = [503]
            status, _ = await call(w.sim.url, "POST", "/sim/peer/send", {**TO_US, "count": 1})
            assert status == 200
            loop = asyncio.get_running_loop()
            while not w.bank.posts:
                await asyncio.sleep(0.01)
            began = loop.time()
            status, _ = await call(w.sim.url, "POST", "/sim/redeliver", {})
            assert status == 200
            while not _credits_to_us(w) and loop.time() - began < 10:
                await asyncio.sleep(0.01)
            return w, loop.time() - began

    w, took = run(scenario())

    assert len(_credits_to_us(w)) == 1 and took < 5.0


# (case, faults, PrcCd of the ccms.911, the rule its RjctInf names)
DISCARD_CASES = [
    ("signature by default", {"discard": 2}, "CC9S0001", "signature_discarded_by_fault"),
    ("format", {"discard": 2, "discard_rule": "format"}, "CC9F0001",
     "format_discarded_by_fault"),
]


@pytest.mark.parametrize("case, faults, code, rule", DISCARD_CASES,
                         ids=[c[0] for c in DISCARD_CASES])
def test_discard_fault_throws_away_the_next_messages(tmp_path: Path, case: str, faults: dict,
                                                     code: str, rule: str) -> None:
    """discard 2: the bank's next two credits are answered with a ccms.911 naming the rule
    and not settled; the third is acknowledged and settled, and the count is used up."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", faults)
            for n in (1, 2, 3):
                await w.send(w.sender.credit(100, tx_id=f"202612070000000{n}"))
            return w, w.sim.stats()

    w, stats = run(scenario())
    notices = w.bank.bodies("ccms.911.001.02")

    assert [field(n, "DscrdMsgNtfctn/DscrdInf/PrcCd") for n in notices] == [code, code]
    assert all(rule in field(n, "DscrdMsgNtfctn/DscrdInf/RjctInf") for n in notices)
    assert len(w.bank.envelopes("ccms.990.001.02")) == 1
    assert (stats["settled"], stats["discarded"], stats["faults"]["discard"]) == (1, 2, 0)


def test_discard_share_draws_for_each_message(tmp_path: Path) -> None:
    """discard_share 1.0 discards every message a bank sends; 0.0 none."""
    async def scenario() -> tuple[World, dict]:
        async with simulated(tmp_path) as w:
            await w.control("POST", "/sim/faults", {"discard_share": 1.0})
            await w.send(w.sender.credit(100, tx_id="2026120700000001"))
            await w.control("POST", "/sim/faults", {"discard_share": 0.0})
            await w.send(w.sender.credit(100, tx_id="2026120700000002"))
            return w, w.sim.stats()

    w, stats = run(scenario())

    assert len(w.bank.envelopes("ccms.911.001.02")) == 1
    assert (stats["settled"], stats["discarded"]) == (1, 1)


# (case, body, code refused with)
DISCARD_REFUSED = [
    ("rule unknown", {"discard_rule": "key"}, "fault_discard_rule_unknown"),
    ("count negative", {"discard": -1}, "fault_count_must_be_a_whole_number"),
    ("share above 1", {"discard_share": 1.5}, "fault_probability_must_be_between_0_and_1"),
]


@pytest.mark.parametrize("case, body, code", DISCARD_REFUSED, ids=[c[0] for c in DISCARD_REFUSED])
def test_discard_fault_settings_are_checked(tmp_path: Path, case: str, body: dict,
                                            code: str) -> None:
    """A bad discard setting is refused naming the rule and changes nothing."""
    async def scenario() -> tuple[int, Any, dict]:
        async with simulated(tmp_path) as w:
            status, answer = await call(w.sim.url, "POST", "/sim/faults", body)
            return status, answer, w.sim.stats()["faults"]

    status, answer, faults = run(scenario())

    assert status == 422 and code in str(answer)
    assert (faults["discard"], faults["discard_share"], faults["discard_rule"]) == (
        0, 0.0, "signature")
