"""Our BEPS packages from the payments they carry (beps.121, 122, 125 and 127).

Payments are stored the same way whatever their channel; this module maps them onto a
package's transactions. Free-text remittance lines travel as /H01/ lines on HVPS; a
BEPS transaction has one remark (AddtlInf, Max256Text) instead, so the lines are joined
there without their tags.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from gateway.errors import Problem
from gateway.messages import beps121, beps122, beps125, beps127
from gateway.messages.common import OriginalRef, OriginalTx, iso_datetime
from gateway.messages.package import (RETURN_TYPE, Package, PackageHeader, ReturnInfo,
                                      ReturnLimit, Transfer, transfers_from_rows)

FAMILIES = {m.MESSAGE_TYPE: m for m in (beps121, beps122, beps125, beps127)}
CREDIT_TYPES = frozenset({beps121.MESSAGE_TYPE, beps122.MESSAGE_TYPE, beps125.MESSAGE_TYPE})
DEBIT_TYPE = beps127.MESSAGE_TYPE

NAME_LEN_MAX = 60     # Dbtr/Nm and Cdtr/Nm are Max60Text in BEPS packages
REMARK_LEN_MAX = 256  # AddtlInf is Max256Text
_TAG = re.compile(r"^/[A-Z0-9]{3}/")


NAME_FIELDS = ("payer_name", "payee_name")
NAME_EXPECTED = f"at most {NAME_LEN_MAX} characters in a BEPS package"


def name_problems(sent: Mapping[str, Any], typed: Mapping[str, Any] | None = None,
                  prefix: str = "") -> list[Problem]:
    """`name_too_long_for_beps` for each name of `sent` (payer_name, payee_name, the
    names a BEPS message would carry) over the NAME_LEN_MAX characters a package takes,
    whichever path builds the message: refused by name, never cut. The value is the
    name as the request gave it (`typed`, by field; the sent one where not given). A
    payer name typed within the bound whose account is held under a longer name (the
    one that goes out: a name matches its holder's with spaces, width or case aside)
    is told so, naming the account."""
    problems = []
    for name in NAME_FIELDS:
        out = sent.get(name)
        if not isinstance(out, str) or len(out) <= NAME_LEN_MAX:
            continue
        given = (typed or {}).get(name, out)
        if name == "payer_name" and isinstance(given, str) and len(given) <= NAME_LEN_MAX:
            problems.append(Problem(
                "name_too_long_for_beps", f"{prefix}/{name}", given,
                f"a payer whose account is held under a name of at most {NAME_LEN_MAX} "
                "characters, the most a BEPS package carries",
                f"account {sent.get('payer_account')} is held under a name of {len(out)} "
                "characters, which the credit would go out under"))
        else:
            problems.append(Problem("name_too_long_for_beps", f"{prefix}/{name}", given,
                                    NAME_EXPECTED))
    return problems


def our_name(name: str) -> str:
    """Our own branch's name as a package carries it: as the directory writes it, or its
    first NAME_LEN_MAX characters when longer (trailing spaces dropped). Only our name is
    cut, where it pays from our own books (a return from suspense): no other bank
    matches it against an account holder's, and the branch goes by its bank code
    (DbtrAgt, Issr) beside it. A customer's name is never cut (name_problems)."""
    return name if len(name) <= NAME_LEN_MAX else name[:NAME_LEN_MAX].rstrip()


def remark_of(remittance: list[str]) -> str | None:
    """The AddtlInf of a transaction: the remittance lines, untagged, joined by '; '."""
    text = "; ".join(_TAG.sub("", line) for line in remittance if line)
    return text[:REMARK_LEN_MAX] or None


# What a package's transaction is made of: columns of the payment (p) and of its BEPS
# item (i), in the order `transfers_of` reads them. The address lines are the item's: only
# a ready hvps.111 gives them (gateway.ready.CARRIED), and a payment's row has none.
COLUMNS = ("p.tx_id", "p.payer_name", "p.payer_account", "p.payer_bank", "p.payee_bank",
           "p.payee_name", "p.payee_account", "p.amount_fen", "p.business_type",
           "p.business_kind", "p.remittance", "i.agreement", "p.currency",
           "i.debtor_address", "i.creditor_address")
_NO_REMITTANCE = "[]"  # payments.remittance of a payment without remittance lines


def transfers_of(rows: Iterable[Sequence[Any]]) -> list[Transfer]:
    """A package's transactions from rows of COLUMNS (the remittance as stored, JSON).
    The payer's bank is both the bank holding the payer's account (Issr) and the
    payer's agent (DbtrAgt/BrnchId), and the payee's bank likewise."""
    return transfers_from_rows(
        (tx_id, payer_name, payer_account, payer_bank, payer_bank, payee_bank, payee_name,
         payee_account, payee_bank, amount_fen, business_type, business_kind,
         None if remittance == _NO_REMITTANCE else remark_of(json.loads(remittance)),
         None, debtor_address, creditor_address, agreement, currency)
        for (tx_id, payer_name, payer_account, payer_bank, payee_bank, payee_name,
             payee_account, amount_fen, business_type, business_kind, remittance,
             agreement, currency, debtor_address, creditor_address) in rows)


# A return (A105) names the transaction it returns in RtrInf, which no column of the
# payment holds: its route (payments.route, JSON) keeps it under this key, written when
# the return is made (gateway.exceptions.debit_suspense) and read when it is packed.
RETURN_INFO = "return_info"
_TYPE_AT = 2 + COLUMNS.index("p.business_type")  # in a packer's row: id, state, COLUMNS


def return_info_route(info: ReturnInfo) -> dict[str, Any]:
    """How a return's RtrInf is kept in its route."""
    o, t = info.original, info.original_tx
    return {"msg_id": o.msg_id, "instg_party": o.instg_party, "mt": o.mt,
            "instg_indirect": t.instg_indirect, "instd_indirect": t.instd_indirect,
            "tx_id": t.tx_id, "business_type": t.business_type, "reason": info.reason}


def _return_info(kept: dict[str, Any]) -> ReturnInfo:
    return ReturnInfo(OriginalRef(kept["msg_id"], kept["instg_party"], kept["mt"]),
                      OriginalTx(kept["instg_indirect"], kept["instd_indirect"],
                                 kept["tx_id"], kept["business_type"]), kept["reason"])


def with_returns(tx: Any, rows: Sequence[Sequence[Any]], transfers: list[Transfer]
                 ) -> list[Transfer]:
    """The transactions of these packer rows (payment id, state, then COLUMNS), each
    return (A105) given the RtrInf its route keeps. Read only when there are returns:
    a package of ordinary credits costs one look at each row's business type."""
    ids = [row[0] for row in rows if row[_TYPE_AT] == RETURN_TYPE]
    if not ids:
        return transfers
    routes = dict(tx.query(f"SELECT id, route FROM payments WHERE id IN "
                           f"({', '.join('?' * len(ids))})", tuple(ids)))
    out = list(transfers)
    for i, row in enumerate(rows):
        kept = json.loads(routes[row[0]]).get(RETURN_INFO) if row[0] in routes else None
        if kept is not None:
            out[i] = replace(out[i], extra=_return_info(kept))
    return out


def package_body(msg_type: str, msg_id: str, sender: str, receiver: str,
                 transfers: Sequence[Transfer], now: datetime,
                 return_days: int | None = None) -> bytes:
    """The XML body of a package of these transactions, as `msg_type`."""
    header = PackageHeader(msg_id=msg_id, created_at=iso_datetime(now), instg_direct=sender,
                           instd_direct=receiver, count=len(transfers),
                           total_fen=sum(t.amount_fen for t in transfers))
    limit = None
    if msg_type == DEBIT_TYPE:
        assert return_days is not None, "a debit package names its return deadline"
        limit = ReturnLimit(f"{return_days:02d}")
    return FAMILIES[msg_type].build(Package(header, tuple(transfers), return_limit=limit))
