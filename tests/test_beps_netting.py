"""The simulated NPC's netting rounds and settlement, on its own database (no processes):
caps, positions carried between rounds, round numbers, settlement order."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import SHANGHAI
from gateway.beps import build
from gateway.clock import ManualClock
from gateway.errors import PaygateError
from gateway.messages import beps121, beps122, beps127, codec, package, xml
from gateway.messages.common import NpcProcessing, OriginalRef, OriginalTx
from gateway.messages.signing import KeyRing, write_keypair
from simulators.beps_notices import BepsNotices
from simulators.ids import Ids
from simulators.settings import NPC_CODE
from simulators.testing import BankSender
from tests.beps_support import credit_row, transfers_of
from simulators import beps_cancel, netting
from simulators import beps_store as bs
from simulators.store import Store

A, B, C = "999100000019", "888200000015", "777300000011"
NOW = datetime(2026, 12, 12, 23, 0, tzinfo=SHANGHAI)
BIG_FEN = 10**12


class Recorder:
    """Stands in for BepsNotices: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []
        self.withdrawn: dict[str, frozenset[str]] = {}

    def result(self, dest: str, original: Any, status: str, *rest: Any, **kw: Any) -> None:
        self.sent.append(("900", dest, status, original.msg_id))

    def forward_netted(self, dest: str, raw: bytes, npc: Any,
                       withdrawn: frozenset[str] = frozenset()) -> None:
        self.sent.append(("forward", dest, npc.netting_round))
        self.withdrawn[dest] = withdrawn

    def booking(self, dest: str, original: Any, npc: Any, net_fen: int, balance_fen: int,
                netting_round: str) -> None:
        self.sent.append(("606", dest, str(net_fen), netting_round))


def make_store(tmp_path: Path, balances: dict[str, int] | None = None,
               caps: dict[str, int] | None = None) -> Store:
    store = Store(tmp_path / "npc.sqlite3")
    bs.install(store.conn)
    with store.transaction():
        for code in (A, B, C):
            store.seed_balance(code, (balances or {}).get(code, BIG_FEN))
        for code, cap_fen in (caps or {}).items():
            bs.set_cap(store.conn, code, cap_fen)
    return store


def add(store: Store, payer: str, payee: str, amount_fen: int,
        txs: list[tuple[str, int]] | None = None) -> int:
    """A credit package waiting for netting: one transaction, or `txs` summing up to
    `amount_fen`."""
    n = store.add("test:package")
    txs = txs or [(f"{n:016d}", amount_fen)]
    assert sum(fen for _, fen in txs) == amount_fen
    with store.transaction():
        return bs.add_package(store.conn, {
            "sender": payer, "receiver": payee, "payer": payer, "payee": payee,
            "mesg_type": "beps.121.001.01", "mesg_id": f"{n:020d}", "msg_id": f"{n:016d}",
            "count": len(txs), "amount_fen": amount_fen, "status": bs.WAITING,
            "received_on": NOW.date().isoformat(), "received_at": NOW.isoformat(),
            "raw": b""}, txs)


def net(store: Store, at: datetime = NOW) -> netting.RoundResult:
    with store.transaction():
        return netting.net_round(store, at)


# (name, caps, balances, packages as (payer, payee, fen), indexes netted in round 1)
ADMISSION = [
    ("no cap: everything nets", {}, {}, [(A, B, 500), (B, C, 700)], [0, 1]),
    ("over the cap: the package waits", {A: 400}, {}, [(A, B, 500), (B, C, 700)], [1]),
    ("a credit in the same round makes room", {A: 400},
     {}, [(A, B, 500), (B, A, 300)], [0, 1]),
    ("the clearing balance bounds the position", {}, {A: 450},
     [(A, B, 500), (A, C, 400)], [1]),
    ("a zero receipt nets whatever the cap", {A: 0}, {}, [(A, B, 0)], [0]),
    ("exactly at the cap is allowed", {A: 500}, {}, [(A, B, 300), (A, C, 200)], [0, 1]),
]


