"""Building our ccms.307 and ccms.316 requests and putting them in the outbox.

Both go to the NPC ("0000") under the header system of the payment they are about
(HVPS, or BEPS for a ccms.307 about an item of a BEPS package), with a fresh header
MesgID and an XML MsgId from the same daily sequence as every other message of ours
(yyyyMMdd and 8 digits). They name the payment by its group header (OrgnlGrpHdr: MsgId,
instructing participant, message type) and, when its transaction id fits the schema (up
to 16 digits), by its transaction (OrgnlTx); a BEPS item by its package's group header
and its own transaction.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable

from gateway import keys, outbound, payments
from gateway.messages.common import GroupHeader, OriginalRef, OriginalTx, iso_datetime

SYSTEM = "HVPS"
_TX_ID = re.compile(r"[0-9]{1,16}")

Entry = tuple[str, dict[str, str]]


def original_of(payment: dict[str, Any]) -> OriginalRef:
    return OriginalRef(payment["msg_id"], payment["sender_direct"], payment["msg_type"])


def original_tx_of(payment: dict[str, Any]) -> OriginalTx | None:
    if not _TX_ID.fullmatch(payment["tx_id"]):
        return None
    return OriginalTx(payment["payer_bank"], payment["payee_bank"], payment["tx_id"],
                      payment["business_type"])


def queue_request(gw: Any, tx: Any, now: datetime, mesg_type: str, payment: dict[str, Any],
                  build: Callable[[GroupHeader], bytes],
                  system: str = SYSTEM) -> tuple[str, str, Entry]:
    """(XML MsgId, header MesgID, stream entry) of a request put in the outbox."""
    bank = gw.settings.bank_code
    header = outbound.new_header(tx, now, bank, outbound.NPC, mesg_type, system,
                                 payment["priority"])
    day = now.strftime("%Y%m%d")
    msg_id = f"{day}{payments.next_seq(tx, f'msg:{day}'):08d}"
    group = GroupHeader(msg_id, iso_datetime(now), bank, bank, outbound.NPC, outbound.NPC,
                        system)
    outbox_id = outbound.queue_message(tx, header, build(group), gw.keyring, now,
                                       payment["id"])
    return msg_id, header.mesg_id, (keys.OUT_LINK, {"outbox": str(outbox_id)})
