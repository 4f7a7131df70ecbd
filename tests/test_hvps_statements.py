"""The database work of an HVPS payment stays as small as it was made
(benchmarks/hvps_statements.py counts it): more statements per payment fail here."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.hvps_statements import DEFERRED, FRAME, measure

pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_only(
    "counts the statements in SQLite's write-ahead log; PostgreSQL runs others")]

# Statements per payment, from acceptance to the core system told of its settlement,
# without the group commit's own (BEGIN, the savepoint of each work, COMMIT): sent from
# the work that accepts it (52 before the statements were cut), and by its lane, its
# ccms.990s by the link stream (55 before). One of each is the claim of the EndToEndId
# the gateway numbers, which leaves a claim a ready message holds as it is (the id then
# takes a letter: gateway.ready), so that a ready message cannot take it at the same
# moment; it was a look-up and a claim before.
# The payer account's holder, whose name and branch the payer's must be
# (gateway.intake.payer_problems), is given back by the hold's own UPDATE (one read of
# it fewer: 50 and 56 before). By the link stream, a ccms.990's claim reads its
# bytes from the archive with a statement of its own (the outbox row keeps no copy:
# gateway.outbound.stored_bytes).
# Two are the savepoint (SAVEPOINT and RELEASE) of the ccms.990 and the ccms.900, which
# the NPC sends in one POST: its envelopes are taken in one piece of work, together in one
# savepoint, and one by one, each in a savepoint of its own, only when one of them fails
# (Gateway.receive_link_many: 49 and 55 before, with a savepoint an envelope).
STATEMENTS_MAX = 47
STATEMENTS_BY_LANES_MAX = 53
# Work the clock brings now and then (a link probe, an alert row when a slow machine
# makes a timer fire) adds a statement or two to the eight payments' total on a loaded
# machine: half a statement a payment is allowed for it. A statement added to every
# payment's path is still caught.
SLACK = 0.5


def test_statements_per_hvps_payment_sent_at_once(tmp_path):
    result = asyncio.run(measure(tmp_path, 8))
    by_work = result["statements_per_payment_by_work"]
    assert set(by_work) - {FRAME, DEFERRED} == {
        "Gateway.submit_transfer.<lambda>", "Gateway.receive_link_many.work",
        "Batcher._flush.<lambda>"}, by_work
    assert result["statements_per_payment_in_work"] <= STATEMENTS_MAX + SLACK, result
    assert result["wal_bytes_per_payment"] > 0


def test_statements_per_hvps_payment_sent_by_its_lane(tmp_path):
    result = asyncio.run(measure(tmp_path, 8, lanes=True))
    assert "Gateway._send_outbox.claim" in result["statements_per_payment_by_work"]
    assert result["statements_per_payment_in_work"] <= STATEMENTS_BY_LANES_MAX + SLACK, result
