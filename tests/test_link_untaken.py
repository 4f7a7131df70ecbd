"""Whether a failed delivery proves that the NPC did not take the message: only then
may an operator take its payment back (gateway.outbound.Delivery). The outcome of each
kind of failure on the link, and what the outbox row counts of it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import outbound
from gateway.linkpost import DisconnectedThenUnreachable, LinkRefused
from gateway.store import SCHEMA, Store
from gateway.worker import RetryLater
from ledger import Ledger
from ledger.db import connect
from tests.test_link_post import Npc, _send_all, posting


def run(scenario: Any) -> Any:
    return asyncio.run(scenario)


# The NPC's answer to the whole POST (or, framed, to each envelope), and whether the
# failure proves it did not take the envelopes.
ANSWERS = [
    (503, RetryLater, True),    # the NPC takes nothing now
    (500, RetryLater, False),   # it may have taken them before failing
    (502, RetryLater, False),
    (504, RetryLater, False),   # a proxy that gave up waiting: the NPC may have them
    (400, LinkRefused, True),   # refused: not taken
]


@pytest.mark.parametrize("status, kind, untaken", ANSWERS)
@pytest.mark.parametrize("count", [1, 3])
def test_only_a_503_or_a_refusal_proves_the_npc_did_not_take_a_message(
        status: int, kind: type, untaken: bool, count: int) -> None:
    """Unframed and framed alike, each envelope's failure says whether it was taken."""
    async def scenario() -> list[Any]:
        npc = Npc()
        npc.whole = status if count == 1 else None
        npc.verdict = lambda envelope: status
        async with posting(npc) as (poster, gw):
            return await _send_all(poster, count)

    outcomes = run(scenario())

    assert [type(o) for o in outcomes] == [kind] * count
    assert [outbound.untaken_by(o) for o in outcomes] == [untaken] * count


def test_no_connection_proves_the_npc_did_not_take_a_message() -> None:
    """Nothing listening: the connection was never made, nothing of the POST left us."""
    async def scenario() -> list[Any]:
        async with posting(Npc(), listening=False) as (poster, gw):
            return await _send_all(poster, 2)

    assert [outbound.untaken_by(o) for o in run(scenario())] == [True, True]


def test_a_timeout_does_not_prove_it() -> None:
    """The NPC holds the POST past the link's timeout: it may have the message."""
    async def scenario() -> list[Any]:
        npc = Npc()
        npc.release.clear()
        async with posting(npc) as (poster, gw):
            await gw.link_http.close()
            gw.link_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2))
            outcomes = await _send_all(poster, 1)
            npc.release.set()
            return outcomes

    outcomes = run(scenario())

    assert type(outcomes[0]) is RetryLater and not outbound.untaken_by(outcomes[0])


def test_an_unreadable_answer_does_not_prove_it() -> None:
    """A 207 the gateway cannot read: the NPC may have taken any of the envelopes."""
    async def scenario() -> list[Any]:
        npc = Npc()
        npc.body_instead = b"not json"
        async with posting(npc) as (poster, gw):
            return await _send_all(poster, 3)

    assert [outbound.untaken_by(o) for o in run(scenario())] == [False] * 3


def test_no_connection_after_the_npc_closed_one_does_not_prove_it(monkeypatch) -> None:
    """The NPC closed the connection carrying the POST and then could not be reached:
    the first POST may have reached it before it closed."""
    async def scenario() -> list[Any]:
        async with posting(Npc()) as (poster, gw):
            tries: list[int] = []

            async def post_once(body: bytes, headers: dict[str, str], count: int
                                ) -> list[int]:
                tries.append(count)
                if len(tries) == 1:
                    raise aiohttp.ServerDisconnectedError()
                raise aiohttp.ClientConnectorError(
                    aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None,
                                                        None, None),
                    OSError(111, "Connection refused"))
            monkeypatch.setattr(poster, "_post_once", post_once)
            return await _send_all(poster, 1)

    outcome = run(scenario())[0]

    assert type(outcome) is RetryLater and not outbound.untaken_by(outcome)
    assert DisconnectedThenUnreachable.__name__ in str(outcome)


def one_row(url: str, schema: list[str], attempts: int) -> Any:
    """A database with the gateway's tables as `schema` makes them and one payment's
    outbox row, pending after `attempts` attempts."""
    db = connect(url)
    with db.transaction() as tx:
        for statement in schema:
            tx.execute(statement, ())
        tx.execute("INSERT INTO outbox (payment_id, kind, stream, state, attempts, "
                   "created_at, updated_at) VALUES ('P1', 'hvps_credit', 'lane', 'pending', "
                   "?, 'then', 'then')", (attempts,))
    return db


@pytest.fixture
def outbox():
    db = one_row("sqlite:///:memory:", SCHEMA, 0)
    yield db
    db.close()


