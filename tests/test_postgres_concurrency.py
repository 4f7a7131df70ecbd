"""Two gateway processes on one PostgreSQL database: the races they run, one by one.

Each test opens two connections to a schema of its own, as two gateway processes would,
and makes them race for the same thing: a sequence number, an outbox row, the last money
on an account, a payment's state, the lead. Transactions run at READ COMMITTED; what
keeps them apart is the conditional UPDATE (or the lock) each race goes through.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib import resources
from types import SimpleNamespace
from typing import Any

import pytest

import ledger
from gateway import dialect, outbound, payments, ready
from gateway.clock import SHANGHAI
from gateway.cluster import Cluster
from gateway.errors import Conflict
from gateway.messages import codec
from gateway.store import SCHEMA, Contended, Store, lost_race
from ledger.fixtures import postgres_schema_or_skip
from ledger.testing import WORK_DATE, customer_account
from tests.race_support import Other

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture
def url():
    with postgres_schema_or_skip("race") as url:
        db = ledger.connect(url)
        with db.transaction() as tx:
            dialect.install(tx, SCHEMA)
            ledger.Ledger().install(tx)
        db.close()
        yield url


def both(url: str, work: Any, rounds: int) -> list[Any]:
    """Run `work(tx)` `rounds` times on each of two connections at once, each call in a
    transaction of its own; every result."""
    def side(_: int) -> list[Any]:
        db = ledger.connect(url)
        out = []
        try:
            for _ in range(rounds):
                with db.transaction() as tx:
                    out.append(work(tx))
        finally:
            db.close()
        return out
    with ThreadPoolExecutor(2) as pool:
        return [r for part in pool.map(side, range(2)) for r in part]


def test_two_processes_never_draw_the_same_sequence_number(url):
    """Message ids come from one counter: 2 x 300 draws give 600 different numbers."""
    drawn = both(url, lambda tx: payments.next_seq(tx, "msg:20261207"), 300)

    assert sorted(drawn) == list(range(1, 601))


def test_an_outbox_row_is_claimed_by_one_process(url):
    """While one process holds its uncommitted claim, the other waits, then finds the row
    no longer pending and does not send it."""
    db = ledger.connect(url)
    with db.transaction() as tx:
        outbox_id = tx.query_one(
            "INSERT INTO outbox (kind, stream, state, created_at, updated_at) VALUES "
            "('message', 's', 'pending', ?, ?) RETURNING id",
            (NOW.isoformat(), NOW.isoformat()))[0]
    other = ledger.connect(url)
    second: list[bool] = []
    with db.transaction() as tx:
        first = outbound.take(tx, outbox_id, NOW)
        waiting = threading.Thread(target=lambda: second.append(
            _in_tx(other, lambda t: outbound.take(t, outbox_id, NOW))))
        waiting.start()
        waiting.join(0.5)
        blocked = waiting.is_alive()
    waiting.join(5)
    with db.transaction() as tx:
        state, claimer = tx.query_one("SELECT state, claimed_by FROM outbox WHERE id = ?",
                                      (outbox_id,))
        own_session = tx.query_one("SELECT pg_backend_pid()", ())[0]
    db.close()
    other.close()

    assert (first, blocked, second) == (True, True, [False])
    assert state == "sending" and claimer == own_session


def test_a_claim_of_a_session_that_ended_is_given_back(url):
    """A process that died while sending leaves a claim of an ended session: the sweeper
    makes the row pending again at once, without waiting for the lease."""
    db = ledger.connect(url)
    dead = ledger.connect(url)
    with db.transaction() as tx:
        outbox_id = tx.query_one(
            "INSERT INTO outbox (kind, stream, state, created_at, updated_at) VALUES "
            "('message', 's', 'pending', ?, ?) RETURNING id",
            (NOW.isoformat(), NOW.isoformat()))[0]
    with dead.transaction() as tx:
        assert outbound.take(tx, outbox_id, NOW)
        dead_pid = tx.query_one("SELECT pg_backend_pid()", ())[0]
    with db.transaction() as tx:
        alive = outbound.orphaned(tx, NOW, NOW.replace(hour=8))
    dead.close()
    session_ended = _until_session_ended(db, dead_pid)
    with db.transaction() as tx:
        gone = outbound.orphaned(tx, NOW, NOW.replace(hour=8))
    db.close()

    assert alive == [] and session_ended
    assert gone == [(outbox_id, "s")]


SESSION_END_WAIT_S = 10.0  # a closed connection's server process ends within moments


def _until_session_ended(db: Any, pid: int) -> bool:
    """Wait until the server no longer lists session `pid`; whether it ended in time.
    Each look is a transaction of its own: pg_stat_activity is read once per transaction,
    so looking again inside one would see the same sessions every time."""
    deadline = time.monotonic() + SESSION_END_WAIT_S
    while time.monotonic() < deadline:
        with db.transaction() as tx:
            if tx.query_one("SELECT 1 FROM pg_stat_activity WHERE pid = ?", (pid,)) is None:
                return True
        time.sleep(0.02)
    return False


def test_the_last_money_on_an_account_is_held_once(url):
    """Two processes hold 10 yuan at a time against 100 yuan: ten holds succeed, the
    rest are refused, and the balance never goes below zero (no lost update)."""
    led = ledger.Ledger()
    account = customer_account(1, "corporate")
    db = ledger.connect(url)
    with db.transaction() as tx:
        led.open_customer_account(tx, account, "客户", "corporate", WORK_DATE)
        led.deposit(tx, "race:deposit", account, 100_00, WORK_DATE)
    db.close()
    counter = iter(range(10_000))
    lock = threading.Lock()

    def hold(tx: Any) -> str:
        with lock:
            n = next(counter)
        try:
            led.hold(tx, f"race:hold:{n}", account, 10_00, WORK_DATE, f"P{n}")
        except ledger.LedgerError as exc:
            return exc.code
        return "held"
    outcomes = both(url, hold, 15)
    db = ledger.connect(url)
    with db.transaction() as tx:
        balance = led.balance(tx, account)
        balanced = led.trial_balance(tx).balanced
    db.close()

    assert outcomes.count("held") == 10
    assert outcomes.count("payer_funds_insufficient") == 20
    assert balance == 0 and balanced


def test_a_state_change_made_on_a_stale_read_is_contended(url):
    """A process that read a payment before another one changed it changes nothing."""
    row = {"id": "P1", "direction": "out", "channel": "hvps", "state": "accepted",
           "msg_type": "hvps.111.001.01", "msg_id": "1", "tx_id": "1", "end_to_end_id": "1",
           "sender_direct": "999100000019", "receiver_direct": "888200000015",
           "amount_fen": 100, "currency": "CNY", "payer_account": "a", "payer_name": "n",
           "payer_bank": "999100000027", "payee_account": "b", "payee_name": "m",
           "payee_bank": "888200000023", "business_type": "A100", "business_kind": "02102",
           "urgency": "urgent", "priority": 2, "remittance": [], "route": {},
           "work_date": "2026-12-07", "created_at": NOW.isoformat(),
           "updated_at": NOW.isoformat()}
    db = ledger.connect(url)
    with db.transaction() as tx:
        payments.insert(tx, row)
        read_by_first = payments.get(tx, "P1")
    with db.transaction() as tx:
        payments.transition(tx, payments.get(tx, "P1"), "sent", "hvps_sent", NOW)
    with pytest.raises(Contended):
        with db.transaction() as tx:
            payments.transition(tx, read_by_first, "cancelled", "cancelled", NOW)
    with db.transaction() as tx:
        state = payments.get(tx, "P1")["state"]
    db.close()

    assert state == "sent"


def test_work_that_lost_a_race_runs_again_in_the_next_transaction(url):
    """The store gives the caller the second run's result, not the lost race."""
    runs: list[int] = []

    def work(tx: Any) -> int:
        runs.append(1)
        tx.execute("INSERT INTO sequences (name, value) VALUES (?, ?)",
                   (f"run{len(runs)}", len(runs)))
        if len(runs) == 1:
            raise Contended("another process changed the row first")
        return len(runs)

    async def scenario() -> tuple[int, list]:
        store = Store(url, ledger.Ledger())
        await store.open()
        try:
            result = await store.run(work)
            rows = await store.run(lambda tx: tx.query(
                "SELECT name FROM sequences WHERE name LIKE 'run%' ORDER BY name", ()))
            return result, rows
        finally:
            await store.close()
    result, rows = asyncio.run(scenario())

    assert result == 2 and rows == [("run2",)]  # the first run's insert was undone


