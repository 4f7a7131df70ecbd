"""`serve --simulate`: our clearing account in the books (1003) against the simulated
NPC's balance for us, compared only when nothing is in flight between the two.

The two move apart for a moment whenever money moves: the NPC settles an HVPS payment
or a BEPS netting round first, and the books follow when its notice is taken. At
start-up many such notices can be on their way (after a kill -9, or on a folder of
`simulate-day` opened the next working day, whose rounds the NPC settles as it starts),
so a comparison made at once finds a difference that is gone seconds later.

The NPC moves its balance first and the books follow its notice, never the other way
(the books post a payment's settlement when the NPC's answer is taken), so a look
counts as quiet when the NPC has no message waiting for delivery and the gateway no
message received and not yet taken; what the gateway is still sending has moved
neither side.

A result can also be lost on the way (the gateway killed while the NPC delivered it):
the NPC has settled the payment and moved its balance, and the books follow only when
the status query the gateway sends for a payment left without an answer settles it,
minutes later. So money whose result the books still wait for counts as on its way
too, and a difference it can explain raises nothing (`on_the_way`): each outgoing HVPS
payment `sent`, `queued` or `unknown` may have lowered the NPC's figure by its amount,
and each BEPS item not yet settled in our books may have moved it by its amount (down
for what we pay, up for what we receive): one netted, whose round's booking notice is
the books' only way to settle it (the balances of the netting accounts, 4002 what we
owe and 4003 what we are owed, read in one row each whatever the items' number), and
one in a package of ours waiting for its netting result (sent, or PR11). A difference
outside those bounds is a real one; one inside them is looked at again once the
results are in, when the bounds shrink. Two quiet looks in a row that give the same
pair of figures settle the comparison (one look alone could fall between the NPC's
settlement and its read):

- the figures differ: alert `clearing_balance_differs` with both, unless one is open
  already; the check goes on, slower, while that alert is open;
- they agree: every open `clearing_balance_differs` is closed by the gateway (a
  difference mended, or one an earlier start alerted), and the check ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from gateway import critical, logs
from ledger.chart import BEPS_NETTED_IN, BEPS_NETTED_OUT

CODE = "clearing_balance_differs"
# Between looks while the comparison is not settled, and while a difference is open.
LOOK_EVERY_S = 1.0
OPEN_LOOK_EVERY_S = 10.0
log = logging.getLogger("paygate.clearing_check")

_BUSY_SQL = "SELECT COUNT(*) FROM inbox WHERE state = 'received'"
# Outgoing HVPS payments the NPC may have settled without the books knowing yet: sent,
# queued at the NPC (its PR04 may be lost later) or under a status query.
_HVPS_AWAITING_SQL = (
    "SELECT COALESCE(SUM(amount_fen), 0) FROM payments WHERE state IN "
    "('sent', 'queued', 'unknown') AND direction = 'out' AND channel = 'hvps'")
# BEPS items the NPC may have netted and settled without the books knowing yet: in a
# package of ours waiting for its netting result (sent, or PR11). Few packages are in
# those states, found by their state's index; netted items are in the netting accounts.
_BEPS_PACKED_SQL = (
    "SELECT i.side, COALESCE(SUM(i.amount_fen), 0) FROM beps_packages p JOIN beps_items i "
    "ON i.package_id = p.id WHERE p.state IN ('sent', 'waiting') AND p.direction = 'out' "
    "AND i.netting_date IS NULL AND i.settled_on IS NULL GROUP BY i.side")


async def look(harness: Any, previous: tuple[int, int] | None
               ) -> tuple[tuple[int, int] | None, bool]:
    """(ledger_fen, npc_fen) when nothing is in flight either way, else None; and, when
    the pair is `previous` again, the comparison settled in the same transaction that
    read the books (`settle`: whether a difference is open after it). The NPC is read
    first: a message it delivers after that read is in the gateway's tables (or its
    books) by the time they are read."""
    gw = harness.gateway
    stats = await harness.sim("GET", "/sim/stats")
    if stats["outbox"].get("pending"):
        return None, False
    npc_fen = int(stats["balances"].get(gw.settings.bank_code, 0))

    def work(tx: Any) -> tuple[tuple[int, int] | None, bool]:
        if tx.query_one(_BUSY_SQL, ())[0]:
            return None, False
        current = (gw.ledger.clearing_balance(tx), npc_fen)
        low_fen, high_fen = on_the_way(gw, tx)
        if current[0] != npc_fen and low_fen <= npc_fen - current[0] <= high_fen:
            return None, False
        if current != previous:
            return current, False
        return current, settle(gw, tx, *current)
    return await gw.store.run(work)


def on_the_way(gw: Any, tx: Any) -> tuple[int, int]:
    """The bounds, in fen, of what the NPC's figure for us may be above the books (below
    when negative) by money whose result the books still wait for (module doc)."""
    accounts = gw.ledger.internal_accounts
    # Each on its normal side: what we owe in rounds netted (4002), what we are owed
    # (4003); below zero only while a round settled before all its items were booked.
    low_fen = -int(tx.query_one(_HVPS_AWAITING_SQL, ())[0]) - max(
        0, gw.ledger.balance(tx, accounts[BEPS_NETTED_OUT]))
    high_fen = max(0, gw.ledger.balance(tx, accounts[BEPS_NETTED_IN]))
    for side, amount_fen in tx.query(_BEPS_PACKED_SQL, ()):
        if side == "D":
            low_fen -= int(amount_fen)
        else:
            high_fen += int(amount_fen)
    return low_fen, high_fen


def settle(gw: Any, tx: Any, ledger_fen: int, npc_fen: int) -> bool:
    """Record a settled comparison; True when a difference is open after it."""
    open_ids = [alert_id for alert_id, _ in critical.unclosed(tx, (CODE,))]
    if ledger_fen == npc_fen:
        if open_ids:
            critical.close_by_gateway(
                tx, open_ids, f"our clearing account in the books and the NPC's balance "
                f"for us agree: {ledger_fen} fen", gw.clock.now())
            log.info("event=clearing_balance_agrees fen=%s closed=%s", ledger_fen,
                     len(open_ids))
        return False
    if not open_ids:
        gw.alert(tx, CODE, ledger_fen=ledger_fen, npc_fen=npc_fen)
    return True


async def watch(harness: Any) -> None:
    """Compare once nothing is in flight (module doc); runs until the two agree. While a
    difference stays as it was, it looks every OPEN_LOOK_EVERY_S; once the figures
    change, the confirming look comes after LOOK_EVERY_S. A look that fails (the
    simulated NPC being started again, say) is logged and tried again."""
    previous: tuple[int, int] | None = None
    pause = LOOK_EVERY_S
    while True:
        await asyncio.sleep(pause)
        try:
            current, still_differs = await look(harness, previous)
        except (TimeoutError, OSError, RuntimeError, ValueError, aiohttp.ClientError) as exc:
            log.warning("event=clearing_check_failed error=%s", logs.value(repr(exc)))
            previous, pause = None, LOOK_EVERY_S
            continue
        if current is None or current != previous:
            previous, pause = current, LOOK_EVERY_S
            continue
        if not still_differs:
            return
        pause = OPEN_LOOK_EVERY_S
