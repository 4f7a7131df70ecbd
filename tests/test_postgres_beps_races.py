"""Two gateway processes on one PostgreSQL database racing over one BEPS item.

Each test holds one process's transaction open at the moment that matters, lets the
other process's work run into it (and wait for its rows, as it would), then commits the
first: whatever the order, an item is either in the package that goes on the wire or
cancelled with its hold released, never both, and never left out of its package's
netting.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import payments
from gateway.beps import cancels as beps_cancels
from gateway.beps import packer, stops
from gateway.beps.settings import BepsSettings
from gateway.errors import Conflict
from gateway.exceptions import cancels
from gateway.messages import ccms307, codec
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.ops import control
from gateway.ops import schema as ops_schema
from gateway.ops.operators import Operator
from ledger.fixtures import postgres_schema_or_skip
from tests.beps_support import NOW, answer, answer_in, credit_row, held_items, held_package
from tests.e2e_support import BANK
from tests.race_support import Other

pytestmark = pytest.mark.postgres

P0, P1 = (credit_row(n, NOW)["id"] for n in range(2))
OPERATOR = Operator("op1", "柜员一", "00", "")


@pytest.fixture
def url():
    with postgres_schema_or_skip("beps_race") as url:
        yield url


def _package_and_items(db: Any) -> tuple[str, int, int, list[str], list[str]]:
    """The package, its count and sum, the transactions its stored bytes carry and the
    payments assigned to it."""
    with db.transaction() as tx:
        package_id, count, total_fen, outbox_id = tx.query_one(
            "SELECT id, count, total_fen, outbox_id FROM beps_packages", ())
        raw = packer.stored_envelope(tx, outbox_id)
        assigned = [pid for (pid,) in tx.query(
            "SELECT payment_id FROM beps_items WHERE package_id = ? ORDER BY payment_id",
            (package_id,))]
    carried = sorted(t.tx_id for t in codec.decode(raw).obj.transfers)
    return package_id, count, total_fen, carried, assigned


def test_a_cancel_that_read_the_item_unpacked_before_the_sealer_committed(
        tmp_path: Path, url: str) -> None:
    """The sealer has packed the item but not committed when a cancel from another
    process looks at it: the cancel waits, then takes it out of the sealed package (as
    for any packed item) instead of releasing the hold of an item the package carries."""
    db, gw = held_items(tmp_path, [100, 200], url)

    with db.transaction() as tx:
        packer.seal_due(tx, gw, BepsSettings(), "stream", NOW, force=True)
        canceller = Other(url, lambda t: beps_cancels.request(
            gw, t, payments.get(t, P0), "客户撤销", "core:test", NOW))
        canceller.start_and_wait_for_lock(url)
    outcome = canceller.finish()
    package_id, count, total_fen, carried, assigned = _package_and_items(db)
    with db.transaction() as tx:
        state = payments.get(tx, P0)["state"]
        held = gw.ledger.balance(tx, gw.ledger.internal_accounts["4001"])
    db.close()

    assert not isinstance(outcome, Exception), outcome
    assert (outcome["cancelled"], outcome["package"]) == ("from_package", package_id)
    assert state == "cancelled" and held == 200
    assert assigned == [P1] and carried == [credit_row(1, NOW)["tx_id"]]
    assert (count, total_fen) == (1, 200)


def test_a_sealer_that_read_the_item_before_the_cancel_committed_leaves_it_out(
        tmp_path: Path, url: str) -> None:
    """A cancel has marked the unpacked item but not committed when the sealer of
    another process picks its candidates: the sealer waits for the item, finds it marked
    and seals the package without it, in the same transaction."""
    db, gw = held_items(tmp_path, [100, 200], url)

    with db.transaction() as tx:
        done = beps_cancels.request(gw, tx, payments.get(tx, P0), None, "core:test", NOW)
        sealer = Other(url, lambda t: packer.seal_due(t, gw, BepsSettings(), "stream", NOW,
                                                      force=True))
        sealer.start_and_wait_for_lock(url)
    sealed = sealer.finish()
    _, count, total_fen, carried, assigned = _package_and_items(db)
    db.close()

    assert done["cancelled"] == "before_packing"
    assert not isinstance(sealed, Exception), sealed
    assert len(sealed) == 1
    assert assigned == [P1] and carried == [credit_row(1, NOW)["tx_id"]]
    assert (count, total_fen) == (1, 200)


def test_a_refused_cancel_and_the_netting_notice_at_once_net_the_item(
        tmp_path: Path, url: str) -> None:
    """The netting notice for a package is being processed (the item waiting for the
    answer to our ccms.307 left alone) when another process handles the NPC's refusal of
    that ccms.307: the refusal waits for the package, sees it netted and nets the item,
    which is never left queued in a netted package."""
    db, gw = held_items(tmp_path, [100, 200], url)
    with db.transaction() as tx:
        (outbox_id,) = packer.seal_due(tx, gw, BepsSettings(), "stream", NOW, force=True)
        packer.claim(tx, gw, outbox_id, NOW)
        tx.execute("UPDATE outbox SET state = 'sent' WHERE id = ?", (outbox_id,))
        package_id = tx.query_one("SELECT id FROM beps_packages", ())[0]
    answer(db, gw, package_id, "PR11")
    with db.transaction() as tx:
        asked, _ = cancels.request_tx(gw, tx, P0, "客户撤销", "core:test", NOW)
    refusal = ccms307.CancelResponse(
        GroupHeader("2", "", "0000", "0000", BANK, BANK, "BEPS"),
        OriginalRef(asked["msg_id"], BANK, ccms307.MESSAGE_TYPE),
        OriginalRef(package_id[12:], BANK, "beps.121.001.01"), "PR09", "NEZE0011",
        "cannot cancel: netted")

    notice = Other(url, lambda t: None)  # only its connection: the notice runs below
    with notice.db.transaction() as tx:
        answer_in(tx, gw, package_id, "PR03")
        other = Other(url, lambda t: cancels.on_response(
            gw, t, SimpleNamespace(obj=refusal), NOW, lambda e: None))
        other.start_and_wait_for_lock(url)
    notice.db.close()
    handled = other.finish()
    with db.transaction() as tx:
        states = [payments.get(tx, pid)["state"] for pid in (P0, P1)]
        netted = gw.ledger.balance(tx, gw.ledger.internal_accounts["4002"])
        waits = tx.query_one("SELECT COUNT(*) FROM beps_cancel_waits", ())[0]
    db.close()

    assert not isinstance(handled, Exception), handled
    assert states == ["netted", "netted"]
    assert netted == 300 and waits == 0



def _stoppable_package(tmp_path: Path, url: str) -> tuple[Any, Any, str]:
    """A package of P0 and P1 nothing of which reached the NPC (its row pending again
    after refused attempts), with the console's tables: operators may ask to cancel it."""
    stops.register()
    db, gw, package_id = held_package(tmp_path, [100, 250], url=url)
    with db.transaction() as tx:
        tx.execute("UPDATE outbox SET state = 'pending', attempts = 3, untaken = 3 "
                   "WHERE id = (SELECT outbox_id FROM beps_packages WHERE id = ?)",
                   (package_id,))
        ops_schema.create_tables(tx)
    return db, gw, package_id