def test_one_leader_and_the_next_takes_over_when_it_dies(url):
    """Of two gateway processes one leads; when its database session ends the other
    takes the lead."""
    async def scenario() -> tuple[bool, bool, bool]:
        first, second = Store(url, ledger.Ledger()), Store(url, ledger.Ledger())
        await first.open()
        await second.open()
        a = Cluster(SimpleNamespace(store=first))
        b = Cluster(SimpleNamespace(store=second))
        try:
            a_leads, b_leads = await a._try_lead(), await b._try_lead()
            await first.close()
            for _ in range(50):
                if await b._try_lead():
                    return a_leads, b_leads, True
                await asyncio.sleep(0.05)
            return a_leads, b_leads, False
        finally:
            await second.close()

    assert asyncio.run(scenario()) == (True, False, True)


def _in_tx(db: Any, work: Any) -> Any:
    with db.transaction() as tx:
        return work(tx)


def test_blocks_of_numbers_never_overlap(url):
    """Batch intake takes message numbers in blocks: 2 x 100 blocks of 7 from two
    processes, beside single numbers, never share a number."""
    def draw(tx: Any) -> list[int]:
        first = payments.reserve_seq(tx, "msg:20261207", 7)
        return [*range(first, first + 7), payments.next_seq(tx, "msg:20261207")]
    drawn = [n for block in both(url, draw, 100) for n in block]

    assert sorted(drawn) == list(range(1, 1601))


