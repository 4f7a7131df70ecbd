"""`paygate demo`: the main job, end to end, on embedded defaults.

On a virtual working day (the next one the business calendar knows) it starts the
simulated NPC as its own process, the gateway and an embedded Redis, opens HVPS, and
then does what a bank's day looks like: the project's example messages and a
few hundred JSON transfers from the core system (some short of funds, some queued at the
NPC until the clearing account is funded, one still queued at day end and cancelled),
payments from a peer bank (some to unknown accounts, one delivered twice), the close of
the day, and reconciliation over the link (hvps.710/711). It ends with the summary of
CONTRACT.md §8 on the last line and exits 0 only if the books balance and reconcile.

The day's clock runs at real speed and is moved forward, in the gateway and in the NPC
alike, to each phase's time by the gateway's HVPS timetable (`day_times`): preparation
before the opening, the opening, the payments from 09:00, the cut-off and the clearing
window, the end of day with its reconciliation, and the cut-over to the next working
day. What happened then is stamped at those times (the window's history, the
reconciliation, the messages, the log), so `ops status` and the reports afterwards read
as that day did, while the demo runs in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
import zlib
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from importlib import resources
from pathlib import Path
from typing import Any

from gateway import logs, summary
from gateway.dayend import reports_folder
from gateway.errors import PaygateError, Problem
from gateway.calendar import BusinessCalendar
from gateway.clock import SHANGHAI, ScaledClock
from gateway.config import Settings
from gateway.beps import demo as beps_demo
from gateway.harness import Harness
from gateway.windows import Timetable, timetable_from_settings
from gateway.messages import codec
from gateway.runfolder import DATA_HELP, KEEP_HELP, RunFolder, print_errors
from gateway.queries import demo as queries_demo
from ledger.testing import customer_account

BANK, BRANCH = "999100000019", "999100000027"
PEER, PEER_BRANCH = "888200000015", "888200000023"
YUAN = 100
OPENING_CLEARING_FEN = 30_000_000 * YUAN
TOP_UP_FEN = 45_000_000 * YUAN
EXAMPLE_PAYER_FEN = 5_000_000 * YUAN
# The demo's customers c1..c20 are numbered after the accounts the examples pay from.
CUSTOMER_SEQUENCE_FROM = 11
WAIT_S = 60.0
# The business day's payments start at this time of day, after the opening.
PAYMENTS_FROM = dt_time(9, 0)
# Virtual minutes before the opening at which the demo starts, in preparation (00).
PREPARATION_MIN = 5


def say(text: str) -> None:
    print(f"[demo] {text}", file=sys.stderr, flush=True)


def demo_day(today: date, calendar: BusinessCalendar) -> date:
    """The next working day the calendar knows (CONTRACT.md §3)."""
    return calendar.next_working_day(today)


async def run_demo(data_dir: Path, transfers: int, seed: int) -> tuple[int, dict[str, Any]]:
    rng = random.Random(seed)
    calendar = BusinessCalendar()
    day = demo_day(datetime.now(SHANGHAI).date(), calendar)
    times = day_times(day, timetable_from_settings(Settings()))
    clock = ScaledClock(start=times["preparation"], anchor_epoch_s=time.time(), rate=1.0)
    harness = Harness(data_dir, clock_spec=clock.to_spec(),
                      balances_fen={BANK: OPENING_CLEARING_FEN, PEER: 10**14,
                                    "777300000011": 10**14},
                      settings_overrides={"webhook_url": ""},
                      sim_args=["--phase", "00", "--date", day.isoformat()])
    say(f"data in {data_dir}; virtual work date {day}")
    await harness.start()
    try:
        gw = harness.gateway
        customers = await open_customers(gw, day)
        await clock_to(harness, times["opening"])
        await phase(harness, "10", day)
        await wait_for(lambda: gw.hvps_open, "HVPS to open")
        say(f"HVPS open; gateway at {gw.url}, NPC at {harness.sim_url}")
        await clock_to(harness, times["payments"])

        example_ids = await push_examples(gw)
        outcomes = await push_core_traffic(gw, customers, transfers, rng)
        say(f"core system: {outcomes}")
        await push_peer_traffic(harness, customers, rng)
        await settle_quietly(gw)
        await return_one_from_suspense(gw, say)
        await queries_demo.exchange(harness, say)

        say(f"funding the clearing account with {TOP_UP_FEN // YUAN:,} yuan")
        await fund(harness, TOP_UP_FEN, day)
        await wait_state_count(gw, "queued", 0)
        await beps_demo.exchange(harness, customers, rng, say)

        big = await submit(gw, customers["whale"], 90_000_000 * YUAN, "extra_urgent",
                           "demo-whale", holder("whale"))
        say(f"a payment of 90,000,000.00 yuan beyond the clearing balance: {big[1]['id']}")
        await wait_state_count(gw, "queued", 1)

        for status, at in (("20", "cut_off"), ("30", "clearing_window"),
                           ("40", "end_of_day")):
            await clock_to(harness, times[at])
            await phase(harness, status, day)
        await wait_state_count(gw, "queued", 0)
        await settle_quietly(gw)

        result = await gw.day_end.wait_reconciled(day)
        for name, part in result["parts"].items():
            say(f"day end, reconciliation over the link ({name}): "
                f"reconciled={part['reconciled']} differences={len(part['differences'])}")
        result = await beps_demo.reconcile(gw, day, result, say)
        await settle_quietly(gw)
        await clock_to(harness, times["cut_over"])
        await close_ledger_day(harness, day, calendar)
        examples_ok = await check_examples(gw, example_ids)
        stats = await harness.sim("GET", "/sim/stats")
        return await close_books(gw, day, result, stats, examples_ok)
    finally:
        await harness.stop()


def day_times(day: date, timetable: Timetable) -> dict[str, datetime]:
    """When on `day` each phase of the demo's day happens, by the gateway's HVPS
    timetable: the start, in preparation, PREPARATION_MIN minutes before the opening;
    the opening; the payments from PAYMENTS_FROM (at the opening when it is later);
    the cut-off, the clearing window and the end of day (which reconciles); and the
    cut-over to the next working day, at the timetable's day end."""
    def on(at: dt_time) -> datetime:
        return datetime.combine(day, at, tzinfo=SHANGHAI)
    opening = on(timetable.open_at)
    return {"preparation": opening - timedelta(minutes=PREPARATION_MIN),
            "opening": opening, "payments": max(opening, on(PAYMENTS_FROM)),
            "cut_off": on(timetable.cutoff_at),
            "clearing_window": on(timetable.clearing_window_start_at),
            "end_of_day": on(timetable.clearing_window_end_at),
            "cut_over": on(timetable.day_end_at)}


