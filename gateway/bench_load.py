"""The BEPS load generator of `paygate bench e2e` (and `bench beps`'s transfers): a core
system posting batches of new credits through the public API, in a process of its own.

    python -m gateway.bench_load SPEC

A generator that cannot go on (a batch refused other than 503, a gateway it cannot
reach) ends with exit status 2 and, as the last line of its standard error, the error
shape (`load_generator_failed`: the URL, what it got, and why), which the bench reports
as its own; an unforeseen failure writes its traceback before that line.

It imports what it needs to write transfers and post them over HTTP (aiohttp, orjson)
and nothing of the gateway's own stack: the generator shares the machine with what it
measures, and importing the gateway's modules (the app, the ledger, the message
schemas) cost it about a second of CPU at every start, charged to the run's load
generator (some 10 µs a transaction of a 15 s BEPS phase).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.collector import tune_collector
from gateway.errors import PaygateError, Problem

BRANCH, PEER_BRANCH = "999100000027", "888200000023"
LOAD_FAILED = "load_generator_failed"


def payer_name(n: int) -> str:
    """The holder's name of the n-th customer account the load pays from (from 1)."""
    return f"客户{n}"


def credit(account: str, n: int, name: str = "示例客户") -> dict[str, Any]:
    """The n-th credit the load sends from `account` (its own payee, its own amount)."""
    return {"payer_account": account, "payer_name": name, "payer_bank": BRANCH,
            "payee_account": f"6228{n:015d}", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH, "amount": f"{1 + n % 49_999}.00"}


_MARKS = ("@payer@", "@payee@", "@amount@")


def credit_text(account: str, name: str = "示例客户") -> Callable[[int], str]:
    """`credit(account, n, name)` as json.dumps(..., ensure_ascii=False) writes it, by `n`: the
    text around the values that change is cut from that very dump once, so that a load
    generator writing thousands a second spends no dict and no encoder on each."""
    fields = credit(_MARKS[0], 0, name)
    fields["payee_account"], fields["amount"] = _MARKS[1], _MARKS[2]
    text = json.dumps(fields, ensure_ascii=False)
    payer = json.dumps(account, ensure_ascii=False)[1:-1]
    head, rest = text.split(_MARKS[0])
    middle, rest = rest.split(_MARKS[1])
    between, tail = rest.split(_MARKS[2])
    head += payer + middle

    def text_of(n: int) -> str:
        return f"{head}6228{n:015d}{between}{1 + n % 49_999}.00{tail}"
    return text_of


async def beps_load(spec_path: str) -> None:
    """The load generator's process for BEPS: batches of new transfers (the payers in
    turn, each transfer its own payee) posted for the spec's duration by its clients,
    spread over the gateways' URLs; what was accepted is written to the spec's `out`."""
    spec = json.loads(Path(spec_path).read_text())
    payers, items = spec["payers"], spec["batch_items"]
    # Each payer's transfers written from a text cut once (the same text json.dumps
    # writes): the generator shares the box with what it measures, so its own work per
    # transfer is kept to a format.
    texts = [credit_text(payer, payer_name(n)) for n, payer in enumerate(payers, 1)]
    # Each answer is thousands of short-lived dicts: with the default thresholds the
    # collector walked the imported modules again and again (a quarter of the
    # generator's CPU); tuned as the gateway's own.
    tune_collector()
    counter = {"next": 0}
    durations: list[float] = []
    ids: list[str] = []
    refused = [0]
    retried = [0]
    deadline = time.perf_counter() + spec["duration_s"]

    async def client(http: aiohttp.ClientSession, url: str) -> None:
        while time.perf_counter() < deadline:
            batch = counter["next"]
            counter["next"] += 1
            first = batch * items
            body = ("[" + ", ".join(texts[n % len(texts)](n)
                                    for n in range(first, first + items)) + "]").encode()
            sent = time.perf_counter()
            while True:
                # A 503 (Redis away, rows held by the other gateway) did nothing: the
                # same batch under the same key again, as a core system would.
                async with http.post(f"{url}/v1/transfers/batch", data=body, headers={
                        "Idempotency-Key": f"beps-{batch}",
                        "Content-Type": "application/json"}) as r:
                    answer = orjson.loads(await r.read())
                    if r.status == 503:
                        retried[0] += 1
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    if r.status != 200:
                        raise PaygateError(Problem(
                            LOAD_FAILED, f"{url}/v1/transfers/batch", r.status,
                            "200 for a batch (503 is posted again)",
                            f"the BEPS load generator's batch {batch} was answered "
                            f"HTTP {r.status}: {str(answer)[:300]}"))
                    break
            durations.append(time.perf_counter() - sent)
            for item in answer["results"]:
                if item["status"] in (200, 201):
                    ids.append(item["transfer"]["id"])
                else:
                    refused[0] += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http, spec["urls"][k % len(spec["urls"])])
                               for k in range(spec["clients"])))
    Path(spec["out"]).write_text(json.dumps({
        "ids": ids, "refused": refused[0], "tried": counter["next"] * items,
        "retried_503": retried[0],
        "durations_s": durations, "wall_s": time.perf_counter() - started}))


def main(spec_path: str) -> int:
    """Run the generator; 0 when it ran its time, 2 with the error shape on standard
    error when it could not (module doc)."""
    try:
        asyncio.run(beps_load(spec_path))
    except PaygateError as exc:
        failed = exc
    except Exception as exc:  # told below, not swallowed: the process ends with it
        # A gateway not reached or cut off, an answer not JSON, a spec unreadable, a
        # fault of the generator's own: the traceback for whoever reads the log, then
        # the error shape.
        traceback.print_exc(file=sys.stderr)
        failed = PaygateError(Problem(
            LOAD_FAILED, spec_path, type(exc).__name__, "a load run to its end",
            f"the BEPS load generator stopped: {type(exc).__name__}: {exc}"))
    else:
        return 0
    print(json.dumps(failed.to_dict(), ensure_ascii=False), file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
