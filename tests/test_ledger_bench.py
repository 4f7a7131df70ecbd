"""The ledger benchmark reports the CONTRACT.md §8 shape (a tiny run; no timing asserted)."""

from __future__ import annotations

import json

from ledger import bench


def test_bench_result_has_the_contract_shape(monkeypatch):
    """A quick run returns one postings_durable result beside its bare-SQLite baseline."""
    monkeypatch.setattr(bench, "POSTINGS_QUICK", 2 * bench.BATCH_SIZE)
    result = bench.run(quick=True)
    row = result["results"][0]

    assert set(result) == {"bench", "machine", "config_sha256", "results"}
    assert result["bench"] == "ledger" and len(result["config_sha256"]) == 64
    assert row["name"] == "postings_durable"
    assert row["baseline"] == "bare sqlite, same pragmas and batch size"
    assert row["per_s"] > 0 and row["baseline_per_s"] > 0 and row["ratio"] > 0
    assert row["p50_ms"] <= row["p99_ms"]
    assert json.loads(json.dumps(result)) == result