async def clock_to(harness: Harness, at: datetime) -> None:
    """The day's clock moved forward to `at`, in the NPC and in the gateway (nothing is
    under way between the demo's phases: their work is done before the next); left as
    it is when it is there already (two phases at one time: the clearing window opening
    at the cut-off)."""
    if harness.gateway.clock.now() >= at:
        return
    await harness.sim("POST", "/sim/clock", {"at": at.isoformat()})
    harness.gateway.clock.jump_to(at)
    say(f"virtual time now {at.strftime('%H:%M')}")


async def close_ledger_day(harness: Harness, day: date, calendar: BusinessCalendar) -> None:
    """The cut-over: the NPC starts the next working day's preparation (ccms.801, 00), so
    the gateway closes the ledger day of `day` and writes its reports, as at any day's
    end; a later start on the same folder then finds the day closed."""
    following = calendar.next_working_day(day)
    await phase(harness, "00", following)
    entries = await wait_day_closed(harness.gateway, day, following)
    say(f"ledger day {day} closed ({entries} entries), reports in "
        f"{reports_folder(harness.gateway.settings)}; work date now {following}")


async def wait_day_closed(gw: Any, day: date, following: date) -> int:
    """After the NPC's cut-over to `following` was sent: wait until the gateway has moved
    its work date there and its day end (the close of `day`'s ledger day, the reports) has
    run; the closed day's count of ledger entries. Refused with `ledger_day_not_closed`
    when the day end ran but left the day open (its alerts say why)."""
    await wait_for(lambda: gw.work_date == following, f"the work date to move to {following}")
    await gw.day_end.wait_idle()
    closed = await gw.store.run(lambda tx: tx.query_one(
        "SELECT entries FROM ledger_day WHERE work_date = ?", (day.isoformat(),)))
    if closed is None:
        raise PaygateError(Problem("ledger_day_not_closed", "work_date", day.isoformat(),
                                   "the ledger day closed at the cut-over; see the alerts"))
    return int(closed[0])


