"""BEPS traffic of the simulated peer banks: credit packages and debit packages to
other participants, and the beps.128 receipt a peer sends for debits it receives.

A peer pays every debit addressed to it except those on a payer account ending in
`REFUSED_ACCOUNT_SUFFIX`, which it refuses as unfunded (RJ02); tests and the demo use
such accounts to show a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.errors import ProblemList, ValidationFailed
from gateway.messages import beps121, beps127, beps128, codec
from gateway.messages.common import OriginalRef, OriginalTx, iso_datetime
from gateway.messages.package import Package, PackageHeader, ReturnInfo, ReturnLimit, Transfer
from simulators.peers import PeerBank

REFUSED_ACCOUNT_SUFFIX = "9999"
TRANSFERS_PER_PACKAGE_MAX = 1000
_BANK = re.compile(r"[0-9]{12}")
_ACCOUNT = re.compile(r"[0-9A-Za-z-]{1,32}")


@dataclass(frozen=True)
class PackageRequest:
    sender: str
    receiver: str
    account: str          # the payee's (credits) or the payer's (debits) account with us
    name: str
    amount_fen: int
    count: int = 1
    bank: str | None = None       # our branch holding that account
    agreement: str = "XY-SIM-0001"
    business_kind: str | None = None
    # Credits only: each is a return (A105) of the receiver's beps.121 package `msg_id`,
    # naming its transaction `tx_id` in RtrInf, for `reason` (Cntt).
    returns: dict[str, str] | None = None


_RETURNS_KEYS = ("msg_id", "tx_id", "reason")
_MSG_ID = re.compile(r"[0-9A-Za-z]{1,35}")

def parse_request(body: Any, peers: frozenset[str],
                  participants: frozenset[str]) -> PackageRequest:
    """A /sim/beps/peer/send or /sim/beps/peer/debit body, all problems at once."""
    p = ProblemList()
    if not isinstance(body, dict):
        p.add("body_must_be_a_json_object", "/", type(body).__name__, "an object")
        p.raise_if_any(ValidationFailed)
    known = set(PackageRequest.__dataclass_fields__)
    for key in sorted(set(body) - known):
        p.add("field_unknown", f"/{key}", key, ", ".join(sorted(known)))
    if body.get("sender") not in peers:
        p.add("sender_must_be_a_simulated_peer", "/sender", body.get("sender"),
              ", ".join(sorted(peers)))
    if body.get("receiver") not in participants or body.get("receiver") == body.get("sender"):
        p.add("receiver_must_be_another_participant", "/receiver", body.get("receiver"),
              "a participant other than the sender")
    if not isinstance(body.get("account"), str) or not _ACCOUNT.fullmatch(body["account"]):
        p.add("account_malformed", "/account", body.get("account"), "1 to 32 letters or digits")
    if not isinstance(body.get("name"), str) or not 0 < len(body["name"]) <= 60:
        p.add("name_malformed", "/name", body.get("name"), "1 to 60 characters")
    if body.get("bank") is not None and not _BANK.fullmatch(str(body["bank"])):
        p.add("bank_code_must_be_12_ascii_digits", "/bank", body.get("bank"), "12 digits")
    for key, high in (("amount_fen", 10**15), ("count", TRANSFERS_PER_PACKAGE_MAX)):
        value = body.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            p.add("field_must_be_a_whole_number", f"/{key}", value, f"1 to {high}")
    returns = body.get("returns")
    if returns is not None:
        if not isinstance(returns, dict) or set(returns) != set(_RETURNS_KEYS):
            p.add("returns_malformed", "/returns", returns,
                  "an object with " + ", ".join(_RETURNS_KEYS))
        else:
            for key in ("msg_id", "tx_id"):
                if not isinstance(returns[key], str) or not _MSG_ID.fullmatch(returns[key]):
                    p.add("field_malformed", f"/returns/{key}", returns[key],
                          "1 to 35 letters or digits")
            if not isinstance(returns["reason"], str) or not 0 < len(returns["reason"]) <= 60:
                p.add("field_malformed", "/returns/reason", returns["reason"],
                      "1 to 60 characters")
    p.raise_if_any(ValidationFailed)
    return PackageRequest(**body)


def package(peer: PeerBank, req: PackageRequest, debit: bool) -> tuple[bytes, str]:
    """One signed beps.121 (or beps.127) envelope from the peer; (raw, XML MsgId)."""
    msg_id = peer.ids.xml_msg_id(peer.code)
    our_bank = req.bank or peer.branches.get(req.receiver, req.receiver)
    transfers = []
    for _ in range(req.count):
        tx_id = peer.ids.xml_msg_id(peer.code)
        ours = (req.account, req.name, our_bank)
        theirs = ("62" + tx_id, "示例对手客户", peer.spec.branch)
        debtor, creditor = (ours, theirs) if debit else (theirs, ours)
        returned = None
        if req.returns is not None and not debit:
            # Our customer's account is the payee: the return pays back the payer of
            # the original, which the receiver sent to this peer.
            returned = ReturnInfo(
                OriginalRef(req.returns["msg_id"], req.receiver, beps121.MESSAGE_TYPE),
                OriginalTx(our_bank, peer.spec.branch, req.returns["tx_id"], "A100"),
                req.returns["reason"])
        transfers.append(Transfer(
            tx_id=tx_id, debtor_name=debtor[1], debtor_account=debtor[0],
            debtor_account_bank=debtor[2], debtor_bank=debtor[2], creditor_bank=creditor[2],
            creditor_name=creditor[1], creditor_account=creditor[0],
            creditor_account_bank=creditor[2], amount_fen=req.amount_fen,
            business_type="B100" if debit else "A105" if returned else "A100",
            business_kind=req.business_kind or (
                "00300" if debit else "02108" if returned else "02102"),
            remark="模拟小额业务", agreement=req.agreement if debit else None,
            extra=returned))
    header = PackageHeader(msg_id, iso_datetime(peer.clock.now()), peer.code, req.receiver,
                           len(transfers), req.amount_fen * len(transfers))
    family = beps127 if debit else beps121
    pkg = Package(header, tuple(transfers),
                  return_limit=ReturnLimit("03") if debit else None)
    env_header = peer.header(req.receiver, family.MESSAGE_TYPE, system="BEPS")
    return codec.encode(env_header, family.build(pkg), peer.keys.ring), msg_id


def receipt_for(peer: PeerBank, decoded: codec.Decoded) -> bytes | None:
    """The beps.128 a peer answers a beps.127 delivered to it (and checked by
    PeerBank.receive) with; None for others."""
    if decoded.mtype.code != beps127.MESSAGE_TYPE or decoded.problems:
        return None
    pkg: Package = decoded.obj
    lines = tuple(_line(t) for t in pkg.transfers)
    paid = [line for line in lines if line.status == beps128.PAID]
    msg_id = peer.ids.xml_msg_id(peer.code)
    collector = pkg.header.instg_direct
    receipt = beps128.DebitReceipt(
        header=PackageHeader(msg_id, iso_datetime(peer.clock.now()), peer.code, collector,
                             len(lines), sum(line.amount_fen for line in lines)),
        original=OriginalRef(pkg.header.msg_id, collector, beps127.MESSAGE_TYPE),
        paid_count=len(paid), paid_fen=sum(line.amount_fen for line in paid), lines=lines)
    header = peer.header(collector, beps128.MESSAGE_TYPE, system="BEPS")
    return codec.encode(header, beps128.build(receipt), peer.keys.ring)


def _line(t: Transfer) -> beps128.ReceiptLine:
    if t.debtor_account.endswith(REFUSED_ACCOUNT_SUFFIX):
        return beps128.ReceiptLine(t.tx_id, t.debtor_bank, t.creditor_bank, t.amount_fen,
                                   "PR09", "RJ02", "the payer's balance does not cover it")
    return beps128.ReceiptLine(t.tx_id, t.debtor_bank, t.creditor_bank, t.amount_fen,
                               beps128.PAID)
