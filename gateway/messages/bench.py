"""`paygate bench messages`: how fast a message is parsed, validated and mapped.

Two workloads, each on the same bytes for every contender:

- one hvps.111 customer credit transfer, measured per message;
- one beps.121 package of 1,000 transactions, measured per transaction.

"Ours" is what the gateway does with a body: `xml.parse` (the careful parser), our
schema's validation and the family's `parse` into domain objects. The baselines are
bare lxml (`etree.fromstring` with the default parser, then the same compiled schema's
`validate`: no mapping at all) and the xmlschema package validating the same bytes
against the same XSD. The targets are at least 0.6 of bare lxml and 20 times xmlschema.

The contenders run in turn within each round, so that whatever else the machine does
slows them alike and the ratios stay meaningful on a busy machine.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import platform
import time
from typing import Any, Callable

import xmlschema
from lxml import etree

from gateway.messages import beps121, examples, hvps111, xml
from gateway.messages.package import Package, PackageHeader, Transfer
from message_schemas import catalogue

PACKAGE_TXS = 1_000
ROUNDS = {"quick": {"hvps111": 300, "beps121": 8, "xmlschema": 3},
          "full": {"hvps111": 3_000, "beps121": 40, "xmlschema": 9}}
LXML_BASELINE = "bare lxml parse + schema validation, same bytes and XSD, no mapping"
XMLSCHEMA_BASELINE = "xmlschema validation, same bytes and XSD"


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; the CONTRACT.md §8 result object."""
    rounds = ROUNDS["quick" if quick else "full"]
    results = []
    for name, code, body, parse, unit in _workloads():
        timings = _measure(code, body, parse, rounds[name], rounds["xmlschema"])
        results += _results(name, timings, unit)
    config = {"rounds": rounds, "package_transactions": PACKAGE_TXS,
              "schemas": {code: _file_sha256(catalogue.xsd_path(code))
                          for code in (hvps111.MESSAGE_TYPE, beps121.MESSAGE_TYPE)}}
    return {"bench": "messages", "machine": _machine(),
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode())
            .hexdigest(), "results": results}


Workload = tuple[str, str, bytes, Callable[[etree._Element], Any], int]


def _workloads() -> list[Workload]:
    return [("hvps111", hvps111.MESSAGE_TYPE, hvps111.build(sample_credit()), hvps111.parse, 1),
            ("beps121", beps121.MESSAGE_TYPE, beps121.build(sample_package(PACKAGE_TXS)),
             beps121.parse, PACKAGE_TXS)]


def sample_credit() -> hvps111.CreditTransfer:
    return examples.credit_transfer()


def sample_package(count: int) -> Package:
    transfers = tuple(Transfer(
        tx_id=f"20240520{i:08d}", debtor_name=f"示例商贸有限公司{i % 97}",
        debtor_account=f"110000000000{i:08d}", debtor_account_bank="999100000027",
        debtor_bank="999100000027", creditor_bank="888200000023",
        creditor_name=f"测试收款人{i % 89}", creditor_account=f"62000000000{i:08d}",
        creditor_account_bank="888200000023", amount_fen=10_000 + i * 37,
        business_type="A100", business_kind="02102", remark="货款")
        for i in range(1, count + 1))
    header = PackageHeader("2024052000100000", "2024-05-20T09:30:00", "999100000019",
                           "888200000015", count, sum(t.amount_fen for t in transfers))
    return Package(header, transfers)


def _measure(code: str, body: bytes, parse: Callable[[etree._Element], Any], rounds: int,
             xmlschema_rounds: int) -> dict[str, list[float]]:
    ours_schema = catalogue.schema(code)
    slow = xmlschema.XMLSchema(catalogue.xsd_path(code))

    def ours() -> None:
        root = xml.parse(body)
        assert ours_schema.validate(root), "the benchmark's message is valid"
        parse(root)

    def bare() -> None:
        assert ours_schema.validate(etree.fromstring(body))

    def other() -> None:
        assert slow.is_valid(io.BytesIO(body))

    for warm_up in (ours, bare, other):
        # The first call of each builds caches (compiled paths, xmlschema's validators).
        warm_up()
    timings: dict[str, list[float]] = {"ours": [], "lxml": [], "xmlschema": []}
    # xmlschema is slow, so it runs in fewer rounds, spread evenly over the whole run.
    every = max(1, rounds // xmlschema_rounds)
    for n in range(rounds):
        timings["ours"].append(_seconds(ours))
        timings["lxml"].append(_seconds(bare))
        if n % every == every // 2 and len(timings["xmlschema"]) < xmlschema_rounds:
            timings["xmlschema"].append(_seconds(other))
    return timings


def _seconds(fn: Callable[[], None]) -> float:
    """One timed call with the garbage collector paused, as timeit does: a collection
    triggered by another contender's garbage would otherwise land on whoever runs next.
    Collections happen between the calls instead."""
    gc.disable()
    try:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started
    finally:
        gc.enable()


def _results(name: str, timings: dict[str, list[float]], unit: int) -> list[dict[str, Any]]:
    ours = timings["ours"]
    per_s = unit / _percentile(ours, 50)
    out = []
    for baseline, label in (("lxml", LXML_BASELINE), ("xmlschema", XMLSCHEMA_BASELINE)):
        # Medians, not means: a scheduler pause in one round does not decide the ratio.
        baseline_per_s = unit / _percentile(timings[baseline], 50)
        out.append({"name": f"{name}_parse_validate_map_vs_{baseline}",
                    "per_s": round(per_s), "p50_ms": round(_percentile(ours, 50) * 1000, 3),
                    "p99_ms": round(_percentile(ours, 99) * 1000, 3), "baseline": label,
                    "baseline_per_s": round(baseline_per_s),
                    "ratio": round(per_s / baseline_per_s, 3)})
    return out


def _percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * pct) // 100)]


def _file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}, " \
           f"Python {platform.python_version()}, lxml {etree.__version__}"