async def return_one_from_suspense(gw: Any, say: Any) -> None:
    """An incoming payment to an unknown account goes back to its sender (退汇, A105)."""
    parked = await gw.store.run(lambda tx: tx.query_one(
        "SELECT id FROM payments WHERE direction = 'in' AND state = 'suspense' ORDER BY id",
        ()))
    if parked is None:
        return
    returns = next(e for e in gw.extensions if hasattr(e, "request_return"))
    await returns.request_return(parked[0], "收款人账号不存在", "demo")
    await settle_quietly(gw)
    say(f"returned {parked[0]} from suspense to its sender (A105)")


async def open_customers(gw: Any, day: date) -> dict[str, str]:
    """Our customers' accounts in the ledger, and the opening of our clearing account."""
    customers = {f"c{i}": customer_account(CUSTOMER_SEQUENCE_FROM - 1 + i, "corporate")
                 for i in range(1, 21)}
    customers["poor"] = customer_account(90, "corporate")
    customers["whale"] = customer_account(91, "corporate")
    balances = {name: 5_000_000 * YUAN for name in customers}
    balances["poor"] = 1_000 * YUAN
    balances["whale"] = 200_000_000 * YUAN
    payers = example_payers()
    if set(payers) & set(customers.values()):
        raise ValueError("an example pays from an account of the demo's own customers")

    def work(tx: Any) -> None:
        gw.ledger.fund_clearing(tx, "demo:opening:clearing", OPENING_CLEARING_FEN, day)
        for name, account in customers.items():
            gw.ledger.open_customer_account(tx, account, holder(name), "corporate", day)
            gw.ledger.deposit(tx, f"demo:opening:{name}", account, balances[name], day)
        # Each example's payer holds its account under the name the example gives.
        for account, name in payers.items():
            gw.ledger.open_customer_account(tx, account, name, "corporate", day)
            gw.ledger.deposit(tx, f"demo:opening:{account}", account, EXAMPLE_PAYER_FEN, day)
    await gw.store.run(work)
    return customers


def examples() -> list[bytes]:
    """The project's example hvps.111 messages, in the order of their file names."""
    folder = resources.files("gateway").joinpath("examples")
    return [path.read_bytes() for path in sorted(folder.iterdir(), key=lambda p: p.name)
            if path.name.endswith(".xml")]


def example_payers() -> dict[str, str]:
    """The account each example pays from, and its holder as the example names it."""
    payers: dict[str, str] = {}
    for raw in examples():
        ct = codec.decode(raw, bare_ok=True).obj
        payers[ct.debtor_account] = ct.debtor_name
    return payers


def dated(raw: bytes, now: datetime) -> bytes:
    """An example with its creation time set to `now` (Beijing time), as the core system
    would write it at the moment it sends it."""
    stamp = now.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M:%S")
    out, found = re.subn(rb"<CreDtTm>[^<]*</CreDtTm>",
                         f"<CreDtTm>{stamp}</CreDtTm>".encode(), raw, count=1)
    if found != 1:
        raise ValueError("an example without a CreDtTm")
    return out


async def phase(harness: Harness, status: str, day: date) -> None:
    await harness.sim("POST", "/sim/phase", {"status": status, "date": day.isoformat()})
    await asyncio.sleep(0.3)


async def fund(harness: Harness, amount_fen: int, day: date) -> None:
    gw = harness.gateway
    await harness.sim("POST", "/sim/fund", {"participant": BANK, "amount_fen": amount_fen})
    await gw.store.run(lambda tx: gw.ledger.fund_clearing(
        tx, f"demo:topup:{amount_fen}", amount_fen, day))