@pytest.mark.parametrize("name, caps, balances, packages, expected", ADMISSION,
                         ids=[row[0] for row in ADMISSION])
def test_admission_respects_caps_and_balances(tmp_path, name, caps, balances, packages,
                                              expected):
    """Packages are netted while their payers' limits allow, the rest wait."""
    store = make_store(tmp_path, balances, caps)
    ids = [add(store, *pkg) for pkg in packages]

    result = net(store)

    assert result.netted == [ids[i] for i in expected]
    assert result.newly_waiting == [pid for i, pid in enumerate(ids) if i not in expected]


class ReasonRecorder(Recorder):
    """Records each ccms.900's status with its processing code and RjctInf."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[tuple[str, str, str]] = []

    def result(self, dest: str, original: Any, status: str, *rest: Any, **kw: Any) -> None:
        self.reasons.append((status, rest[0].code, rest[0].text))


# (name, caps, balances, the processing code the sender of the waiting package is told)
WAITING_REASONS = [
    ("over the cap", {A: 400}, {}, "NEZQ0001"),
    ("short of balance, no cap set", {}, {A: 450}, "NEZQ0002"),
    ("short of balance below the cap", {A: 1_000}, {A: 450}, "NEZQ0002"),
    ("the cap below the balance", {A: 400}, {A: 450}, "NEZQ0001"),
]


@pytest.mark.parametrize("name, caps, balances, code", WAITING_REASONS,
                         ids=[row[0] for row in WAITING_REASONS])
def test_pr11_names_the_limit_the_package_would_break(tmp_path, name, caps, balances, code):
    """A package that waits is told PR11 with the lower of its payer's two limits as the
    reason: the net debit cap, or the clearing balance; never the cap when none binds."""
    store = make_store(tmp_path, balances, caps)
    add(store, A, B, 500)
    result = net(store)
    notices = ReasonRecorder()

    netting.notify_round(store, notices, result, NOW)
    told = notices.reasons

    assert [(status, got) for status, got, _ in told] == [("PR11", code)]
    assert ("net debit cap" in told[0][2]) == (code == "NEZQ0001")
    assert ("balance" in told[0][2]) == (code == "NEZQ0002")


def test_unsettled_rounds_count_against_the_cap_until_settled(tmp_path):
    """A position netted but not settled uses the cap; settling frees it."""
    store = make_store(tmp_path, caps={A: 1_000})
    add(store, A, B, 800)
    first = net(store)
    waiting = add(store, A, B, 300)
    second = net(store, NOW + timedelta(minutes=1))
    with store.transaction():
        netting.settle_pending(store, Recorder(), "2026-12-14", NOW)
    third = net(store, NOW + timedelta(minutes=2))

    assert first.netting_round == "01" and second.netting_round is None
    assert second.newly_waiting == [waiting]
    assert third.netted == [waiting] and third.netting_round == "02"


def test_waiting_packages_are_told_once(tmp_path):
    """PR11 goes to the sender the first time a package has to wait, not every round."""
    store = make_store(tmp_path, caps={A: 10})
    add(store, A, B, 500)
    first, second = net(store), net(store, NOW + timedelta(minutes=1))

    assert len(first.newly_waiting) == 1 and second.newly_waiting == []
    assert second.still_waiting == 1


def test_round_numbers_restart_each_netting_date_and_skip_empty_rounds(tmp_path):
    """Rounds are 01, 02... per natural day; an interval with nothing to net uses none."""
    store = make_store(tmp_path)
    add(store, A, B, 100)
    rounds = [net(store).netting_round, net(store).netting_round]
    add(store, B, A, 100)
    rounds.append(net(store).netting_round)
    add(store, B, C, 100)
    rounds.append(net(store, NOW + timedelta(hours=2)).netting_round)

    assert rounds == ["01", None, "02", "01"]


def test_settlement_moves_balances_and_tells_every_participant(tmp_path):
    """Each participant's net moves its clearing balance and is announced by saps.606."""
    store = make_store(tmp_path, balances={A: 10_000, B: 10_000, C: 10_000})
    add(store, A, B, 800)
    add(store, B, C, 300)
    net(store)
    notices = Recorder()
    with store.transaction():
        settled = netting.settle_pending(store, notices, "2026-12-14", NOW)

    assert settled == 1
    assert store.balances() == {A: 9_200, B: 10_500, C: 10_300}
    assert sorted(notices.sent) == sorted([("606", A, "-800", "01"), ("606", B, "500", "01"),
                                           ("606", C, "300", "01")])
    assert bs.unsettled_rounds(store.conn) == []


