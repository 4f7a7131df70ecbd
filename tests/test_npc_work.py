"""benchmarks/npc_work.py drives the simulated NPC through the work of HVPS payments:
every credit settles, the payee and the bank answer, and a CPU figure comes out."""

from __future__ import annotations

import asyncio

from benchmarks.npc_work import measure


def test_the_npc_work_benchmark_settles_every_payment_and_times_it() -> None:
    """Fewer payments than one batch and more than one: each settles (measure checks it)
    and the NPC's CPU per payment is a positive figure."""
    for payments in (5, 70):
        assert asyncio.run(measure(payments)) > 0
