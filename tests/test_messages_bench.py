"""`paygate bench messages`: the result has the CONTRACT.md §8 shape and measures the
workloads it names (no timing is asserted: machines differ)."""

from __future__ import annotations

import json

from gateway.messages import bench, beps121, hvps111, xml


def test_quick_run_has_the_contract_shape() -> None:
    """One object with bench, machine, config hash and four results with their baselines."""
    result = bench.run(quick=True)

    assert set(result) == {"bench", "machine", "config_sha256", "results"}
    assert result["bench"] == "messages" and len(result["config_sha256"]) == 64
    assert [r["name"] for r in result["results"]] == [
        "hvps111_parse_validate_map_vs_lxml", "hvps111_parse_validate_map_vs_xmlschema",
        "beps121_parse_validate_map_vs_lxml", "beps121_parse_validate_map_vs_xmlschema"]
    for row in result["results"]:
        assert set(row) == {"name", "per_s", "p50_ms", "p99_ms", "baseline",
                            "baseline_per_s", "ratio"}
        assert row["per_s"] > 0 and row["baseline_per_s"] > 0 and row["ratio"] > 0
    json.dumps(result)


def test_workloads_are_valid_messages_that_map_back() -> None:
    """The benchmark measures real work: its messages are valid and map to their objects."""
    credit, package = bench.sample_credit(), bench.sample_package(bench.PACKAGE_TXS)

    assert hvps111.parse(xml.parse(hvps111.build(credit))) == (credit, [])
    parsed, problems = beps121.parse(xml.parse(beps121.build(package)))
    assert problems == [] and parsed == package and len(parsed.transfers) == 1_000
    assert beps121.check(package) == []