def test_a_round_a_debtor_cannot_cover_waits_with_the_rounds_after_it(tmp_path):
    """Rounds settle in order; one a debtor cannot cover stops the rest until funded."""
    store = make_store(tmp_path, balances={A: 1_000})
    add(store, A, B, 900)
    net(store)
    store.move(A, -500)  # HVPS took money in between
    add(store, B, A, 100)
    net(store, NOW + timedelta(minutes=1))
    with store.transaction():
        short = netting.settle_pending(store, Recorder(), "2026-12-14", NOW)
    store.move(A, 1_000)
    with store.transaction():
        later = netting.settle_pending(store, Recorder(), "2026-12-14", NOW)

    assert short == 0 and later == 2
    assert store.balance(A) == 1_500 - 900 + 100


def test_notify_round_answers_senders_and_forwards_to_receivers(tmp_path):
    """Netted packages get PR03 to the sender and a forward to the receiver; a package
    that waits gets PR11 only."""
    store = make_store(tmp_path, caps={C: 0})
    netted = add(store, A, B, 100)
    add(store, C, B, 100)
    result = net(store)
    notices = Recorder()
    netting.notify_round(store, notices, result, NOW)
    row = bs.package(store.conn, netted)

    assert ("900", A, "PR03", row.msg_id) in notices.sent
    assert ("forward", B, "01") in notices.sent
    assert [s for s in notices.sent if s[0] == "900" and s[2] == "PR11"] == \
        [("900", C, "PR11", bs.package(store.conn, netted + 1).msg_id)]


# Withdrawing a transaction (ccms.307) while its package waits

T1, T2 = "2026121200000001", "2026121200000002"


def withdraw(store: Store, package_id: int, tx_id: str | None,
             sender: str = A) -> tuple[str, str]:
    """Ask the NPC to take `tx_id` out of the package; (PrcSts, PrcCd) of its answer."""
    row = bs.package(store.conn, package_id)
    transaction = OriginalTx(A, B, tx_id, "A100") if tx_id else None
    with store.transaction():
        status, reason, _ = beps_cancel.cancel(
            store.conn, sender, OriginalRef(row.msg_id, row.sender, row.mesg_type),
            transaction, NOW.isoformat())
    return status, reason.code


def test_a_withdrawn_transaction_is_never_netted_nor_forwarded(tmp_path):
    """Taken out while its package waits over the cap: the package's count and sum
    drop, the next round nets the rest only, and the receiver is sent the rest only."""
    store = make_store(tmp_path, caps={A: 250})
    package_id = add(store, A, B, 500, [(T1, 300), (T2, 200)])
    first = net(store)

    answer = withdraw(store, package_id, T1)
    row = bs.package(store.conn, package_id)
    second = net(store, NOW + timedelta(minutes=1))
    notices = Recorder()
    netting.notify_round(store, notices, second, NOW)

    assert first.newly_waiting == [package_id]
    assert answer == ("PR08", "NEZC0002")
    assert (row.count, row.amount_fen, row.status) == (1, 200, bs.WAITING)
    assert second.netted == [package_id]
    assert sorted(bs.positions(store.conn, NOW.date().isoformat(), "01")) == [
        (B, 0, 200), (A, 200, 0)]
    assert notices.withdrawn == {B: frozenset({T1})}
    assert bs.withdrawn_count(store.conn) == 1


