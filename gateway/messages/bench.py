"""`paygate bench messages`: how fast a message is parsed, validated and mapped.

Two workloads, each on the same bytes for every contender:

- one hvps.111 customer credit transfer, measured per message;
- one beps.121 package of 1,000 transactions, measured per transaction.

"Ours" is what the gateway does with a body: `xml.parse` (the careful parser), our
schema's validation and the family's `parse` into domain objects. The baselines are
bare lxml (`etree.fromstring` with the default parser, then the same compiled schema's
`validate`: no mapping at all) and the xmlschema package validating the same bytes
against the same XSD. The targets are at least 0.6 of bare lxml and 20 times xmlschema.

How the figures stay put on a shared machine: the run is made of rounds; in a round the
contenders take turns, a block of back-to-back calls each (see `_round`), so that what
else the machine does at that moment weighs on all of them. Each round gives each
contender's speed (units over its median call) and so its own ratios; a figure's
`per_s`, `baseline_per_s` and `ratio` are the median round's. Beside the ratio are the
quartiles of the rounds' ratios (`ratio_low`, `ratio_high`: the middle half of the
rounds lies between them) and the lowest and highest round (`ratio_min`, `ratio_max`),
which show whether another process ran for a moment (`p50_ms` and `p99_ms` are over all
of ours' calls).
Calls are timed in this thread's CPU time, which does not count the time the scheduler
gives to other processes, with the garbage collector paused during each call.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import platform
import time
from functools import lru_cache
from typing import Any, Callable

import xmlschema
from lxml import etree

from gateway.messages import beps121, examples, hvps111, xml
from gateway.messages.package import Package, PackageHeader, Transfer
from message_schemas import catalogue

PACKAGE_TXS = 1_000
# A round is `cycles` cycles; a cycle times `calls` back-to-back calls of each contender
# in turn (see _round). xmlschema is about twenty times slower, so it makes fewer calls.
PLANS = {"quick": {"rounds": 3,
                   "hvps111": {"cycles": 2, "calls": {"ours": 20, "lxml": 20, "xmlschema": 5}},
                   "beps121": {"cycles": 1, "calls": {"ours": 3, "lxml": 3, "xmlschema": 1}}},
         "full": {"rounds": 21,
                  "hvps111": {"cycles": 5, "calls": {"ours": 40, "lxml": 40, "xmlschema": 6}},
                  "beps121": {"cycles": 2, "calls": {"ours": 3, "lxml": 3, "xmlschema": 1}}}}
LXML_BASELINE = "bare lxml parse + schema validation, same bytes and XSD, no mapping"
XMLSCHEMA_BASELINE = "xmlschema validation, same bytes and XSD"


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; the CONTRACT.md §8 result object."""
    plan = PLANS["quick" if quick else "full"]
    results = []
    overhead_s = _clock_overhead_s()
    for name, code, body, parse, unit in _workloads():
        contenders = _contenders(code, body, parse)
        rounds = [_round(contenders, plan[name]["cycles"], plan[name]["calls"])
                  for _ in range(plan["rounds"])]
        results += _results(name, rounds, unit, overhead_s)
    config = {"plan": plan, "clock": "thread_time", "package_transactions": PACKAGE_TXS,
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


def _contenders(code: str, body: bytes,
                parse: Callable[[etree._Element], Any]) -> dict[str, Callable[[], None]]:
    ours_schema = catalogue.schema(code)
    slow = _xmlschema(code)

    def ours() -> None:
        root = xml.parse(body)
        assert ours_schema.validate(root), "the benchmark's message is valid"
        parse(root)

    def bare() -> None:
        assert ours_schema.validate(etree.fromstring(body))

    def other() -> None:
        assert slow.is_valid(io.BytesIO(body))

    contenders = {"ours": ours, "lxml": bare, "xmlschema": other}
    for warm_up in contenders.values():
        # The first call of each builds caches (compiled paths, xmlschema's validators).
        warm_up()
    return contenders


@lru_cache(maxsize=4)
def _xmlschema(code: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(catalogue.xsd_path(code))


Round = dict[str, list[float]]


def _round(contenders: dict[str, Callable[[], None]], cycles: int,
           calls: dict[str, int]) -> Round:
    """Seconds of each timed call of one round.

    The contenders take turns, a few back-to-back calls each, so that whatever else the
    machine does in the round (another process, a frequency change) weighs on all three
    alike: a round's ratios compare calls made within a second of each other. Calls run
    back to back because that is how a validator works in steady state: a lone call
    between thousands of another contender's finds the CPU's caches cold, which for
    xmlschema's pure-Python validator costs half as much again as a call that follows
    another (a single hvps.111: about 1.25 ms against 0.83 ms). The first calls of a
    block still pay for the one before; the order of the turns is reversed from one
    cycle to the next, so that each contender follows each of the others as often."""
    timings: Round = {name: [] for name in contenders}
    order = list(contenders)
    for cycle in range(cycles):
        for name in order if cycle % 2 == 0 else reversed(order):
            timings[name] += [_seconds(contenders[name]) for _ in range(calls[name])]
    return timings


def _seconds(fn: Callable[[], None]) -> float:
    """CPU seconds of one call, with the garbage collector paused, as timeit does: a
    collection triggered by another contender's garbage would otherwise land on
    whoever runs next. Collections happen between the calls instead.

    The clock is this thread's CPU time, not the wall clock: time the scheduler gives
    to other processes on a shared machine is not counted against whichever contender
    happened to be running. Every contender is single-threaded, with no I/O, so on a
    quiet machine the two clocks agree."""
    gc.disable()
    try:
        started = time.thread_time()
        fn()
        return time.thread_time() - started
    finally:
        gc.enable()


def _clock_overhead_s() -> float:
    """What `_seconds` reports for a call that does nothing: reading this clock is a
    system call (about half a microsecond), a few percent of an hvps.111's time, and
    is taken off every timing so that it does not flatter the slower contender."""
    return _median([_seconds(lambda: None) for _ in range(1_000)])


def _results(name: str, raw: list[Round], unit: int,
             overhead_s: float) -> list[dict[str, Any]]:
    rounds = [{key: [max(t - overhead_s, 1e-9) for t in times] for key, times in r.items()}
              for r in raw]
    ours = sorted(t for r in rounds for t in r["ours"])
    ours_per_s = [unit / _median(r["ours"]) for r in rounds]
    out = []
    for baseline, label in (("lxml", LXML_BASELINE), ("xmlschema", XMLSCHEMA_BASELINE)):
        baseline_per_s = [unit / _median(r[baseline]) for r in rounds]
        ratios = sorted(o / b for o, b in zip(ours_per_s, baseline_per_s))
        out.append({"name": f"{name}_parse_validate_map_vs_{baseline}",
                    "per_s": round(_median(ours_per_s)),
                    "p50_ms": round(_percentile(ours, 50) * 1000, 3),
                    "p99_ms": round(_percentile(ours, 99) * 1000, 3), "baseline": label,
                    "baseline_per_s": round(_median(baseline_per_s)),
                    "ratio": round(_median(ratios), 3),
                    "ratio_low": round(ratios[len(ratios) // 4], 3),
                    "ratio_high": round(ratios[len(ratios) * 3 // 4], 3),
                    "ratio_min": round(ratios[0], 3), "ratio_max": round(ratios[-1], 3),
                    "rounds": len(rounds)})
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * pct) // 100)]


def _file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}, " \
           f"Python {platform.python_version()}, lxml {etree.__version__}"
