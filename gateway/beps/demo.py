"""The BEPS part of `paygate demo`: traffic both ways, netting, settlement, reconciliation.

Our customers send a batch of small credits (routed to BEPS, packed by the gateway) and
collect two debits (one refused by the payer bank); the peer bank sends credit packages
(one credit to an unknown account goes to suspense) and debits our customers authorised
(one it was not authorised for is refused). The simulated NPC nets a round when asked
(its own schedule is every 30 minutes), and since HVPS is open each round settles at
once. Everything runs in order, so two runs with the same seed put the same messages on
the wire. Reconciliation over the link (beps.720/721) joins the day's `reconciled`.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import date
from typing import Any, Callable

from gateway.beps import extension_of
from gateway.beps.api import submit_batch
from gateway.errors import PaygateError

BRANCH, PEER, PEER_BRANCH, BANK = "999100000027", "888200000015", "888200000023", \
    "999100000019"
YUAN = 100
CREDITS = 120          # small credits our customers send, in one batch
AGREEMENT = "XY-DEMO-0001"
WAIT_S = 60.0
ROUND_EVERY_S = 1.0    # how often the demo asks the NPC for a round while it waits
UNFINISHED = ("accepted", "sent", "queued", "netted", "received")


async def exchange(harness: Any, customers: dict[str, str], rng: random.Random,
                   say: Callable[[str], None]) -> None:
    gw = harness.gateway
    ext = extension_of(gw)
    names = sorted(n for n in customers if n.startswith("c"))
    batch = []
    for n in range(CREDITS):
        name = rng.choice(names)
        batch.append(_credit(customers[name], f"示例客户{name}",
                             rng.randint(100, 49_999) * YUAN, n))
    answer = await submit_batch(gw, ext.settings.batch_items_max, "demo", "demo-beps", batch)
    say(f"BEPS: {answer['accepted']} small credits accepted in one batch")
    await _debits(harness, ext, customers)
    for n in range(2):
        await harness.sim("POST", "/sim/beps/peer/send", {
            "sender": PEER, "receiver": BANK, "account": customers[names[n]],
            "name": f"示例客户{names[n]}", "bank": BRANCH, "amount_fen": 2_000 * YUAN,
            "count": 20})
    await harness.sim("POST", "/sim/beps/peer/send", {
        "sender": PEER, "receiver": BANK, "account": "62990000000000000077",
        "name": "不存在的户名", "bank": BRANCH, "amount_fen": 150 * YUAN})
    await _until_settled(harness)
    say(f"BEPS: {await gw.store.run(lambda tx: ext.summary(tx)['beps'])}")


def _credit(account: str, payer_name: str, amount_fen: int, n: int) -> dict[str, Any]:
    return {"payer_account": account, "payer_name": payer_name, "payer_bank": BRANCH,
            "payee_account": f"6228{n:015d}", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH,
            "amount": f"{amount_fen // 100}.{amount_fen % 100:02d}",
            "business_type": "A100", "business_kind": "02102", "remittance_info": "小额货款"}


async def _debits(harness: Any, ext: Any, customers: dict[str, str]) -> None:
    for n, debtor in enumerate(("6222000000004321", "6222000000009999")):
        await ext.submit_debit("demo", f"demo-debit-{n}", {
            "creditor_account": customers["c3"], "creditor_name": "示例客户c3",
            "creditor_bank": BRANCH, "debtor_account": debtor, "debtor_name": "对手客户",
            "debtor_bank": PEER_BRANCH, "amount": "260.00", "agreement": AGREEMENT})
    await ext.add_mandate({"account": customers["c4"], "agreement": AGREEMENT})
    for name in ("c4", "c5"):
        await harness.sim("POST", "/sim/beps/peer/debit", {
            "sender": PEER, "receiver": BANK, "account": customers[name],
            "name": f"示例客户{name}", "bank": BRANCH, "amount_fen": 88 * YUAN,
            "agreement": AGREEMENT})


async def _until_settled(harness: Any) -> None:
    """Ask for rounds until every BEPS payment has reached a final state."""
    gw = harness.gateway
    marks = ", ".join(f"'{s}'" for s in UNFINISHED)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        open_count = await gw.store.run(lambda tx: tx.query_one(
            f"SELECT COUNT(*) FROM payments WHERE channel = 'beps' AND state IN ({marks})",
            ())[0])
        if open_count == 0:
            return
        await asyncio.sleep(ROUND_EVERY_S)
        await harness.sim("POST", "/sim/beps/net", {})
    raise TimeoutError(f"waited {WAIT_S} s for BEPS payments to settle")


async def reconcile(gw: Any, day: date, hvps: dict[str, Any],
                    say: Callable[[str], None]) -> dict[str, Any]:
    """BEPS reconciliation over the link of the demo's netting date; the day reconciles
    only if both systems do. The date is complete only after midnight, when the gateway
    reconciles it by itself (gateway.beps.netting_dates); the demo's rounds are all
    netted by now, so it asks for the date at once, as an operator's early look would."""
    beps = await extension_of(gw).reconcile(day)
    say(f"BEPS reconciliation over the link: reconciled={beps['reconciled']} "
        f"differences={len(beps['differences'])}")
    return dict(hvps, reconciled=hvps["reconciled"] and beps["reconciled"], beps=beps)