def test_a_package_left_empty_is_cancelled_and_nets_nothing(tmp_path):
    """Its last transaction withdrawn, the package is PR08 and no round takes it."""
    store = make_store(tmp_path, caps={A: 0})
    package_id = add(store, A, B, 300, [(T1, 300)])

    answer = withdraw(store, package_id, T1)
    result = net(store)

    assert answer == ("PR08", "NEZC0002")
    assert bs.package(store.conn, package_id).status == bs.CANCELLED
    assert result.netted == [] and result.still_waiting == 0


def _netted_first(store: Store, package_id: int) -> None:
    net(store)


def _withdrawn_first(store: Store, package_id: int) -> None:
    withdraw(store, package_id, T1)


# What happened to the package first, the request, and the NPC's refusal code.
WITHDRAW_REFUSALS = [
    ("netted: final", _netted_first, T1, A, "NEZE0011"),
    ("withdrawn already", _withdrawn_first, T1, A, "NEZE0012"),
    ("no such transaction in the package", None, "2026121200000099", A, "NEZE0013"),
    ("not the package's sender", None, T1, B, "NEZE0013"),
    ("no transaction named", None, None, A, "NEZE0013"),
]


@pytest.mark.parametrize("name, before, tx_id, sender, code", WITHDRAW_REFUSALS,
                         ids=[r[0] for r in WITHDRAW_REFUSALS])
def test_a_withdrawal_is_refused_by_rule(tmp_path, name, before, tx_id, sender, code):
    """PR09 with the rule; the package keeps its count and sum."""
    store = make_store(tmp_path)
    package_id = add(store, A, B, 500, [(T1, 300), (T2, 200)])
    if before is not None:
        before(store, package_id)
    kept = bs.package(store.conn, package_id)

    answer = withdraw(store, package_id, tx_id, sender)

    assert answer == ("PR09", code)
    assert bs.package(store.conn, package_id) == kept


def _forwarded(tmp_path: Path, rows: list[dict[str, Any]], withdraw_one: bool
               ) -> tuple[Any, bytes]:
    """A package of these credits stored by the NPC, netted and forwarded (one of them
    withdrawn first when `withdraw_one`): the forwarded message as its receiver decodes
    it, and what building the package netted with the NPC's block gives."""
    store = make_store(tmp_path)
    clock = ManualClock(NOW)
    sender = BankSender(tmp_path / "bank", clock, A)
    body = build.package_body("beps.121.001.01", "2026121200000007", A, B,
                              transfers_of(rows), NOW)
    raw = codec.encode(sender.header("beps.121.001.01"), body, sender.ring)
    package_id = add(store, A, B, sum(r["amount_fen"] for r in rows),
                     [(r["tx_id"], r["amount_fen"]) for r in rows])
    with store.transaction():
        store.conn.execute("UPDATE beps_packages SET raw = ?, msg_id = ? WHERE id = ?",
                           (raw, "2026121200000007", package_id))
    if withdraw_one:
        withdraw(store, package_id, rows[1]["tx_id"])
    write_keypair(tmp_path / "npc", NPC_CODE)
    notices = BepsNotices(store, Ids(store, clock), clock,
                          KeyRing.load(tmp_path / "npc", [NPC_CODE]), lambda dest: None)
    with store.transaction():
        netting.notify_round(store, notices, net(store), NOW)
    (forwarded,) = [codec.decode(r.raw) for r in store.pending(B, 10)
                    if r.mesg_type == "beps.121.001.01"]
    kept = package.without(codec.decode(raw).obj, frozenset(
        {rows[1]["tx_id"]} if withdraw_one else ()))
    return forwarded, beps121.build(replace(kept, npc=forwarded.obj.npc))


