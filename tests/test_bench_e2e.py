"""`paygate bench e2e --quick`: the whole path under HVPS and BEPS load, as a smoke test.

The short run starts Redis, the simulated NPC and the gateway as their own processes,
drives HVPS and then BEPS through the API, and checks what it measured: every HVPS
payment and every accepted BEPS transaction settled, nothing doubled, the books balanced
and agreeing with the NPC. No timing is asserted (the machine is shared).

Budget: about a minute.
"""

from __future__ import annotations

import pytest

from gateway import bench_e2e

pytestmark = pytest.mark.e2e

BEPS_ROWS = ("beps_accepted", "beps_completed", "beps_transactions_per_gateway_cpu_second")


def test_quick_run_settles_every_beps_transaction_and_reports_it_beside_baselines():
    result = bench_e2e.run(quick=True)

    assert result["bench"] == "e2e" and len(result["config_sha256"]) == 64
    assert result["clean"], result["detail"]["checks"]
    rows = {row["name"]: row for row in result["results"]}
    for name in ("hvps_accepted", "hvps_completed", *BEPS_ROWS):
        row = rows[name]
        assert row["per_s"] > 0 and row["baseline_per_s"] > 0 and row["ratio"] > 0, row
        assert row["baseline"], row
    for name in ("beps_accepted", "beps_completed"):
        assert 0 < rows[name]["p50_ms"] <= rows[name]["p95_ms"] <= rows[name]["p99_ms"]
    assert rows["beps_transactions_per_gateway_cpu_second"]["value"] > 0  # µs each

    beps = result["detail"]["beps"]
    assert beps["accepted"] > 0 and beps["refused"] == 0
    assert beps["completed"] == beps["accepted"]
    assert beps["checks"] == {"all_settled": True, "answered_twice": 0,
                              "beps_in_database": beps["accepted"],
                              "unknown_to_the_core_system": 0, "settled_twice": 0,
                              "untold_changes": 0, "states": {"settled": beps["accepted"]}}
    # The core system heard of every change: three per transaction, every row delivered.
    assert beps["webhooks"] == {"done": 3 * beps["accepted"]}
    assert beps["cpu_s"]["gateway"] > 0

    checks = result["detail"]["checks"]
    assert checks["all_completed"] and checks["beps_all_settled"]
    assert checks["books_balanced"] and checks["clearing_agrees_with_npc"]
    assert checks["settled_twice"] == 0 and checks["npc_duplicates"] == 0
    assert checks["postings_doubled"] == 0 and checks["npc_beps_outstanding_fen"] == 0
    assert set(checks["npc_beps_packages"]) == {"PR03"}  # every package netted
    assert result["config"]["beps_s"] > 0


def test_a_run_with_anything_unsettled_or_doubled_is_not_clean():
    good = {"settled_twice": 0, "npc_duplicates": 0, "postings_doubled": 0,
            "books_balanced": True, "clearing_agrees_with_npc": True,
            "npc_beps_outstanding_fen": 0}
    beps = {"checks": {"all_settled": True, "settled_twice": 0, "answered_twice": 0,
                       "unknown_to_the_core_system": 0, "untold_changes": 0}}
    assert bench_e2e.clean(bench_e2e.with_loads(good, True, beps))
    assert not bench_e2e.clean(bench_e2e.with_loads(good, False, beps))
    for key, bad in (("all_settled", False), ("settled_twice", 1), ("answered_twice", 1),
                     ("unknown_to_the_core_system", 2), ("untold_changes", 3)):
        spoiled = {"checks": dict(beps["checks"], **{key: bad})}
        assert not bench_e2e.clean(bench_e2e.with_loads(good, True, spoiled)), key
    for key, bad in (("books_balanced", False), ("postings_doubled", 1),
                     ("npc_beps_outstanding_fen", 500)):
        assert not bench_e2e.clean(bench_e2e.with_loads(dict(good, **{key: bad}), True,
                                                        beps)), key
