"""`paygate bench messages`: the result has the CONTRACT.md §8 shape and measures the
workloads it names (no timing is asserted: machines differ)."""

from __future__ import annotations

import json

from gateway import bench as gateway_bench
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
                            "baseline_per_s", "ratio", "ratio_low", "ratio_high",
                            "ratio_min", "ratio_max", "rounds"}
        assert row["per_s"] > 0 and row["baseline_per_s"] > 0
        assert 0 < row["ratio_min"] <= row["ratio_low"] <= row["ratio"] <= row["ratio_high"] \
            <= row["ratio_max"]
        assert row["rounds"] == bench.PLANS["quick"]["rounds"]
    json.dumps(result)


def test_each_round_times_every_contender_in_turn() -> None:
    """A round runs the contenders' calls in blocks, in turn, as many as the plan says,
    in the opposite order every other cycle."""
    order: list[str] = []
    contenders = {name: (lambda name=name: order.append(name))
                  for name in ("ours", "lxml", "xmlschema")}

    timings = bench._round(contenders, 2, {"ours": 3, "lxml": 3, "xmlschema": 1})

    assert order == ["ours"] * 3 + ["lxml"] * 3 + ["xmlschema"] + \
        ["xmlschema"] + ["lxml"] * 3 + ["ours"] * 3
    assert {name: len(times) for name, times in timings.items()} == {
        "ours": 6, "lxml": 6, "xmlschema": 2}


def test_the_ratio_is_the_median_round_with_its_spread() -> None:
    """Each round's ratio compares the contenders' median calls within the round; the
    figure is the middle round, beside the quartiles and the extremes of the rounds."""
    xmlschema_s = [20.0, 30.0, 25.0, 22.0, 24.0, 26.0, 40.0, 5.0]
    rounds = [{"ours": [1.0, 1.0, 9.0], "lxml": [2.0], "xmlschema": [s]} for s in xmlschema_s]

    lxml_row, xmlschema_row = bench._results("w", rounds, unit=10, overhead_s=0.0)

    assert [xmlschema_row[key] for key in ("ratio_min", "ratio_low", "ratio", "ratio_high",
                                           "ratio_max")] == [5.0, 22.0, 24.5, 30.0, 40.0]
    assert (lxml_row["ratio_low"], lxml_row["ratio"], lxml_row["ratio_high"]) == (
        2.0, 2.0, 2.0)
    assert (xmlschema_row["per_s"], xmlschema_row["baseline_per_s"]) == (10, 0)
    assert xmlschema_row["rounds"] == 8


def test_workloads_are_valid_messages_that_map_back() -> None:
    """The benchmark measures real work: its messages are valid and map to their objects."""
    credit, package = bench.sample_credit(), bench.sample_package(bench.PACKAGE_TXS)

    assert hvps111.parse(xml.parse(hvps111.build(credit))) == (credit, [])
    parsed, problems = beps121.parse(xml.parse(beps121.build(package)))
    assert problems == [] and parsed == package and len(parsed.transfers) == 1_000
    assert beps121.check(package) == []


def test_readme_table_shows_the_spread_of_rounds() -> None:
    """A figure measured in rounds shows their number and the middle half of their
    ratios; figures of other benchmarks leave that column empty."""
    measured = {"name": "beps121_parse_validate_map_vs_xmlschema", "per_s": 70_000,
                "p50_ms": 14.2, "p99_ms": 17.9, "baseline": "xmlschema validation",
                "baseline_per_s": 2_900, "ratio": 24.1, "ratio_low": 22.53,
                "ratio_high": 26.0, "ratio_min": 18.0, "ratio_max": 31.0, "rounds": 21}
    plain = {"name": "postings_durable", "per_s": 22_970, "p50_ms": 43.6, "p99_ms": 60.9,
             "baseline": "bare sqlite", "baseline_per_s": 37_788, "ratio": 0.608}

    table = gateway_bench.table({"messages": {"machine": "m", "results": [measured]},
                                 "ledger": {"machine": "m", "results": [plain]}})

    assert "| 24.1 | 21: 22.5–26.0 |" in table
    assert "| 0.608 |  |" in table