def test_the_receiver_is_forwarded_the_package_without_what_was_withdrawn(tmp_path):
    """The forwarded package carries the transactions netted, with NbOfTxs and CtrlSum
    restated, and the NPC's processing block of the round."""
    rows = [credit_row(n, NOW) for n in range(3)]
    forwarded, _ = _forwarded(tmp_path, rows, withdraw_one=True)

    assert forwarded.ok
    assert [t.tx_id for t in forwarded.obj.transfers] == [rows[0]["tx_id"], rows[2]["tx_id"]]
    assert (forwarded.obj.header.count, forwarded.obj.header.total_fen) == (2, 100 + 102)
    assert forwarded.obj.npc.netting_round == "01"


@pytest.mark.parametrize("withdraw_one", [False, True], ids=["whole", "one withdrawn"])
def test_a_forwarded_package_is_what_building_it_with_the_npc_block_gives(tmp_path,
                                                                          withdraw_one):
    """Whether the block is written into the stored text (nothing withdrawn) or the
    package is parsed and built again, the receiver gets the same bytes."""
    rows = [dict(credit_row(n, NOW), payee_name=f"对手 & <{n}>") for n in range(3)]
    forwarded, built = _forwarded(tmp_path, rows, withdraw_one)

    assert forwarded.ok and forwarded.envelope.body == built


def test_the_npc_block_is_written_into_a_package_only_as_building_it_would_write_it():
    """package.with_npc gives build's bytes for a package laid out as build lays it out,
    and declines (None) a family without the block, a package that has one already and
    one laid out otherwise or in another namespace."""
    npc = NpcProcessing("PR03", "NEZI0000", netting_date="2026-12-12", netting_round="01",
                        received_at="2026-12-12T23:00:00", forwarded_at="2026-12-12T23:00:01")
    body = build.package_body("beps.121.001.01", "2026121200000007", A, B,
                              transfers_of([credit_row(n, NOW) for n in range(4)]), NOW)
    parsed = beps121.parse(xml.parse(body))[0]
    expected = beps121.build(replace(parsed, npc=npc))
    declined = [
        package.with_npc(beps127.LAYOUT, body, npc),
        package.with_npc(beps121.LAYOUT, expected, npc),
        package.with_npc(beps121.LAYOUT, body.replace(b"\n    <PKGGrpHdr>", b"<PKGGrpHdr>"),
                         npc),
        package.with_npc(beps121.LAYOUT, body.replace(b"\n    </PKGGrpHdr>",
                                                      b"</PKGGrpHdr>"), npc),
        package.with_npc(beps122.LAYOUT, body, npc),
    ]

    assert package.with_npc(beps121.LAYOUT, body, npc) == expected
    assert declined == [None] * len(declined)


def test_a_stored_package_read_again_to_forward_is_what_decoding_it_gave(tmp_path):
    """codec.reread (parse only: the schema and the checks passed when the NPC took the
    bytes) gives the same package as decode; bytes that do not parse are refused."""
    rows = [credit_row(n, NOW) for n in range(3)]
    sender = BankSender(tmp_path / "bank", ManualClock(NOW), A)
    body = build.package_body("beps.121.001.01", "2026121200000007", A, B,
                              transfers_of(rows), NOW)
    raw = codec.encode(sender.header("beps.121.001.01"), body, sender.ring)

    decoded, again = codec.decode(raw), codec.reread(raw)

    assert decoded.ok and again.ok
    assert again.obj == decoded.obj and again.mtype == decoded.mtype
    assert again.header == decoded.header
    with pytest.raises(PaygateError):
        codec.reread(raw.replace(b"<MsgId>", b"<MsgId><", 1))


def test_outstanding_is_each_net_debit_positive_for_the_payer(tmp_path):
    """`outstanding_fen` of /sim/beps/stats (docs/simulator.md): in unsettled rounds, what
    a participant pays minus what it receives; positive owes, negative is owed, summing
    to zero, and a participant with nothing unsettled absent."""
    store = make_store(tmp_path)
    add(store, A, B, 500)
    add(store, B, A, 200)

    net(store)

    assert bs.outstanding(store.conn) == {A: 300, B: -300}
    assert sum(bs.outstanding(store.conn).values()) == 0
    assert C not in bs.outstanding(store.conn)