def holder(name: str) -> str:
    """The name the demo customer `name`'s account is held under."""
    return f"示例客户{name}"


async def submit(gw: Any, account: str, amount_fen: int, urgency: str,
                 key: str, payer_name: str) -> tuple[int, dict[str, Any]]:
    body = {"payer_account": account, "payer_name": payer_name, "payer_bank": BRANCH,
            "payee_account": f"62{zlib.crc32(key.encode()):015d}", "payee_name": "对手客户",
            "payee_bank": PEER_BRANCH, "amount": f"{amount_fen // 100}.{amount_fen % 100:02d}",
            "business_type": "A100", "business_kind": "02102", "urgency": urgency,
            "remittance_info": "货款"}
    try:
        return await gw.submit_transfer("demo", key, body)
    except PaygateError as exc:  # a refusal is an outcome the demo counts, not a failure
        return exc.status, {"errors": [exc.code]}


async def push_core_traffic(gw: Any, customers: dict[str, str], count: int,
                            rng: random.Random) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    names = [n for n in customers if n.startswith("c")]
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        if i % 25 == 0:
            name, amount = "poor", 60_000 * YUAN
        else:
            name, amount = rng.choice(names), rng.randint(60_000, 400_000) * YUAN
        urgency = rng.choice(["urgent", "urgent", "extra_urgent", "normal"])
        async with semaphore:
            status, answer = await submit(gw, customers[name], amount, urgency, f"demo-{i}",
                                          holder(name))
        key = "accepted" if status == 201 else f"refused_{answer['errors'][0]}"
        outcomes[key] = outcomes.get(key, 0) + 1
    await asyncio.gather(*(one(i) for i in range(count)))
    return outcomes


async def push_examples(gw: Any) -> list[dict[str, Any]]:
    """Each example message through POST /v1/messages, as the core system sends one; a
    refused one is an alert (`demo_example_refused`), and the demo fails."""
    sent = []
    for raw in examples():
        status, answer = await submit_example(gw, dated(raw, gw.clock.now()))
        msg_id = codec.decode(raw, bare_ok=True).obj.msg_id
        if status == 201:
            sent.append({"msg_id": msg_id, "id": answer["id"]})
            continue
        codes = [e.get("code") for e in answer.get("errors", [])]
        say(f"example {msg_id} refused ({status}): {codes}")
        await gw.store.run(lambda tx: gw.alert(tx, "demo_example_refused", msg_id=msg_id,
                                               status=status, errors=codes))
        sent.append({"msg_id": msg_id, "id": None})
    say(f"examples: {sum(1 for e in sent if e['id'])} of {len(sent)} accepted")
    return sent


