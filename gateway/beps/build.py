"""Our BEPS packages from the payments they carry (beps.121, 122, 125 and 127).

Payments are stored the same way whatever their channel; this module maps them onto a
package's transactions. Free-text remittance lines travel as /H01/ lines on HVPS; a
BEPS transaction has one remark (AddtlInf, Max256Text) instead, so the lines are joined
there without their tags.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from gateway.messages import beps121, beps122, beps125, beps127
from gateway.messages.common import iso_datetime
from gateway.messages.package import Package, PackageHeader, ReturnLimit, Transfer

FAMILIES = {m.MESSAGE_TYPE: m for m in (beps121, beps122, beps125, beps127)}
CREDIT_TYPES = frozenset({beps121.MESSAGE_TYPE, beps122.MESSAGE_TYPE, beps125.MESSAGE_TYPE})
DEBIT_TYPE = beps127.MESSAGE_TYPE

NAME_LEN_MAX = 60     # Dbtr/Nm and Cdtr/Nm are Max60Text in BEPS packages
REMARK_LEN_MAX = 256  # AddtlInf is Max256Text
_TAG = re.compile(r"^/[A-Z0-9]{3}/")


def remark_of(remittance: list[str]) -> str | None:
    """The AddtlInf of a transaction: the remittance lines, untagged, joined by '; '."""
    text = "; ".join(_TAG.sub("", line) for line in remittance if line)
    return text[:REMARK_LEN_MAX] or None


def transfer_of(p: dict[str, Any]) -> Transfer:
    """One package transaction from a payment row (with its item's agreement)."""
    return Transfer(
        tx_id=p["tx_id"], debtor_name=p["payer_name"], debtor_account=p["payer_account"],
        debtor_account_bank=p["payer_bank"], debtor_bank=p["payer_bank"],
        creditor_bank=p["payee_bank"], creditor_name=p["payee_name"],
        creditor_account=p["payee_account"], creditor_account_bank=p["payee_bank"],
        amount_fen=p["amount_fen"], business_type=p["business_type"],
        business_kind=p["business_kind"], remark=remark_of(p["remittance"]),
        agreement=p.get("agreement"), currency=p["currency"])


def package_body(msg_type: str, msg_id: str, sender: str, receiver: str,
                 rows: list[dict[str, Any]], now: datetime,
                 return_days: int | None = None) -> bytes:
    """The XML body of a package of these payments, as `msg_type`."""
    transfers = tuple(transfer_of(p) for p in rows)
    header = PackageHeader(msg_id=msg_id, created_at=iso_datetime(now), instg_direct=sender,
                           instd_direct=receiver, count=len(transfers),
                           total_fen=sum(t.amount_fen for t in transfers))
    limit = None
    if msg_type == DEBIT_TYPE:
        assert return_days is not None, "a debit package names its return deadline"
        limit = ReturnLimit(f"{return_days:02d}")
    return FAMILIES[msg_type].build(Package(header, transfers, return_limit=limit))
