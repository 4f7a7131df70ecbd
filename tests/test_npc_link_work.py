"""benchmarks/npc_link_work.py runs the simulated NPC with its link through HVPS payments:
every credit settles and is delivered, and a CPU figure comes out."""

from __future__ import annotations

import asyncio

from benchmarks.npc_link_work import measure


def test_the_npc_link_benchmark_settles_every_payment_and_times_it() -> None:
    """Groups that divide the payments and one that does not: each credit settles
    (measure checks it) and the CPU per payment is a positive figure."""
    for payments, group in ((8, 4), (10, 3)):
        assert asyncio.run(measure(payments, group)) > 0
