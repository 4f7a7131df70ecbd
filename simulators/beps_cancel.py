"""The simulated NPC's answer to a ccms.307 about one transaction of a BEPS package.

A credit package waits at the NPC for a netting round (or for a higher net debit cap).
While it waits its sender may withdraw one of its transactions: the NPC takes the
transaction out of the package's count and sum at once, so no round ever nets it, the
package forwarded to its receiver does not carry it, and reconciliation does not count
it. Once the package is netted, netting is final (已轧差即具有支付最终性) and the request
is refused. Requests and rounds run one at a time in the NPC's transactions, so exactly
one of the two happens first and the answer says which.

Only the package's own sender may withdraw from it; the package is named by its
OrgnlGrpHdr (MsgId, instructing participant, type) and the transaction by OrgnlTxId.
"""

from __future__ import annotations

import logging
import sqlite3

from gateway.messages import ccms307
from gateway.messages.common import OriginalRef, OriginalTx
from simulators import beps_store as bs
from simulators.codes import Reason
from simulators.logfmt import event

log = logging.getLogger("npc.beps.cancel")

TAKEN_OUT = Reason("NEZC0002", "cancelled at the sender's request: taken out of the package")
REFUSED_NETTED = Reason("NEZE0011", "cannot cancel: the package is netted, which is final")
REFUSED_NOT_WAITING = Reason("NEZE0012", "cannot cancel: the transaction is not waiting "
                             "for netting")
REFUSED_NOT_FOUND = Reason("NEZE0013", "no such package or transaction from this sender")


def cancel(conn: sqlite3.Connection, sender: str, package: OriginalRef,
           transaction: OriginalTx | None, at: str) -> tuple[str, Reason, str]:
    """Withdraw one transaction if its package still waits; (PrcSts, reason, detail)."""
    found = (bs.find(conn, sender, package.msg_id, package.mt)
             if package.instg_party == sender else None)
    if found is None or transaction is None:
        return ccms307.REFUSED, REFUSED_NOT_FOUND, package.msg_id
    tx_id = transaction.tx_id
    amount_fen = bs.transaction(conn, found, tx_id)
    if amount_fen is None:
        return ccms307.REFUSED, REFUSED_NOT_FOUND, tx_id
    row = bs.package(conn, found)
    if tx_id in bs.cancelled_txs(conn, found):
        return ccms307.REFUSED, REFUSED_NOT_WAITING, "already cancelled"
    if row.status == bs.NETTED:
        return ccms307.REFUSED, REFUSED_NETTED, f"{row.netting_date} round {row.netting_round}"
    if row.status != bs.WAITING:
        return ccms307.REFUSED, REFUSED_NOT_WAITING, row.status
    left = bs.cancel_tx(conn, found, tx_id, amount_fen, at)
    event(log, "transaction_withdrawn", sender=sender, msg_id=package.msg_id, tx_id=tx_id,
          amount_fen=amount_fen, left=left)
    return ccms307.CANCELLED, TAKEN_OUT, ""