def attempt(db: Any, untaken: bool) -> outbound.Delivery:
    """One delivery attempt of the row: claimed, failed, given back."""
    with db.transaction() as tx:
        assert outbound.take(tx, 1, _NOW)
        assert outbound.delivery(tx, "P1").state == "sending"
        outbound.give_back(tx, 1, _NOW, untaken)
        return outbound.delivery(tx, "P1")


_NOW = datetime(2026, 12, 7, 9, 0)


def test_the_row_counts_attempts_and_those_provably_not_taken(outbox) -> None:
    """Provably untaken while every attempt was; one attempt that may have reached the
    NPC makes it so for good, however many provable ones follow."""
    first = attempt(outbox, untaken=True)
    second = attempt(outbox, untaken=True)
    doubtful = attempt(outbox, untaken=False)
    after = attempt(outbox, untaken=True)

    assert (first.attempts, first.untaken, first.provably_untaken) == (1, 1, True)
    assert (second.attempts, second.untaken, second.provably_untaken) == (2, 2, True)
    assert (doubtful.attempts, doubtful.untaken, doubtful.provably_untaken) == (3, 2, False)
    assert (after.attempts, after.untaken, after.provably_untaken) == (4, 3, False)


@pytest.mark.parametrize("state, attempts, untaken, taken, provable", [
    ("pending", 0, 0, False, True),
    ("pending", 2, 2, False, True),
    ("pending", 2, 1, False, False),
    ("sending", 1, 0, False, False),
    ("sending", 3, 2, False, False),
    ("dead", 1, 1, False, True),
    ("sent", 1, 0, True, False),
    ("acked", 1, 1, True, False),
    ("done", 1, 0, True, False),
])
def test_what_a_delivery_proves(state: str, attempts: int, untaken: int, taken: bool,
                                provable: bool) -> None:
    """Taken once the NPC answered 2xx or a result ended the row; provably not taken
    only when not taken, not being sent, and every attempt was provably untaken."""
    delivery = outbound.Delivery(1, state, attempts, untaken)

    assert (delivery.taken, delivery.provably_untaken) == (taken, provable)


def test_an_outbox_made_before_the_count_gets_it_when_the_store_opens(tmp_path: Path) -> None:
    """A database whose outbox has no `untaken` column gets one, zero for every row: a
    row that was tried before counts as possibly taken, never as provably not."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = [s.replace("        untaken INTEGER NOT NULL DEFAULT 0,\n", "") for s in SCHEMA]
    assert old != SCHEMA
    one_row(url, old, 2).close()

    async def reopen() -> outbound.Delivery | None:
        store = Store(url, Ledger())
        await store.open()
        try:
            return await store.run(lambda tx: outbound.delivery(tx, "P1"))
        finally:
            await store.close()

    delivery = run(reopen())

    assert delivery == outbound.Delivery(1, "pending", 2, 0)
    assert not delivery.provably_untaken


def test_a_delivery_is_described_in_words_an_operator_reads() -> None:
    """Attempts, the failed ones and how many of those provably never reached the NPC,
    and an attempt under way, said as a sentence (no "attempt(s)")."""
    said = {(state, attempts, untaken): outbound.Delivery(12, state, attempts, untaken).describe()
            for state, attempts, untaken in (("pending", 7, 3), ("sending", 2, 1),
                                             ("sending", 1, 0), ("pending", 1, 1),
                                             ("pending", 0, 0), ("acked", 1, 0),
                                             ("acked", 4, 3), ("done", 2, 2))}

    assert said == {
        ("pending", 7, 3): "outbox row 12 pending, 7 delivery attempts: 7 failed, of which "
                           "3 provably never reached the NPC",
        ("sending", 2, 1): "outbox row 12 sending, 2 delivery attempts: 1 failed, of which "
                           "1 provably never reached the NPC, 1 under way now",
        ("sending", 1, 0): "outbox row 12 sending, 1 delivery attempt: none failed, "
                           "1 under way now",
        ("pending", 1, 1): "outbox row 12 pending, 1 delivery attempt: 1 failed, of which "
                           "1 provably never reached the NPC",
        ("pending", 0, 0): "outbox row 12 pending, no delivery attempt yet",
        # Taken: the last attempt is the one the NPC took, not a failed one.
        ("acked", 1, 0): "outbox row 12 acked, 1 delivery attempt: none failed, "
                         "the last taken by the NPC",
        ("acked", 4, 3): "outbox row 12 acked, 4 delivery attempts: 3 failed, of which "
                         "3 provably never reached the NPC, the last taken by the NPC",
        # Ended with every attempt provably untaken (cancelled before the NPC had it).
        ("done", 2, 2): "outbox row 12 done, 2 delivery attempts: 2 failed, of which "
                        "2 provably never reached the NPC"}