def day_events(run: Any) -> list[tuple[Any, str, Any]]:
    """BEPS traffic for `paygate simulate-day`, on any kind of day (BEPS runs 7×24).

    Credits to the peer bank and packages from it spread over the day, and a netting
    round every half hour. Packages are sealed explicitly just before each round (the
    age timer is switched off), so that the order of messages depends on the seed only.
    """
    from datetime import datetime as dt, time as tm, timedelta as td

    from gateway.clock import SHANGHAI
    gw, rng, day = run.gw, run.rng, run.day
    ext = extension_of(gw)
    ext.configure(package_age_max_s=10.0 ** 7)
    start = dt.combine(day, tm(7, 0), SHANGHAI)
    events: list[tuple[Any, str, Any]] = []
    names = sorted(run.customers)

    def credit(i: int, name: str, amount_fen: int) -> Any:
        async def go() -> None:
            body = {"payer_account": run.customers[name], "payer_name": f"日终客户{name}",
                    "payer_bank": "999100000027", "payee_account": f"6233{i:012d}",
                    "payee_name": "对手客户", "payee_bank": "888200000023",
                    "amount": f"{amount_fen // 100}.{amount_fen % 100:02d}"}
            try:
                await gw.submit_transfer("simday", f"day-beps-{i}", body)
            except PaygateError as exc:
                run.refusals[exc.code] = run.refusals.get(exc.code, 0) + 1
        return go

    def package(i: int, name: str, amount_fen: int) -> Any:
        async def go() -> None:
            sim = run.sim
            sim.beps.peer_package(sim.peers["888200000015"], {
                "sender": "888200000015", "receiver": gw.settings.bank_code,
                "account": run.customers[name], "name": f"日终客户{name}",
                "bank": "999100000027", "amount_fen": amount_fen, "count": 2},
                False, sim.node.take)
        return go

    async def round_now() -> None:
        await ext.packer.seal(force=True)
        await run.quiet()
        run.sim.beps.net_now()

    for i in range(run.volumes.beps_out):
        at = start + td(seconds=rng.randrange(11 * 3600))
        events.append((at, f"beps out {i}", credit(i, rng.choice(names),
                                                   rng.randint(100, 40_000) * 100)))
    for i in range(run.volumes.beps_in):
        at = start + td(seconds=rng.randrange(11 * 3600))
        events.append((at, f"beps in {i}", package(i, rng.choice(names),
                                                   rng.randint(100, 20_000) * 100)))
    for k in range(1, 24):
        events.append((start + td(minutes=30 * k), f"beps round {k}", round_now))
    return events