async def submit_example(gw: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
    from aiohttp import ClientSession
    async with ClientSession() as http:
        async with http.post(f"{gw.url}/v1/messages", data=raw,
                             headers={"Content-Type": "application/xml"}) as r:
            return r.status, await r.json()


async def check_examples(gw: Any, sent: list[dict[str, Any]]) -> bool:
    """Whether every example was accepted and settled; one that was not is an alert
    (`demo_example_not_settled`, naming its state)."""
    ok = True
    for example in sent:
        if example["id"] is None:
            ok = False
            continue
        row = await gw.store.run(lambda tx: tx.query_one(
            "SELECT state FROM payments WHERE id = ?", (example["id"],)))
        state = row[0] if row else None
        if state != "settled":
            ok = False
            say(f"example {example['msg_id']} ({example['id']}) ended {state}, not settled")
            await gw.store.run(lambda tx: gw.alert(
                tx, "demo_example_not_settled", msg_id=example["msg_id"],
                payment=example["id"], state=state))
    return ok


async def push_peer_traffic(harness: Harness, customers: dict[str, str],
                            rng: random.Random) -> None:
    names = [n for n in customers if n.startswith("c")]
    for i in range(30):
        name = rng.choice(names)
        await harness.sim("POST", "/sim/peer/send", {
            "sender": PEER, "receiver": BANK, "payee_account": customers[name],
            "payee_name": f"示例客户{name}", "amount_fen": rng.randint(1_000, 900_000) * YUAN,
            "count": 1, "business_type": "A100", "business_kind": "02102",
            "priority": "HIGH", "payee_bank": BRANCH})
    for i in range(4):
        await harness.sim("POST", "/sim/peer/send", {
            "sender": PEER, "receiver": BANK, "payee_account": f"6299{i:019d}",
            "payee_name": "不存在的户名", "amount_fen": 5_000 * YUAN, "count": 1,
            "business_type": "A100", "business_kind": "02102", "priority": "NORM",
            "payee_bank": BRANCH})
    await harness.sim("POST", "/sim/faults", {"duplicate": 1.0})
    await harness.sim("POST", "/sim/peer/send", {
        "sender": PEER, "receiver": BANK, "payee_account": customers["c1"],
        "payee_name": "示例客户c1", "amount_fen": 77_777 * YUAN, "count": 1,
        "business_type": "A100", "business_kind": "02102", "priority": "NORM",
        "payee_bank": BRANCH})
    await asyncio.sleep(0.5)
    await harness.sim("POST", "/sim/faults", {"duplicate": 0.0})
    say("peer bank: 35 payments sent to us (4 to unknown accounts, 1 delivered twice)")


async def wait_for(predicate: Any, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


async def count_state(gw: Any, state: str) -> int:
    return await gw.store.run(lambda tx: tx.query_one(
        "SELECT COUNT(*) FROM payments WHERE direction = 'out' AND state = ?", (state,))[0])


async def wait_state_count(gw: Any, state: str, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if await count_state(gw, state) == count:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"waited {WAIT_S} s for {count} payments in state {state}")


async def settle_quietly(gw: Any) -> None:
    """Wait until nothing is in flight: no payment accepted or sent, no inbox backlog."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        busy = await gw.store.run(lambda tx: tx.query_one(
            "SELECT (SELECT COUNT(*) FROM payments WHERE direction = 'out' AND state IN "
            "('accepted', 'sent')) + (SELECT COUNT(*) FROM inbox WHERE state = 'received') "
            "+ (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending'))", ())[0])
        if busy == 0:
            await asyncio.sleep(0.5)
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"waited {WAIT_S} s for the gateway to go quiet")


async def close_books(gw: Any, day: date, recon: dict[str, Any], stats: dict[str, Any],
                      examples_ok: bool) -> tuple[int, dict[str, Any]]:
    """The summary; exit 0 only if the books balance and reconcile and every example
    message was accepted and settled (a refused one is in the summary's alerts)."""
    npc_balance = stats["balances"][BANK]

    def work(tx: Any) -> dict[str, Any]:
        ours = gw.ledger.clearing_balance(tx)
        agreed = ours == npc_balance
        if not agreed:
            gw.alert(tx, "clearing_balance_differs", ledger_fen=ours, npc_fen=npc_balance)
        return summary.build(tx, gw.ledger, day.isoformat(), recon["reconciled"] and agreed,
                             extensions=gw.extensions)
    result = await gw.store.run(work)
    ok = result["ledger"]["balanced"] and result["ledger"]["reconciled"] and examples_ok
    return (0 if ok else 1), result


def demo_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="paygate demo")
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--keep", action="store_true", help=KEEP_HELP)
    parser.add_argument("--transfers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        folder = RunFolder.open(args.data, "paygate-demo-", args.keep)
    except PaygateError as exc:
        print_errors(exc.to_dict())
        return 2
    code, result = 1, None
    try:
        with open(folder.path / "gateway.log", "a", encoding="utf-8") as log_file:
            logs.configure("INFO", log_file)
            try:
                code, result = asyncio.run(run_demo(folder.path, args.transfers, args.seed))
            except PaygateError as exc:  # a refusal of ours, said as every command says it
                print_errors(exc.to_dict())
            finally:
                logs.configure("WARNING")  # the buffered lines reach the file before it closes
    finally:
        say(folder.close(code == 0))
        if folder.path.exists():
            say(f"logs: {folder.path / 'gateway.log'} and {folder.path / 'npc.log'}")
    if result is not None:
        print(json.dumps(result, ensure_ascii=False))
    return code