def test_an_end_to_end_id_is_claimed_by_one_process(url):
    """Two ready messages with one EndToEndId at once on two processes: the second
    waits for the first's claim, loses (a unique key taken), and its run again is
    refused with end_to_end_id_in_use. A claim of a rejected payment is taken over
    by one of two attempts racing for it."""
    e2e = "99910000002720261207900000000001"
    db = ledger.connect(url)
    with db.transaction() as tx:
        ready.claim_end_to_end(tx, e2e, "P1", "core")
        other = Other(url, lambda t: ready.claim_end_to_end(t, e2e, "P2", "core"))
        other.start_and_wait_for_lock(url)
    lost = other.finish()
    with pytest.raises(Conflict) as again:
        with db.transaction() as tx:
            ready.claim_end_to_end(tx, e2e, "P2", "core")

    # P1 rejected: P3 and P4 race to take its EndToEndId over.
    with db.transaction() as tx:
        payments.insert(tx, _payment("P1", e2e, "rejected"))
    with db.transaction() as tx:
        ready.claim_end_to_end(tx, e2e, "P3", "core")
        payments.insert(tx, _payment("P3", e2e, "accepted"))
        other = Other(url, lambda t: ready.claim_end_to_end(t, e2e, "P4", "core"))
        other.start_and_wait_for_lock(url)
    refused = other.finish()
    with db.transaction() as tx:
        holder = tx.query_one("SELECT payment_id FROM end_to_end_claims "
                              "WHERE end_to_end_id = ?", (e2e,))
    db.close()

    assert lost_race(lost), lost
    assert again.value.problems[0].code == "end_to_end_id_in_use"
    assert "P1" in again.value.problems[0].message
    assert isinstance(refused, Conflict) and "P3" in refused.problems[0].message
    assert holder == ("P3",)


def _ready_message() -> Any:
    """The project's example hvps.111, read as a ready message from the core system."""
    raw = resources.files("gateway").joinpath(
        "examples", "hvps.111_urgent-goods-payment.xml").read_bytes()
    return codec.decode(raw, bare_ok=True).obj


def test_a_msg_id_is_taken_by_one_client_at_two_processes(url):
    """Two core-system clients send one MsgId at the same instant to two processes: the
    second's record waits for the first's row of ready_message_ids and loses; its work,
    run again, finds the MsgId taken by another client and is refused (409), so one
    payment is made, not two."""
    ct = _ready_message()
    db = ledger.connect(url)
    with db.transaction() as tx:
        ready.record(tx, "core-a", ct, "P1")
        other = Other(url, lambda t: ready.record(t, "core-b", ct, "P2"))
        other.start_and_wait_for_lock(url)
    lost = other.finish()
    with pytest.raises(Conflict) as again:
        with db.transaction() as tx:
            ready.stored_answer(tx, "core-b", ct, "sha256:other")
    with db.transaction() as tx:
        kept = tx.query("SELECT client FROM ready_messages", ())
    db.close()

    assert isinstance(lost, Contended), lost
    assert again.value.problems[0].code == "idempotency_key_reused_with_other_body"
    assert kept == [("core-a",)]