def _pending_requests(db: Any) -> int:
    with db.transaction() as tx:
        return tx.query_one("SELECT COUNT(*) FROM ops_requests WHERE state = 'pending'",
                            ())[0]


def test_a_package_request_made_while_the_core_cancels_an_item_waits_for_it(
        tmp_path: Path, url: str) -> None:
    """The core system's cancel of an item has found no operators' request on its
    package when another process asks to cancel the package: the request waits for the
    cancel's transaction, and is made after it, never beside an unseen one."""
    db, gw, package_id = _stoppable_package(tmp_path, url)

    with db.transaction() as tx:
        done, _ = cancels.request_tx(gw, tx, P0, None, "core:test", NOW)
        asking = Other(url, lambda t: control.create(t, OPERATOR, "package_cancel",
                                                     package_id, {}, "", NOW))
        asking.start_and_wait_for_lock(url)
        waited = asking.thread.is_alive()
    made = asking.finish()
    db.close()

    assert done["state"] == "cancelled"
    assert not isinstance(made, Exception), made
    assert waited, "the package's request was made while the core's cancel was open"


def test_a_core_cancel_of_an_item_waits_for_a_package_request_being_made(
        tmp_path: Path, url: str) -> None:
    """Operators' request to cancel the package is written but not committed when the
    core system's cancel of one of its items comes from another process: the cancel
    waits for the package, then sees the request and is refused, the item left as it
    was for the operators to decide."""
    db, gw, package_id = _stoppable_package(tmp_path, url)

    with db.transaction() as tx:
        control.create(tx, OPERATOR, "package_cancel", package_id, {}, "", NOW)
        core = Other(url, lambda t: cancels.request_tx(gw, t, P0, None, "core:test", NOW))
        core.start_and_wait_for_lock(url)
    refused = core.finish()
    with db.transaction() as tx:
        state = payments.get(tx, P0)["state"]
    pending = _pending_requests(db)
    db.close()

    assert isinstance(refused, Conflict), refused
    assert refused.problems[0].code == "operator_request_pending"
    assert state != "cancelled" and pending == 1