def test_a_json_transfer_and_a_ready_message_claim_one_end_to_end_id_once(url):
    """A JSON transfer's EndToEndId (the gateway's own) and a ready message carrying the
    same id, at two processes at once: whichever claims first holds it, the other waits
    for its row and loses; run again, the ready message is refused (end_to_end_id_in_use)
    and the JSON transfer's id gets a letter."""
    e2e = "99910000002720261207900000000042"
    db = ledger.connect(url)
    with db.transaction() as tx:
        ready.claim_own_end_to_end_ids(tx, [{"id": "P1", "end_to_end_id": e2e}])
        other = Other(url, lambda t: ready.claim_end_to_end(t, e2e, "P2", "core"))
        other.start_and_wait_for_lock(url)
        payments.insert(tx, _payment("P1", e2e, "accepted"))
    ready_lost = other.finish()
    with pytest.raises(Conflict) as refused:
        with db.transaction() as tx:
            ready.claim_end_to_end(tx, e2e, "P2", "core")

    second = e2e[:-2] + "43"
    with db.transaction() as tx:
        ready.claim_end_to_end(tx, second, "P3", "core")
        row = {"id": "P4", "end_to_end_id": second}

        def json_transfer(t: Any) -> None:
            ready.own_end_to_end_ids(t, [row])
            ready.claim_own_end_to_end_ids(t, [row])
        other = Other(url, json_transfer)
        other.start_and_wait_for_lock(url)
    json_lost = other.finish()
    again = {"id": "P4", "end_to_end_id": second}
    with db.transaction() as tx:
        ready.own_end_to_end_ids(tx, [again])
        ready.claim_own_end_to_end_ids(tx, [again])
        claims = tx.query("SELECT end_to_end_id, payment_id FROM end_to_end_claims "
                          "ORDER BY end_to_end_id", ())
    db.close()

    assert lost_race(ready_lost), ready_lost
    assert refused.value.problems[0].code == "end_to_end_id_in_use"
    assert lost_race(json_lost), json_lost
    assert claims == [(e2e, "P1"), (second, "P3"), (second + "A", "P4")]


def _payment(payment_id: str, end_to_end_id: str, state: str) -> dict[str, Any]:
    return {"id": payment_id, "direction": "out", "channel": "hvps", "state": state,
            "msg_type": "hvps.111.001.01", "msg_id": payment_id, "tx_id": payment_id,
            "end_to_end_id": end_to_end_id, "sender_direct": "999100000019",
            "receiver_direct": "888200000015", "amount_fen": 100, "currency": "CNY",
            "payer_account": "a", "payer_name": "n", "payer_bank": "999100000027",
            "payee_account": "b", "payee_name": "m", "payee_bank": "888200000023",
            "business_type": "A100", "business_kind": "02102", "urgency": "urgent",
            "priority": 2, "remittance": [], "route": {}, "work_date": "2026-12-07",
            "created_at": NOW.isoformat(), "updated_at": NOW.isoformat()}


def test_a_credit_claimed_from_its_lane_carries_a_priority_changed_before_the_claim(
        url, tmp_path):
    """A lane's sender reads an HVPS credit with its payment, then claims it; an
    operator's priority change committed between the two must not be lost: the
    hvps.111 sent carries the priority the payment has, or the change is refused."""
    from gateway.messages import codec
    from gateway.messages.signing import KeyRing, write_keypair
    from gateway.ops import actions

    write_keypair(tmp_path, "999100000019")
    keyring = KeyRing.load(tmp_path, ["999100000019"])
    db = ledger.connect(url)
    with db.transaction() as tx:
        payments.insert(tx, _payment("P1", "E1", "accepted"))
        outbox_id = tx.query_one(
            "INSERT INTO outbox (payment_id, kind, stream, state, created_at, updated_at) "
            "VALUES ('P1', 'hvps_credit', 'lane:2', 'pending', ?, ?) RETURNING id",
            (NOW.isoformat(), NOW.isoformat()))[0]
    context = SimpleNamespace(now=NOW, request_id=1, actor="alice",
                              gw=SimpleNamespace(notifier=None))

    class OperatorMidway:
        """The sender's transaction: once it has read the row and its payment, another
        process changes the payment's priority and commits."""

        def __init__(self, tx: Any) -> None:
            self.tx, self.dialect, self.done = tx, tx.dialect, False

        def __getattr__(self, name: str) -> Any:
            return getattr(self.tx, name)

        def query_one(self, sql: str, params: tuple) -> Any:
            row = self.tx.query_one(sql, params)
            if not self.done:
                self.done = True
                other = Other(url, lambda t: actions.priority(context, t, "P1",
                                                              {"priority": 1}))
                other.start_and_wait_for_lock(url)
                self.other = other
            return row

    sent = None
    try:
        with db.transaction() as tx:
            midway = OperatorMidway(tx)
            sent = outbound.claim(midway, outbox_id, keyring, NOW, None, credit=True)
    except Exception as exc:
        assert lost_race(exc), exc
    changed = midway.other.finish()
    with db.transaction() as tx:
        priority, state = tx.query_one("SELECT priority, state FROM payments WHERE id = 'P1'",
                                       ())
    db.close()

    if sent is not None:
        carried = codec.decode(sent).obj.priority
        assert (priority, carried) in ((1, "URGT"), (2, "HIGH")), (priority, carried, changed)
